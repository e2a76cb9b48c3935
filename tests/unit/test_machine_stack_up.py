"""`Stack.up` on a host with a role: only the services it runs, each with `--no-deps`, so a
dependency (the database of a web host's app) is never started there."""

from __future__ import annotations

from types import SimpleNamespace

from deploy.commands.compose import Compose
from deploy.machine.stack import Stack
from deploy.settings import load_settings
from tests.support.base import ROOT

HEAD = ["docker-compose", "-f", "/srv/app/current/docker-compose.yml", "-p", "app"]


def up_argvs(**kwargs) -> tuple[list[list[str]], list]:
    settings = load_settings(environ={"POSTGRES_PASSWORD": "pw"}, read_file=False, cwd=ROOT)
    stack = Stack(None, settings, lambda line: None)
    stack._compose = Compose(("docker-compose",), "v1", HEAD[2], "app")
    ran, waited = [], []

    def run(argv, **_):
        ran.append(argv[len(HEAD):])
        return SimpleNamespace(stdout="postgres\nbackend\nproxy\ncache\n", exited=0)

    stack.run = run
    stack.wait_healthy = lambda timeout, services=(): waited.append(services)
    stack.up(**kwargs)
    return ran, waited


def test_here_up_starts_the_first_services_then_every_other_one():
    ran, waited = up_argvs(first=("postgres", "proxy"))
    assert ran == [["up", "-d", "--no-build", "--no-deps", "postgres", "proxy"],
                   ["config", "--services"],
                   ["up", "-d", "--no-build", "--no-deps", "backend", "cache"]]
    assert waited == [("postgres", "proxy")]


def test_a_web_host_starts_its_proxy_first_then_its_app_and_never_the_database():
    ran, waited = up_argvs(first=("postgres", "proxy"), only=("backend", "proxy", "cache"))
    assert ran == [["up", "-d", "--no-build", "--no-deps", "proxy"],
                   ["config", "--services"],
                   ["up", "-d", "--no-build", "--no-deps", "backend", "cache"]]
    assert waited == [("proxy",)]


def test_a_database_host_starts_its_database_and_nothing_else():
    ran, waited = up_argvs(first=("postgres", "proxy"), only=("postgres",))
    assert ran == [["up", "-d", "--no-build", "--no-deps", "postgres"],
                   ["config", "--services"]]
    assert waited == [("postgres",)]


def test_a_file_without_the_app_services_the_settings_name_gets_no_override(tmp_path):
    # `invoke logs noisy` on a project of one `noisy` service, APP_SERVICES left at backend.
    from deploy.commands.project import parse_config

    settings = load_settings(environ={"POSTGRES_PASSWORD": "pw"}, read_file=False, cwd=ROOT)
    stack = Stack(None, settings, lambda line: None)
    stack._user_compose = Compose(("docker-compose",), "v1", "/tmp/noisy.yml", "app")
    stack._project = parse_config("services:\n  noisy: {image: 'python:3.12-slim'}\n", "app")
    assert stack.compose is stack._user_compose  # nothing to route, nothing pinned
    assert stack.compose.argv("logs", "noisy")[-2:] == ["logs", "noisy"]
