"""The migration runner against a real PostgreSQL, driven through `python -m deploy`."""

from __future__ import annotations

import json
import os
import signal
import time

import psycopg

from tests.support.base import EXAMPLE_MIGRATIONS, free_port
from tests.support.pg import PASSWORD

EXAMPLE_FILES = sorted(p.name for p in EXAMPLE_MIGRATIONS.glob("*.sql"))


def test_fresh_apply_of_the_example_schema_then_a_rerun_applies_nothing(project):
    project.copy_examples()
    first = project.run("migrate")
    assert first.returncode == 0, first.stderr
    assert project.history() == EXAMPLE_FILES
    for name in EXAMPLE_FILES:
        assert f"migration {name} applied in " in first.stdout
    assert f"migrations: applied {len(EXAMPLE_FILES)} file(s)" in first.stdout
    assert "ai_cost_thresholds" in project.tables()

    second = project.run("migrate")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == (
        f"migrations: up to date, nothing to apply ({len(EXAMPLE_FILES)} applied)")
    assert project.history() == EXAMPLE_FILES


def test_history_rows_carry_checksum_duration_and_who_applied(project):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    assert project.run("migrate").returncode == 0
    with psycopg.connect(project.url) as conn:
        row = conn.execute("SELECT filename, checksum, execution_ms, applied_by, executed_at "
                           "FROM migration_history").fetchone()
    import hashlib

    assert row[0] == "001_a.sql"
    assert row[1] == hashlib.sha256(b"CREATE TABLE IF NOT EXISTS a (id int);\n").hexdigest()
    assert row[2] >= 0
    assert "@" in row[3]
    assert row[4] is not None


def test_999_is_applied_before_1000(project):
    project.write("1000_second.sql", "INSERT INTO seq_log VALUES ('1000');\n")
    project.write("999_first.sql", "CREATE TABLE IF NOT EXISTS seq_log (v text);\n"
                                   "INSERT INTO seq_log VALUES ('999');\n")
    result = project.run("migrate")
    assert result.returncode == 0, result.stderr
    assert project.history() == ["999_first.sql", "1000_second.sql"]
    assert result.stdout.index("999_first.sql") < result.stdout.index("1000_second.sql")
    with psycopg.connect(project.url) as conn:
        assert [r[0] for r in conn.execute("SELECT v FROM seq_log")] == ["999", "1000"]


def test_a_failing_file_mid_batch_keeps_earlier_files_and_leaves_later_ones_untouched(project):
    project.write("001_first.sql", "CREATE TABLE IF NOT EXISTS first_t (id int);\n")
    project.write("002_broken.sql",
                  "-- ROLLBACK: DROP TABLE IF EXISTS half_t;\n"
                  "CREATE TABLE IF NOT EXISTS half_t (id int);\n"
                  "\n"
                  "CREATE TABLE IF NOT EXISTS other_t (\n"
                  "    id int,\n"
                  "    bad_col NOSUCHTYPE\n"
                  ");\n")
    project.write("003_later.sql", "CREATE TABLE IF NOT EXISTS later_t (id int);\n")
    result = project.run("migrate")
    assert result.returncode == 1
    first_line = result.stderr.splitlines()[0]
    assert first_line.endswith(
        "migrations/002_broken.sql:6:13: type \"nosuchtype\" does not exist (42704)")
    assert "rolled back: nothing from this file was applied" in result.stderr
    # Lists one item per line.
    assert "\napplied in this run and kept:\n  001_first.sql\nnot run:\n  003_later.sql\n" \
        in result.stderr
    assert project.history() == ["001_first.sql"]
    tables = project.tables()
    assert "first_t" in tables
    assert not {"half_t", "other_t", "later_t"} & tables


def test_a_syntax_error_is_reported_at_its_line_and_column(project):
    project.write("020_ai_cost_management_system.sql",
                  "-- ROLLBACK: DROP TABLE IF EXISTS t;\n"
                  "CREATE TABLE IF NOT EXISTS t (id int);\n"
                  "    CREATE TABL x (id int);\n")
    result = project.run("migrate")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].endswith(
        'migrations/020_ai_cost_management_system.sql:3:12: '
        'syntax error at or near "TABL" (42601)')


def test_an_error_inside_a_do_block_points_at_the_line_in_the_file(project):
    project.write("001_do.sql",
                  "CREATE TABLE IF NOT EXISTS d (id int);\n"
                  "DO $$\n"
                  "BEGIN\n"
                  "  IF NOT EXISTS (SELECT 1) THEN\n"
                  "    RAISE NOTICE 'x';\n"
                  "  END IF;\n"
                  "  INSERT INTO no_such_table VALUES (1);\n"
                  "END $$;\n")
    result = project.run("migrate")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].endswith(
        'migrations/001_do.sql:7:15: relation "no_such_table" does not exist (42P01)')
    assert "d" not in project.tables()


def test_eight_runners_started_at_once_apply_every_file_exactly_once(project):
    project.copy_examples()
    # A slow first file makes the runners overlap for real.
    project.write("001_slow.sql", "SELECT pg_sleep(1);\n")
    procs = [project.popen("migrate", "--lock-wait", "60") for _ in range(8)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [o[1] for o in outputs]
    history = project.history()
    assert history == ["001_slow.sql", *EXAMPLE_FILES]
    applied_lines = [line for out, _ in outputs for line in out.splitlines()
                     if " applied in " in line and line.startswith("migration ")]
    assert len(applied_lines) == len(history)


def test_a_runner_killed_during_a_slow_migration_leaves_no_trace_and_the_next_run_completes(
        project):
    project.write("001_slow.sql", "CREATE TABLE IF NOT EXISTS partial_t (id int);\n"
                                  "INSERT INTO partial_t VALUES (1);\n"
                                  "SELECT pg_sleep(30);\n")
    project.write("002_after.sql", "CREATE TABLE IF NOT EXISTS after_t (id int);\n")
    proc = project.popen("migrate")
    deadline = time.monotonic() + 20
    with psycopg.connect(project.url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            busy = conn.execute("SELECT count(*) FROM pg_stat_activity "
                                "WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()"
                                ).fetchone()[0]
            if busy:
                break
            time.sleep(0.05)
        assert busy, "the slow migration never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # The server notices the dead client when its sleep is cancelled or ends; cancel it.
        conn.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                     "WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()")
        for _ in range(100):
            left = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                "query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()"
                                ).fetchone()[0]
            if not left:
                break
            time.sleep(0.05)
    assert "partial_t" not in project.tables()
    with psycopg.connect(project.url) as conn:
        assert conn.execute("SELECT count(*) FROM migration_history").fetchone()[0] == 0
    project.write("001_slow.sql", "CREATE TABLE IF NOT EXISTS partial_t (id int);\n"
                                  "INSERT INTO partial_t VALUES (1);\n")
    result = project.run("migrate", "--lock-wait", "10")
    assert result.returncode == 0, result.stderr
    assert project.history() == ["001_slow.sql", "002_after.sql"]


def test_the_legacy_node_history_table_is_adopted_in_place(project):
    project.copy_examples()
    legacy = [n for n in EXAMPLE_FILES if int(n.split("_")[0]) <= 19]
    with psycopg.connect(project.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE migration_history (id SERIAL PRIMARY KEY, "
                     "filename VARCHAR(255) UNIQUE NOT NULL, "
                     "executed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)")
        for name in legacy:
            conn.execute("INSERT INTO migration_history (filename) VALUES (%s)", (name,))
        # The schema those files made exists already, as the Node runner left it.
        for name in legacy:
            conn.execute((EXAMPLE_MIGRATIONS / name).read_text())
    result = project.run("migrate")
    assert result.returncode == 0, result.stderr
    applied = [line.split()[1] for line in result.stdout.splitlines()
               if line.startswith("migration ") and " applied in " in line]
    assert applied == [n for n in EXAMPLE_FILES if int(n.split("_")[0]) >= 20]
    assert "added column(s) checksum, execution_ms, applied_by" in result.stdout
    assert f"recorded checksums of {len(legacy)} file(s)" in result.stdout
    with psycopg.connect(project.url) as conn:
        ids = conn.execute("SELECT id, filename FROM migration_history ORDER BY id").fetchall()
        assert [f for _, f in ids] == EXAMPLE_FILES
        assert conn.execute("SELECT count(*) FROM migration_history "
                            "WHERE checksum IS NULL").fetchone()[0] == 0
    status = project.run("migrate-status")
    assert status.returncode == 0, status.stderr


def test_an_edited_applied_file_is_drift_status_exits_3_and_migrate_refuses(project):
    path = project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    assert project.run("migrate").returncode == 0
    path.write_text("CREATE TABLE IF NOT EXISTS a (id int, extra int);\n")
    project.write("002_b.sql", "CREATE TABLE IF NOT EXISTS b (id int);\n")

    status = project.run("migrate-status", "--json")
    assert status.returncode == 3
    states = {r["filename"]: r["state"] for r in json.loads(status.stdout)["migrations"]}
    assert states == {"001_a.sql": "changed", "002_b.sql": "pending"}
    assert "changed: 001_a.sql was applied with checksum" in status.stderr

    refused = project.run("migrate")
    assert refused.returncode == 3
    assert "drift: the migration history and the files disagree; nothing was applied" \
        in refused.stderr
    assert "b" not in project.tables()

    accepted = project.run("migrate", "--accept-drift")
    assert accepted.returncode == 0, accepted.stderr
    assert "001_a.sql: accepted drift, recorded checksum" in accepted.stdout
    assert "migration 002_b.sql applied" in accepted.stdout
    assert project.run("migrate-status").returncode == 0


def test_allow_ahead_lets_an_older_release_start_on_a_database_a_newer_one_migrated(project):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    newer = project.write("002_b.sql", "CREATE TABLE IF NOT EXISTS b (id int);\n")
    assert project.run("migrate").returncode == 0
    newer.unlink()  # the older release's files: 002 was applied by the release after it
    plain = project.run("migrate")
    assert plain.returncode == 3
    assert "missing: 002_b.sql is in the history but its file is gone" in plain.stderr
    started = project.run("migrate", "--wait", "5", "--allow-ahead")
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines() == [
        "migrations: the database is ahead of these files: 002_b.sql applied by a newer "
        "release (this release runs on its schema, as after a rollback)",
        "migrations: up to date, nothing to apply (1 applied)"]
    # A gone file below one that is here is still drift: a file was deleted, not a rollback.
    project.write("003_c.sql", "CREATE TABLE IF NOT EXISTS c (id int);\n")
    refused = project.run("migrate", "--allow-ahead")
    assert refused.returncode == 3
    assert "missing: 002_b.sql is in the history but its file is gone" in refused.stderr
    assert "c" not in project.tables()


def test_a_history_row_without_its_file_and_an_out_of_order_file_are_drift(project):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    gone = project.write("005_gone.sql", "CREATE TABLE IF NOT EXISTS g (id int);\n")
    assert project.run("migrate").returncode == 0
    gone.unlink()
    project.write("003_late.sql", "CREATE TABLE IF NOT EXISTS late (id int);\n")
    status = project.run("migrate-status")
    assert status.returncode == 3
    assert "missing: 005_gone.sql is in the history but its file is gone" in status.stderr
    assert ("out of order: 003_late.sql is new but numbered below the last applied "
            "migration (5)") in status.stderr
    lines = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[1:]}
    assert lines == {"001_a.sql": "applied", "003_late.sql": "out-of-order",
                     "005_gone.sql": "missing"}
    assert project.run("migrate").returncode == 3
    accepted = project.run("migrate", "--accept-drift")
    assert accepted.returncode == 0, accepted.stderr
    assert "005_gone.sql: accepted drift, file is gone; history row kept" in accepted.stdout
    assert "late" in project.tables()


def test_dry_run_prints_the_plan_and_applies_nothing(project):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    project.write("002_b.sql",
                  "-- migrate: no-transaction\nCREATE TABLE IF NOT EXISTS b (id int);\n")
    result = project.run("migrate", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "migration 001_a.sql would be applied",
        "migration 002_b.sql would be applied (no-transaction)",
        "migrations: dry run, 2 pending, nothing applied",
    ]
    assert project.tables() == set()


def test_a_no_transaction_file_runs_create_index_concurrently(project):
    project.write("001_t.sql", "CREATE TABLE IF NOT EXISTS t (id int, v text);\n")
    project.write("002_idx.sql", "-- migrate: no-transaction\n"
                                 "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_v ON t (v);\n"
                                 "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_id ON t (id);\n")
    result = project.run("migrate")
    assert result.returncode == 0, result.stderr
    assert "migration 002_idx.sql applied in" in result.stdout
    assert "(no-transaction)" in result.stdout
    with psycopg.connect(project.url) as conn:
        names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes "
                                            "WHERE tablename = 't'")}
    assert names == {"t_v", "t_id"}


def test_a_failing_statement_in_a_no_transaction_file_reports_its_own_line(project):
    project.write("001_idx.sql", "-- migrate: no-transaction\n"
                                 "CREATE TABLE IF NOT EXISTS t (id int);\n"
                                 "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_x ON t (nope);\n")
    result = project.run("migrate")
    assert result.returncode == 1
    # The server gives no position for this error: the failing statement's start is reported.
    assert result.stderr.splitlines()[0].endswith(
        'migrations/001_idx.sql:3:1: column "nope" does not exist (42703)')
    assert "statements before the failing one stay applied" in result.stderr
    assert project.history() == []


def test_a_held_lock_times_out_with_exit_4_naming_the_holder(project):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    from deploy.migrate.lock import LOCK_CLASS, lock_key

    with psycopg.connect(project.url, autocommit=True,
                         application_name="someone else's runner") as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)",
                       (LOCK_CLASS, lock_key("migration_history")))
        pid = holder.info.backend_pid
        started = time.monotonic()
        result = project.run("migrate", "--lock-wait", "1")
        elapsed = time.monotonic() - started
    assert result.returncode == 4
    assert "lock: waited 1s for the migration lock on migration_history; it is held by " \
        f"pid {pid} (application_name \"someone else's runner\"" in result.stderr
    assert "holding it since" in result.stderr
    assert elapsed < 10
    assert project.tables() == set()


def test_wait_retries_an_unreachable_database_then_exits_4_without_the_password(project):
    port = free_port()
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/app"
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    started = time.monotonic()
    result = project.run("migrate", "--wait", "1.5", env={"DATABASE_URL": url})
    elapsed = time.monotonic() - started
    assert result.returncode == 4
    assert result.stderr.startswith(
        f"database: not reachable after waiting 1.5s at postgresql://app:***@127.0.0.1:{port}/app")
    assert "Connection refused" in result.stderr
    assert 1.0 < elapsed < 10
    assert PASSWORD not in result.stdout + result.stderr


def test_no_password_reaches_output_on_failures(project):
    wrong = project.url.replace(PASSWORD, PASSWORD + "x")
    project.write("001_a.sql", "SELECT 1;\n")
    bad_auth = project.run("migrate", env={"DATABASE_URL": wrong})
    assert bad_auth.returncode == 2  # a setting is wrong: waiting will not fix it
    assert "password authentication failed" in bad_auth.stderr
    assert bad_auth.stderr.strip().endswith(
        "check the password (POSTGRES_PASSWORD, or DATABASE_URL when set): a stack's database "
        "keeps the password it was first created with")
    no_db = project.run("migrate-status", env={"DATABASE_URL": project.url + "_nope"})
    assert no_db.returncode == 2
    assert "does not exist; check POSTGRES_USER/POSTGRES_DB (or DATABASE_URL when set)" in \
        no_db.stderr
    refused = project.run("check-tables", env={
        "DATABASE_URL": f"postgresql://u:{PASSWORD}@127.0.0.1:1/x"})
    assert refused.returncode == 1
    ok = project.run("migrate")
    for result in (bad_auth, no_db, refused, ok):
        assert PASSWORD not in result.stdout + result.stderr
    assert ":***@" in bad_auth.stderr
