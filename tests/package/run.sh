#!/usr/bin/env bash
# The package test, one command (as root): builds the PostgreSQL 15 package on this machine with
# scripts/package.sh, then installs it on a clean Debian 12 machine (fresh-machine.sh: a chroot
# of a cached debootstrap base) and creates the extension from it (tests/package/install-test.sh).
#
#   bash tests/package/run.sh            PG_MAJOR=15 (the only major Debian 12's mirror has)
#
# The chroot builds nothing and sees only the repository's committed files, so the .deb goes in
# on the command's stdin (fresh-machine.sh passes stdin through) and is checked by its sha256.
# Before installing, the chroot purges its postgresql-15: the package's Depends must bring it.
# Takes about 1.5 minutes with the extension already compiled and the base cached (a release
# build adds 2-4 minutes, a missing base about 4 minutes). FRESH_MACHINE overrides the tool.
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { echo "[package-run] $*"; }
T0=$EPOCHREALTIME
FRESH=${FRESH_MACHINE:-$(readlink -f ../shared/tools/fresh-machine.sh 2>/dev/null || echo /work/shared/tools/fresh-machine.sh)}
[ -x "$FRESH" ] || [ -f "$FRESH" ] || { say "no fresh-machine.sh at $FRESH (set FRESH_MACHINE)"; exit 2; }
[ "$(id -u)" = 0 ] || { say "run me as root (fresh-machine.sh needs it)"; exit 2; }
git diff --quiet HEAD -- tests/package || say "WARNING: tests/package has uncommitted changes; the clean machine runs the committed ones"

PACKAGE_DIR=${PACKAGE_DIR:-$PWD/target/packages}
export PACKAGE_DIR
bash scripts/package.sh 15
VERSION=$(awk '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { gsub(/[" ]/, ""); sub(/^version=/, ""); print; exit }' Cargo.toml)
DEB=$PACKAGE_DIR/postgresql-15-whatsapp-channel_$VERSION-${DEB_REVISION:-1}_$(dpkg --print-architecture).deb
[ -f "$DEB" ] || { say "scripts/package.sh made no $DEB"; exit 1; }
SUM=$(sha256sum "$DEB" | cut -d' ' -f1) NAME=${DEB##*/}
say "built $NAME ($(stat -c %s "$DEB") bytes, sha256 $SUM); $(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f s", b - a }') so far"

bash "$FRESH" base    # builds the cached base once (~4 min); a no-op when it is there
# shellcheck disable=SC2016
bash "$FRESH" run -- bash -c 'set -e; cat >"/tmp/$1"; echo "$2  /tmp/$1" | sha256sum -c --quiet
  WA_PACKAGE_TEST_DISPOSABLE=1 bash tests/package/install-test.sh --purge-server-first "/tmp/$1"' bash "$NAME" "$SUM" <"$DEB"
say "OK in $(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f s", b - a }')"
