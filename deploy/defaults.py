"""Every default the tasks, settings and policies share, in one place.

Each value is in seconds unless its name says otherwise. Settings (deploy/settings.py) and
flags fall back to these; the policies that use them (deploy/migrate/policy.py,
deploy/commands/haproxy.py) are tested as data.
"""

# PostgreSQL's per-statement `lock_timeout` while migrating (MIGRATION_LOCK_TIMEOUT), how
# often a file that hit it is retried (MIGRATION_LOCK_RETRIES) and the time all attempts of
# one file may take (MIGRATION_LOCK_BUDGET).
STATEMENT_LOCK_TIMEOUT = 0.5
STATEMENT_LOCK_RETRIES = 10
STATEMENT_LOCK_BUDGET = 60.0

# How long a runner waits for another runner's advisory lock (`migrate --lock-wait`).
RUNNER_LOCK_WAIT = 60.0
# How long a deploy waits for another deploy's lock, here or on a host (`--lock-wait`).
DEPLOY_LOCK_WAIT = 300.0
# How long a deploy's migrate step waits for the database to accept connections.
DATABASE_WAIT = 30.0
# How long old proxy slots may take to drain before they go to maintenance (DRAIN_TIMEOUT).
DRAIN_TIMEOUT = 30.0
