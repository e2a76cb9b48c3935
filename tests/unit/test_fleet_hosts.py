"""Remote pure logic: host lists, per-host overlays, release .env, rollout bookkeeping."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deploy.errors import ConfigError, DeployError, DeployTimeout
from deploy.fleet import fanout, trust
from deploy.fleet import hosts as remote
from deploy.fleet.fanout import on_hosts
from deploy.fleet.hosts import Host, parse_hosts
from deploy.fleet.releases import (
    RELEASE_RE,
    HostReleases,
    bundle,
    image_tag,
    release_name,
    render_env,
)
from deploy.output import PrefixStream
from deploy.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_hosts_accept_user_and_port_forms():
    assert parse_hosts("web1, deploy@web2:2222,[::1]:22,root@[fe80::1]") == [
        Host("web1"), Host("web2", "deploy", 2222), Host("::1", None, 22),
        Host("fe80::1", "root", None)]


@pytest.mark.parametrize(("value", "message"), [
    ("", "--hosts: no hosts given (e.g. web1,web2 or deploy@web1:2222)"),
    ("web1:ssh", "--hosts: 'web1:ssh' has a bad port 'ssh'"),
    ("web1:70000", "--hosts: 'web1:70000' has a bad port '70000'"),
    ("web1;rm -rf /", "--hosts: 'web1;rm -rf /' is not a host name"),
    ("web1,web1", "--hosts: a host is listed twice in 'web1,web1'"),
])
def test_bad_host_lists_name_the_flag(value, message):
    with pytest.raises(ConfigError) as info:
        parse_hosts(value)
    assert str(info.value) == message


def _settings(tmp_path, **values):
    base = {"DATABASE_URL": "postgresql://app:pw@127.0.0.1:5432/app",
            "DEPLOY_HOSTS_DIR": str(tmp_path / "hosts"), **values}
    return load_settings(environ=base, read_file=False, cwd=ROOT)


def test_a_host_overlay_wins_over_the_shared_settings(tmp_path):
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "web2.env").write_text(
        "COMPOSE_PROJECT_NAME=shop-b\nPOSTGRES_PUBLISHED_PORT=6543\nDEPLOY_PATH=/opt/shop\n")
    shared = _settings(tmp_path, COMPOSE_PROJECT_NAME="shop")
    web1 = remote.host_settings(shared, "web1")
    web2 = remote.host_settings(shared, "web2")
    assert (web1.project_name, web1.deploy_path) == ("shop", "/srv/shop")
    assert (web2.project_name, web2.deploy_path) == ("shop-b", "/opt/shop")
    assert web2.values["POSTGRES_PUBLISHED_PORT"] == "6543"


def test_a_bad_value_in_a_host_overlay_names_the_host_and_file(tmp_path):
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "web2.env").write_text("KEEP_RELEASES=0\n")
    with pytest.raises(ConfigError) as info:
        remote.host_settings(_settings(tmp_path), "web2")
    assert str(info.value).startswith("KEEP_RELEASES: '0' is not a whole number of at least 1")
    assert f"[host web2, overlay {tmp_path / 'hosts' / 'web2.env'}]" in str(info.value)


def test_release_paths_point_into_the_release_on_the_host(tmp_path):
    shared = _settings(tmp_path, DEPLOY_PATH="/srv/app")
    s = remote.release_paths(shared, "20261126T080000Z-abc")
    assert str(s.compose_file) == (
        "/srv/app/releases/20261126T080000Z-abc/deploy/stack/docker-compose.yml")
    assert str(s.env_file) == "/srv/app/releases/20261126T080000Z-abc/.env"
    assert str(s.backup_dir) == "/srv/app/backups"
    assert str(remote.release_paths(shared, "current").compose_file).startswith(
        "/srv/app/current/")


def test_release_names_sort_by_time_and_carry_the_image_tag():
    name = release_name(datetime(2026, 11, 26, 8, 0, 5, tzinfo=UTC), "ab12cd3")
    assert name == "20261126T080005Z-ab12cd3"
    assert image_tag(name) == "ab12cd3"
    assert image_tag("20261126T080005Z-ab12cd3-dirty-1a2b3c4d") == "ab12cd3-dirty-1a2b3c4d"
    assert HostReleases(["a", "b", "c"], "c").previous == "b"
    assert HostReleases(["a"], "a").previous is None


@pytest.mark.parametrize("name", [
    "20261126T080005Z-ab12cd3",
    "20261126T080005Z-ab12cd3-dirty-1a2b3c4d",  # --allow-dirty: the visible dirty tag
    "20261126T080005Z-nogit-20261126T080000Z",  # a tree outside git
    "20261126T080005Z-nogit",  # what releases made before revision.py were called
    "20261126T080005Z-" + "0123456789abcdef" * 2 + "01234567",  # a full 40-digit sha
])
def test_every_release_tag_revision_makes_names_a_release_directory(name):
    assert RELEASE_RE.match(name)


@pytest.mark.parametrize("name", [
    "current", ".current-20261126T080005Z-ab12cd3", "20261126T080005Z-", "bundle.tar.gz",
    "20261126T080005Z-ab12cd3-dirty-", "20261126T080005Z-AB12CD3", "2026-11-26-ab12cd3",
])
def test_anything_else_in_the_releases_directory_is_not_a_release(name):
    assert not RELEASE_RE.match(name)


def test_the_release_env_holds_what_the_compose_file_uses_and_nothing_else(tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(ROOT)
    s = _settings(tmp_path, POSTGRES_PASSWORD="pw", POSTGRES_IMAGE="local/pg:1",
                  SSH_KEY_FILE=str(ROOT / "pyproject.toml"), UNRELATED="x")
    text = render_env(s)
    assert "POSTGRES_PASSWORD=pw\n" in text
    assert "POSTGRES_IMAGE=local/pg:1\n" in text
    assert "COMPOSE_PROJECT_NAME=app\n" in text
    assert "SSH_KEY_FILE" not in text and "UNRELATED" not in text
    assert "DATABASE_URL" not in text


def test_the_release_env_names_the_image_compose_runs_so_a_plain_up_runs_the_live_release(
        tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    text = render_env(_settings(tmp_path, POSTGRES_PASSWORD="pw", COMPOSE_PROJECT_NAME="shop"))
    assert "BACKEND_IMAGE=shop-backend\nBACKEND_TAG=live\n" in text
    named = render_env(_settings(tmp_path, POSTGRES_PASSWORD="pw",
                                 BACKEND_IMAGE="registry.example.com/shop/api"))
    assert "BACKEND_IMAGE=registry.example.com/shop/api\n" in named
    assert named.count("BACKEND_IMAGE=") == 1


def test_the_bundle_ships_the_compose_file_and_migrations_and_no_build_context(
        tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    with tarfile.open(fileobj=io.BytesIO(bundle(_settings(tmp_path))), mode="r:gz") as tar:
        names = {n for n in tar.getnames()
                 if tar.getmember(n).isfile()}
    assert names == {
        "deploy/stack/docker-compose.yml",  # the proxy is the tool's: shipped as an image
        *(f"migrations/{p.name}" for p in (ROOT / "migrations").glob("*.sql")),
    }


def test_each_build_context_inside_the_project_is_an_empty_directory_of_the_bundle(
        tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    contexts = [str(ROOT), str(ROOT / "services" / "web"), str(tmp_path / "elsewhere")]
    with tarfile.open(fileobj=io.BytesIO(bundle(_settings(tmp_path), contexts)),
                      mode="r:gz") as tar:
        dirs = {m.name for m in tar.getmembers() if m.isdir()}
        files = {m.name for m in tar.getmembers() if m.isfile()}
    assert "services/web" in dirs  # Compose v1 on the host finds the context it checks
    assert not [n for n in dirs if "elsewhere" in n]  # outside the project: not shipped
    assert not [f for f in files if f.startswith("services/")]  # no file of a context


def test_rolling_stops_at_the_first_failure_and_reports_every_host():
    seen = []

    def job(host):
        seen.append(host.name)
        if host.name == "b":
            raise DeployTimeout("b: lock held")

    report = on_hosts(parse_hosts("a,b,c"), job)
    assert seen == ["a", "b"]
    assert report.summary() == ("hosts: done: a; failed: b (exit 4: b: lock held); "
                                "untouched: c")


def test_parallel_runs_at_most_n_hosts_at_once():
    running, peak, lock = [0], [0], threading.Lock()

    def job(host):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    report = on_hosts(parse_hosts("a,b,c,d,e"), job, parallel=2)
    assert peak[0] == 2
    assert report.done == ["a", "b", "c", "d", "e"]


def test_an_unexpected_exception_on_a_host_is_reported_not_raised():
    def job(host):
        raise RuntimeError("boom")

    report = on_hosts(parse_hosts("a,b"), job)
    assert [(h, str(e)) for h, e in report.failed] == [("a", "a: RuntimeError: boom")]
    assert report.untouched == ["b"]
    with pytest.raises(ConfigError):
        on_hosts(parse_hosts("a"), job, parallel=0)


def test_prefix_stream_writes_whole_lines_with_the_host(capsys):
    stream = PrefixStream("[web1] ")
    stream.write("building")
    stream.write(" step 1\nstep 2\npart")
    stream.flush()
    assert capsys.readouterr().out == "[web1] building step 1\n[web1] step 2\n[web1] part\n"


def test_fingerprints_look_like_ssh_keygen():
    class Key:
        def asbytes(self):
            return b"abc"

    # ssh-keygen -lf prints SHA256: and the unpadded base64 of the key blob's sha256.
    assert trust.fingerprint(Key()) == "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"


def test_a_missing_known_hosts_file_is_a_config_error(tmp_path):
    class FakeConnection:  # only what secure() touches before refusing
        client = None
        connect_kwargs: dict = {}

    s = _settings(tmp_path, SSH_KNOWN_HOSTS=str(tmp_path / "nope"))
    with pytest.raises(ConfigError) as info:
        trust.secure(FakeConnection(), s)
    assert str(info.value).startswith(f"SSH_KNOWN_HOSTS: {tmp_path / 'nope'} does not exist")


def test_deploy_errors_keep_their_exit_codes_through_the_summary():
    report = fanout.HostsReport(done=["a"], failed=[("b", DeployError("b: boom"))],
                                untouched=[])
    assert report.summary() == "hosts: done: a; failed: b (exit 1: b: boom); untouched: none"
