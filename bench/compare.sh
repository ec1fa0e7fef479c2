#!/usr/bin/env bash
# A/B comparison of the listener on the cluster of `bash scripts/run.sh`, by alternating runs.
# Single runs on a small shared machine swing far more than the differences worth measuring
# (and the database grows with every run), so the two sides take turns, cell by cell, for
# several rounds on the same data, and the means are compared.
#
#   bash bench/compare.sh builds OLD.so NEW.so   two builds of the library (the server is restarted
#                                                with each; the extension's SQL must be the same)
#   bash bench/compare.sh tls                    plain HTTP against https (self-signed, by reload)
#   bash bench/compare.sh workers 1 2            whatsapp_channel.listener_workers (restarts)
#   bash bench/compare.sh sql OLD.sql NEW.sql    two versions of the extension's SQL functions (each
#                                                side's file, CREATE OR REPLACE FUNCTION …, runs on the
#                                                cluster before its cells): for a change that lives in
#                                                SQL, which `builds` cannot compare on the same data
#   bash bench/compare.sh receiver               the listener against bench/receiver, the axum +
#                                                tokio-postgres webhook receiver a team would write
#                                                instead (one INSERT + pg_notify per POST, into a
#                                                table of its own; built here, release), on the
#                                                same cluster, each idle while the other runs
#   bash bench/compare.sh delivery OLD.so NEW.so the delivery worker of two builds: wa-sim
#                                                outbound-bench, OUT_MESSAGES (20,000) over OUT_CHANNELS
#                                                (4) channels at 1,000/s each to a 50 ms mock, then
#                                                200 commits/s for 10 s (COMMIT -> request latency)
#
#   ROUNDS   rounds (default 3)      SECS     seconds per cell (default 10)
#   CLIENTS  connection counts (default "1 16 64")
#   LOAD_ARGS more `wa-sim load` flags for every cell, e.g. "--batch 100 --senders 1000000" to
#            compare on the seed's load (100-message POSTs) instead
# Load: `wa-sim load`, one text message per POST from 200,000 customers, back to back.
# Prints every cell, then a markdown table: the mean of each side and B / A, in msg/s and in
# the listener workers' CPU a message (all their threads, over the messages committed: see
# listener_cpu_ticks in bench/common.sh; for the receiver, its process and its pool's backends).
#   WA_HOME, WA_PG_PORT, BENCH_CHANNEL: another cluster than run.sh's, e.g. the full database
#   bench/alternate.sh delivery leaves (/var/tmp/wa_full_new, 5497, channel scale).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
CLIENTS=${CLIENTS:-"1 16 64"}
CHANNEL=${BENCH_CHANNEL:-demo}
read -ra LOAD_EXTRA <<< "${LOAD_ARGS:-}"
MODE=${1:?usage: bench/compare.sh builds OLD.so NEW.so | sql OLD.sql NEW.sql | tls | workers N M | receiver | delivery OLD.so NEW.so}
LIB=$("$BIN/pg_config" --pkglibdir)
LISTEN=$("${PSQL[@]}" -c "SHOW whatsapp_channel.listen_address")
cargo build --release --locked -p wa-sim >&2
WA_SIM=$PWD/target/release/wa-sim

# builds and delivery bring two libraries of their own (checked below); the other modes
# measure the installed one.
[[ $MODE = builds || $MODE = delivery ]] || require_release_build "$LIB/whatsapp_channel.so"

# The CPU time of what serves side A or B, in ticks: the listener workers, except for the
# receiver mode's side B (receiver_cpu_ticks).
server_cpu_ticks() { listener_cpu_ticks; }

restart() {
  as_postgres "$BIN/pg_ctl" -D "$WA_HOME/data" -l "$WA_HOME/server.log" -w -m fast restart >/dev/null
  wait_for_listener "${1:-http}"
}

case $MODE in
  builds | delivery)
    SIDES=(A B)
    SO_A=$(realpath "${2:?give the old build (a .so)}")
    SO_B=$(realpath "${3:?give the new build (a .so)}")
    require_release_build "$SO_A"
    require_release_build "$SO_B"
    LABEL_A="$(basename "$(dirname "$SO_A")")/$(basename "$SO_A")"
    LABEL_B="$(basename "$(dirname "$SO_B")")/$(basename "$SO_B")"
    KEEP=$(mktemp)
    cp "$LIB/whatsapp_channel.so" "$KEEP"
    trap 'cp "$KEEP" "$LIB/whatsapp_channel.so"; rm -f "$KEEP"; restart' EXIT
    setup_side() {
      local so=$SO_A
      [ "$1" = B ] && so=$SO_B
      # Unlinked first: the running server has the old file mapped.
      rm -f "$LIB/whatsapp_channel.so"
      cp "$so" "$LIB/whatsapp_channel.so"
      restart
      EXTRA=()
    }
    ;;
  tls)
    SIDES=(A B)
    LABEL_A=plain
    LABEL_B=https
    make_bench_certificate
    trap tls_off EXIT
    setup_side() {
      if [ "$1" = B ]; then
        tls_on
        wait_for_listener https
        EXTRA=(--webhook-base "https://$LISTEN" --ca-file "$BENCH_CERT")
      else
        tls_off
        wait_for_listener http
        EXTRA=()
      fi
    }
    ;;
  workers)
    SIDES=(A B)
    LABEL_A="${2:?workers on side A} worker(s)"
    LABEL_B="${3:?workers on side B} worker(s)"
    W_A=$2
    W_B=$3
    trap '"${PSQL[@]}" -c "ALTER SYSTEM RESET whatsapp_channel.listener_workers" >/dev/null; restart' EXIT
    setup_side() {
      local w=$W_A
      [ "$1" = B ] && w=$W_B
      "${PSQL[@]}" -c "ALTER SYSTEM SET whatsapp_channel.listener_workers = $w" >/dev/null
      restart
      EXTRA=()
    }
    ;;
  sql)
    SIDES=(A B)
    SQL_A=$(realpath "${2:?give the old functions (a .sql file)}")
    SQL_B=$(realpath "${3:?give the new functions (a .sql file)}")
    LABEL_A=$(basename "$SQL_A")
    LABEL_B=$(basename "$SQL_B")
    setup_side() {
      local file=$SQL_A
      [ "$1" = B ] && file=$SQL_B
      "${PSQL[@]}" -f "$file" >/dev/null
      EXTRA=()
    }
    ;;
  receiver)
    SIDES=(A B)
    LABEL_A=listener
    LABEL_B=axum-receiver
    RECEIVER_LISTEN=${RECEIVER_LISTEN:-127.0.0.1:8088}
    cargo build --release --locked --manifest-path bench/receiver/Cargo.toml >&2
    read -r CHANNEL_ID APP_SECRET < <("${PSQL[@]}" -F' ' -c "SELECT c.id, s.app_secret FROM wa_channels c JOIN wa_channel_secrets s ON s.channel_id = c.id WHERE c.name = '$CHANNEL'")
    [ -n "${CHANNEL_ID:-}" ] || { echo "no channel $CHANNEL in $WA_HOME" >&2; exit 1; }
    # Its pool's backends are told apart by application_name; 16 connections, as a team would
    # size it for 16 concurrent POSTs.
    bench/receiver/target/release/axum-receiver --listen "$RECEIVER_LISTEN" --dsn "$DSN application_name=axum-receiver" \
      --app-secret "$APP_SECRET" --channel-id "$CHANNEL_ID" --pool "${RECEIVER_POOL:-16}" 2>"$WA_HOME/axum-receiver.log" &
    RECEIVER_PID=$!
    trap 'kill "$RECEIVER_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 100); do curl -s -o /dev/null "http://$RECEIVER_LISTEN/" && break; sleep 0.1; done
    kill -0 "$RECEIVER_PID" 2>/dev/null || { cat "$WA_HOME/axum-receiver.log" >&2; exit 1; }
    # The receiver's process and its backends, in ticks.
    receiver_cpu_ticks() {
      # shellcheck disable=SC2046 # one pid a word
      cpu_ticks_of "$RECEIVER_PID" $("${PSQL[@]}" -c "SELECT string_agg(pid::text, ' ') FROM pg_catalog.pg_stat_activity WHERE application_name = 'axum-receiver'")
    }
    setup_side() {
      if [ "$1" = B ]; then
        EXTRA=(--webhook-base "http://$RECEIVER_LISTEN" --stored-in bench_receiver_messages)
        server_cpu_ticks() { receiver_cpu_ticks; }
      else
        EXTRA=()
        server_cpu_ticks() { listener_cpu_ticks; }
      fi
    }
    ;;
  *)
    echo "unknown mode $MODE: builds, sql, tls, workers, receiver or delivery" >&2
    exit 1
    ;;
esac

if [ "$MODE" = delivery ]; then
  OUT_MESSAGES=${OUT_MESSAGES:-20000}
  OUT_CHANNELS=${OUT_CHANNELS:-4}
  declare -A RATES SUSTAINED CPU P99
  for round in $(seq "$ROUNDS"); do
    for side in "${SIDES[@]}"; do
      setup_side "$side"
      report=$("$WA_SIM" outbound-bench --dsn "$DSN" --latency-ms 50 --messages "$OUT_MESSAGES" \
        --channels "$OUT_CHANNELS" --rate 200 --seconds 10 2>/dev/null)
      # The throughput row: | name | committed | arrived | delivered/s | sustained/s | latency |
      rate=$(echo "$report" | awk -F'|' '/^\| throughput/ { gsub(/[ ,]/, "", $5); print $5; exit }')
      sustained=$(echo "$report" | awk -F'|' '/^\| throughput/ { gsub(/[ ,]/, "", $6); print $6; exit }')
      # The latency row's COMMIT -> request p99.
      p99=$(echo "$report" | awk -F'|' '/^\| latency/ { split($7, l, "/"); gsub(/ /, "", l[2]); print l[2]; exit }')
      main=$(echo "$report" | awk '/^throughput.*delivery worker CPU/ { for (i = 1; i <= NF; i++) if ($i == "thread") { print $(i + 1); exit } }')
      us=$(awk -v s="$main" -v n="$OUT_MESSAGES" 'BEGIN { printf "%.0f", s * 1e6 / n }')
      label=LABEL_$side
      say "round $round, ${!label}: delivered $rate msg/s over $OUT_CHANNELS channels ($sustained/s over the middle 80%), main thread $us µs/message, p99 at 200/s $p99 ms"
      RATES[$side]+=" $rate"
      SUSTAINED[$side]+=" $sustained"
      CPU[$side]+=" $us"
      P99[$side]+=" $p99"
    done
  done
  mean() { echo "$1" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.0f", s / NF }'; }
  cat <<TABLE

\`bash bench/compare.sh $*\` — $ROUNDS rounds, $(date -u), code $(git rev-parse --short HEAD), $(nproc) cores,
$("${PSQL[@]}" -c "SELECT count(*) FROM wa_messages") messages stored. $OUT_MESSAGES messages over $OUT_CHANNELS channels (1,000/s each)
to a 50 ms mock; then 200 commits/s for 10 s.

| | A: $LABEL_A | B: $LABEL_B |
|---|---:|---:|
| delivered msg/s, COMMIT to last request (runs) | $(mean "${RATES[A]}") (${RATES[A]# }) | $(mean "${RATES[B]}") (${RATES[B]# }) |
| sustained msg/s, middle 80% of arrivals (runs) | $(mean "${SUSTAINED[A]}") (${SUSTAINED[A]# }) | $(mean "${SUSTAINED[B]}") (${SUSTAINED[B]# }) |
| main thread CPU per message, µs (runs) | $(mean "${CPU[A]}") (${CPU[A]# }) | $(mean "${CPU[B]}") (${CPU[B]# }) |
| COMMIT → request p99 at 200/s, ms (runs) | ${P99[A]# } | ${P99[B]# } |
TABLE
  exit 0
fi

declare -A SUM N CPU_SUM
for round in $(seq "$ROUNDS"); do
  for side in "${SIDES[@]}"; do
    setup_side "$side"
    for c in $CLIENTS; do
      ticks0=$(server_cpu_ticks)
      line=$("$WA_SIM" load --dsn "$DSN" --channel "$CHANNEL" --concurrency "$c" --seconds "$SECS" "${EXTRA[@]}" "${LOAD_EXTRA[@]}")
      ticks1=$(server_cpu_ticks)
      rate=$(echo "$line" | tr ' ' '\n' | awk -F= '$1 == "committed_per_s" { print $2 }')
      committed=$(echo "$line" | tr ' ' '\n' | awk -F= '$1 == "committed" { print $2 }')
      # µs of the side's server CPU (see server_cpu_ticks) per message committed.
      cpu=$(awk -v t="$((ticks1 - ticks0))" -v n="$committed" 'BEGIN { printf "%.0f", (n > 0 ? t * 10000 / n : 0) }')
      non200=$(echo "$line" | tr ' ' '\n' | awk -F= '$1 == "non_200" || $1 == "transport_errors" { n += $2 } END { print n }')
      p99=$(echo "$line" | tr ' ' '\n' | awk -F= '$1 == "http_p99_ms" { print $2 }')
      label=LABEL_$side
      say "round $round, ${!label}, $c connections: $rate msg/s, $cpu µs of server CPU a message, HTTP p99 $p99 ms, $non200 not 200"
      SUM[$side$c]=$(( ${SUM[$side$c]:-0} + rate ))
      CPU_SUM[$side$c]=$(( ${CPU_SUM[$side$c]:-0} + cpu ))
      N[$side$c]=$(( ${N[$side$c]:-0} + 1 ))
    done
  done
done

cat <<EOF

\`bash bench/compare.sh $*\` — $ROUNDS rounds of ${SECS} s per cell, $(date -u), code $(git rev-parse --short HEAD),
$(nproc) cores, $("${PSQL[@]}" -c "SELECT count(*) FROM wa_messages") messages stored at the end.${LOAD_ARGS:+ Load flags: \`$LOAD_ARGS\`.}

| connections | A: $LABEL_A (msg/s) | B: $LABEL_B (msg/s) | B / A | A: server CPU µs/msg | B: server CPU µs/msg | B / A |
|---|---:|---:|---:|---:|---:|---:|
EOF
for c in $CLIENTS; do
  a=$(( SUM[A$c] / N[A$c] ))
  b=$(( SUM[B$c] / N[B$c] ))
  ca=$(( CPU_SUM[A$c] / N[A$c] ))
  cb=$(( CPU_SUM[B$c] / N[B$c] ))
  echo "| $c | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }') | $ca | $cb | $(awk -v a="$ca" -v b="$cb" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }') |"
done
