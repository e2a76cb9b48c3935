"""Which targets of a deploy share a database (migrated once for all of them), which
migrate their own, and which host a tunnel to a shared one goes through."""

from __future__ import annotations

import pytest

from deploy.errors import ConfigError
from deploy.fleet.databases import (
    SharedDatabase,
    database_key,
    migrates_itself,
    reach,
    shared_databases,
)
from tests.support.settings import load

URL = "postgresql://app:s3cret@10.0.0.5:5432/app"
SHARED = {"DATABASE_URL": URL}


@pytest.fixture
def roles(tmp_path):
    def make(**overlay: str):
        return load(tmp_path, {**SHARED, **overlay})
    return make


def test_a_whole_stack_host_migrates_its_own_database(roles):
    assert migrates_itself(roles())
    assert not migrates_itself(roles(DB_SERVICE=""))
    assert not migrates_itself(roles(APP_SERVICES="", WORKER_SERVICES=""))
    assert shared_databases(["a", "b"], {"a": roles(), "b": roles()}) == []


def test_web_hosts_and_the_database_host_of_one_url_share_one_database(roles):
    per_host = {"web1": roles(DB_SERVICE=""), "db": roles(APP_SERVICES=""),
                "web2": roles(DB_SERVICE="")}
    (db,) = shared_databases(["web1", "db", "web2"], per_host)
    assert db == SharedDatabase(("10.0.0.5", 5432, "app"), ("web1", "db", "web2"),
                                ("db", "web1", "web2"))
    assert str(db) == "database 'app' on 10.0.0.5:5432"
    assert "s3cret" not in str(db)


def test_the_database_host_not_deployed_to_is_still_the_way_in(roles):
    per_host = {"web1": roles(DB_SERVICE=""), "web2": roles(DB_SERVICE="")}
    others = {"db": roles(APP_SERVICES=""), "old": roles(),
              "elsewhere": roles(APP_SERVICES="",
                                 DATABASE_URL="postgresql://app@10.0.0.9/app")}
    (db,) = shared_databases(["web1", "web2"], per_host, others)
    assert db.hosts == ("web1", "web2")
    assert db.via == ("db", "web1", "web2")


def test_hosts_of_different_databases_form_one_group_each(roles):
    other = "postgresql://app:x@db.internal:6432/other"
    per_host = {"web1": roles(DB_SERVICE=""), "web2": roles(DB_SERVICE="", DATABASE_URL=other),
                "full": roles()}
    found = shared_databases(["web1", "web2", "full"], per_host)
    assert [(d.key, d.hosts) for d in found] == [
        (("10.0.0.5", 5432, "app"), ("web1",)),
        (("db.internal", 6432, "other"), ("web2",))]


def test_the_key_is_server_port_and_database_and_defaults_like_libpq(tmp_path):
    s = load(tmp_path, {"DATABASE_URL": "postgresql://App@DB.example.com/"})
    assert database_key(s) == ("db.example.com", 5432, "App")


def test_a_web_host_without_a_database_url_is_named(tmp_path):
    web = load(tmp_path, {"DB_SERVICE": ""})
    with pytest.raises(ConfigError) as info:
        shared_databases(["web1"], {"web1": web})
    assert str(info.value).startswith("DATABASE_URL: missing; ")
    assert str(info.value).endswith(" [host web1]")


def test_a_database_that_answers_here_is_migrated_directly(roles):
    per_host = {"web1": roles(DB_SERVICE="")}
    (db,) = shared_databases(["web1"], per_host)
    asked = []
    with reach(db, per_host, {}, answers=lambda url: asked.append(url) or True) as (s, how):
        assert s.database_url == URL and how == "directly from here"
    assert asked == [URL]


def test_a_tunnel_reaches_a_database_host_where_its_stack_publishes_postgres(tmp_path):
    from deploy.fleet.tunnel import published_host

    def host(**env):
        return published_host(load(tmp_path, {"POSTGRES_PASSWORD": "x", **env}))

    assert host() == "127.0.0.1"
    assert host(POSTGRES_PUBLISHED_HOST="10.0.0.5") == "10.0.0.5"
    assert host(POSTGRES_PUBLISHED_HOST="0.0.0.0") == "127.0.0.1"
    assert host(POSTGRES_PUBLISHED_HOST="[::]") == "127.0.0.1"
    assert host(POSTGRES_PUBLISHED_HOST="[fd00::5]") == "fd00::5"


def test_a_web_hosts_release_env_hands_its_backend_the_shared_database(monkeypatch):
    from deploy.fleet.releases import render_env
    from deploy.settings import load_settings
    from tests.support.base import ROOT

    monkeypatch.chdir(ROOT)

    def env(**values):
        return render_env(load_settings(environ={"POSTGRES_PASSWORD": "pw", "DATABASE_URL": URL,
                                                 **values}, read_file=False, cwd=ROOT))

    assert f"APP_DATABASE_URL={URL}\n" in env(DB_SERVICE="")
    other = "postgresql://app:pw@db.internal:5432/app"
    assert f"APP_DATABASE_URL={other}\n" in env(DB_SERVICE="", APP_DATABASE_URL=other)
    assert "APP_DATABASE_URL" not in env()  # a whole stack: its backend uses its postgres


def test_a_database_that_does_not_answer_here_is_reached_through_its_database_host(
        roles, monkeypatch):
    from contextlib import contextmanager

    from deploy.fleet import databases
    from deploy.fleet.hosts import Host

    per_host = {"web1": roles(DB_SERVICE=""), "db": roles(APP_SERVICES="")}
    (db,) = shared_databases(["web1", "db"], per_host)
    opened, closed = [], []

    class Conn:
        def __init__(self, host, settings):
            opened.append(host.name)

        def close(self):
            closed.append(True)

    @contextmanager
    def tunnelled(conn, settings):
        yield "postgresql://app:s3cret@127.0.0.1:40001/app"

    monkeypatch.setattr(databases.trust, "connection", Conn)
    monkeypatch.setattr(databases.tunnel, "database_url", tunnelled)
    hosts = {"web1": Host("web1"), "db": Host("db")}
    with reach(db, per_host, hosts, answers=lambda url: False) as (s, how):
        assert how == "through an SSH tunnel via db"
        assert s.database_url == "postgresql://app:s3cret@127.0.0.1:40001/app"
    assert opened == ["db"] and closed == [True]
