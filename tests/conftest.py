"""Shared fixtures: a real PostgreSQL server, one fresh database per test, a project dir.

TEST_DATABASE_URL (an admin URL) is used when set; otherwise a throwaway cluster is
initdb'd from the local PostgreSQL binaries into a temp dir, on a free port, with a
password (so redaction is tested for real), and removed afterwards (tests/support/pg.py).
"""

from __future__ import annotations

import os
import pwd
import tempfile
import uuid

import psycopg
import pytest

from tests.support.base import ROOT
from tests.support.pg import PASSWORD, Cluster, pg_bindir, with_database
from tests.support.project import Project


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    if pg_bindir() is None:
        pytest.fail("PostgreSQL server binaries (initdb) not found: run `bash .ci/provision` "
                    "or set TEST_DATABASE_URL", pytrace=False)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root needs a 'postgres' user for initdb "
                        "(apt-get install postgresql creates it)", pytrace=False)
    with Cluster(tempfile.gettempdir(), password=PASSWORD, prefix="deploy-pg-", query="",
                 settings="-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                          "-c max_connections=200") as url:
        yield url


@pytest.fixture
def database_url(pg_admin_url) -> str:
    """A fresh, empty database for this test only."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def project(tmp_path, database_url):
    """A project directory with an empty migrations/ and an env that points at the test DB."""
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    env_file = tmp_path / "test.env"
    env_file.write_text("")
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("POSTGRES_", "MIGRATION", "DEPLOY_", "COMPOSE_"))
    }
    env.update({
        "DATABASE_URL": database_url,
        "MIGRATIONS_DIR": str(migrations),
        "ENV_FILE": str(env_file),
        "PYTHONPATH": str(ROOT),
    })
    return Project(tmp_path, migrations, env, database_url)
