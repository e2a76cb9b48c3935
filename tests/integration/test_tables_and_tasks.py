"""check-tables, the Invoke tasks and their argument errors, against a real PostgreSQL."""

from __future__ import annotations

import json

import psycopg

from tests.support.base import EXAMPLE_MIGRATIONS
from tests.support.pg import PASSWORD


def test_check_tables_prefix_is_literal_so_aix_and_air_tables_are_not_listed(project, db):
    for name in ("ai_cost_thresholds", "ai_usage", "aix_notes", "air_quality", "users"):
        db.execute(f"CREATE TABLE {name} (id int)")
    db.execute("CREATE SCHEMA other")
    db.execute("CREATE TABLE other.ai_elsewhere (id int)")
    result = project.run("check-tables", "--prefix", "ai_")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ai_cost_thresholds", "ai_usage", "2 table(s) in schema public starting with 'ai_'"]
    as_json = json.loads(project.run("check-tables", "--prefix", "ai_", "--json").stdout)
    assert as_json["tables"] == ["ai_cost_thresholds", "ai_usage"]
    other = project.run("check-tables", "--prefix", "ai_", "--schema", "other")
    assert other.stdout.splitlines()[0] == "ai_elsewhere"


def test_check_tables_exits_3_when_nothing_matches(project):
    result = project.run("check-tables", "--prefix", "zz_")
    assert result.returncode == 3
    assert result.stderr.strip() == "check-tables: no table in schema public starting with 'zz_'"


def test_check_tables_on_an_unknown_schema_is_an_argument_error(project):
    result = project.run("check-tables", "--schema", "nope")
    assert result.returncode == 2
    assert result.stderr.strip() == "--schema: schema 'nope' does not exist in the database"


def test_check_tables_expected_names_each_missing_table_and_the_file_that_creates_it(project, db):
    project.copy_examples()
    assert project.run("migrate").returncode == 0
    db.execute("DROP TABLE ai_cost_thresholds CASCADE")
    result = project.invoke("check-tables", "--expected")
    assert result.returncode == 3
    assert ("MISSING ai_cost_thresholds  (created by 020_ai_cost_management_system.sql)"
            in result.stdout)
    assert result.stderr.strip() == (
        "check-tables: 1 expected table(s) missing in schema public:\n"
        "  ai_cost_thresholds (created by 020_ai_cost_management_system.sql)")
    as_json = json.loads(project.run("check-tables", "--expected", "--json").stdout)
    assert as_json["missing"] == ["ai_cost_thresholds"]
    db.execute((EXAMPLE_MIGRATIONS / "020_ai_cost_management_system.sql").read_text())
    ok = project.invoke("check-tables", "--expected", "--prefix", "ai_")
    assert ok.returncode == 0, ok.stderr
    assert all(line.startswith("ok ") for line in ok.stdout.splitlines()[:-1])


def test_invoke_migrate_and_status_work_like_the_module(project):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    result = project.invoke("migrate", "--wait", "5")
    assert result.returncode == 0, result.stderr
    assert "migration 001_a.sql applied in" in result.stdout
    status = project.invoke("migrate-status", "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["migrations"]
    assert [(r["filename"], r["state"]) for r in rows] == [("001_a.sql", "applied")]
    assert rows[0]["execution_ms"] is not None


def test_new_migration_writes_the_next_numbered_file(project):
    project.write("022_ai_monitoring_system.sql", "CREATE TABLE IF NOT EXISTS m (id int);\n")
    result = project.invoke("new-migration", "user_roles_system")
    assert result.returncode == 0, result.stderr
    created = project.migrations / "023_user_roles_system.sql"
    assert result.stdout.strip().endswith("023_user_roles_system.sql")
    assert "CREATE TABLE IF NOT EXISTS user_roles_system" in created.read_text()
    bad = project.invoke("new-migration", "User Roles")
    assert bad.returncode == 2
    assert "NAME: 'User Roles' must be lower-case letters" in bad.stderr


def test_redo_migration_needs_yes_and_then_reruns_the_file_in_one_transaction(project, db):
    project.write("001_seed.sql", "CREATE TABLE IF NOT EXISTS seed (v int);\n"
                                  "INSERT INTO seed VALUES (1);\n")
    assert project.run("migrate").returncode == 0
    refused = project.invoke("redo-migration", "001_seed.sql")
    assert refused.returncode == 5
    assert "add --yes to confirm" in refused.stderr
    assert db.execute("SELECT count(*) FROM seed").fetchone()[0] == 1
    done = project.invoke("redo-migration", "001_seed.sql", "--yes")
    assert done.returncode == 0, done.stderr
    assert "migration 001_seed.sql re-applied in" in done.stdout
    assert db.execute("SELECT count(*) FROM seed").fetchone()[0] == 2
    assert project.history() == ["001_seed.sql"]
    unknown = project.invoke("redo-migration", "999_nope.sql", "--yes")
    assert unknown.returncode == 2
    assert "FILE: '999_nope.sql' is not a migration in" in unknown.stderr


def test_a_failed_redo_keeps_the_original_history_row(project, db):
    path = project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    assert project.run("migrate", "--accept-drift").returncode == 0
    path.write_text("CREATE TABLE IF NOT EXISTS a (id int);\nSELECT 1/0;\n")
    result = project.invoke("redo-migration", "001_a.sql", "--yes")
    assert result.returncode == 1
    # No server position for a runtime error: the failing statement's start is reported.
    assert "001_a.sql:2:1: division by zero (22012)" in result.stderr
    assert project.history() == ["001_a.sql"]


def test_lint_migrations_reports_errors_with_exit_3_and_json(project):
    project.write("001_bad.sql", "CREATE TABLE t (id int);\n")
    result = project.invoke("lint-migrations")
    assert result.returncode == 3
    assert "001_bad.sql:1:1: error:" in result.stdout
    assert "[create-table-not-idempotent]" in result.stdout
    assert "lint: 1 error(s), 1 warning(s)" in result.stdout
    findings = json.loads(project.invoke("lint-migrations", "--json").stdout)
    assert {f["code"] for f in findings} == {"create-table-not-idempotent", "missing-rollback"}


def test_the_example_schema_lints_clean(project):
    project.copy_examples()
    result = project.invoke("lint-migrations")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("lint: 0 error(s), 0 warning(s)")


# Bad input to the runner: each a clear message naming the file, setting or argument,
# a documented exit code, and nothing applied.
def test_bad_arguments_and_files_are_rejected_before_anything_is_applied(project):
    project.write("001_ok.sql", "CREATE TABLE IF NOT EXISTS ok_t (id int);\n")
    cases = [
        (("migrate", "--lock-wait", "0"), {}, 2,
         "--lock-wait: must be greater than 0 (got 0)"),
        (("migrate", "--wait", "-1"), {}, 2, "--wait: must be 0 or more seconds (got -1)"),
        (("migrate", "--wait", "soon"), {}, 2, "argument --wait: invalid float value: 'soon'"),
        (("migrate",), {"MIGRATION_TABLE": "bad name"}, 2,
         "MIGRATION_TABLE: 'bad name' is not a valid table name"),
        (("migrate",), {"MIGRATIONS_DIR": "/nonexistent/dir"}, 2,
         "MIGRATIONS_DIR: /nonexistent/dir is not a directory"),
        (("migrate",), {"DATABASE_URL": ""}, 2, "DATABASE_URL: missing;"),
        (("migrate",), {"DEPLOY_ENV": "qa"}, 2, "DEPLOY_ENV: 'qa' is not one of"),
    ]
    for args, env, code, message in cases:
        result = project.run(*args, env=env)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    invoke_bad = project.invoke("migrate", "--wait", "soon")
    assert invoke_bad.returncode == 2
    assert invoke_bad.stderr.strip() == "--wait: 'soon' is not a number of seconds"
    assert project.tables() == set()


def test_invalid_files_stop_the_run_before_the_valid_ones_are_applied(project):
    project.write("001_ok.sql", "CREATE TABLE IF NOT EXISTS ok_t (id int);\n")
    project.write("002_Bad-Name.sql", "SELECT 1;\n")
    project.write("003_empty.sql", "\n")
    project.write("004_a.sql", "SELECT 1;\n")
    project.write("04_b.sql", "SELECT 1;\n")
    project.write("005_latin1.sql", b"-- \xe9\nSELECT 1;\n")
    project.write("006_dir.sql", "-- migrate: sometimes\nSELECT 1;\n")
    result = project.run("migrate")
    assert result.returncode == 3
    err = result.stderr
    assert err.startswith("5 invalid migration files; nothing was applied:")
    assert "002_Bad-Name.sql: file name must look like NNN_lower_snake_name.sql" in err
    assert "003_empty.sql: empty file" in err
    assert "number 4 is used by more than one file: 004_a.sql, 04_b.sql" in err
    assert "005_latin1.sql:1: not valid UTF-8" in err
    assert "006_dir.sql:1: unknown directive value 'sometimes'" in err
    assert project.tables() == set()


def test_a_table_that_is_not_a_history_table_is_refused(project, db):
    db.execute("CREATE TABLE migration_history (x int)")
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    result = project.run("migrate")
    assert result.returncode == 1
    assert ("MIGRATION_TABLE: table migration_history exists but has no 'filename' column"
            in result.stderr)


def test_a_custom_history_table_in_its_own_schema(project, db):
    db.execute("CREATE SCHEMA ops")
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    result = project.run("migrate", env={"MIGRATION_TABLE": "ops.schema_history"})
    assert result.returncode == 0, result.stderr
    with psycopg.connect(project.url) as conn:
        assert conn.execute("SELECT filename FROM ops.schema_history").fetchall() == [
            ("001_a.sql",)]
    assert PASSWORD not in result.stdout + result.stderr


def test_invalid_files_are_reported_at_once_even_while_the_database_is_unreachable(project):
    import time

    project.write("001_empty.sql", "\n")
    started = time.monotonic()
    result = project.run("migrate", "--wait", "30",
                         env={"DATABASE_URL": f"postgresql://u:{PASSWORD}@127.0.0.1:1/x"})
    assert result.returncode == 3
    assert "001_empty.sql: empty file" in result.stderr
    assert time.monotonic() - started < 10
    assert PASSWORD not in result.stderr


def test_the_backend_health_check_names_each_missing_table_on_the_connection_it_keeps(project, db):
    # What /health runs on every check, on its one kept connection (deploy/stack/backend).
    from deploy.migrate.files import discover
    from deploy.migrate.tables import expected_tables, missing_expected_tables

    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS ai_a (id int);\n"
                               "CREATE TABLE IF NOT EXISTS audit.ai_b (id int);\n")
    expected = expected_tables(discover(project.migrations))
    db.execute("CREATE SCHEMA audit")
    assert missing_expected_tables(db, expected) == [("ai_a", "001_a.sql"),
                                                     ("audit.ai_b", "001_a.sql")]
    db.execute("CREATE TABLE ai_a (id int)")
    db.execute("CREATE TABLE audit.ai_b (id int)")
    assert missing_expected_tables(db, expected) == []
