#!/usr/bin/env bash
# Entrypoint of the local Debian-based PostgreSQL image that .ci/build-images builds.
#
# It gives that image the interface of the official `postgres` image, so the Compose file
# treats both alike and only POSTGRES_IMAGE differs: the same environment (POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB, POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD), the same
# PGDATA (/var/lib/postgresql/data), the same command (`postgres` plus its options) and
# /docker-entrypoint-initdb.d/*.sql|*.sh run once on first start.
# This is a small re-implementation, not a copy: it covers what the stack uses.
set -Eeuo pipefail

log() { printf 'docker-entrypoint.sh: %s\n' "$*" >&2; }

# `docker run IMAGE -c foo=bar` means `postgres -c foo=bar`, as in the official image.
if [[ ${1:-} == -* ]]; then
    set -- postgres "$@"
fi
if [[ ${1:-} != postgres ]]; then
    exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

# As root: own the data directory (a fresh named volume is root's), then re-run this script
# as postgres. The server then runs as PID 1 and receives Docker's stop signal itself.
if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$PGDATA"
    chmod 2775 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

initialise() {
    : "${POSTGRES_USER:=postgres}"
    : "${POSTGRES_DB:=$POSTGRES_USER}"
    local auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [[ -z ${POSTGRES_PASSWORD:-} && $auth != trust ]]; then
        log "POSTGRES_PASSWORD is empty: set it (or POSTGRES_HOST_AUTH_METHOD=trust) to initialise the database"
        exit 1
    fi

    log "initialising $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
    local -a initdb_args
    read -ra initdb_args <<<"${POSTGRES_INITDB_ARGS:-}"
    # The password goes through a pipe, never a file or a command line.
    initdb --username="$POSTGRES_USER" --encoding=UTF8 --locale=C.UTF-8 \
        ${POSTGRES_PASSWORD:+--pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD")} \
        "${initdb_args[@]}" >/dev/null
    # As the official image: reachable from other containers, with a password.
    printf "listen_addresses = '*'\nport = 5432\n" >>"$PGDATA/postgresql.conf"
    printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

    # A temporary server on the Unix socket only: the healthcheck probes TCP, so it never
    # reports this half-initialised server as ready.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    local -a psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER")
    if [[ $POSTGRES_DB != postgres ]]; then
        "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        # shellcheck source=/dev/null
        case $f in
            *.sh) log "running $f"; . "$f" ;;
            *.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
            *) if [[ -e $f ]]; then log "ignoring $f"; fi ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    log "initialisation complete"
}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    initialise
fi

# port and listen_addresses repeat postgresql.conf, so a data directory made elsewhere
# (Debian's pg_createcluster picks 5433 when 5432 is taken) still listens where Compose expects.
shift
exec postgres -c port=5432 -c "listen_addresses=*" "$@"
