"""The runner's timing policies, tested as data: budgets, longest waits, session settings."""

from __future__ import annotations

import pytest

from deploy.migrate.policy import (
    CLIENT_KEEPALIVES,
    DEFAULT_PROGRESS,
    RETRY_WAITS,
    LockRetry,
    Progress,
    sample_every,
    session_settings,
    watch_after,
)
from deploy.migrate.sql import concurrent


def test_the_default_lock_timeout_keeps_a_readers_worst_stall_within_the_benchmark_target():
    retry = LockRetry()
    # Readers queue behind a waiting ALTER for at most the lock timeout; the deploy
    # benchmark's target is hot-table p99 <= lock timeout + 250 ms, under 1 s in total.
    assert retry.lock_timeout == 0.5
    assert retry.lock_timeout + 0.25 < 1.0


def test_the_default_retry_schedule_fits_its_budget_and_never_waits_long():
    retry = LockRetry()
    waits = retry.schedule()
    assert waits == list(RETRY_WAITS)  # with the defaults, the retry count is the bound
    assert len(waits) == retry.retries == 10
    assert max(waits) == 5.0  # longest single wait
    assert waits[0] == 0.25  # the first retry comes quickly
    assert waits == sorted(waits)  # backing off, never speeding up
    assert retry.worst_case() == pytest.approx(sum(RETRY_WAITS) + 11 * 0.5)  # 37.25 s
    assert retry.worst_case() <= retry.budget


def test_the_budget_cuts_the_schedule_before_the_retry_count_does():
    retry = LockRetry(lock_timeout=0.5, retries=10, budget=5.0)
    assert retry.schedule() == [0.25, 0.5, 1.0]
    assert retry.worst_case() == pytest.approx(1.75 + 4 * 0.5)
    assert retry.worst_case() <= retry.budget


def test_no_retries_means_the_first_lock_timeout_is_final():
    retry = LockRetry(retries=0)
    assert retry.schedule() == []
    assert retry.next_wait(1, 0.5) is None
    assert retry.worst_case() == 0.5


def test_the_last_wait_repeats_when_retries_outnumber_the_table():
    retry = LockRetry(retries=14, budget=1000.0)
    assert retry.schedule()[-5:] == [5.0] * 5
    assert len(retry.schedule()) == 14


def test_next_wait_counts_the_time_the_attempts_really_took():
    retry = LockRetry(lock_timeout=0.5, retries=10, budget=10.0)
    assert retry.next_wait(1, 0.6) == 0.25
    # A slow file: 9.4 s spent already; another wait plus one lock timeout would exceed 10 s.
    assert retry.next_wait(2, 9.4) is None


def test_session_settings_detect_a_vanished_client_on_postgresql_14_and_later():
    pg15 = dict(session_settings(150004, LockRetry(lock_timeout=0.2, statement_timeout=30)))
    assert pg15["lock_timeout"] == "200ms"
    assert pg15["statement_timeout"] == "30000ms"
    assert pg15["client_connection_check_interval"] == "1s"
    assert pg15["tcp_keepalives_idle"] == "10"
    pg13 = dict(session_settings(130010, LockRetry()))
    assert "client_connection_check_interval" not in pg13  # unknown there: SET would fail
    assert pg13["statement_timeout"] == "0"
    assert pg13["lock_timeout"] == "500ms"


def test_a_lost_network_is_noticed_within_half_a_minute_on_both_ends():
    client = (int(CLIENT_KEEPALIVES["keepalives_idle"])
              + int(CLIENT_KEEPALIVES["keepalives_interval"])
              * int(CLIENT_KEEPALIVES["keepalives_count"]))
    server = dict(session_settings(150000, LockRetry()))
    server_total = (int(server["tcp_keepalives_idle"])
                    + int(server["tcp_keepalives_interval"]) * int(server["tcp_keepalives_count"]))
    assert client == server_total == 25


def test_the_blocker_is_sampled_several_times_within_one_lock_wait():
    for lock_timeout in (0.1, 0.5, 1.0, 5.0):
        start = watch_after(DEFAULT_PROGRESS, lock_timeout)
        every = sample_every(DEFAULT_PROGRESS, lock_timeout)
        assert start <= lock_timeout / 4
        assert (lock_timeout - start) / every >= 5, lock_timeout
    # Files faster than 0.1 s never open the second connection.
    assert watch_after(DEFAULT_PROGRESS, 0.5) == 0.1


def test_progress_reports_every_few_seconds():
    assert Progress().after == Progress().every == Progress().lock_every == 5.0
    assert Progress().lock_poll == 0.1


@pytest.mark.parametrize("sql, expected", [
    ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS u ON s.t (v)", ("u", "s", "t")),
    ("-- note\ncreate index concurrently t_v on t (v)", ("t_v", None, "t")),
    ("DROP INDEX CONCURRENTLY IF EXISTS t_v", (None, None, None)),
    ("REINDEX INDEX CONCURRENTLY t_v", (None, None, None)),
    ("ALTER TABLE p DETACH PARTITION c CONCURRENTLY", (None, None, None)),
])
def test_concurrently_statements_are_recognised_by_the_parser(sql, expected):
    found = concurrent(sql)
    assert found is not None
    assert (found.index, found.schema, found.table) == expected


@pytest.mark.parametrize("sql", [
    "CREATE INDEX IF NOT EXISTS t_v ON t (v)",
    "SELECT 'CREATE INDEX CONCURRENTLY x ON t (v)'",
    "-- CONCURRENTLY\nALTER TABLE t ADD COLUMN c int",
])
def test_other_statements_are_not_concurrently_ones(sql):
    assert concurrent(sql) is None


# The MIGRATION_* settings that feed the policy (deploy/settings.py).
def test_migration_lock_settings_default_to_the_policy_and_read_the_environment(tmp_path):
    from deploy.migrate.runner import lock_retry
    from deploy.settings import load_settings

    default = lock_retry(load_settings(environ={}, cwd=tmp_path))
    assert default == LockRetry()
    s = load_settings(environ={"MIGRATION_LOCK_TIMEOUT": "0.2", "MIGRATION_LOCK_RETRIES": "0",
                               "MIGRATION_LOCK_BUDGET": "15",
                               "MIGRATION_STATEMENT_TIMEOUT": "30"}, cwd=tmp_path)
    assert lock_retry(s) == LockRetry(lock_timeout=0.2, retries=0, budget=15.0,
                                      statement_timeout=30.0)
    none = load_settings(environ={"MIGRATION_STATEMENT_TIMEOUT": "0"}, cwd=tmp_path)
    assert none.migration_statement_timeout is None


@pytest.mark.parametrize("name, value, message", [
    ("MIGRATION_LOCK_TIMEOUT", "500ms", "MIGRATION_LOCK_TIMEOUT: '500ms' is not a number of "
                                        "seconds (set in the environment)"),
    ("MIGRATION_LOCK_TIMEOUT", "0", "MIGRATION_LOCK_TIMEOUT: must be greater than 0 (got 0)"),
    ("MIGRATION_LOCK_RETRIES", "-1", "MIGRATION_LOCK_RETRIES: '-1' is not a whole number"),
    ("MIGRATION_LOCK_RETRIES", "three", "MIGRATION_LOCK_RETRIES: 'three' is not a whole number"),
    ("MIGRATION_LOCK_BUDGET", "-5", "MIGRATION_LOCK_BUDGET: must be greater than 0 (got -5)"),
    ("MIGRATION_STATEMENT_TIMEOUT", "1m", "MIGRATION_STATEMENT_TIMEOUT: '1m' is not a number"),
])
def test_a_bad_migration_lock_setting_is_named(tmp_path, name, value, message):
    from deploy.errors import ConfigError
    from deploy.settings import load_settings

    with pytest.raises(ConfigError) as info:
        load_settings(environ={name: value}, cwd=tmp_path)
    assert message in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("flags, message", [
    ({"migration_lock_timeout": 0.0}, "--migration-lock-timeout: must be greater than 0 (got 0)"),
    ({"lock_retries": -2}, "--lock-retries: must be 0 or more (got -2)"),
    ({"lock_budget": 0.0}, "--lock-budget: must be greater than 0 (got 0)"),
    ({"statement_timeout": -1.0}, "--statement-timeout: must be 0 (none) or more seconds"),
])
def test_flags_over_the_settings_are_checked_and_named(tmp_path, flags, message):
    from deploy.errors import ConfigError
    from deploy.migrate.runner import with_flags
    from deploy.settings import load_settings

    with pytest.raises(ConfigError) as info:
        with_flags(load_settings(environ={}, cwd=tmp_path), **flags)
    assert str(info.value).startswith(message)


def test_flags_win_over_the_settings(tmp_path):
    from deploy.migrate.runner import lock_retry, with_flags
    from deploy.settings import load_settings

    s = load_settings(environ={"MIGRATION_LOCK_TIMEOUT": "2"}, cwd=tmp_path)
    flagged = with_flags(s, migration_lock_timeout=0.1, lock_retries=3, statement_timeout=0.0)
    assert lock_retry(flagged) == LockRetry(lock_timeout=0.1, retries=3, statement_timeout=None)
