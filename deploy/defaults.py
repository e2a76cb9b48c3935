"""Every default the tasks, settings and policies share, in one place.

Each value is in seconds unless its name says otherwise. Settings (deploy/settings.py) and
flags fall back to these; the policies that use them (deploy/migrate/policy.py,
deploy/commands/haproxy.py) are tested as data.
"""

# PostgreSQL's per-statement `lock_timeout` while migrating (MIGRATION_LOCK_TIMEOUT), how
# often a file that hit it is retried (MIGRATION_LOCK_RETRIES) and the time all attempts of
# one file may take (MIGRATION_LOCK_BUDGET).
# 0.5 s: a statement waiting for an ACCESS EXCLUSIVE lock makes every later query on that
# table queue behind it, so this is the longest stall a migration can add to a reader.
# pgroll uses 500 ms; squawk recommends 1 s (twice the worst stall); GitLab starts at 100 ms
# but then needs dozens of escalating attempts, because any ordinary transaction over
# 100 ms on the table makes the statement time out and the whole file's work is redone.
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
# How long `wait-healthy` and a deploy wait for every service to be healthy (HEALTH_TIMEOUT).
HEALTH_TIMEOUT = 120.0
# Releases kept on each host (KEEP_RELEASES), and the proxy's image (PROXY_IMAGE).
KEEP_RELEASES = 5
PROXY_IMAGE = "haproxy:2.6"
# The schema check-tables inspects, and where the tables the migrations create are expected.
TABLES_SCHEMA = "public"
