#!/usr/bin/env bash
# Scale benchmark (issue 10): does a webhook cost the same on a year of traffic as on an empty
# database? One run measures the same phase twice, on its own fresh cluster:
#
#   phase A   on the empty database;
#   seed      SCALE_SEED_MESSAGES messages (2,000,000) from SCALE_SEED_SENDERS customers
#             (1,000,000), through the webhook listener in 100-message POSTs; then, the same way,
#             SCALE_OTHER_SHARE (10%) of both into a second channel, scale_other, with customers
#             of its own; then VACUUM ANALYZE, CHECKPOINT and a wait (up to 300 s) for
#             autovacuum to go idle;
#   phase B   the same as A, on the full database (pg_stat_reset() first: its scans are counted).
#
# Each phase:
#   (vi) pgbench INSERT + pg_notify, one message per commit, at 16 and 64 clients: Postgres' own
#        ceiling on this machine for the listener's work (as bench/inbound.sh);
#   (i)  wa-sim load at 16 and 64 connections, 1 message per POST, from 200,000 customers (5%
#        new ones), SCALE_SECONDS each: committed messages/s, POST -> NOTIFY, HTTP answer, WAL
#        per message and the checkpoints that ended during the step;
#   (ii) POST -> NOTIFY at a steady 1,000 messages/s (16 connections);
#   (iii) p50 / p99 of the inbox's reads, each a prepared statement run 100 times in one psql
#        session as the inbox role SCALE_AS_ROLE, timed by psql's \timing (client-side, round
#        trip included; one untimed run first): the conversation list, one contact's history
#        (100 random contacts that have messages), the unread list (these three of the bench
#        channel, as an inbox asks for them), and "all my conversations" (the latest 50 of every
#        channel the role can see: no channel filter). A read slower than
#        SCALE_QUERY_BUDGET / 100 gets fewer runs (at least 5; the report says how many);
#   (iv) pgbench, 8 clients, as SCALE_AS_ROLE: wa_send_text() to customers whose 24-hour window
#        is open (channel paused, so nothing is sent) beside a plain INSERT of the same row into
#        a one-index table; the queued rows are deleted afterwards;
#   (v)  wa-sim outbound-bench --latency-ms 50 --messages 10000: delivery rate to a 50 ms mock
#        Graph API, and COMMIT -> request at 200 commits/s (it points graph_api_url at itself
#        for the run and puts it back).
# Also: the listener's RssAnon at start, after the seed and at the end; the extension's
# relations over 1 MB; seq_scan / seq_tup_read of wa_contacts and wa_messages per step of phase
# B; EXPLAIN (ANALYZE, BUFFERS) of the four reads on the full database, as SCALE_AS_ROLE; how
# many conversations of each channel that role sees, against the owner.
#
# Roles: the reads (iii) and the enqueue (iv) connect as SCALE_AS_ROLE (wa_bench_agent), a
# LOGIN role with SELECT on the extension's tables and views and EXECUTE on wa_send_text (the
# same on both builds bench/alternate.sh compares), plus SELECT / INSERT on the bench's own
# helper tables; a second such role, wa_bench_other, is made for scale_other. If the installed
# extension has wa_grant_channel, the roles get 'send' on their channel (wa_bench_agent
# on scale before phase A, wa_bench_other on scale_other when the seed makes it), so its
# row-level security filters what the reads see; a build without it is measured without
# (the report says which). The ingest (i, ii), the seed, the delivery (v) and pgbench (vi) run
# as the owner `postgres`, as the listener and the delivery worker do. SCALE_AS_ROLE= (empty)
# runs everything as the owner, as before.
#
# Needs the extension built and installed for PostgreSQL $PG_MAJOR (15 by default; 18: the
# wheel's in PG18_HOME, see scripts/pg.sh): `bash scripts/run.sh` does it, or
# `cargo pgrx install --release --no-default-features --features pg15 --pg-config
# /usr/lib/postgresql/15/bin/pg_config`; BENCH_INSTALL=1 makes this script run the latter (for
# $PG_MAJOR) first; a debug build, which the tests and CI install, is refused. Run as root (the
# cluster belongs to `postgres`, via runuser) or as postgres. Everything talks to 127.0.0.1 or
# a unix socket only.
#
# Prints a markdown report on stdout (also written to target/bench-scale-<date>.md), progress
# on stderr. With the defaults it takes about 20-30 minutes on 2 cores (longer if the seed
# runs below ~10,000 messages/s; it prints progress every 10 s). The cluster is created anew
# every run (the previous one in WA_SCALE_HOME is deleted) and stopped at the end.
#
#   WA_SCALE_HOME          the cluster's directory                       (default /var/tmp/wa_scale)
#   SCALE_PORT             its port (unix socket only)                   (default 5497)
#   SCALE_LISTEN           the webhook listener's address                (default 127.0.0.1:8087)
#   SCALE_SIM_PORT         port of the wa-sim graph mock (graph_api_url) (default 8097)
#   SCALE_SEED_MESSAGES    messages stored by the seed                   (default 2000000)
#   SCALE_SEED_SENDERS     customers of the seed                         (default 1000000)
#   SCALE_SEED_BATCH       messages per POST of the seed                 (default 100)
#   SCALE_SEED_CONCURRENCY connections of the seed                       (default 8)
#   SCALE_SEED_MAX_SECONDS upper bound of the seed's time                (default 3600)
#   SCALE_OTHER_SHARE      scale_other's seed, a share of the seed's     (default 0.1; 0: the channel is empty)
#                          messages and customers
#   SCALE_SECONDS          seconds per load / pgbench cell               (default 15)
#   SCALE_CLIENTS          connections of (i) and (vi)                   (default "16 64")
#   SCALE_SENDERS          customers of the phases' traffic              (default 200000)
#   SCALE_NEW_SHARE        share of messages from new customers          (default 0.05)
#   SCALE_RATE             steady messages/s of (ii); 0 skips it         (default 1000)
#   SCALE_QUERY_RUNS       runs per read query                           (default 100)
#   SCALE_QUERY_BUDGET     seconds one read query may take in all        (default 60)
#   SCALE_PGB_CLIENTS      pgbench clients of (iv)                       (default 8)
#   SCALE_OUT_MESSAGES     messages of (v); 0 skips (v)                  (default 10000)
#   SCALE_SHARED_BUFFERS   shared_buffers                                (default 2GB)
#   SCALE_LISTENER_WORKERS whatsapp_channel.listener_workers             (default: the setting's default)
#   SCALE_AS_ROLE          the inbox role of (iii) and (iv)              (default wa_bench_agent; empty: the owner)
#   PG_MAJOR               15 or 18, as scripts/run.sh                   (default 15)
#   SCALE_KEEP=1           leave the cluster running at the end (stop: pg_ctl -D $WA_SCALE_HOME/data stop)
#   BENCH_INSTALL=1        cargo pgrx install --release first
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
WA_SCALE_HOME=${WA_SCALE_HOME:-/var/tmp/wa_scale}
SCALE_PORT=${SCALE_PORT:-5497}
SCALE_LISTEN=${SCALE_LISTEN:-127.0.0.1:8087}
SCALE_SIM_PORT=${SCALE_SIM_PORT:-8097}
SEED_MESSAGES=${SCALE_SEED_MESSAGES:-2000000}
SEED_SENDERS=${SCALE_SEED_SENDERS:-1000000}
SEED_BATCH=${SCALE_SEED_BATCH:-100}
SEED_CONCURRENCY=${SCALE_SEED_CONCURRENCY:-8}
SEED_MAX_SECONDS=${SCALE_SEED_MAX_SECONDS:-3600}
OTHER_SHARE=${SCALE_OTHER_SHARE:-0.1}
SECS=${SCALE_SECONDS:-15}
CLIENTS=${SCALE_CLIENTS:-"16 64"}
SENDERS=${SCALE_SENDERS:-200000}
NEW_SHARE=${SCALE_NEW_SHARE:-0.05}
RATE=${SCALE_RATE:-1000}
QUERY_RUNS=${SCALE_QUERY_RUNS:-100}
QUERY_BUDGET=${SCALE_QUERY_BUDGET:-60}
PGB_CLIENTS=${SCALE_PGB_CLIENTS:-8}
OUT_MESSAGES=${SCALE_OUT_MESSAGES:-10000}
SHARED_BUFFERS=${SCALE_SHARED_BUFFERS:-2GB}
LISTENER_WORKERS=${SCALE_LISTENER_WORKERS:-}
KEEP=${SCALE_KEEP:-0}
AS_ROLE=${SCALE_AS_ROLE-wa_bench_agent} # set but empty: the owner
CHANNEL=scale
OTHER_CHANNEL=scale_other
OTHER_ROLE=wa_bench_other
case $SCALE_LISTEN in 127.0.0.1:*) ;; *) echo "SCALE_LISTEN must be 127.0.0.1:<port>" >&2; exit 1 ;; esac
# A plain lower-case name: it is spliced into GRANTs and given to -U as it is.
if [ -n "$AS_ROLE" ] && { ! [[ $AS_ROLE =~ ^[a-z_][a-z0-9_]*$ ]] || [ "$AS_ROLE" = postgres ] || [ "$AS_ROLE" = "$OTHER_ROLE" ]; }; then
  echo "SCALE_AS_ROLE=$AS_ROLE: give a lower-case role name other than postgres and $OTHER_ROLE (empty: run as the owner)" >&2
  exit 1
fi
READ_USER=${AS_ROLE:-postgres}

WA_HOME=$WA_SCALE_HOME
WA_PG_PORT=$SCALE_PORT
BENCH_OWN_CLUSTER=1
. bench/common.sh
export PGOPTIONS="-c client_min_messages=warning" # psql and pgbench: no NOTICEs on stderr
PG_CONFIG=$BIN/pg_config
pg_ctl() { as_postgres "$BIN/pg_ctl" -D "$WA_SCALE_HOME/data" "$@"; }
RUN_START=$(date +%s)
STEP=starting
progress() { say "[$(($(date +%s) - RUN_START))s] $*"; }
die() { echo "bench/scale.sh: $*" >&2; exit 1; }
fmt() { # 1234567 -> 1,234,567 (whatever the locale); anything else as it is
  if [[ $1 =~ ^-?[0-9]+$ ]]; then echo "$1" | sed -E ':a; s/([0-9])([0-9]{3})($|,)/\1,\2\3/; ta'; else echo "$1"; fi
}
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "") printf "%.2f×", a / b; else print "—" }'; }
sql() { "${PSQL[@]}" -c "$@"; } # sql "statement" [-c "statement" ...]

# --- set-up: the extension, wa-sim, a fresh cluster ------------------------------------------------
LIB=$($PG_CONFIG --pkglibdir)/whatsapp_channel.so
if [ "${BENCH_INSTALL:-0}" = 1 ]; then
  progress "cargo pgrx install --release"
  sudo_flag=(); [ "$(id -u)" = 0 ] || sudo_flag=(--sudo)
  # Unlinked first, as scripts/run.sh does: another running server keeps its copy.
  ${sudo_flag:+sudo} rm -f "$LIB"
  cargo pgrx install --release "${PG_FEATURES[@]}" --pg-config "$PG_CONFIG" "${sudo_flag[@]}" >&2
fi
[ -f "$LIB" ] || die "$LIB is not installed: bash scripts/run.sh, or cargo pgrx install --release ${PG_FEATURES[*]} --pg-config $PG_CONFIG (or BENCH_INSTALL=1)"
require_release_build "$LIB"
progress "building wa-sim (release)"
cargo build --release --locked -p wa-sim >&2
WA_SIM=$PWD/target/release/wa-sim

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; } # host:port
MARKER=$WA_SCALE_HOME/.bench-scale
if [ -e "$WA_SCALE_HOME/data" ]; then
  # Only a directory this script made is deleted.
  [ -f "$MARKER" ] || die "$WA_SCALE_HOME/data exists but was not made by bench/scale.sh ($MARKER missing): remove it or set WA_SCALE_HOME"
  if pg_ctl status >/dev/null 2>&1; then
    progress "stopping the previous scale cluster"
    pg_ctl -m fast stop >/dev/null
  fi
  rm -rf "$WA_SCALE_HOME/data"
fi
port_busy "$SCALE_LISTEN" && die "something already listens on $SCALE_LISTEN (another cluster's listener?): set SCALE_LISTEN"
port_busy "127.0.0.1:$SCALE_SIM_PORT" && die "something already listens on 127.0.0.1:$SCALE_SIM_PORT: set SCALE_SIM_PORT"
mkdir -p "$WA_SCALE_HOME"
touch "$MARKER"
[ "$(id -u)" = 0 ] && chown postgres: "$WA_SCALE_HOME"
rm -f "$WA_SCALE_HOME/server.log"

WORK=$(mktemp -d)
SIM_PID=
cleanup() {
  local rc=$?
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null
  if [ "$KEEP" = 1 ]; then
    say "SCALE_KEEP=1: the cluster stays up: psql -h $WA_SCALE_HOME -p $SCALE_PORT -U postgres"
  elif pg_ctl status >/dev/null 2>&1; then
    pg_ctl -m fast stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  [ "$rc" = 0 ] || say "failed during: $STEP (server log: $WA_SCALE_HOME/server.log)"
}
trap cleanup EXIT

progress "initdb in $WA_SCALE_HOME/data"
as_postgres "$BIN/initdb" -D "$WA_SCALE_HOME/data" -U postgres -A trust -E UTF8 >/dev/null
MAX_CONNECTIONS=$(($(echo "$CLIENTS $PGB_CLIENTS" | tr ' ' '\n' | sort -n | tail -1) + 50))
cat >>"$WA_SCALE_HOME/data/postgresql.conf" <<CONF

# bench/scale.sh
port = $SCALE_PORT
listen_addresses = ''
unix_socket_directories = '$WA_SCALE_HOME'
max_connections = $MAX_CONNECTIONS
shared_buffers = $SHARED_BUFFERS
shared_preload_libraries = 'whatsapp_channel'
whatsapp_channel.listen_address = '$SCALE_LISTEN'
whatsapp_channel.database = 'postgres'
# The load all comes from 127.0.0.1: no caps per client address.
whatsapp_channel.max_connections_per_source = 0
whatsapp_channel.max_body_bytes_per_source = 0
${LISTENER_WORKERS:+whatsapp_channel.listener_workers = $LISTENER_WORKERS}
CONF
pg_ctl -l "$WA_SCALE_HOME/server.log" -w start >/dev/null
sql "CREATE EXTENSION whatsapp_channel"
# Nothing may go to Meta: every Graph API call goes to a local mock (outbound-bench brings its own).
sql "ALTER SYSTEM SET whatsapp_channel.graph_api_url = 'http://127.0.0.1:$SCALE_SIM_PORT'" -c "SELECT pg_reload_conf()" >/dev/null
"$WA_SIM" graph --port "$SCALE_SIM_PORT" >"$WA_SCALE_HOME/wa-sim-graph.log" 2>&1 &
SIM_PID=$!
sql "SELECT wa_add_channel('$CHANNEL', '106540352242922', 'EAAGscaleaccesstoken000000000', '0123456789abcdef0123456789abcdef', 'scale_verify_token')" >/dev/null
CHANNEL_ID=$(sql "SELECT id FROM wa_channels WHERE name = '$CHANNEL'")
. bench/scale/roles.sh
make_inbox_role "$OTHER_ROLE"
if [ -n "$AS_ROLE" ]; then
  make_inbox_role "$AS_ROLE"
  # Before phase A: on a build with channel grants, the role sends and reads nothing without it.
  grant_channel "$CHANNEL" "$AS_ROLE"
fi
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$SCALE_LISTEN/webhook/" || true)" = 404 ] && break
  sleep 0.1
done
kill -0 "$SIM_PID" 2>/dev/null || die "wa-sim graph did not start on 127.0.0.1:$SCALE_SIM_PORT: $(cat "$WA_SCALE_HOME/wa-sim-graph.log")"

# The listener of *this* cluster (another cluster on the machine may have one too).
listener_pids() {
  ps -o pid=,args= --ppid "$(head -1 "$WA_SCALE_HOME/data/postmaster.pid")" | awk '/whatsapp_channel webhook listener/ { print $1 }'
}
# Of every listener worker together.
rss_anon() { local pid; for pid in $(listener_pids); do cat "/proc/$pid/status"; done | awk '/^RssAnon/ { kb += $2 } END { print kb }'; }
[ -n "$(listener_pids)" ] || die "no webhook listener process under the postmaster of $WA_SCALE_HOME (see $WA_SCALE_HOME/server.log)"
declare -A RSS
RSS[start]=$(rss_anon)
LOG_START=$(log_lines)
DATE=$(date -u)
progress "cluster up: listener pid(s) $(listener_pids | paste -sd " ") on $SCALE_LISTEN, RssAnon ${RSS[start]} kB"

# --- measurements ------------------------------------------------------------------------------
declare -A LOAD LCPU PGB Q QRUNS QCPU POLICY_CPU CALL_CPU TPS OUT SEQ ROWS WAL
LOAD_LINES=()
SEQ_STEPS=() # the steps of phase B, in order

. bench/scale/measure.sh

phase() { # A or B
  local p=$1 c out
  ROWS[$p]=$(sql "SELECT count(*) FROM wa_messages")
  progress "=== phase $p: wa_messages has $(fmt "${ROWS[$p]}") rows"

  # (vi) Postgres' own ceiling: one INSERT + pg_notify per commit.
  sql "DROP TABLE IF EXISTS bench_ceiling" -c "CREATE TABLE bench_ceiling (id bigserial PRIMARY KEY, wamid text UNIQUE, body text)"
  for c in $CLIENTS; do
    step_start "$p" "pgbench INSERT + pg_notify, $c clients, ${SECS}s"
    sql "TRUNCATE bench_ceiling" -c "CHECKPOINT"
    out=$(run_pgbench -M prepared -c "$c" -j 2 -T "$SECS" -D n=0 -D run="$$" -f "$WORK/insert_notify.sql")
    PGB[$p:$c]=$(pgbench_tps "$out")
    progress "  tps ${PGB[$p:$c]}"
    step_end "$p" "pgbench $c"
  done
  sql "DROP TABLE bench_ceiling"

  # (i) the listener at saturation, (ii) at a steady rate.
  for c in $CLIENTS; do
    step_start "$p" "wa-sim load, $c connections, ${SECS}s"
    run_load "$p:$c" --concurrency "$c" --seconds "$SECS" --senders "$SENDERS" --new-share "$NEW_SHARE"
    step_end "$p" "load $c"
  done
  if [ "$RATE" != 0 ]; then
    step_start "$p" "wa-sim load at a steady ${RATE}/s, 16 connections, ${SECS}s"
    run_load "$p:rate" --concurrency 16 --rate "$RATE" --seconds "$SECS" --senders "$SENDERS" --new-share "$NEW_SHARE"
    step_end "$p" "steady rate"
  fi

  # (iii) the inbox's reads, as the inbox role.
  step_start "$p" "read queries as $READ_USER"
  sample_contacts
  grant_helper "SELECT ON bench_scale_contacts" # (iv) picks its recipients from it
  for _ in $(seq 100); do echo "$CHANNEL_ID"; done >"$WORK/channel_args"
  sql "SELECT contact_id FROM bench_scale_contacts ORDER BY n LIMIT 100" >"$WORK/contact_args"
  [ -s "$WORK/contact_args" ] || die "no contact with messages to read the history of"
  measure_read "$p:list" "$LIST_SQL" "$WORK/channel_args"
  measure_read "$p:history" "$HISTORY_SQL" "$WORK/contact_args"
  measure_read "$p:unread" "$UNREAD_SQL" "$WORK/channel_args"
  measure_read "$p:all" "$ALL_SQL" "$WORK/channel_args"
  for k in $READS; do cp "$WORK/explain_$p:$k.txt" "$WORK/plan_${p}_$k.txt"; done
  # The same three reads of one channel as the owner, whom row-level security does not
  # filter: the difference in server CPU is what the policies cost, on one database.
  if [ "$READ_USER" != postgres ]; then
    for k in $OWNER_READS; do measure_policy_cpu "$p:$k" "$(read_sql "$k")" "$WORK/$(read_args "$k")"; done
  fi
  step_end "$p" "reads"

  # (iv) wa_send_text against a plain INSERT of the same row, channel paused; both as the
  # inbox role, so that the ratio compares the function with the INSERT and nothing else.
  step_start "$p" "pgbench wa_send_text vs a plain INSERT as $READ_USER, $PGB_CLIENTS clients, ${SECS}s each"
  local recipients
  recipients=$(sql "SELECT count(*) FROM bench_scale_contacts")
  sql "DROP TABLE IF EXISTS bench_plain_outbox" -c "CREATE TABLE bench_plain_outbox (
      id bigserial PRIMARY KEY, channel_id bigint, direction text, type text, body text, status text,
      recipient text, payload jsonb, next_attempt_at timestamptz, created_at timestamptz DEFAULT now())"
  grant_helper "INSERT ON bench_plain_outbox" "USAGE ON SEQUENCE bench_plain_outbox_id_seq"
  cat >"$WORK/send.sql" <<SQL
\set k random(1, $recipients)
SELECT wa_send_text('$CHANNEL', (SELECT '+' || wa_id FROM bench_scale_contacts WHERE n = :k), 'hi');
SQL
  cat >"$WORK/plain.sql" <<SQL
\set k random(1, $recipients)
INSERT INTO bench_plain_outbox (channel_id, direction, type, body, status, recipient, payload, next_attempt_at)
SELECT $CHANNEL_ID, 'outbound', 'text', 'hi', 'queued', r.to_,
       jsonb_build_object('messaging_product', 'whatsapp', 'recipient_type', 'individual', 'to', r.to_, 'type', 'text',
                          'text', jsonb_build_object('preview_url', false, 'body', 'hi')),
       now()
  FROM (SELECT '+' || wa_id AS to_ FROM bench_scale_contacts WHERE n = :k) r;
SQL
  sql "UPDATE wa_channels SET paused_at = now(), paused_reason = 'bench/scale.sh' WHERE id = $CHANNEL_ID"
  sql "CHECKPOINT"
  out=$(run_pgbench_as "$READ_USER" -M prepared -c "$PGB_CLIENTS" -j 2 -T "$SECS" -f "$WORK/plain.sql")
  TPS[$p:plain]=$(pgbench_tps "$out")
  sql "CHECKPOINT"
  out=$(run_pgbench_as "$READ_USER" -M prepared -c "$PGB_CLIENTS" -j 2 -T "$SECS" -f "$WORK/send.sql")
  TPS[$p:send]=$(pgbench_tps "$out")
  progress "  plain INSERT ${TPS[$p:plain]} tps, wa_send_text ${TPS[$p:send]} tps"
  # The same two, one session, one transaction a call: server CPU, which other work on the
  # machine hardly moves (the rates above swing by a tenth from run to run).
  measure_call_cpu "$READ_USER" 1000 "$p:send" "$(sed -n 2p "$WORK/send.sql" | sed 's/:k/$1/; s/;$//')" \
    "$p:plain" "$(sed -n '2,$p' "$WORK/plain.sql" | sed 's/:k/$1/; s/;$//' | tr '\n' ' ')" "$recipients"
  # Deleted before the channel resumes, so that nothing sends them; by the outbox index.
  TPS[$p:deleted]=$(sql "WITH d AS (DELETE FROM wa_messages WHERE channel_id = $CHANNEL_ID AND status IN ('queued', 'sending')
                           AND direction = 'outbound' RETURNING 1) SELECT count(*) FROM d")
  sql "UPDATE wa_channels SET paused_at = NULL, paused_reason = NULL WHERE id = $CHANNEL_ID" -c "DROP TABLE bench_plain_outbox"
  step_end "$p" "wa_send_text"

  # (v) delivery to a 50 ms mock.
  if [ "$OUT_MESSAGES" != 0 ]; then
    step_start "$p" "wa-sim outbound-bench --latency-ms 50 --messages $OUT_MESSAGES"
    sql "CHECKPOINT"
    "$WA_SIM" outbound-bench --dsn "$DSN" --latency-ms 50 --messages "$OUT_MESSAGES" >"$WORK/outbound_$p.md" 2> >(sed 's/^/  /' >&2) \
      || die "wa-sim outbound-bench failed"
    OUT[$p:rate]=$(awk -F'|' '/^\| throughput/ { gsub(/ /, "", $5); print $5 }' "$WORK/outbound_$p.md")
    OUT[$p:latency]=$(awk -F'|' '/^\| latency/ { gsub(/^ +| +$/, "", $7); print $7 }' "$WORK/outbound_$p.md")
    progress "  delivered ${OUT[$p:rate]}/s; COMMIT -> request p50 / p99 / max ${OUT[$p:latency]} ms"
    step_end "$p" "outbound-bench"
  fi
  sql "DROP TABLE bench_scale_contacts"
}

phase A

# --- seed --------------------------------------------------------------------------------------
STEP="seed"
progress "=== seed: $(fmt "$SEED_MESSAGES") messages from $(fmt "$SEED_SENDERS") customers, $SEED_BATCH a POST, $SEED_CONCURRENCY connections"
sql "CHECKPOINT"
SEED_T0=$(date +%s)
SEED=$("$WA_SIM" load --dsn "$DSN" --channel "$CHANNEL" --concurrency "$SEED_CONCURRENCY" --batch "$SEED_BATCH" \
  --senders "$SEED_SENDERS" --new-share 0 --messages "$SEED_MESSAGES" --seconds "$SEED_MAX_SECONDS" --progress 10) \
  || die "the seed failed"
SEED=${SEED#wa-sim load: }
SEED_WALL=$(($(date +%s) - SEED_T0))
LOAD_LINES+=("seed: $SEED")
progress "  $SEED"
seed_other_channel
STEP="VACUUM ANALYZE"
progress "VACUUM ANALYZE"
VACUUM_T0=$(date +%s)
sql "VACUUM ANALYZE"
VACUUM_SECONDS=$(($(date +%s) - VACUUM_T0))
RSS[seed]=$(rss_anon)
progress "  ${VACUUM_SECONDS}s; listener RssAnon ${RSS[seed]} kB"
# Phase B measures a full database, not the seed's aftermath: the checkpoint that writes the
# seed's dirty buffers and the autovacuum runs it triggers would otherwise fall into phase B
# (run 3 of the first session measured pgbench itself 0.76x slower there). So: CHECKPOINT,
# then wait (bounded) until no autovacuum worker is busy.
SETTLE_T0=$(date +%s)
sql "CHECKPOINT"
for _ in $(seq 300); do
  busy=$(sql "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
  [ "$busy" = 0 ] && break
  sleep 1
done
SETTLE_SECONDS=$(($(date +%s) - SETTLE_T0))
progress "  settled in ${SETTLE_SECONDS}s (checkpoint, autovacuum idle: ${busy} still busy)"

# Relations of the extension over 1 MB: "name|kind|size|rows".
relation_sizes() {
  sql "SELECT c.relname, CASE c.relkind WHEN 'r' THEN 'table' WHEN 'm' THEN 'materialized view' ELSE c.relkind::text END,
              pg_size_pretty(pg_total_relation_size(c.oid)), to_char(greatest(c.reltuples, 0), 'FM999,999,999,990')
         FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
         JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'whatsapp_channel'
        WHERE c.relkind IN ('r', 'm', 'p') AND pg_total_relation_size(c.oid) > 1024 * 1024
        ORDER BY pg_total_relation_size(c.oid) DESC"
}
SIZES_SEED=$(relation_sizes)
CONVERSATIONS_KIND=$(sql "SELECT CASE relkind WHEN 'v' THEN 'a view' WHEN 'm' THEN 'a materialized view' WHEN 'r' THEN 'a table' ELSE relkind::text END
                            FROM pg_class WHERE oid = 'wa_conversations'::regclass")
CONVERSATIONS_OVER=$(sql "SELECT string_agg(DISTINCT ref.relname, ', ') FROM pg_rewrite r
                            JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
                            JOIN pg_class ref ON ref.oid = d.refobjid AND ref.oid <> r.ev_class
                           WHERE r.ev_class = 'wa_conversations'::regclass")

flush_listener_stats # what the seed left pending is counted before the reset, not in phase B
sql "SELECT pg_stat_reset()" >/dev/null
phase B
STEP="final checks"
flush_listener_stats
SEQ[total]=$(scan_counts)
RSS[end]=$(rss_anon)
VISIBLE=$(visible_conversations) # after the scan counts: it reads every conversation
SIZES_END=$(relation_sizes)

# Every acknowledged message stored exactly once: per run committed == acknowledged, and over
# all runs' wamids (one scan, after phase B's counters were read) rows == distinct wamids.
TOTAL_COMMITTED=0 TOTAL_OK=0 TOTAL_SENT=0 TOTAL_DUP=0 RUNS_SHORT=
for line in "${LOAD_LINES[@]}"; do
  l=${line#*: }
  TOTAL_COMMITTED=$((TOTAL_COMMITTED + $(field "$l" committed)))
  TOTAL_OK=$((TOTAL_OK + $(field "$l" ok_messages)))
  TOTAL_SENT=$((TOTAL_SENT + $(field "$l" messages_sent)))
  TOTAL_DUP=$((TOTAL_DUP + $(field "$l" duplicate_rows)))
  [ "$(field "$l" committed)" = "$(field "$l" ok_messages)" ] || RUNS_SHORT+="${line%%: *} "
done
LOAD_COUNTS=$("${PSQL[@]}" -F' ' -c "SELECT count(*), count(DISTINCT wamid) FROM wa_messages
                                     WHERE channel_id IN ($CHANNEL_ID, $OTHER_ID) AND wamid LIKE 'wamid.LOAD.%'")
read -r LOAD_ROWS LOAD_DISTINCT <<<"$LOAD_COUNTS"
if [ -z "$RUNS_SHORT" ] && [ "$LOAD_ROWS" = "$LOAD_DISTINCT" ] && [ "$LOAD_ROWS" = "$TOTAL_COMMITTED" ] && [ "$TOTAL_DUP" = 0 ]; then
  EXACTLY_ONCE="**yes**"
else
  EXACTLY_ONCE="**no**"
fi
read_log_since "$LOG_START"
PG_VERSION=$(sql "SELECT version()" | cut -d, -f1)
EXT_VERSION=$(sql "SELECT extversion FROM pg_extension WHERE extname = 'whatsapp_channel'")
DIRTY=$(git status --porcelain -- src sql 2>/dev/null | wc -l)
progress "done; writing the report"

# --- report --------------------------------------------------------------------------------------
. bench/scale/report.sh
mkdir -p target
REPORT_FILE=target/bench-scale-$(date -u +%Y%m%d-%H%M%S).md
report | tee "$REPORT_FILE"
progress "report written to $REPORT_FILE"
