#!/usr/bin/env bash
# The web inbox (examples/web_inbox) in a real browser: headless Chromium driven by selenium
# against the real page, a real cluster with the installed extension preloaded, and wa-sim
# playing Meta (signed webhooks in, a fake Graph API out, status webhooks back).
#
# Sets up what it needs, idempotently: Debian's chromium, chromium-driver, python3-venv and an
# emoji font (for the screenshots a person looks at), a venv in target/web_inbox_venv from the
# pinned requirements, and wa-sim (cargo build). Then it starts its own cluster in
# $WEB_INBOX_TEST_HOME (made anew each run), wa-sim graph and the web inbox (as a role given
# exactly the SQL of the README's "Roles" section), runs tests/web_inbox/test_web_inbox.py
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
  echo "whatsapp_channel is not installed in PostgreSQL 15: run scripts/setup.sh and cargo pgrx install first" >&2
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
listen_addresses = ''
unix_socket_directories = '$HOME_DIR'
shared_preload_libraries = 'whatsapp_channel'
whatsapp_channel.listen_address = '127.0.0.1:$LISTEN_PORT'
whatsapp_channel.graph_api_url = 'http://127.0.0.1:$SIM_PORT'
whatsapp_channel.database = 'postgres'
fsync = off
CONF
as_postgres "$BIN/pg_ctl" -D "$HOME_DIR/data" -l "$HOME_DIR/server.log" -w start >/dev/null
SUPER_DSN="host=$HOME_DIR port=$PG_PORT user=postgres dbname=postgres"
INBOX_DSN="host=$HOME_DIR port=$PG_PORT user=inbox_app dbname=postgres"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$HOME_DIR" -p "$PG_PORT" -U postgres -d postgres)

# The channel, as Meta's credentials would be given (bind variables, not literals).
PHONE_NUMBER_ID=106540352242922
APP_SECRET=0123456789abcdef0123456789abcdef
WABA_ID=102290129340398
"${PSQL[@]}" -v token=EAAGwebinboxtestaccesstoken000000 -v secret=$APP_SECRET >/dev/null <<SQL
CREATE EXTENSION whatsapp_channel;
SELECT wa_add_channel('shop', '$PHONE_NUMBER_ID', :'token', :'secret', 'shop_verify_token', waba_id => '$WABA_ID');
SQL

# The inbox role gets exactly the README's grants: the SQL block of its "Roles" section that
# grants the tables, run as written, then the channel.
ROLE_SQL=$(awk '/^### Roles/{r=1} r && /^```sql/{s=1; b=""; next} s && /^```/{if (b ~ /GRANT SELECT ON/) {printf "%s", b; exit} s=0; next} s{b = b $0 "\n"}' README.md)
[ -n "$ROLE_SQL" ] || { echo "no SQL block with the grants under README's '### Roles'" >&2; exit 1; }
"${PSQL[@]}" -c "$ROLE_SQL" -c "CREATE ROLE inbox_app LOGIN IN ROLE inbox_agents" -c "SELECT wa_grant_channel('shop', 'inbox_app')"

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
"${PSQL[@]}" -c "SELECT wa_sync_templates('shop')" >/dev/null

"$VENV/bin/python" examples/web_inbox/app.py --dsn "$INBOX_DSN" --port "$APP_PORT" >"$HOME_DIR/web_inbox.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$APP_PORT/" && break; sleep 0.1; done

mkdir -p target/web_inbox
export WEB_INBOX_URL="http://127.0.0.1:$APP_PORT" WEB_INBOX_SUPER_DSN="$SUPER_DSN" WEB_INBOX_DSN="$INBOX_DSN" \
  WEB_INBOX_WA_SIM="$WA_SIM" WEB_INBOX_LISTENER="http://127.0.0.1:$LISTEN_PORT" WEB_INBOX_CHANNEL=shop \
  WEB_INBOX_APP_SECRET="$APP_SECRET" WEB_INBOX_PHONE_NUMBER_ID="$PHONE_NUMBER_ID" WEB_INBOX_MEDIA_ID="$MEDIA_ID" \
  WEB_INBOX_PHOTO="$HOME_DIR/photo.png" WEB_INBOX_PG_BIN="$BIN" WEB_INBOX_PG_DATA="$HOME_DIR/data" \
  WEB_INBOX_PG_LOG="$HOME_DIR/server.log" WEB_INBOX_SCREENSHOTS="$ROOT/target/web_inbox"
say "running the browser test"
"$VENV/bin/python" -m pytest -p no:cacheprovider -q tests/web_inbox/test_web_inbox.py "$@"
