"""The Invoke tasks: read settings, call the modules, turn DeployError into Exit once."""

from __future__ import annotations

import functools
import json

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
    return load_settings()


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

    run_migrate(settings_for(c), wait=seconds("--wait", wait, 0.0),
                lock_timeout=seconds("--lock-timeout", lock_timeout, 60.0),
                dry_run=dry_run, accept_drift=accept_drift, out=print)


@task(name="migrate-status", help={"json": "machine-readable output",
                                   "wait": "retry the connection for up to N seconds (default 0)"})
@_exits
def migrate_status(c, json_=False, wait=None):
    """Show every migration: applied (when, ms), pending, changed or missing; exit 3 on drift."""
    from deploy.runner import drift_error, format_status, status

    rows, plan = status(settings_for(c), wait=seconds("--wait", wait, 0.0))
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

    settings = settings_for(c)
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

    redo(settings_for(c), filename, yes=yes,
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


ns = Collection(migrate, migrate_status, check_tables, new_migration, redo_migration,
                lint_migrations)
