"""Roles on network-namespace hosts (own sshd and dockerd each, tests/support/netns.py): one
database host and two web hosts, one shared PostgreSQL (tests/support/roles_rig.py).

The tests share the hosts and run in file order, each building on the one before:

    1. `deploy --hosts db` brings the database up (no app there), `up --hosts db` keeps it
    2. `deploy --hosts web1,web2` with a new migration: it runs once, from here, before any
       host starts its release; no PostgreSQL container on a web host; the database
       container is the same one before and after
    3. a rolling deploy under load through both web hosts' proxies: 0 failed requests
    4. `backup --hosts db`, then `restore --hosts db` round-trips a row; `reset` on the
       database host keeps its guard
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import _netns_rig
from tests.support.fleet_rig import SECRET
from tests.support.netns_load import NetnsLoad
from tests.support.roles_rig import PROXY_PORT, RolesFleet

MIGRATION = "migrations/024_fleet_roles_note.sql"


@pytest.fixture(scope="module")
def roles_hosts():
    yield from _netns_rig(3)


@pytest.fixture(scope="module")
def roles(roles_hosts, docker_ready, tmp_path_factory):
    fleet = RolesFleet(roles_hosts, tmp_path_factory.mktemp("roles"))
    yield fleet
    fleet.teardown()


def ok(done) -> None:
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]


def no_secret(fleet) -> None:
    assert not any(SECRET in text for text in fleet.outputs)


def test_the_database_host_is_deployed_without_an_app_and_up_leaves_its_database_alone(roles):
    db = roles.db.address
    done = roles.invoke("deploy", "--hosts", roles.spec(roles.db))
    ok(done)
    (pg,) = roles.containers(roles.db, "postgres")
    assert roles.containers(roles.db, "backend") == []
    assert roles.containers(roles.db, "proxy") == []
    assert f"[{db}] deploy: {db} is a database host: postgres up, " in done.stdout
    assert re.search(rf"^migrate: once for {re.escape(db)}: postgresql://app:\*\*\*@"
                     rf"{re.escape(roles.db.root_address)}:{roles.relay.port}/app, directly "
                     "from here$", done.stdout, re.M), done.stdout
    assert "hosts: done" not in done.stdout  # no switch: nothing serves an app there
    up = roles.invoke("up", "--hosts", roles.spec(roles.db))
    ok(up)
    assert roles.containers(roles.db, "postgres") == [pg]
    assert roles.containers(roles.db, "backend") == [] == roles.containers(roles.db, "proxy")
    no_secret(roles)


def test_web_hosts_share_the_database_host_and_its_migrations_run_once(roles):
    (pg,) = roles.containers(roles.db, "postgres")
    (roles.tree.path / MIGRATION).write_text(
        "CREATE TABLE IF NOT EXISTS fleet_roles_note (id int PRIMARY KEY, note text);\n"
        "-- ROLLBACK: DROP TABLE IF EXISTS fleet_roles_note;\n")
    roles.tree.commit("a migration for the web hosts' release")
    webs = [h.address for h in roles.webs]
    done = roles.invoke("deploy", "--hosts", roles.spec(*roles.webs))
    ok(done)
    out = done.stdout
    # One run, from here, for both hosts, before either prepared its release.
    assert out.count("migrate: once for ") == 1, out
    assert f"migrate: once for {', '.join(webs)}: postgresql://app:***@" in out
    assert out.count("migration 024_fleet_roles_note.sql applied in ") == 1, out
    assert out.index("migration 024_fleet_roles_note.sql applied") < out.index("prepare: ")
    for web in webs:
        assert f"[{web}] ==> migrate" not in out  # no host migrates on its own
    rows = roles.query("SELECT count(*) FROM migration_history WHERE filename = %s",
                       "024_fleet_roles_note.sql")
    assert rows == [(1,)]
    for web in roles.webs:
        assert roles.containers(web, "postgres") == []
        assert len(roles.containers(web, "backend")) == 1
        assert roles.health(web) == 200
    assert roles.containers(roles.db, "postgres") == [pg]
    # The backends reach the shared database by the URL the deploy handed them.
    env = (roles.path(roles.webs[0]) / "current" / ".env").read_text()
    assert f"APP_DATABASE_URL={roles.url}\n" in env
    # A second deploy, the database host among the targets: one migration run (nothing
    # to apply), the database host gets no switch, its container is still the same.
    roles.tree.change()
    every = [roles.db.address, *webs]
    again = roles.invoke("deploy", "--hosts", roles.spec(roles.db, *roles.webs))
    ok(again)
    assert again.stdout.count("migrate: once for ") == 1, again.stdout
    assert f"migrate: once for {', '.join(every)}: " in again.stdout
    assert again.stdout.count("migrations: up to date, nothing to apply") == 1, again.stdout
    assert f"deploy: {', '.join(webs)} (rolling, one host at a time)" in again.stdout
    assert roles.containers(roles.db, "postgres") == [pg]
    assert roles.containers(roles.db, "backend") == []
    no_secret(roles)


def test_a_rolling_deploy_through_both_web_hosts_proxies_fails_no_request(roles):
    (pg,) = roles.containers(roles.db, "postgres")
    roles.tree.change()
    web1, web2 = roles.webs
    lb = roles.lb_path  # PROXY_HEALTH_PATH: the load balancer's check
    with NetnsLoad(roles.rig, web1, PROXY_PORT, slow=2.0, lb=lb) as load1, \
            NetnsLoad(roles.rig, web2, PROXY_PORT, slow=2.0, lb=lb) as load2:
        done = roles.invoke("deploy", "--hosts", roles.spec(*roles.webs))
    ok(done)
    for load in (load1, load2):
        assert load.clients["requests"] > 50, load.result
        assert load.clients["failure_count"] == 0, load.clients["failures"]
        assert load.slow["failure_count"] == 0, load.slow["failures"]
        # Each host's proxy served throughout, and told the load balancer 503 only during
        # its own turn (the switch and the old containers' drain).
        assert load.result["lb"] == [200, 503, 200], load.result["lb"]
    assert roles.containers(roles.db, "postgres") == [pg]


def test_backup_then_restore_on_the_database_host_round_trips_a_row(roles):
    (pg,) = roles.containers(roles.db, "postgres")
    spec = roles.spec(roles.db)
    roles.query("INSERT INTO fleet_roles_note VALUES (1, 'kept by the backup') "
                "ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note")
    done = roles.invoke("backup", "--hosts", spec)
    ok(done)
    (path,) = re.findall(r"backup written: (\S+\.dump) \(", done.stdout) or [None]
    assert path and path.startswith(f"/srv/{roles.project}/backups/"), done.stdout
    roles.query("DELETE FROM fleet_roles_note")
    refused = roles.invoke("restore", path, "--hosts", spec)
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert roles.query("SELECT count(*) FROM fleet_roles_note") == [(0,)]
    restored = roles.invoke("restore", path, "--hosts", spec, "--yes-destroy=app")
    ok(restored)
    assert roles.query("SELECT note FROM fleet_roles_note WHERE id = 1") == [
        ("kept by the backup",)]
    assert roles.containers(roles.db, "postgres") == [pg]
    for web in roles.webs:
        assert roles.health(web) == 200
    reset = roles.fab("-H", spec, "reset")
    assert reset.returncode == 5, reset.stdout + reset.stderr
    assert "--yes-destroy" in reset.stderr
    assert roles.containers(roles.db, "postgres") == [pg]
    no_secret(roles)
