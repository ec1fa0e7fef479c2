#!/usr/bin/env bash
# Scale benchmark (issue 10): does a webhook cost the same on a year of traffic as on an empty
# database? One run measures the same phase twice, on its own fresh cluster:
#
#   phase A   on the empty database;
#   seed      SCALE_SEED_MESSAGES messages (2,000,000) from SCALE_SEED_SENDERS customers
#             (1,000,000), through the webhook listener in 100-message POSTs; then VACUUM ANALYZE,
#             CHECKPOINT and a wait (up to 300 s) for autovacuum to go idle;
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
#        session, timed by psql's \timing (client-side, round trip included; one untimed run
#        first): the conversation list, one contact's history (100 random contacts that have
#        messages), the unread list. A read slower than SCALE_QUERY_BUDGET / 100 gets fewer runs
#        (at least 5; the report says how many);
#   (iv) pgbench, 8 clients: wa_send_text() to customers whose 24-hour window is open (channel
#        paused, so nothing is sent) beside a plain INSERT of the same row into a one-index
#        table; the queued rows are deleted afterwards;
#   (v)  wa-sim outbound-bench --latency-ms 50 --messages 10000: delivery rate to a 50 ms mock
#        Graph API, and COMMIT -> request at 200 commits/s (it points graph_api_url at itself
#        for the run and puts it back).
# Also: the listener's RssAnon at start, after the seed and at the end; the extension's
# relations over 1 MB; seq_scan / seq_tup_read of wa_contacts and wa_messages per step of phase
# B; EXPLAIN (ANALYZE, BUFFERS) of the three reads on the full database.
#
# Needs the extension built and installed for /usr/lib/postgresql/15 (`bash scripts/run.sh`
# does it, or `cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config`;
# BENCH_INSTALL=1 makes this script run the latter first; a debug build, which the tests and CI
# install, is refused). Run as root (the cluster belongs to `postgres`, via runuser) or as
# postgres. Everything talks to 127.0.0.1 or a unix socket only.
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
CHANNEL=scale
case $SCALE_LISTEN in 127.0.0.1:*) ;; *) echo "SCALE_LISTEN must be 127.0.0.1:<port>" >&2; exit 1 ;; esac

WA_HOME=$WA_SCALE_HOME
WA_PG_PORT=$SCALE_PORT
BENCH_OWN_CLUSTER=1
. bench/common.sh
export PGOPTIONS="-c client_min_messages=warning" # psql and pgbench: no NOTICEs on stderr
PG_CONFIG=$BIN/pg_config
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env -u RUST_BACKTRACE "$@"; else env -u RUST_BACKTRACE "$@"; fi; }
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
  cargo pgrx install --release --pg-config "$PG_CONFIG" "${sudo_flag[@]}" >&2
fi
[ -f "$LIB" ] || die "$LIB is not installed: bash scripts/run.sh, or cargo pgrx install --release --pg-config $PG_CONFIG (or BENCH_INSTALL=1)"
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
declare -A LOAD PGB Q QRUNS TPS OUT SEQ ROWS WAL
LOAD_LINES=()
SEQ_STEPS=() # the steps of phase B, in order

# seq_scan / seq_tup_read / idx_scan of wa_contacts and wa_messages, as "c_seq c_tup c_idx m_seq m_tup m_idx".
scan_counts() {
  "${PSQL[@]}" -F' ' -c "SELECT
      coalesce(sum(seq_scan) FILTER (WHERE relname = 'wa_contacts'), 0), coalesce(sum(seq_tup_read) FILTER (WHERE relname = 'wa_contacts'), 0),
      coalesce(sum(idx_scan) FILTER (WHERE relname = 'wa_contacts'), 0),
      coalesce(sum(seq_scan) FILTER (WHERE relname = 'wa_messages'), 0), coalesce(sum(seq_tup_read) FILTER (WHERE relname = 'wa_messages'), 0),
      coalesce(sum(idx_scan) FILTER (WHERE relname = 'wa_messages'), 0)
    FROM pg_stat_user_tables WHERE relname IN ('wa_contacts', 'wa_messages')"
}
# The listener flushes its table counters at most once a second, after a POST: wait, then post one.
flush_listener_stats() {
  sleep 1.2
  "$WA_SIM" trigger text --channel "$CHANNEL" --dsn "$DSN" >/dev/null
  sleep 0.2
}
SCANS_BEFORE=
step_start() { # phase, step label
  STEP="phase $1: $2"
  progress "$STEP"
  [ "$1" = B ] && SCANS_BEFORE=$(scan_counts)
  return 0
}
step_end() { # phase, step key
  if [ "$1" = B ]; then
    flush_listener_stats
    SEQ_STEPS+=("$2")
    SEQ[$2]=$(paste -d' ' <(echo "$SCANS_BEFORE" | tr ' ' '\n') <(scan_counts | tr ' ' '\n') | awk '{ printf "%d ", $2 - $1 }')
  fi
}

# Checkpoints ended so far. (The checkpointer reports its count after it has woken the
# backend that asked for one, so a CHECKPOINT's own may show up a moment after it returns.)
checkpoints() {
  sql "SELECT checkpoints_timed + checkpoints_req FROM pg_catalog.pg_stat_bgwriter"
}
# CHECKPOINT, and wait (up to 5 s) until the count includes it.
checkpoint_counted() {
  local before deadline=$((SECONDS + 5))
  before=$(checkpoints)
  sql "CHECKPOINT"
  while [ "$(checkpoints)" -le "$before" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
}
run_load() { # key, then wa-sim load flags
  local key=$1 line lsn0 lsn1 ckpt0 ckpt1 committed
  shift
  checkpoint_counted
  lsn0=$(sql "SELECT pg_catalog.pg_current_wal_lsn()")
  ckpt0=$(checkpoints)
  line=$("$WA_SIM" load --dsn "$DSN" --channel "$CHANNEL" "$@") || die "wa-sim load $* failed"
  lsn1=$(sql "SELECT pg_catalog.pg_current_wal_lsn()")
  ckpt1=$(checkpoints)
  LOAD[$key]=${line#wa-sim load: }
  LOAD_LINES+=("$key: ${LOAD[$key]}")
  # WAL written during the step per message committed (KB of 1,024 bytes; right after a
  # CHECKPOINT, so the first change to every page writes the whole page), and the checkpoints
  # that ended meanwhile.
  committed=$(field "${LOAD[$key]}" committed)
  if [ "${committed:-0}" -gt 0 ]; then
    WAL[$key]="$(sql "SELECT round(pg_catalog.pg_wal_lsn_diff('$lsn1', '$lsn0') / 1024.0 / $committed, 1)") KB, $((ckpt1 - ckpt0))"
  else
    WAL[$key]="—, $((ckpt1 - ckpt0))"
  fi
  progress "  committed $committed (${LOAD[$key]%% ok_200*}... committed_per_s=$(field "${LOAD[$key]}" committed_per_s), notify p50/p99 $(field "${LOAD[$key]}" notify_p50_ms)/$(field "${LOAD[$key]}" notify_p99_ms) ms)"
}

insert_notify_script >"$WORK/insert_notify.sql"
pgbench_tps() { # output of pgbench
  echo "$1" | awk '/^tps = / { printf "%.0f", $3; exit }'
}
run_pgbench() { # pgbench arguments...
  local out
  out=$("$BIN/pgbench" -h "$WA_SCALE_HOME" -p "$SCALE_PORT" -U postgres -n "$@" postgres 2>&1) || { echo "$out" >&2; die "pgbench $* failed"; }
  if echo "$out" | grep -q 'aborted'; then echo "$out" >&2; die "a pgbench client aborted"; fi
  echo "$out"
}

# p50 / p99 / max (ms) of a prepared read run in one psql session, timed by \timing; sets
# Q[$key] = "p50 p99 max" and QRUNS[$key]. The EXPLAIN (ANALYZE, BUFFERS) of one more run goes to
# $WORK/explain_$key.txt.
measure_read() { # key, SQL with one bigint parameter $1, file of arguments (one a line)
  local key=$1 query=$2 args=$3 runs slowest
  # Three runs first (cold plan cache, as a new session has) to see if 100 fit the budget.
  {
    echo "SET statement_timeout = '${QUERY_BUDGET}s';"
    echo "PREPARE q(bigint) AS $query;"
    echo '\o /dev/null'
    echo '\timing on'
    head -3 "$args" | sed 's/.*/EXECUTE q(&);/'
  } >"$WORK/probe_$key.sql"
  slowest=$("${PSQL[@]}" -f "$WORK/probe_$key.sql" | awk '$1 == "Time:" { print $2 }' | sort -g | tail -1)
  runs=$(awk -v t="$slowest" -v n="$QUERY_RUNS" -v b="$QUERY_BUDGET" \
    'BEGIN { r = n; if (t * n > b * 1000) r = int(b * 1000 / t); if (r < 5) r = 5; if (r > n) r = n; print r }')
  QRUNS[$key]=$runs
  {
    echo "SET statement_timeout = '${QUERY_BUDGET}s';"
    echo "PREPARE q(bigint) AS $query;"
    echo '\o /dev/null'
    echo "EXECUTE q($(head -1 "$args"));" # untimed
    echo '\timing on'
    for _ in $(seq $(((runs + $(wc -l <"$args") - 1) / $(wc -l <"$args")))); do cat "$args"; done | head -"$runs" | sed 's/.*/EXECUTE q(&);/'
    echo '\timing off'
    echo "\\o $WORK/explain_$key.txt"
    echo "EXPLAIN (ANALYZE, BUFFERS) EXECUTE q($(head -1 "$args"));"
  } >"$WORK/read_$key.sql"
  Q[$key]=$("${PSQL[@]}" -f "$WORK/read_$key.sql" | awk '$1 == "Time:" { print $2 }' | sort -g | awk '
    { t[NR] = $1 } END { if (NR == 0) { print "- - -"; exit }
      p50 = int(NR * 0.50 + 0.9999); p99 = int(NR * 0.99 + 0.9999); printf "%.2f %.2f %.2f", t[p50], t[p99], t[NR] }')
  progress "  $key: p50 / p99 / max $(echo "${Q[$key]}" | sed 's| | / |g') ms over $runs runs"
}
LIST_SQL='SELECT * FROM wa_conversations WHERE channel_id = $1 ORDER BY last_message_at DESC NULLS LAST LIMIT 50'
HISTORY_SQL='SELECT * FROM wa_messages WHERE contact_id = $1 ORDER BY id DESC LIMIT 50'
UNREAD_SQL='SELECT contact_id, unread_count FROM wa_conversations WHERE channel_id = $1 AND unread_count > 0 ORDER BY last_message_at DESC NULLS LAST LIMIT 50'

# Up to 10,000 random contacts of the channel with an open 24-hour window that have messages,
# into bench_scale_contacts (n = 1.., in random order). By index only, whatever the statistics
# (phase A has none yet): random ids first (a volatile random() beside the id would be a
# filter, not an index condition), then min(id) at or after each (the primary key's first
# entry), the contact by its key (OFFSET 0: one lookup each, not a join over all contacts), and
# a per-contact look for a message. The benchmark's own queries are kept off the
# sequential-scan counts.
sample_contacts() {
  sql "SET enable_seqscan = off" -c "DROP TABLE IF EXISTS bench_scale_contacts" -c "CREATE TABLE bench_scale_contacts AS
    WITH bounds AS (SELECT min(id) AS lo, max(id) AS hi FROM wa_contacts),
         targets AS MATERIALIZED (SELECT lo + (random() * (hi - lo))::bigint AS t FROM bounds, generate_series(1, 12000)),
         picked AS MATERIALIZED (SELECT DISTINCT (SELECT min(c.id) FROM wa_contacts c WHERE c.id >= t) AS id FROM targets)
    SELECT row_number() OVER (ORDER BY random()) AS n, k.id AS contact_id, k.wa_id
      FROM picked, LATERAL (SELECT c.id, c.wa_id FROM wa_contacts c
                             WHERE c.id = picked.id AND c.channel_id = $CHANNEL_ID AND c.wa_id IS NOT NULL
                               AND c.last_inbound_at > now() - interval '23 hours' OFFSET 0) k
     WHERE (SELECT true FROM wa_messages m WHERE m.contact_id = k.id LIMIT 1)
     LIMIT 10000" -c "ALTER TABLE bench_scale_contacts ADD PRIMARY KEY (n)"
}

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

  # (iii) the inbox's reads.
  step_start "$p" "read queries"
  sample_contacts
  for _ in $(seq 100); do echo "$CHANNEL_ID"; done >"$WORK/channel_args"
  sql "SELECT contact_id FROM bench_scale_contacts ORDER BY n LIMIT 100" >"$WORK/contact_args"
  [ -s "$WORK/contact_args" ] || die "no contact with messages to read the history of"
  measure_read "$p:list" "$LIST_SQL" "$WORK/channel_args"
  measure_read "$p:history" "$HISTORY_SQL" "$WORK/contact_args"
  measure_read "$p:unread" "$UNREAD_SQL" "$WORK/channel_args"
  for k in list history unread; do cp "$WORK/explain_$p:$k.txt" "$WORK/plan_${p}_$k.txt"; done
  step_end "$p" "reads"

  # (iv) wa_send_text against a plain INSERT of the same row, channel paused.
  step_start "$p" "pgbench wa_send_text vs a plain INSERT, $PGB_CLIENTS clients, ${SECS}s each"
  local recipients
  recipients=$(sql "SELECT count(*) FROM bench_scale_contacts")
  sql "DROP TABLE IF EXISTS bench_plain_outbox" -c "CREATE TABLE bench_plain_outbox (
      id bigserial PRIMARY KEY, channel_id bigint, direction text, type text, body text, status text,
      recipient text, payload jsonb, next_attempt_at timestamptz, created_at timestamptz DEFAULT now())"
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
  out=$(run_pgbench -M prepared -c "$PGB_CLIENTS" -j 2 -T "$SECS" -f "$WORK/plain.sql")
  TPS[$p:plain]=$(pgbench_tps "$out")
  sql "CHECKPOINT"
  out=$(run_pgbench -M prepared -c "$PGB_CLIENTS" -j 2 -T "$SECS" -f "$WORK/send.sql")
  TPS[$p:send]=$(pgbench_tps "$out")
  progress "  plain INSERT ${TPS[$p:plain]} tps, wa_send_text ${TPS[$p:send]} tps"
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
                                     WHERE channel_id = $CHANNEL_ID AND wamid LIKE 'wamid.LOAD.%'")
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
ms3() { echo "$1" | awk '{ printf "%s / %s / %s", $1, $2, $3 }'; }
qcol() { echo "${Q[$1]}" | awk -v i="$2" '{ print $i }'; }
l() { field "${LOAD[$1]}" "$2"; }
seq_row() { # label, "c_seq c_tup c_idx m_seq m_tup m_idx"
  echo "$2" | awk -v label="$1" '{ printf "| %s | %d | %d | %d | %d | %d | %d |\n", label, $1, $2, $3, $4, $5, $6 }'
}
verdict() { # value, limit: "met" when value <= limit
  awk -v v="$1" -v t="$2" 'BEGIN { if (v == "" || v == "-") print "—"; else if (v + 0 <= t + 0) print "met"; else print "**not met**" }'
}
FIRST_CLIENTS=$(echo "$CLIENTS" | awk '{ print $1 }')
SEED_RATE=$(field "$SEED" committed_per_s)
report() {
  cat <<EOF
# Scale: a webhook on a full database (issue 10)

\`bash bench/scale.sh\` — $(fmt "$SEED_MESSAGES") seed messages from $(fmt "$SEED_SENDERS") customers ($SEED_BATCH a POST, $SEED_CONCURRENCY connections); phases: ${SECS} s per cell, $(fmt "$SENDERS") customers, new-share $NEW_SHARE.

- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)
- $PG_VERSION; shared_buffers $(sql "SHOW shared_buffers"), whatsapp_channel.listener_workers $(sql "SHOW whatsapp_channel.listener_workers") ($(listener_pids | wc -l) running), max_connections $MAX_CONNECTIONS, fsync $(sql "SHOW fsync"), synchronous_commit $(sql "SHOW synchronous_commit"); own cluster in $WA_SCALE_HOME (port $SCALE_PORT, listener $SCALE_LISTEN)
- date: $DATE (run took $(( ($(date +%s) - RUN_START) / 60 )) min)
- code: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$([ "$DIRTY" = 0 ] && echo ", src/ and sql/ clean" || echo ", **src/ or sql/ have uncommitted changes** ($DIRTY files)"); extension $EXT_VERSION, library $LIB built $(date -u -r "$LIB" '+%Y-%m-%d %H:%M UTC')

## Summary

| check | value | target | |
|---|---:|---:|---|
EOF
  for c in $CLIENTS; do
    echo "| ingest B/A at $c connections (committed msg/s) | $(ratio "$(l "B:$c" committed_per_s)" "$(l "A:$c" committed_per_s)") ($(fmt "$(l "B:$c" committed_per_s)") / $(fmt "$(l "A:$c" committed_per_s)")) | ≈ 1.00× | |"
  done
  for p in A B; do
    echo "| phase $p: listener at $FIRST_CLIENTS connections / pgbench at $FIRST_CLIENTS clients | $(ratio "$(l "$p:$FIRST_CLIENTS" committed_per_s)" "${PGB[$p:$FIRST_CLIENTS]}") | | |"
  done
  cat <<EOF
| seed rate vs 10,000 msg/s | $(fmt "$SEED_RATE") msg/s = $(ratio "$SEED_RATE" 10000) | ≥ 1.00× | $(awk -v r="$SEED_RATE" 'BEGIN { print (r >= 10000) ? "met" : "**not met**" }') |
| conversation list p99, full database | $(qcol B:list 2) ms | ≤ 10 ms | $(verdict "$(qcol B:list 2)" 10) |
| unread list p99, full database | $(qcol B:unread 2) ms | ≤ 10 ms | $(verdict "$(qcol B:unread 2)" 10) |
| one contact's history p99, full database | $(qcol B:history 2) ms | ≤ 2 ms | $(verdict "$(qcol B:history 2)" 2) |
| every acknowledged message stored exactly once | $EXACTLY_ONCE: $(fmt "$TOTAL_OK") acknowledged, $(fmt "$TOTAL_COMMITTED") committed, $(fmt "$LOAD_ROWS") rows for $(fmt "$LOAD_DISTINCT") distinct wamids | equal, 0 duplicates | $([ -n "$RUNS_SHORT" ] && echo "runs with committed ≠ acknowledged: $RUNS_SHORT") |

## Seed

$(fmt "$(field "$SEED" committed)") messages committed ($(fmt "$(field "$SEED" messages_sent)") sent in $(fmt "$(field "$SEED" posts)") POSTs, $(fmt "$(field "$SEED" ok_messages)") acknowledged, $(field "$SEED" transport_errors) without answer, non-200: $(field "$SEED" non_200)) from $(fmt "$(field "$SEED" distinct_senders)") distinct customers in $(field "$SEED" seconds) s: **$(fmt "$SEED_RATE") messages/s** (target 10,000). POST→NOTIFY p50 / p99 $(field "$SEED" notify_p50_ms) / $(field "$SEED" notify_p99_ms) ms, HTTP answer p50 / p99 $(field "$SEED" http_p50_ms) / $(field "$SEED" http_p99_ms) ms (100 messages a POST). Then \`VACUUM ANALYZE\` (whole database): ${VACUUM_SECONDS} s; then \`CHECKPOINT\` and a wait for autovacuum to go idle: ${SETTLE_SECONDS} s (${busy} worker(s) still busy at the end of it). Seed wall time with the lookup of its wamids: ${SEED_WALL} s.

## Phase A (empty database, $(fmt "${ROWS[A]}") rows at its start) and phase B (full: $(fmt "${ROWS[B]}") rows)

| measure | A | B | B/A |
|---|---:|---:|---:|
EOF
  for c in $CLIENTS; do
    echo "| pgbench INSERT + pg_notify, $c clients (msg/s) | $(fmt "${PGB[A:$c]}") | $(fmt "${PGB[B:$c]}") | $(ratio "${PGB[B:$c]}" "${PGB[A:$c]}") |"
  done
  for c in $CLIENTS; do
    echo "| listener, $c connections: committed msg/s | $(fmt "$(l "A:$c" committed_per_s)") | $(fmt "$(l "B:$c" committed_per_s)") | $(ratio "$(l "B:$c" committed_per_s)" "$(l "A:$c" committed_per_s)") |"
    echo "| listener, $c connections: POST→NOTIFY p50 / p99 (ms) | $(l "A:$c" notify_p50_ms) / $(l "A:$c" notify_p99_ms) | $(l "B:$c" notify_p50_ms) / $(l "B:$c" notify_p99_ms) | $(ratio "$(l "B:$c" notify_p99_ms)" "$(l "A:$c" notify_p99_ms)") (p99) |"
    echo "| listener, $c connections: HTTP answer p50 / p99 (ms) | $(l "A:$c" http_p50_ms) / $(l "A:$c" http_p99_ms) | $(l "B:$c" http_p50_ms) / $(l "B:$c" http_p99_ms) | |"
    echo "| listener, $c connections: WAL a message, checkpoints ended during the step | ${WAL[A:$c]} | ${WAL[B:$c]} | |"
    echo "| listener, $c connections: 200 / non-200 + no answer | $(fmt "$(l "A:$c" ok_200)") / $(($(l "A:$c" non_200) + $(l "A:$c" transport_errors))) | $(fmt "$(l "B:$c" ok_200)") / $(($(l "B:$c" non_200) + $(l "B:$c" transport_errors))) | |"
  done
  if [ "$RATE" != 0 ]; then
    echo "| steady $(fmt "$RATE")/s, 16 connections: POST→NOTIFY p50 / p99 / max (ms) | $(l A:rate notify_p50_ms) / $(l A:rate notify_p99_ms) / $(l A:rate notify_max_ms) | $(l B:rate notify_p50_ms) / $(l B:rate notify_p99_ms) / $(l B:rate notify_max_ms) | $(ratio "$(l B:rate notify_p99_ms)" "$(l A:rate notify_p99_ms)") (p99) |"
    echo "| steady $(fmt "$RATE")/s: committed msg/s | $(fmt "$(l A:rate committed_per_s)") | $(fmt "$(l B:rate committed_per_s)") | |"
  fi
  for k in list history unread; do
    case $k in list) label="conversation list" ;; history) label="one contact's history" ;; unread) label="unread list" ;; esac
    echo "| $label: p50 / p99 / max (ms), runs | $(ms3 "${Q[A:$k]}"), ${QRUNS[A:$k]} | $(ms3 "${Q[B:$k]}"), ${QRUNS[B:$k]} | $(ratio "$(qcol "B:$k" 2)" "$(qcol "A:$k" 2)") (p99) |"
  done
  cat <<EOF
| plain INSERT into a one-index table, $PGB_CLIENTS clients (tps) | $(fmt "${TPS[A:plain]}") | $(fmt "${TPS[B:plain]}") | $(ratio "${TPS[B:plain]}" "${TPS[A:plain]}") |
| wa_send_text, channel paused, $PGB_CLIENTS clients (tps) | $(fmt "${TPS[A:send]}") | $(fmt "${TPS[B:send]}") | $(ratio "${TPS[B:send]}" "${TPS[A:send]}") |
| wa_send_text cost vs the plain INSERT (plain tps ÷ wa_send_text tps) | $(ratio "${TPS[A:plain]}" "${TPS[A:send]}") | $(ratio "${TPS[B:plain]}" "${TPS[B:send]}") | |
EOF
  if [ "$OUT_MESSAGES" != 0 ]; then
    echo "| delivery to a 50 ms mock, $(fmt "$OUT_MESSAGES") queued at once (msg/s) | ${OUT[A:rate]} | ${OUT[B:rate]} | $(ratio "${OUT[B:rate]//,/}" "${OUT[A:rate]//,/}") |"
    echo "| COMMIT→request at 200 commits/s, p50 / p99 / max (ms) | ${OUT[A:latency]} | ${OUT[B:latency]} | |"
  fi
  cat <<EOF

How: load rows are \`wa-sim load\` (1 message per POST, each from one of $(fmt "$SENDERS") customers picked at random, $NEW_SHARE of them from customers who never wrote; committed = the run's wamids found in wa_messages). pgbench rows: \`-M prepared -j 2\`, ${SECS} s. Reads: one psql session per query and phase, the query prepared (\`PREPARE q(bigint)\`), one untimed run, then timed runs with \`\\timing\` (client side, unix socket round trip included), nearest-rank percentiles; the history is read for 100 random contacts that have messages and an open window. wa_send_text writes to those contacts (up to 10,000) with the channel paused; $(fmt "${TPS[A:deleted]}") (A) and $(fmt "${TPS[B:deleted]}") (B) queued rows were deleted afterwards. Delivery: \`wa-sim outbound-bench --latency-ms 50 --messages $OUT_MESSAGES\` (its own mock and channel bench_out).

## Listener memory (RssAnon)

| at start | after the seed | at the end |
|---:|---:|---:|
| $(fmt "${RSS[start]}") kB | $(fmt "${RSS[seed]}") kB | $(fmt "${RSS[end]}") kB |

## Relations of the extension over 1 MB

wa_conversations is $CONVERSATIONS_KIND${CONVERSATIONS_OVER:+ over $CONVERSATIONS_OVER}. Sizes include indexes and TOAST; rows are the planner's estimate.

| relation | kind | after the seed (VACUUM ANALYZE) | rows | at the end | rows |
|---|---|---:|---:|---:|---:|
EOF
  echo "$SIZES_END" | while IFS='|' read -r name kind size rows; do
    seed_line=$(echo "$SIZES_SEED" | awk -F'|' -v n="$name" '$1 == n { print $3 "|" $4 }')
    echo "| $name | $kind | ${seed_line%%|*} | ${seed_line#*|} | $size | $rows |"
  done
  cat <<EOF

## Scans of wa_contacts and wa_messages in phase B

Counted from \`pg_stat_user_tables\` (reset before phase B) around each step; the listener's
counters are flushed by one more webhook a second after each step.

| step | wa_contacts seq_scan | seq_tup_read | idx_scan | wa_messages seq_scan | seq_tup_read | idx_scan |
|---|---:|---:|---:|---:|---:|---:|
EOF
  for k in "${SEQ_STEPS[@]}"; do seq_row "$k" "${SEQ[$k]}"; done
  seq_row "**all of phase B**" "${SEQ[total]}"
  cat <<EOF

## Plans of the reads on the full database (phase B)

EOF
  for k in list history unread; do
    case $k in list) q=$LIST_SQL ;; history) q=$HISTORY_SQL ;; unread) q=$UNREAD_SQL ;; esac
    echo "\`$q\`"
    echo
    echo '```'
    cat "$WORK/plan_B_$k.txt"
    echo '```'
    echo
  done
  echo "<details><summary>The same in phase A (on the database phase A had written)</summary>"
  echo
  for k in list history unread; do
    echo "$k:"
    echo
    echo '```'
    cat "$WORK/plan_A_$k.txt"
    echo '```'
    echo
  done
  echo "</details>"
  echo
  if [ "$OUT_MESSAGES" != 0 ]; then
    for p in A B; do
      echo "## wa-sim outbound-bench, phase $p"
      echo
      cat "$WORK/outbound_$p.md"
      echo
    done
  fi
  echo "## Raw wa-sim load lines"
  echo
  echo '```'
  printf '%s\n' "${LOAD_LINES[@]}"
  echo '```'
  echo
  echo "Server log during the run: $(echo "$NEW_LOG" | grep -c . || true) lines, $LOG_PROBLEMS WARNING/ERROR/FATAL/PANIC."
  print_log_problems
}
mkdir -p target
REPORT_FILE=target/bench-scale-$(date -u +%Y%m%d-%H%M%S).md
report | tee "$REPORT_FILE"
progress "report written to $REPORT_FILE"
