#!/bin/sh
# The official postgres image's start-up, as far as docker-compose.local.yml uses it (trust auth only).
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=${POSTGRES_USER}}"
if [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
  echo "this stand-in supports POSTGRES_HOST_AUTH_METHOD=trust only" >&2
  exit 1
fi
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
mkdir -p "${PGDATA}" /run/postgresql
chown postgres:postgres "${PGDATA}" /run/postgresql
chmod 700 "${PGDATA}"
if [ ! -s "${PGDATA}/PG_VERSION" ]; then
  as_postgres initdb --pgdata="${PGDATA}" --username="${POSTGRES_USER}" --auth=trust --encoding=UTF8 >/dev/null
  echo "host all all all trust" >>"${PGDATA}/pg_hba.conf"
  if [ "${POSTGRES_DB}" != postgres ]; then
    as_postgres pg_ctl --pgdata="${PGDATA}" --options="-c listen_addresses=''" --wait --silent start
    as_postgres createdb --username="${POSTGRES_USER}" "${POSTGRES_DB}"
    as_postgres pg_ctl --pgdata="${PGDATA}" --mode=fast --wait --silent stop
  fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "${PGDATA}" -c listen_addresses='*'
