"""A project directory for the migration runner: its own migrations/ and an env that points
at one test database; runs the real `python -m deploy` and `invoke` from there."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.support.base import EXAMPLE_MIGRATIONS, invoke_argv


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
