#!/usr/bin/env bash
# Failover under traffic: two Patroni nodes (synchronous_mode) with whatsapp_channel preloaded,
# haproxy routing webhooks and SQL to whichever is primary, wa-sim standing in for Meta's Graph
# API, and a client that behaves like Meta (retries each webhook until it gets 200). Midway the
# primary's postmaster is SIGKILLed and Patroni promotes the synchronous standby. Passes only if
# every webhook answered 200 is stored exactly once on the new primary, every committed
# wa_send_text() reached wa-sim, and every message sent twice was in flight at the crash.
# Also checks that a hot standby runs no worker and binds no listener port, and that the
# promoted node's listener answers within seconds, without a restart.
# Settings and set-up: tests/ha/cluster.sh (HA_PG_BIN, HA_KEEP).
source "$(dirname "$0")/cluster.sh"
SIM_LATENCY_MS=200
# The duplicate window, by when wa-sim answered a send: a message was in flight at the crash
# if it was answered at most 2 s before the kill (the time to commit and replicate the record
# of the answer, with room for a busy machine) or at most the answer time + 1 s after it.
BEFORE=2 AFTER=$("$PY" -c "print($SIM_LATENCY_MS / 1000 + 1)")
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -q -p wa-sim
WA_SIM=$PWD/target/release/wa-sim

start_cluster
say "standby pg2: no worker runs, nothing listens on ${LISTEN[1]}"
check_idle_standby 1
[ -n "$(workers_of "$PM1")" ] || die "no whatsapp_channel worker on the primary (ps titles changed?)"
! grep 'whatsapp_channel: ' "$T/pg2/patroni.log" || die "the extension logged on the standby pg2 (above)"
start_haproxy

DSN="host=127.0.0.1 port=$SQL user=postgres dbname=postgres"
say "wa-sim graph on $SIM (answers in ${SIM_LATENCY_MS} ms; status webhooks through haproxy)"
"$WA_SIM" graph --port "$SIM" --dsn "$DSN" --webhook-base "http://127.0.0.1:$WEBHOOKS" --latency-ms "$SIM_LATENCY_MS" \
  > >("$PY" "$HA/meta.py" stamp >"$T/wa-sim.log") 2>"$T/wa-sim.err" &
pids+=($!)
sim_up() { grep -q 'fake Graph API on' "$T/wa-sim.log" 2>/dev/null; }
wait_for 30 "wa-sim" sim_up
sent_on() { psql_at "$1" -c "SELECT count(*) FROM wa_messages WHERE direction = 'outbound' AND status IN ('sent', 'delivered', 'read')" 2>/dev/null || echo 0; }
sent_at_least() { [ "$(sent_on "$1")" -ge "$2" ]; }
# One message first, so the delivery worker has found the extension before the clients start.
first_at=$(now)
psql_at "${PGPORT[0]}" -c "SELECT wa_send_text('$CHANNEL', '+16559990000', 'first')" >/dev/null
wait_for 30 "the first message sent" sent_at_least "${PGPORT[0]}" 1
say "first message sent $(since "$first_at") s after it was queued, in $(psql_at "${PGPORT[0]}" -c "SELECT attempts FROM wa_messages WHERE recipient = '+16559990000'") attempt(s)"

say "Meta-like client posting webhooks, outbound messages queued at 20/s"
"$PY" "$HA/meta.py" webhooks --url "http://127.0.0.1:$WEBHOOKS/webhook/$CHANNEL" --secret "$SECRET" \
  --phone-number-id "$PHONE_ID" --out "$T/out" >"$T/webhooks.log" 2>&1 &
webhooks_pid=$!; pids+=($webhooks_pid)
"$PY" "$HA/meta.py" outbound --dsn "$DSN" --channel "$CHANNEL" --out "$T/out" --rate 20 >"$T/outbound.log" 2>&1 &
outbound_pid=$!; pids+=($outbound_pid)
acked() { cat "$T/out/webhooks.progress" 2>/dev/null || echo 0; }
acked_at_least() { [ "$(acked)" -ge "$1" ]; }
wait_for 60 "300 acked webhooks" acked_at_least 300
wait_for 60 "60 sent messages" sent_at_least "${PGPORT[0]}" 60

say "kill -9 the primary's postmaster (pid $PM1) with $(acked) webhooks acked"
killed_at=$(now)
kill -9 "$PM1"
echo "$killed_at" >"$T/out/killed_at"
wait_for 60 "promotion of pg2" rest_is 1 primary
promoted_at=$(now)
wait_for 30 "listener of the promoted pg2" answers_verify "${LISTEN[1]}"
say "pg2 primary $(since "$killed_at" "$promoted_at") s after the kill; its listener answered $(since "$promoted_at") s after that"
"$PY" -c "import sys; sys.exit($(now) - $promoted_at > 10)" || die "the promoted node's listener took over 10 s"
[ -n "$(workers_of "$PM2")" ] || die "no whatsapp_channel worker on the promoted pg2"
[ "$(postmaster_pid 1)" = "$PM2" ] || die "pg2's postmaster was restarted; the workers should start at promotion"

# Traffic goes on through the new primary while the old one rejoins, then the clients stop.
after=$(( $(acked) + 300 ))
wait_for 60 "300 more acked webhooks after the failover" acked_at_least "$after"
# Patroni's /replica answers 200 as soon as pg1 starts in recovery, before it sees that pg1's
# timeline forked and restarts it for pg_rewind; only a WAL receiver on the new timeline means
# it has rejoined for good.
streams_new_timeline() {
  rest_is 0 replica && [ "$(psql_at "${PGPORT[0]}" -c "SELECT count(*) FROM pg_stat_wal_receiver
    WHERE status = 'streaming' AND greatest(receive_start_tli, received_tli) >= 2" 2>/dev/null)" = 1 ]
}
wait_for 120 "pg1 back as a replica streaming timeline 2" streams_new_timeline
say "old primary pg1 rejoined as a replica: no worker runs, nothing listens on ${LISTEN[0]}"
check_idle_standby 0
touch "$T/out/stop"
clients_done() { ! kill -0 "$webhooks_pid" 2>/dev/null && ! kill -0 "$outbound_pid" 2>/dev/null; }
wait_for 150 "clients to finish" clients_done
wait "$webhooks_pid" || die "the webhook client gave up: $(cat "$T/webhooks.log")"
wait "$outbound_pid" || die "the outbound client failed: $(cat "$T/outbound.log")"
say "$(cat "$T/webhooks.log")"
say "$(cat "$T/outbound.log")"
all_sent() { [ "$(psql_at "${PGPORT[1]}" -c "SELECT count(*) FROM wa_messages WHERE direction = 'outbound' AND status NOT IN ('sent', 'delivered', 'read')")" = 0 ]; }
wait_for 60 "every queued message sent" all_sent
# wa-sim logs a send just after answering it: let its log catch up with what was recorded.
sim_logged_all() { [ "$(grep -c ': accepted as ' "$T/wa-sim.log")" -ge "$(psql_at "${PGPORT[1]}" -c "SELECT count(*) FROM wa_messages WHERE direction = 'outbound'")" ]; }
wait_for 10 "wa-sim's log of every send" sim_logged_all

"$PY" "$HA/meta.py" check --dsn "host=127.0.0.1 port=${PGPORT[1]} user=postgres dbname=postgres" --channel "$CHANNEL" \
  --out "$T/out" --sim-log "$T/wa-sim.log" --killed-at "$killed_at" --before "$BEFORE" --after "$AFTER" || die "see above"
say "passed"
