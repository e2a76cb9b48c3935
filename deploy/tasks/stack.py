"""Compose lifecycle tasks: build, up, down, wait-healthy, ps, logs, reset, psql.

up, down, wait-healthy, ps and logs run here, on the host `fab -H` gives, or on each host of
--hosts (default DEPLOY_HOSTS) in turn; build runs here only; reset and psql here or under
`fab -H` (one guarded or interactive target at a time).
"""

from __future__ import annotations

import json
import sys

from deploy.commands import compose
from deploy.errors import ConfigError
from deploy.machine import builds
from deploy.machine import logs as logfilter
from deploy.machine.containers import base_services
from deploy.machine.logs import no_match
from deploy.machine.reset import confirm_reset
from deploy.machine.reset import reset as run_reset
from deploy.machine.routing import format_states, resync, routes, state_dict
from deploy.machine.stack import require_stack_settings
from deploy.release import revision
from deploy.shell import is_remote
from deploy.tasks.common import (
    TARGET_HELP,
    count,
    database,
    each_target,
    exits,
    host_runs,
    on_swarm,
    print_lines,
    seconds,
    services_list,
    stack_for,
    task,
)

HOSTS_HELP = ("run on these hosts in turn: web1,deploy@web2:2222 (default DEPLOY_HOSTS; "
              "'local' for this machine)")


@task(help={"no_cache": "build without the layer cache"})
@exits
def build(c, no_cache=False):
    """Build the release's images here, once: each app and worker service's
    <image>:<git sha> (the sample: BACKEND_IMAGE), and the proxy."""
    if is_remote(c):
        raise ConfigError("build: images are built on this machine and shipped to hosts "
                          "(`invoke build`, then `invoke deploy --hosts … --no-build`); a host "
                          "never builds")
    stack = stack_for(c)
    stack.check_docker()
    stack.check_roles()
    rev = revision.revision()
    services = (*stack.settings.app_services, *stack.settings.worker_services)
    ref = builds.service_image(stack, services[0], rev.tag) if services else "(no app image)"
    if not rev.committed:
        stack.out(f"build: uncommitted changes, so the tag is {rev.tag} (not a commit); remote "
                  "deploys refuse it without --allow-dirty")
    stack.out.step(f"build {ref}", builds.build_release, stack, rev.tag, False,
                   no_cache)
    stack.out.step(f"build {builds.proxy_image(stack.settings)}", builds.build_proxy, stack)
    ident = builds.image_id(stack.c, ref) or "?"
    stack.out(f"build: {ref} ({ident}); deploy it with `invoke deploy --no-build` here, or "
              "`invoke deploy --hosts … --no-build`")


@task(help={"hosts": HOSTS_HELP})
@exits
def up(c, hosts=None):
    """Start the stack in the background (docker compose up -d, no build)."""

    def one(c, prefix):
        stack = stack_for(c)
        if not is_remote(c):
            require_stack_settings(stack.settings)
        stack.check_docker()
        if not is_remote(c):
            stack.check_roles()
        # The database and the proxy first; on a host, only the services of its role.
        stack.up(first=base_services(stack.settings), only=host_runs(c, stack))
        routed = resync(stack)
        if routed:
            stack.out(f"proxy: routes to {', '.join(routed)}")

    each_target(c, hosts, one)


@task(help={"volumes": "also remove the volumes (prefer `reset`, which backs up first)",
            "hosts": HOSTS_HELP})
@exits
def down(c, volumes=False, hosts=None):
    """Stop and remove the stack's containers; volumes are kept."""
    if volumes:
        raise ConfigError("--volumes: use `invoke reset --yes-destroy=<project>`, which takes "
                          "a backup before destroying data")

    def one(c, prefix):
        stack = stack_for(c)
        stack.check_docker()
        stack.down()

    each_target(c, hosts, one)


@task(name="wait-healthy", help={"timeout": "seconds to wait (default HEALTH_TIMEOUT, 120)",
                                 "hosts": HOSTS_HELP})
@exits
def wait_healthy(c, timeout=None, hosts=None):
    """Wait until every service with a healthcheck is healthy and the rest are running."""

    def one(c, prefix):
        stack = stack_for(c)
        stack.check_docker()
        states = stack.wait_healthy(seconds("--timeout", timeout, stack.settings.health_timeout))
        print_lines(format_states(states), prefix)

    each_target(c, hosts, one)


@task(help={"json": "machine-readable output (with hosts: one list, each entry its host's)",
            "hosts": HOSTS_HELP, "target": TARGET_HELP})
@exits
def ps(c, json_=False, hosts=None, target=None):
    """Each container: state, health, exit code, its release, the proxy's view of it, ports;
    on a Swarm each service: running/desired replicas, release, tasks per node."""
    rows: list[dict] | None = None  # with hosts: every host's containers, in one list
    swarm_settings = on_swarm(c, target, hosts)
    if swarm_settings is not None:
        from deploy.swarm import views

        if json_:
            raise ConfigError("--json: not with the swarm target yet")
        views.ps(swarm_settings)
        return

    def one(c, prefix):
        nonlocal rows
        stack = stack_for(c)
        stack.check_docker()
        states = stack.states()
        routing = routes(stack, states)
        if not json_:
            print_lines(format_states(states, routing), prefix)
        elif prefix:
            rows = (rows or []) + [{"host": c.host, **state_dict(s, routing)} for s in states]
        else:
            print(json.dumps([state_dict(s, routing) for s in states], indent=2))

    each_target(c, hosts, one)
    if rows is not None:
        print(json.dumps(rows, indent=2))


@task(positional=["services"], help={
    "services": "service name, several comma-separated, or 'all'",
    "grep": "Python regular expression; only matching lines are printed (exit 3 if none)",
    "case_sensitive": "match case (default: case-insensitive)",
    "context": "lines of context before and after each match",
    "since": "only logs newer than this, e.g. 10m or an RFC 3339 time (Compose v2)",
    "tail": "only the last N lines of each container",
    "timestamps": "prefix each line with its timestamp",
    "hosts": HOSTS_HELP,
    "target": TARGET_HELP + " (on a Swarm: `docker service logs` of every task)",
})
@exits
def logs(c, services, grep=None, case_sensitive=False, context=None, since=None,
         tail=None, timestamps=False, hosts=None, target=None):
    """Print or search the logs of SERVICES (a name, a,b or 'all'), filtered in Python."""
    pattern = (logfilter.compile_pattern(grep, case_sensitive=case_sensitive)
               if grep is not None else None)
    n_context = count("--context", context, 0)
    names = [] if services == "all" else services_list(services)
    matched = 0
    swarm_settings = on_swarm(c, target, hosts)
    if swarm_settings is not None:
        from deploy.swarm import views

        if timestamps:
            raise ConfigError("--timestamps: not with the swarm target")
        lines = views.log_lines(swarm_settings, names, tail=count("--tail", tail, None),
                                since=since)
        if pattern is None:
            print_lines(lines)
            return
        for line in logfilter.filter_lines(lines, pattern, context=n_context):
            matched += 1
            print(line)
        if not matched:
            raise no_match(grep)
        return

    def one(c, prefix):
        nonlocal matched
        stack = stack_for(c)
        stack.check_docker()
        lines = stack.log_lines(names, tail=tail, since=since, timestamps=timestamps)
        if pattern is None:
            print_lines(lines, prefix)
            return
        for line in logfilter.filter_lines(lines, pattern, context=n_context):
            matched += 1
            print(prefix + line)

    each_target(c, hosts, one)
    if pattern is not None and not matched:
        raise no_match(grep)


@task(help={
    "yes_destroy": "the Compose project name, to confirm when not interactive",
    "production": "also required when DEPLOY_ENV=production",
    "no_backup": "skip the pg_dump backup (spelled out on purpose)",
})
@exits
def reset(c, yes_destroy=None, production=False, no_backup=False):
    """Back up (pg_dump), destroy volumes, start fresh, migrate: guarded by the project name."""
    stack = stack_for(c)
    confirm_reset(stack.settings, yes_destroy, production, interactive=sys.stdin.isatty())
    run_reset(stack, backup=not no_backup, database=lambda: database(c, stack.settings),
              only=host_runs(c, stack))


@task
@exits
def psql(c):
    """Open psql inside the database service, DB_SERVICE (interactive)."""
    stack = stack_for(c)
    if not stack.settings.db_service:
        raise ConfigError("psql: DB_SERVICE is empty (the stack has no database service); "
                          "connect to DATABASE_URL with your own psql")
    stack.check_docker()
    script = ('exec psql -U "${POSTGRES_USER:-postgres}" '
              '-d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"')
    stack.run(compose.exec_(stack.compose, stack.settings.db_service, ["sh", "-c", script],
                            tty=True),
              hide=False, pty=True, what="psql")
