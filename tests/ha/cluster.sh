# Sourced by the tests in tests/ha: a two-node Patroni cluster (etcd, synchronous_mode) with
# whatsapp_channel preloaded on both, haproxy in front, all on 127.0.0.1 under a temporary
# directory, and everything started here stopped on exit, pass or fail.
#   HA_PG_BIN   PostgreSQL binaries with the extension installed (default: $PG_BIN of scripts/pg.sh)
#   HA_KEEP=1   keep the temporary directory (logs, data) after a pass too
# Needs tests/ha/setup.sh (patroni, etcd, haproxy); run as root (the servers run as postgres).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
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

say() { echo "[ha $(( $(date +%s) - started ))s] $*"; }
die() { echo "[ha] FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
# Seconds from $1 to $2 (or to now), one decimal.
since() { "$PY" -c "print('%.1f' % (${2:-$(now)} - $1))"; }
# As postgres; setpriv and env exec what they run, so "${AS_POSTGRES[@]}" server & makes $! the server.
# In /: the checkout may be a directory postgres cannot enter (a clone in `mktemp -d` is 0700),
# and Patroni's bootstrap then never gets past "bootstrap in progress".
AS_POSTGRES=(setpriv --reuid=postgres --regid=postgres --init-groups -- env -C / -u RUST_BACKTRACE)
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
# rest_is NODE ENDPOINT: Patroni's REST API of node 0 or 1 answers 200 to /primary, /replica, /sync.
rest_is() { [ "$(http_code "http://127.0.0.1:${REST[$1]}/$2")" = 200 ]; }
postmaster_pid() { head -1 "$T/pg$(( $1 + 1 ))/data/postmaster.pid" 2>/dev/null; }
# The whatsapp_channel workers among a postmaster's children, by their process titles.
workers_of() { ps -o args= --ppid "$1" | grep whatsapp_channel || true; }

for tool in patroni etcd haproxy curl setpriv; do
  command -v "$tool" >/dev/null || die "$tool is missing: run 'bash tests/ha/setup.sh' as root"
done
"$PY" -c 'import psycopg' 2>/dev/null || die "python3-psycopg is missing: run 'bash tests/ha/setup.sh' as root"
[ "$(id -u)" = 0 ] || die "run as root (the servers run as postgres)"
LIB=$("$PG_BIN/pg_config" --pkglibdir)/whatsapp_channel.so
[ -f "$LIB" ] || die "whatsapp_channel is not installed under $PG_BIN"
for port in $ETCD $ETCD_PEER "${REST[@]}" "${PGPORT[@]}" "${LISTEN[@]}" $WEBHOOKS $SQL $SIM; do
  ! port_open "$port" || die "port $port is in use"
done

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
    [ -f "$T/wa-sim.log" ] && { echo "----- wa-sim"; tail -n 5 "$T/wa-sim.log"; tail -n 5 "$T/wa-sim.err"; }
    [ -f "$T/haproxy.log" ] && { echo "----- haproxy"; tail -n 10 "$T/haproxy.log"; }
  fi
  # Clients and servers started here; Patroni stops its PostgreSQL on SIGTERM (and wants etcd
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

start_etcd() {
  say "etcd on 127.0.0.1:$ETCD"
  etcd --name ha --data-dir "$T/etcd" --listen-client-urls "http://127.0.0.1:$ETCD" --advertise-client-urls "http://127.0.0.1:$ETCD" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "ha=http://127.0.0.1:$ETCD_PEER" >"$T/etcd.log" 2>&1 &
  pids+=($!)
  etcd_healthy() { [ "$(curl -s -m 1 "http://127.0.0.1:$ETCD/health" || true)" = '{"health":"true"}' ]; }
  wait_for 30 "healthy etcd" etcd_healthy
}

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
    ttl: 20
    loop_wait: 1
    retry_timeout: 9
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

# etcd, pg1 primary, pg2 its synchronous standby, the extension and channel $CHANNEL; sets
# PM1 and PM2, the postmasters' pids.
start_cluster() {
  start_etcd
  say "Patroni pg1 (bootstraps the cluster)"
  start_patroni 1
  wait_for 60 "primary pg1" rest_is 0 primary
  say "Patroni pg2 (replica of pg1)"
  start_patroni 2
  wait_for 60 "synchronous standby pg2" rest_is 1 sync
  PM1=$(postmaster_pid 0) PM2=$(postmaster_pid 1)
  grep -q " $LIB\$" "/proc/$PM1/maps" || die "the primary did not load $LIB"
  say "loaded: $LIB"
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
}

# check_idle_standby NODE: in recovery, no whatsapp_channel worker, nothing on its listener port.
check_idle_standby() {
  local i=$1 pm
  pm=$(postmaster_pid "$i")
  [ "$(psql_at "${PGPORT[$i]}" -c "SELECT pg_is_in_recovery()")" = t ] || die "pg$(( i + 1 )) is not in recovery"
  ! port_open "${LISTEN[$i]}" || die "the listener port ${LISTEN[$i]} of the standby pg$(( i + 1 )) is bound"
  [ -z "$(workers_of "$pm")" ] || die "whatsapp_channel workers run on the standby pg$(( i + 1 )): $(workers_of "$pm")"
}

start_haproxy() {
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
    # Which node answered: the test attributes each acknowledgement to a node.
    http-response set-header X-Served-By %s
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
  # haproxy starts with every server up: wait until its checks have taken the standby out.
  standby_out() { [ "$(grep -c -E "Server (listeners|sql)/pg2 is DOWN" "$T/haproxy.log")" -ge 2 ]; }
  wait_for 30 "haproxy to mark the standby down" standby_out
  wait_for 30 "webhooks through haproxy" answers_verify "$WEBHOOKS"
}
