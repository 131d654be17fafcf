# A PostgreSQL cluster on 127.0.0.1 for the Prefect server of the scale-out tests, sourced by
# scripts/test.sh. start_postgres exports PFCON_TEST_POSTGRES_URL; stop_postgres stops the
# cluster only if start_postgres started it.

PG_VERSION_DIR="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
PG_DATA="${PFCON_STATE_DIR:-/var/tmp/prefect-pfcon}/postgres"
PG_PORT="${PFCON_TEST_POSTGRES_PORT:-55432}"
PG_STARTED_HERE=0

ensure_postgres_installed() {
  if [ -n "$PG_VERSION_DIR" ] && [ -x "$PG_VERSION_DIR/pg_ctl" ]; then
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; local made=1; }
  apt-get install -y -qq postgresql >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
  [ "${made:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
  PG_VERSION_DIR="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
}

_pg() {  # run a PostgreSQL binary as the postgres user
  runuser -u postgres -- "$PG_VERSION_DIR/$1" "${@:2}"
}

start_postgres() {
  ensure_postgres_installed
  mkdir -p "$PG_DATA" && chown postgres: "$PG_DATA"
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    _pg initdb -D "$PG_DATA" -A trust -U postgres >/dev/null
  fi
  if ! _pg pg_ctl -D "$PG_DATA" status >/dev/null 2>&1; then
    _pg pg_ctl -D "$PG_DATA" -w -l "$PG_DATA/server.log" \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DATA -c max_connections=200" start >/dev/null
    PG_STARTED_HERE=1
  fi
  export PFCON_TEST_POSTGRES_URL="postgresql+asyncpg://postgres@127.0.0.1:$PG_PORT/postgres"
}

stop_postgres() {
  if [ "$PG_STARTED_HERE" = 1 ]; then
    _pg pg_ctl -D "$PG_DATA" -m fast stop >/dev/null
  fi
}
