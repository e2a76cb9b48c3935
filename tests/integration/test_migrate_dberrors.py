"""Every database failure the runner meets is one clear line with its exit code.

A missing schema of MIGRATION_TABLE and a role without privileges are configuration
(exit 2, naming what to do); any other database error is exit 1. Real roles, real grants.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.conftest import PASSWORD


@pytest.fixture
def role(project, pg_admin_url):
    """A login role with no privileges on anything the runner uses; its URL."""
    name = "r_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'")
    with psycopg.connect(project.url, autocommit=True) as owner:
        # PostgreSQL 15's default already; explicit so the test means the same on 13/14.
        owner.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    parts = urlsplit(project.url)
    url = urlunsplit(parts._replace(netloc=f"{name}:{PASSWORD}@{parts.hostname}:{parts.port}"))
    yield name, url
    with psycopg.connect(project.url, autocommit=True) as owner:
        owner.execute(f"DROP OWNED BY {name}")
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f"DROP ROLE {name}")


def one_line(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_missing_schema_in_migration_table_is_a_configuration_error(project):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    expected = ("MIGRATION_TABLE: schema 'nosuch' of nosuch.hist does not exist in the database; "
                "create it (CREATE SCHEMA nosuch) or set MIGRATION_TABLE to a table in an "
                "existing schema (the default is migration_history)")
    for result in (project.run("migrate", env={"MIGRATION_TABLE": "nosuch.hist"}),
                   project.invoke("migrate", env={"MIGRATION_TABLE": "nosuch.hist"}),
                   project.run("migrate-status", env={"MIGRATION_TABLE": "nosuch.hist"}),
                   project.invoke("migrate-status", env={"MIGRATION_TABLE": "nosuch.hist"})):
        assert result.returncode == 2
        assert one_line(result) == expected
    assert project.tables() == set()


def test_migrate_without_create_on_the_schema_names_the_privilege(project, role):
    name, url = role
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    result = project.run("migrate", env={"DATABASE_URL": url})
    assert result.returncode == 2
    assert one_line(result) == (
        f"migrate: permission denied for schema public (42501): role '{name}' lacks a "
        "privilege: migrate needs USAGE, CREATE on schema public (CREATE to create "
        "migration_history on a first run) and SELECT, INSERT, UPDATE on migration_history, "
        f"plus what the migration files do; grant it (GRANT USAGE, CREATE ON SCHEMA public TO "
        f"{name}) or connect as a role that has it (e.g. the owner of the schema)")
    assert PASSWORD not in result.stderr


def test_every_history_command_names_the_privilege_it_lacks(project, role):
    name, url = role
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    project.write("002_b.sql", "CREATE TABLE IF NOT EXISTS b (id int);\n")
    assert project.run("migrate").returncode == 0  # as the owner
    project.write("003_c.sql", "CREATE TABLE IF NOT EXISTS c (id int);\n")
    env = {"DATABASE_URL": url}
    cases = [
        (project.run("migrate", env=env), "migrate",
         "GRANT SELECT, INSERT, UPDATE ON migration_history"),
        (project.run("migrate-status", env=env), "migrate-status",
         "GRANT SELECT ON migration_history"),
        (project.invoke("migrate-status", env=env), "migrate-status",
         "GRANT SELECT ON migration_history"),
        (project.invoke("redo-migration", "001_a.sql", "--yes", env=env), "redo-migration",
         "GRANT SELECT, INSERT, DELETE ON migration_history"),
        (project.invoke("forget-migration", "001_a.sql", "--yes", env=env), "forget-migration",
         "GRANT SELECT, DELETE ON migration_history"),
    ]
    for result, command, grant in cases:
        assert result.returncode == 2, (command, result.stderr)
        line = one_line(result)
        assert line.startswith(f"{command}: permission denied for table migration_history "
                               f"(42501): role '{name}' lacks a privilege: {command} needs "), line
        assert f"grant it ({grant} TO {name})" in line, line
    assert project.history() == ["001_a.sql", "002_b.sql"]
    assert "c" not in project.tables()


def test_a_file_the_role_may_not_run_fails_with_exit_2_at_its_line(project, role, db):
    name, url = role
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    assert project.run("migrate").returncode == 0
    db.execute(f"GRANT SELECT, INSERT, UPDATE ON migration_history TO {name}")
    db.execute(f"GRANT USAGE ON SEQUENCE migration_history_id_seq TO {name}")
    project.write("002_b.sql", "\nCREATE TABLE IF NOT EXISTS b (id int);\n")
    result = project.run("migrate", env={"DATABASE_URL": url})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "migrations/002_b.sql:2:28: permission denied for schema public (42501)"
    assert ("the role lacks a privilege this file needs: grant it, or run the migrations as the "
            "owner of the objects they change") in lines


def test_check_tables_without_connect_on_the_database_names_the_grant(project, role, db):
    name, url = role
    database = urlsplit(project.url).path.lstrip("/")
    db.execute(f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC')
    result = project.run("check-tables", "--wait", "30", env={"DATABASE_URL": url})
    assert result.returncode == 2  # at once: waiting does not grant privileges
    line = one_line(result)
    assert line.startswith("database: cannot connect to postgresql://"), line
    assert f"permission denied for database \"{database}\"" in line
    assert (f"role '{name}' needs CONNECT on database {database} (GRANT CONNECT ON DATABASE "
            f"{database} TO {name})") in line
    assert PASSWORD not in result.stderr


def test_any_other_database_error_is_one_line_with_exit_1(project, db):
    project.write("001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    database = urlsplit(project.url).path.lstrip("/")
    db.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    result = project.run("migrate")
    assert result.returncode == 1
    assert one_line(result) == ("migrate: database error: cannot execute CREATE TABLE in a "
                                "read-only transaction (25006)")
