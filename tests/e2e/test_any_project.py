"""`invoke deploy` and `invoke up` pointed at a Compose project of the tests' own
(tests/support/anystack: `db`, `web` on 8000 with /healthz, `worker`), not the sample.

So far: the refusals, before anything is started or built, with the real Compose reading
the real file (docker-compose v1 on this machine, or the v2 plugin where installed).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.base import ROOT

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
