"""Migration tasks: migrate, migrate-status, check-tables, new/redo/lint migrations.

Each task imports the runner (psycopg) or the SQL analysis (pglast) when it runs: every
`invoke` command loads this module, and most never need either.
"""

from __future__ import annotations

import json

from invoke import task

from deploy.cli import lock_wait_flag
from deploy.defaults import (
    RUNNER_LOCK_WAIT,
    STATEMENT_LOCK_BUDGET,
    STATEMENT_LOCK_RETRIES,
    STATEMENT_LOCK_TIMEOUT,
    TABLES_SCHEMA,
)
from deploy.tasks.common import (
    TARGET_HELP,
    count,
    database,
    exits,
    on_swarm,
    print_lines,
    seconds,
    settings_for,
)

LOCK_WAIT_HELP = f"seconds to wait for another runner's lock before exit 4 (default " \
                 f"{RUNNER_LOCK_WAIT:g})"
OLD_LOCK_WAIT_HELP = "the old name of --lock-wait; it will go"


def _lock_wait(lock_wait, lock_timeout) -> float:
    return seconds("--lock-wait", lock_wait_flag(lock_wait, lock_timeout), RUNNER_LOCK_WAIT)


def _one_file_help(filename: str, yes: str) -> dict[str, str]:
    """Help of the tasks that change one file's history under the runner's lock."""
    return {"filename": filename, "yes": yes, "lock_wait": LOCK_WAIT_HELP,
            "lock_timeout": OLD_LOCK_WAIT_HELP}


@task(auto_shortflags=False, help={
    "wait": "retry the database connection for up to N seconds (default 0)",
    "lock_wait": LOCK_WAIT_HELP,
    "lock_timeout": OLD_LOCK_WAIT_HELP,
    "dry_run": "print the plan; apply nothing",
    "accept_drift": "record changed checksums, keep rows of deleted files (marked removed), "
                    "apply out-of-order files",
    "migration_lock_timeout": "PostgreSQL's per-statement lock_timeout: seconds each statement "
                              "may wait for a table lock (MIGRATION_LOCK_TIMEOUT, default "
                              f"{STATEMENT_LOCK_TIMEOUT:g})",
    "lock_retries": "retries of a file that timed out on a lock (MIGRATION_LOCK_RETRIES, "
                    f"default {STATEMENT_LOCK_RETRIES})",
    "lock_budget": "seconds for all attempts of one file (MIGRATION_LOCK_BUDGET, default "
                   f"{STATEMENT_LOCK_BUDGET:g})",
    "statement_timeout": "end any statement running longer than N seconds "
                         "(MIGRATION_STATEMENT_TIMEOUT, default none)",
    "target": TARGET_HELP + " (on a Swarm: the runner as a one-off task from the app's image)",
})
@exits
def migrate(c, wait=None, lock_wait=None, lock_timeout=None, dry_run=False, accept_drift=False,
            migration_lock_timeout=None, lock_retries=None, lock_budget=None,
            statement_timeout=None, target=None):
    """Apply pending SQL migrations, each exactly once, under an advisory lock."""
    from deploy.migrate.runner import migrate as run_migrate
    from deploy.migrate.runner import with_flags

    flags = {
        "migration_lock_timeout": seconds("--migration-lock-timeout", migration_lock_timeout,
                                          None),
        "lock_retries": count("--lock-retries", lock_retries, None),
        "lock_budget": seconds("--lock-budget", lock_budget, None),
        "statement_timeout": seconds("--statement-timeout", statement_timeout, None),
    }
    swarm_settings = on_swarm(c, target)
    if swarm_settings is not None:
        from deploy.swarm import views

        views.runner(swarm_settings, runner_migrate_args(
            wait, _lock_wait(lock_wait, lock_timeout), dry_run, accept_drift, flags),
            "migrate")
        return
    with database(c, settings_for(c)) as settings:
        run_migrate(with_flags(settings, **flags), wait=seconds("--wait", wait, 0.0),
                    lock_wait=_lock_wait(lock_wait, lock_timeout),
                    dry_run=dry_run, accept_drift=accept_drift)


@task(name="migrate-status", auto_shortflags=False, help={
    "json": "machine-readable output",
    "wait": "retry the connection for up to N seconds (default 0)",
    "target": TARGET_HELP,
})
@exits
def migrate_status(c, json_=False, wait=None, target=None):
    """Show every migration: applied (when, ms), pending, changed or missing; exit 3 on drift."""
    from deploy.migrate.runner import drift_error, format_status, status

    swarm_settings = on_swarm(c, target)
    if swarm_settings is not None:
        from deploy.swarm import views

        views.runner(swarm_settings, ["migrate-status", *(["--json"] if json_ else []),
                                      "--wait", f"{seconds('--wait', wait, 0.0):g}"],
                     "migrate-status")
        return

    with database(c, settings_for(c)) as settings:
        rows, plan = status(settings, wait=seconds("--wait", wait, 0.0))
    if json_:
        print(json.dumps({"migrations": rows, "drift": plan.drift}, indent=2))
    else:
        print_lines(format_status(rows))
    if plan.drift:
        raise drift_error(plan)


@task(name="check-tables", auto_shortflags=False, help={
    "prefix": "literal table-name prefix, e.g. ai_ (the _ is not a wildcard)",
    "schema": f"schema to inspect (default {TABLES_SCHEMA})",
    "expected": "compare the tables the migrations create with the database; exit 3 if any "
                "is missing",
    "json": "machine-readable output",
    "wait": "retry the connection for up to N seconds (default 0)",
    "target": TARGET_HELP,
})
@exits
def check_tables(c, prefix=None, schema=TABLES_SCHEMA, expected=False, json_=False, wait=None,
                 target=None):
    """List tables by literal prefix, or verify the tables the migrations create."""
    from deploy.migrate.tables import check_tables as run_check
    from deploy.migrate.tables import format_report

    swarm_settings = on_swarm(c, target)
    if swarm_settings is not None:
        from deploy.swarm import views

        views.runner(swarm_settings, check_tables_args(prefix, schema, expected, json_,
                                                       seconds("--wait", wait, 0.0)),
                     "check-tables")
        return

    with database(c, settings_for(c)) as settings:
        report = run_check(settings.database_url, settings.migrations_dir, prefix=prefix,
                           schema=schema, expected=expected, wait=seconds("--wait", wait, 0.0))
    lines, failure = format_report(report)
    if json_:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_lines(lines)
    if failure:
        raise failure


@task(name="new-migration", auto_shortflags=False,
      help={"name": "lower_snake name, e.g. user_roles_system"})
@exits
def new_migration(c, name):
    """Write the next numbered migration file from the idempotent template."""
    from deploy.migrate.runner import new_migration as run_new

    run_new(settings_for(c), name)


REDO_HELP = _one_file_help("the migration file, e.g. 020_ai_cost_management_system.sql",
                           "confirm: delete its history row and re-run it")
FORGET_HELP = _one_file_help(
    "the history row's file name, e.g. 005_gone.sql (its file may be deleted)",
    "confirm: delete that history row")


@task(name="redo-migration", auto_shortflags=False, help=REDO_HELP)
@exits
def redo_migration(c, filename, yes=False, lock_wait=None, lock_timeout=None):
    """Re-run one applied migration (replaces deleting its history row by hand)."""
    _change_history(c, "redo", filename, yes, _lock_wait(lock_wait, lock_timeout))


@task(name="forget-migration", auto_shortflags=False, help=FORGET_HELP)
@exits
def forget_migration(c, filename, yes=False, lock_wait=None, lock_timeout=None):
    """Delete one history row on purpose; the schema it changed is left as it is."""
    _change_history(c, "forget", filename, yes, _lock_wait(lock_wait, lock_timeout))


def _change_history(c, change: str, filename: str, yes: bool, lock_wait: float) -> None:
    """runner.redo or runner.forget (``change``) of one file, where `c` points."""
    from deploy.migrate import runner

    run = {"redo": runner.redo, "forget": runner.forget}[change]
    with database(c, settings_for(c)) as settings:
        run(settings, filename, yes=yes, lock_wait=lock_wait)


@task(name="lint-migrations", auto_shortflags=False,
      help={"json": "machine-readable findings (for CI annotations)"})
@exits
def lint_migrations(c, json_=False):
    """Check every migration statically: syntax, idempotency, rollback notes, deploy safety."""
    from deploy.sqllint.lint import format_findings, lint_directory

    settings = settings_for(c)
    findings = lint_directory(settings.migrations_dir)
    lines, failure = format_findings(findings, as_json=json_)
    print_lines(lines)
    if failure:
        raise failure


def runner_migrate_args(wait, lock_wait: float, dry_run: bool, accept_drift: bool,
                        flags: dict) -> list[str]:
    """`python -m deploy migrate` arguments for the same flags (a one-off task on a Swarm)."""
    args = ["migrate", "--wait", f"{seconds('--wait', wait, 0.0):g}",
            "--lock-wait", f"{lock_wait:g}"]
    if dry_run:
        args.append("--dry-run")
    if accept_drift:
        args.append("--accept-drift")
    names = {"migration_lock_timeout": "--migration-lock-timeout",
             "lock_retries": "--lock-retries", "lock_budget": "--lock-budget",
             "statement_timeout": "--statement-timeout"}
    for key, flag in names.items():
        if flags.get(key) is not None:
            args += [flag, f"{flags[key]:g}"]
    return args


def check_tables_args(prefix, schema: str, expected: bool, json_: bool, wait: float
                      ) -> list[str]:
    """`python -m deploy check-tables` arguments for the same flags."""
    args = ["check-tables", "--schema", schema, "--wait", f"{wait:g}"]
    if prefix is not None:
        args += ["--prefix", prefix]
    if expected:
        args.append("--expected")
    if json_:
        args.append("--json")
    return args
