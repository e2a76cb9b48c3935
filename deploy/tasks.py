"""The Invoke tasks: read settings, call the modules, turn DeployError into Exit once."""

from __future__ import annotations

import functools
import json
from contextlib import contextmanager
from dataclasses import replace

from invoke import Collection, Exit, task

from deploy.errors import ConfigError, DeployError
from deploy.settings import Settings, load_settings


def _exits(fn):
    """Convert the project's errors into invoke.Exit(message, code) in one place."""

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        try:
            return fn(c, *args, **kwargs)
        except DeployError as exc:
            raise Exit(str(exc), code=exc.exit_code) from None

    return wrapper


def settings_for(c) -> Settings:
    """The settings for where `c` points: local, or under `fab -H` the host's overlay
    (deploy/hosts/<host>.env) with its host key checked before anything is sent."""
    settings = load_settings()
    from deploy.remote import is_remote

    if not is_remote(c):
        return settings
    from deploy import remote

    settings = remote.host_settings(settings, c.host)
    remote.secure(c, settings)
    remote.open_connection(c, settings)
    return settings


@contextmanager
def database(c, settings: Settings):
    """Settings whose DATABASE_URL reaches the database from here (a tunnel under fab)."""
    from deploy.remote import database_url

    with database_url(c, settings) as url:
        yield replace(settings, database_url=url)


def seconds(flag: str, value, default: float) -> float:
    """Parse a number-of-seconds flag; Invoke's own float parsing dies with a traceback."""
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{flag}: {value!r} is not a number of seconds") from None
    if number < 0:
        raise ConfigError(f"{flag}: must be 0 or more seconds (got {value})")
    return number


def _print_lines(lines) -> None:
    for line in lines:
        print(line, flush=True)


@task(help={
    "wait": "retry the database connection for up to N seconds (default 0)",
    "lock_timeout": "seconds to wait for another runner's lock before exit 4 (default 60)",
    "dry_run": "print the plan; apply nothing",
    "accept_drift": "record changed checksums, keep rows of missing files, apply out-of-order",
})
@_exits
def migrate(c, wait=None, lock_timeout=None, dry_run=False, accept_drift=False):
    """Apply pending SQL migrations, each exactly once, under an advisory lock."""
    from deploy.runner import migrate as run_migrate

    with database(c, settings_for(c)) as settings:
        run_migrate(settings, wait=seconds("--wait", wait, 0.0),
                    lock_timeout=seconds("--lock-timeout", lock_timeout, 60.0),
                    dry_run=dry_run, accept_drift=accept_drift, out=print)


@task(name="migrate-status", help={"json": "machine-readable output",
                                   "wait": "retry the connection for up to N seconds (default 0)"})
@_exits
def migrate_status(c, json_=False, wait=None):
    """Show every migration: applied (when, ms), pending, changed or missing; exit 3 on drift."""
    from deploy.runner import drift_error, format_status, status

    with database(c, settings_for(c)) as settings:
        rows, plan = status(settings, wait=seconds("--wait", wait, 0.0))
    if json_:
        print(json.dumps({"migrations": rows, "drift": plan.drift}, indent=2))
    else:
        _print_lines(format_status(rows))
    if plan.drift:
        raise drift_error(plan)


@task(name="check-tables", help={
    "prefix": "literal table-name prefix, e.g. ai_ (the _ is not a wildcard)",
    "schema": "schema to inspect (default public)",
    "expected": "compare the tables the migrations create with the database; exit 3 if any "
                "is missing",
    "json": "machine-readable output",
    "wait": "retry the connection for up to N seconds (default 0)",
})
@_exits
def check_tables(c, prefix=None, schema="public", expected=False, json_=False, wait=None):
    """List tables by literal prefix, or verify the tables the migrations create."""
    from deploy.checks import check_tables as run_check
    from deploy.checks import format_report

    with database(c, settings_for(c)) as settings:
        report = run_check(settings.database_url, settings.migrations_dir, prefix=prefix,
                           schema=schema, expected=expected, wait=seconds("--wait", wait, 0.0))
    lines, failure = format_report(report)
    if json_:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_lines(lines)
    if failure:
        raise failure


@task(name="new-migration", help={"name": "lower_snake name, e.g. user_roles_system"})
@_exits
def new_migration(c, name):
    """Write the next numbered migration file from the idempotent template."""
    from deploy.runner import new_migration as run_new

    run_new(settings_for(c), name)


@task(name="redo-migration", help={
    "filename": "the migration file, e.g. 020_ai_cost_management_system.sql",
    "yes": "confirm: delete its history row and re-run it",
    "lock_timeout": "seconds to wait for the migration lock (default 60)",
})
@_exits
def redo_migration(c, filename, yes=False, lock_timeout=None):
    """Re-run one applied migration (replaces deleting its history row by hand)."""
    from deploy.runner import redo

    with database(c, settings_for(c)) as settings:
        redo(settings, filename, yes=yes,
             lock_timeout=seconds("--lock-timeout", lock_timeout, 60.0))


@task(name="lint-migrations", help={"json": "machine-readable findings (for CI annotations)"})
@_exits
def lint_migrations(c, json_=False):
    """Check every migration statically: syntax, idempotency, no-transaction, rollback notes."""
    from deploy.lint import format_findings, lint_directory

    settings = settings_for(c)
    findings = lint_directory(settings.migrations_dir)
    lines, failure = format_findings(findings, as_json=json_)
    _print_lines(lines)
    if failure:
        raise failure




# --- The Compose lifecycle ------------------------------------------------------------


def _stack(c):
    """The stack where `c` points: the local one, or the host's live release under fab."""
    from deploy.lifecycle import Stack
    from deploy.remote import PrefixStream, is_remote, printer, release_paths

    settings = settings_for(c)
    if is_remote(c):
        prefix = f"[{c.host}] "
        return Stack(c, release_paths(settings, "current"), printer(prefix),
                     PrefixStream(prefix))
    return Stack(c, settings)


def _services(value) -> list[str]:
    # Invoke has no variadic positionals: several services are given comma-separated.
    return [s for s in (value or "").split(",") if s]


def _count(flag: str, value, default: int | None) -> int | None:
    if value is None:
        return default
    text = str(value)
    if not text.isdigit():
        raise ConfigError(f"{flag}: expected a whole number of lines, got {text!r}")
    return int(text)


@task(help={"services": "comma-separated services to build (default: all)",
            "no_cache": "build without the layer cache"})
@_exits
def build(c, services=None, no_cache=False):
    """Build the stack's images (docker compose build)."""
    from deploy import compose

    stack = _stack(c)
    stack.check_docker()
    stack.run(compose.build(stack.compose, _services(services), no_cache=no_cache), hide=False,
              what="build")


@task
@_exits
def up(c):
    """Start the stack in the background (docker compose up -d, no build)."""
    stack = _stack(c)
    stack.check_docker()
    stack.up()


@task(help={"volumes": "also remove the volumes (prefer `reset`, which backs up first)"})
@_exits
def down(c, volumes=False):
    """Stop and remove the stack's containers; volumes are kept."""
    if volumes:
        raise ConfigError("--volumes: use `invoke reset --yes-destroy=<project>`, which takes "
                          "a backup before destroying data")
    stack = _stack(c)
    stack.check_docker()
    stack.down()


@task(name="wait-healthy", help={"timeout": "seconds to wait (default HEALTH_TIMEOUT, 120)"})
@_exits
def wait_healthy(c, timeout=None):
    """Wait until every service with a healthcheck is healthy and the rest are running."""
    from deploy.lifecycle import format_states

    stack = _stack(c)
    stack.check_docker()
    states = stack.wait_healthy(seconds("--timeout", timeout, stack.settings.health_timeout))
    _print_lines(format_states(states))


@task(help={"json": "machine-readable output"})
@_exits
def ps(c, json_=False):
    """Each service: state, health, exit code, ports."""
    from deploy.lifecycle import format_states, state_dict

    stack = _stack(c)
    stack.check_docker()
    states = stack.states()
    if json_:
        print(json.dumps([state_dict(s) for s in states], indent=2))
    else:
        _print_lines(format_states(states))


@task(positional=["services"], help={
    "services": "service name, several comma-separated, or 'all'",
    "grep": "Python regular expression; only matching lines are printed (exit 3 if none)",
    "case_sensitive": "match case (default: case-insensitive)",
    "context": "lines of context before and after each match",
    "since": "only logs newer than this, e.g. 10m or an RFC 3339 time (Compose v2)",
    "tail": "only the last N lines of each container",
    "timestamps": "prefix each line with its timestamp",
})
@_exits
def logs(c, services, grep=None, case_sensitive=False, context=None, since=None,
         tail=None, timestamps=False):
    """Print or search the logs of SERVICES (a name, a,b or 'all'), filtered in Python."""
    from deploy import logs as logfilter
    from deploy.lifecycle import no_match

    pattern = (logfilter.compile_pattern(grep, case_sensitive=case_sensitive)
               if grep is not None else None)
    n_context = _count("--context", context, 0)
    stack = _stack(c)
    stack.check_docker()
    names = [] if services == "all" else _services(services)
    lines = stack.log_lines(names, tail=tail, since=since, timestamps=timestamps)
    if pattern is None:
        _print_lines(lines)
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
@_exits
def reset(c, yes_destroy=None, production=False, no_backup=False):
    """Back up (pg_dump), destroy volumes, start fresh, migrate: guarded by the project name."""
    import sys

    from deploy.lifecycle import confirm_reset
    from deploy.lifecycle import reset as run_reset

    stack = _stack(c)
    confirm_reset(stack.settings, yes_destroy, production, interactive=sys.stdin.isatty())
    run_reset(stack, backup=not no_backup, database=lambda: database(c, stack.settings))


@task
@_exits
def psql(c):
    """Open psql inside the postgres service (interactive)."""
    from deploy import compose

    stack = _stack(c)
    stack.check_docker()
    script = ('exec psql -U "${POSTGRES_USER:-postgres}" '
              '-d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"')
    stack.run(compose.exec_(stack.compose, "postgres", ["sh", "-c", script], tty=True),
              hide=False, pty=True, what="psql")


@task(auto_shortflags=False, help={
    "no_build": "skip the build step (images already built)",
    "lock_wait": "seconds to wait for another deploy of this project/host (default 300)",
    "hosts": "deploy to these hosts over SSH instead of locally: web1,deploy@web2:2222",
    "parallel": "with --hosts: at most N hosts at once (default 1: rolling)",
})
@_exits
def deploy(c, no_build=False, lock_wait=None, hosts=None, parallel=None):
    """Build, start, wait until healthy, migrate, verify tables: here, or on hosts."""
    from deploy import remote

    wait = seconds("--lock-wait", lock_wait, 300.0)
    n_parallel = _count("--parallel", parallel, 1)
    if remote.is_remote(c):  # fab -H …: Fabric calls us once per host
        from deploy.releases import deploy_host

        settings = settings_for(c)
        prefix = f"[{c.host}] "
        deploy_host(c, settings, build=not no_build, lock_wait=wait,
                    out=remote.printer(prefix), stream=remote.PrefixStream(prefix))
        return
    if hosts:
        _on_hosts(hosts, "deploy", n_parallel, build=not no_build, lock_wait=wait)
        return
    from deploy.lifecycle import LocalLock, local_lock_path
    from deploy.lifecycle import deploy as run_deploy

    settings = settings_for(c)
    with LocalLock(local_lock_path(settings), wait):
        run_deploy(c, settings, build=not no_build)


def _on_hosts(hosts: str, action: str, parallel: int, **kwargs) -> None:
    from deploy import remote
    from deploy.releases import deploy_host, rollback_host

    shared = load_settings()
    targets = remote.parse_hosts(hosts)
    # Every host's settings are checked before any host is touched.
    per_host = {h.name: remote.host_settings(shared, h.name) for h in targets}
    fn = {"deploy": deploy_host, "rollback": rollback_host}[action]

    def job(host):
        settings = per_host[host.name]
        prefix = f"[{host.name}] "
        c = remote.connection(host, settings)
        try:
            fn(c, settings, out=remote.printer(prefix), stream=remote.PrefixStream(prefix),
               **kwargs)
        finally:
            c.close()

    mode = "rolling, one host at a time" if parallel == 1 else f"at most {parallel} at once"
    remote.emit(f"{action}: {', '.join(h.name for h in targets)} ({mode})")
    report = remote.on_hosts(targets, job, parallel=parallel)
    remote.emit(report.summary())
    if report.failed:
        host, first = report.failed[0]
        error = DeployError(f"{action} failed on {host}: {first}\n{report.summary()}")
        error.exit_code = first.exit_code  # the first failure's meaning, e.g. 4 for a lock
        raise error


@task(auto_shortflags=False, help={
            "hosts": "the hosts to roll back, e.g. web1 (or use fab -H web1 rollback)",
            "lock_wait": "seconds to wait for a deploy in progress (default 300)",
            "parallel": "at most N hosts at once (default 1)"})
@_exits
def rollback(c, hosts=None, lock_wait=None, parallel=None):
    """Switch `current` back to the previous release and bring it up (schema unchanged)."""
    from deploy import remote

    wait = seconds("--lock-wait", lock_wait, 300.0)
    if remote.is_remote(c):
        from deploy.releases import rollback_host

        settings = settings_for(c)
        prefix = f"[{c.host}] "
        rollback_host(c, settings, lock_wait=wait, out=remote.printer(prefix),
                      stream=remote.PrefixStream(prefix))
        return
    if not hosts:
        raise ConfigError("--hosts: rollback works on hosts (e.g. --hosts web1, or "
                          "fab -H web1 rollback)")
    _on_hosts(hosts, "rollback", _count("--parallel", parallel, 1), lock_wait=wait)


@task(auto_shortflags=False,
      help={"hosts": "the hosts to list, e.g. web1,web2 (or use fab -H web1 releases)"})
@_exits
def releases(c, hosts=None):
    """The releases kept on each host, the live one marked with *."""
    from deploy import remote
    from deploy.releases import list_releases

    def show(conn, settings, name):
        state = list_releases(conn, settings)
        for release in state.names:
            mark = "*" if release == state.current else " "
            remote.emit(f"[{name}] {mark} {release}")
        if not state.names:
            remote.emit(f"[{name}]   (no releases in {settings.deploy_path}/releases)")

    if remote.is_remote(c):
        show(c, settings_for(c), c.host)
        return
    if not hosts:
        raise ConfigError("--hosts: releases are kept on hosts (e.g. --hosts web1)")
    shared = load_settings()
    for host in remote.parse_hosts(hosts):
        settings = remote.host_settings(shared, host.name)
        conn = remote.connection(host, settings)
        try:
            remote.open_connection(conn, settings)
            show(conn, settings, host.name)
        finally:
            conn.close()


ns = Collection(migrate, migrate_status, check_tables, new_migration, redo_migration,
                lint_migrations, deploy, build, up, down, wait_healthy, ps, logs, reset, psql,
                rollback, releases)
