# Sourced by bench/inbound.sh and bench/outbound.sh: where the cluster of `bash scripts/run.sh`
# is, how to reach it, and the checks both need before they start.
WA_HOME=${WA_HOME:-/var/tmp/whatsapp_channel}
WA_PG_PORT=${WA_PG_PORT:-5499}
BIN=/usr/lib/postgresql/15/bin
DSN="host=$WA_HOME port=$WA_PG_PORT user=postgres dbname=postgres"
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$WA_HOME" -p "$WA_PG_PORT" -U postgres -d postgres)
export PATH="$HOME/.cargo/bin:$PATH"
say() { echo "[bench] $*" >&2; }

[ -x "$BIN/pgbench" ] || { echo "no $BIN/pgbench: apt-get install postgresql-15" >&2; exit 1; }
"${PSQL[@]}" -c "SELECT 1" >/dev/null 2>&1 || { echo "the cluster in $WA_HOME is not up: bash scripts/run.sh" >&2; exit 1; }
