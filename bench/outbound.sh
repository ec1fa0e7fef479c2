#!/usr/bin/env bash
# Outbound benchmark (issue 5): how fast the delivery worker gets queued messages to the Graph
# API, and what queueing one costs. Needs the local cluster of `bash scripts/run.sh` (up, with
# `wa-sim graph` on 127.0.0.1:8090 as its graph_api_url).
#
#   1. wa-sim outbound-bench --latency-ms 50: a mock Graph API that answers in 50 ms, in the
#      wa-sim process; graph_api_url points at it for the run only (put back afterwards).
#      (a) N messages over OUT_CHANNELS channels queued in one transaction: delivered messages/s;
#      (b) R messages/s, each its own transaction: COMMIT -> request arrival p50 / p99 / max.
#   2. pgbench, prepared, 8 clients, -j 2: wa_send_text() versus a plain INSERT of the same row
#      into wa_messages (the issue's target: wa_send_text at most 1.5x its cost), and versus
#      the same INSERT into bench_plain_outbox, a bare table with one index (what a hand-made
#      outbox would cost). wa_send_text is run twice: with channel bench_out
#      paused (queued only: the cost of the call and its commit), and sending, as in production:
#      the delivery worker sends to graph_api_url (wa-sim graph on :8090, which posts sent /
#      delivered / read webhooks back to the listener) during the run.
#   3. 10,000 single-row calls of each (plain INSERT, the same INSERT into wa_messages,
#      wa_send_text) in one rolled-back transaction: CPU per call without commit or worker.
#
# Prints markdown. Deletes the messages of channel bench_out afterwards (and the status rows
# wa-sim graph posted for them), drops bench_plain_outbox; keeps the channel.
#   WA_HOME        the cluster's directory                    (default /var/tmp/whatsapp_channel)
#   WA_PG_PORT     its port                                   (default 5499)
#   OUT_MESSAGES   messages of part (a)                       (default 10000)
#   OUT_RATE       messages/s of part (b)                     (default 200)
#   OUT_SECONDS    seconds of part (b)                        (default 10)
#   OUT_LATENCY_MS the mock's answer time                     (default 50)
#   OUT_CHANNELS   channels part (a) spreads over, each 1,000/s (default 4: a business with
#                  several numbers; Meta allows each up to 1,000 messages/s)
#   PGB_SECONDS    seconds per pgbench run                    (default 15)
#   PGB_CLIENTS    pgbench clients                            (default 8)
#   PGB_PAUSED     also run wa_send_text with bench_out paused (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${OUT_MESSAGES:-10000}
RATE=${OUT_RATE:-200}
SECONDS_B=${OUT_SECONDS:-10}
LATENCY_MS=${OUT_LATENCY_MS:-50}
CHANNELS=${OUT_CHANNELS:-4}
PGB_SECS=${PGB_SECONDS:-15}
PGB_CLIENTS=${PGB_CLIENTS:-8}
PGB_PAUSED=${PGB_PAUSED:-1}
. bench/common.sh

require_release_build

say "building wa-sim (release)"
cargo build --release --locked -p wa-sim >&2
WA_SIM=$PWD/target/release/wa-sim

LOG_START=$(log_lines)
URL_BEFORE=$("${PSQL[@]}" -c "SHOW whatsapp_channel.graph_api_url")
say "graph_api_url is $URL_BEFORE"
DATE=$(date -u)
WORK=$(mktemp -d)

bench_out_messages() { "${PSQL[@]}" -c "SELECT count(*) FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = 'bench_out'"; }
delete_bench_out() {
  # Not while the delivery worker records answers for them (a DELETE of every row and the
  # worker's UPDATEs can deadlock, which costs the worker a second each time): wait until none
  # is in flight. A deadlock all the same is retried.
  local try
  for try in $(seq 100); do
    [ "$("${PSQL[@]}" -c "SELECT count(*) FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = 'bench_out' AND m.status = 'sending'")" = 0 ] && break
    sleep 0.1
  done
  for try in 1 2 3 4 5; do
    "${PSQL[@]}" -c "DELETE FROM wa_messages m USING wa_channels c WHERE c.id = m.channel_id AND c.name = 'bench_out'" \
      -c "DELETE FROM wa_message_statuses s USING wa_channels c WHERE c.id = s.channel_id AND c.name = 'bench_out'" && return
    sleep 1
  done
  return 1
}
pause_bench_out() { "${PSQL[@]}" -c "UPDATE wa_channels SET paused_at = now(), paused_reason = 'bench/outbound.sh' WHERE name = 'bench_out'"; }
resume_bench_out() { "${PSQL[@]}" -c "UPDATE wa_channels SET paused_at = NULL, paused_reason = NULL WHERE name = 'bench_out'"; }
cleanup() {
  rm -rf "$WORK"
  # wa-sim puts the setting back itself; this is for a wa-sim that was killed.
  if [ "$("${PSQL[@]}" -c "SHOW whatsapp_channel.graph_api_url" 2>/dev/null)" != "$URL_BEFORE" ]; then
    "${PSQL[@]}" -c "ALTER SYSTEM SET whatsapp_channel.graph_api_url = '$URL_BEFORE'" -c "SELECT pg_reload_conf()" >/dev/null || true
  fi
  "${PSQL[@]}" -c "UPDATE wa_channels SET paused_at = NULL, paused_reason = NULL WHERE name = 'bench_out' AND paused_reason = 'bench/outbound.sh'" \
    -c "DROP TABLE IF EXISTS bench_plain_outbox" >/dev/null 2>&1 || true
  delete_bench_out >/dev/null 2>&1 || true
}
trap cleanup EXIT

# --- 1. delivery rate and latency to a 50 ms mock ------------------------------------------------
"${PSQL[@]}" -c "CHECKPOINT"
say "wa-sim outbound-bench --latency-ms $LATENCY_MS --messages $MESSAGES --rate $RATE --seconds $SECONDS_B --channels $CHANNELS"
"$WA_SIM" outbound-bench --dsn "$DSN" --latency-ms "$LATENCY_MS" --messages "$MESSAGES" --rate "$RATE" --channels "$CHANNELS" \
  --seconds "$SECONDS_B" >"$WORK/outbound.md"
cat "$WORK/outbound.md" >&2
URL_AFTER=$("${PSQL[@]}" -c "SHOW whatsapp_channel.graph_api_url")
[ "$URL_AFTER" = "$URL_BEFORE" ] || { echo "graph_api_url is $URL_AFTER after wa-sim, not $URL_BEFORE" >&2; exit 1; }

# --- 2. pgbench: wa_send_text versus a plain INSERT ----------------------------------------------
"${PSQL[@]}" -c "DROP TABLE IF EXISTS bench_plain_outbox" -c "CREATE TABLE bench_plain_outbox (
    id bigserial PRIMARY KEY, channel_id bigint, direction text, type text, body text, status text,
    recipient text, payload jsonb, next_attempt_at timestamptz, created_at timestamptz DEFAULT now())"
CHANNEL_ID=$("${PSQL[@]}" -c "SELECT id FROM wa_channels WHERE name = 'bench_out'")
cat >"$WORK/plain.sql" <<SQL
INSERT INTO bench_plain_outbox (channel_id, direction, type, body, status, recipient, payload, next_attempt_at)
SELECT $CHANNEL_ID, 'outbound', 'text', 'pgbench', 'queued', r.to_,
       jsonb_build_object('messaging_product', 'whatsapp', 'recipient_type', 'individual', 'to', r.to_, 'type', 'text',
                          'text', jsonb_build_object('preview_url', false, 'body', 'pgbench')),
       now()
  FROM (SELECT '+1555' || lpad((random()*1e7)::int::text, 7, '0') AS to_) r;
SQL
sed 's/INSERT INTO bench_plain_outbox/INSERT INTO wa_messages/' "$WORK/plain.sql" >"$WORK/same_row.sql"
cat >"$WORK/send.sql" <<'SQL'
SELECT wa_send_text('bench_out', '+1555' || lpad((random()*1e7)::int::text, 7, '0'), 'pgbench');
SQL

# CPU seconds (all threads) of a process: this cluster's worker by backend_type, or a pid.
cpu_of() {
  local pid=$1
  case $pid in *[!0-9]*) pid=$("${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = '$1'") ;; esac
  [ -n "$pid" ] || { echo 0; return; }
  awk -v t="$(cpu_ticks_of "$pid")" 'BEGIN { printf "%.2f", t / 100 }'
}
SIM_PID=$(cat "$WA_HOME/wa-sim.pid" 2>/dev/null || echo none)
declare -A TPS LAT ROWS CPU
pgb() { # key, script
  "${PSQL[@]}" -c "CHECKPOINT"
  say "pgbench $1: $PGB_CLIENTS clients, ${PGB_SECS}s"
  local out w0 l0 s0
  w0=$(cpu_of "whatsapp_channel delivery") l0=$(cpu_of "whatsapp_channel webhook listener") s0=$(cpu_of "$SIM_PID")
  out=$("$BIN/pgbench" -h "$WA_HOME" -p "$WA_PG_PORT" -U postgres -n -M prepared -c "$PGB_CLIENTS" -j 2 -T "$PGB_SECS" \
    -f "$2" postgres 2>&1) || { echo "$out" >&2; exit 1; }
  TPS[$1]=$(echo "$out" | awk '/^tps = / { printf "%.0f", $3; exit }')
  LAT[$1]=$(echo "$out" | awk '/^latency average/ { print $4; exit }')
  CPU[$1]=$(awk -v s="$PGB_SECS" -v w="$(cpu_of "whatsapp_channel delivery")" -v w0="$w0" \
    -v l="$(cpu_of "whatsapp_channel webhook listener")" -v l0="$l0" -v m="$(cpu_of "$SIM_PID")" -v m0="$s0" \
    'BEGIN { printf "%.0f%% / %.0f%% / %.0f%%", (w - w0) / s * 100, (l - l0) / s * 100, (m - m0) / s * 100 }')
  say "  tps ${TPS[$1]}, latency average ${LAT[$1]} ms; CPU delivery worker / listener / wa-sim graph ${CPU[$1]}"
}

pgb plain "$WORK/plain.sql"
ROWS[plain]=$("${PSQL[@]}" -c "SELECT count(*) FROM bench_plain_outbox")
# Rows INSERTed as 'queued' are real outbound messages: the channel is paused so that the
# delivery worker leaves them alone, as a hand-made outbox would have no sender either.
delete_bench_out
pause_bench_out
pgb same_row "$WORK/same_row.sql"
ROWS[same_row]=$(bench_out_messages)
delete_bench_out
resume_bench_out

delete_bench_out
if [ "$PGB_PAUSED" = 1 ]; then
  pause_bench_out
  pgb paused "$WORK/send.sql"
  ROWS[paused]=$(bench_out_messages)
  # Deleted before the channel resumes, so that the worker does not start sending them.
  delete_bench_out
  resume_bench_out
fi

say "graph_api_url is $("${PSQL[@]}" -c "SHOW whatsapp_channel.graph_api_url") for the sending run"
pgb sending "$WORK/send.sql"
ROWS[sending]=$(bench_out_messages)
BACKLOG=$("${PSQL[@]}" -c "SELECT string_agg(status || ' ' || n, ', ' ORDER BY status) FROM (
  SELECT m.status, count(*) AS n FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id
   WHERE c.name = 'bench_out' GROUP BY 1) s")
say "  right after the run: $BACKLOG; deleting them"
pause_bench_out # (put back by cleanup)
delete_bench_out
# wa-sim graph keeps posting sent/delivered/read webhooks for what it accepted: wait (bounded)
# until they stop, so the next benchmark does not run beside them, and delete them too.
statuses() { "${PSQL[@]}" -c "SELECT count(*) FROM wa_message_statuses s JOIN wa_channels c ON c.id = s.channel_id WHERE c.name = 'bench_out'"; }
prev=-1
for _ in $(seq 120); do
  sleep 3
  now=$(statuses)
  [ "$now" = "$prev" ] && break
  prev=$now
done
say "  $prev status webhooks of bench_out stored after the run; deleting them"
delete_bench_out

# --- 3. the same writes without COMMIT and without the worker ---------------------------------------
# 10,000 single-row statements each, in one transaction that is rolled back (no fsync, and a
# rolled-back wa_send_text wakes nobody): the CPU cost of the call itself, per row.
say "per-call cost: 10,000 calls each, rolled back"
# One DO block that runs a statement 10,000 times (r: a random recipient) and reports µs per row.
per_call_block() { # label, statement
  cat <<SQL
DO \$\$ DECLARE t timestamptz := clock_timestamp(); r text; BEGIN
  FOR i IN 1..10000 LOOP
    r := '+1555' || lpad((random()*1e7)::int::text, 7, '0');
    $2;
  END LOOP;
  RAISE NOTICE '$1|%', round(extract(epoch FROM clock_timestamp() - t)::numeric * 100, 1);
END \$\$;
SQL
}
ROW_VALUES="VALUES ($CHANNEL_ID, 'outbound', 'text', 'pgbench', 'queued', r,
            jsonb_build_object('messaging_product', 'whatsapp', 'recipient_type', 'individual', 'to', r, 'type', 'text',
                               'text', jsonb_build_object('preview_url', false, 'body', 'pgbench')), now())"
COLUMNS="(channel_id, direction, type, body, status, recipient, payload, next_attempt_at)"
PER_CALL=$({
  echo "BEGIN;"
  per_call_block plain "INSERT INTO bench_plain_outbox $COLUMNS $ROW_VALUES"
  per_call_block wa_messages "INSERT INTO wa_messages $COLUMNS $ROW_VALUES"
  per_call_block wa_send_text "PERFORM wa_send_text('bench_out', r, 'pgbench')"
  echo "ROLLBACK;"
} | "${PSQL[@]}" 2>&1 | sed -n 's/.*NOTICE:  //p')
per_call() { echo "$PER_CALL" | awk -F'|' -v k="$1" '$1 == k { print $2 }'; }
say "  µs per row: plain $(per_call plain), INSERT into wa_messages $(per_call wa_messages), wa_send_text $(per_call wa_send_text)"
"${PSQL[@]}" -c "DROP TABLE bench_plain_outbox"

read_log_since "$LOG_START"

# --- report ----------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "—" }'; }
fmt() { printf "%'d" "$1" 2>/dev/null || echo "$1"; }
cat <<EOF

## Outbound delivery

\`bash bench/outbound.sh\`

- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)
- $("${PSQL[@]}" -c "SELECT version()" | cut -d, -f1); fsync $("${PSQL[@]}" -c "SHOW fsync"), synchronous_commit $("${PSQL[@]}" -c "SHOW synchronous_commit")
- date: $DATE
- code: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src sql 2>/dev/null || echo " (with uncommitted changes in src/ or sql/)")

$(cat "$WORK/outbound.md")

| pgbench, $PGB_CLIENTS clients, -M prepared, ${PGB_SECS} s | tps | latency avg (ms) | rows | cost vs INSERT of the same row into wa_messages | cost vs INSERT into a bare table | CPU: delivery worker / listener / wa-sim graph |
|---|---:|---:|---:|---:|---:|---:|
| INSERT into bench_plain_outbox (bare table) | $(fmt "${TPS[plain]}") | ${LAT[plain]} | $(fmt "${ROWS[plain]}") | $(ratio "${TPS[same_row]}" "${TPS[plain]}") | 1.00× | ${CPU[plain]} |
| INSERT of the same row into wa_messages | $(fmt "${TPS[same_row]}") | ${LAT[same_row]} | $(fmt "${ROWS[same_row]}") | 1.00× | $(ratio "${TPS[plain]}" "${TPS[same_row]}") | ${CPU[same_row]} |
EOF
if [ "$PGB_PAUSED" = 1 ]; then
  echo "| wa_send_text, channel paused (queued only) | $(fmt "${TPS[paused]}") | ${LAT[paused]} | $(fmt "${ROWS[paused]}") | $(ratio "${TPS[same_row]}" "${TPS[paused]}") | $(ratio "${TPS[plain]}" "${TPS[paused]}") | ${CPU[paused]} |"
fi
echo "| wa_send_text, delivery worker sending to wa-sim graph ($URL_BEFORE) | $(fmt "${TPS[sending]}") | ${LAT[sending]} | $(fmt "${ROWS[sending]}") | $(ratio "${TPS[same_row]}" "${TPS[sending]}") | $(ratio "${TPS[plain]}" "${TPS[sending]}") | ${CPU[sending]} |"
cat <<EOF

| one statement per row, 10,000 rows in one rolled-back transaction | µs per row | vs plain INSERT |
|---|---:|---:|
| plain INSERT into bench_plain_outbox | $(per_call plain) | 1.00× |
| the same INSERT into wa_messages | $(per_call wa_messages) | $(ratio "$(per_call wa_messages)" "$(per_call plain)") |
| wa_send_text | $(per_call wa_send_text) | $(ratio "$(per_call wa_send_text)" "$(per_call plain)") |

Cost = INSERT tps ÷ wa_send_text tps. CPU: share of one core each process used during
the pgbench run ($(nproc) cores in all). Sending run, bench_out messages right after pgbench
ended: $BACKLOG; then $prev status webhooks from wa-sim graph were stored before they stopped.
Server log during the run: $(echo "$NEW_LOG" | grep -c . || true) new lines, $LOG_PROBLEMS WARNING/ERROR/FATAL/PANIC.
EOF
print_log_problems
