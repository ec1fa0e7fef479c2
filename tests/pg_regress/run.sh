#!/usr/bin/env bash
# The SQL API's regression tests (tests/pg_regress/sql/*.sql against expected/*.out), run by
# pg_regress in a throwaway cluster of the PostgreSQL that scripts/pg.sh picks (PG_MAJOR), with
# the extension as installed there (scripts/test.sh installs it first). The same layout as
# `cargo pgrx regress`; README, "The SQL API's regression tests", says why not that command.
#   bash tests/pg_regress/run.sh [test ...]    (setup, then all of sql/ by default, in name order)
# Prints "N passed (pg_regress)" or "N failed (pg_regress)" for test.sh's total, and the diffs
# on failure; exits non-zero then.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/pg.sh
here=tests/pg_regress
pg_regress=$($PG_CONFIG --pkglibdir)/pgxs/src/test/regress/pg_regress

# setup first (it creates the extension), then the others in name order.
if [ $# -gt 0 ]; then tests=(setup "$@"); else
  tests=(setup); for f in "$here"/sql/*.sql; do t=${f##*/}; t=${t%.sql}; [ "$t" = setup ] || tests+=("$t"); done
fi

# Postgres refuses to run as root: as root, the cluster (and so pg_regress, which starts it)
# runs as postgres, in a directory postgres owns. Results stay there for a look after a failure.
# The inputs are copied there too: a checkout postgres cannot enter (one under `mktemp -d`,
# mode 0700) would otherwise fail with 'could not open "tests/pg_regress/postgresql.conf"'.
out=$(mktemp -d /tmp/wa-pg_regress.XXXXXX)
as=()
inputs=$here
if [ "$(id -u)" = 0 ]; then
  inputs=$out/inputs
  mkdir "$inputs" && cp -r "$here"/sql "$here"/expected "$here"/postgresql.conf "$inputs"/
  chown -R postgres: "$out"; as=(runuser -u postgres --)
fi

# Without shared_preload_libraries: the functions and tables work, no worker runs (none sends,
# none receives), so what the tests see depends only on their own statements. C locale and
# UTF-8, so that 15 and 18 sort and print alike whatever the machine's locale.
status=0
"${as[@]}" "$pg_regress" --temp-instance="$out/instance" --bindir="$($PG_CONFIG --bindir)" \
  --inputdir="$inputs" --outputdir="$out" --no-locale --encoding=UTF8 \
  --temp-config="$inputs/postgresql.conf" \
  "${tests[@]}" | tee "$out/summary" || status=$?

# TAP lines on 18 ("not ok 3 - views"), "... FAILED" on 15; at least 1 if it could not run.
failed=$(grep -cE '^not ok|\.\.\. FAILED' "$out/summary" || true)
[ "$failed" -gt 0 ] || failed=1
if [ "$status" = 0 ]; then
  echo "${#tests[@]} passed (pg_regress)"
  rm -rf "$out"
else
  cat "$out/regression.diffs" 2>/dev/null || true
  echo "$failed failed (pg_regress); results in $out/results, to copy to $here/expected once checked"
  exit "$status"
fi
