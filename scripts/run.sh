#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), builds and installs whatsapp_channel, and runs it: a
# local cluster owned by `postgres` with the extension preloaded, the webhook listener up and
# the extension created. Idempotent: a second run reuses the cluster. `scripts/run.sh stop`
# stops it.
#   WA_HOME        where the cluster lives       (default /var/tmp/whatsapp_channel)
#   WA_PG_PORT     its port (unix socket only)   (default 5499)
#   WA_LISTEN      webhook listener host:port    (default 127.0.0.1:8080)
set -euo pipefail
cd "$(dirname "$0")/.."
WA_HOME=${WA_HOME:-/var/tmp/whatsapp_channel}
WA_PG_PORT=${WA_PG_PORT:-5499}
WA_LISTEN=${WA_LISTEN:-127.0.0.1:8080}
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
BIN=$($PG_CONFIG --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
say() { echo "[run] $*"; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env -u RUST_BACKTRACE "$@"; else env -u RUST_BACKTRACE "$@"; fi; }

if [ "${1:-}" = stop ]; then
  as_postgres "$BIN/pg_ctl" -D "$WA_HOME/data" -m fast stop
  exit 0
fi

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

say "building and installing whatsapp_channel (release)"
sudo_flag=(); [ "$(id -u)" = 0 ] || sudo_flag=(--sudo)
cargo pgrx install --release --pg-config "$PG_CONFIG" "${sudo_flag[@]}"

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

# The listener binds right after start; wait for it (bounded) so the tour below works at once.
for _ in $(seq 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$WA_LISTEN/webhook/" || true)
  [ "$code" = 404 ] && break
  sleep 0.1
done

cat <<TOUR

whatsapp_channel is running.
  database:          psql -h $WA_HOME -p $WA_PG_PORT -U postgres
  webhook listener:  http://$WA_LISTEN/webhook/<channel>
  server log:        $WA_HOME/server.log
  stop:              bash scripts/run.sh stop

Next (the README's walkthrough):
  1. Add your channel (credentials from WhatsApp -> API Setup and App Settings -> Basic):
       SELECT wa_add_channel('support', '<phone number id>', '<access token>', '<app secret>', '<verify token>');
  2. Paste SELECT wa_webhook_url('support') into Meta's Callback URL (set whatsapp_channel.public_url
     to your https address first), the verify token into Verify Token, then Verify and Save.
     Try the handshake locally:
       curl "http://$WA_LISTEN/webhook/support?hub.mode=subscribe&hub.verify_token=<verify token>&hub.challenge=42"
  3. LISTEN wa_message; and write to your business number: the message arrives as a row in wa_messages.
  4. Reply: SELECT wa_send_text('support', '15551234567', 'Hi! How can we help?');
TOUR
