#!/bin/sh
# The user, password, host, port and database come from ANBU_DATABASE_URL (the env file anbu
# reads too), so the password is written once:
#   postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB   (URL-safe password, e.g. hex)
# First start: create the cluster with USER as its superuser (password over TCP; the Unix
# socket stays inside the container), and DB.
# Every start: listen on HOST:PORT only (host networking). `ready` = the health check.
set -eu
url="${ANBU_DATABASE_URL:?set ANBU_DATABASE_URL}"
rest="${url#*://}"
creds="${rest%%@*}"
hostpart="${rest#*@}"
POSTGRES_USER="${creds%%:*}"
POSTGRES_PASSWORD="${creds#*:}"
hostport="${hostpart%%/*}"
POSTGRES_DB="${hostpart#*/}"
POSTGRES_DB="${POSTGRES_DB%%\?*}"
PGHOST="${hostport%%:*}"
PGPORT="${hostport#*:}"
[ "$PGPORT" = "$hostport" ] && PGPORT=5432
if [ -z "$POSTGRES_USER" ] || [ "$POSTGRES_PASSWORD" = "$creds" ] || [ -z "$POSTGRES_DB" ]; then
    echo "postgres: ANBU_DATABASE_URL needs user, password and database" >&2
    exit 2
fi
if [ "${1:-}" = ready ]; then
    exec pg_isready -q -h "$PGHOST" -p "$PGPORT" -d "$POSTGRES_DB" -U "$POSTGRES_USER"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=trust \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /var/run/postgresql" -w start >/dev/null
    psql -h /var/run/postgresql -U "$POSTGRES_USER" -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\"" >/dev/null
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "postgres: cluster created (user $POSTGRES_USER, database $POSTGRES_DB)"
fi
exec postgres -D "$PGDATA" -c listen_addresses="$PGHOST" -p "$PGPORT" \
    -k /var/run/postgresql
