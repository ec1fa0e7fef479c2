#!/usr/bin/env bash
# "200 means committed" when the primary dies while a webhook's COMMIT waits for the
# synchronous standby. The primary's walsender is stopped (SIGSTOP), so the standby never gets
# the commit; a webhook is posted to the primary's listener and waits in SyncRep; then the
# postmaster is SIGKILLed. PostgreSQL ends that wait at postmaster death with the transaction
# committed only locally (a client session gets no answer then). The listener must not answer
# 200: the promoted standby does not have the webhook, and Meta would not send it again.
# Passes if the answer is not 200, or if it is 200 and the new primary has the webhook.
source "$(dirname "$0")/cluster.sh"

start_cluster
walsender=$(ps -o pid=,args= --ppid "$PM1" | awk '/walsender/ {print $1; exit}')
[ -n "$walsender" ] || die "no walsender on pg1"
kill -STOP "$walsender"
pids+=("$walsender") # never left stopped: cleanup kills it
say "pg1's walsender (pid $walsender) stopped: commits on pg1 wait for pg2"

WAMID=wamid.HA.SYNCREP.1
"$PY" "$HA/meta.py" post --url "http://127.0.0.1:${LISTEN[0]}/webhook/$CHANNEL" --secret "$SECRET" \
  --phone-number-id "$PHONE_ID" --wamid "$WAMID" >"$T/post.out" 2>&1 &
post_pid=$!
listener_in_syncrep() {
  [ "$(psql_at "${PGPORT[0]}" -c "SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'whatsapp_channel webhook listener' AND wait_event = 'SyncRep'")" = 1 ]
}
wait_for 10 "listener waiting for the synchronous standby" listener_in_syncrep
say "the listener's COMMIT waits for pg2; kill -9 pg1's postmaster (pid $PM1)"
kill -9 "$PM1"
post_done() { ! kill -0 "$post_pid" 2>/dev/null; }
wait_for 20 "an answer to the webhook" post_done
answer=$(cat "$T/post.out")
say "the webhook was answered: $answer"
# The stopped walsender never sent the commit: end it (the old primary is dead anyway).
kill -9 "$walsender"

wait_for 60 "promotion of pg2" rest_is 1 primary
stored=$(psql_at "${PGPORT[1]}" -c "SELECT count(*) FROM wa_messages WHERE wamid = '$WAMID'")
say "the new primary pg2 has $stored row(s) for $WAMID"
if [ "$answer" = 200 ] && [ "$stored" = 0 ]; then
  grep -n "canceling the wait for synchronous replication\|whatsapp_channel" "$T/pg1/patroni.log" | tail -n 5
  die "the listener answered 200 for a webhook that was committed only on the dead primary: lost"
fi
say "passed"
