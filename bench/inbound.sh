#!/usr/bin/env bash
# Inbound benchmark (issue 4): how many signed single-message webhooks per second the listener
# verifies, commits and notifies, against Postgres' own ceiling for the same work on this
# machine. Needs the local cluster of `bash scripts/run.sh` (up, with the demo channel).
#
#   1. pgbench, prepared: one INSERT ... ON CONFLICT DO NOTHING + pg_notify per transaction,
#      at 1, 16 and 64 clients (-j 2): what one message per commit can reach here.
#   2. wa-sim load: 1, 16 and 64 keep-alive connections posting signed text webhooks with
#      unique wamids, from 200,000 customers, as fast as they are answered; then 16
#      connections at a steady 1,000/s for the POST -> NOTIFY latency target.
#   3. The same 1, 16 and 64 over https: a self-signed certificate (openssl) is set in
#      whatsapp_channel.tls_cert_file / tls_key_file for the run, then unset again.
#   4. The listener's memory with 1,000 idle connections open.
#
# Prints a markdown table. Leaves the wa_messages rows of the run (wamids 'wamid.LOAD.%') in
# place; drops its own table bench_ceiling.
#   WA_HOME        the cluster's directory         (default /var/tmp/whatsapp_channel)
#   WA_PG_PORT     its port                        (default 5499)
#   BENCH_SECONDS  seconds per cell                (default 15)
#   BENCH_CLIENTS  client counts                   (default "1 16 64")
#   BENCH_RATE     the steady rate of the last row (default 1000; 0 skips it)
#   BENCH_CHANNEL  the channel posted to           (default demo)
#   BENCH_TLS      1 runs the https cells          (default 1)
#   BENCH_IDLE     idle connections for the memory reading (default 1000; 0 skips it)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-15}
CLIENTS=${BENCH_CLIENTS:-"1 16 64"}
RATE=${BENCH_RATE:-1000}
CHANNEL=${BENCH_CHANNEL:-demo}
TLS=${BENCH_TLS:-1}
IDLE=${BENCH_IDLE:-1000}
. bench/common.sh
"${PSQL[@]}" -c "SELECT 1 FROM wa_channels WHERE name = '$CHANNEL'" | grep -q 1 \
  || { echo "no channel '$CHANNEL': bash scripts/run.sh creates 'demo'" >&2; exit 1; }

require_release_build

say "building wa-sim (release)"
cargo build --release --locked -p wa-sim >&2
WA_SIM=$PWD/target/release/wa-sim

# The listener of *this* cluster (another cluster on the machine may have one too).
listener_pid() {
  local postmaster
  postmaster=$(head -1 "$WA_HOME/data/postmaster.pid")
  ps -o pid=,args= --ppid "$postmaster" | awk '/whatsapp_channel webhook listener/ { print $1; exit }'
}
# VmRSS counts the shared buffers the process has touched (RssShmem); RssAnon is its own memory.
rss() { awk '/^(VmRSS|RssAnon|RssShmem)/ { v[$1] = $2 } END { printf "VmRSS %d kB (RssAnon %d kB, RssShmem %d kB)", v["VmRSS:"], v["RssAnon:"], v["RssShmem:"] }' "/proc/$(listener_pid)/status"; }

LISTENER=$(listener_pid)
[ -n "$LISTENER" ] || { echo "no webhook listener process under the postmaster of $WA_HOME" >&2; exit 1; }
RSS_BEFORE=$(rss)
LOG_START=$(log_lines)
ROWS_BEFORE=$("${PSQL[@]}" -c "SELECT count(*) FROM wa_messages")
say "listener pid $LISTENER, $RSS_BEFORE; wa_messages has $ROWS_BEFORE rows"

# --- 1. pgbench: Postgres' own INSERT + NOTIFY ceiling -----------------------------------------
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; "${PSQL[@]}" -c "DROP TABLE IF EXISTS bench_ceiling" >/dev/null 2>&1 || true' EXIT
"${PSQL[@]}" -c "CREATE TABLE IF NOT EXISTS bench_ceiling (id bigserial PRIMARY KEY, wamid text UNIQUE, body text)"
insert_notify_script >"$WORK/insert_notify.sql"

declare -A PGB_TPS PGB_ROWS PGB_LAT
for c in $CLIENTS; do
  "${PSQL[@]}" -c "TRUNCATE bench_ceiling" -c "CHECKPOINT"
  say "pgbench INSERT + pg_notify, $c clients, ${SECS}s"
  out=$("$BIN/pgbench" -h "$WA_HOME" -p "$WA_PG_PORT" -U postgres -n -M prepared -c "$c" -j 2 -T "$SECS" \
    -D n=0 -D run="$$" -f "$WORK/insert_notify.sql" postgres 2>&1) || { echo "$out" >&2; exit 1; }
  PGB_TPS[$c]=$(echo "$out" | awk '/^tps = / { printf "%.0f", $3; exit }')
  PGB_LAT[$c]=$(echo "$out" | awk '/^latency average/ { print $4; exit }')
  PGB_ROWS[$c]=$("${PSQL[@]}" -c "SELECT count(*) FROM bench_ceiling")
  say "  tps ${PGB_TPS[$c]}, latency average ${PGB_LAT[$c]} ms, ${PGB_ROWS[$c]} rows"
done
"${PSQL[@]}" -c "DROP TABLE bench_ceiling"

# --- 2. wa-sim load: the listener ----------------------------------------------------------------
declare -A LOAD
run_load() { # key, then wa-sim load flags
  local key=$1
  shift
  "${PSQL[@]}" -c "CHECKPOINT"
  say "wa-sim load $*, ${SECS}s"
  LOAD[$key]=$("$WA_SIM" load --dsn "$DSN" --channel "$CHANNEL" --seconds "$SECS" "$@")
  say "  ${LOAD[$key]}"
}
for c in $CLIENTS; do run_load "$c" --concurrency "$c"; done
if [ "$RATE" != 0 ]; then run_load rate --concurrency 16 --rate "$RATE"; fi
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

# --- 3. the same over https ------------------------------------------------------------------------
LISTEN=$("${PSQL[@]}" -c "SHOW whatsapp_channel.listen_address")
if [ "$TLS" = 1 ]; then
  say "https: a self-signed certificate for 127.0.0.1 in $WA_HOME"
  make_bench_certificate
  trap 'tls_off; rm -rf "$WORK"; "${PSQL[@]}" -c "DROP TABLE IF EXISTS bench_ceiling" >/dev/null 2>&1 || true' EXIT
  tls_on
  wait_for_listener https
  for c in $CLIENTS; do
    run_load "tls$c" --concurrency "$c" --webhook-base "https://$LISTEN" --ca-file "$BENCH_CERT"
  done
  tls_off
fi

# --- 4. memory with idle connections -------------------------------------------------------------
RSS_IDLE=skipped
if [ "$IDLE" != 0 ]; then
  RSS_IDLE_BEFORE=$(rss)
  # Opens them, says so through the fifo, holds them 5 s (the listener closes idle ones after 10 s).
  mkfifo "$WORK/idle"
  python3 - "$LISTEN" "$IDLE" "$WORK/idle" <<'PY' &
import resource, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
conns = [socket.create_connection((host, int(port))) for _ in range(int(sys.argv[2]))]
open(sys.argv[3], "w").write("open\n")
time.sleep(5)
PY
  read -r _ <"$WORK/idle"
  sleep 1
  RSS_IDLE="$(rss) with $IDLE idle connections open; before them: $RSS_IDLE_BEFORE"
  wait
fi

RSS_AFTER=$(rss)
read_log_since "$LOG_START"

# --- report ----------------------------------------------------------------------------------------
fmt() { printf "%'d" "$1" 2>/dev/null || echo "$1"; }
cat <<EOF

## Inbound webhooks

\`bash bench/inbound.sh\` — ${SECS} s per cell, one run.

- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)
- $("${PSQL[@]}" -c "SELECT version()" | cut -d, -f1); fsync $("${PSQL[@]}" -c "SHOW fsync"), synchronous_commit $("${PSQL[@]}" -c "SHOW synchronous_commit")
- date: $(date -u)
- code: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src sql 2>/dev/null || echo " (with uncommitted changes in src/ or sql/)")

| connections | pgbench INSERT + NOTIFY (msg/s) | listener: committed msg/s | 200 | non-200 | POST→NOTIFY p50 / p99 (ms) | HTTP answer p50 / p99 (ms) |
|---|---:|---:|---:|---:|---:|---:|
EOF
for c in $CLIENTS; do
  l=${LOAD[$c]}
  echo "| $c | $(fmt "${PGB_TPS[$c]}") | $(fmt "$(field "$l" committed_per_s)") | $(fmt "$(field "$l" ok_200)") | $(($(field "$l" non_200) + $(field "$l" transport_errors))) | $(field "$l" notify_p50_ms) / $(field "$l" notify_p99_ms) | $(field "$l" http_p50_ms) / $(field "$l" http_p99_ms) |"
done
if [ "$RATE" != 0 ]; then
  l=${LOAD[rate]}
  echo "| 16, steady $(fmt "$RATE")/s | — | $(fmt "$(field "$l" committed_per_s)") | $(fmt "$(field "$l" ok_200)") | $(($(field "$l" non_200) + $(field "$l" transport_errors))) | $(field "$l" notify_p50_ms) / $(field "$l" notify_p99_ms) | $(field "$l" http_p50_ms) / $(field "$l" http_p99_ms) |"
fi
if [ "$TLS" = 1 ]; then
  for c in $CLIENTS; do
    l=${LOAD[tls$c]}
    echo "| $c, https | — | $(fmt "$(field "$l" committed_per_s)") | $(fmt "$(field "$l" ok_200)") | $(($(field "$l" non_200) + $(field "$l" transport_errors))) | $(field "$l" notify_p50_ms) / $(field "$l" notify_p99_ms) | $(field "$l" http_p50_ms) / $(field "$l" http_p99_ms) |"
  done
fi
cat <<EOF

Non-200 counts HTTP answers other than 200 and POSTs with no answer at all. Slowest single
POST -> NOTIFY per row (ms): $(for c in $CLIENTS; do printf '%s: %s; ' "$c" "$(field "${LOAD[$c]}" notify_max_ms)"; done)$([ "$RATE" != 0 ] && printf 'steady: %s' "$(field "${LOAD[rate]}" notify_max_ms)").

Listener memory: $RSS_BEFORE before; $RSS_AFTER after the load. $RSS_IDLE. Server log during the run: $(echo "$NEW_LOG" | grep -c . || true) new lines, $LOG_PROBLEMS WARNING/ERROR/FATAL/PANIC.

Raw wa-sim lines:
\`\`\`
EOF
for c in $CLIENTS; do echo "${LOAD[$c]}"; done
if [ "$RATE" != 0 ]; then echo "${LOAD[rate]}"; fi
if [ "$TLS" = 1 ]; then for c in $CLIENTS; do echo "https ${LOAD[tls$c]}"; done; fi
echo '```'
print_log_problems
