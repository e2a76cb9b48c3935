"""Drift and redo settle — accepting is recorded, forgetting is on purpose."""

from __future__ import annotations

import json

import psycopg


def test_accepting_a_deleted_file_is_recorded_so_later_runs_pass(project):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    gone = project.write("002_gone.sql", "CREATE TABLE IF NOT EXISTS g (id int);\n")
    assert project.run("migrate").returncode == 0
    gone.unlink()
    assert project.run("migrate").returncode == 3
    accepted = project.run("migrate", "--accept-drift")
    assert accepted.returncode == 0, accepted.stderr
    assert ("migration 002_gone.sql: accepted drift, file is gone; history row kept and marked "
            "removed (`invoke forget-migration 002_gone.sql --yes` deletes it)") in accepted.stdout
    # Every later run passes without the flag: the container entrypoint starts again.
    again = project.run("migrate")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "migrations: up to date, nothing to apply (1 applied)"
    status = project.run("migrate-status", "--json")
    assert status.returncode == 0, status.stderr
    rows = {r["filename"]: r for r in json.loads(status.stdout)["migrations"]}
    assert rows["002_gone.sql"]["state"] == "removed"
    assert project.invoke("migrate-status").returncode == 0
    with psycopg.connect(project.url) as conn:
        assert conn.execute("SELECT filename FROM migration_history WHERE missing_accepted_at "
                            "IS NOT NULL").fetchall() == [("002_gone.sql",)]


def test_a_history_table_of_the_previous_version_gets_the_new_column_in_place(project, db):
    db.execute("CREATE TABLE migration_history (id BIGSERIAL PRIMARY KEY, filename VARCHAR(255) "
               "NOT NULL UNIQUE, checksum TEXT, executed_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
               "execution_ms INTEGER, applied_by TEXT)")
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    result = project.run("migrate")
    assert result.returncode == 0, result.stderr
    assert ("migration history: adopted the existing history table migration_history: added "
            "column(s) missing_accepted_at") in result.stdout
    assert project.history() == ["001_a.sql"]


def test_forget_migration_is_guarded_and_deletes_one_history_row(project):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    gone = project.write("002_gone.sql", "CREATE TABLE IF NOT EXISTS g (id int);\n")
    assert project.run("migrate").returncode == 0
    gone.unlink()
    refused = project.invoke("forget-migration", "002_gone.sql")
    assert refused.returncode == 5
    assert refused.stderr.strip() == (
        "forget-migration: deleting the history row of 002_gone.sql makes the runner forget that "
        "it was applied (the schema it changed stays as it is); add --yes to confirm")
    assert project.history() == ["001_a.sql", "002_gone.sql"]
    done = project.invoke("forget-migration", "002_gone.sql", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("migration history: forgot 002_gone.sql (applied ")
    assert "the schema it changed is left as it is" in done.stdout
    assert project.history() == ["001_a.sql"]
    assert "g" in project.tables()
    assert project.run("migrate-status").returncode == 0  # no drift left
    again = project.invoke("forget-migration", "002_gone.sql", "--yes")
    assert again.returncode == 3
    assert again.stderr.strip() == (
        "forget-migration: 002_gone.sql has no row in the history table migration_history; "
        "nothing to forget (see `invoke migrate-status`)")
    bad = project.invoke("forget-migration", "notes.txt", "--yes")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("FILE: 'notes.txt' is not a migration file name "
                                  "(NNN_name.sql)")


def test_forgetting_a_row_whose_file_is_there_makes_the_next_migrate_apply_it_again(project, db):
    project.write("001_seed.sql", "CREATE TABLE IF NOT EXISTS seed (v int);\n"
                                  "INSERT INTO seed VALUES (1);\n")
    assert project.run("migrate").returncode == 0
    done = project.invoke("forget-migration", "migrations/001_seed.sql", "--yes")
    assert done.returncode == 0, done.stderr
    assert ("migration 001_seed.sql: its file migrations/001_seed.sql is still there, so the "
            "next migrate applies it again") in done.stdout
    assert project.run("migrate").returncode == 0
    assert db.execute("SELECT count(*) FROM seed").fetchone()[0] == 2


def test_redo_of_a_never_applied_file_refuses_with_exit_3_and_applies_nothing(project):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    assert project.run("migrate").returncode == 0
    project.write("002_b.sql", "CREATE TABLE IF NOT EXISTS b (id int);\n")
    project.write("003_c.sql", "CREATE TABLE IF NOT EXISTS c (id int);\n")
    result = project.invoke("redo-migration", "003_c.sql", "--yes")
    assert result.returncode == 3
    assert result.stderr.strip() == (
        "redo-migration: 003_c.sql has never been applied (no row in migration_history); "
        "nothing to redo: run `invoke migrate` to apply it in order")
    assert project.history() == ["001_a.sql"]
    assert not {"b", "c"} & project.tables()
    after = project.run("migrate")  # not broken: both apply, in order
    assert after.returncode == 0, after.stderr
    assert project.history() == ["001_a.sql", "002_b.sql", "003_c.sql"]


def test_status_json_shows_the_recorded_and_the_current_checksum_of_a_changed_file(project):
    import hashlib

    before = b"CREATE TABLE IF NOT EXISTS a (id int);\n"
    after = b"CREATE TABLE IF NOT EXISTS a (id int, extra int);\n"
    path = project.write("001_a.sql", before)
    assert project.run("migrate").returncode == 0
    path.write_bytes(after)
    status = project.run("migrate-status", "--json")
    assert status.returncode == 3
    (row,) = json.loads(status.stdout)["migrations"]
    assert row["state"] == "changed"
    assert row["recorded_checksum"] == hashlib.sha256(before).hexdigest()
    assert row["checksum"] == hashlib.sha256(after).hexdigest()
