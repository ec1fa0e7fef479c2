#!/usr/bin/env bash
# What the row-level security policies (issue 26) cost the inbox's reads, on the full database
# bench/scale.sh leaves behind: each read of one channel as the inbox role (wa_bench_agent),
# with row-level security on and off (ALTER TABLE ... DISABLE ROW LEVEL SECURITY on that
# throwaway bench cluster, enabled again at exit): the same role, grants and plans but for the
# policies. N runs inside one DO block (PL/pgSQL keeps the plan, as a prepared statement is
# kept; MODE=execute: N EXECUTEs of a prepared statement from psql instead), ROUNDS alternating
# rounds, the backend's CPU time (/proc/<pid>/schedstat) a run, the least of the rounds kept
# (other work on the machine only ever adds to it).
#
#   bash bench/scale.sh        (the cluster stays in WA_SCALE_HOME, stopped)
#   runuser -u postgres -- pg_ctl -D /var/tmp/wa_scale/data -l /var/tmp/wa_scale/server.log start
#   runuser -u postgres -- bash bench/policies.sh
#
# MODE=latency measures what an inbox waits for instead: pgbench -M prepared, one client as the
# role, SECS (5) seconds a round, its latency average (the protocol, the plan cache, the
# executor and the client's round trip on this machine; history picks one of the 100 contacts
# a transaction), the least of the rounds kept.
#
# READS="history" measures only the reads named (list, history, unread).
#
# Run as postgres (the cluster's owner). Results: BENCHMARKS.md, "Channel grants".
set -euo pipefail
. "$(dirname "$0")/../scripts/pg.sh" # PG_MAJOR=15 (default) or 18, as bench/scale.sh
cd /tmp # (psql's \! runs in the working directory)
PSQL=("$PG_BIN/psql" -X -q -At -h "${WA_SCALE_HOME:-/var/tmp/wa_scale}" -p "${SCALE_PORT:-5497}" -U postgres -d postgres)
ROLE=wa_bench_agent; N=${N:-2000}; ROUNDS=${ROUNDS:-7}
TABLES="wa_messages wa_conversation_state wa_contacts wa_channels wa_groups"
CH=$("${PSQL[@]}" -c "SELECT id FROM wa_channels WHERE name = 'scale'")
CONTACTS=$("${PSQL[@]}" -c "SELECT array_agg(contact_id) FROM (SELECT DISTINCT contact_id FROM (SELECT contact_id FROM wa_messages WHERE channel_id = $CH AND contact_id IS NOT NULL ORDER BY id DESC LIMIT 400) r LIMIT 100) s")
declare -A SQL=(
  [list]="PERFORM * FROM wa_conversations WHERE channel_id = $CH ORDER BY last_message_at DESC NULLS LAST LIMIT 50"
  [history]="PERFORM * FROM wa_messages WHERE contact_id = ids[1 + i % 100] ORDER BY id DESC LIMIT 50"
  [unread]="PERFORM contact_id, unread_count FROM wa_conversations WHERE channel_id = $CH AND unread_count > 0 ORDER BY last_message_at DESC NULLS LAST LIMIT 50"
)
rls() { for t in $TABLES; do "${PSQL[@]}" -c "ALTER TABLE $t $1 ROW LEVEL SECURITY"; done; }
run() {
  if [ "${MODE:-do}" = execute ]; then run_execute "$1"; return; fi
  if [ "${MODE:-do}" = latency ]; then run_latency "$1"; return; fi
  "${PSQL[@]}" <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv P :pid
SET ROLE $ROLE;
DO \$\$DECLARE ids bigint[] := '$CONTACTS'; BEGIN FOR i IN 1..10 LOOP ${SQL[$1]}; END LOOP; END\$\$;
\! cut -d' ' -f1 /proc/\$P/schedstat > /tmp/rt0
DO \$\$DECLARE ids bigint[] := '$CONTACTS'; BEGIN FOR i IN 1..$N LOOP ${SQL[$1]}; END LOOP; END\$\$;
\! cut -d' ' -f1 /proc/\$P/schedstat > /tmp/rt1
SQL
  awk -v a="$(cat /tmp/rt0)" -v b="$(cat /tmp/rt1)" -v n="$N" 'BEGIN { printf "%.2f\n", (b - a) / n / 1000 }'
}
# The same reads as an inbox sends them: a prepared statement, one EXECUTE a run (protocol,
# plan cache and executor; the round trip costs the client, not this backend).
declare -A PREP=(
  [list]="SELECT * FROM wa_conversations WHERE channel_id = \$1 ORDER BY last_message_at DESC NULLS LAST LIMIT 50"
  [history]="SELECT * FROM wa_messages WHERE contact_id = \$1 ORDER BY id DESC LIMIT 50"
  [unread]="SELECT contact_id, unread_count FROM wa_conversations WHERE channel_id = \$1 AND unread_count > 0 ORDER BY last_message_at DESC NULLS LAST LIMIT 50"
)
run_execute() {
  local args
  if [ "$1" = history ]; then args=$(echo "$CONTACTS" | tr -d '{}' | tr ',' '\n'); else args=$(yes "$CH" | head -100); fi
  {
    echo "SELECT pg_backend_pid() AS pid \\gset"
    echo '\setenv P :pid'
    echo "SET ROLE $ROLE;"
    echo "PREPARE q(bigint) AS ${PREP[$1]};"
    echo '\o /dev/null'
    echo "$args" | head -10 | sed 's/.*/EXECUTE q(&);/'
    echo "\\! cut -d' ' -f1 /proc/\$P/schedstat > /tmp/rt0"
    for _ in $(seq $((N / 100))); do echo "$args" | sed 's/.*/EXECUTE q(&);/'; done
    echo "\\! cut -d' ' -f1 /proc/\$P/schedstat > /tmp/rt1"
  } > /tmp/rt.sql
  "${PSQL[@]}" -f /tmp/rt.sql >/dev/null
  awk -v a="$(cat /tmp/rt0)" -v b="$(cat /tmp/rt1)" -v n="$N" 'BEGIN { printf "%.2f\n", (b - a) / n / 1000 }'
}
# µs of pgbench's latency average for the read as the role.
run_latency() {
  local dir=/tmp/wa-policies-pgbench scripts=() c
  rm -rf "$dir"; mkdir -p "$dir"
  if [ "$1" = history ]; then
    for c in $(echo "$CONTACTS" | tr -d '{}' | tr ',' ' '); do
      echo "${PREP[history]//\$1/$c};" >"$dir/$c.sql"
      scripts+=(-f "$dir/$c.sql")
    done
  else
    echo "${PREP[$1]//\$1/$CH};" >"$dir/q.sql"
    scripts=(-f "$dir/q.sql")
  fi
  "$PG_BIN/pgbench" -n -M prepared -c 1 -T "${SECS:-5}" -h "${WA_SCALE_HOME:-/var/tmp/wa_scale}" -p "${SCALE_PORT:-5497}" \
    -U "$ROLE" "${scripts[@]}" postgres 2>&1 | awk '/^latency average/ { printf "%.2f\n", $4 * 1000 }'
}
trap 'rls ENABLE' EXIT
for q in ${READS:-list history unread}; do
  on=(); off=()
  for _ in $(seq "$ROUNDS"); do
    rls ENABLE; on+=("$(run "$q")")
    rls DISABLE; off+=("$(run "$q")")
  done
  lon=$(printf '%s\n' "${on[@]}" | sort -g | head -1); loff=$(printf '%s\n' "${off[@]}" | sort -g | head -1)
  echo "$q as $ROLE: policies on, least $lon µs a run (rounds: ${on[*]}); off, least $loff µs (rounds: ${off[*]}); the policies cost $(awk -v a="$lon" -v b="$loff" 'BEGIN { printf "%.2f µs, %+.1f%%", a - b, (a - b) / b * 100 }') (${MODE:-do})"
done
