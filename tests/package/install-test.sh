#!/usr/bin/env bash
# Installs a postgresql-NN-whatsapp-channel .deb on this machine and creates the extension from it:
#
#   WA_PACKAGE_TEST_DISPOSABLE=1 bash tests/package/install-test.sh [--purge-server-first] <deb>
#
# Meant for a throwaway Debian 12 machine (tests/package/run.sh runs it in one made by
# fresh-machine.sh): it runs apt-get as root and refuses to start without WA_PACKAGE_TEST_DISPOSABLE=1.
# Builds nothing. Steps: check the package's files; apt-get install it (--purge-server-first
# removes postgresql-NN beforehand, so its Depends must bring the server back); start a cluster
# owned by postgres in /var/tmp/wa-package-test with the library preloaded; CREATE EXTENSION;
# check the version and the upgrade paths; check the listener answers (503 before the extension,
# 404 for an unknown channel after it, the verify handshake, a signed message webhook stored in
# wa_messages); stop the cluster; apt-get remove the package and check its files are gone.
set -euo pipefail
say() { echo "[package-test] $*"; }
die() { echo "[package-test] FAILED: $*" >&2; [ -f "${LOG:-}" ] && tail -n 30 "$LOG" >&2; exit 1; }
PURGE=0; [ "${1:-}" = --purge-server-first ] && { PURGE=1; shift; }
[ $# = 1 ] || { sed -n '2,5p' "$0" >&2; exit 2; }
DEB=$(readlink -f "$1")
[ "${WA_PACKAGE_TEST_DISPOSABLE:-}" = 1 ] || die "this installs packages as root: only on a throwaway machine, with WA_PACKAGE_TEST_DISPOSABLE=1"
[ "$(id -u)" = 0 ] || die "run me as root"
[ -f "$DEB" ] || die "no such file: $1"
T0=$EPOCHREALTIME
export DEBIAN_FRONTEND=noninteractive

PKG=$(dpkg-deb -f "$DEB" Package) DEB_VERSION=$(dpkg-deb -f "$DEB" Version)
MAJOR=$(sed -nE 's/^postgresql-([0-9]+)-whatsapp-channel$/\1/p' <<<"$PKG")
[ -n "$MAJOR" ] || die "$PKG is not a postgresql-NN-whatsapp-channel package"
VERSION=${DEB_VERSION%-*}
LIBDIR=/usr/lib/postgresql/$MAJOR/lib EXTDIR=/usr/share/postgresql/$MAJOR/extension BIN=/usr/lib/postgresql/$MAJOR/bin
say "$PKG $DEB_VERSION ($(du -h "$DEB" | cut -f1)); Depends: $(dpkg-deb -f "$DEB" Depends)"

# 1. What the package holds.
contents=$(dpkg-deb --contents "$DEB" | awk '{ print $NF }' | sed 's|^\./|/|')
UPGRADES=$(grep -E "^$EXTDIR/whatsapp_channel--[^-]+--[^-]+\.sql$" <<<"$contents" || true)
for f in "$LIBDIR/whatsapp_channel.so" "$EXTDIR/whatsapp_channel.control" "$EXTDIR/whatsapp_channel--$VERSION.sql" \
  "/usr/share/doc/$PKG/README.Debian"; do
  grep -qxF "$f" <<<"$contents" || die "the package has no $f"
done
grep -q "shared_preload_libraries = 'whatsapp_channel'" <(dpkg-deb --fsys-tarfile "$DEB" | tar -xO "./usr/share/doc/$PKG/README.Debian") ||
  die "README.Debian does not say how to preload the library"
say "files: the library, control file, $VERSION install script, $(wc -w <<<"$UPGRADES") upgrade script(s), README.Debian"

# 2. Install it with apt, which resolves Depends from the mirror.
apt-get update -qq
if [ "$PURGE" = 1 ] && dpkg-query -W -f='${Status}' "postgresql-$MAJOR" 2>/dev/null | grep -q 'ok installed'; then
  say "purging postgresql-$MAJOR first, so that the package's Depends must bring it back"
  apt-get purge -y -qq "postgresql-$MAJOR" "postgresql-client-$MAJOR" postgresql postgresql-contrib >/dev/null 2>&1 ||
    apt-get purge -y -qq "postgresql-$MAJOR" "postgresql-client-$MAJOR" >/dev/null
  [ ! -e "$BIN/postgres" ] || die "postgresql-$MAJOR is still installed"
fi
apt-get install -y -q --no-install-recommends "$DEB" >/var/tmp/wa-package-test-apt.log 2>&1 ||
  { tail -n 20 /var/tmp/wa-package-test-apt.log >&2; die "apt-get install $DEB failed"; }
say "apt-get installed: $(sed -n 's/^Setting up \([^ ]*\) (\([^)]*\)).*/\1 \2/p' /var/tmp/wa-package-test-apt.log | paste -sd, | sed 's/,/, /g')"
dpkg-query -W -f='${Status} ${Version}\n' "$PKG" | grep -q "install ok installed $DEB_VERSION" || die "$PKG $DEB_VERSION is not installed"
[ -x "$BIN/postgres" ] || die "postgresql-$MAJOR did not come with the package"
for f in "$LIBDIR/whatsapp_channel.so" "$EXTDIR/whatsapp_channel.control" $UPGRADES; do [ -f "$f" ] || die "$f is not on disk"; done
say "installed $PKG $DEB_VERSION with $("$BIN/postgres" --version)"

# 3. A cluster that preloads it.
DIR=/var/tmp/wa-package-test PORT=54915 LISTEN=127.0.0.1:18915 LOG=/var/tmp/wa-package-test/server.log
rm -rf "$DIR"; install -d -o postgres -g postgres "$DIR"
as_pg() { runuser -u postgres -- "$@"; }
stop() { [ -f "$DIR/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true; }
trap stop EXIT
as_pg "$BIN/initdb" -D "$DIR/data" -U postgres -A trust >/dev/null
cat >>"$DIR/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$DIR'
shared_preload_libraries = 'whatsapp_channel'
whatsapp_channel.listen_address = '$LISTEN'
whatsapp_channel.database = 'postgres'
EOF
as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$LOG" -w start >/dev/null || die "the server did not start"
psql() { as_pg "$BIN/psql" -h "$DIR" -p "$PORT" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 "$@"; }
code() { curl -s -o /dev/null -w '%{http_code}' "$@" || true; }
wait_code() {  # $1 = expected HTTP code, rest = curl arguments; up to 30 s
  local c
  for _ in $(seq 150); do c=$(code "${@:2}"); [ "$c" = "$1" ] && return; sleep 0.2; done
  die "expected $1 from curl ${*:2}, got $c"
}
wait_code 503 "http://$LISTEN/webhook/pkgtest"
say "server up; the listener answers 503 before CREATE EXTENSION"

# 4. The extension from the package's files.
psql -c 'CREATE EXTENSION whatsapp_channel' || die "CREATE EXTENSION failed"
got=$(psql -c "SELECT extversion FROM pg_extension WHERE extname = 'whatsapp_channel'")
[ "$got" = "$VERSION" ] || die "extension version $got, the package is $VERSION"
for f in $UPGRADES; do
  f=${f##*/whatsapp_channel--}; f=${f%.sql}
  [ "$(psql -c "SELECT path IS NOT NULL FROM pg_extension_update_paths('whatsapp_channel') WHERE source = '${f%--*}' AND target = '${f#*--}'")" = t ] ||
    die "no update path ${f%--*} -> ${f#*--}"
done
say "CREATE EXTENSION whatsapp_channel: version $got; update paths: $(echo $UPGRADES | sed 's|[^ ]*/whatsapp_channel--||g; s|\.sql||g')"

# 5. The listener serves the database: unknown channel, handshake, a signed webhook stored.
wait_code 404 "http://$LISTEN/webhook/"
wait_code 404 "http://$LISTEN/webhook/pkgtest"
SECRET=0123456789abcdef0123456789abcdef
psql -c "SELECT wa_add_channel('pkgtest', '123456789012345', 'EAAGpackagetest0123456789', '$SECRET', 'pkg-verify')" >/dev/null
wait_code 200 "http://$LISTEN/webhook/pkgtest?hub.mode=subscribe&hub.verify_token=pkg-verify&hub.challenge=1158201444"
[ "$(curl -s "http://$LISTEN/webhook/pkgtest?hub.mode=subscribe&hub.verify_token=pkg-verify&hub.challenge=1158201444")" = 1158201444 ] ||
  die "the verify handshake did not echo the challenge"
body=$(printf '{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"123456789012345"},"contacts":[{"profile":{"name":"Package Test"},"wa_id":"15551234567"}],"messages":[{"from":"15551234567","id":"wamid.PACKAGETEST1","timestamp":"%s","type":"text","text":{"body":"hello from the package"}}]}}]}]}' "$(date +%s)")
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
c=$(code -X POST -H 'Content-Type: application/json' -H "X-Hub-Signature-256: sha256=$sig" --data-binary "$body" "http://$LISTEN/webhook/pkgtest")
[ "$c" = 200 ] || die "the signed webhook got $c"
[ "$(psql -c "SELECT body FROM wa_messages WHERE wamid = 'wamid.PACKAGETEST1' AND direction = 'inbound'")" = "hello from the package" ] ||
  die "the webhook's message is not in wa_messages"
say "listener on $LISTEN: 404 for no channel, the handshake echoed, a signed webhook answered 200 and stored"
! grep -E 'PANIC|FATAL|ERROR' "$LOG" | grep -v 'the database system is starting up' | head -5 | grep . ||
  die "errors in the server log"

# 6. Stop, remove the package, and nothing of it stays.
stop; trap - EXIT
apt-get remove -y -qq "$PKG" >/dev/null
for f in "$LIBDIR/whatsapp_channel.so" "$EXTDIR/whatsapp_channel.control"; do [ ! -e "$f" ] || die "$f stayed after apt-get remove"; done
say "stopped; apt-get remove $PKG removed its files"
say "OK: $PKG $DEB_VERSION installed, created and served webhooks, in $(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f s", b - a }')"
