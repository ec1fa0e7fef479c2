#!/usr/bin/env bash
# Installs what building and testing whatsapp_channel needs on a fresh Debian 12 machine.
# Idempotent: each step checks first and skips what is already there. Run as root (or with sudo).
set -euo pipefail

PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
PGRX_VERSION=$(sed -nE 's/^pgrx = "=?([^"]+)"$/\1/p' "$(dirname "$0")/../Cargo.toml")
say() { echo "[setup] $*"; }

# Debian packages: the server, its headers (pgrx runs bindgen over them), libclang for bindgen,
# sudo (for `cargo pgrx install --sudo` as a non-root user), curl, openssl (bench/inbound.sh makes a
# test certificate with it), and psycopg for examples/.
PKGS="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-client-$PG_MAJOR libclang-dev clang
      build-essential pkg-config sudo curl openssl python3-psycopg"
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

if ! grep -qs "^pg$PG_MAJOR = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  say "cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
  cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
else
  say "cargo pgrx already knows pg$PG_MAJOR"
fi
