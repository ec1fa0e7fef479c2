#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), builds and installs whatsapp_channel, and runs it: a
# local cluster owned by `postgres` with the extension preloaded, the webhook listener up and
# the extension created, plus `wa-sim graph` standing in for Meta's Graph API and a demo
# channel, so the whole product can be tried without a Meta account. Idempotent: a second run
# reuses the cluster. `scripts/run.sh stop` stops both.
#   WA_HOME        where the cluster lives       (default /var/tmp/whatsapp_channel)
#   WA_PG_PORT     its port (unix socket only)   (default 5499)
#   WA_LISTEN      webhook listener host:port    (default 127.0.0.1:8080)
#   WA_SIM_PORT    wa-sim graph port             (default 8090)
#   PG_MAJOR       15 (default) or 18            (a cluster is made for one major; use another WA_HOME for the other)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
WA_HOME=${WA_HOME:-/var/tmp/whatsapp_channel}
WA_PG_PORT=${WA_PG_PORT:-5499}
WA_LISTEN=${WA_LISTEN:-127.0.0.1:8080}
WA_SIM_PORT=${WA_SIM_PORT:-8090}
BIN=$PG_BIN
say() { echo "[run] $*"; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env -u RUST_BACKTRACE "$@"; else env -u RUST_BACKTRACE "$@"; fi; }

stop_sim() { [ -f "$WA_HOME/wa-sim.pid" ] && kill "$(cat "$WA_HOME/wa-sim.pid")" 2>/dev/null; rm -f "$WA_HOME/wa-sim.pid"; }

if [ "${1:-}" = stop ]; then
  # Stop with the binaries of the major the cluster was made with.
  if [ -f "$WA_HOME/data/PG_VERSION" ]; then PG_MAJOR=$(cat "$WA_HOME/data/PG_VERSION"); source scripts/pg.sh; BIN=$PG_BIN; fi
  stop_sim || true
  as_postgres "$BIN/pg_ctl" -D "$WA_HOME/data" -m fast stop
  exit 0
fi

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

if [ -f "$WA_HOME/data/PG_VERSION" ] && [ "$(cat "$WA_HOME/data/PG_VERSION")" != "$PG_MAJOR" ]; then
  echo "[run] $WA_HOME holds a PostgreSQL $(cat "$WA_HOME/data/PG_VERSION") cluster; for $PG_MAJOR, set WA_HOME to another directory" >&2
  exit 2
fi

say "building and installing whatsapp_channel (release, PostgreSQL $PG_MAJOR)"
sudo_flag=(); [ "$(id -u)" = 0 ] || sudo_flag=(--sudo)
# Unlink the old library first: cargo pgrx overwrites it in place, which would pull the code
# out from under a server that has it loaded; unlinked, that server keeps its copy.
${sudo_flag:+sudo} rm -f "$($PG_CONFIG --pkglibdir)/whatsapp_channel.so"
cargo pgrx install --release "${PG_FEATURES[@]}" --pg-config "$PG_CONFIG" "${sudo_flag[@]}"
say "building wa-sim"
cargo build --release --locked -p wa-sim
WA_SIM=$PWD/target/release/wa-sim

if [ ! -f "$WA_HOME/data/PG_VERSION" ]; then
  say "creating a cluster in $WA_HOME/data"
  mkdir -p "$WA_HOME"
  [ "$(id -u)" = 0 ] && chown postgres: "$WA_HOME"
  as_postgres "$BIN/initdb" -D "$WA_HOME/data" -U postgres -A trust -E UTF8 >/dev/null
  cat >> "$WA_HOME/data/postgresql.conf" <<CONF

# whatsapp_channel (written by scripts/run.sh)
port = $WA_PG_PORT
listen_addresses = ''
unix_socket_directories = '$WA_HOME'
shared_preload_libraries = 'whatsapp_channel'
whatsapp_channel.listen_address = '$WA_LISTEN'
whatsapp_channel.database = 'postgres'
CONF
fi

if as_postgres "$BIN/pg_ctl" -D "$WA_HOME/data" status >/dev/null 2>&1; then
  say "restarting the server, to load the newly installed library"
  as_postgres "$BIN/pg_ctl" -D "$WA_HOME/data" -l "$WA_HOME/server.log" -w -m fast restart >/dev/null
else
  say "starting the server"
  as_postgres "$BIN/pg_ctl" -D "$WA_HOME/data" -l "$WA_HOME/server.log" -w start >/dev/null
fi
PSQL=(psql -X -q -h "$WA_HOME" -p "$WA_PG_PORT" -U postgres -d postgres)
"${PSQL[@]}" -c "CREATE EXTENSION IF NOT EXISTS whatsapp_channel"
"${PSQL[@]}" -c "ALTER EXTENSION whatsapp_channel UPDATE" 2>/dev/null || true

# The demo talks to wa-sim instead of Meta. To go live: ALTER SYSTEM RESET whatsapp_channel.graph_api_url;
"${PSQL[@]}" -c "ALTER SYSTEM SET whatsapp_channel.graph_api_url = 'http://127.0.0.1:$WA_SIM_PORT'" -c "SELECT pg_reload_conf()" >/dev/null
"${PSQL[@]}" -c "SELECT wa_add_channel('demo', '106540352242922', 'EAAGdemoaccesstoken0000000000', '0123456789abcdef0123456789abcdef', 'demo_verify_token')
                 WHERE NOT EXISTS (SELECT 1 FROM wa_channels WHERE name = 'demo')" >/dev/null
DSN="host=$WA_HOME port=$WA_PG_PORT user=postgres dbname=postgres"
stop_sim || true
say "starting wa-sim graph on 127.0.0.1:$WA_SIM_PORT (log: $WA_HOME/wa-sim.log)"
nohup "$WA_SIM" graph --port "$WA_SIM_PORT" --dsn "$DSN" >"$WA_HOME/wa-sim.log" 2>&1 &
echo $! >"$WA_HOME/wa-sim.pid"

# The listener binds right after start; wait for it (bounded) so the tour below works at once.
for _ in $(seq 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$WA_LISTEN/webhook/" || true)
  [ "$code" = 404 ] && break
  sleep 0.1
done

cat <<TOUR

whatsapp_channel is running, with wa-sim standing in for Meta.
  database:          psql -h $WA_HOME -p $WA_PG_PORT -U postgres
  webhook listener:  http://$WA_LISTEN/webhook/<channel>      (demo channel: 'demo')
  fake Graph API:    http://127.0.0.1:$WA_SIM_PORT               (log: $WA_HOME/wa-sim.log)
  server log:        $WA_HOME/server.log
  stop:              bash scripts/run.sh stop

A three-step tour (two terminals):
  1. Terminal A - the example inbox client LISTENs and prints messages and statuses as they arrive:
       /usr/bin/python3 examples/inbox_client.py --dsn "$DSN"
     (or in psql: LISTEN wa_message; LISTEN wa_status; psql prints notifications after each command)
  2. Terminal B - a customer writes in:
       WA_DSN="$DSN" target/release/wa-sim trigger text --channel demo --from 16505551234 --name "Sheena Nelson" --text "Does it come in another color?"
     Terminal A prints the new conversation and message; it is a row:  SELECT id, type, body FROM wa_messages ORDER BY id DESC LIMIT 1;
  3. Reply, and watch the ticks come back in terminal A (sent, delivered, read within ~2 s):
       psql -h $WA_HOME -p $WA_PG_PORT -U postgres -c "SELECT wa_send_text('demo', '16505551234', 'Yes: red, blue and green!')"
       psql -h $WA_HOME -p $WA_PG_PORT -U postgres -c "SELECT id, status, wamid FROM wa_messages ORDER BY id DESC LIMIT 1"
  Other kinds: wa-sim trigger image|voice|location|reaction|button_reply|... --channel demo; --batch 10; --bad-signature.

Your own channel: SELECT wa_add_channel('support', '<phone number id>', '<access token>', '<app secret>', '<verify token>');
then follow the README's walkthrough (wa_webhook_url, Meta's Verify and Save).
TOUR
