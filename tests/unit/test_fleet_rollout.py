"""What a remote deploy ships, by name: each host's images, the messages of a deploy that
cannot ship, the proxy image's source, and how `invoke releases` shows a release."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import ConfigError
from deploy.fleet.releases import ReleaseImage, format_release
from deploy.fleet.rollout import HostImages, host_images, no_build_message, no_proxy_message
from deploy.machine import builds
from deploy.release.revision import Revision
from deploy.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _settings(**values):
    return load_settings(environ={"DATABASE_URL": "postgresql://app:pw@127.0.0.1:5432/app",
                                  **values}, read_file=False, cwd=ROOT)


def test_a_host_runs_the_release_tag_of_its_backend_the_live_proxy_and_its_postgres():
    assert host_images(_settings(COMPOSE_PROJECT_NAME="shop"), "ab12cd3") == HostImages(
        backend="shop-backend:ab12cd3", proxy="shop-proxy:live", postgres="postgres:16")
    named = host_images(_settings(BACKEND_IMAGE="registry.example.com/shop/api",
                                  POSTGRES_IMAGE="deploy-local/postgres"), "ab12cd3-dirty-1a2b")
    assert named.refs == ["registry.example.com/shop/api:ab12cd3-dirty-1a2b",
                          "deploy-local/postgres:latest",  # as Docker reads a bare name
                          "app-proxy:live"]


def test_a_project_with_several_images_ships_each_and_a_database_host_none():
    images = host_images(_settings(COMPOSE_PROJECT_NAME="shop", APP_SERVICES="web,admin",
                                   APP_PORT="8000", PROXY_PUBLISH="web=80,admin=81"),
                         "ab12cd3", names=("shop-web", "shop-admin"))
    assert images.refs == ["shop-web:ab12cd3", "shop-admin:ab12cd3", "postgres:16",
                           "shop-proxy:live"]
    db_host = host_images(_settings(APP_SERVICES="", WORKER_SERVICES=""), "ab12cd3", names=())
    assert db_host.refs == ["postgres:16"]  # no app image, no proxy


def test_a_malformed_image_setting_names_the_setting():
    with pytest.raises(ConfigError) as bad:
        host_images(_settings(POSTGRES_IMAGE="Postgres:16"), "ab12cd3")
    assert str(bad.value).startswith("POSTGRES_IMAGE: 'Postgres:16' is not an image name")


def test_no_build_without_the_image_says_which_image_and_what_to_run():
    rev = Revision("ab12cd3", "clean", "ab12cd3")
    assert no_build_message("app-backend:ab12cd3", rev) == (
        "--no-build: there is no image app-backend:ab12cd3 here, the backend image of "
        "ab12cd3; build it here first with `invoke deploy` (it also checks that the stack "
        "comes up healthy with it), or deploy without --no-build")
    settings = _settings(PROXY_IMAGE="haproxy:2.8")
    assert no_proxy_message("app-proxy:live", settings, stale=True) == (
        "--no-build: the proxy image app-proxy:live was built from another haproxy.cfg or "
        "PROXY_IMAGE than this tree's (its haproxy.cfg is rendered from the role settings, "
        "PROXY_IMAGE=haproxy:2.8); build it here first with `invoke deploy`, or deploy "
        "without --no-build")
    assert "app-proxy:live is not here (" in no_proxy_message("app-proxy:live", settings,
                                                              stale=False)


def test_the_proxy_source_changes_with_its_rendered_config_or_base_image_and_nothing_else():
    def source(**values):
        return builds.proxy_source(_settings(**values))

    first = source()
    assert len(first) == 16 and first == source()
    assert source(COMPOSE_PROJECT_NAME="other") == first  # the name is not the content
    assert source(BACKEND_PUBLISHED_PORT="9999") == first  # published by Compose, not cfg
    assert source(APP_PORT="8000") == first  # given to each slot by the runtime API
    assert source(PROXY_IMAGE="haproxy:2.8") != first
    # Whatever the rendered haproxy.cfg says: the health paths, the services.
    changed = [source(HEALTH_PATH="/healthz"),
               source(PROXY_HEALTH_PATH="/lb"), source(APP_SERVICES="web"),
               source(APP_SERVICES="backend,admin",
                      PROXY_PUBLISH="backend=8080,admin=8081")]
    assert first not in changed and len(set(changed)) == len(changed)


def test_a_release_line_shows_its_image_its_id_and_which_is_current_and_live():
    id_ = "sha256:" + "ab" * 32
    assert format_release(ReleaseImage("20261126T080005Z-ab12cd3", "app-backend:ab12cd3", id_,
                                       current=True, live=True)) == (
        f"* 20261126T080005Z-ab12cd3  app-backend:ab12cd3  {id_}  live")
    assert format_release(ReleaseImage("20261125T080005Z-0f0f0f0", "app-backend:0f0f0f0",
                                       None, current=False, live=False)) == (
        "  20261125T080005Z-0f0f0f0  app-backend:0f0f0f0  (image no longer on the host)")
