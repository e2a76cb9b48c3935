"""psycopg: connect/wait, advisory lock, history table, apply, table inventory."""

from __future__ import annotations

import getpass
import os
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql

from deploy.errors import DeployError, DeployTimeout, MigrationError
from deploy.migrations import HistoryRow, Migration
from deploy.settings import redact, redact_url

LOCK_CLASS = 0x6D696772  # "migr": the first key of our two-int advisory lock
LOCK_POLL = 0.1
# Connection errors that waiting will not fix: fail at once instead of retrying for --wait.
_PERMANENT = ("password authentication failed", "does not exist", "no pg_hba.conf entry",
              "invalid sslmode", "invalid connection option", "invalid URI")


class DatabaseUnavailable(DeployError):
    """The database could not be reached (exit 1; DeployTimeout when --wait ran out)."""


def _password(url: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _clean(exc: BaseException, url: str) -> str:
    text = str(exc).strip()
    text = text.removeprefix("connection failed: ")
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return redact(text, _password(url), url)


def applied_by() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry, as in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def connect(url: str, *, application_name: str = "deploy", wait: float = 0.0,
            clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> psycopg.Connection:
    """Connect in autocommit; with wait > 0, retry with backoff for up to wait seconds."""
    deadline = clock() + wait
    # Short first retries: an SSH tunnel's port may not listen yet for a few ms.
    delay = 0.02
    while True:
        remaining = deadline - clock()
        try:
            return psycopg.connect(
                url, autocommit=True, application_name=application_name[:63],
                connect_timeout=max(2, min(10, int(remaining) + 1)),
            )
        except psycopg.Error as exc:
            reason = _clean(exc, url)
            permanent = any(word in reason for word in _PERMANENT)
            if wait <= 0 or permanent:
                raise DatabaseUnavailable(
                    f"database: cannot connect to {redact_url(url)}: {reason}"
                ) from None
            if clock() >= deadline:
                raise DeployTimeout(
                    f"database: not reachable after waiting {wait:g}s at {redact_url(url)}: "
                    f"{reason}"
                ) from None
        # One last attempt lands on the deadline rather than giving up early.
        sleep(max(0.0, min(delay, deadline - clock())))
        delay = min(delay * 2, 2.0)


def lock_key(table: str) -> int:
    return zlib.crc32(table.encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class LockHolder:
    pid: int
    application_name: str
    user: str
    client: str | None
    since: object

    def __str__(self) -> str:
        where = f" from {self.client}" if self.client else ""
        return (f"pid {self.pid} (application_name {self.application_name!r}, user "
                f"{self.user}{where}, holding it since {self.since})")


def lock_holder(conn: psycopg.Connection, key: int) -> LockHolder | None:
    row = conn.execute(
        """
        SELECT a.pid, a.application_name, a.usename, a.client_addr::text,
               date_trunc('second', a.state_change)
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
          AND l.classid::bigint = %s AND l.objid::bigint = %s
        """,
        (LOCK_CLASS, key),
    ).fetchone()
    return LockHolder(*row) if row else None


@contextmanager
def advisory_lock(url: str, table: str, *, timeout: float,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> Iterator[None]:
    """Hold the migration lock on a dedicated connection; closing it releases the lock.

    A dedicated connection because a no-transaction file runs in autocommit on the main
    one, and because a killed runner's session (and so its lock) dies with its socket.
    """
    key = lock_key(table)
    conn = connect(url, application_name=f"deploy migrate lock {applied_by()} pid {os.getpid()}")
    try:
        deadline = clock() + timeout
        try_lock = "SELECT pg_try_advisory_lock(%s, %s)"
        while not conn.execute(try_lock, (LOCK_CLASS, key)).fetchone()[0]:
            if clock() >= deadline:
                holder = lock_holder(conn, key)
                who = str(holder) if holder else "a session that has since let go"
                raise DeployTimeout(
                    f"lock: waited {timeout:g}s for the migration lock on {table}; "
                    f"it is held by {who}"
                )
            sleep(LOCK_POLL)
        yield
    finally:
        conn.close()


def _table_ident(table: str) -> sql.Identifier:
    return sql.Identifier(*table.split("."))


def history_columns(conn: psycopg.Connection, table: str) -> set[str] | None:
    """The history table's columns, or None when it does not exist yet."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) "
        "AND attnum > 0 AND NOT attisdropped",
        (table,),
    ).fetchall()
    columns = {r[0] for r in rows}
    if columns and "filename" not in columns:
        raise MigrationError(
            f"MIGRATION_TABLE: table {table} exists but has no 'filename' column; "
            "it is not a migration history table (choose another MIGRATION_TABLE)"
        )
    return columns or None


HISTORY_COLUMNS = {"checksum": "TEXT", "execution_ms": "INTEGER", "applied_by": "TEXT"}


def ensure_history_table(conn: psycopg.Connection, table: str) -> list[str]:
    """Create the history table, or adopt the legacy one in place; return what was done."""
    columns = history_columns(conn, table)
    ident = _table_ident(table)
    if columns is None:
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " id BIGSERIAL PRIMARY KEY,"
            " filename VARCHAR(255) NOT NULL UNIQUE,"
            " checksum TEXT,"
            " executed_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
            " execution_ms INTEGER,"
            " applied_by TEXT)"
        ).format(ident))
        return [f"created history table {table}"]
    missing = [name for name in HISTORY_COLUMNS if name not in columns]
    if not missing:
        return []
    conn.execute(sql.SQL("ALTER TABLE {} ").format(ident) + sql.SQL(", ").join(
        sql.SQL("ADD COLUMN IF NOT EXISTS {} {}").format(sql.Identifier(name),
                                                         sql.SQL(HISTORY_COLUMNS[name]))
        for name in missing
    ))
    return [f"adopted the existing history table {table}: added column(s) {', '.join(missing)}"]


ALL_COLUMNS = frozenset({"filename", "executed_at", *HISTORY_COLUMNS})


def read_history(conn: psycopg.Connection, table: str,
                 columns: set[str] | None = None) -> list[HistoryRow]:
    columns = history_columns(conn, table) if columns is None else columns
    if columns is None:
        return []
    select = sql.SQL(", ").join(
        sql.Identifier(name) if name in columns else sql.SQL("NULL")
        for name in ("filename", "checksum", "executed_at", "execution_ms", "applied_by")
    )
    order = "executed_at, filename" if "executed_at" in columns else "filename"
    rows = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY " + order).format(
        select, _table_ident(table))).fetchall()
    return [HistoryRow(*row) for row in rows]


def record_checksums(conn: psycopg.Connection, table: str,
                     migrations: list[Migration]) -> None:
    with conn.transaction():
        for m in migrations:
            conn.execute(sql.SQL("UPDATE {} SET checksum = %s WHERE filename = %s").format(
                _table_ident(table)), (m.checksum, m.filename))


def delete_history_row(conn: psycopg.Connection, table: str, filename: str) -> int:
    cur = conn.execute(sql.SQL("DELETE FROM {} WHERE filename = %s").format(
        _table_ident(table)), (filename,))
    return cur.rowcount


@dataclass(frozen=True)
class Failure:
    """Where a statement failed: offset into the file text, or None, plus the server's words."""

    offset: int | None
    message: str
    sqlstate: str | None
    plpgsql_line: int | None = None
    internal_query: str | None = None
    internal_position: int | None = None


def _failure(exc: psycopg.Error, base: int = 0) -> Failure:
    diag = exc.diag
    position = diag.statement_position
    line = None
    context = diag.context or ""
    marker = "inline_code_block line "
    if marker in context:
        tail = context.split(marker, 1)[1]
        digits = "".join(ch for ch in tail[:10] if ch.isdigit() or ch == " ").split()
        line = int(digits[0]) if digits else None
    return Failure(
        offset=base + int(position) - 1 if position else None,
        message=diag.message_primary or str(exc).strip(),
        sqlstate=exc.sqlstate,
        plpgsql_line=line,
        internal_query=diag.internal_query,
        internal_position=int(diag.internal_position) if diag.internal_position else None,
    )


class ApplyFailed(Exception):
    def __init__(self, failure: Failure, statement_offset: int | None = None):
        super().__init__(failure.message)
        self.failure = failure
        self.statement_offset = statement_offset


def apply_migration(conn: psycopg.Connection, m: Migration, table: str, who: str,
                    split: Callable[[str], list] | None = None) -> int:
    """Apply one file with its history row; return milliseconds. Raises ApplyFailed."""
    start = time.perf_counter()
    if m.transactional:
        # The file and its history row as ONE simple-query message: PostgreSQL runs the
        # statements of such a message as one implicit transaction, so either both commit
        # or neither does, in a single round trip (4 with BEGIN/file/INSERT/COMMIT).
        # No parameters, so the file runs as written and error positions are file offsets;
        # the row's execution_ms is measured by the server, from message receipt.
        record = sql.SQL(
            "INSERT INTO {} (filename, checksum, execution_ms, applied_by) VALUES "
            "({}, {}, round(extract(epoch FROM clock_timestamp() - statement_timestamp())"
            " * 1000)::int, {})"
        ).format(_table_ident(table), sql.Literal(m.filename), sql.Literal(m.checksum),
                 sql.Literal(who)).as_string(conn)
        try:
            # "\n;" ends a last statement without a semicolon, or a trailing -- comment.
            conn.execute(m.text + "\n;\n" + record)
        except psycopg.Error as exc:
            failure = _failure(exc)
            if failure.offset is not None and failure.offset >= len(m.text):
                failure = replace(failure, offset=None)  # inside our INSERT, not the file
            raise ApplyFailed(failure) from None
        return round((time.perf_counter() - start) * 1000)
    for statement in split(m.text):
        try:
            conn.execute(statement.text)
        except psycopg.Error as exc:
            raise ApplyFailed(_failure(exc, statement.start), statement.start) from None
    ms = round((time.perf_counter() - start) * 1000)
    conn.execute(sql.SQL(
        "INSERT INTO {} (filename, checksum, execution_ms, applied_by) VALUES (%s, %s, %s, %s)"
    ).format(_table_ident(table)), (m.filename, m.checksum, ms, who))
    return ms


def locate_failed_statement(conn: psycopg.Connection, m: Migration,
                            split: Callable[[str], list]) -> int | None:
    """Re-run a failed transactional file statement by statement, always rolled back,
    to learn which statement failed when the server gave no position (PL/pgSQL errors)."""
    try:
        with conn.transaction(force_rollback=True):
            for statement in split(m.text):
                try:
                    with conn.transaction():
                        conn.execute(statement.text)
                except psycopg.Error:
                    return statement.start
    except psycopg.Error:
        return None
    return None


def list_tables(conn: psycopg.Connection, schema: str, prefix: str) -> list[str]:
    # starts_with, not LIKE: the '_' in 'ai_' is a literal, not a wildcard.
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND starts_with(tablename, %s) "
        "ORDER BY tablename COLLATE \"C\"",
        (schema, prefix),
    ).fetchall()
    return [r[0] for r in rows]


def missing_tables(conn: psycopg.Connection,
                   names: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Of (schema, table) pairs, those that do not exist as tables."""
    if not names:
        return []
    rows = conn.execute(
        "SELECT x.s, x.t FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS x(s, t, n) "
        "WHERE NOT EXISTS (SELECT 1 FROM pg_tables p WHERE p.schemaname = x.s "
        "AND p.tablename = x.t) ORDER BY x.n",
        ([s for s, _ in names], [t for _, t in names]),
    ).fetchall()
    return [(s, t) for s, t in rows]


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                        (schema,)).fetchone() is not None
