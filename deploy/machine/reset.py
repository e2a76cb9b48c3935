"""`invoke reset`: its guard (the project name, typed or passed, and --production in
production), then backup → down --volumes → up → wait → route → migrate → check tables."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from deploy.defaults import DATABASE_WAIT
from deploy.machine import backup as backups
from deploy.machine.containers import base_services
from deploy.machine.guard import confirm, guard_for
from deploy.machine.routing import resync
from deploy.machine.schema import verify_tables
from deploy.machine.stack import Stack, require_stack_settings
from deploy.migrate.runner import migrate
from deploy.settings import Settings
from deploy.shell import is_remote


def confirm_reset(settings: Settings, yes_destroy: str | None, production: bool,
                  interactive: bool, ask: Callable[[str], str] = input) -> None:
    """The guard: the project name typed or passed exactly, and --production in production."""
    confirm(guard_for("reset", settings.project_name), settings.deploy_env, yes_destroy,
            production, interactive, ask)


NO_BACKUP_HINT = " or pass --no-backup to reset without a backup"


def reset(stack: Stack, *, backup: bool = True, database=None,
          only: tuple[str, ...] | None = None) -> Path | None:
    """Backup → down --volumes → up → wait → migrate. `database()` gives a context manager
    yielding settings whose DATABASE_URL reaches the stack's database (a tunnel remotely).
    ``only``: the services a host runs (its role); None: every service."""
    settings, out = stack.settings, stack.out
    if not is_remote(stack.c):  # a host's release .env is checked at deploy
        require_stack_settings(settings)
    out.step("docker", stack.check_docker)
    path = out.step("backup", backups.backup, stack, NO_BACKUP_HINT) if backup else None
    if not backup:
        out("   --no-backup: no backup taken")
    out.step("down --volumes", stack.down, True)
    out.step("up", stack.up, False, base_services(settings), only)
    out.step("wait-healthy", stack.wait_healthy, settings.health_timeout)
    out.step("proxy: route", resync, stack)
    with (database() if database else nullcontext(settings)) as reachable:
        out.step("migrate", migrate, reachable, wait=DATABASE_WAIT, out=out)
        verify_tables(reachable, out)
    out("reset: done" + (f"; backup at {path}" if path else ""))
    return path
