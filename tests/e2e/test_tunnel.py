"""The SSH tunnel to a host's database listens before its URL is handed out.

Into a network-namespace host (tests/support/netns.py) to the PostgreSQL its deployed stack
publishes on the host's own loopback, which nothing outside the host can reach; each
tunnel is used the moment its URL is known, 50 times.
"""

from __future__ import annotations

import psycopg
import pytest

from deploy.fleet import hosts as remote


def _connection(fleet):
    host = fleet.hosts[0]
    settings = fleet.settings(host)
    c = remote.connection(remote.parse_hosts(fleet.spec(host))[0], settings)
    remote.open_connection(c, settings)
    return c, settings


def test_the_hosts_database_is_published_on_its_loopback_only(deployed_fleet):
    fleet = deployed_fleet
    host = fleet.hosts[0]
    port = fleet.ports[host.name][0]
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://app@{host.address}:{port}/app", connect_timeout=3)


def test_a_query_through_a_fresh_tunnel_succeeds_50_times_in_a_row(deployed_fleet):
    c, settings = _connection(deployed_fleet)
    failures = []
    try:
        for attempt in range(50):
            with remote.database_url(c, settings) as url:
                try:
                    # No retry, no wait: the first connection attempt must succeed.
                    with psycopg.connect(url, connect_timeout=5) as conn:
                        assert conn.execute("SELECT 41 + 1").fetchone()[0] == 42
                except psycopg.OperationalError as exc:
                    failures.append(f"attempt {attempt + 1}: {exc}")
    finally:
        c.close()
    assert failures == [], f"{len(failures)} of 50 failed:\n" + "\n".join(failures)


def test_the_tunnel_carries_several_connections_at_once_and_closes_cleanly(deployed_fleet):
    c, settings = _connection(deployed_fleet)
    try:
        with remote.database_url(c, settings) as url:
            conns = [psycopg.connect(url, connect_timeout=5) for _ in range(5)]
            pids = {conn.execute("SELECT pg_backend_pid()").fetchone()[0] for conn in conns}
            assert len(pids) == 5
            # The database behind the tunnel is the host's: the deploy's migrations are in it.
            assert conns[0].execute("SELECT count(*) FROM migration_history").fetchone()[0] > 0
            for conn in conns:
                conn.close()
        # Once the context is left nothing listens on that port any more.
        with pytest.raises(psycopg.OperationalError, match="refused|failed"):
            psycopg.connect(url, connect_timeout=2)
    finally:
        c.close()
