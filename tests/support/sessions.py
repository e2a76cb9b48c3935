"""Watching a test database's sessions from outside the runner under test."""

from __future__ import annotations

import time

import psycopg
import pytest


def slow_backend(url: str, deadline: float = 20) -> int:
    """The pid of the session running a migration's slow statement (a `pg_sleep` tagged
    `slow_marker`), once it runs."""
    with psycopg.connect(url, autocommit=True) as conn:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            row = conn.execute("SELECT pid FROM pg_stat_activity WHERE query LIKE "
                               "'%slow_' || 'marker%' AND state = 'active' AND "
                               "query LIKE '%pg_' || 'sleep%' AND pid <> pg_backend_pid()"
                               ).fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
    pytest.fail("the slow migration never started")
