"""Compose lifecycle tasks: build, up, down, wait-healthy, ps, logs, reset, psql."""

from __future__ import annotations

import json

from invoke import task

from deploy.errors import ConfigError
from deploy.shell import is_remote
from deploy.tasks.common import (
    count,
    database,
    exits,
    print_lines,
    seconds,
    services_list,
    stack_for,
)


@task(help={"no_cache": "build without the layer cache"})
@exits
def build(c, no_cache=False):
    """Build the release's images here, once: BACKEND_IMAGE:<git sha> and the proxy."""
    from deploy.machine import builds
    from deploy.release import revision

    if is_remote(c):
        raise ConfigError("build: images are built on this machine and shipped to hosts "
                          "(`invoke build`, then `invoke deploy --hosts … --no-build`); a host "
                          "never builds")
    stack = stack_for(c)
    stack.check_docker()
    rev = revision.revision()
    ref = builds.image(stack.settings, rev.tag)
    if not rev.committed:
        stack.out(f"build: uncommitted changes, so the tag is {rev.tag} (not a commit); remote "
                  "deploys refuse it without --allow-dirty")
    stack.out.step(f"build {ref}", builds.build_backend, stack, rev.tag, False, no_cache)
    stack.out.step(f"build {builds.proxy_image(stack.settings)}", builds.build_proxy, stack)
    ident = builds.image_id(stack.c, ref) or "?"
    stack.out(f"build: {ref} ({ident}); deploy it with `invoke deploy --no-build` here, or "
              "`invoke deploy --hosts … --no-build`")


@task
@exits
def up(c):
    """Start the stack in the background (docker compose up -d, no build)."""
    from deploy.machine.containers import BASE_SERVICES
    from deploy.machine.routing import resync
    from deploy.machine.stack import require_stack_settings

    stack = stack_for(c)
    if not is_remote(c):
        require_stack_settings(stack.settings)
    stack.check_docker()
    stack.up(first=BASE_SERVICES)  # postgres and the proxy healthy, then the backend

    routed = resync(stack)
    if routed:
        stack.out(f"proxy: routes to {', '.join(routed)}")


@task(help={"volumes": "also remove the volumes (prefer `reset`, which backs up first)"})
@exits
def down(c, volumes=False):
    """Stop and remove the stack's containers; volumes are kept."""
    if volumes:
        raise ConfigError("--volumes: use `invoke reset --yes-destroy=<project>`, which takes "
                          "a backup before destroying data")
    stack = stack_for(c)
    stack.check_docker()
    stack.down()


@task(name="wait-healthy", help={"timeout": "seconds to wait (default HEALTH_TIMEOUT, 120)"})
@exits
def wait_healthy(c, timeout=None):
    """Wait until every service with a healthcheck is healthy and the rest are running."""
    from deploy.machine.routing import format_states

    stack = stack_for(c)
    stack.check_docker()
    states = stack.wait_healthy(seconds("--timeout", timeout, stack.settings.health_timeout))
    print_lines(format_states(states))


@task(help={"json": "machine-readable output"})
@exits
def ps(c, json_=False):
    """Each container: state, health, exit code, its release, the proxy's view of it, ports."""
    from deploy.machine.routing import format_states, routes, state_dict

    stack = stack_for(c)
    stack.check_docker()
    states = stack.states()
    routing = routes(stack, states)
    if json_:
        print(json.dumps([state_dict(s, routing) for s in states], indent=2))
    else:
        print_lines(format_states(states, routing))


@task(positional=["services"], help={
    "services": "service name, several comma-separated, or 'all'",
    "grep": "Python regular expression; only matching lines are printed (exit 3 if none)",
    "case_sensitive": "match case (default: case-insensitive)",
    "context": "lines of context before and after each match",
    "since": "only logs newer than this, e.g. 10m or an RFC 3339 time (Compose v2)",
    "tail": "only the last N lines of each container",
    "timestamps": "prefix each line with its timestamp",
})
@exits
def logs(c, services, grep=None, case_sensitive=False, context=None, since=None,
         tail=None, timestamps=False):
    """Print or search the logs of SERVICES (a name, a,b or 'all'), filtered in Python."""
    from deploy.machine import logs as logfilter
    from deploy.machine.logs import no_match

    pattern = (logfilter.compile_pattern(grep, case_sensitive=case_sensitive)
               if grep is not None else None)
    n_context = count("--context", context, 0)
    stack = stack_for(c)
    stack.check_docker()
    names = [] if services == "all" else services_list(services)
    lines = stack.log_lines(names, tail=tail, since=since, timestamps=timestamps)
    if pattern is None:
        print_lines(lines)
        return
    matched = 0
    for line in logfilter.filter_lines(lines, pattern, context=n_context):
        matched += 1
        print(line)
    if not matched:
        raise no_match(grep)


@task(help={
    "yes_destroy": "the Compose project name, to confirm when not interactive",
    "production": "also required when DEPLOY_ENV=production",
    "no_backup": "skip the pg_dump backup (spelled out on purpose)",
})
@exits
def reset(c, yes_destroy=None, production=False, no_backup=False):
    """Back up (pg_dump), destroy volumes, start fresh, migrate: guarded by the project name."""
    import sys

    from deploy.machine.reset import confirm_reset
    from deploy.machine.reset import reset as run_reset

    stack = stack_for(c)
    confirm_reset(stack.settings, yes_destroy, production, interactive=sys.stdin.isatty())
    run_reset(stack, backup=not no_backup, database=lambda: database(c, stack.settings))


@task
@exits
def psql(c):
    """Open psql inside the postgres service (interactive)."""
    from deploy.commands import compose

    stack = stack_for(c)
    stack.check_docker()
    script = ('exec psql -U "${POSTGRES_USER:-postgres}" '
              '-d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"')
    stack.run(compose.exec_(stack.compose, "postgres", ["sh", "-c", script], tty=True),
              hide=False, pty=True, what="psql")
