"""Shared fixtures: a real PostgreSQL server, one fresh database per test, CLI runners.

TEST_DATABASE_URL (an admin URL) is used when set; otherwise a throwaway cluster is
initdb'd from the local PostgreSQL binaries into a temp dir, on a free port, with a
password (so redaction is tested for real), and removed afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent


def invoke_argv(*args: str) -> list[str]:
    """`invoke ARGS` with this checkout's tasks, whatever the working directory."""
    return [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args]
EXAMPLE_MIGRATIONS = ROOT / "migrations"
PASSWORD = "pw-" + secrets.token_hex(8)


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    bindir = pg_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries (initdb) not found: run `bash .ci/provision` "
                    "or set TEST_DATABASE_URL", pytrace=False)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root needs a 'postgres' user for initdb "
                        "(apt-get install postgresql creates it)", pytrace=False)
    tmp = Path(tempfile.mkdtemp(prefix="deploy-pg-"))
    os.chmod(tmp, 0o755)
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
    pwfile = tmp / "pw"
    pwfile.write_text(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres")
    data = tmp / "data"
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                 "--auth-local=trust", "--auth-host=scram-sha-256",
                                 f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8",
                                 "--locale=C"]),
                   check=True, capture_output=True)
    port = free_port()
    opts = (f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts,
                                 "-l", str(tmp / "log"), "-w", "-t", "60", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m",
                                     "immediate", "stop"]), capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture
def database_url(pg_admin_url) -> str:
    """A fresh, empty database for this test only."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(pg_admin_url, name)
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


class Project:
    def __init__(self, root: Path, migrations: Path, env: dict, url: str):
        self.root = root
        self.migrations = migrations
        self.env = env
        self.url = url

    def write(self, name: str, sql: str | bytes) -> Path:
        path = self.migrations / name
        if isinstance(sql, bytes):
            path.write_bytes(sql)
        else:
            path.write_text(sql)
        return path

    def copy_examples(self) -> None:
        for path in EXAMPLE_MIGRATIONS.glob("*.sql"):
            shutil.copy(path, self.migrations / path.name)

    def run(self, *args: str, env: dict | None = None, timeout: float = 120,
            **kwargs) -> subprocess.CompletedProcess:
        """python -m deploy ARGS, from the project directory."""
        return subprocess.run([sys.executable, "-m", "deploy", *args], cwd=self.root,
                              env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)

    def invoke(self, *args: str, env: dict | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
        """The real `invoke` command with the project's tasks.py."""
        return subprocess.run(invoke_argv(*args), cwd=self.root,
                              env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def popen(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "deploy", *args], cwd=self.root,
                                env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def history(self) -> list[str]:
        with psycopg.connect(self.url) as conn:
            return [r[0] for r in conn.execute(
                "SELECT filename FROM migration_history ORDER BY id").fetchall()]

    def tables(self) -> set[str]:
        with psycopg.connect(self.url) as conn:
            return {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}
