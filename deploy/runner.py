"""The migration runner: plan without the lock, apply under it.

Shared by the Invoke tasks and `python -m deploy`; output goes through `out` so each
front end decides where lines go. Invoke and Fabric are never imported here.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deploy import database as db
from deploy.errors import ConfigError, DriftError, MigrationError, Refused
from deploy.migrations import (
    Migration,
    Plan,
    discover,
    display_path,
    line_col,
    new_migration_filename,
    plan_migrations,
    render_template,
    status_rows,
)
from deploy.settings import Settings

Out = Callable[[str], None]
_DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


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


def _split(text: str):
    from deploy.sqltools import split_statements  # pglast only when a file needs it

    return split_statements(text)


def failure_position(m: Migration, failure: db.Failure,
                     statement_offset: int | None) -> tuple[int, int] | None:
    """Map the server's error position back to a line and column of the file."""
    text = m.text
    if failure.offset is not None:
        return line_col(text, failure.offset)
    if statement_offset is None:
        return None
    if failure.plpgsql_line is not None:
        # PL/pgSQL counts lines from the character after the opening dollar quote.
        quote = _DOLLAR_QUOTE.search(text, statement_offset)
        if quote:
            body_line, _ = line_col(text, quote.end())
            line = body_line + failure.plpgsql_line - 1
            lines = text.splitlines()
            source = lines[line - 1] if line - 1 < len(lines) else ""
            col = len(source) - len(source.lstrip()) + 1
            if failure.internal_query:
                found = source.find(failure.internal_query.split("\n", 1)[0])
                if found >= 0:
                    col = found + (failure.internal_position or 1)
            return line, col
    return line_col(text, statement_offset)


def _migration_error(m: Migration, exc: db.ApplyFailed, applied_now: list[str],
                     later: list[Migration], conn) -> MigrationError:
    failure = exc.failure
    statement_offset = exc.statement_offset
    if failure.offset is None and statement_offset is None and m.transactional:
        statement_offset = db.locate_failed_statement(conn, m, _split)
    position = failure_position(m, failure, statement_offset)
    where = display_path(m.path) + (f":{position[0]}:{position[1]}" if position else "")
    state = f" ({failure.sqlstate})" if failure.sqlstate else ""
    if m.transactional:
        undone = "rolled back: nothing from this file was applied and no history row written"
    else:
        undone = ("no-transaction file: statements before the failing one stay applied, "
                  "no history row written; it is re-run from the top next time")
    lines = [f"{where}: {failure.message}{state}", f"migration {m.filename} failed; {undone}."]
    if applied_now:
        lines.append(f"applied in this run and kept: {', '.join(applied_now)}")
    if later:
        lines.append(f"not run: {', '.join(x.filename for x in later)}")
    return MigrationError("\n".join(lines))


def drift_error(plan: Plan) -> DriftError:
    body = "\n".join(f"  {line}" for line in plan.drift_lines())
    return DriftError(
        "drift: the migration history and the files disagree; nothing was applied:\n"
        f"{body}\n"
        "See `invoke migrate-status`; `invoke migrate --accept-drift` records the current "
        "checksums and applies out-of-order files."
    )


def migrate(settings: Settings, *, wait: float = 0.0, lock_timeout: float = 60.0,
            dry_run: bool = False, accept_drift: bool = False, allow_ahead: bool = False,
            out: Out = print) -> MigrateResult:
    """Apply every pending migration exactly once. ``allow_ahead``: history rows above
    every file here were applied by a newer release; say so, and do not call it drift (the
    backend's start-up, so that a rolled-back release starts on the newer schema)."""
    if lock_timeout <= 0:
        raise ConfigError(f"--lock-timeout: must be greater than 0 (got {lock_timeout:g})")
    if wait < 0:
        raise ConfigError(f"--wait: must be 0 or more seconds (got {wait:g})")
    table = settings.migration_table
    url = settings.database_url
    # Connecting (a network round trip or several) overlaps reading and hashing the files.
    connecting = _Background(lambda: db.connect(url, application_name="deploy migrate",
                                                wait=wait))
    try:
        migrations = discover(settings.migrations_dir)
    except BaseException:
        connecting.discard()
        raise
    result = MigrateResult()
    with connecting.result() as conn:
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
        with db.advisory_lock(url, table, timeout=lock_timeout):
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
            result = _apply_pending(conn, table, plan, out)
    return result


def _accept_drift(conn, table: str, plan: Plan, out: Out) -> None:
    if plan.changed:
        db.record_checksums(conn, table, [m for m, _ in plan.changed])
        for m, row in plan.changed:
            out(f"migration {m.filename}: accepted drift, recorded checksum {m.checksum[:12]} "
                f"(was {row.checksum[:12]}); the file was NOT re-run")
    for row in plan.missing:
        out(f"migration {row.filename}: accepted drift, file is gone; history row kept")
    for m in plan.out_of_order:
        out(f"migration {m.filename}: accepted drift, applying out of order")


def _apply_pending(conn, table: str, plan: Plan, out: Out) -> MigrateResult:
    result = MigrateResult()
    who = db.applied_by()
    started = time.perf_counter()
    for index, m in enumerate(plan.pending):
        try:
            ms = db.apply_migration(conn, m, table, who,
                                    split=None if m.transactional else _split)
        except db.ApplyFailed as exc:
            raise _migration_error(m, exc, result.applied, plan.pending[index + 1:], conn) from None
        result.applied.append(m.filename)
        mode = "" if m.transactional else " (no-transaction)"
        out(f"migration {m.filename} applied in {ms} ms{mode}")
    done = len(plan.applied) + len(plan.changed) + len(plan.unrecorded) + len(result.applied)
    result.total_applied = done
    elapsed = time.perf_counter() - started
    if result.applied:
        out(f"migrations: applied {len(result.applied)} file(s) in {elapsed:.2f} s "
            f"({done} applied in total)")
    else:
        out(f"migrations: up to date, nothing to apply ({done} applied)")
    return result


def status(settings: Settings, *, wait: float = 0.0) -> tuple[list[dict], Plan]:
    migrations = discover(settings.migrations_dir)
    with db.connect(settings.database_url, application_name="deploy status", wait=wait) as conn:
        history = db.read_history(conn, settings.migration_table)
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


def new_migration(settings: Settings, name: str, out: Out = print) -> Path:
    migrations = discover(settings.migrations_dir)
    filename = new_migration_filename(migrations, name)
    path = settings.migrations_dir / filename
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(render_template(filename, name))
    out(f"created {display_path(path)}")
    return path


def redo(settings: Settings, filename: str, *, yes: bool, lock_timeout: float = 60.0,
         out: Out = print) -> int:
    """Delete one history row and re-run its file, in one transaction when the file allows."""
    migrations = discover(settings.migrations_dir)
    by_name = {m.filename: m for m in migrations}
    m = by_name.get(Path(filename).name)
    if m is None:
        raise ConfigError(f"FILE: {filename!r} is not a migration in "
                          f"{display_path(settings.migrations_dir)}")
    if not yes:
        raise Refused(f"redo-migration: re-running {m.filename} changes the database; "
                      "add --yes to confirm")
    table = settings.migration_table
    with db.connect(settings.database_url, application_name="deploy redo") as conn, \
            db.advisory_lock(settings.database_url, table, timeout=lock_timeout):
        db.ensure_history_table(conn, table)
        try:
            if m.transactional:
                with conn.transaction():
                    removed = db.delete_history_row(conn, table, m.filename)
                    ms = db.apply_migration(conn, m, table, db.applied_by())
            else:
                removed = db.delete_history_row(conn, table, m.filename)
                ms = db.apply_migration(conn, m, table, db.applied_by(), split=_split)
        except db.ApplyFailed as exc:
            raise _migration_error(m, exc, [], [], conn) from None
    was = "its history row was replaced" if removed else "it had no history row"
    out(f"migration {m.filename} re-applied in {ms} ms ({was})")
    return ms

