# Sourced by bench/scale.sh once every phase has run: the markdown report of what it measured.

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
- roles: the reads (iii) and the enqueue (iv) as **$READ_USER**$([ -n "$AS_ROLE" ] && echo " (LOGIN, SELECT on the extension's tables and views, EXECUTE on wa_send_text, SELECT / INSERT on the bench's helper tables)" || echo " (SCALE_AS_ROLE empty: the owner, which row-level security does not filter)"); the ingest, the seed, the delivery and pgbench (vi) as the owner postgres. Channel grants: $(if [ "${#GRANTS[@]}" = 0 ]; then echo "none asked for"; else printf '%s; ' "${GRANTS[@]}" | sed 's/; $//'; fi)
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
| all conversations (no channel filter) p99, full database | $(qcol B:all 2) ms | — | |
| every acknowledged message stored exactly once | $EXACTLY_ONCE: $(fmt "$TOTAL_OK") acknowledged, $(fmt "$TOTAL_COMMITTED") committed, $(fmt "$LOAD_ROWS") rows for $(fmt "$LOAD_DISTINCT") distinct wamids | equal, 0 duplicates | $([ -n "$RUNS_SHORT" ] && echo "runs with committed ≠ acknowledged: $RUNS_SHORT") |

## Seed

$(fmt "$(field "$SEED" committed)") messages committed ($(fmt "$(field "$SEED" messages_sent)") sent in $(fmt "$(field "$SEED" posts)") POSTs, $(fmt "$(field "$SEED" ok_messages)") acknowledged, $(field "$SEED" transport_errors) without answer, non-200: $(field "$SEED" non_200)) from $(fmt "$(field "$SEED" distinct_senders)") distinct customers in $(field "$SEED" seconds) s: **$(fmt "$SEED_RATE") messages/s** (target 10,000). POST→NOTIFY p50 / p99 $(field "$SEED" notify_p50_ms) / $(field "$SEED" notify_p99_ms) ms, HTTP answer p50 / p99 $(field "$SEED" http_p50_ms) / $(field "$SEED" http_p99_ms) ms (100 messages a POST). Then \`VACUUM ANALYZE\` (whole database): ${VACUUM_SECONDS} s; then \`CHECKPOINT\` and a wait for autovacuum to go idle: ${SETTLE_SECONDS} s (${busy} worker(s) still busy at the end of it). Seed wall time with the lookup of its wamids: ${SEED_WALL} s.
EOF
  if [ -n "$OTHER_SEED" ]; then
    echo
    echo "Then the second channel, $OTHER_CHANNEL (its own customers; role $OTHER_ROLE), the same way: $(fmt "$(field "$OTHER_SEED" committed)") messages committed ($(fmt "$(field "$OTHER_SEED" ok_messages)") acknowledged) from $(fmt "$(field "$OTHER_SEED" distinct_senders)") distinct customers in $(field "$OTHER_SEED" seconds) s ($(fmt "$(field "$OTHER_SEED" committed_per_s)") messages/s)."
  else
    echo
    echo "The second channel, $OTHER_CHANNEL, was made empty (SCALE_OTHER_SHARE=$OTHER_SHARE)."
  fi
  cat <<EOF

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
    echo "| listener, $c connections: its CPU a message, main and HTTP threads (µs) | ${LCPU[A:$c]} | ${LCPU[B:$c]} | $(ratio "${LCPU[B:$c]}" "${LCPU[A:$c]}") |"
    echo "| listener, $c connections: WAL a message, checkpoints ended during the step | ${WAL[A:$c]} | ${WAL[B:$c]} | |"
    echo "| listener, $c connections: 200 / non-200 + no answer | $(fmt "$(l "A:$c" ok_200)") / $(($(l "A:$c" non_200) + $(l "A:$c" transport_errors))) | $(fmt "$(l "B:$c" ok_200)") / $(($(l "B:$c" non_200) + $(l "B:$c" transport_errors))) | |"
  done
  if [ "$RATE" != 0 ]; then
    echo "| steady $(fmt "$RATE")/s, 16 connections: POST→NOTIFY p50 / p99 / max (ms) | $(l A:rate notify_p50_ms) / $(l A:rate notify_p99_ms) / $(l A:rate notify_max_ms) | $(l B:rate notify_p50_ms) / $(l B:rate notify_p99_ms) / $(l B:rate notify_max_ms) | $(ratio "$(l B:rate notify_p99_ms)" "$(l A:rate notify_p99_ms)") (p99) |"
    echo "| steady $(fmt "$RATE")/s: committed msg/s | $(fmt "$(l A:rate committed_per_s)") | $(fmt "$(l B:rate committed_per_s)") | |"
  fi
  for k in $READS; do
    echo "| $(read_label "$k") as $READ_USER: p50 / p99 / max (ms), runs | $(ms3 "${Q[A:$k]}"), ${QRUNS[A:$k]} | $(ms3 "${Q[B:$k]}"), ${QRUNS[B:$k]} | $(ratio "$(qcol "B:$k" 2)" "$(qcol "A:$k" 2)") (p99) |"
    echo "| $(read_label "$k") as $READ_USER: server CPU a run (µs) | ${QCPU[A:$k]} | ${QCPU[B:$k]} | $(ratio "${QCPU[B:$k]}" "${QCPU[A:$k]}") |"
    if [ -n "${POLICY_CPU[B:$k]:-}" ]; then
      local a b
      read -r -a a <<<"${POLICY_CPU[A:$k]}"
      read -r -a b <<<"${POLICY_CPU[B:$k]}"
      echo "| $(read_label "$k"), least server CPU a run (µs) as $READ_USER / as the owner (no row-level security); ratio | ${a[0]} / ${a[1]}; $(ratio "${a[0]}" "${a[1]}") | ${b[0]} / ${b[1]}; $(ratio "${b[0]}" "${b[1]}") | |"
    fi
  done
  cat <<EOF
| plain INSERT into a one-index table, $PGB_CLIENTS clients as $READ_USER (tps) | $(fmt "${TPS[A:plain]}") | $(fmt "${TPS[B:plain]}") | $(ratio "${TPS[B:plain]}" "${TPS[A:plain]}") |
| wa_send_text, channel paused, $PGB_CLIENTS clients as $READ_USER (tps) | $(fmt "${TPS[A:send]}") | $(fmt "${TPS[B:send]}") | $(ratio "${TPS[B:send]}" "${TPS[A:send]}") |
| wa_send_text cost vs the plain INSERT (plain tps ÷ wa_send_text tps) | $(ratio "${TPS[A:plain]}" "${TPS[A:send]}") | $(ratio "${TPS[B:plain]}" "${TPS[B:send]}") | |
| server CPU a call, one session as $READ_USER: wa_send_text / plain INSERT (µs) | ${CALL_CPU[A:send]} / ${CALL_CPU[A:plain]} | ${CALL_CPU[B:send]} / ${CALL_CPU[B:plain]} | $(ratio "${CALL_CPU[B:send]}" "${CALL_CPU[A:send]}") (wa_send_text) |
EOF
  if [ "$OUT_MESSAGES" != 0 ]; then
    echo "| delivery to a 50 ms mock, $(fmt "$OUT_MESSAGES") queued at once (msg/s) | ${OUT[A:rate]} | ${OUT[B:rate]} | $(ratio "${OUT[B:rate]//,/}" "${OUT[A:rate]//,/}") |"
    echo "| COMMIT→request at 200 commits/s, p50 / p99 / max (ms) | ${OUT[A:latency]} | ${OUT[B:latency]} | |"
  fi
  cat <<EOF

How: load rows are \`wa-sim load\` (1 message per POST, each from one of $(fmt "$SENDERS") customers picked at random, $NEW_SHARE of them from customers who never wrote; committed = the run's wamids found in wa_messages). pgbench rows: \`-M prepared -j 2\`, ${SECS} s. Reads: one psql session per query and phase as $READ_USER, the query prepared (\`PREPARE q(bigint)\`; the all-conversations read has no parameter), one untimed run, then timed runs with \`\\timing\` (client side, unix socket round trip included), nearest-rank percentiles, and the server CPU of those runs (the backend's \`/proc/<pid>/schedstat\`, read before and after by psql's \`\\!\`), and, for the three reads of one channel, the least server CPU a run of three alternating rounds as $READ_USER and as the owner, whom row-level security does not filter (same plans but for the policies' InitPlans and filters: the two differ by what the policies cost); the history is read for 100 random contacts that have messages and an open window. wa_send_text writes to those contacts (up to 10,000) with the channel paused; its server CPU a call, and the plain INSERT's, come from one session of 1,000 prepared calls of each, one transaction a call, in three alternating rounds (the least); $(fmt "${TPS[A:deleted]}") (A) and $(fmt "${TPS[B:deleted]}") (B) queued rows were deleted afterwards. Delivery: \`wa-sim outbound-bench --latency-ms 50 --messages $OUT_MESSAGES\` (its own mock and channel bench_out).

## Conversations each channel shows, at the end

As the owner (postgres) and as $READ_USER, \`SELECT channel, count(*) FROM wa_conversations GROUP BY 1\`: where row-level security filters, $READ_USER sees fewer.

| channel | owner | $READ_USER |
|---|---:|---:|
$(echo "$VISIBLE" | awk -F'|' '$1 != "" { print "| " $1 " | " $2 " | " $3 " |" }')

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

## Plans of the reads on the full database (phase B), as $READ_USER

\`EXPLAIN (ANALYZE, BUFFERS)\` of one more run in each read's own session (so under the role's
row-level security, if the build has it), after its timed runs.

EOF
  for k in $READS; do
    echo "$(read_label "$k"): \`$(read_sql "$k")\`"
    echo
    echo '```'
    cat "$WORK/plan_B_$k.txt"
    echo '```'
    echo
  done
  echo "<details><summary>The same in phase A (on the database phase A had written)</summary>"
  echo
  for k in $READS; do
    echo "$(read_label "$k"):"
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
