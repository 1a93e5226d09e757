#!/bin/sh
# PostgreSQL from Debian's packages, started like the official image: on an empty $PGDATA it
# runs initdb (superuser $POSTGRES_USER, password $POSTGRES_PASSWORD) and then every
# /docker-entrypoint-initdb.d/*.sh (sourced) and *.sql; then postgres runs as PID 1.
set -eu
PGBIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
export POSTGRES_USER="${POSTGRES_USER:-postgres}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    "$PGBIN/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 \
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    "$PGBIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "running $f"; . "$f" ;;
            *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -f "$f" ;;
        esac
    done
    "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop
fi
exec "$PGBIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
