"""Migrations that never stall traffic, against a real PostgreSQL.

A session holds a lock that conflicts with the migration's ALTER; the migration waits at
most the lock timeout per attempt, is rolled back and retried, and gives up with exit 4
naming that session. Meanwhile a reader of the table never waits longer than the lock
timeout (plus a generous margin): that is a correctness property, asserted.
"""

from __future__ import annotations

import re
import signal
import threading
import time

import psycopg

from tests.support.sessions import slow_backend

HOT = ("CREATE TABLE IF NOT EXISTS hot (id int PRIMARY KEY, v text);\n"
       "INSERT INTO hot SELECT g, 'x' FROM generate_series(1, 100) g ON CONFLICT DO NOTHING;\n")
ALTER = "ALTER TABLE hot ADD COLUMN note text;\nINSERT INTO hot VALUES (1000, 'altered');\n"
FLAGS = ("--migration-lock-timeout", "0.3", "--lock-retries", "3", "--lock-budget", "30")


class Reader(threading.Thread):
    """Reads the hot table in a loop, like the backend's traffic; records the slowest read."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.slowest = 0.0
        self.reads = 0

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name="reader") as conn:
            while not self.stop.is_set():
                started = time.monotonic()
                conn.execute("SELECT count(*) FROM hot").fetchone()
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.reads += 1
                time.sleep(0.01)


def hold_hot(url: str, seconds: float | None, name: str = "long report"):
    """A session with an open transaction that has read `hot` (ACCESS SHARE held). With
    `seconds`, it lets go that long after another session first waits for it: timed from
    the migration's first wait, not from the start of a runner process that a busy machine
    may take a second to start."""
    conn = psycopg.connect(url, autocommit=True, application_name=name)
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM hot").fetchone()
    if seconds is not None:
        threading.Thread(target=_release_after_first_waiter, args=(url, conn, seconds),
                         daemon=True).start()
    return conn


def _release_after_first_waiter(url: str, conn: psycopg.Connection, seconds: float,
                                give_up: float = 60.0) -> None:
    pid = conn.info.backend_pid
    deadline = time.monotonic() + give_up
    with psycopg.connect(url, autocommit=True) as watch:
        while time.monotonic() < deadline and not watch.execute(
                "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (pid,)).fetchone():
            time.sleep(0.01)
    time.sleep(seconds)
    conn.close()  # ends its transaction (rolled back)


def columns(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'hot'")}


def test_a_blocker_longer_than_the_budget_exits_4_naming_it_and_readers_never_stall(project):
    project.write("001_hot.sql", HOT)
    assert project.run("migrate").returncode == 0
    project.write("002_alter_hot.sql", ALTER)
    blocker = hold_hot(project.url, None)
    reader = Reader(project.url)
    reader.start()
    try:
        started = time.monotonic()
        result = project.run("migrate", *FLAGS)
        elapsed = time.monotonic() - started
    finally:
        reader.stop.set()
        reader.join(timeout=10)
        pid = blocker.info.backend_pid
        blocker.close()
    assert result.returncode == 4, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("migrations/002_alter_hot.sql: lock timeout: gave up after 4 "
                            "attempt(s) in "), first
    assert first.endswith("each waiting up to 0.3 s for a lock (MIGRATION_LOCK_TIMEOUT; "
                          "MIGRATION_LOCK_RETRIES 3, MIGRATION_LOCK_BUDGET 30 s); nothing of "
                          "002_alter_hot.sql was applied (rolled back)")
    assert (f"blocked by pid {pid} (application_name 'long report', user postgres, state idle "
            "in transaction, transaction open ") in result.stderr
    assert "query: SELECT count(*) FROM hot)" in result.stderr
    assert "it waited for: AccessExclusiveLock on hot" in result.stderr
    assert f"SELECT pg_terminate_backend({pid})" in result.stderr
    # Each retry said what blocked it.
    retries = [line for line in result.stdout.splitlines() if "lock timeout after 0.3 s" in line]
    assert len(retries) == 3, result.stdout
    assert retries[0].startswith("migration 002_alter_hot.sql: lock timeout after 0.3 s "
                                 "(attempt 1/4); waiting for AccessExclusiveLock on hot held "
                                 f"by pid {pid} (application_name 'long report'")
    assert retries[0].endswith("; rolled back, retrying in 0.25 s")
    # Nothing of the file applied.
    assert "note" not in columns(project.url)
    assert project.history() == ["001_hot.sql"]
    # 0.25 + 0.5 + 1 s of waits and four 0.3 s lock waits, plus start-up.
    assert 2.9 < elapsed < 20
    # Readers queued behind the waiting ALTER, never for much longer than the lock timeout.
    assert reader.reads > 20
    assert 0.1 < reader.slowest < 0.3 + 1.0, reader.slowest


def test_a_blocker_released_in_time_lets_the_file_through_its_retries(project):
    project.write("001_hot.sql", HOT)
    assert project.run("migrate").returncode == 0
    project.write("002_alter_hot.sql", ALTER)
    hold_hot(project.url, 1.2)
    result = project.run("migrate", *FLAGS)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("migration 002_alter_hot.sql: lock timeout after 0.3 s "
                               "(attempt 1/4)") for line in lines), lines
    assert any(line.startswith("migration 002_alter_hot.sql applied in ")
               and " lock-timeout retries" in line for line in lines), lines
    assert "note" in columns(project.url)
    assert project.history() == ["001_hot.sql", "002_alter_hot.sql"]


def test_a_no_transaction_file_retries_only_the_statement_that_timed_out(project):
    project.write("001_hot.sql", HOT)
    assert project.run("migrate").returncode == 0
    project.write("002_nt.sql", "-- migrate: no-transaction\n"
                                "CREATE TABLE IF NOT EXISTS before_t (id int);\n"
                                "INSERT INTO before_t VALUES (1);\n"
                                "ALTER TABLE hot ADD COLUMN IF NOT EXISTS note text;\n")
    hold_hot(project.url, 1.2)
    result = project.run("migrate", *FLAGS)
    assert result.returncode == 0, result.stderr
    retry_lines = [line for line in result.stdout.splitlines() if "lock timeout" in line]
    pattern = re.compile(r"migrations/002_nt\.sql:4:1: lock timeout after 0\.3 s \(attempt "
                         r"\d/4\); .*; statement not applied, retrying in [\d.]+ s")
    assert retry_lines and all(pattern.fullmatch(line) for line in retry_lines), retry_lines
    with psycopg.connect(project.url) as conn:
        # The statements before it ran once, not once per attempt.
        assert conn.execute("SELECT count(*) FROM before_t").fetchone()[0] == 1
    assert "note" in columns(project.url)


def test_the_statement_timeout_is_a_clear_failure_not_a_retry(project):
    project.write("001_slow.sql", "CREATE TABLE IF NOT EXISTS s (id int);\n"
                                  "SELECT pg_sleep(5);\n")
    result = project.run("migrate", "--statement-timeout", "0.5")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == ("migrations/001_slow.sql: canceling statement due to statement "
                        "timeout (57014)")
    assert ("MIGRATION_STATEMENT_TIMEOUT (0.5 s) ended the statement: raise it "
            "(--statement-timeout) or make the statement faster") in lines
    assert "lock timeout" not in result.stdout
    assert "s" not in project.tables()


def test_invoke_migrate_takes_the_same_flags(project):
    project.write("001_hot.sql", HOT)
    assert project.run("migrate").returncode == 0
    project.write("002_alter_hot.sql", ALTER)
    blocker = hold_hot(project.url, None, name="invoke blocker")
    try:
        result = project.invoke("migrate", "--migration-lock-timeout", "0.2",
                                "--lock-retries", "1")
    finally:
        blocker.close()
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith("migrations/002_alter_hot.sql: lock timeout: gave up after "
                                    "2 attempt(s)")
    assert "application_name 'invoke blocker'" in result.stderr
    bad = project.invoke("migrate", "--lock-retries", "many")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "--lock-retries: expected a whole number, got 'many'"


def test_create_index_concurrently_waits_for_old_transactions_without_a_lock_timeout(project):
    # A lock timeout there would protect no reader (CONCURRENTLY blocks no one) and would
    # leave an INVALID index behind: such statements run without one.
    project.write("001_hot.sql", HOT)
    assert project.run("migrate").returncode == 0
    project.write("002_idx.sql", "-- migrate: no-transaction\n"
                                 "CREATE INDEX CONCURRENTLY IF NOT EXISTS hot_v ON hot (v);\n")
    old = psycopg.connect(project.url, autocommit=True, application_name="old snapshot")
    old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    old.execute("SELECT count(*) FROM hot").fetchone()
    threading.Timer(1.0, old.close).start()
    result = project.run("migrate", "--migration-lock-timeout", "0.2")
    assert result.returncode == 0, result.stderr
    assert "lock timeout" not in result.stdout
    with psycopg.connect(project.url) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                            "'hot_v'::regclass").fetchone() == (True,)
        assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)  # a fresh session


def index_valid(url: str, name: str) -> bool | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                           "to_regclass(%s)", (name,)).fetchone()
    return row[0] if row else None


def test_an_invalid_index_from_a_failed_unique_build_is_named_then_rebuilt(project, db):
    project.write("001_accounts.sql", "CREATE TABLE IF NOT EXISTS accounts (email text);\n"
                                      "INSERT INTO accounts VALUES ('a@x'), ('a@x'), ('b@x');\n")
    project.write("002_unique.sql", "-- migrate: no-transaction\n"
                                    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "
                                    "accounts_email ON accounts (email);\n")
    failed = project.run("migrate")
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[0] == (
        'migrations/002_unique.sql:2:1: could not create unique index "accounts_email" (23505)')
    assert ("it left the INVALID index accounts_email behind: the next migrate drops and "
            "rebuilds it") in failed.stderr
    assert index_valid(project.url, "accounts_email") is False
    # IF NOT EXISTS alone would now skip the broken index for good. Fix the data, re-run:
    db.execute("DELETE FROM accounts WHERE ctid NOT IN (SELECT min(ctid) FROM accounts "
               "GROUP BY email)")
    fixed = project.run("migrate")
    assert fixed.returncode == 0, fixed.stderr
    assert ("migrations/002_unique.sql:2:1: index accounts_email is INVALID (left by an "
            "interrupted or failed CREATE INDEX CONCURRENTLY): dropping it with DROP INDEX "
            "CONCURRENTLY and building it again") in fixed.stdout
    assert index_valid(project.url, "accounts_email") is True
    assert project.history() == ["001_accounts.sql", "002_unique.sql"]


def test_an_index_build_cancelled_by_sigterm_is_rebuilt_by_the_next_run(project):
    project.write("001_hot.sql", HOT)
    assert project.run("migrate").returncode == 0
    project.write("002_idx.sql", "-- migrate: no-transaction\n"
                                 "CREATE INDEX CONCURRENTLY IF NOT EXISTS hot_v ON hot (v) "
                                 "/* slow_marker pg_sleep */;\n")
    old = psycopg.connect(project.url, autocommit=True)
    old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    old.execute("SELECT count(*) FROM hot").fetchone()  # the build waits for this snapshot
    try:
        proc = project.popen("migrate")
        slow_backend(project.url)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        old.close()
    assert proc.returncode == 143
    assert err.startswith("migrate: interrupted (SIGTERM): 002_idx.sql stopped at "
                          "migrations/002_idx.sql:2:1, that statement cancelled and not applied")
    assert ("an interrupted CREATE INDEX CONCURRENTLY leaves the index hot_v INVALID: the next "
            "migrate drops and rebuilds it") in err
    assert index_valid(project.url, "hot_v") is False
    again = project.run("migrate")
    assert again.returncode == 0, again.stderr
    assert "index hot_v is INVALID" in again.stdout
    assert index_valid(project.url, "hot_v") is True
