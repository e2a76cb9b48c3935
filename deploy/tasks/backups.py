"""`invoke backup` and `invoke restore`: here, on the host `fab -H` gives, or on each host of
--hosts (default DEPLOY_HOSTS) in turn, the file in that machine's BACKUP_DIR."""

from __future__ import annotations

import sys

from deploy.machine import backup as backups
from deploy.tasks.common import database, each_target, exits, stack_for, task
from deploy.tasks.stack import HOSTS_HELP


@task(help={"hosts": HOSTS_HELP})
@exits
def backup(c, hosts=None):
    """pg_dump -Fc of the database into BACKUP_DIR (mode 600), named by database and time."""

    def one(c, prefix):
        stack = stack_for(c)
        stack.out.step("docker", stack.check_docker)
        stack.out.step(f"backup ({backups.where(stack.settings)})", backups.backup, stack)

    each_target(c, hosts, one)


@task(positional=["file"], help={
    "file": "the backup: a file name in BACKUP_DIR, or a path (on a host: absolute)",
    "yes_destroy": "the database name, to confirm when not interactive",
    "production": "also required when DEPLOY_ENV=production",
    "hosts": HOSTS_HELP,
})
@exits
def restore(c, file, yes_destroy=None, production=False, hosts=None):
    """Replace the database's contents with FILE (one transaction), then check-tables."""

    def one(c, prefix):
        stack = stack_for(c)
        backups.confirm_restore(stack.settings, yes_destroy, production,
                                interactive=sys.stdin.isatty())
        backups.restore(stack, file, database=lambda: database(c, stack.settings))

    each_target(c, hosts, one)
