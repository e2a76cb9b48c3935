"""`fab -H` / `invoke --hosts` against two real sshd hosts that share this Docker engine.

Each host gets its own overlay (deploy/hosts/<host>.env, here in a temp dir): its own
Compose project name, published ports and DEPLOY_PATH, since both use one engine and one
filesystem. The tests run in file order and build on the first deploy.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    LOCAL_IMAGES_ENV,
    ROOT,
    free_port,
    read_env_file,
    remove_project_images,
)
from tests.e2e.load import Clients

SECRET = "s3cret-" + uuid.uuid4().hex[:12]


class Fleet:
    def __init__(self, rig, tmp: Path):
        self.rig = rig
        self.tmp = tmp
        self.hosts = list(rig.hosts)
        self.hosts_dir = tmp / "hosts"
        self.hosts_dir.mkdir()
        self.ports: dict[str, tuple[int, int]] = {}
        self.projects: dict[str, str] = {}
        self.paths: dict[str, Path] = {}
        for host in self.hosts:
            project = "e2er" + uuid.uuid4().hex[:8]
            pg, backend = free_port(), free_port()
            self.projects[host], self.ports[host] = project, (pg, backend)
            self.paths[host] = tmp / "srv" / host
            self.write_overlay(host)
        shared = read_env_file(LOCAL_IMAGES_ENV) if LOCAL_IMAGES_ENV.exists() else {}
        shared.update({
            "POSTGRES_USER": "app", "POSTGRES_PASSWORD": SECRET, "POSTGRES_DB": "app",
            "DEPLOY_USER": rig.user, "SSH_KEY_FILE": str(rig.key_file),
            "SSH_KNOWN_HOSTS": str(rig.known_hosts), "DEPLOY_HOSTS_DIR": str(self.hosts_dir),
            "HEALTH_TIMEOUT": "120", "KEEP_RELEASES": "5",
        })
        shared.pop("DATABASE_URL", None)
        self.env_file = tmp / "shared.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in shared.items()))
        self.outputs: list[str] = []

    def write_overlay(self, host: str, **extra: str) -> None:
        pg, backend = self.ports[host]
        values = {
            "COMPOSE_PROJECT_NAME": self.projects[host],
            "POSTGRES_PUBLISHED_PORT": str(pg), "BACKEND_PUBLISHED_PORT": str(backend),
            "DATABASE_URL": f"postgresql://app:{SECRET}@127.0.0.1:{pg}/app",
            "DEPLOY_PATH": str(self.paths[host]),
            **extra,
        }
        (self.hosts_dir / f"{host}.env").write_text(
            "".join(f"{k}={v}\n" for k, v in values.items()))

    def spec(self, *hosts: str) -> str:
        return ",".join(self.rig.spec(h) for h in hosts or self.hosts)

    @property
    def env(self) -> dict[str, str]:
        import os

        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("POSTGRES_", "DEPLOY_", "COMPOSE_", "DATABASE_URL",
                                     "SSH_", "BACKEND_", "MIGRATION"))}
        return {**keep, "ENV_FILE": str(self.env_file), "DOCKER_BUILDKIT": "0"}

    def _run(self, argv, env=None, timeout=900) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, cwd=ROOT, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        self.outputs.append(done.stdout + done.stderr)
        return done

    def invoke(self, *args: str, env=None) -> subprocess.CompletedProcess:
        return self._run([sys.executable, "-m", "invoke", *args], env)

    def popen_invoke(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=ROOT,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL)

    def fab(self, *args: str, env=None) -> subprocess.CompletedProcess:
        return self._run([sys.executable, "-c", "from fabric.main import program; "
                          "program.run()", *args], env)

    def health(self, host: str) -> int:
        port = self.ports[host][1]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
                return r.status
        except Exception as exc:  # connection refused, 503…
            return getattr(exc, "code", 0)

    def releases(self, host: str) -> list[str]:
        return sorted(p.name for p in (self.paths[host] / "releases").iterdir())

    def current(self, host: str) -> str:
        return (self.paths[host] / "current").resolve().name

    def teardown(self) -> None:
        for project in self.projects.values():
            ids = subprocess.run(["docker", "ps", "-aq", "--filter",
                                  f"label=com.docker.compose.project={project}"],
                                 capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True)
            vols = subprocess.run(["docker", "volume", "ls", "-q", "--filter",
                                   f"label=com.docker.compose.project={project}"],
                                  capture_output=True, text=True).stdout.split()
            if vols:
                subprocess.run(["docker", "volume", "rm", "-f", *vols], capture_output=True)
            subprocess.run(["docker", "network", "rm", f"{project}_default",
                            f"{project}-default"], capture_output=True)
            remove_project_images(project)


@pytest.fixture(scope="module")
def fleet(ssh_hosts, docker_ready, tmp_path_factory):
    fleet = Fleet(ssh_hosts, tmp_path_factory.mktemp("fleet"))
    yield fleet
    fleet.teardown()


def test_fab_deploys_both_hosts_healthy_with_tables_verified(fleet):
    done = fleet.fab("-H", fleet.spec(), "deploy")
    assert done.returncode == 0, done.stdout + done.stderr
    for host in fleet.hosts:
        assert fleet.health(host) == 200
        assert re.search(rf"^\[{re.escape(host)}\] deploy: {re.escape(host)} now serves "
                         r"\d{8}T\d{6}Z-[0-9a-z-]+ ", done.stdout, re.M), done.stdout
        assert f"[{host}] deploy: 51 expected table(s) verified" in done.stdout or \
            re.search(rf"\[{re.escape(host)}\] deploy: \d+ expected table\(s\) verified",
                      done.stdout)
        assert len(fleet.releases(host)) == 1
        assert fleet.current(host) == fleet.releases(host)[0]
        env_file = fleet.paths[host] / "releases" / fleet.current(host) / ".env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert f"POSTGRES_PASSWORD={SECRET}" in env_file.read_text()
    listing = fleet.invoke("releases", "--hosts", fleet.spec())
    assert listing.returncode == 0, listing.stderr
    for host in fleet.hosts:
        assert f"[{host}] * {fleet.current(host)}" in listing.stdout


def test_parallel_deploy_of_a_second_release_prefixes_every_line(fleet):
    before = {h: fleet.current(h) for h in fleet.hosts}
    done = fleet.invoke("deploy", "--hosts", fleet.spec(), "--parallel", "2", "--no-build")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deploy: 127.0.0.2, 127.0.0.3 (at most 2 at once)" in done.stdout
    assert "hosts: done: 127.0.0.2, 127.0.0.3; failed: none; untouched: none" in done.stdout
    lines = [line for line in done.stdout.splitlines()
             if line and not line.startswith(("deploy: ", "hosts: "))]
    assert lines and all(re.match(r"\[127\.0\.0\.[23]\] ", line) for line in lines), lines
    for host in fleet.hosts:
        assert len(fleet.releases(host)) == 2
        assert fleet.current(host) != before[host]
        assert before[host] in fleet.releases(host)
        assert fleet.health(host) == 200


def test_rollback_returns_to_the_previous_release_and_says_migrations_stay(fleet):
    host = fleet.hosts[0]
    first, second = fleet.releases(host)
    assert fleet.current(host) == second
    done = fleet.invoke("rollback", "--hosts", fleet.spec(host))
    assert done.returncode == 0, done.stdout + done.stderr
    assert fleet.current(host) == first
    assert f"rollback: {host} now serves {first} (was {second})" in done.stdout
    assert "migrations are NOT reversed" in done.stdout
    assert fleet.health(host) == 200
    again = fleet.fab("-H", fleet.spec(host), "rollback")
    assert again.returncode == 5
    assert f"rollback: {host} has no release before {first} to return to" in again.stderr


def test_two_deploys_to_one_host_at_once_one_exits_4_naming_the_holder(fleet):
    host = fleet.hosts[1]
    spec = fleet.spec(host)
    first = fleet.popen_invoke("deploy", "--hosts", spec, "--no-build")
    lock = fleet.paths[host] / ".deploy.lock.holder"
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.1)
    second = fleet.invoke("deploy", "--hosts", spec, "--no-build", "--lock-wait", "1")
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, out + err
    assert second.returncode == 4, second.stdout + second.stderr
    assert f"{host}: another deploy holds {fleet.paths[host]}/.deploy.lock" in second.stderr
    holder = second.stderr.split("(holder: ", 1)[1].split("); waited")[0]
    assert re.fullmatch(r"\S+@\S+ pid \d+, release \d{8}T\d{6}Z-\w+, since \S+", holder), holder
    assert "waited 1s (--lock-wait)" in second.stderr
    # It said who held the lock as soon as it started waiting.
    assert f"[{host}] {host}: waiting for the deploy lock held by {holder} (" in second.stdout


def test_a_failing_first_host_stops_the_rollout_and_the_previous_release_keeps_serving(fleet):
    bad, good = fleet.hosts
    releases_before = {h: fleet.releases(h) for h in fleet.hosts}
    current_before = fleet.current(bad)
    fleet.write_overlay(bad, BACKEND_FAIL_AT_START="1")
    try:
        done = fleet.invoke("deploy", "--hosts", fleet.spec(bad, good), "--no-build")
    finally:
        fleet.write_overlay(bad)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (f"hosts: done: none; failed: {bad} (exit 1: service failed: backend: "
            in done.stdout)
    assert f"untouched: {good}" in done.stdout
    assert f"deploy failed on {bad}: service failed: backend" in done.stderr
    assert (f"[{bad}]    the old release keeps serving; removing what this deploy started"
            in done.stdout)
    assert "point of no return" not in done.stdout
    assert fleet.current(bad) == current_before
    assert fleet.releases(bad) == releases_before[bad]
    assert fleet.releases(good) == releases_before[good]
    assert fleet.health(bad) == 200


def test_a_rolling_deploy_under_load_fails_no_request_on_either_host(fleet):
    before = {h: fleet.current(h) for h in fleet.hosts}
    clients = [Clients(fleet.ports[h][1], count=4) for h in fleet.hosts]
    for load in clients:
        load.__enter__()
    try:
        done = fleet.invoke("deploy", "--hosts", fleet.spec())
    finally:
        for load in clients:
            load.__exit__(None, None, None)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "(rolling, one host at a time)" in done.stdout
    for host, load in zip(fleet.hosts, clients, strict=True):
        tally = load.tally()
        assert tally.failures == [], (host, tally.failures[:20])
        assert tally.requests > 50, host
        assert fleet.current(host) != before[host]
        assert re.search(rf"^\[{re.escape(host)}\]    switch: the point of no return",
                         done.stdout, re.M), done.stdout
        assert fleet.health(host) == 200


def test_an_unknown_host_key_is_refused_with_its_fingerprint_and_nothing_is_uploaded(fleet):
    host = fleet.hosts[1]
    known = fleet.rig.only_known(fleet.hosts[0])
    fresh = fleet.tmp / "never"
    fleet.write_overlay(host, DEPLOY_PATH=str(fresh))
    try:
        done = fleet.invoke("deploy", "--hosts", fleet.spec(host),
                            env={"SSH_KNOWN_HOSTS": str(known)})
        fabbed = fleet.fab("-H", fleet.spec(host), "deploy", env={"SSH_KNOWN_HOSTS": str(known)})
    finally:
        fleet.write_overlay(host)
    for result in (done, fabbed):
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{host}: host key not in SSH_KNOWN_HOSTS ({known})" in result.stderr
        assert fleet.rig.host_key_fingerprint(host) in result.stderr
    assert not fresh.exists()
    changed = fleet.invoke("releases", "--hosts", fleet.spec(host),
                           env={"SSH_KNOWN_HOSTS": str(fleet.rig.changed_key(host))})
    assert changed.returncode == 2
    assert f"{host}: host key CHANGED" in changed.stderr


def test_secrets_never_appear_in_output_or_on_a_command_line(fleet):
    assert fleet.outputs, "the earlier tests ran no command"
    for output in fleet.outputs:
        assert SECRET not in output
    for host in fleet.hosts:
        commands = fleet.rig.commands(host)
        assert "docker" in commands and "flock" in commands  # the log is real
        assert SECRET not in commands
