"""Builds from each app and worker service's own `build:` section, tagged by release."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from deploy.commands import docker
from deploy.commands.project import parse_config
from deploy.errors import ConfigError
from deploy.machine.builds import build_proxy, build_release, proxy_image, proxy_source
from deploy.machine.stack import Stack
from deploy.release.sequence import LOCAL_BUILD
from deploy.services import Publish
from deploy.settings import load_settings

COMPOSE = """
services:
  db: {image: 'postgres:16'}
  web:
    image: 'shop-web:live'
    build: {context: /srv/shop, dockerfile: docker/Dockerfile, target: app,
            args: {PYTHON_IMAGE: 'python:3.12-slim'}}
  worker:
    image: 'shop-web:live'
    build: {context: /srv/shop, dockerfile: docker/Dockerfile, target: app,
            args: {PYTHON_IMAGE: 'python:3.12-slim'}}
  admin: {build: /srv/shop/admin}
  cache: {image: 'redis:7'}
"""


class Recorder:
    def __init__(self, settings):
        self.settings = settings
        self.project = parse_config(COMPOSE, "shop")
        self.ran: list[tuple[list[str], str]] = []

    def run(self, argv, hide=False, what="", check=True):
        self.ran.append((argv, what))
        return SimpleNamespace(exited=0, stdout="")


@pytest.fixture
def settings(tmp_path):
    return load_settings(environ={"APP_SERVICES": "web,admin", "WORKER_SERVICES": "worker,cache",
                                  "DB_SERVICE": "db",
                                  "PROXY_PUBLISH": "web=8080,admin=8081"},
                         read_file=False, cwd=tmp_path)


def test_each_build_section_is_built_once_and_tagged_by_release(settings):
    stack = Recorder(settings)
    assert build_release(stack, "r7") == ["shop-web:r7", "shop-admin:r7"]
    label = f"{docker.RELEASE_LABEL}=r7"
    assert stack.ran == [
        (["docker", "build", "--file", "/srv/shop/docker/Dockerfile", "--tag", "shop-web:r7",
          "--target", "app", "--build-arg", "PYTHON_IMAGE=python:3.12-slim", "--label", label,
          "/srv/shop"], "build (web, worker)"),
        (["docker", "build", "--file", "/srv/shop/admin/Dockerfile", "--tag", "shop-admin:r7",
          "--label", label, "/srv/shop/admin"], "build (admin)")]


def test_no_cache_reaches_every_build(settings):
    stack = Recorder(settings)
    build_release(stack, "r7", no_cache=True)
    assert all(argv[-2] == "--no-cache" for argv, _ in stack.ran)


def test_an_app_service_without_a_build_section_is_refused_before_any_build(settings):
    # The refusal is Stack.check_roles (with the other role checks), which a local deploy
    # runs before its build step; build_release itself builds what has a `build:` section.
    stack = Stack(None, replace(settings, app_services=("web", "cache"),
                                proxy_publish={"web": Publish("127.0.0.1", 8080),
                                               "cache": Publish("127.0.0.1", 8081)}))
    stack._project = parse_config(COMPOSE, "shop")
    with pytest.raises(ConfigError) as info:
        stack.check_roles()
    assert str(info.value).startswith(
        "APP_SERVICES: service 'cache' in ") and str(info.value).endswith(
        " has no `build:` section; a deploy builds each app service's image by release")
    assert info.value.exit_code == 2
    steps = [step.__name__ for step in LOCAL_BUILD]
    assert steps.index("check_roles") < steps.index("build_and_base_up")


class Images(Recorder):
    """`docker image inspect` answers for PROXY_IMAGE and the proxy image, as given."""

    def __init__(self, settings, answer: str, exited: int = 0):
        super().__init__(settings)
        self.answer, self.exited = answer, exited

    def run(self, argv, hide=False, what="", check=True):
        self.ran.append((argv, what))
        if argv[:3] == ["docker", "image", "inspect"]:
            return SimpleNamespace(exited=self.exited, stdout=self.answer)
        return SimpleNamespace(exited=0, stdout="")


def _builds(stack) -> list[list[str]]:
    return [argv for argv, _ in stack.ran if argv[:2] == ["docker", "build"]]


def test_the_proxy_is_not_rebuilt_from_the_same_config_on_the_same_base(settings):
    source = proxy_source(settings)
    stack = Images(settings, f"sha256:base - -\nsha256:px {source} sha256:base\n")
    assert build_proxy(stack) is False
    assert _builds(stack) == []
    inspect = stack.ran[0][0]
    assert inspect[-2:] == [settings.proxy_image, proxy_image(settings)]


@pytest.mark.parametrize("proxy_line", [
    "sha256:px {source} sha256:older",  # PROXY_IMAGE pulled again since: a new base
    "sha256:px 0123456789ab sha256:base",  # other roles, ports or health paths
    "sha256:px {source} -",  # built before the base was labelled
], ids=["new-base", "other-config", "unlabelled"])
def test_the_proxy_is_rebuilt_when_its_config_or_base_changed(settings, proxy_line):
    line = proxy_line.format(source=proxy_source(settings))
    stack = Images(settings, f"sha256:base - -\n{line}\n")
    assert build_proxy(stack) is True
    [build] = _builds(stack)
    assert f"{docker.PROXY_BASE_LABEL}=sha256:base" in build
    assert f"{docker.PROXY_SOURCE_LABEL}={proxy_source(settings)}" in build


def test_the_proxy_is_built_without_a_base_label_when_proxy_image_is_not_here(settings):
    stack = Images(settings, "", exited=1)  # neither image here: the build pulls the base
    assert build_proxy(stack) is True
    [build] = _builds(stack)
    assert not any(a.startswith(docker.PROXY_BASE_LABEL) for a in build)
