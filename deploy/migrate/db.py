"""psycopg: connect/wait, history table, apply, indexes, table inventory.

The migration lock and lock-wait sampling are in deploy/migrate/lock.py; turning psycopg errors
into the project's errors in deploy/migrate/dberrors.py.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from deploy.errors import ConfigError, DeployError, DeployTimeout, MigrationError
from deploy.migrate.dberrors import connect_refused
from deploy.migrate.files import HistoryRow, Migration
from deploy.migrate.policy import CLIENT_KEEPALIVES
from deploy.redaction import redact, redact_url

# Connection errors that waiting will not fix: fail at once instead of retrying for --wait.
_PERMANENT = ("password authentication failed", "does not exist", "no pg_hba.conf entry",
              "invalid sslmode", "invalid connection option", "invalid URI",
              "permission denied")


class DatabaseUnavailable(DeployError):
    """The database could not be reached (exit 1; DeployTimeout when --wait ran out)."""


def _password(url: str) -> str | None:
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


def _hint(reason: str) -> str:
    if "password authentication failed" in reason:
        return ("; check the password (POSTGRES_PASSWORD, or DATABASE_URL when set): a stack's "
                "database keeps the password it was first created with")
    if "does not exist" in reason:
        return "; check POSTGRES_USER/POSTGRES_DB (or DATABASE_URL when set)"
    if "no pg_hba.conf entry" in reason:
        return "; the server's pg_hba.conf does not let this user in from here"
    return "; check DATABASE_URL"


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
                connect_timeout=max(2, min(10, int(remaining) + 1)), **CLIENT_KEEPALIVES,
            )
        except psycopg.Error as exc:
            reason = _clean(exc, url)
            if "permission denied for database" in reason:
                raise connect_refused(reason, url) from None
            if any(word in reason for word in _PERMANENT):
                # Waiting will not fix these: the settings are wrong (exit 2).
                raise ConfigError(f"database: cannot connect to {redact_url(url)}: {reason}"
                                  f"{_hint(reason)}") from None
            if wait <= 0:
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


# Columns added to a history table that lacks them (the legacy one, or an older version's).
# missing_accepted_at: set by `migrate --accept-drift` on the row of a file that was deleted.
HISTORY_COLUMNS = {"checksum": "TEXT", "execution_ms": "INTEGER", "applied_by": "TEXT",
                   "missing_accepted_at": "TIMESTAMPTZ"}


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
            " applied_by TEXT,"
            " missing_accepted_at TIMESTAMPTZ)"
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
        for name in ("filename", "checksum", "executed_at", "execution_ms", "applied_by",
                     "missing_accepted_at")
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


def accept_missing(conn: psycopg.Connection, table: str, filenames: list[str]) -> None:
    """Record that these rows' files were deleted on purpose: no longer drift."""
    conn.execute(sql.SQL("UPDATE {} SET missing_accepted_at = now() WHERE filename = ANY(%s)"
                         ).format(_table_ident(table)), (filenames,))


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


def _history_insert(conn: psycopg.Connection, table: str, m: Migration, who: str,
                    ms: int | None = None) -> str:
    # execution_ms: given, or measured by the server from the message's receipt.
    took = (sql.Literal(ms) if ms is not None else sql.SQL(
        "round(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::int"))
    return sql.SQL(
        "INSERT INTO {} (filename, checksum, execution_ms, applied_by) VALUES ({}, {}, {}, {})"
    ).format(_table_ident(table), sql.Literal(m.filename), sql.Literal(m.checksum), took,
             sql.Literal(who)).as_string(conn)


def apply_migration(conn: psycopg.Connection, m: Migration, table: str, who: str,
                    replace_row: bool = False) -> int:
    """Apply one transactional file with its history row; return milliseconds.

    replace_row: delete the file's existing row in the same transaction (redo-migration).
    Raises ApplyFailed.
    """
    start = time.perf_counter()
    # The file and its history row as ONE simple-query message: PostgreSQL runs the
    # statements of such a message as one implicit transaction, so either both commit
    # or neither does, in a single round trip (4 with BEGIN/file/INSERT/COMMIT).
    # No parameters, so the file runs as written and error positions are file offsets;
    # the row's execution_ms is measured by the server, from message receipt.
    record = _history_insert(conn, table, m, who)
    if replace_row:
        record = sql.SQL("DELETE FROM {} WHERE filename = {};\n").format(
            _table_ident(table), sql.Literal(m.filename)).as_string(conn) + record
    try:
        # "\n;" ends a last statement without a semicolon, or a trailing -- comment.
        conn.execute(m.text + "\n;\n" + record)
    except psycopg.Error as exc:
        failure = _failure(exc)
        if failure.offset is not None and failure.offset >= len(m.text):
            failure = replace(failure, offset=None)  # inside our INSERT, not the file
        raise ApplyFailed(failure) from None
    return round((time.perf_counter() - start) * 1000)


def run_statement(conn: psycopg.Connection, text: str, start: int) -> None:
    """One statement of a no-transaction file (autocommit). Raises ApplyFailed."""
    try:
        conn.execute(text)
    except psycopg.Error as exc:
        raise ApplyFailed(_failure(exc, start), start) from None


def record_applied(conn: psycopg.Connection, table: str, m: Migration, who: str,
                   ms: int) -> None:
    """The history row of a no-transaction file, once all its statements ran."""
    try:
        conn.execute(_history_insert(conn, table, m, who, ms))
    except psycopg.Error as exc:
        raise ApplyFailed(_failure(exc)) from None


def session_sql(conn: psycopg.Connection, settings: list[tuple[str, str]]) -> str:
    """SET statements for (name, value) pairs, as one string."""
    return "; ".join(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
                     .as_string(conn) for name, value in settings)


def set_lock_timeout(conn: psycopg.Connection, value: str) -> None:
    """Raises ApplyFailed, like the statements it surrounds (a cancel may land on it)."""
    try:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(value)))
    except psycopg.Error as exc:
        raise ApplyFailed(_failure(exc)) from None


@dataclass(frozen=True)
class IndexState:
    name: str  # schema-qualified as regclass prints it
    valid: bool
    building_pid: int | None  # a session building it right now (pg_stat_progress_create_index)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def index_state(conn: psycopg.Connection, schema: str | None, table: str,
                index: str) -> IndexState | None:
    """The index `index` in the schema of `table` (as the search path resolves it)."""
    target = (quote_ident(schema) + "." if schema else "") + quote_ident(table)
    row = conn.execute(
        """
        SELECT c.oid::regclass::text, i.indisvalid,
               (SELECT p.pid FROM pg_stat_progress_create_index p
                WHERE p.index_relid = c.oid LIMIT 1)
        FROM pg_class t
        JOIN pg_class c ON c.relnamespace = t.relnamespace AND c.relname = %s
        JOIN pg_index i ON i.indexrelid = c.oid
        WHERE t.oid = to_regclass(%s)
        """, (index, target)).fetchone()
    return IndexState(*row) if row else None


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
