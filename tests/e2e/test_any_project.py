"""`invoke deploy` and `invoke up` pointed at a Compose project of the tests' own
(tests/support/anystack: `db`, `web` on 8000 with /healthz, `worker`), not the sample.

The refusals, before anything is started or built, with the real Compose reading the real
file (docker-compose v1 on this machine, or the v2 plugin where installed); then deploys of
that project under load through the tool's own proxy: a changed release, a broken one, the
worker replaced with its own stop signal, the database container untouched, a killed
deploy's container never routed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from tests.support.base import ROOT
from tests.support.load import Clients, Wrk, get

ANYSTACK = ROOT / "tests" / "support" / "anystack"


@pytest.fixture
def anystack(tmp_path):
    """A copy of the tests' own stack (a test may change its compose file)."""
    target = tmp_path / "shop"
    shutil.copytree(ANYSTACK, target)
    return target


def project_containers(project: str) -> str:
    return subprocess.run(["docker", "ps", "-a", "-q", "--filter",
                           f"label=com.docker.compose.project={project}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def project_images(project: str) -> str:
    return subprocess.run(["docker", "image", "ls", "-q", f"{project}-*"],
                          capture_output=True, text=True, check=True).stdout.strip()


def refused(stack, *tasks: str) -> str:
    """Each task exits 2 with one line, and nothing of the project exists afterwards."""
    messages = set()
    for task in tasks:
        result = stack.invoke(task)
        assert result.returncode == 2, (task, result.stdout + result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (task, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        assert stack.password not in result.stdout + result.stderr
        messages.add(lines[0])
    assert project_containers(stack.project) == ""
    assert project_images(stack.project) == ""
    assert len(messages) == 1, messages
    return messages.pop()


def test_the_samples_service_names_are_refused_naming_the_services_the_file_has(
        make_stack, anystack):
    compose_file = anystack / "docker-compose.yml"
    stack = make_stack(COMPOSE_FILE=str(compose_file),
                       MIGRATIONS_DIR=str(anystack / "db" / "migrations"))
    message = refused(stack, "deploy", "up")
    assert message == (f"APP_SERVICES: {compose_file} has no service 'backend' "
                       "(its services: db, web, worker)")


@pytest.mark.parametrize(("settings", "message"), [
    ({"APP_SERVICES": "web", "WORKER_SERVICES": "jobs", "DB_SERVICE": "db",
      "APP_PORT": "8000", "HEALTH_PATH": "/healthz"},
     "WORKER_SERVICES: {file} has no service 'jobs' (its services: db, web, worker)"),
    ({"APP_SERVICES": "web", "WORKER_SERVICES": "worker", "APP_PORT": "8000"},
     "DB_SERVICE: {file} has no service 'postgres' (its services: db, web, worker)"),
])
def test_a_worker_or_database_service_the_file_lacks_is_refused(make_stack, anystack,
                                                                 settings, message):
    compose_file = anystack / "docker-compose.yml"
    stack = make_stack(COMPOSE_FILE=str(compose_file), **settings)
    assert refused(stack, "deploy", "up") == message.format(file=compose_file)


def test_an_app_service_on_a_fixed_host_port_is_refused(make_stack, anystack):
    compose_file = anystack / "docker-compose.yml"
    text = compose_file.read_text()
    compose_file.write_text(text.replace("    stop_signal: SIGTERM\n",
                                         "    stop_signal: SIGTERM\n    ports:\n"
                                         "      - \"127.0.0.1:18000:8000\"\n", 1))
    stack = make_stack(COMPOSE_FILE=str(compose_file), APP_SERVICES="web",
                       WORKER_SERVICES="worker", DB_SERVICE="db", APP_PORT="8000")
    assert refused(stack, "deploy", "up") == (
        f"APP_SERVICES: service 'web' in {compose_file} publishes the fixed host port "
        "127.0.0.1:18000:8000; a deploy runs two of its containers side by side: drop its "
        "`ports:`; the proxy publishes it at PROXY_PUBLISH")


# --- deploys of the tests' own project ---------------------------------------------------


class Shop:
    """The anystack copy as a git repository (a release is a commit) and its settings."""

    def __init__(self, stack, path):
        self.stack = stack
        self.path = path
        self.port = int(stack.values["PROXY_PUBLISH"].rsplit(":", 1)[1])

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                               *args], cwd=self.path, check=True, capture_output=True,
                              text=True).stdout.strip()

    def release(self, version: str) -> str:
        """Commit server.py with another VERSION; returns the new release (short sha)."""
        server = self.path / "server.py"
        server.write_text(re.sub(r'^VERSION = "[^"]*"', f'VERSION = "{version}"',
                                 server.read_text(), count=1, flags=re.M))
        self.git("commit", "-q", "-am", version)
        return self.git("rev-parse", "--short", "HEAD")

    def invoke(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.stack.invoke(*args, cwd=self.path, **kwargs)

    def deploy(self) -> subprocess.CompletedProcess:
        result = self.invoke("deploy")
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
        return result

    def ps(self) -> list[dict]:
        result = self.invoke("ps", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    def ids(self, service: str) -> list[str]:
        return subprocess.run(
            ["docker", "ps", "-q", "--no-trunc", "--filter",
             f"label=com.docker.compose.project={self.stack.project}", "--filter",
             f"label=com.docker.compose.service={service}"],
            capture_output=True, text=True, check=True).stdout.split()

    def logs(self, container: str) -> str:
        return subprocess.run(["docker", "logs", container], capture_output=True,
                              text=True).stdout



@pytest.fixture
def shop(make_stack, anystack):
    stack = make_stack(
        COMPOSE_FILE=str(anystack / "docker-compose.yml"),
        MIGRATIONS_DIR=str(anystack / "db" / "migrations"),
        APP_SERVICES="web", APP_PORT="8000", HEALTH_PATH="/healthz",
        WORKER_SERVICES="worker", DB_SERVICE="db", SUMMARY_TABLE_PREFIX="",
        POSTGRES_USER="shop", POSTGRES_DB="shop", DRAIN_TIMEOUT="10")
    stack.values.update(
        WEB_IMAGE=f"{stack.project}-web",
        PROXY_PUBLISH=f"127.0.0.1:{stack.backend_port}",
        DATABASE_URL=f"postgresql://shop:{stack.password}@127.0.0.1:{stack.pg_port}/shop")
    stack.write()
    shop = Shop(stack, anystack)
    (anystack / ".gitignore").write_text("*.env\n")
    shop.git("init", "-q", "-b", "main")
    shop.git("add", "-A")
    shop.git("commit", "-q", "-m", "one")
    try:
        yield shop
    finally:
        subprocess.run(["docker", "image", "rm", "-f", *subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
             f"{stack.project}-web"], capture_output=True, text=True).stdout.split()],
            capture_output=True)


def test_the_project_deploys_under_load_with_no_failed_request_and_its_worker_replaced(shop):
    first = shop.deploy()
    one = shop.git("rev-parse", "--short", "HEAD")
    assert f"traffic moves from nothing to {one}" in first.stdout, first.stdout
    assert get(shop.port) == (200, "one")
    assert get(shop.port, "/.deploy/health") == (200, "ok")
    db_before = shop.ids("db")
    old_worker = shop.ids("worker")
    assert len(db_before) == 1 and len(old_worker) == 1

    two = shop.release("two")
    since = str(int(time.time()) - 1)
    with Clients(shop.port, count=8, paths=[("GET", "/"), ("GET", "/healthz")]) as clients, \
            Wrk(f"http://127.0.0.1:{shop.port}/", connections=8) as wrk:
        time.sleep(1.0)
        second = shop.deploy()
        time.sleep(0.5)
    load = clients.tally()
    assert load.failures == [], load.failures[:20]
    assert wrk.report.errors == 0, wrk.report.text
    assert load.requests > 200 and wrk.report.requests > 1000, (load.requests, wrk.report.text)
    assert f"traffic moves from {one} to {two}" in second.stdout, second.stdout
    assert get(shop.port) == (200, "two")

    rows = {r["service"]: r for r in shop.ps()}
    assert rows["web"]["release"] == two
    assert re.fullmatch(r"web/slot\d+ ready UP", rows["web"]["proxy"]), rows["web"]
    assert rows["worker"]["release"] == two and rows["worker"]["state"] == "running"
    assert shop.ids("db") == db_before  # the database container untouched
    new_worker = shop.ids("worker")
    assert len(new_worker) == 1 and new_worker != old_worker
    assert "worker: version two started" in shop.logs(new_worker[0])
    # The old worker was stopped with its own stop signal (SIGINT: 2), once, and exited 0
    # within its grace period: no SIGKILL; then removed.
    events = subprocess.run(
        ["docker", "events", "--since", since, "--until", str(int(time.time()) + 1),
         "--filter", f"container={old_worker[0]}", "--format",
         "{{.Action}} {{index .Actor.Attributes \"signal\"}} "
         "{{index .Actor.Attributes \"exitCode\"}}"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    kills = [e.split()[1] for e in events if e.startswith("kill ")]
    dies = [e.split()[-1] for e in events if e.startswith("die ")]
    assert kills == ["2"] and dies == ["0"], events
    assert subprocess.run(["docker", "ps", "-aq", "--filter", f"id={old_worker[0]}"],
                          capture_output=True, text=True).stdout.strip() == ""


def test_a_broken_release_fails_before_the_switch_and_the_old_one_serves_on(shop):
    shop.deploy()
    one = shop.git("rev-parse", "--short", "HEAD")
    web_before, worker_before = shop.ids("web"), shop.ids("worker")
    shop.release("crash")
    with Clients(shop.port, count=8, paths=[("GET", "/")]) as clients:
        time.sleep(0.5)
        broken = shop.invoke("deploy")
        time.sleep(0.5)
    assert broken.returncode != 0, broken.stdout[-3000:]
    assert "web: crashing at start on purpose" in broken.stdout + broken.stderr
    assert "the old release keeps serving" in broken.stdout, broken.stdout[-3000:]
    assert clients.tally().failures == []
    assert get(shop.port) == (200, "one")
    assert shop.ids("web") == web_before and shop.ids("worker") == worker_before
    rows = {r["service"]: r for r in shop.ps()}
    assert rows["web"]["release"] == one


def test_a_deploy_killed_after_start_new_leaves_a_container_nothing_routes_to(shop):
    shop.deploy()
    shop.release("two")
    proc = shop.stack.popen_invoke("deploy", cwd=shop.path, stderr=subprocess.STDOUT)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("<== start new"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    time.sleep(2.0)  # long enough for any check of the new container to pass
    rows = [r for r in shop.ps() if r["service"] == "web"]
    seen_by_proxy = sorted("routed" if re.fullmatch(r"web/slot\d+ ready UP", r["proxy"] or "")
                           else r["proxy"] for r in rows)
    assert seen_by_proxy == ["not routed", "routed"], rows
    assert {get(shop.port)[1] for _ in range(40)} == {"one"}
    # The next deploy removes the leftover and switches.
    again = shop.deploy()
    assert "container(s) of an unfinished deploy" in again.stdout, again.stdout
    assert get(shop.port) == (200, "two")


def test_down_then_up_routes_through_slots_and_the_lb_check_follows_the_app(shop):
    shop.deploy()
    assert shop.invoke("down").returncode == 0
    assert get_or_none(shop.port) is None
    up = shop.invoke("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert re.search(r"proxy: routes to web/slot\d", up.stdout), up.stdout
    assert get(shop.port) == (200, "one")
    assert get(shop.port, "/.deploy/health") == (200, "ok")
    for container in shop.ids("web"):
        subprocess.run(["docker", "stop", "-t", "1", container], check=True,
                       capture_output=True)
    deadline = time.monotonic() + 15
    while get(shop.port, "/.deploy/health")[0] != 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert get(shop.port, "/.deploy/health") == (503, "draining")


def get_or_none(port: int):
    try:
        return get(port)
    except OSError:
        return None
