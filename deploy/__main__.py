"""`python -m deploy migrate|migrate-status|check-tables` — the runner without Invoke.

For container entrypoints: imports only what the command needs (no Invoke, no Fabric),
so a no-op `migrate` at start-up costs little more than one connection.
"""

from __future__ import annotations

import argparse
import json
import sys

from deploy import cli
from deploy.defaults import (
    RUNNER_LOCK_WAIT,
    STATEMENT_LOCK_BUDGET,
    STATEMENT_LOCK_RETRIES,
    STATEMENT_LOCK_TIMEOUT,
    TABLES_SCHEMA,
)
from deploy.errors import DeployError
from deploy.settings import Settings, load_settings


def _migrate_parser(sub) -> None:
    migrate = sub.add_parser("migrate", help="apply pending SQL migrations, exactly once each")
    migrate.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                         help="retry the connection for up to SECONDS (default 0)")
    migrate.add_argument("--lock-wait", type=float, default=None, metavar="SECONDS",
                         help="give up waiting for another runner's lock after SECONDS "
                              f"(default {RUNNER_LOCK_WAIT:g})")
    migrate.add_argument("--lock-timeout", type=float, default=None, metavar="SECONDS",
                         help="the old name of --lock-wait; it will go")
    migrate.add_argument("--dry-run", action="store_true", help="print the plan, apply nothing")
    migrate.add_argument("--accept-drift", action="store_true",
                         help="record changed checksums, keep rows of deleted files (marked "
                              "removed), apply out-of-order files")
    migrate.add_argument("--migration-lock-timeout", type=float, default=None, metavar="SECONDS",
                         help="PostgreSQL's per-statement lock_timeout: how long each statement "
                              "may wait for a table lock (MIGRATION_LOCK_TIMEOUT, default "
                              f"{STATEMENT_LOCK_TIMEOUT:g})")
    migrate.add_argument("--lock-retries", type=int, default=None, metavar="N",
                         help="retries of a file that timed out on a lock (MIGRATION_LOCK_RETRIES, "
                              f"default {STATEMENT_LOCK_RETRIES})")
    migrate.add_argument("--lock-budget", type=float, default=None, metavar="SECONDS",
                         help="all attempts of one file together (MIGRATION_LOCK_BUDGET, "
                              f"default {STATEMENT_LOCK_BUDGET:g})")
    migrate.add_argument("--statement-timeout", type=float, default=None, metavar="SECONDS",
                         help="end any statement running longer (MIGRATION_STATEMENT_TIMEOUT; "
                              "default none)")
    migrate.add_argument("--allow-ahead", action="store_true",
                         help="history rows above every file here (applied by a newer "
                              "release, as after a rollback) are not drift")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _migrate_parser(sub)

    status = sub.add_parser("migrate-status", help="every file: applied/pending/changed/missing")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--wait", type=float, default=0.0, metavar="SECONDS")

    tables = sub.add_parser("check-tables", help="tables by literal prefix / expected tables")
    tables.add_argument("--prefix", default=None, help="literal name prefix, e.g. ai_")
    tables.add_argument("--schema", default=TABLES_SCHEMA,
                        help=f"schema to inspect ({TABLES_SCHEMA})")
    tables.add_argument("--expected", action="store_true",
                        help="compare the tables the migrations create with the database")
    tables.add_argument("--json", action="store_true", help="machine-readable output")
    tables.add_argument("--wait", type=float, default=0.0, metavar="SECONDS")
    return parser


# Each command imports the modules it uses when it runs: the container's no-op `migrate`
# should load neither pglast (check-tables) nor psycopg for `--help`.

def _migrate(args: argparse.Namespace, settings: Settings) -> None:
    from deploy.migrate.runner import migrate, with_flags

    lock_wait = cli.lock_wait_flag(args.lock_wait, args.lock_timeout)
    settings = with_flags(settings, migration_lock_timeout=args.migration_lock_timeout,
                          lock_retries=args.lock_retries, lock_budget=args.lock_budget,
                          statement_timeout=args.statement_timeout)
    migrate(settings, wait=args.wait,
            lock_wait=RUNNER_LOCK_WAIT if lock_wait is None else lock_wait,
            dry_run=args.dry_run, accept_drift=args.accept_drift, allow_ahead=args.allow_ahead)


def _migrate_status(args: argparse.Namespace, settings: Settings) -> None:
    from deploy.migrate.runner import drift_error, format_status, status

    rows, plan = status(settings, wait=args.wait)
    if args.json:
        print(json.dumps({"migrations": rows, "drift": plan.drift}, indent=2))
    else:
        print("\n".join(format_status(rows)))
    if plan.drift:
        raise drift_error(plan)


def _check_tables(args: argparse.Namespace, settings: Settings) -> None:
    from deploy.migrate.tables import check_tables, format_report

    report = check_tables(settings.database_url, settings.migrations_dir, prefix=args.prefix,
                          schema=args.schema, expected=args.expected, wait=args.wait)
    lines, failure = format_report(report)
    print(json.dumps(report.as_dict(), indent=2) if args.json else "\n".join(lines))
    if failure:
        raise failure


COMMANDS = {"migrate": _migrate, "migrate-status": _migrate_status,
            "check-tables": _check_tables}


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    COMMANDS[args.command](args, load_settings())
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except DeployError as exc:
        sys.stdout.flush()
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `python -m deploy migrate-status | head`: end quietly
        cli.silence_stdout()
        return cli.CLOSED_PIPE_EXIT


if __name__ == "__main__":
    sys.exit(main())
