"""End-to-end fixtures: the real Docker engine, the real sample stack, the real `invoke`.

Each stack gets its own Compose project name and free published ports, so tests never
collide, and is torn down with its volumes afterwards. Without Docker these tests fail
in CI (CI=true) and are skipped, loudly, elsewhere.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port, invoke_argv  # noqa: F401 - free_port: also imported from here by the e2e tests

ROOT = Path(__file__).resolve().parents[2]
LOCAL_IMAGES_ENV = ROOT / ".ci" / "local-images.env"


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provision it: bash .ci/provision)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_ready() -> None:
    if not shutil.which("docker"):
        _missing("docker CLI not installed")
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True)
    if info.returncode != 0:
        _missing(f"Docker daemon not reachable: {info.stderr.strip()[:200]}")
    if not LOCAL_IMAGES_ENV.exists() and not os.environ.get("E2E_PUBLIC_IMAGES"):
        _missing(f"{LOCAL_IMAGES_ENV} missing: run bash .ci/build-images "
                 "(or set E2E_PUBLIC_IMAGES=1 on a machine that can pull images)")


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


@functools.cache
def compose_command() -> list[str]:
    """The tests' own Compose calls: the v2 plugin where there is one (GitHub's runners
    have no docker-compose v1), else docker-compose."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    return ["docker", "compose"] if plugin.returncode == 0 else ["docker-compose"]


class StackEnv:
    """A project name, ports and an env file for one sample stack; runs real commands."""

    def __init__(self, tmp: Path, **extra: str):
        self.project = "e2e" + uuid.uuid4().hex[:8]
        self.pg_port = free_port()
        self.backend_port = free_port()
        self.password = "pw-" + uuid.uuid4().hex[:10]
        self.tmp = tmp
        values = read_env_file(LOCAL_IMAGES_ENV) if LOCAL_IMAGES_ENV.exists() else {}
        values.update({
            "COMPOSE_PROJECT_NAME": self.project,
            "POSTGRES_USER": "app",
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DB": "app",
            "POSTGRES_PUBLISHED_PORT": str(self.pg_port),
            "BACKEND_PUBLISHED_PORT": str(self.backend_port),
            "DATABASE_URL": f"postgresql://app:{self.password}@127.0.0.1:{self.pg_port}/app",
            "BACKUP_DIR": str(tmp / "backups"),
            "HEALTH_TIMEOUT": "120",
            "SUMMARY_TABLE_PREFIX": "ai_",  # the sample schema's tables, listed by a deploy
        })
        values.update(extra)
        self.values = values
        self.env_file = tmp / f"{self.project}.env"
        self.write()

    def write(self) -> None:
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.values.items()))

    @property
    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("POSTGRES_", "MIGRATION", "DEPLOY_", "COMPOSE_",
                                     "DATABASE_URL", "BACKEND_"))}
        return {**keep, "ENV_FILE": str(self.env_file), "DOCKER_BUILDKIT": "0"}

    def invoke(self, *args: str, timeout: float = 600, env: dict | None = None,
               cwd: Path = ROOT) -> subprocess.CompletedProcess:
        return subprocess.run(invoke_argv(*args), cwd=cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def popen_invoke(self, *args: str, cwd: Path = ROOT,
                     stderr: int = subprocess.PIPE) -> subprocess.Popen:
        """The same command, running: its output read line by line as it comes (to act on a
        step); ``stderr=subprocess.STDOUT`` merges both streams."""
        return subprocess.Popen(invoke_argv(*args), cwd=cwd, env=self.env,
                                stdout=subprocess.PIPE, stderr=stderr, text=True,
                                stdin=subprocess.DEVNULL)

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*compose_command(), "--env-file", str(self.env_file), "-f",
             str(ROOT / "deploy/stack/docker-compose.yml"), "-p", self.project, *args],
            capture_output=True, text=True, check=check, timeout=300,
            env={**self.env})

    def psql(self, sql: str) -> str:
        return self.compose("exec", "-T", "postgres", "psql", "-U", "app", "-d", "app",
                            "-At", "-c", sql).stdout.strip()

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "-t", "2", check=False)
        remove_project_images(self.project)


def remove_project_images(project: str) -> None:
    """Every tag of the project's backend image (BACKEND_IMAGE, by release and `live`) and
    its proxy image (named by Compose: v1 `<project>_proxy`, v2 `<project>-proxy`)."""
    ids = set()
    for repo in (f"{project}-backend", f"{project}_backend", f"{project}_proxy",
                 f"{project}-proxy"):
        listed = subprocess.run(["docker", "images", "-q", "--no-trunc", repo],
                                capture_output=True, text=True).stdout.split()
        ids.update(listed)
    if ids:
        subprocess.run(["docker", "image", "rm", "-f", *sorted(ids)], capture_output=True)


@pytest.fixture
def make_stack(docker_ready, tmp_path):
    stacks: list[StackEnv] = []

    def make(**extra: str) -> StackEnv:
        stack = StackEnv(tmp_path, **extra)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.down()


@pytest.fixture(scope="session")
def netns_hosts():
    """Two hosts that share nothing but this machine's kernel and files: each in its own
    network namespace (10.213.N.2), with its own sshd on port 22 and its own Docker engine,
    reaching nothing but this machine (no registry).

    See tests/e2e/netns.py for the API (hosts, addresses, user, port, key_file,
    known_hosts, spec, ssh_argv, docker_argv, netns_exec_argv, enter_argv, traffic,
    commands, logs, load_busybox, reach, trust_registry).
    """
    yield from _netns_rig(2)


def _netns_rig(count: int):
    from tests.e2e import netns

    if os.geteuid() != 0:
        _missing("the network-namespace test hosts must run as root (ip netns, mount, dockerd)")
    missing = netns.missing_tools()
    if missing:
        _missing(f"the network-namespace test hosts need {', '.join(missing)} "
                 "(iproute2, util-linux, docker.io, openssh-server)")
    problem = None
    try:
        with netns.running_netns_hosts(count) as rig:
            yield rig
    except netns.NetnsError as e:
        problem = str(e)
    if problem:
        # Root and every tool are there, so the machine is broken: a failure, never a skip.
        pytest.fail(f"network-namespace test hosts: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def fleet_hosts():
    """Two more network-namespace hosts, for the fleet alone: its deploys leave stacks,
    images and command logs that other tests of `netns_hosts` must not meet."""
    yield from _netns_rig(2)


@pytest.fixture(scope="session")
def fleet(fleet_hosts, docker_ready, tmp_path_factory):
    """Two network-namespace hosts to deploy to with the real `invoke`/`fab`, from a git
    copy of this project (tests/e2e/fleet_rig.py). Shared by the remote tests, which run
    in file order and build on each other's deploys."""
    from tests.e2e.fleet_rig import Fleet

    fleet = Fleet(fleet_hosts, tmp_path_factory.mktemp("fleet"))
    yield fleet
    fleet.teardown()


@pytest.fixture(scope="session")
def deployed_fleet(fleet):
    """The fleet with a release running on every host (deployed now if no test did yet)."""
    if not all(fleet.releases(h) for h in fleet.hosts):
        done = fleet.invoke("deploy", "--hosts", fleet.spec())
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return fleet
