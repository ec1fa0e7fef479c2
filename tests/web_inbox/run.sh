#!/usr/bin/env bash
# The web inbox (examples/web_inbox) in a real browser: headless Chromium driven by selenium
# against the real page, a real cluster with the installed extension preloaded, and wa-sim
# playing Meta (signed webhooks in, a fake Graph API out, status webhooks back).
#
# Sets up what it needs, idempotently: Debian's chromium, chromium-driver, python3-venv and an
# emoji font (for the screenshots a person looks at), a venv in target/web_inbox_venv from the
# pinned requirements, and wa-sim (cargo build). Then it starts its own cluster in
# $WEB_INBOX_TEST_HOME (made anew each run; scram-sha-256 over TCP, where the web inbox connects
# and its agents sign in), two channels, tenant_a and tenant_b, the roles of the README's web
# inbox section (the app's own role web_inbox, agent_a on tenant_a and agent_b on tenant_b, with
# the grants of its "Roles" section), wa-sim graph and the web inbox, runs tests/web_inbox/test_*.py
# (screenshots in target/web_inbox/), and stops everything on exit. It needs the extension
# installed (scripts/setup.sh and cargo pgrx install, as scripts/test.sh does) and does not
# install it itself. Exit code: pytest's.
#   WEB_INBOX_TEST_HOME  cluster directory   (default /var/tmp/web_inbox_test)
#   WEB_INBOX_TEST_PG_PORT, _LISTEN_PORT, _SIM_PORT, _APP_PORT   (default 5496, 8180, 8190, 8100)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HOME_DIR=${WEB_INBOX_TEST_HOME:-/var/tmp/web_inbox_test}
PG_PORT=${WEB_INBOX_TEST_PG_PORT:-5496}
LISTEN_PORT=${WEB_INBOX_TEST_LISTEN_PORT:-8180}
SIM_PORT=${WEB_INBOX_TEST_SIM_PORT:-8190}
APP_PORT=${WEB_INBOX_TEST_APP_PORT:-8100}
source scripts/pg.sh # PG_MAJOR: the PostgreSQL under test
BIN=$PG_BIN
VENV=$ROOT/target/web_inbox_venv
say() { echo "[web_inbox test] $*"; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# ---- what the test needs, once ----------------------------------------------------------------
missing=$(for p in chromium chromium-driver python3-venv fonts-noto-color-emoji; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done)
if [ -n "$missing" ]; then
  say "installing Debian packages: $(echo $missing)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The venv is rebuilt when the pinned requirements change (their hash is kept beside it).
want=$(cat examples/web_inbox/requirements.txt tests/web_inbox/requirements.txt | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$want" ]; then
  say "making the venv $VENV"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/web_inbox/requirements.txt
  echo "$want" >"$VENV/.requirements"
fi
if [ ! -f "$("$BIN/pg_config" --pkglibdir)/whatsapp_channel.so" ]; then
  echo "whatsapp_channel is not installed in PostgreSQL $PG_MAJOR: run scripts/setup.sh and cargo pgrx install first" >&2
  exit 1
fi
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -q -p wa-sim
WA_SIM=$ROOT/target/release/wa-sim

# ---- a cluster, wa-sim and the web inbox of its own -------------------------------------------
PIDS=()
stop_all() {
  status=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" != 0 ] && [ -d "$HOME_DIR" ]; then
    for log in web_inbox.log wa-sim.log server.log; do
      [ -f "$HOME_DIR/$log" ] && { echo "---- last lines of $HOME_DIR/$log"; tail -n 25 "$HOME_DIR/$log"; }
    done
  fi
  [ -f "$HOME_DIR/data/PG_VERSION" ] && as_postgres "$BIN/pg_ctl" -D "$HOME_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  exit "$status"
}
trap stop_all EXIT

[ -f "$HOME_DIR/data/PG_VERSION" ] && as_postgres "$BIN/pg_ctl" -D "$HOME_DIR/data" -m immediate stop >/dev/null 2>&1 || true
rm -rf "$HOME_DIR"
mkdir -p "$HOME_DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$HOME_DIR"
say "cluster in $HOME_DIR (port $PG_PORT), listener 127.0.0.1:$LISTEN_PORT, wa-sim :$SIM_PORT, web inbox :$APP_PORT"
as_postgres "$BIN/initdb" -D "$HOME_DIR/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
cat >>"$HOME_DIR/data/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$HOME_DIR'
shared_preload_libraries = 'whatsapp_channel'
whatsapp_channel.listen_address = '127.0.0.1:$LISTEN_PORT'
whatsapp_channel.graph_api_url = 'http://127.0.0.1:$SIM_PORT'
whatsapp_channel.database = 'postgres'
fsync = off
CONF
# The superuser and the tests' own SQL over the socket without a password; over TCP, where the
# web inbox connects and its agents sign in, passwords are checked (trust would let any in).
cat >"$HOME_DIR/data/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.1/32 scram-sha-256
HBA
as_postgres "$BIN/pg_ctl" -D "$HOME_DIR/data" -l "$HOME_DIR/server.log" -w start >/dev/null
SUPER_DSN="host=$HOME_DIR port=$PG_PORT user=postgres dbname=postgres"
APP_DSN="host=127.0.0.1 port=$PG_PORT user=web_inbox dbname=postgres"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$HOME_DIR" -p "$PG_PORT" -U postgres -d postgres)

# Two channels, as Meta's credentials would be given (bind variables, not literals); templates
# for tenant_a's business account only.
PHONE_NUMBER_ID_A=106540352242922
PHONE_NUMBER_ID_B=106540352242933
APP_SECRET_A=0123456789abcdef0123456789abcdef
APP_SECRET_B=fedcba9876543210fedcba9876543210
WABA_ID=102290129340398
"${PSQL[@]}" -v token=EAAGwebinboxtestaccesstoken000000 -v secret_a=$APP_SECRET_A -v secret_b=$APP_SECRET_B >/dev/null <<SQL
CREATE EXTENSION whatsapp_channel;
SELECT wa_add_channel('tenant_a', '$PHONE_NUMBER_ID_A', :'token', :'secret_a', 'tenant_a_verify_token', waba_id => '$WABA_ID');
SELECT wa_add_channel('tenant_b', '$PHONE_NUMBER_ID_B', :'token', :'secret_b', 'tenant_b_verify_token');
SQL

# The roles: the group inbox_agents with exactly the README's grants (the SQL block of its
# "Roles" section that grants the tables), then its web inbox block as written (web_inbox, and
# agent_a in the group, granted tenant_a), and agent_b likewise on tenant_b. Then passwords,
# random each run; web_inbox's goes in a password file, as the README says, never on the app's
# command line.
ROLE_SQL=$(awk '/^### Roles/{r=1} r && /^```sql/{s=1; b=""; next} s && /^```/{if (b ~ /GRANT SELECT ON/) {printf "%s", b; exit} s=0; next} s{b = b $0 "\n"}' README.md)
WEB_SQL=$(awk 'index($0, "## See it: the web inbox") == 1 {w=1} w && /^```sql/{s=1; next} s && /^```/{exit} s' README.md)
[ -n "$ROLE_SQL" ] || { echo "no SQL block with the grants under README's '### Roles'" >&2; exit 1; }
[ -n "$WEB_SQL" ] || { echo "no SQL block under README's '## See it: the web inbox'" >&2; exit 1; }
"${PSQL[@]}" -c "$ROLE_SQL" -c "$WEB_SQL" >/dev/null
password() { "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18))'; }
APP_PASSWORD=$(password) PASSWORD_A=$(password) PASSWORD_B=$(password)
"${PSQL[@]}" -v app="$APP_PASSWORD" -v a="$PASSWORD_A" -v b="$PASSWORD_B" >/dev/null <<'SQL'
CREATE ROLE agent_b LOGIN IN ROLE inbox_agents;
GRANT agent_b TO web_inbox;
SELECT wa_grant_channel('tenant_b', 'agent_b', 'send');
ALTER ROLE web_inbox PASSWORD :'app';
ALTER ROLE agent_a PASSWORD :'a';
ALTER ROLE agent_b PASSWORD :'b';
SQL
export PGPASSFILE=$HOME_DIR/web_inbox.pgpass
(umask 077; echo "127.0.0.1:$PG_PORT:postgres:web_inbox:$APP_PASSWORD" >"$PGPASSFILE")

# A photo a customer sends: a small PNG made here, served by wa-sim as a media id.
"$VENV/bin/python" - "$HOME_DIR/photo.png" <<'PY'
import struct, sys, zlib
width, height = 64, 48
# Each row: filter byte 0, then RGB per pixel (a gradient, so a broken decode would show).
rows = b"".join(b"\0" + b"".join(bytes((x * 4 % 256, y * 5 % 256, 160)) for x in range(width)) for y in range(height))
chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) \
      + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
"$WA_SIM" graph --port "$SIM_PORT" --dsn "$SUPER_DSN" --media "$HOME_DIR/photo.png" \
  --templates examples/web_inbox/demo_templates.json --waba "$WABA_ID" >"$HOME_DIR/wa-sim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q "fake Graph API on" "$HOME_DIR/wa-sim.log" && break; sleep 0.1; done
MEDIA_ID=$(sed -nE 's/.*photo\.png \(image\/png\) as media id ([0-9]+).*/\1/p' "$HOME_DIR/wa-sim.log")
[ -n "$MEDIA_ID" ] || { echo "wa-sim did not say which media id the photo has" >&2; exit 1; }
"${PSQL[@]}" -c "SELECT wa_sync_templates('tenant_a')" >/dev/null

"$VENV/bin/python" examples/web_inbox/app.py --dsn "$APP_DSN" --port "$APP_PORT" >"$HOME_DIR/web_inbox.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$APP_PORT/" && break; sleep 0.1; done

mkdir -p target/web_inbox
export WEB_INBOX_URL="http://127.0.0.1:$APP_PORT" WEB_INBOX_SUPER_DSN="$SUPER_DSN" WEB_INBOX_APP_ROLE=web_inbox \
  WEB_INBOX_DSN="host=$HOME_DIR port=$PG_PORT user=agent_a dbname=postgres" WEB_INBOX_WA_SIM="$WA_SIM" \
  WEB_INBOX_LISTENER="http://127.0.0.1:$LISTEN_PORT" WEB_INBOX_MEDIA_ID="$MEDIA_ID" WEB_INBOX_PHOTO="$HOME_DIR/photo.png" \
  WEB_INBOX_CHANNEL_A=tenant_a WEB_INBOX_APP_SECRET_A="$APP_SECRET_A" WEB_INBOX_PHONE_NUMBER_ID_A="$PHONE_NUMBER_ID_A" \
  WEB_INBOX_AGENT_A=agent_a WEB_INBOX_PASSWORD_A="$PASSWORD_A" \
  WEB_INBOX_CHANNEL_B=tenant_b WEB_INBOX_APP_SECRET_B="$APP_SECRET_B" WEB_INBOX_PHONE_NUMBER_ID_B="$PHONE_NUMBER_ID_B" \
  WEB_INBOX_AGENT_B=agent_b WEB_INBOX_PASSWORD_B="$PASSWORD_B" \
  WEB_INBOX_PG_BIN="$BIN" WEB_INBOX_PG_DATA="$HOME_DIR/data" WEB_INBOX_PG_LOG="$HOME_DIR/server.log" WEB_INBOX_PG_PORT="$PG_PORT" \
  WEB_INBOX_SCREENSHOTS="$ROOT/target/web_inbox"
say "running the browser test"
"$VENV/bin/python" -m pytest -p no:cacheprovider -q tests/web_inbox "$@"
