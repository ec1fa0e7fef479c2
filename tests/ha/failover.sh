#!/usr/bin/env bash
# Failover test: two Patroni nodes (synchronous_mode) with whatsapp_channel preloaded, haproxy
# routing webhooks and SQL to whichever is primary, wa-sim standing in for Meta's Graph API,
# and a client that behaves like Meta (retries each webhook until it gets 200). Midway the
# primary's postmaster is SIGKILLed and Patroni promotes the synchronous standby. Passes only if
# every webhook answered 200 is stored exactly once on the new primary, every committed
# wa_send_text() reached wa-sim, and every message sent twice was in flight at the crash.
# Also checks that a hot standby runs no worker and binds no listener port, and that the
# promoted node's listener answers within seconds, without a restart.
#   HA_PG_BIN   PostgreSQL binaries with the extension installed (default: $PG_BIN of scripts/pg.sh)
#   HA_KEEP=1   keep the temporary directory (logs) after a pass too
# Needs tests/ha/setup.sh (patroni, etcd, haproxy); run as root (servers run as postgres).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/pg.sh
PG_BIN=${HA_PG_BIN:-$PG_BIN}
HA=$PWD/tests/ha
# Debian's Python, whose python3-psycopg setup.sh installs (a pyenv python3 on PATH lacks it).
PY=/usr/bin/python3
started=$(date +%s)

# Ports, away from the suite's and the run command's.
ETCD=23790 ETCD_PEER=23800
REST=(18008 18009) PGPORT=(15432 15433) LISTEN=(18080 18081)
WEBHOOKS=18443 SQL=15000 SIM=18090
CHANNEL=ha PHONE_ID=106540352242922 TOKEN=EAAGhaaccesstoken00000000000 SECRET=0123456789abcdef0123456789abcdef VERIFY=ha_verify
SIM_LATENCY_MS=200
# A message is in flight at the crash if its send began at most this long before the kill:
# the Graph API's answer time plus the time to commit (and replicate) the record of it.
WINDOW=$("$PY" -c "print($SIM_LATENCY_MS / 1000 + 2)")

say() { echo "[ha $(( $(date +%s) - started ))s] $*"; }
die() { echo "[ha] FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
# As postgres; setpriv and env exec what they run, so "${AS_POSTGRES[@]}" server & makes $! the server.
AS_POSTGRES=(setpriv --reuid=postgres --regid=postgres --init-groups -- env -u RUST_BACKTRACE)
psql_at() { local port=$1; shift; "$PG_BIN/psql" -X -q -A -t -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.1 s until it succeeds or time is up.
wait_for() {
  local seconds=$1 what=$2; shift 2
  local deadline=$(( $(date +%s%N) + seconds * 1000000000 ))
  until "$@"; do
    [ "$(date +%s%N)" -lt "$deadline" ] || die "no $what within ${seconds}s"
    sleep 0.1
  done
}
verify_url() { echo "http://127.0.0.1:$1/webhook/$CHANNEL?hub.mode=subscribe&hub.verify_token=$VERIFY&hub.challenge=42"; }
answers_verify() { [ "$(curl -s -m 2 "$(verify_url "$1")" || true)" = 42 ]; }
rest_is() { [ "$(http_code "http://127.0.0.1:${REST[$1]}/$2")" = 200 ]; }
postmaster_pid() { head -1 "$T/pg$(( $1 + 1 ))/data/postmaster.pid" 2>/dev/null; }
# The whatsapp_channel workers among a postmaster's children, by their process titles.
workers_of() { ps -o args= --ppid "$1" | grep whatsapp_channel || true; }

for tool in patroni etcd haproxy curl setpriv; do
  command -v "$tool" >/dev/null || die "$tool is missing: run 'bash tests/ha/setup.sh' as root"
done
"$PY" -c 'import psycopg' 2>/dev/null || die "python3-psycopg is missing: run 'bash tests/ha/setup.sh' as root"
[ "$(id -u)" = 0 ] || die "run as root (the servers run as postgres)"
[ -f "$("$PG_BIN/pg_config" --pkglibdir)/whatsapp_channel.so" ] || die "whatsapp_channel is not installed under $PG_BIN"
for port in $ETCD $ETCD_PEER "${REST[@]}" "${PGPORT[@]}" "${LISTEN[@]}" $WEBHOOKS $SQL $SIM; do
  ! port_open "$port" || die "port $port is in use"
done
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -q -p wa-sim
WA_SIM=$PWD/target/release/wa-sim

T=$(mktemp -d /var/tmp/wa-ha.XXXXXX)
chmod 755 "$T"
mkdir -p "$T/out"
chown postgres: "$T/out"
pids=()
# SIGTERM, up to 15 s to exit, then SIGKILL.
stop_pids() {
  local p alive
  for p in "$@"; do kill "$p" 2>/dev/null; done
  for _ in $(seq 150); do
    alive=0; for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return; sleep 0.1
  done
  for p in "$@"; do kill -9 "$p" 2>/dev/null; done
}
cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ]; then
    for n in 1 2; do echo "----- pg$n: tail of Patroni's and PostgreSQL's log"; tail -n 40 "$T/pg$n/patroni.log"; done
    echo "----- wa-sim: tail"; tail -n 10 "$T/wa-sim.log"
    echo "----- haproxy"; tail -n 10 "$T/haproxy.log"
  fi
  # Clients and servers we started; Patroni stops its PostgreSQL on SIGTERM (and wants etcd
  # for that: etcd, started first, goes last).
  stop_pids "${pids[@]:1}"
  stop_pids "${pids[0]:-}"
  for n in 1 2; do
    [ -f "$T/pg$n/data/postmaster.pid" ] && "${AS_POSTGRES[@]}" "$PG_BIN/pg_ctl" -D "$T/pg$n/data" -m immediate stop >/dev/null 2>&1
  done
  if [ $rc -eq 0 ] && [ -z "${HA_KEEP:-}" ]; then rm -rf "$T"; else echo "[ha] logs kept in $T"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "etcd on 127.0.0.1:$ETCD"
etcd --name ha --data-dir "$T/etcd" --listen-client-urls "http://127.0.0.1:$ETCD" --advertise-client-urls "http://127.0.0.1:$ETCD" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "ha=http://127.0.0.1:$ETCD_PEER" >"$T/etcd.log" 2>&1 &
pids+=($!)
etcd_healthy() { [ "$(curl -s -m 1 "http://127.0.0.1:$ETCD/health" || true)" = '{"health":"true"}' ]; }
wait_for 30 "healthy etcd" etcd_healthy

# One Patroni node: its own PostgreSQL port, REST port and webhook listener port. Everything
# cluster-wide (synchronous_mode, the preloaded library) is in bootstrap.dcs, as in production.
patroni_config() {
  local n=$1 i=$(( $1 - 1 ))
  cat <<YML
scope: wa-ha
name: pg$n
log: {level: INFO}
restapi:
  listen: 127.0.0.1:${REST[$i]}
  connect_address: 127.0.0.1:${REST[$i]}
etcd3:
  hosts: 127.0.0.1:$ETCD
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    # A primary that crashed is not restarted in place: fail over to the synchronous standby.
    primary_start_timeout: 0
    # A commit waits until the synchronous standby has the WAL; only that standby is promoted.
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        shared_preload_libraries: whatsapp_channel
        whatsapp_channel.database: postgres
        whatsapp_channel.graph_api_url: http://127.0.0.1:$SIM
  initdb: [{encoding: UTF8}, {auth: trust}]
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:${PGPORT[$i]}
  connect_address: 127.0.0.1:${PGPORT[$i]}
  data_dir: $T/pg$n/data
  bin_dir: $PG_BIN
  pgpass: $T/pg$n/pgpass
  authentication:
    superuser: {username: postgres}
    replication: {username: postgres}
    rewind: {username: postgres}
  parameters:
    unix_socket_directories: $T/pg$n
    # Each node's listener on its own port; haproxy sends webhooks to the primary's.
    whatsapp_channel.listen_address: 127.0.0.1:${LISTEN[$i]}
YML
}
start_patroni() {
  mkdir -p "$T/pg$1"
  patroni_config "$1" >"$T/pg$1.yml"
  chown -R postgres: "$T/pg$1" "$T/pg$1.yml"
  "${AS_POSTGRES[@]}" patroni "$T/pg$1.yml" >"$T/pg$1/patroni.log" 2>&1 &
  pids+=($!)
}

say "Patroni pg1 (bootstraps the cluster)"
start_patroni 1
wait_for 60 "primary pg1" rest_is 0 primary
say "Patroni pg2 (replica of pg1)"
start_patroni 2
wait_for 60 "synchronous standby pg2" rest_is 1 sync

pm1=$(postmaster_pid 0) pm2=$(postmaster_pid 1)
lib=$("$PG_BIN/pg_config" --pkglibdir)/whatsapp_channel.so
grep -q " $lib\$" "/proc/$pm1/maps" || die "the primary did not load $lib"
say "loaded: $lib"

say "extension and channel '$CHANNEL' on the primary"
psql_at "${PGPORT[0]}" -v token="$TOKEN" -v secret="$SECRET" -v verify="$VERIFY" >/dev/null <<SQL
CREATE EXTENSION whatsapp_channel;
SELECT wa_add_channel('$CHANNEL', '$PHONE_ID', :'token', :'secret', :'verify');
-- Each outbound message goes to a new recipient, who never wrote in: no 24-hour window.
UPDATE wa_channels SET allow_outside_window = true WHERE name = '$CHANNEL';
SQL
wait_for 30 "listener of pg1 answering" answers_verify "${LISTEN[0]}"
standby_has_channel() { [ "$(psql_at "${PGPORT[1]}" -c "SELECT count(*) FROM wa_channels" 2>/dev/null)" = 1 ]; }
wait_for 30 "channel replayed on pg2" standby_has_channel

say "standby pg2: no worker runs, nothing listens on ${LISTEN[1]}"
[ "$(psql_at "${PGPORT[1]}" -c "SELECT pg_is_in_recovery()")" = t ] || die "pg2 is not in recovery"
! port_open "${LISTEN[1]}" || die "a hot standby's listener port ${LISTEN[1]} is bound"
[ -z "$(workers_of "$pm2")" ] || die "whatsapp_channel workers run on the hot standby: $(workers_of "$pm2")"
[ -n "$(workers_of "$pm1")" ] || die "no whatsapp_channel worker on the primary (ps titles changed?)"
! grep -i -E 'whatsapp_channel.*(error|fatal|panic)' "$T/pg2/patroni.log" || die "pg2 logged whatsapp_channel errors"

cat >"$T/haproxy.cfg" <<CFG
global
    maxconn 2000
defaults
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    # Patroni's REST API decides: /primary is 200 on the primary only (OPTIONS: the status
    # without a body, which haproxy would cut off after the status line). Marked down after
    # two failed checks 500 ms apart; connections to a node marked down are cut.
    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
frontend webhooks
    mode http
    bind 127.0.0.1:$WEBHOOKS
    default_backend listeners
backend listeners
    mode http
    option httpchk
    http-check send meth OPTIONS uri /primary
    http-check expect status 200
    server pg1 127.0.0.1:${LISTEN[0]} check port ${REST[0]}
    server pg2 127.0.0.1:${LISTEN[1]} check port ${REST[1]}
listen sql
    mode tcp
    bind 127.0.0.1:$SQL
    option httpchk
    http-check send meth OPTIONS uri /primary
    http-check expect status 200
    server pg1 127.0.0.1:${PGPORT[0]} check port ${REST[0]}
    server pg2 127.0.0.1:${PGPORT[1]} check port ${REST[1]}
CFG
haproxy -db -f "$T/haproxy.cfg" >"$T/haproxy.log" 2>&1 &
pids+=($!)
wait_for 30 "webhooks through haproxy" answers_verify "$WEBHOOKS"

DSN="host=127.0.0.1 port=$SQL user=postgres dbname=postgres"
say "wa-sim graph on $SIM (answers in ${SIM_LATENCY_MS} ms; status webhooks through haproxy)"
"$WA_SIM" graph --port "$SIM" --dsn "$DSN" --webhook-base "http://127.0.0.1:$WEBHOOKS" --latency-ms "$SIM_LATENCY_MS" \
  > >("$PY" "$HA/meta.py" stamp >"$T/wa-sim.log") 2>"$T/wa-sim.err" &
pids+=($!)
sent_on() { psql_at "$1" -c "SELECT count(*) FROM wa_messages WHERE direction = 'outbound' AND status IN ('sent', 'delivered', 'read')" 2>/dev/null || echo 0; }
sent_at_least() { [ "$(sent_on "$1")" -ge "$2" ]; }
sim_up() { grep -q 'fake Graph API on' "$T/wa-sim.log" 2>/dev/null; }
wait_for 30 "wa-sim" sim_up
# One message first, so the delivery worker has found the extension before the clients start.
first_at=$(now)
psql_at "$SQL" -c "SELECT wa_send_text('$CHANNEL', '+16559990000', 'first')" >/dev/null
wait_for 30 "the first message sent" sent_at_least "${PGPORT[0]}" 1
say "$("$PY" -c "print('first message sent %.1f s after it was queued' % ($(now) - $first_at))")"

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

say "kill -9 the primary's postmaster (pid $pm1) with $(acked) webhooks acked"
killed_at=$(now)
kill -9 "$pm1"
echo "$killed_at" >"$T/out/killed_at"
wait_for 60 "promotion of pg2" rest_is 1 primary
promoted_at=$(now)
wait_for 30 "listener of the promoted pg2" answers_verify "${LISTEN[1]}"
listening_at=$(now)
say "$("$PY" -c "print('pg2 primary %.1f s after the kill; its listener answered %.1f s after that' % ($promoted_at - $killed_at, $listening_at - $promoted_at))")"
"$PY" -c "import sys; sys.exit($listening_at - $promoted_at > 10)" || die "the promoted node's listener took over 10 s"
pm2_workers=$(workers_of "$pm2")
[ -n "$pm2_workers" ] || die "no whatsapp_channel worker on the promoted pg2"
[ "$(postmaster_pid 1)" = "$pm2" ] || die "pg2's postmaster was restarted; the workers should start at promotion"

# Traffic goes on through the new primary for a while, then the clients stop and drain.
after=$(( $(acked) + 300 ))
wait_for 60 "300 more acked webhooks after the failover" acked_at_least "$after"
say "old primary pg1 rejoins as a replica"
wait_for 90 "pg1 as a replica" rest_is 0 replica
! port_open "${LISTEN[0]}" || die "pg1, now a standby, binds its listener port ${LISTEN[0]}"
[ -z "$(workers_of "$(postmaster_pid 0)")" ] || die "whatsapp_channel workers run on the rejoined standby pg1"
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
  --out "$T/out" --sim-log "$T/wa-sim.log" --killed-at "$killed_at" --window "$WINDOW" || die "see above"
say "passed"
