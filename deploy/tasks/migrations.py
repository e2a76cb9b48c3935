"""Migration tasks: migrate, migrate-status, check-tables, new/redo/lint migrations."""

from __future__ import annotations

import json

from invoke import task

from deploy.tasks.common import count, database, exits, print_lines, seconds, settings_for


@task(help={
    "wait": "retry the database connection for up to N seconds (default 0)",
    "lock_timeout": "seconds to wait for another runner's lock before exit 4 (default 60)",
    "dry_run": "print the plan; apply nothing",
    "accept_drift": "record changed checksums, keep rows of deleted files (marked removed), "
                    "apply out-of-order files",
    "migration_lock_timeout": "seconds each statement may wait for a table lock "
                              "(MIGRATION_LOCK_TIMEOUT, default 0.5)",
    "lock_retries": "retries of a file that timed out on a lock (MIGRATION_LOCK_RETRIES, "
                    "default 10)",
    "lock_budget": "seconds for all attempts of one file (MIGRATION_LOCK_BUDGET, default 60)",
    "statement_timeout": "end any statement running longer than N seconds "
                         "(MIGRATION_STATEMENT_TIMEOUT, default none)",
})
@exits
def migrate(c, wait=None, lock_timeout=None, dry_run=False, accept_drift=False,
            migration_lock_timeout=None, lock_retries=None, lock_budget=None,
            statement_timeout=None):
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
    with database(c, settings_for(c)) as settings:
        run_migrate(with_flags(settings, **flags), wait=seconds("--wait", wait, 0.0),
                    lock_timeout=seconds("--lock-timeout", lock_timeout, 60.0),
                    dry_run=dry_run, accept_drift=accept_drift)


@task(name="migrate-status", help={"json": "machine-readable output",
                                   "wait": "retry the connection for up to N seconds (default 0)"})
@exits
def migrate_status(c, json_=False, wait=None):
    """Show every migration: applied (when, ms), pending, changed or missing; exit 3 on drift."""
    from deploy.migrate.runner import drift_error, format_status, status

    with database(c, settings_for(c)) as settings:
        rows, plan = status(settings, wait=seconds("--wait", wait, 0.0))
    if json_:
        print(json.dumps({"migrations": rows, "drift": plan.drift}, indent=2))
    else:
        print_lines(format_status(rows))
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
@exits
def check_tables(c, prefix=None, schema="public", expected=False, json_=False, wait=None):
    """List tables by literal prefix, or verify the tables the migrations create."""
    from deploy.migrate.tables import check_tables as run_check
    from deploy.migrate.tables import format_report

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


@task(name="new-migration", help={"name": "lower_snake name, e.g. user_roles_system"})
@exits
def new_migration(c, name):
    """Write the next numbered migration file from the idempotent template."""
    from deploy.migrate.runner import new_migration as run_new

    run_new(settings_for(c), name)


@task(name="redo-migration", help={
    "filename": "the migration file, e.g. 020_ai_cost_management_system.sql",
    "yes": "confirm: delete its history row and re-run it",
    "lock_timeout": "seconds to wait for the migration lock (default 60)",
})
@exits
def redo_migration(c, filename, yes=False, lock_timeout=None):
    """Re-run one applied migration (replaces deleting its history row by hand)."""
    from deploy.migrate.runner import redo

    with database(c, settings_for(c)) as settings:
        redo(settings, filename, yes=yes,
             lock_timeout=seconds("--lock-timeout", lock_timeout, 60.0))


@task(name="forget-migration", help={
    "filename": "the history row's file name, e.g. 005_gone.sql (its file may be deleted)",
    "yes": "confirm: delete that history row",
    "lock_timeout": "seconds to wait for the migration lock (default 60)",
})
@exits
def forget_migration(c, filename, yes=False, lock_timeout=None):
    """Delete one history row on purpose; the schema it changed is left as it is."""
    from deploy.migrate.runner import forget

    with database(c, settings_for(c)) as settings:
        forget(settings, filename, yes=yes,
               lock_timeout=seconds("--lock-timeout", lock_timeout, 60.0))


@task(name="lint-migrations", help={"json": "machine-readable findings (for CI annotations)"})
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
