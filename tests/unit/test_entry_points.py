"""`python -m deploy` and the migration tasks as a user reads them: imports, flags, help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deploy.__main__ import _parser
from deploy.tasks.migrations import forget_migration, migrate, redo_migration

ROOT = Path(__file__).parents[2]
STATEMENT_LOCK_TIMEOUT_WORDS = "PostgreSQL's per-statement lock_timeout"


def _imported_modules(*args: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "deploy", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:")}


def test_python_m_deploy_migrate_help_loads_neither_invoke_fabric_nor_paramiko():
    modules = _imported_modules("migrate", "--help")
    assert "deploy.__main__" in modules or "deploy.cli" in modules  # the listing is real
    heavy = {m for m in modules if m.split(".")[0] in ("invoke", "fabric", "paramiko")}
    assert heavy == set()


def test_the_runners_lock_wait_is_called_lock_wait_and_the_old_name_says_it_will_go():
    migrate_help = _parser()._subparsers._group_actions[0].choices["migrate"].format_help()
    assert "--lock-wait SECONDS" in migrate_help
    assert "the old name of --lock-wait; it will go" in " ".join(migrate_help.split())
    for task in (migrate, redo_migration, forget_migration):
        assert "another runner's lock" in task.help["lock_wait"]
        assert task.help["lock_timeout"] == "the old name of --lock-wait; it will go"


def test_migration_lock_timeout_help_says_it_is_postgresqls_per_statement_lock_timeout():
    migrate_help = _parser()._subparsers._group_actions[0].choices["migrate"].format_help()
    assert STATEMENT_LOCK_TIMEOUT_WORDS in " ".join(migrate_help.split())
    assert migrate.help["migration_lock_timeout"].startswith(STATEMENT_LOCK_TIMEOUT_WORDS)


def test_the_migration_tasks_set_no_short_flags():
    for task in (migrate, redo_migration, forget_migration):
        assert task.auto_shortflags is False
