"""The Invoke tasks, one collection for `invoke` (tasks.py) and `fab` (fabfile.py).

Each task reads settings for where its context points, calls the modules, and turns the
project's errors into `invoke.Exit(message, code)` once (tasks/common.py: `exits`). Tasks are
declared with `tasks.common.task`, which turns Invoke's automatic short flags off.
"""

from invoke import Collection

from deploy.tasks import program
from deploy.tasks.backups import backup, restore
from deploy.tasks.hosts import deploy, releases, rollback
from deploy.tasks.migrations import (
    check_tables,
    forget_migration,
    lint_migrations,
    migrate,
    migrate_status,
    new_migration,
    redo_migration,
)
from deploy.tasks.stack import build, down, logs, ps, psql, reset, up, wait_healthy

ns = Collection(migrate, migrate_status, check_tables, new_migration, redo_migration,
                forget_migration, lint_migrations, deploy, build, up, down, wait_healthy, ps,
                logs, reset, backup, restore, psql, rollback, releases)

program.install()
