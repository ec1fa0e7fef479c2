#!/usr/bin/env bash
# Before and after, for two builds whose SQL differs (bench/compare.sh swaps only the library,
# so both sides must share one schema): each side is a saved release build (library and
# extension files), installed in turn, and the benchmarks alternate between them, because
# single runs on this 2-core machine swing by ±20%.
#
#   bash bench/alternate.sh save DIR               copy the installed release build of PostgreSQL
#                                                  $PG_MAJOR (15, or 18: library, control file,
#                                                  SQL scripts) into DIR
#   bash bench/alternate.sh scale OLD NEW          bash bench/scale.sh with OLD, NEW, OLD, NEW, ...
#                                                  (ROUNDS, default 2); reports in $OUT/scale-*.txt
#   bash bench/alternate.sh delivery OLD NEW       a full database per build (scale.sh's seed:
#                                                  2,000,000 messages from 1,000,000 customers, kept
#                                                  in /var/tmp/wa_full_<side>), then ROUNDS (3) of
#                                                  wa-sim outbound-bench over 4 channels, 20,000
#                                                  messages to a 50 ms mock and 200 commits/s for
#                                                  10 s, each side's cluster started on its build
#   bash bench/alternate.sh saturated OLD NEW      bash bench/saturated.sh with OLD, NEW, OLD, NEW
#                                                  (ROUNDS, default 2); lines in $OUT/saturated.txt
#
#   OUT             where the reports go (default /var/tmp/wa-bench)
#   DELIVERY_ARGS   delivery: wa-sim outbound-bench's load instead of the default, e.g.
#                   "--messages 10000 --channels 1 --rate 1 --seconds 1" (one channel, held to
#                   its 1,000/s: the worker waits for tokens)
#   REUSE_FULL=1    delivery: run on the full databases a previous run left in
#                   /var/tmp/wa_full_<side> instead of seeding them again (~10 minutes each)
#   VACUUM_FIRST=1  delivery: VACUUM wa_messages before each run, so that no run pays for the
#                   dead queue entries of the runs before it (docs/benchmarks/
#                   2026-12-07-issue-29-delivery-turns.md, section 5)
# Run as root (the clusters belong to postgres). Leaves the NEW build installed.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh # PG_MAJOR=15 (default) or 18, as the other scripts
BIN=$PG_BIN
LIB=$("$BIN/pg_config" --pkglibdir)
EXT=$("$BIN/pg_config" --sharedir)/extension
OUT=${OUT:-/var/tmp/wa-bench}
mkdir -p "$OUT"
say() { echo "[alternate $(date -u +%H:%M:%S)] $*" >&2; }
die() { say "$*"; exit 1; }

install_build() { # DIR: the saved build becomes the installed one
  [ -f "$1/whatsapp_channel.so" ] || die "$1 holds no saved build (bench/alternate.sh save $1)"
  # Unlinked first: a running server keeps the library it mapped.
  rm -f "$LIB/whatsapp_channel.so"
  cp "$1/whatsapp_channel.so" "$LIB/"
  cp "$1"/whatsapp_channel.control "$1"/whatsapp_channel--*.sql "$EXT/"
}

# Runs the command given ROUNDS times (default: the first argument) for each side in turn, old,
# new, old, new, ..., with that side's build installed; the command sees $side and $round.
in_turns() { # default-rounds command...
  local rounds=${ROUNDS:-$1} dir
  shift
  for round in $(seq "$rounds"); do
    for side in old new; do
      dir=OLD; [ $side = new ] && dir=NEW
      install_build "${!dir}"
      "$@"
    done
  done
}

case ${1:-} in
  save)
    DIR=${2:?usage: bench/alternate.sh save DIR}
    # (Saving needs no running cluster: common.sh is sourced for its release-build check only.)
    BENCH_OWN_CLUSTER=1 . bench/common.sh
    require_release_build "$LIB/whatsapp_channel.so"
    mkdir -p "$DIR"
    cp "$LIB/whatsapp_channel.so" "$EXT"/whatsapp_channel.control "$EXT"/whatsapp_channel--*.sql "$DIR/"
    say "saved the installed build ($(git rev-parse --short HEAD) checked out here) in $DIR"
    ;;
  scale)
    OLD=${2:?usage: bench/alternate.sh scale OLD NEW} NEW=${3:?usage: bench/alternate.sh scale OLD NEW}
    scale_turn() {
      say "scale.sh, $side, round $round"
      bash bench/scale.sh >"$OUT/scale-$side-$round.txt" 2>&1 || die "scale.sh failed: $OUT/scale-$side-$round.txt"
    }
    in_turns 2 scale_turn
    say "reports: $OUT/scale-{old,new}-*.txt"
    ;;
  delivery)
    OLD=${2:?usage: bench/alternate.sh delivery OLD NEW} NEW=${3:?usage: bench/alternate.sh delivery OLD NEW}
    pgctl() { runuser -u postgres -- "$BIN/pg_ctl" -D "/var/tmp/wa_full_$1/data" "${@:2}"; }
    for side in old new; do
      dir=OLD; [ $side = new ] && dir=NEW
      if [ "${REUSE_FULL:-0}" = 1 ] && [ -d "/var/tmp/wa_full_$side/data" ]; then
        say "reusing the full database of $side in /var/tmp/wa_full_$side"
        continue
      fi
      install_build "${!dir}"
      say "a full database for $side in /var/tmp/wa_full_$side"
      WA_SCALE_HOME=/var/tmp/wa_full_$side SCALE_KEEP=1 SCALE_CLIENTS=16 SCALE_SECONDS=5 SCALE_RATE=0 SCALE_OUT_MESSAGES=0 \
        SCALE_QUERY_RUNS=5 bash bench/scale.sh >"$OUT/full-$side.txt" 2>&1 || die "scale.sh failed: $OUT/full-$side.txt"
      pgctl $side -m fast -w stop >/dev/null
    done
    delivery_turn() {
      pgctl $side -l "/var/tmp/wa_full_$side/server.log" -w start >/dev/null
      dsn="host=/var/tmp/wa_full_$side port=${SCALE_PORT:-5497} user=postgres dbname=postgres"
      if [ "${VACUUM_FIRST:-0}" = 1 ]; then
        runuser -u postgres -- "$BIN/psql" -qAt "$dsn" -c "VACUUM wa_messages" >/dev/null
      fi
      sleep 3 # the workers start a moment after the server
      say "delivery, $side, round $round"
      # shellcheck disable=SC2086 # (DELIVERY_ARGS is a list of flags)
      target/release/wa-sim outbound-bench --dsn "$dsn" \
        --latency-ms 50 ${DELIVERY_ARGS:---messages 20000 --channels 4 --rate 200 --seconds 10} 2>/dev/null >"$OUT/delivery-$side-$round.md"
      pgctl $side -m fast -w stop >/dev/null
    }
    in_turns 3 delivery_turn
    say "reports: $OUT/delivery-{old,new}-*.md"
    ;;
  saturated)
    OLD=${2:?usage: bench/alternate.sh saturated OLD NEW} NEW=${3:?usage: bench/alternate.sh saturated OLD NEW}
    saturated_turn() {
      say "saturated.sh, $side, round $round"
      bash bench/saturated.sh | sed "s/^/$side, round $round: /" | tee -a "$OUT/saturated.txt" || die "saturated.sh failed"
    }
    in_turns 2 saturated_turn
    ;;
  *)
    echo "usage: bash bench/alternate.sh save DIR | scale OLD NEW | delivery OLD NEW | saturated OLD NEW" >&2
    exit 2
    ;;
esac
