#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), builds and installs whatsapp_channel, and runs it: a
# local cluster owned by `postgres` with the extension preloaded, the webhook listener up and
# the extension created, plus `wa-sim graph` standing in for Meta's Graph API and a demo
# channel, and the web inbox (examples/web_inbox, as an ordinary inbox role), so the whole
# product can be tried without a Meta account. Idempotent: a second run reuses the cluster.
# `scripts/run.sh stop` stops all three.
#   WA_HOME        where the cluster lives       (default /var/tmp/whatsapp_channel)
#   WA_PG_PORT     its port (unix socket only)   (default 5499)
#   WA_LISTEN      webhook listener host:port    (default 127.0.0.1:8080)
#   WA_SIM_PORT    wa-sim graph port             (default 8090)
#   WEB_INBOX_PORT the web inbox's port          (default 8000)
#   PG_MAJOR       15 (default) or 18            (a cluster is made for one major; use another WA_HOME for the other)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
WA_HOME=${WA_HOME:-/var/tmp/whatsapp_channel}
WA_PG_PORT=${WA_PG_PORT:-5499}
WA_LISTEN=${WA_LISTEN:-127.0.0.1:8080}
WA_SIM_PORT=${WA_SIM_PORT:-8090}
WEB_INBOX_PORT=${WEB_INBOX_PORT:-8000}
BIN=$PG_BIN
say() { echo "[run] $*"; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env -u RUST_BACKTRACE "$@"; else env -u RUST_BACKTRACE "$@"; fi; }

stop_sim() { [ -f "$WA_HOME/wa-sim.pid" ] && kill "$(cat "$WA_HOME/wa-sim.pid")" 2>/dev/null; rm -f "$WA_HOME/wa-sim.pid"; }
stop_web_inbox() { [ -f "$WA_HOME/web-inbox.pid" ] && kill "$(cat "$WA_HOME/web-inbox.pid")" 2>/dev/null; rm -f "$WA_HOME/web-inbox.pid"; }

if [ "${1:-}" = stop ]; then
  # Stop with the binaries of the major the cluster was made with.
  if [ -f "$WA_HOME/data/PG_VERSION" ]; then PG_MAJOR=$(cat "$WA_HOME/data/PG_VERSION"); source scripts/pg.sh; BIN=$PG_BIN; fi
  stop_web_inbox || true
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

# The web inbox's agents sign in with their own passwords, so the server must check them:
# scram-sha-256 for them and the app's own role, ahead of initdb's trust lines (once).
HBA_LINE="local all web_inbox,+inbox_agents scram-sha-256"
if ! grep -qxF "$HBA_LINE" "$WA_HOME/data/pg_hba.conf"; then
  as_postgres sh -c 'f=$1/data/pg_hba.conf; { echo "$2"; cat "$f"; } >"$f.new" && mv "$f.new" "$f"' sh "$WA_HOME" "$HBA_LINE"
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
# Every client of this local listener (wa-sim, the benchmarks' loads and idle connections) is
# 127.0.0.1, as behind a reverse proxy: no caps per client address (README, "Settings").
"${PSQL[@]}" -c "ALTER SYSTEM SET whatsapp_channel.max_connections_per_source = 0" \
  -c "ALTER SYSTEM SET whatsapp_channel.max_body_bytes_per_source = 0" -c "SELECT pg_reload_conf()" >/dev/null
"${PSQL[@]}" -c "SELECT wa_add_channel('demo', '106540352242922', 'EAAGdemoaccesstoken0000000000', '0123456789abcdef0123456789abcdef', 'demo_verify_token')
                 WHERE NOT EXISTS (SELECT 1 FROM wa_channels WHERE name = 'demo')" >/dev/null
DSN="host=$WA_HOME port=$WA_PG_PORT user=postgres dbname=postgres"
# The demo's business account, whose templates wa-sim serves (the web inbox's template picker).
DEMO_WABA=102290129340398
"${PSQL[@]}" -c "UPDATE wa_channels SET waba_id = '$DEMO_WABA' WHERE name = 'demo' AND waba_id IS NULL"
stop_sim || true
say "starting wa-sim graph on 127.0.0.1:$WA_SIM_PORT (log: $WA_HOME/wa-sim.log)"
nohup "$WA_SIM" graph --port "$WA_SIM_PORT" --dsn "$DSN" \
  --templates examples/web_inbox/demo_templates.json --waba "$DEMO_WABA" >"$WA_HOME/wa-sim.log" 2>&1 &
echo $! >"$WA_HOME/wa-sim.pid"

# The listener binds right after start; wait for it (bounded) so the tour below works at once.
for _ in $(seq 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$WA_LISTEN/webhook/" || true)
  [ "$code" = 404 ] && break
  sleep 0.1
done

# The web inbox's roles, as its README section sets them up: the agents' group inbox_agents with
# exactly the README's grants (the SQL block of its "Roles" section that grants the tables), one
# agent, demo_agent, granted the demo channel, and the app's own role web_inbox, which may act as
# it. (The grants from a file, statement by statement: on a second run its CREATE ROLE fails as
# "already exists", and the GRANTs after it still run.) Their passwords are made once and kept
# in $WA_HOME, readable by this user only; pg_hba.conf asks these roles for them (see above).
# (A local demo's: a real agent sets its own with psql's \password, so it is in no statement.)
awk '/^### Roles/{r=1} r && /^```sql/{s=1; b=""; next} s && /^```/{if (b ~ /GRANT SELECT ON/) {printf "%s", b; exit} s=0; next} s{b = b $0 "\n"}' README.md \
  | "${PSQL[@]}" -f - 2>&1 | grep -v 'already exists' || true
for secret in web_inbox demo_agent; do
  [ -s "$WA_HOME/$secret.password" ] || (umask 077; /usr/bin/python3 -c 'import secrets; print(secrets.token_urlsafe(12))' >"$WA_HOME/$secret.password")
done
"${PSQL[@]}" -v app="$(cat "$WA_HOME/web_inbox.password")" -v agent="$(cat "$WA_HOME/demo_agent.password")" >/dev/null <<'SQL'
DO $$BEGIN CREATE ROLE web_inbox LOGIN NOINHERIT; EXCEPTION WHEN duplicate_object THEN NULL; END$$;
DO $$BEGIN CREATE ROLE demo_agent LOGIN IN ROLE inbox_agents; EXCEPTION WHEN duplicate_object THEN NULL; END$$;
SET client_min_messages = warning; -- (a second run: "already a member")
GRANT demo_agent TO web_inbox;
SELECT wa_grant_channel('demo', 'demo_agent');
ALTER ROLE web_inbox PASSWORD :'app';
ALTER ROLE demo_agent PASSWORD :'agent';
SQL
(umask 077; echo "*:$WA_PG_PORT:postgres:web_inbox:$(cat "$WA_HOME/web_inbox.password")" >"$WA_HOME/web_inbox.pgpass")
for _ in $(seq 50); do grep -q "fake Graph API on" "$WA_HOME/wa-sim.log" && break; sleep 0.1; done
"${PSQL[@]}" -c "SELECT wa_sync_templates('demo')" >/dev/null || say "could not read the demo's templates from wa-sim"
dpkg-query -W -f='${Status}\n' python3-venv 2>/dev/null | grep -q 'install ok installed' \
  || { say "installing python3-venv"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
VENV=$PWD/target/web_inbox_venv
want=$(sha256sum examples/web_inbox/requirements.txt | cut -c1-16)
if [ "$(cat "$VENV/.requirements-app" 2>/dev/null)" != "$want" ]; then
  say "installing the web inbox's requirements in $VENV"
  [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r examples/web_inbox/requirements.txt
  echo "$want" >"$VENV/.requirements-app"
fi
INBOX_DSN="host=$WA_HOME port=$WA_PG_PORT user=web_inbox dbname=postgres"
stop_web_inbox || true
say "starting the web inbox on http://127.0.0.1:$WEB_INBOX_PORT (log: $WA_HOME/web-inbox.log)"
PGPASSFILE=$WA_HOME/web_inbox.pgpass nohup "$VENV/bin/python" examples/web_inbox/app.py --dsn "$INBOX_DSN" \
  --port "$WEB_INBOX_PORT" >"$WA_HOME/web-inbox.log" 2>&1 &
echo $! >"$WA_HOME/web-inbox.pid"
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$WEB_INBOX_PORT/" && break; sleep 0.1; done

cat <<TOUR

whatsapp_channel is running, with wa-sim standing in for Meta.
  web inbox:         http://127.0.0.1:$WEB_INBOX_PORT       (sign in as demo_agent, password $(cat "$WA_HOME/demo_agent.password"); log: $WA_HOME/web-inbox.log)
  database:          psql -h $WA_HOME -p $WA_PG_PORT -U postgres
  webhook listener:  http://$WA_LISTEN/webhook/<channel>      (demo channel: 'demo')
  fake Graph API:    http://127.0.0.1:$WA_SIM_PORT               (log: $WA_HOME/wa-sim.log)
  server log:        $WA_HOME/server.log
  stop:              bash scripts/run.sh stop

A four-step tour (a browser and a terminal):
  1. Open the web inbox, http://127.0.0.1:$WEB_INBOX_PORT: conversations, messages and ticks arrive live
     (from LISTEN), and its health panel is the seed's "Common issues" table. Without a browser, the
     example client prints the same:  /usr/bin/python3 examples/inbox_client.py --dsn "$DSN"
  2. In the terminal, a customer writes in:
       WA_DSN="$DSN" target/release/wa-sim trigger text --channel demo --from 16505551234 --name "Sheena Nelson" --text "Does it come in another color?"
     The conversation appears with its unread count; the message is a row:  SELECT id, type, body FROM wa_messages ORDER BY id DESC LIMIT 1;
  3. Open it and reply in the reply box (or: psql -h $WA_HOME -p $WA_PG_PORT -U postgres -c "SELECT wa_send_text('demo', '16505551234', 'Yes: red, blue and green!')")
     and watch the ticks move: sent, delivered, read within ~2 s.
  Other kinds: wa-sim trigger image|voice|location|reaction|button_reply|... --channel demo; --batch 10;
  --bad-signature shows in the health panel.
  4. What Meta says beyond messages: WA_DSN="$DSN" target/release/wa-sim trigger KIND --channel demo ...
       flow_reply --from 16505551234                   a Flow's answers, a table in the conversation
       user_preferences --from 16505551234 --value stop  "Stop promotions": marketing templates refused
       quality_flagged                                 the number's quality drops: its send rate is lowered
       account_restriction                             the queue pauses with Meta's reason;
                                                       SELECT wa_resume_channel('demo') resumes it
     The last two are rows of wa_channel_events, shown by wa_channel_health and the health panel.

Your own channel: SELECT wa_add_channel('support', '<phone number id>', '<access token>', '<app secret>', '<verify token>');
then follow the README's walkthrough (wa_webhook_url, Meta's Verify and Save).
TOUR
