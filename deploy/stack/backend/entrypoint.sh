#!/bin/sh
# The backend container's start-up: the team's old start script, done right.
#   1. Apply pending migrations with this project's runner. It waits for the database
#      (--wait), serialises concurrent containers on an advisory lock and applies each file
#      exactly once, printing one line per migration (`invoke logs backend --grep migration`).
#   2. exec the server, so it replaces this shell and gets the stop signal (Compose's
#      `init: true` puts tini in front of it as PID 1).
# A failed migration stops the container with the runner's exit code: it never serves
# traffic on a schema older than its code. A schema newer than its code (migrations a
# newer release applied, as after `invoke rollback`) is fine: every migration keeps the
# release before it working (README, "Deploy-safe migrations"), so --allow-ahead.
set -eu

# A web host's database is elsewhere (a database host, a managed PostgreSQL): the compose
# file passes its URL as APP_DATABASE_URL, which then replaces the stack's own.
if [ -n "${APP_DATABASE_URL:-}" ]; then
    DATABASE_URL=$APP_DATABASE_URL
    export DATABASE_URL
fi
unset APP_DATABASE_URL

if [ "${BACKEND_FAIL_AT_START:-0}" = 1 ]; then
    # Test hook for the end-to-end tests (a container that crashes at start); never set it otherwise.
    echo "backend: BACKEND_FAIL_AT_START=1 (test hook): exiting 1 before migrations" >&2
    exit 1
fi

echo "backend: applying pending migrations (python3 -m deploy migrate --wait 60 --allow-ahead)"
# The runner runs in the background and is waited for, so that the stop signal reaches it:
# `docker stop` sends SIGTERM to tini, which forwards it to this shell only; a shell waiting
# for a foreground child would die and leave the runner to be SIGKILLed with the container.
# Forwarded, the runner cancels its statement on the server, rolls the file back and exits
# 143 (130 for SIGINT) with one line saying so.
python3 -m deploy migrate --wait 60 --allow-ahead &
migrate_pid=$!
trap 'kill -TERM "$migrate_pid" 2>/dev/null || true' TERM
trap 'kill -INT "$migrate_pid" 2>/dev/null || true' INT
while :; do
    status=0
    wait "$migrate_pid" || status=$?
    # A trapped signal ends `wait` early (status > 128) while the runner is still finishing
    # its rollback: wait again for the runner's own exit status.
    kill -0 "$migrate_pid" 2>/dev/null || break
done
trap - TERM INT
if [ "$status" -ne 0 ]; then
    echo "backend: migrations failed (exit $status); not starting the server" >&2
    exit "$status"
fi
echo "backend: migrations done; starting the server"
exec python3 -m deploy.stack.backend.app
