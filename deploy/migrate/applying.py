"""Applying files on the locked session: lock-timeout retries, signals, invalid indexes.

- A transactional file travels with its history row as one message (one implicit
  transaction). On a lock timeout (55P03) the server has rolled all of it back; it is sent
  again after the policy's wait, until retries or budget run out (exit 4, naming the session
  that blocked it, sampled by the Watcher while the statement waited).
- A no-transaction file runs statement by statement in autocommit; a statement that times
  out on a lock is retried on its own. CONCURRENTLY statements run without lock_timeout
  (they never make other sessions queue, and a timed-out CREATE INDEX CONCURRENTLY leaves an
  INVALID index behind); an INVALID index left by an earlier, interrupted build is dropped
  and built again instead of being skipped by IF NOT EXISTS.
- SIGTERM/SIGINT: the running statement is cancelled on the server; the runner stops with
  one line saying what happened to the file (deploy/migrate/interrupt.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg

from deploy.errors import DeployTimeout, MigrationError
from deploy.migrate import db
from deploy.migrate.dberrors import exit_code_for
from deploy.migrate.files import Migration, display_path, line_col
from deploy.migrate.interrupt import SignalGuard
from deploy.migrate.lock import Blocker
from deploy.migrate.policy import LOCK_NOT_AVAILABLE, QUERY_CANCELED, LockRetry, milliseconds
from deploy.migrate.watcher import Watcher
from deploy.output import Lines

if TYPE_CHECKING:  # deploy.migrate.sql loads pglast: see split()
    from deploy.migrate.sql import Concurrent, Statement

_DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


def split(text: str) -> list[Statement]:
    """The file's statements, as the server's parser splits them."""
    # pglast loads here, on first use: a transactional file that applies cleanly never
    # needs it, and it takes about as long to import as the rest of the runner.
    from deploy.migrate.sql import split_statements

    return split_statements(text)


def concurrent(text: str) -> Concurrent | None:
    """The statement's CONCURRENTLY target, if it is one (pglast, loaded as in ``split``)."""
    from deploy.migrate.sql import concurrent as parse_concurrent

    return parse_concurrent(text)


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


def where(m: Migration, offset: int | None) -> str:
    if offset is None:
        return display_path(m.path)
    line, col = line_col(m.text, offset)
    return f"{display_path(m.path)}:{line}:{col}"


class _GaveUp(Exception):
    def __init__(self, attempts: int, elapsed: float):
        self.attempts = attempts
        self.elapsed = elapsed


@dataclass
class Applier:
    conn: psycopg.Connection
    table: str
    retry: LockRetry
    out: Lines
    guard: SignalGuard
    watcher: Watcher
    who: str
    command: str = "migrate"
    applied: list[str] = field(default_factory=list)  # in this run
    later: list[Migration] = field(default_factory=list)  # not run yet
    blocked_by: list[Blocker] = field(default_factory=list)  # the last sample, all attempts
    retries: int = 0  # lock-timeout retries of the current file
    clock: Callable[[], float] = time.monotonic

    # --- the run ------------------------------------------------------------------------------
    def run(self, pending: list[Migration]) -> None:
        for index, m in enumerate(pending):
            self.later = pending[index + 1:]
            self.guard.check(lambda m=m: f"before {m.filename}: nothing of it applied"
                             + self._kept())
            mode = "" if m.transactional else " (no-transaction)"
            self.out(f"migration {m.filename} running{mode}")
            ms = self.apply(m)
            self.applied.append(m.filename)
            retried = f" after {self.retries} lock-timeout retries" if self.retries else ""
            self.out(f"migration {m.filename} applied in {ms} ms{mode}{retried}")
            self.guard.check(lambda m=m: self._applied_anyway(m))

    def apply(self, m: Migration, replace_row: bool = False) -> int:
        self.watcher.watch(m.filename)
        self.blocked_by = []
        self.retries = 0
        try:
            if m.transactional:
                return self._transactional(m, replace_row)
            return self._statements(m, replace_row)
        finally:
            self.watcher.idle()

    def _transactional(self, m: Migration, replace_row: bool) -> int:
        try:
            return self._retrying(m, None, lambda: db.apply_migration(
                self.conn, m, self.table, self.who, replace_row=replace_row))
        except db.ApplyFailed as exc:
            if self.guard.signum is not None and not self.conn.broken:
                raise self.guard.error(f": {m.filename} rolled back, nothing of it applied"
                                       + self._kept()) from None
            raise self._failed(m, exc) from None
        except _GaveUp as gave_up:
            raise self._gave_up(m, None, gave_up) from None

    def _statements(self, m: Migration, replace_row: bool) -> int:
        started = time.perf_counter()
        statements = split(m.text)
        if replace_row:
            db.delete_history_row(self.conn, self.table, m.filename)
        for statement in statements:
            self.guard.check(lambda s=statement: self._stopped(m, s.start, before=True))
            target = concurrent(statement.text)
            if target is not None and target.index:
                self._rebuild_if_invalid(m, statement.start, target)
            try:
                self._retrying(m, statement.start, lambda s=statement, t=target: self._run(
                    s.text, s.start, unlocked=t is not None))
            except db.ApplyFailed as exc:
                if self.guard.signum is not None and not self.conn.broken:
                    raise self.guard.error(self._stopped(m, statement.start, target=target)
                                           ) from None
                raise self._failed(m, exc, target) from None
            except _GaveUp as gave_up:
                raise self._gave_up(m, statement.start, gave_up) from None
        ms = round((time.perf_counter() - started) * 1000)
        unrecorded = (f": {m.filename}: every statement ran but its history row was not "
                      "written; the next migrate re-runs it from the top")
        try:
            with self.guard.statement(self.conn, lambda: unrecorded + self._kept()):
                db.record_applied(self.conn, self.table, m, self.who, ms)
        except db.ApplyFailed as exc:
            if self.guard.signum is not None:
                raise self.guard.error(unrecorded + self._kept()) from None
            raise self._failed(m, exc) from None
        return ms

    def _run(self, text: str, start: int, unlocked: bool) -> None:
        if not unlocked:
            db.run_statement(self.conn, text, start)
            return
        # CONCURRENTLY: no lock_timeout (see the module's docstring); statement_timeout stays.
        db.set_lock_timeout(self.conn, "0")
        try:
            db.run_statement(self.conn, text, start)
        finally:
            if not self.conn.broken and self.guard.signum is None:
                db.set_lock_timeout(self.conn, milliseconds(self.retry.lock_timeout))

    def _rebuild_if_invalid(self, m: Migration, offset: int, target: Concurrent) -> None:
        state = db.index_state(self.conn, target.schema, target.table, target.index)
        if state is None or state.valid:
            return
        if state.building_pid is not None:
            raise MigrationError(
                f"{where(m, offset)}: index {state.name} is being built right now by pid "
                f"{state.building_pid}; wait for that build to end (or cancel it), then run "
                f"{self.command} again")
        self.out(f"{where(m, offset)}: index {state.name} is INVALID (left by an "
                 "interrupted or failed CREATE INDEX CONCURRENTLY): dropping it with DROP INDEX "
                 "CONCURRENTLY and building it again")
        # state.name is regclass's own output: already quoted where needed.
        drop = f"DROP INDEX CONCURRENTLY IF EXISTS {state.name}"
        try:
            self._retrying(m, offset, lambda: self._run(drop, offset, unlocked=True))
        except db.ApplyFailed as exc:
            if self.guard.signum is not None:
                raise self.guard.error(self._stopped(m, offset, target=target)) from None
            raise MigrationError(f"{where(m, offset)}: could not drop the INVALID index "
                                 f"{state.name}: {exc.failure.message}") from None

    # --- lock-timeout retries -----------------------------------------------------------------
    def _retrying(self, m: Migration, offset: int | None, run: Callable[[], object]):
        started = self.clock()
        attempt = 0
        while True:
            attempt += 1
            attempt_started = self.clock()
            try:
                with self.guard.statement(self.conn, lambda: (
                        f"before {m.filename}: nothing of it applied" + self._kept()
                        if m.transactional else self._stopped(m, offset, before=True))):
                    return run()
            except db.ApplyFailed as exc:
                if self.guard.signum is not None or exc.failure.sqlstate != LOCK_NOT_AVAILABLE:
                    raise
            found = self.watcher.blockers_since(attempt_started)
            if found:
                self.blocked_by = found
            elapsed = self.clock() - started
            wait = self.retry.next_wait(attempt, elapsed)
            if wait is None:
                raise _GaveUp(attempt, elapsed)
            self.retries += 1
            undone = ("rolled back" if m.transactional else "statement not applied")
            label = where(m, offset) if offset is not None else f"migration {m.filename}"
            self.out(f"{label}: lock timeout after {self.retry.lock_timeout:g} s (attempt "
                     f"{attempt}/{self.retry.attempts}); {self._blocker_text(found)}; {undone}, "
                     f"retrying in {wait:g} s")
            self.watcher.connect_now()
            self.guard.sleep(wait, lambda: (
                f"while retrying {m.filename} after a lock timeout: nothing of it applied"
                + self._kept() if m.transactional else self._stopped(m, offset, before=True)))

    @staticmethod
    def _blocker_text(found: list[Blocker]) -> str:
        if not found:
            return "the blocking session was not caught while it blocked"
        first = found[0]
        text = f"waiting for {first.waiting_for or 'a lock'} held by {first}"
        if len(found) > 1:
            text += f" (and {len(found) - 1} more session(s))"
        return text

    # --- messages -----------------------------------------------------------------------------
    def _kept(self) -> str:
        if not self.applied:
            return "; nothing else was applied in this run"
        names = self.applied
        listed = ", ".join(names) if len(names) <= 3 else (
            f"{len(names)} files, {names[0]} ... {names[-1]}")
        return f"; applied before it in this run and kept: {listed}"

    def _applied_anyway(self, m: Migration) -> str:
        nxt = f"stopped before {self.later[0].filename}" if self.later else "it was the last file"
        return (f": {m.filename} WAS applied (it committed before the cancel took effect); "
                f"{nxt}" + (f"; applied in this run: {len(self.applied)} file(s)"
                            if len(self.applied) > 1 else ""))

    def _stopped(self, m: Migration, offset: int | None, before: bool = False,
                 target: Concurrent | None = None) -> str:
        at = where(m, offset)
        if before:
            text = f": {m.filename} stopped before the statement at {at}"
        else:
            text = f": {m.filename} stopped at {at}, that statement cancelled and not applied"
        text += ("; its statements before it stay applied, no history row written, the next "
                 "migrate re-runs the file from the top")
        if target is not None and target.index:
            text += (f"; an interrupted CREATE INDEX CONCURRENTLY leaves the index "
                     f"{target.index} INVALID: the next migrate drops and rebuilds it")
        return text + self._kept()

    def _lists(self) -> list[str]:
        lines = []
        if self.applied:
            lines.append("applied in this run and kept:")
            lines += [f"  {name}" for name in self.applied]
        if self.later:
            lines.append("not run:")
            lines += [f"  {x.filename}" for x in self.later]
        return lines

    def _failed(self, m: Migration, exc: db.ApplyFailed,
                target: Concurrent | None = None) -> MigrationError:
        failure = exc.failure
        if self.conn.broken:
            error = MigrationError("\n".join([
                f"{display_path(m.path)}: lost the database connection while applying it "
                f"({failure.message})",
                f"migration {m.filename}: whether it was applied is known only once the server "
                f"has ended that session (it holds the migration lock until then); run "
                f"`migrate-status`, then `migrate` again", *self._lists()]))
            return error
        statement_offset = exc.statement_offset
        if (failure.offset is None and statement_offset is None and m.transactional
                and failure.sqlstate not in (QUERY_CANCELED, LOCK_NOT_AVAILABLE)):
            statement_offset = db.locate_failed_statement(self.conn, m, split)
        position = failure_position(m, failure, statement_offset)
        at = display_path(m.path) + (f":{position[0]}:{position[1]}" if position else "")
        state = f" ({failure.sqlstate})" if failure.sqlstate else ""
        if m.transactional:
            undone = "rolled back: nothing from this file was applied and no history row written"
        else:
            undone = ("no-transaction file: statements before the failing one stay applied, "
                      "no history row written; it is re-run from the top next time")
        lines = [f"{at}: {failure.message}{state}", f"migration {m.filename} failed; {undone}."]
        if failure.sqlstate == QUERY_CANCELED:
            if self.retry.statement_timeout:
                lines.append(f"MIGRATION_STATEMENT_TIMEOUT ({self.retry.statement_timeout:g} s) "
                             "ended the statement: raise it (--statement-timeout) or make the "
                             "statement faster")
            else:
                lines.append("another session cancelled the statement (pg_cancel_backend)")
        if target is not None and target.index:
            state_now = db.index_state(self.conn, target.schema, target.table, target.index)
            if state_now is not None and not state_now.valid:
                lines.append(f"it left the INVALID index {state_now.name} behind: the next "
                             f"{self.command} drops and rebuilds it")
        if failure.sqlstate == "42501":
            lines.append("the role lacks a privilege this file needs: grant it, or run the "
                         "migrations as the owner of the objects they change")
        error = MigrationError("\n".join(lines + self._lists()))
        error.exit_code = exit_code_for(failure.sqlstate)
        return error

    def _gave_up(self, m: Migration, offset: int | None, gave_up: _GaveUp) -> DeployTimeout:
        retry = self.retry
        if m.transactional:
            undone = f"nothing of {m.filename} was applied (rolled back)"
        else:
            undone = (f"that statement was not applied; the statements of {m.filename} before it "
                      "stay applied, no history row written, the next migrate re-runs it from "
                      "the top")
        lines = [
            f"{where(m, offset)}: lock timeout: gave up after {gave_up.attempts} attempt(s) in "
            f"{gave_up.elapsed:.1f} s, each waiting up to {retry.lock_timeout:g} s for a lock "
            f"(MIGRATION_LOCK_TIMEOUT; MIGRATION_LOCK_RETRIES {retry.retries}, "
            f"MIGRATION_LOCK_BUDGET {retry.budget:g} s); {undone}",
        ]
        if self.blocked_by:
            first = self.blocked_by[0]
            lines.append(f"blocked by {first}")
            lines += [f"also blocked by {b}" for b in self.blocked_by[1:]]
            if first.waiting_for:
                lines.append(f"it waited for: {first.waiting_for}")
            lines.append(f"what to do: end that session's transaction (SELECT "
                         f"pg_terminate_backend({first.pid}) ends the session), or allow more "
                         "(--lock-retries, --lock-budget), then run migrate again")
        else:
            lines.append("the blocking session was not caught while it blocked (it holds its "
                         "locks only briefly, or ended); run migrate again, or allow more "
                         "(--lock-retries, --lock-budget)")
        return DeployTimeout("\n".join(lines + self._lists()))
