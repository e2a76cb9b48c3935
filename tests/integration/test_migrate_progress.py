"""The runner's progress: long work shows it, one plain line at a time.

The intervals are data (deploy/migrate/policy.py, Progress); these tests pass short ones to the
real runner, in-process, against a real PostgreSQL.
"""

from __future__ import annotations

import re
import threading
import time

import psycopg

from deploy.migrate.lock import LOCK_CLASS, lock_key
from deploy.migrate.policy import Progress
from deploy.migrate.runner import migrate
from deploy.settings import load_settings

FAST = Progress(after=0.4, every=0.4, lock_every=0.4)


def settings_for(project):
    return load_settings(environ=project.env, cwd=project.root)


def test_each_file_is_named_before_it_runs_and_a_long_one_reports_it_is_still_running(project):
    project.write("001_quick.sql", "CREATE TABLE IF NOT EXISTS q (id int);\n")
    project.write("002_long.sql", "SELECT pg_sleep(1.5);\n")
    lines: list[str] = []
    migrate(settings_for(project), out=lines.append, progress=FAST)
    assert lines[:3] == ["migration history: created history table migration_history",
                         "migration 001_quick.sql running",
                         lines[2]]
    assert re.fullmatch(r"migration 001_quick\.sql applied in \d+ ms", lines[2])
    assert lines[3] == "migration 002_long.sql running"
    still = [line for line in lines if "still running" in line]
    assert len(still) >= 2, lines
    assert all(re.fullmatch(r"migration 002_long\.sql still running, \d+ s", line)
               for line in still), still
    assert lines.index(still[-1]) < next(i for i, line in enumerate(lines)
                                         if line.startswith("migration 002_long.sql applied"))
    assert not any("\r" in line for line in lines)


def test_waiting_for_the_migration_lock_names_the_holder_at_once_and_every_few_seconds(project):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    holder = psycopg.connect(project.url, autocommit=True, application_name="the other runner")
    holder.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key("migration_history")))
    pid = holder.info.backend_pid
    threading.Timer(1.5, holder.close).start()
    lines: list[str] = []
    started = time.monotonic()
    migrate(settings_for(project), lock_wait=30, out=lines.append, progress=FAST)
    assert time.monotonic() - started < 10
    waits = [line for line in lines if line.startswith("migration lock:")]
    assert waits[0].startswith("migration lock: migration_history is being migrated by pid "
                               f"{pid} (application_name 'the other runner'")
    assert waits[0].endswith("; waiting for it, up to 30 s (--lock-wait)")
    assert len(waits) >= 4, waits  # the first, at least two repeats, then acquired
    assert all(line.startswith("migration lock: still waiting, ") and f"held by pid {pid}" in line
               for line in waits[1:-1]), waits
    assert re.fullmatch(r"migration lock: acquired after \d+\.\d s", waits[-1])
    assert "migration 001_a.sql running" in lines


def test_a_long_statement_waiting_for_a_lock_says_who_it_waits_for(project):
    project.write("001_hot.sql", "CREATE TABLE IF NOT EXISTS hot (id int);\n")
    migrate(settings_for(project), out=lambda line: None)
    project.write("002_idx.sql", "-- migrate: no-transaction\n"
                                 "CREATE INDEX CONCURRENTLY IF NOT EXISTS hot_id ON hot (id);\n")
    old = psycopg.connect(project.url, autocommit=True, application_name="old snapshot")
    old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    old.execute("SELECT count(*) FROM hot").fetchone()
    threading.Timer(1.5, old.close).start()
    lines: list[str] = []
    migrate(settings_for(project), out=lines.append, progress=FAST)
    still = [line for line in lines if "still running" in line]
    assert still, lines
    assert re.fullmatch(r"migration 002_idx\.sql still running, \d+ s; waiting for \w+ on "
                        r"\S+ held by pid \d+ \(application_name 'old snapshot', .*\)", still[0])
