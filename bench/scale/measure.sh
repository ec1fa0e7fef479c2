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
  cpu0=$(listener_cpu_ticks)
  line=$("$WA_SIM" load --dsn "$DSN" --channel "$CHANNEL" "$@") || die "wa-sim load $* failed"
  cpu1=$(listener_cpu_ticks)
  lsn1=$(sql "SELECT pg_catalog.pg_current_wal_lsn()")
  ckpt1=$(checkpoints)
  LOAD[$key]=${line#wa-sim load: }
  LOAD_LINES+=("$key: ${LOAD[$key]}")
  # WAL written during the step per message committed (KB of 1,024 bytes; right after a
  # CHECKPOINT, so the first change to every page writes the whole page), and the checkpoints
  # that ended meanwhile.
  committed=$(field "${LOAD[$key]}" committed)
  # The listener workers' CPU (main and HTTP threads, see listener_cpu_ticks) a message
  # committed, in µs: issue 29's measure.
  LCPU[$key]=$(awk -v t="$((cpu1 - cpu0))" -v n="${committed:-0}" 'BEGIN { if (n > 0) printf "%.0f", t * 10000 / n; else printf "—" }')
  if [ "${committed:-0}" -gt 0 ]; then
    WAL[$key]="$(sql "SELECT round(pg_catalog.pg_wal_lsn_diff('$lsn1', '$lsn0') / 1024.0 / $committed, 1)") KB, $((ckpt1 - ckpt0))"
  else
    WAL[$key]="—, $((ckpt1 - ckpt0))"
  fi
  progress "  committed $committed (${LOAD[$key]%% ok_200*}... committed_per_s=$(field "${LOAD[$key]}" committed_per_s), listener CPU ${LCPU[$key]} µs a message, notify p50/p99 $(field "${LOAD[$key]}" notify_p50_ms)/$(field "${LOAD[$key]}" notify_p99_ms) ms)"
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

# Server CPU: the CPU time its backend has run, in ns (the first field of the kernel's
# /proc/<pid>/schedstat), read by psql's \! around the measured statements of a session. CPU
# time, unlike a latency or a rate, hardly moves when something else runs on these 2 cores, so
# it tells two builds (or two roles) apart where p50s of a tenth of a millisecond cannot.
# cpu_mark file: psql lines writing the session's backend CPU so far to `file`.
cpu_mark() {
  echo 'SELECT pg_catalog.pg_backend_pid() AS wa_bench_pid \gset'
  echo '\setenv WA_BENCH_PID :wa_bench_pid'
  echo "\\! cut -d' ' -f1 /proc/\$WA_BENCH_PID/schedstat > '$1'"
}
# µs of server CPU per run between two cpu_mark files.
cpu_per_run() { # file before, file after, runs
  awk -v a="$(cat "$1")" -v b="$(cat "$2")" -v n="$3" 'BEGIN { printf "%.1f", (b - a) / n / 1000 }'
}

# p50 / p99 / max (ms) of a prepared read run in one psql session as `user` ($READ_USER, the
# inbox role: row-level security applies as to an inbox), timed by \timing; sets Q[$key] =
# "p50 p99 max", QRUNS[$key] and QCPU[$key] (µs of server CPU a run). The EXPLAIN (ANALYZE,
# BUFFERS) of one more run, in the same session, goes to $WORK/explain_$key.txt.
psql_as() { # user, psql arguments...
  local user=$1
  shift
  "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$WA_SCALE_HOME" -p "$SCALE_PORT" -U "$user" -d postgres "$@"
}
measure_read() { # key, SQL with one bigint parameter $1 or none, file of arguments (one a line; the count of runs without one), [user]
  local key=$1 query=$2 args=$3 user=${4:-$READ_USER} runs slowest params='(bigint)' exec='EXECUTE q(&);'
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
  slowest=$(psql_as "$user" -f "$WORK/probe_$key.sql" | awk '$1 == "Time:" { print $2 }' | sort -g | tail -1)
  runs=$(awk -v t="$slowest" -v n="$QUERY_RUNS" -v b="$QUERY_BUDGET" \
    'BEGIN { r = n; if (t * n > b * 1000) r = int(b * 1000 / t); if (r < 5) r = 5; if (r > n) r = n; print r }')
  QRUNS[$key]=$runs
  {
    echo "SET statement_timeout = '${QUERY_BUDGET}s';"
    echo "PREPARE q$params AS $query;"
    echo '\o /dev/null'
    head -1 "$args" | sed "s/.*/$exec/" # untimed
    cpu_mark "$WORK/cpu0_$key"
    echo '\timing on'
    for _ in $(seq $(((runs + $(wc -l <"$args") - 1) / $(wc -l <"$args")))); do cat "$args"; done | head -"$runs" | sed "s/.*/$exec/"
    echo '\timing off'
    cpu_mark "$WORK/cpu1_$key"
    echo "\\o $WORK/explain_$key.txt"
    head -1 "$args" | sed "s/.*/EXPLAIN (ANALYZE, BUFFERS) $exec/"
  } >"$WORK/read_$key.sql"
  Q[$key]=$(psql_as "$user" -f "$WORK/read_$key.sql" | awk '$1 == "Time:" { print $2 }' | sort -g | awk '
    { t[NR] = $1 } END { if (NR == 0) { print "- - -"; exit }
      p50 = int(NR * 0.50 + 0.9999); p99 = int(NR * 0.99 + 0.9999); printf "%.2f %.2f %.2f", t[p50], t[p99], t[NR] }')
  QCPU[$key]=$(cpu_per_run "$WORK/cpu0_$key" "$WORK/cpu1_$key" "$runs")
  progress "  $key as $user: p50 / p99 / max $(echo "${Q[$key]}" | sed 's| | / |g') ms over $runs runs, ${QCPU[$key]} µs of server CPU a run"
}

# What row-level security costs a read, on one database: the read's server CPU a run as
# $READ_USER and as the owner (whom the policies do not filter; same plan but for the
# policies' InitPlans and filters), each 100 runs in a session of its own, in three
# alternating rounds; the least of each side's rounds is kept (other work on the machine only
# ever adds CPU time: cache misses, a shared core). Sets POLICY_CPU[$key] = "role owner".
measure_policy_cpu() { # key, SQL with one bigint parameter $1, file of arguments
  local key=$1 query=$2 args=$3 user r side file best_role= best_owner= v
  for r in 1 2 3; do
    for side in role owner; do
      user=$READ_USER
      [ "$side" = owner ] && user=postgres
      file="$WORK/policy_${key}_$side.sql"
      {
        echo "PREPARE q(bigint) AS $query;"
        echo '\o /dev/null'
        awk '{ a[NR] = $0 } END { for (i = 0; i < 6; i++) print "EXECUTE q(" a[i % NR + 1] ");" }' "$args" # a generic plan after five
        cpu_mark "$WORK/pcpu0"
        awk '{ a[NR] = $0 } END { for (i = 0; i < 100; i++) print "EXECUTE q(" a[i % NR + 1] ");" }' "$args"
        cpu_mark "$WORK/pcpu1"
      } >"$file"
      psql_as "$user" -f "$file" >/dev/null
      v=$(cpu_per_run "$WORK/pcpu0" "$WORK/pcpu1" 100)
      if [ "$side" = role ]; then
        best_role=$(awk -v a="$v" -v b="$best_role" 'BEGIN { print (b == "" || a < b) ? a : b }')
      else
        best_owner=$(awk -v a="$v" -v b="$best_owner" 'BEGIN { print (b == "" || a < b) ? a : b }')
      fi
    done
  done
  POLICY_CPU[$key]="$best_role $best_owner"
  progress "  $key: server CPU a run as $READ_USER $best_role µs, as the owner $best_owner µs (least of 3 alternating rounds)"
}

# µs of server CPU a call of each of two prepared statements, in one session as `user`, each
# run `calls` times (one transaction a call, as pgbench runs them) in three alternating
# rounds; sets CALL_CPU[$key1] and CALL_CPU[$key2] to the least of the rounds (see
# measure_policy_cpu).
measure_call_cpu() { # user, calls, key1, PREPARE s1(bigint) AS ..., key2, PREPARE s2 ..., argument range
  local user=$1 calls=$2 k1=$3 q1=$4 k2=$5 q2=$6 range=$7 r k file
  {
    echo "PREPARE s1(bigint) AS $q1;"
    echo "PREPARE s2(bigint) AS $q2;"
    echo '\o /dev/null'
    echo 'EXECUTE s1(1);' # the first runs plan and warm the caches
    echo 'EXECUTE s2(1);'
    for r in 1 2 3; do
      for k in 1 2; do
        cpu_mark "$WORK/call_${r}_${k}_0"
        awk -v n="$calls" -v m="$range" -v k="$k" 'BEGIN { srand(7); for (i = 0; i < n; i++) printf "EXECUTE s%d(%d);\n", k, 1 + int(rand() * m) }'
        cpu_mark "$WORK/call_${r}_${k}_1"
      done
    done
  } >"$WORK/calls.sql"
  psql_as "$user" -f "$WORK/calls.sql" >/dev/null
  for k in 1 2; do
    file=$(for r in 1 2 3; do cpu_per_run "$WORK/call_${r}_${k}_0" "$WORK/call_${r}_${k}_1" "$calls"; echo; done | sort -g | head -1)
    if [ "$k" = 1 ]; then CALL_CPU[$k1]=$file; else CALL_CPU[$k2]=$file; fi
  done
  progress "  server CPU a call: $k1 ${CALL_CPU[$k1]} µs, $k2 ${CALL_CPU[$k2]} µs ($calls calls, least of 3 alternating rounds)"
}
LIST_SQL='SELECT * FROM wa_conversations WHERE channel_id = $1 ORDER BY last_message_at DESC NULLS LAST LIMIT 50'
HISTORY_SQL='SELECT * FROM wa_messages WHERE contact_id = $1 ORDER BY id DESC LIMIT 50'
UNREAD_SQL='SELECT contact_id, unread_count FROM wa_conversations WHERE channel_id = $1 AND unread_count > 0 ORDER BY last_message_at DESC NULLS LAST LIMIT 50'
# The inbox's "all my conversations": no channel filter, so the role's row-level security (if
# the build has it) is what keeps scale_other's conversations out.
ALL_SQL='SELECT * FROM wa_conversations ORDER BY last_message_at DESC NULLS LAST LIMIT 50'
READS="list history unread all"
# The reads of one channel, which the owner also runs (measure_read ... postgres).
OWNER_READS="list history unread"
read_args() { case $1 in history) echo contact_args ;; *) echo channel_args ;; esac; }
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
