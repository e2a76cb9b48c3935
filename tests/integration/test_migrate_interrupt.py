"""A runner stopped by a signal never lets a second one run the same file.

Real PostgreSQL, real processes, real signals. The file under test records in `runlog`,
as its first statement, how many OTHER sessions are running its body at that moment: a
second runner must only ever see 0 (it waited for the first's server-side work).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

import psycopg
import pytest

from tests.support.base import ROOT, invoke_argv
from tests.support.sessions import slow_backend

SETUP = """
CREATE TABLE IF NOT EXISTS runlog (pid int, what text, others int, at timestamptz);
CREATE TABLE IF NOT EXISTS sleep_control (seconds float8);
INSERT INTO sleep_control SELECT 30 WHERE NOT EXISTS (SELECT 1 FROM sleep_control);
"""
# The marker is spelled apart in the LIKE pattern so that the counting query never counts
# itself, nor the test's own polling.
START = ("INSERT INTO runlog SELECT pg_backend_pid(), 'start', (SELECT count(*) FROM "
         "pg_stat_activity WHERE query LIKE '%slow_' || 'marker%' AND state = 'active' "
         "AND pid <> pg_backend_pid()), clock_timestamp();\n")
BODY = "SELECT pg_sleep((SELECT seconds FROM sleep_control)) AS slow_marker;\n"
END = "INSERT INTO runlog SELECT pg_backend_pid(), 'end', 0, clock_timestamp();\n"
TRANSACTIONAL = (START + "CREATE TYPE mood AS ENUM ('ok', 'sad');\n"
                 "CREATE TABLE made_by_slow (id int, m mood);\n"
                 "INSERT INTO made_by_slow VALUES (1, 'ok');\n" + BODY + END)
NO_TRANSACTION = "-- migrate: no-transaction\n" + START + BODY + END
EXIT = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGKILL: -signal.SIGKILL}


def gone_within(url: str, pid: int, seconds: float) -> float | None:
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - started < seconds:
            if not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                                (pid,)).fetchone():
                return time.monotonic() - started
            time.sleep(0.02)
    return None


def set_sleep(url: str, seconds: float) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE sleep_control SET seconds = %s", (seconds,))


def runlog(url: str) -> list[tuple[int, str, int]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT pid, what, others FROM runlog ORDER BY at").fetchall()


@pytest.mark.parametrize("transactional", [True, False], ids=["transactional", "no-transaction"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_signalled_runner_rolls_back_and_a_second_runner_applies_the_file_exactly_once(
        project, signum, transactional):
    project.write("001_setup.sql", SETUP)
    assert project.run("migrate").returncode == 0
    project.write("002_slow.sql", TRANSACTIONAL if transactional else NO_TRANSACTION)

    first = project.popen("migrate")
    backend = slow_backend(project.url)
    set_sleep(project.url, 1)  # what the second runner's run of the body sleeps
    first.send_signal(signum)
    second = project.popen("migrate", "--lock-wait", "60")
    out, err = first.communicate(timeout=30)
    assert first.returncode == EXIT[signum], err
    # The server ends the first runner's work promptly, also after SIGKILL (the client is
    # checked every second), and only then releases the migration lock.
    assert gone_within(project.url, backend, 10) is not None, "its session kept running"
    second_out, second_err = second.communicate(timeout=60)
    assert second.returncode == 0, second_err

    name = signal.Signals(signum).name
    if signum == signal.SIGKILL:
        assert err == ""
    elif transactional:
        assert err == (f"migrate: interrupted ({name}): 002_slow.sql rolled back, nothing of it "
                       "applied; nothing else was applied in this run\n")
    else:
        assert err == (f"migrate: interrupted ({name}): 002_slow.sql stopped at "
                       "migrations/002_slow.sql:3:1, that statement cancelled and not applied; "
                       "its statements before it stay applied, no history row written, the "
                       "next migrate re-runs the file from the top; nothing else was applied in "
                       "this run\n")
    assert "migration 002_slow.sql running" in out

    # Applied exactly once, by the second runner, which never ran the body beside the first.
    assert project.history() == ["001_setup.sql", "002_slow.sql"]
    assert "migration 002_slow.sql applied in" in second_out
    log = runlog(project.url)
    starts = [row for row in log if row[1] == "start"]
    ends = [row for row in log if row[1] == "end"]
    assert [others for _, _, others in starts] == [0] * len(starts), log
    assert len(ends) == 1, log
    if transactional:
        assert starts == [(ends[0][0], "start", 0)]  # nothing of the first run is left
        with psycopg.connect(project.url) as conn:
            assert conn.execute("SELECT count(*) FROM made_by_slow").fetchone()[0] == 1
    else:
        # The first runner's statement before the cancelled one stays applied, as documented.
        assert len(starts) == 2 and starts[0][0] == backend
    assert "duplicate key" not in second_err


def test_a_signal_while_waiting_for_the_migration_lock_stops_cleanly(project):
    from deploy.migrate.lock import LOCK_CLASS, lock_key

    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    with psycopg.connect(project.url, autocommit=True, application_name="other") as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)",
                       (LOCK_CLASS, lock_key("migration_history")))
        proc = project.popen("migrate", "--lock-wait", "60")
        line = proc.stdout.readline()
        assert line.startswith("migration lock: migration_history is being migrated by pid "
                               f"{holder.info.backend_pid} (application_name 'other'"), line
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 143
    assert err == ("migrate: interrupted (SIGTERM) while waiting for the migration lock: "
                   "nothing applied\n")
    assert project.tables() == set()


def test_a_file_that_committed_before_the_cancel_took_effect_is_reported_as_applied(project):
    # The file swallows the cancel itself, so the server commits it anyway.
    project.write("001_stubborn.sql",
                  "CREATE TABLE IF NOT EXISTS stubborn (id int);\n"
                  "DO $$ BEGIN PERFORM pg_sleep(20) AS slow_marker; EXCEPTION WHEN "
                  "query_canceled THEN RAISE NOTICE 'cancel ignored'; END $$;\n"
                  "INSERT INTO stubborn VALUES (1);\n")
    project.write("002_next.sql", "CREATE TABLE IF NOT EXISTS next_t (id int);\n")
    proc = project.popen("migrate")
    slow_backend(project.url)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert err == ("migrate: interrupted (SIGTERM): 001_stubborn.sql WAS applied (it committed "
                   "before the cancel took effect); stopped before 002_next.sql\n")
    assert project.history() == ["001_stubborn.sql"]
    assert "next_t" not in project.tables()


def test_invoke_migrate_handles_sigterm_the_same_way(project):
    project.write("001_slow.sql", "CREATE TABLE IF NOT EXISTS s (id int);\n"
                                  "SELECT pg_sleep(30) AS slow_marker;\n")
    proc = subprocess.Popen(invoke_argv("migrate"), cwd=project.root, env=project.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    slow_backend(project.url)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert err == ("migrate: interrupted (SIGTERM): 001_slow.sql rolled back, nothing of it "
                   "applied; nothing else was applied in this run\n")
    assert project.tables() == {"migration_history"}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_container_entrypoint_forwards_the_stop_signal_to_the_runner(project, signum):
    # What `docker stop` does: tini forwards SIGTERM to the entrypoint's shell only.
    project.write("001_slow.sql", "CREATE TABLE IF NOT EXISTS s (id int);\n"
                                  "SELECT pg_sleep(30) AS slow_marker;\n")
    shell = subprocess.Popen(["sh", str(ROOT / "deploy/stack/backend/entrypoint.sh")],
                             cwd=project.root, env=project.env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
    backend = slow_backend(project.url)
    shell.send_signal(signum)
    out, err = shell.communicate(timeout=30)
    code = 128 + signum
    assert shell.returncode == code, err
    name = signal.Signals(signum).name
    assert err.splitlines() == [
        f"migrate: interrupted ({name}): 001_slow.sql rolled back, nothing of it applied; "
        "nothing else was applied in this run",
        f"backend: migrations failed (exit {code}); not starting the server",
    ]
    assert gone_within(project.url, backend, 5) is not None
    assert project.tables() == {"migration_history"}
    assert not re.search(r"starting the server\n", out)


def test_a_statement_that_reached_the_server_after_the_signal_is_cancelled_once(project):
    # The handler ran before the statement was sent (so its cancel would have been ignored):
    # the watcher's poll() cancels the statement once it is on the server, and only once.
    import threading

    from deploy.migrate.interrupt import Interrupted, SignalGuard

    guard = SignalGuard("migrate")  # not entered: the signal is simulated
    with psycopg.connect(project.url, autocommit=True) as conn, guard.deferred():
        def late_signal():
            time.sleep(0.3)
            guard.signum = signal.SIGTERM
            for _ in range(10):  # as the watcher does, every few tens of milliseconds
                guard.poll()
                time.sleep(0.05)

        threading.Thread(target=late_signal, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            with guard.statement(conn, lambda: "unused"):
                conn.execute("DO $$ BEGIN PERFORM pg_sleep(10); EXCEPTION WHEN query_canceled "
                             "THEN PERFORM pg_sleep(0.8); RAISE; END $$")
        # Cancelled at 0.3 s; the block caught it and slept 0.8 s more without a second
        # cancel (which would have ended it sooner), then re-raised.
        assert 1.0 < time.monotonic() - started < 4
        with pytest.raises(Interrupted) as info:  # after a signal, no statement starts
            with guard.statement(conn, lambda: "before 002_x.sql: nothing of it applied"):
                conn.execute("SELECT 1")
    assert str(info.value) == ("migrate: interrupted (SIGTERM) before 002_x.sql: nothing of it "
                               "applied")
    assert info.value.exit_code == 143
