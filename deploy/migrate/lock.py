"""Who waits for whom: the runners' migration lock, and the sessions blocking a statement.

The migration lock is a session advisory lock held on the very connection that runs the
files, so it lives exactly as long as the server-side work: a runner that is killed or
loses its network keeps it until the server has rolled its file back and ended the session.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from deploy.errors import DeployTimeout
from deploy.migrate.policy import DEFAULT_PROGRESS, Progress
from deploy.output import Lines

LOCK_CLASS = 0x6D696772  # "migr": the first key of our two-int advisory lock


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


def acquire(conn: psycopg.Connection, table: str, *, timeout: float, out: Lines,
            session_sql: str = "", progress: Progress = DEFAULT_PROGRESS,
            clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> None:
    """Take the migration lock on conn (held until conn closes), polling up to timeout.

    session_sql (SET statements) travels with the first try: no extra round trip. While
    another runner holds the lock, who it is gets printed at once and every few seconds.
    """
    key = lock_key(table)
    try_lock = f"SELECT pg_try_advisory_lock({LOCK_CLASS}, {key})"
    query = f"{try_lock}; {session_sql}" if session_sql else try_lock
    started = clock()
    next_report: float | None = None
    while not conn.execute(query).fetchone()[0]:
        query = try_lock
        now = clock()
        holder = None
        if now - started >= timeout or next_report is None or now >= next_report:
            found = lock_holder(conn, key)
            holder = str(found) if found else "a session that has since let go"
        if now - started >= timeout:
            raise DeployTimeout(f"lock: waited {timeout:g}s for the migration lock on {table}; "
                                f"it is held by {holder}")
        if next_report is None:
            out(f"migration lock: {table} is being migrated by {holder}; waiting for it, "
                f"up to {timeout:g} s (--lock-wait)")
            next_report = now + progress.lock_every
        elif holder is not None:
            out(f"migration lock: still waiting, {now - started:.0f} s of {timeout:g} s; "
                f"held by {holder}")
            next_report += progress.lock_every
        sleep(progress.lock_poll)
    if next_report is not None:
        out(f"migration lock: acquired after {clock() - started:.1f} s")


@dataclass(frozen=True)
class Blocker:
    """A session our statement waits for (pg_blocking_pids), as sampled while it waited."""

    pid: int
    application_name: str
    user: str | None
    state: str | None
    xact_seconds: float | None
    query: str
    waiting_for: str | None  # what our statement waits for, e.g. "AccessExclusiveLock on hot"

    def __str__(self) -> str:
        open_for = (f"transaction open {self.xact_seconds:.1f} s"
                    if self.xact_seconds is not None else "no transaction open")
        return (f"pid {self.pid} (application_name {self.application_name!r}, user "
                f"{self.user}, state {self.state}, {open_for}, query: {self.query})")


_BLOCKERS = """
SELECT a.pid, a.application_name, a.usename, a.state,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8, left(a.query, 2000),
       (SELECT string_agg(l.mode || ' on ' || coalesce(l.relation::regclass::text,
                                                        l.locktype), ', ')
          FROM pg_locks l WHERE l.pid = %(pid)s AND NOT l.granted)
FROM unnest(pg_blocking_pids(%(pid)s)) AS b(pid)
JOIN pg_stat_activity a ON a.pid = b.pid
ORDER BY a.xact_start NULLS LAST, a.pid
"""


def first_line(query: str | None, width: int = 160) -> str:
    for line in (query or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= width else line[:width - 3] + "..."
    return "(none)"


def blockers(conn: psycopg.Connection, pid: int) -> list[Blocker]:
    """The sessions pid waits for right now (empty when it waits for nothing)."""
    rows = conn.execute(_BLOCKERS, {"pid": pid}).fetchall()
    return [Blocker(pid=r[0], application_name=r[1], user=r[2], state=r[3],
                    xact_seconds=r[4], query=first_line(r[5]), waiting_for=r[6])
            for r in rows]
