# Sourced by bench/scale.sh: how it measures a step (scan counts, checkpoints, wa-sim load,
# pgbench, the reads' latency and plans). Uses and fills the variables scale.sh declares.

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
# PostgreSQL 17 moved the counts from pg_stat_bgwriter to pg_stat_checkpointer.
if [ "$(sql "SHOW server_version_num")" -ge 170000 ]; then
  CHECKPOINTS_SQL="SELECT num_timed + num_requested FROM pg_catalog.pg_stat_checkpointer"
else
  CHECKPOINTS_SQL="SELECT checkpoints_timed + checkpoints_req FROM pg_catalog.pg_stat_bgwriter"
fi
checkpoints() {
  sql "$CHECKPOINTS_SQL"
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
run_pgbench_as() { # role, pgbench arguments...
  local out user=$1
  shift
  out=$("$BIN/pgbench" -h "$WA_SCALE_HOME" -p "$SCALE_PORT" -U "$user" -n "$@" postgres 2>&1) || { echo "$out" >&2; die "pgbench -U $user $* failed"; }
  if echo "$out" | grep -q 'aborted'; then echo "$out" >&2; die "a pgbench client (-U $user) aborted"; fi
  echo "$out"
}
run_pgbench() { run_pgbench_as postgres "$@"; }

# p50 / p99 / max (ms) of a prepared read run in one psql session as $READ_USER (the inbox
# role: row-level security applies as to an inbox), timed by \timing; sets Q[$key] =
# "p50 p99 max" and QRUNS[$key]. The EXPLAIN (ANALYZE, BUFFERS) of one more run, in the same
# session, goes to $WORK/explain_$key.txt.
PSQL_AS=("$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$WA_SCALE_HOME" -p "$SCALE_PORT" -U "$READ_USER" -d postgres)
measure_read() { # key, SQL with one bigint parameter $1 or none, file of arguments (one a line; the count of runs without one)
  local key=$1 query=$2 args=$3 runs slowest params='(bigint)' exec='EXECUTE q(&);'
  # Without $1, PREPARE q AS ... and EXECUTE q: the plan of the literal query, not of a parameter.
  if [[ $query != *'$1'* ]]; then params='' exec='EXECUTE q;'; fi
  # Three runs first (cold plan cache, as a new session has) to see if 100 fit the budget.
  {
    echo "SET statement_timeout = '${QUERY_BUDGET}s';"
    echo "PREPARE q$params AS $query;"
    echo '\o /dev/null'
    echo '\timing on'
    head -3 "$args" | sed "s/.*/$exec/"
  } >"$WORK/probe_$key.sql"
  slowest=$("${PSQL_AS[@]}" -f "$WORK/probe_$key.sql" | awk '$1 == "Time:" { print $2 }' | sort -g | tail -1)
  runs=$(awk -v t="$slowest" -v n="$QUERY_RUNS" -v b="$QUERY_BUDGET" \
    'BEGIN { r = n; if (t * n > b * 1000) r = int(b * 1000 / t); if (r < 5) r = 5; if (r > n) r = n; print r }')
  QRUNS[$key]=$runs
  {
    echo "SET statement_timeout = '${QUERY_BUDGET}s';"
    echo "PREPARE q$params AS $query;"
    echo '\o /dev/null'
    head -1 "$args" | sed "s/.*/$exec/" # untimed
    echo '\timing on'
    for _ in $(seq $(((runs + $(wc -l <"$args") - 1) / $(wc -l <"$args")))); do cat "$args"; done | head -"$runs" | sed "s/.*/$exec/"
    echo '\timing off'
    echo "\\o $WORK/explain_$key.txt"
    head -1 "$args" | sed "s/.*/EXPLAIN (ANALYZE, BUFFERS) $exec/"
  } >"$WORK/read_$key.sql"
  Q[$key]=$("${PSQL_AS[@]}" -f "$WORK/read_$key.sql" | awk '$1 == "Time:" { print $2 }' | sort -g | awk '
    { t[NR] = $1 } END { if (NR == 0) { print "- - -"; exit }
      p50 = int(NR * 0.50 + 0.9999); p99 = int(NR * 0.99 + 0.9999); printf "%.2f %.2f %.2f", t[p50], t[p99], t[NR] }')
  progress "  $key: p50 / p99 / max $(echo "${Q[$key]}" | sed 's| | / |g') ms over $runs runs"
}
LIST_SQL='SELECT * FROM wa_conversations WHERE channel_id = $1 ORDER BY last_message_at DESC NULLS LAST LIMIT 50'
HISTORY_SQL='SELECT * FROM wa_messages WHERE contact_id = $1 ORDER BY id DESC LIMIT 50'
UNREAD_SQL='SELECT contact_id, unread_count FROM wa_conversations WHERE channel_id = $1 AND unread_count > 0 ORDER BY last_message_at DESC NULLS LAST LIMIT 50'
# The inbox's "all my conversations": no channel filter, so the role's row-level security (if
# the build has it) is what keeps scale_other's conversations out.
ALL_SQL='SELECT * FROM wa_conversations ORDER BY last_message_at DESC NULLS LAST LIMIT 50'
READS="list history unread all"
read_label() {
  case $1 in
    list) echo "conversation list" ;; history) echo "one contact's history" ;; unread) echo "unread list" ;;
    all) echo "all conversations (every channel the role sees)" ;;
  esac
}
read_sql() { case $1 in list) echo "$LIST_SQL" ;; history) echo "$HISTORY_SQL" ;; unread) echo "$UNREAD_SQL" ;; all) echo "$ALL_SQL" ;; esac; }

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
