#!/usr/bin/env bash
# Installs what tests/ha/failover.sh needs beyond the rest of the suite, all from Debian 12:
# Patroni (and its etcd client), etcd, haproxy, and psycopg 3 for the Meta-like client.
# Idempotent: installs only what is missing. Run as root (CI and a fresh machine are root).
set -euo pipefail
packages=(patroni python3-etcd etcd-server etcd-client haproxy python3-psycopg)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[ha setup] everything is installed"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "[ha setup] missing ${missing[*]}: run this as root" >&2
  exit 1
fi
echo "[ha setup] installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# An old or empty package list finds nothing: refresh it once if a package is unknown to it.
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then apt-get update -qq; fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
