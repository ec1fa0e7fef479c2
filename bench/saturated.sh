#!/usr/bin/env bash
# The delivery worker's CPU while it can claim nothing: every sender busy, or every download
# slot. It should sleep until a send or download finishes; a worker that polls shows here.
# Two parts, each on a fresh cluster of the installed build (release), against wa-sim's Graph
# API answering every request in 20 s:
#   senders:   600 texts queued at once (512 go in flight, 88 wait), then 100 more commits,
#              10 a second, each queuing one text: the main thread's CPU over those commits;
#   downloads: 40 inbound photos to download (8 in flight, 32 due and waiting): the main
#              thread's CPU over 10 s.
# The cost of a wasted turn grows with the queue's size; these clusters are empty, so a
# polling worker's waste here is the least it would be (docs/benchmarks/
# 2026-12-07-issue-29-saturated.md).
#   bash bench/saturated.sh            prints one line a part
#   bash bench/alternate.sh saturated OLD NEW   the same, alternating two saved builds
#   SATURATED_HOME   the throwaway cluster's directory (default /var/tmp/wa_saturated; made
#                    and removed here, never one this script did not make)
# Run as root (the cluster belongs to postgres); needs port 5496 and 8098 free.
set -uo pipefail
cd "$(dirname "$0")/.."
# (Not WA_HOME, which names run.sh's cluster for the other benchmarks: this one is wiped.)
SATURATED_HOME=${SATURATED_HOME:-/var/tmp/wa_saturated}
WA_HOME=$SATURATED_HOME WA_PG_PORT=5496 BENCH_OWN_CLUSTER=1
. bench/common.sh
require_release_build
SIM_PORT=8098
MARKER=$WA_HOME/made-by-bench-saturated
pgctl() { as_postgres "$BIN/pg_ctl" -D "$WA_HOME/data" "$@"; }
main_thread_ticks() { cpu_ticks_of "$1/task/$1"; } # pid

cargo build -q --release -p wa-sim
sim=
stop() {
  pgctl -m immediate -w stop >/dev/null 2>&1
  [ -n "$sim" ] && kill "$sim" 2>/dev/null
}
trap stop EXIT

# A fresh cluster and the extension, the worker pointed at the slow mock; prints the delivery
# worker's pid once it runs.
fresh_cluster() {
  if [ -e "$WA_HOME" ] && [ ! -f "$MARKER" ]; then
    echo "$WA_HOME exists but was not made by bench/saturated.sh ($MARKER missing): remove it or set SATURATED_HOME" >&2
    exit 1
  fi
  pgctl -m immediate -w stop >/dev/null 2>&1
  rm -rf "$WA_HOME/data" && mkdir -p "$WA_HOME" && touch "$MARKER" && chown postgres: "$WA_HOME"
  as_postgres "$BIN/initdb" -D "$WA_HOME/data" -U postgres -A trust -E UTF8 >/dev/null
  cat >>"$WA_HOME/data/postgresql.conf" <<CONF
port = $WA_PG_PORT
unix_socket_directories = '$WA_HOME'
listen_addresses = ''
shared_preload_libraries = 'whatsapp_channel'
whatsapp_channel.graph_api_url = 'http://127.0.0.1:$SIM_PORT'
whatsapp_channel.listen_address = '127.0.0.1:0'
CONF
  pgctl -l "$LOG" -w start >/dev/null
  "${PSQL[@]}" -c "CREATE EXTENSION whatsapp_channel" \
    -c "SELECT wa_add_channel('saturated', '1099511699999', 'EAAGbenchtoken000000000000', '0123456789abcdef0123456789abcdef', 'bench')" \
    -c "UPDATE wa_channels SET allow_outside_window = true, max_messages_per_second = 1000 WHERE name = 'saturated'" >/dev/null
  local pid=
  for _ in $(seq 100); do
    pid=$("${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'whatsapp_channel delivery'")
    [ -n "$pid" ] && break
    sleep 0.1
  done
  [ -n "$pid" ] || { echo "no delivery worker: $LOG" >&2; exit 1; }
  echo "$pid"
}

# Polls (10 s at most) until the query answers the expected line.
wait_for() { # query expected
  for _ in $(seq 100); do
    [ "$("${PSQL[@]}" -c "$1")" = "$2" ] && return
    sleep 0.1
  done
  echo "never reached '$2' for: $1 (got '$("${PSQL[@]}" -c "$1")')" >&2
  exit 1
}

target/release/wa-sim graph --port $SIM_PORT --latency-ms 20000 --no-statuses >/dev/null 2>&1 &
sim=$!

pid=$(fresh_cluster) || exit 1
"${PSQL[@]}" -c "SELECT count(wa_send_text('saturated', '+1556' || lpad(i::text, 7, '0'), 'busy ' || i)) FROM generate_series(1, 600) i" >/dev/null
wait_for "SELECT count(*) FILTER (WHERE status = 'sending') || ' ' || count(*) FILTER (WHERE status = 'queued') FROM wa_messages" "512 88"
t0=$(main_thread_ticks "$pid")
for i in $(seq 100); do
  "${PSQL[@]}" -c "SELECT wa_send_text('saturated', '+1557' || lpad('$i', 7, '0'), 'more')" >/dev/null
  sleep 0.1
done
t1=$(main_thread_ticks "$pid")
echo "senders: every sender busy, 100 commits over ~11 s: delivery main thread $((t1 - t0)) ticks (1/100 s)"

pid=$(fresh_cluster) || exit 1
"${PSQL[@]}" -c "WITH m AS (INSERT INTO wa_messages (channel_id, direction, wamid, type, status, media_id, payload)
                            SELECT c.id, 'inbound', 'wamid.saturated.' || i, 'image', 'received', (900000 + i)::text, '{}'
                              FROM wa_channels c, generate_series(1, 40) i RETURNING id, channel_id, media_id)
                 INSERT INTO wa_media (message_id, channel_id, media_id, mime_type)
                 SELECT id, channel_id, media_id, 'image/png' FROM m" -c "SELECT _wa_wake_delivery()" >/dev/null
wait_for "SELECT count(*) FILTER (WHERE status = 'downloading') || ' ' || count(*) FILTER (WHERE status = 'pending') FROM wa_media" "8 32"
t0=$(main_thread_ticks "$pid")
sleep 10
t1=$(main_thread_ticks "$pid")
echo "downloads: every download slot busy, 10 s: delivery main thread $((t1 - t0)) ticks (1/100 s)"
