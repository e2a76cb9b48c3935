"""The Compose project model, parsed from `compose config` output captured from
docker-compose 1.29 (v1) and written from the compose-spec for v2
(tests/support/compose-captures/README.md), and the refusals checked before a deploy."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.commands import compose
from deploy.commands.project import (
    Build,
    Port,
    build_groups,
    parse_config,
    parse_duration,
    refusals,
)
from deploy.errors import ConfigError, DeployError

CAPTURES = Path(__file__).parents[1] / "support" / "compose-captures"


@pytest.fixture(params=["v1", "v2"])
def project(request):
    return parse_config((CAPTURES / f"{request.param}-config.yml").read_text(), "shop")


def test_the_config_command_is_compose_config_for_the_project():
    c = compose.Compose(("docker-compose",), "v1", "/p/compose.yml", "shop")
    assert compose.config(c) == ["docker-compose", "-f", "/p/compose.yml", "-p", "shop",
                                 "config"]


def test_both_versions_give_the_same_services_builds_and_stop_settings(project):
    assert project.name == "shop"
    assert sorted(project.services) == ["admin", "cache", "db", "web", "worker"]
    web, worker = project.services["web"], project.services["worker"]
    assert web.build == Build(context="/work/shop", dockerfile="Dockerfile",
                              args=(("PYTHON_IMAGE", "python:3.12-slim"),), target="app")
    assert worker.build == web.build
    assert project.services["admin"].build == Build(context="/work/shop/admin")
    assert project.services["db"].build is None
    assert web.image == "shop-web:live"
    assert (web.stop_signal, web.stop_grace_period) == ("SIGTERM", 20.0)
    assert (worker.stop_signal, worker.stop_grace_period) == ("SIGINT", 5.0)
    assert web.healthcheck == ("CMD", "python3", "/srv/server.py", "--probe")
    assert worker.healthcheck is None
    assert project.services["admin"].networks == ("default", "front")
    assert web.networks == ("default",)
    assert "front" in project.networks


def test_both_versions_give_the_same_ports_short_or_long(project):
    admin = project.services["admin"]
    assert admin.ports == (Port("9000"), Port("9443", "9443", "127.0.0.1"))
    assert admin.fixed_ports == (Port("9443", "9443", "127.0.0.1"),)
    assert project.services["cache"].ports == (Port("6379", "6379"),)
    assert project.services["db"].ports == (Port("5432", "5432", "127.0.0.1"),)
    assert project.services["web"].ports == ()


def test_image_names_drop_the_tag_or_default_to_project_and_service(project):
    assert project.image_name("web") == "shop-web"
    assert project.image_name("cache") == "redis"
    assert project.image_name("admin") == "shop-admin"


def test_an_image_name_keeps_a_registry_port_and_drops_a_digest():
    text = ("services:\n  a: {image: 'reg.example:5000/team/a:1.2'}\n"
            "  b: {image: 'b@sha256:0123'}\n  c: {image: reg.example:5000/c}\n")
    p = parse_config(text, "x")
    assert [p.image_name(s) for s in "abc"] == ["reg.example:5000/team/a", "b",
                                                "reg.example:5000/c"]


def test_a_definition_digest_changes_only_with_the_definition():
    one = parse_config("services:\n  db: {image: 'postgres:16', environment: {A: '1'}}\n", "x")
    same = parse_config("services:\n  db: {environment: {A: '1'}, image: 'postgres:16'}\n", "x")
    other = parse_config("services:\n  db: {image: 'postgres:17', environment: {A: '1'}}\n",
                         "x")
    assert one.services["db"].definition == same.services["db"].definition
    assert one.services["db"].definition != other.services["db"].definition


def test_build_args_as_a_list_and_a_disabled_healthcheck():
    text = ("services:\n  a:\n    build: {context: /c, args: ['X=1', 'Y']}\n"
            "    healthcheck: {disable: true}\n")
    a = parse_config(text, "x").services["a"]
    assert a.build == Build("/c", "Dockerfile", (("X", "1"), ("Y", "")))
    assert a.healthcheck is None


@pytest.mark.parametrize(("text", "seconds"), [
    ("20s", 20.0), ("1m", 60.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), (7, 7.0),
    (None, None),
])
def test_durations_are_read_as_compose_writes_them(text, seconds):
    assert parse_duration(text) == seconds


def test_a_bad_duration_and_unreadable_output_are_named():
    with pytest.raises(DeployError, match=r"compose config: '20 s' is not a duration"):
        parse_duration("20 s")
    with pytest.raises(DeployError, match=r"^compose config: unreadable YAML at line 3$"):
        parse_config("services:\n  a: [\n", "x")
    with pytest.raises(DeployError, match=r"^compose config: no services: in its output$"):
        parse_config("volumes: {}\n", "x")


def test_the_settings_the_project_fits_are_not_refused(project):
    refusals(project, "compose.yml", ["web"], ["worker"], "db")
    refusals(project, "compose.yml", ["web", "admin"][:1], [], "")


@pytest.mark.parametrize(("apps", "workers", "db", "message"), [
    (["backend"], [], "db",
     "APP_SERVICES: compose.yml has no service 'backend' (its services: admin, cache, db, "
     "web, worker)"),
    (["web"], ["jobs"], "db", "WORKER_SERVICES: compose.yml has no service 'jobs'"),
    (["web"], [], "postgres", "DB_SERVICE: compose.yml has no service 'postgres'"),
    (["admin"], [], "db",
     "APP_SERVICES: service 'admin' in compose.yml publishes the fixed host port "
     "127.0.0.1:9443:9443; a deploy runs two of its containers side by side: drop its "
     "`ports:`; the proxy publishes it at PROXY_PUBLISH"),
    (["cache"], [], "", "APP_SERVICES: service 'cache' in compose.yml has no `build:` "
                        "section; a deploy builds each app service's image by release"),
])
def test_a_service_the_file_lacks_or_a_fixed_app_port_is_refused(project, apps, workers, db,
                                                                   message):
    with pytest.raises(ConfigError) as info:
        refusals(project, "compose.yml", apps, workers, db)
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_a_fixed_port_without_a_host_address_is_shown_as_published_and_target():
    text = ("services:\n  api:\n    build: {context: /c}\n"
            "    ports: [{target: 6379, published: '6379', protocol: tcp}]\n")
    with pytest.raises(ConfigError) as info:
        refusals(parse_config(text, "x"), "compose.yml", ["api"], [], "")
    assert str(info.value) == (
        "APP_SERVICES: service 'api' in compose.yml publishes the fixed host port 6379:6379; "
        "a deploy runs two of its containers side by side: drop its `ports:`; the proxy "
        "publishes it at PROXY_PUBLISH")


def test_a_user_service_named_proxy_is_refused_when_the_tool_runs_its_own():
    text = ("services:\n  web: {build: {context: /c}}\n"
            "  proxy: {image: 'haproxy:2.6', ports: ['80:80']}\n")
    with pytest.raises(ConfigError) as info:
        refusals(parse_config(text, "x"), "compose.yml", ["web"], [], "")
    assert str(info.value) == (
        "COMPOSE_FILE: compose.yml has a service named 'proxy'; the tool runs its own proxy "
        "under that name in front of APP_SERVICES: rename yours, or drop it if it only "
        "fronted the app (PROXY_PUBLISH says where the tool's proxy publishes)")
    assert info.value.exit_code == 2
    # With no app service there is no proxy of the tool's, so the name is free.
    refusals(parse_config(text, "x"), "compose.yml", [], ["web"], "")


def test_services_with_equal_build_sections_share_one_build(project):
    groups = build_groups(project, ["web", "worker", "admin", "db"])
    assert [(g.services, g.images) for g in groups] == [
        (("web", "worker"), ("shop-web",)), (("admin",), ("shop-admin",))]
    assert groups[0].dockerfile == "/work/shop/Dockerfile"
    assert groups[0].build.target == "app"


def test_a_shared_build_with_two_image_names_is_tagged_with_both():
    text = ("services:\n  a: {build: {context: /c, dockerfile: d/Dockerfile}, image: 'x/a:1'}\n"
            "  b: {build: {context: /c, dockerfile: d/Dockerfile}}\n"
            "  c: {build: {context: /c, dockerfile: /abs/Dockerfile}}\n")
    groups = build_groups(parse_config(text, "p"), ["a", "b", "c"])
    assert [(g.services, g.images, g.dockerfile) for g in groups] == [
        (("a", "b"), ("x/a", "p-b"), "/c/d/Dockerfile"),
        (("c",), ("p-c",), "/abs/Dockerfile")]


def test_the_config_hash_of_one_service_and_its_answer():
    c = compose.Compose(("docker", "compose"), "v2", "/p/c.yml", "shop")
    assert compose.config_hashes(c, ["db"]) == ["docker", "compose", "-f", "/p/c.yml", "-p",
                                                "shop", "config", "--hash=db"]
    # As docker-compose 1.29.2 printed it here (v2 prints the same `service hash` lines).
    text = "db 4bc3e20ee26be160325ba58630ef99be2d310e3fc88ee3db51c4c4c3a227823a\n"
    assert compose.parse_config_hashes(text).get("db") == text.split()[1]
    assert compose.parse_config_hashes(text).get("web") is None
    assert compose.parse_config_hashes("").get("db") is None


def test_the_config_hashes_of_several_services_in_one_run():
    c = compose.Compose(("docker-compose",), "v1", "/p/c.yml", "shop")
    assert compose.config_hashes(c, ["db", "proxy"])[-2:] == ["config", "--hash=db,proxy"]
    assert compose.parse_config_hashes("db h1\nproxy h2\n\n") == {"db": "h1", "proxy": "h2"}


def test_inspect_reads_the_config_hash_compose_labelled_a_container_with():
    text = ('[{"Id": "c1", "Name": "/shop-db-1", "State": {"Status": "running"}, '
            '"Config": {"Labels": {"com.docker.compose.service": "db", '
            '"com.docker.compose.config-hash": "abc"}}}]')
    assert compose.parse_inspect(text)[0].config_hash == "abc"
