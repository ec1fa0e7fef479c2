#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every test: the pure unit tests, the SQL API's
# pg_regress suite, then the end-to-end tests against a real cluster with the freshly installed
# extension preloaded.
# PostgreSQL 15 by default; `PG_MAJOR=18 bash scripts/test.sh` for 18. Idempotent; .ci/run
# runs it for both.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# Users do not run their server with Rust backtraces; neither do the tests.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

# Every cargo test's output also goes to a log, so that the last line can add them all up
# (cargo's own last line is that of the e2e crate's doc tests: 0 of them).
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

echo "[test] unit tests (no Postgres)"
cargo test --locked -p whatsapp_cloud -p wa-sim -p bounded_http -p cached_resolver -p channel_metrics 2>&1 | tee -a "$LOG"

echo "[test] installing the extension into $($PG_CONFIG --pkglibdir) (PostgreSQL $PG_MAJOR)"
sudo_flag=(); [ "$(id -u)" = 0 ] || sudo_flag=(--sudo)
# Unlink the old library first: cargo pgrx overwrites it in place, which would pull the code
# out from under a server that has it loaded; unlinked, that server keeps its copy.
${sudo_flag:+sudo} rm -f "$($PG_CONFIG --pkglibdir)/whatsapp_channel.so"
cargo pgrx install "${PG_FEATURES[@]}" --pg-config "$PG_CONFIG" "${sudo_flag[@]}"
# The frozen scripts of released versions, so that the upgrade test can create a database at
# each of them (users never need these: their database already is at its version).
${sudo_flag:+sudo} cp sql/released/whatsapp_channel--*.sql "$($PG_CONFIG --sharedir)/extension/"

# The SQL API's own regression suite (tests/pg_regress): quick, and the first to say which
# function changed. run.sh exits non-zero on a failure, which pipefail keeps through tee.
echo "[test] SQL API regression tests on PostgreSQL $PG_MAJOR (pg_regress, tests/pg_regress)"
bash tests/pg_regress/run.sh 2>&1 | tee -a "$LOG"

echo "[test] end-to-end tests on PostgreSQL $PG_MAJOR (a real cluster, real HTTP, a real LISTEN client)"
cargo test --locked -p e2e 2>&1 | tee -a "$LOG"

# pg_upgrade keeps the extension and its data (tests/e2e/tests/pg_upgrade.rs says why from 18
# to 18 here rather than from 15).
if [ "$PG_MAJOR" = 18 ]; then
  echo "[test] pg_upgrade of a cluster with the extension"
  cargo test --locked -p e2e --test pg_upgrade -- --ignored 2>&1 | tee -a "$LOG"
fi

echo "[test] the web inbox in a real browser (PostgreSQL $PG_MAJOR)"
bash tests/web_inbox/run.sh 2>&1 | tee -a "$LOG"

# High availability needs Debian's Patroni 3.0.2, which predates PostgreSQL 18: on 15 only.
if [ "$PG_MAJOR" = 15 ]; then
  echo "[test] failover with Patroni, etcd and haproxy (tests/ha)"
  bash tests/ha/setup.sh
  for t in sync-ack failover; do
    bash tests/ha/$t.sh 2>&1 | tee -a "$LOG"
    echo "1 passed (tests/ha/$t.sh)" | tee -a "$LOG"
  done
fi

awk '/^test result:|^[0-9]+ (passed|failed)/ { for (i = 1; i <= NF; i++) { if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i } }
     END { printf "test (PostgreSQL '"$PG_MAJOR"'): %d passed, %d failed\n", p, f }' "$LOG"
