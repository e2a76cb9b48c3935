"""The SSH tunnel to a host's database listens before its URL is handed out.

A real sshd (its own instance on 127.0.0.9, so it never meets the shared rig) forwards to
the tests' real PostgreSQL; each tunnel is used the moment its URL is known, 50 times.
"""

from __future__ import annotations

import psycopg
import pytest

from deploy import remote
from deploy.settings import load_settings
from tests.e2e.conftest import _missing

TUNNEL_HOST = "127.0.0.9"


@pytest.fixture(scope="module")
def lone_sshd():
    from tests.e2e import sshd

    missing = sshd.missing_tools()
    if missing:
        _missing(f"the tunnel test needs {', '.join(missing)} (apt-get install openssh-server)")
    with sshd.running_sshd(hosts=(TUNNEL_HOST,), port=2222) as rig:
        yield rig


def _connection(rig, database_url: str):
    settings = load_settings(environ={
        "DATABASE_URL": database_url, "SSH_KEY_FILE": str(rig.key_file),
        "SSH_KNOWN_HOSTS": str(rig.known_hosts), "DEPLOY_USER": rig.user,
    }, read_file=False)
    host = remote.parse_hosts(rig.spec(TUNNEL_HOST))[0]
    c = remote.connection(host, settings)
    remote.open_connection(c, settings)
    return c, settings


def test_a_query_through_a_fresh_tunnel_succeeds_50_times_in_a_row(lone_sshd, database_url):
    c, settings = _connection(lone_sshd, database_url)
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


def test_the_tunnel_carries_several_connections_at_once_and_closes_cleanly(lone_sshd,
                                                                           database_url):
    c, settings = _connection(lone_sshd, database_url)
    try:
        with remote.database_url(c, settings) as url:
            conns = [psycopg.connect(url, connect_timeout=5) for _ in range(5)]
            pids = {conn.execute("SELECT pg_backend_pid()").fetchone()[0] for conn in conns}
            assert len(pids) == 5
            for conn in conns:
                conn.close()
        # Once the context is left nothing listens on that port any more.
        with pytest.raises(psycopg.OperationalError, match="refused|failed"):
            psycopg.connect(url, connect_timeout=2)
    finally:
        c.close()
