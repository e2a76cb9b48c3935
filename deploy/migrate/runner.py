"""The migration runner's commands: plan without the lock, apply under it.

Shared by the Invoke tasks and `python -m deploy`; output goes through `out` so each
front end decides where lines go. Invoke and Fabric are never imported here. How a file
is applied (lock-timeout retries, signals, invalid indexes) is in deploy/migrate/applying.py.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from deploy.defaults import RUNNER_LOCK_WAIT
from deploy.errors import CheckFailed, ConfigError, DriftError, Refused
from deploy.migrate import db
from deploy.migrate.dberrors import missing_schema, translates
from deploy.migrate.files import (
    FILENAME_RE,
    Migration,
    Plan,
    discover,
    display_path,
    new_migration_filename,
    plan_migrations,
    render_template,
    status_rows,
)
from deploy.migrate.policy import DEFAULT_PROGRESS, LockRetry, Progress, session_settings
from deploy.output import Lines
from deploy.settings import Settings

# The lock, the signal guard, the watcher and the applier are imported where they are used:
# the no-op path (a container's start-up when nothing is pending) never needs them, and it
# should cost little more than one connection.
if TYPE_CHECKING:
    from deploy.migrate.interrupt import SignalGuard



def _print(line: str) -> None:
    print(line, flush=True)  # progress must reach a pipe (CI, docker logs) as it happens


def _serialized(out: Lines | None) -> Lines:
    """The watcher thread prints too: one line at a time."""
    out = out or _print
    lock = threading.Lock()

    def locked(line: str) -> None:
        with lock:
            out(line)

    return locked


def lock_retry(settings: Settings) -> LockRetry:
    return LockRetry(lock_timeout=settings.migration_lock_timeout,
                     retries=settings.migration_lock_retries,
                     budget=settings.migration_lock_budget,
                     statement_timeout=settings.migration_statement_timeout)


def with_flags(settings: Settings, *, migration_lock_timeout: float | None = None,
               lock_retries: int | None = None, lock_budget: float | None = None,
               statement_timeout: float | None = None) -> Settings:
    """Command-line flags over the MIGRATION_* settings; errors name the flag."""
    changes: dict = {}
    if migration_lock_timeout is not None:
        if not migration_lock_timeout > 0:
            raise ConfigError(f"--migration-lock-timeout: must be greater than 0 "
                              f"(got {migration_lock_timeout:g})")
        changes["migration_lock_timeout"] = migration_lock_timeout
    if lock_retries is not None:
        if lock_retries < 0:
            raise ConfigError(f"--lock-retries: must be 0 or more (got {lock_retries})")
        changes["migration_lock_retries"] = lock_retries
    if lock_budget is not None:
        if not lock_budget > 0:
            raise ConfigError(f"--lock-budget: must be greater than 0 (got {lock_budget:g})")
        changes["migration_lock_budget"] = lock_budget
    if statement_timeout is not None:
        if statement_timeout < 0:
            raise ConfigError(f"--statement-timeout: must be 0 (none) or more seconds "
                              f"(got {statement_timeout:g})")
        changes["migration_statement_timeout"] = statement_timeout or None
    return replace(settings, **changes) if changes else settings


def _application_name(command: str) -> str:
    return f"deploy {command} {db.applied_by()} pid {os.getpid()}"[:63]


class _Background:
    """Run one call in a thread; result() re-raises its exception in the caller."""

    def __init__(self, fn):
        self._value = self._error = None
        self._discarded = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn) -> None:
        try:
            value = fn()
        except BaseException as exc:  # handed to the caller
            self._error = exc
            return
        with self._lock:
            if self._discarded:
                value.close()
            else:
                self._value = value

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value

    def discard(self) -> None:
        """Not needed after all: close it, without waiting for a connect still retrying."""
        with self._lock:
            self._discarded = True
            if self._value is not None:
                self._value.close()


@dataclass
class MigrateResult:
    applied: list[str] = field(default_factory=list)
    total_applied: int = 0
    planned: list[str] = field(default_factory=list)


def drift_error(plan: Plan) -> DriftError:
    body = "\n".join(f"  {line}" for line in plan.drift_lines())
    return DriftError(
        "drift: the migration history and the files disagree; nothing was applied:\n"
        f"{body}\n"
        "See `invoke migrate-status`; `invoke migrate --accept-drift` records the current "
        "checksums, keeps the rows of deleted files (marked removed) and applies out-of-order "
        "files; `invoke forget-migration FILE --yes` deletes one history row."
    )


@contextmanager
def _locked(conn, settings: Settings, command: str, *, lock_wait: float, out: Lines,
            progress: Progress) -> Iterator[SignalGuard]:
    """Take the migration lock on conn, the connection that then runs the files, and SET
    the session's timeouts and dead-client detection with the first try (deploy/migrate/policy.py).

    SIGTERM/SIGINT: while waiting for the lock they stop the command at once; once it is
    held they are handled at the guard's checkpoints (deploy/migrate/interrupt.py). Before this,
    nothing has been changed, and the default handling (the process ends) is right."""
    from deploy.migrate import lock as locks  # not on the no-op path (see the top)
    from deploy.migrate.interrupt import SignalGuard

    with SignalGuard(command) as guard:
        guard.phase = "while waiting for the migration lock: nothing applied"
        session = db.session_sql(conn, session_settings(conn.info.server_version,
                                                        lock_retry(settings)))
        locks.acquire(conn, settings.migration_table, timeout=lock_wait, out=out,
                      session_sql=session, progress=progress)
        with guard.deferred():
            yield guard


@contextmanager
def _locked_session(settings: Settings, name: str, command: str, *, lock_wait: float, out: Lines,
                    progress: Progress) -> Iterator[tuple[object, SignalGuard]]:
    """A new connection (application_name "deploy NAME …") holding the migration lock."""
    with db.connect(settings.database_url, application_name=_application_name(name)) as conn, \
            _locked(conn, settings, command, lock_wait=lock_wait, out=out,
                    progress=progress) as guard:
        yield conn, guard


def _watcher(settings: Settings, conn, out: Lines, progress: Progress, guard: SignalGuard):
    from deploy.migrate.watcher import Watcher  # not on the no-op path (see the top)

    url = settings.database_url
    return Watcher(lambda: db.connect(url, application_name=_application_name("watcher")),
                   conn.info.backend_pid, out, lock_timeout=settings.migration_lock_timeout,
                   progress=progress, on_tick=guard.poll)


@translates("migrate")
def migrate(settings: Settings, *, wait: float = 0.0, lock_wait: float = RUNNER_LOCK_WAIT,
            dry_run: bool = False, accept_drift: bool = False, allow_ahead: bool = False,
            out: Lines | None = None, progress: Progress = DEFAULT_PROGRESS) -> MigrateResult:
    """Apply every pending migration exactly once. ``allow_ahead``: history rows above
    every file here were applied by a newer release; say so, and do not call it drift (the
    backend's start-up, so that a rolled-back release starts on the newer schema)."""
    if lock_wait <= 0:
        raise ConfigError(f"--lock-wait: must be greater than 0 (got {lock_wait:g})")
    if wait < 0:
        raise ConfigError(f"--wait: must be 0 or more seconds (got {wait:g})")
    out = _serialized(out)
    url = settings.database_url
    # Connecting (a network round trip or several) overlaps reading and hashing the files.
    connecting = _Background(lambda: db.connect(
        url, application_name=_application_name("migrate"), wait=wait))
    try:
        migrations = discover(settings.migrations_dir)
        conn = connecting.result()
    except BaseException:
        connecting.discard()
        raise
    with conn:
        return _migrate(conn, settings, migrations, lock_wait=lock_wait,
                        dry_run=dry_run, accept_drift=accept_drift, out=out,
                        progress=progress, allow_ahead=allow_ahead)


def _migrate(conn, settings: Settings, migrations: list[Migration], *, lock_wait: float,
             dry_run: bool, accept_drift: bool, out: Lines, progress: Progress,
             allow_ahead: bool = False) -> MigrateResult:
    table = settings.migration_table
    result = MigrateResult()
    columns = db.history_columns(conn, table)
    plan = plan_migrations(migrations, db.read_history(conn, table, columns), allow_ahead)
    if plan.drift and not accept_drift:
        raise drift_error(plan)
    if plan.ahead:
        out(f"migrations: the database is ahead of these files: "
            f"{', '.join(r.filename for r in plan.ahead)} applied by a newer release "
            "(this release runs on its schema, as after a rollback)")
    if dry_run:
        result.planned = [m.filename for m in plan.pending]
        for m in plan.pending:
            mode = "" if m.transactional else " (no-transaction)"
            out(f"migration {m.filename} would be applied{mode}")
        out(f"migrations: dry run, {len(plan.pending)} pending, nothing applied")
        return result
    needs_lock = (columns is None or not set(db.HISTORY_COLUMNS) <= columns
                  or plan.pending or plan.unrecorded or (accept_drift and plan.drift))
    if not needs_lock:
        result.total_applied = len(plan.applied)
        out(f"migrations: up to date, nothing to apply ({result.total_applied} applied)")
        return result
    with _locked(conn, settings, "migrate", lock_wait=lock_wait, out=out,
                 progress=progress) as guard:
        guard.check(lambda: "before anything was applied")
        for line in db.ensure_history_table(conn, table):
            out(f"migration history: {line}")
        # Another runner may have applied files while we waited for the lock.
        plan = plan_migrations(migrations, db.read_history(conn, table, db.ALL_COLUMNS),
                               allow_ahead)
        if plan.drift and not accept_drift:
            raise drift_error(plan)
        if plan.unrecorded:
            db.record_checksums(conn, table, [m for m, _ in plan.unrecorded])
            out(f"migration history: recorded checksums of {len(plan.unrecorded)} "
                f"file(s) applied by the previous runner")
        if accept_drift:
            _accept_drift(conn, table, plan, out)
        started = time.perf_counter()
        if plan.pending:
            from deploy.migrate.applying import Applier  # not on the no-op path

            with _watcher(settings, conn, out, progress, guard) as watcher:
                applier = Applier(conn, table, lock_retry(settings), out, guard, watcher,
                                  db.applied_by())
                applier.run(plan.pending)
            result.applied = applier.applied
    done = (len(plan.applied) + len(plan.changed) + len(plan.unrecorded)
            + len(result.applied))
    result.total_applied = done
    if result.applied:
        out(f"migrations: applied {len(result.applied)} file(s) in "
            f"{time.perf_counter() - started:.2f} s ({done} applied in total)")
    else:
        out(f"migrations: up to date, nothing to apply ({done} applied)")
    return result


def _accept_drift(conn, table: str, plan: Plan, out: Lines) -> None:
    if plan.changed:
        db.record_checksums(conn, table, [m for m, _ in plan.changed])
        for m, row in plan.changed:
            out(f"migration {m.filename}: accepted drift, recorded checksum {m.checksum[:12]} "
                f"(was {row.checksum[:12]}); the file was NOT re-run")
    if plan.missing:
        db.accept_missing(conn, table, [row.filename for row in plan.missing])
        for row in plan.missing:
            out(f"migration {row.filename}: accepted drift, file is gone; history row kept and "
                f"marked removed (`invoke forget-migration {row.filename} --yes` deletes it)")
    for m in plan.out_of_order:
        out(f"migration {m.filename}: accepted drift, applying out of order")


@translates("migrate-status")
def status(settings: Settings, *, wait: float = 0.0) -> tuple[list[dict], Plan]:
    migrations = discover(settings.migrations_dir)
    table = settings.migration_table
    with db.connect(settings.database_url, application_name="deploy status", wait=wait) as conn:
        if "." in table and not db.schema_exists(conn, table.split(".", 1)[0]):
            # Not "every file pending": the setting names a place that does not exist.
            raise missing_schema(table)
        history = db.read_history(conn, table)
    plan = plan_migrations(migrations, history)
    return status_rows(migrations, plan), plan


def format_status(rows: list[dict]) -> list[str]:
    width = max([len(r["filename"]) for r in rows] + [8])
    lines = [f"{'FILE':<{width}}  {'STATE':<12}  {'EXECUTED AT':<25}  {'MS':>6}"]
    for r in rows:
        ms = "" if r["execution_ms"] is None else str(r["execution_ms"])
        lines.append(f"{r['filename']:<{width}}  {r['state']:<12}  "
                     f"{(r['executed_at'] or ''):<25}  {ms:>6}")
    return lines


def new_migration(settings: Settings, name: str, out: Lines = print) -> Path:
    migrations = discover(settings.migrations_dir)
    filename = new_migration_filename(migrations, name)
    path = settings.migrations_dir / filename
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(render_template(filename, name))
    out(f"created {display_path(path)}")
    return path


@translates("redo-migration")
def redo(settings: Settings, filename: str, *, yes: bool,
         lock_wait: float = RUNNER_LOCK_WAIT, out: Lines | None = None,
         progress: Progress = DEFAULT_PROGRESS) -> int:
    """Re-run one applied file: its history row replaced in the file's own transaction."""
    from deploy.migrate.applying import Applier  # as in _migrate

    migrations = discover(settings.migrations_dir)
    by_name = {m.filename: m for m in migrations}
    m = by_name.get(Path(filename).name)
    if m is None:
        raise ConfigError(f"FILE: {filename!r} is not a migration in "
                          f"{display_path(settings.migrations_dir)}")
    if not yes:
        raise Refused(f"redo-migration: re-running {m.filename} changes the database; "
                      "add --yes to confirm")
    out = _serialized(out)
    table = settings.migration_table
    with _locked_session(settings, "redo", "redo-migration", lock_wait=lock_wait, out=out,
                         progress=progress) as (conn, guard):
        guard.check(lambda: "before anything was applied")
        db.ensure_history_table(conn, table)
        if not any(row.filename == m.filename for row in db.read_history(conn, table)):
            raise CheckFailed(
                f"redo-migration: {m.filename} has never been applied (no row in {table}); "
                "nothing to redo: run `invoke migrate` to apply it in order")
        mode = "" if m.transactional else " (no-transaction)"
        out(f"migration {m.filename} re-running{mode}")
        with _watcher(settings, conn, out, progress, guard) as watcher:
            applier = Applier(conn, table, lock_retry(settings), out, guard, watcher,
                              db.applied_by(), command="redo-migration")
            ms = applier.apply(m, replace_row=True)
        out(f"migration {m.filename} re-applied in {ms} ms (its history row was replaced)")
        guard.check(lambda: f": {m.filename} WAS re-applied (it committed before the cancel "
                            "took effect)")
    return ms


@translates("forget-migration")
def forget(settings: Settings, filename: str, *, yes: bool,
           lock_wait: float = RUNNER_LOCK_WAIT, out: Lines | None = None,
           progress: Progress = DEFAULT_PROGRESS) -> None:
    """Delete one history row on purpose (e.g. of a file deleted from the repository)."""
    name = Path(filename).name
    if not FILENAME_RE.match(name):
        raise ConfigError(f"FILE: {filename!r} is not a migration file name (NNN_name.sql)")
    if not yes:
        raise Refused(f"forget-migration: deleting the history row of {name} makes the runner "
                      "forget that it was applied (the schema it changed stays as it is); add "
                      "--yes to confirm")
    out = _serialized(out)
    table = settings.migration_table
    with _locked_session(settings, "forget", "forget-migration", lock_wait=lock_wait, out=out,
                         progress=progress) as (conn, guard):
        row = next((r for r in db.read_history(conn, table) if r.filename == name), None)
        if row is None:
            raise CheckFailed(f"forget-migration: {name} has no row in the history table "
                              f"{table}; nothing to forget (see `invoke migrate-status`)")
        guard.check(lambda: "before anything was changed")
        db.delete_history_row(conn, table, name)
    when = row.executed_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if row.executed_at else "?"
    out(f"migration history: forgot {name} (applied {when} by {row.applied_by or 'unknown'}); "
        "the schema it changed is left as it is")
    path = settings.migrations_dir / name
    if path.is_file():
        out(f"migration {name}: its file {display_path(path)} is still there, so the next "
            "migrate applies it again")


