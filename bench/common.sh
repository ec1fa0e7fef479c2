# Sourced by bench/inbound.sh and bench/outbound.sh (and bench/scale.sh, with its own cluster):
# where the cluster of `bash scripts/run.sh` is, how to reach it, and the checks they need
# before they start.
WA_HOME=${WA_HOME:-/var/tmp/whatsapp_channel}
WA_PG_PORT=${WA_PG_PORT:-5499}
# PG_MAJOR=15 (default: Debian's own) or 18 (the wheel's, in PG18_HOME), as scripts/run.sh.
. scripts/pg.sh
BIN=$PG_BIN
DSN="host=$WA_HOME port=$WA_PG_PORT user=postgres dbname=postgres"
PSQL=("$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$WA_HOME" -p "$WA_PG_PORT" -U postgres -d postgres)
export PATH="$HOME/.cargo/bin:$PATH"
say() { echo "[bench] $*" >&2; }

[ -x "$BIN/pgbench" ] || { echo "no $BIN/pgbench: apt-get install postgresql-15 (PG_MAJOR=18: bash scripts/setup.sh)" >&2; exit 1; }
# BENCH_OWN_CLUSTER=1: the script creates and starts the cluster in $WA_HOME itself (bench/scale.sh).
if [ "${BENCH_OWN_CLUSTER:-0}" != 1 ]; then
  "${PSQL[@]}" -c "SELECT 1" >/dev/null 2>&1 || { echo "the cluster in $WA_HOME is not up: bash scripts/run.sh" >&2; exit 1; }
fi

# Refuses to benchmark a debug build of the library at $1 (default: the installed one). The
# tests and CI install one (`cargo pgrx install` without --release) over the release build
# scripts/run.sh installed, and its HTTP threads cost about four times a release build's
# (3 December 2026). A debug build carries DWARF sections; the release profile has none.
require_release_build() {
  local lib=${1:-$("$BIN/pg_config" --pkglibdir)/whatsapp_channel.so}
  if command -v readelf >/dev/null && readelf -S "$lib" 2>/dev/null | grep -q '\.debug_info'; then
    echo "$lib is a debug build (the tests and CI install one): install a release build first," \
      "cargo pgrx install --release ${PG_FEATURES[*]} --pg-config $PG_CONFIG (bench/scale.sh: BENCH_INSTALL=1)" >&2
    exit 1
  fi
}

# Runs a command as postgres when root (Postgres refuses root), and without RUST_BACKTRACE, as
# scripts/run.sh starts the server: with it, every error of the extension carries a backtrace.
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env -u RUST_BACKTRACE "$@"; else env -u RUST_BACKTRACE "$@"; fi; }

# The CPU time so far of the processes given (every thread of each), in clock ticks (1/100 s);
# a process that is gone counts 0. "PID/task/TID" instead of a pid counts that one thread.
cpu_ticks_of() { # pid...
  local p
  # After "pid (comm) ": utime and stime are fields 12 and 13.
  for p in "$@"; do sed 's/.*) //' "/proc/$p/stat" 2>/dev/null; done | awk '{ s += $12 + $13 } END { print s + 0 }'
}

# The webhook listener workers' CPU time so far (every thread: the main thread that stores,
# the HTTP threads), in ticks. The difference across a load run, divided by the messages it
# committed, is the listener's server CPU a message, as BENCHMARKS.md and issue 29 count it:
# autovacuum, checkpoints and the load generator are not in it.
listener_cpu_ticks() {
  # shellcheck disable=SC2046 # one pid a word
  cpu_ticks_of $("${PSQL[@]}" -c "SELECT string_agg(pid::text, ' ') FROM pg_catalog.pg_stat_activity WHERE backend_type LIKE 'whatsapp_channel webhook listener%'")
}

# The server log: mark where a run starts, then read what the run added and its problems.
LOG=$WA_HOME/server.log
log_lines() { if [ -r "$LOG" ]; then wc -l <"$LOG"; else echo 0; fi; }
# Sets NEW_LOG (the lines after line $1) and LOG_PROBLEMS (how many are WARNING or worse).
read_log_since() {
  NEW_LOG=$(tail -n +"$(($1 + 1))" "$LOG" 2>/dev/null || true)
  LOG_PROBLEMS=$(echo "$NEW_LOG" | grep -cE 'WARNING|ERROR|FATAL|PANIC' || true)
}
print_log_problems() {
  if [ "$LOG_PROBLEMS" != 0 ]; then
    echo
    echo "Server log problems (first 20):"
    echo '```'
    echo "$NEW_LOG" | grep -E 'WARNING|ERROR|FATAL|PANIC' | head -20
    echo '```'
  fi
}

# The pgbench script of Postgres' own ceiling for the listener's work: one INSERT ... ON
# CONFLICT DO NOTHING of a webhook-sized row into bench_ceiling, plus one pg_notify, per
# transaction. pgbench keeps a client's variables from one transaction to the next: n counts
# its messages (run it with -D n=0 -D run=<unique>).
insert_notify_script() {
  cat <<'SQL'
\set n :n + 1
BEGIN;
INSERT INTO bench_ceiling (wamid, body) VALUES ('wamid.BENCH.' || :run || '.' || :client_id || '.' || :n, 'Hi! Does the blue jacket come in another color? Can I still change my order? {"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}}}]}]}') ON CONFLICT (wamid) DO NOTHING;
SELECT pg_notify('bench', '{"id": ' || :n || ', "channel_id": 1, "contact_id": ' || :client_id || '}');
END;
SQL
}

# https on this cluster's listener, for a run (bench/inbound.sh, bench/compare.sh tls): a
# self-signed certificate for 127.0.0.1 made with openssl in $WA_HOME, set in the TLS settings
# and reloaded (tls_on), then unset again (tls_off).
BENCH_CERT=$WA_HOME/bench-tls.crt
BENCH_KEY=$WA_HOME/bench-tls.key
make_bench_certificate() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=bench \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$BENCH_KEY" -out "$BENCH_CERT" 2>/dev/null
  chmod 600 "$BENCH_KEY"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$BENCH_KEY" "$BENCH_CERT"; fi
}
tls_on() {
  "${PSQL[@]}" -c "ALTER SYSTEM SET whatsapp_channel.tls_cert_file = '$BENCH_CERT'" \
    -c "ALTER SYSTEM SET whatsapp_channel.tls_key_file = '$BENCH_KEY'" -c "SELECT pg_reload_conf()" >/dev/null
}
tls_off() {
  "${PSQL[@]}" -c "ALTER SYSTEM RESET whatsapp_channel.tls_cert_file" \
    -c "ALTER SYSTEM RESET whatsapp_channel.tls_key_file" -c "SELECT pg_reload_conf()" >/dev/null
}
# Waits (10 s at most) until the listener answers over http or https (with $BENCH_CERT).
wait_for_listener() {
  local listen
  listen=$("${PSQL[@]}" -c "SHOW whatsapp_channel.listen_address")
  for _ in $(seq 100); do
    if [ "$1" = https ]; then
      curl -s -o /dev/null --cacert "$BENCH_CERT" "https://$listen/webhook/" && return
    else
      curl -s -o /dev/null "http://$listen/webhook/" && return
    fi
    sleep 0.1
  done
  echo "the listener did not answer $1 on $listen" >&2
  exit 1
}
