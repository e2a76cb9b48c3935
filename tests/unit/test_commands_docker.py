"""Image references, the docker argv builders and parsers, the pruning plan, and the
registry settings: pure logic, no Docker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deploy.commands import docker
from deploy.commands.docker import Ref, parse_ref, parse_registry, plan_prune
from deploy.errors import ConfigError
from deploy.fleet.registry import Published, Registry, registry_config
from deploy.fleet.shipping import pull_name
from deploy.settings import load_settings

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
D = "sha256:" + "d" * 64


@pytest.mark.parametrize(("text", "ref"), [
    ("postgres", Ref(None, "postgres", "latest")),
    ("postgres:16", Ref(None, "postgres", "16")),
    ("deploy-local/postgres:20048508ca56", Ref(None, "deploy-local/postgres", "20048508ca56")),
    ("app-backend:abc1234-dirty-1a2b3c4d", Ref(None, "app-backend", "abc1234-dirty-1a2b3c4d")),
    ("localhost:5000/app:1", Ref("localhost:5000", "app", "1")),
    ("127.0.0.1:41234/deploy-local/postgres:k", Ref("127.0.0.1:41234", "deploy-local/postgres",
                                                    "k")),
    ("ghcr.io/acme/app", Ref("ghcr.io", "acme/app", "latest")),
    ("app@sha256:" + "0" * 64, Ref(None, "app", None, "sha256:" + "0" * 64)),
])
def test_references_parse_as_docker_reads_them(text, ref):
    assert parse_ref(text) == ref
    assert str(parse_ref(text)) == (text if ":" in text.rsplit("/", 1)[-1] or "@" in text
                                    else text + ":latest")


@pytest.mark.parametrize(("text", "message"), [
    ("App:1", "image: 'App:1' is not an image name (lower-case letters, digits, '.', '_', "
              "'-', '/' between components)"),
    ("app:", "image: 'app:' has a malformed tag ''"),
    # Docker reads "app:bad" as a registry with a port, as here.
    ("app:bad/tag", "image: 'app:bad/tag' has a malformed registry 'app:bad'"),
    ("a//b:1", "image: 'a//b:1' is not an image name (lower-case letters, digits, '.', '_', "
               "'-', '/' between components)"),
    ("app@sha256:xyz", "image: 'app@sha256:xyz' has a malformed digest"),
    ("bad_host.io:x/app:1", "image: 'bad_host.io:x/app:1' has a malformed registry "
                            "'bad_host.io:x'"),
])
def test_malformed_references_are_refused_naming_what_is_wrong(text, message):
    with pytest.raises(ValueError) as info:
        parse_ref(text)
    assert str(info.value) == message


def test_an_image_moves_under_a_registry_keeping_path_and_tag():
    ref = parse_ref("deploy-local/postgres:k1")
    assert str(ref.in_registry("127.0.0.1:5000")) == "127.0.0.1:5000/deploy-local/postgres:k1"
    assert str(ref.in_registry("ghcr.io/acme")) == "ghcr.io/acme/deploy-local/postgres:k1"
    # A name from another registry keeps its path, under ours.
    assert str(parse_ref("quay.io/x/app:2").in_registry("r.example.com:5000")) == \
        "r.example.com:5000/x/app:2"
    # Already there: unchanged (BACKEND_IMAGE may name DEPLOY_REGISTRY itself).
    there = parse_ref("ghcr.io/acme/app:3")
    assert there.in_registry("ghcr.io/acme") == there
    assert there.in_registry("ghcr.io") == there


def test_a_host_pulls_through_its_tunnel_port_or_the_name_pushed_to_deploy_registry():
    p = Published("app:1", A, parse_ref("127.0.0.1:32768/app:1"))
    assert p.at("127.0.0.1:40001") == "127.0.0.1:40001/app:1"
    assert pull_name(p, Registry("127.0.0.1:32768", 32768), 40001) == "127.0.0.1:40001/app:1"
    remote = Registry("ghcr.io/acme", None, "bot", "pw")
    for plain in ("app:1", "ghcr.io/acme/app:1"):  # BACKEND_IMAGE may name the registry
        pushed = parse_ref(plain).in_registry(remote.address)
        assert pull_name(Published(plain, A, pushed), remote, None) == "ghcr.io/acme/app:1"


@pytest.mark.parametrize(("text", "value"), [
    ("registry.example.com:5000", "registry.example.com:5000"),
    ("ghcr.io/acme", "ghcr.io/acme"),
    ("https://ghcr.io/acme/", "ghcr.io/acme"),
    ("localhost:5000", "localhost:5000"),
    ("10.213.1.1:5000", "10.213.1.1:5000"),
])
def test_registry_addresses_accept_host_port_and_namespace(text, value):
    assert parse_registry(text) == value
    assert docker.registry_domain(value) == value.partition("/")[0]


@pytest.mark.parametrize("text", ["acme", "ghcr.io/Acme", "bad host:5000"])
def test_a_registry_address_docker_would_read_as_a_hub_path_is_refused(text):
    with pytest.raises(ValueError) as info:
        parse_registry(text)
    assert str(info.value).startswith(f"DEPLOY_REGISTRY: {text!r} ")


def test_the_docker_commands_are_argv_lists_with_secrets_never_in_them():
    assert docker.image_id("app:1") == ["docker", "image", "inspect", "--format", "{{.Id}}",
                                        "app:1"]
    assert docker.tag("a:1", "b:1") == ["docker", "image", "tag", "a:1", "b:1"]
    assert docker.untag("127.0.0.1:1/a:1") == ["docker", "image", "rm", "127.0.0.1:1/a:1"]
    assert docker.push("r:5000/a:1") == ["docker", "image", "push", "r:5000/a:1"]
    assert docker.pull("r:5000/a:1", "/tmp/cfg") == ["docker", "--config", "/tmp/cfg", "image",
                                                     "pull", "r:5000/a:1"]
    assert docker.login("ghcr.io/acme", "bot", "/tmp/cfg") == [
        "docker", "--config", "/tmp/cfg", "login", "--username", "bot", "--password-stdin",
        "ghcr.io"]
    assert docker.run_registry("p-registry", "registry:2", "p-registry",
                               labels={"deploy.registry.project": "p"}) == [
        "docker", "container", "run", "--detach", "--name", "p-registry",
        "--publish", "127.0.0.1::5000", "--volume", "p-registry:/var/lib/registry",
        "--label", "deploy.registry.project=p", "registry:2"]
    assert docker.container_port("p-registry") == ["docker", "container", "port", "p-registry",
                                                   "5000/tcp"]
    assert docker.remove_container("p-registry") == ["docker", "container", "rm", "--force",
                                                     "--volumes", "p-registry"]
    assert docker.list_tags("app") == ["docker", "image", "ls", "--no-trunc", "--format",
                                       "{{.Tag}}\t{{.ID}}", "app"]
    assert docker.created([A]) == ["docker", "image", "inspect", "--format",
                                   "{{.Id}}\t{{.Created}}", A]
    assert docker.remove_tags(["app:r1", "app:r2"]) == ["docker", "image", "rm", "app:r1",
                                                        "app:r2"]
    assert docker.temp_dir()[:2] == ["mktemp", "-d"]
    assert docker.remove_dir("/tmp/x") == ["rm", "-rf", "--", "/tmp/x"]


@pytest.mark.parametrize(("builder", "args"), [
    (docker.remove_tags, []), (docker.remove_tags, ["--all"]), (docker.created, ["app:1"]),
    (docker.container_images, []), (docker.container_images, ["-q"]),
])
def test_list_builders_refuse_empty_lists_and_option_like_words(builder, args):
    with pytest.raises(ValueError):
        builder(args)


def test_a_failed_docker_command_is_summed_up_by_the_line_that_says_why():
    stderr = ("docker: Error response from daemon: No command specified.\n"
              "See 'docker run --help'.\n")
    assert docker.error_line(stderr, 125) == \
        "docker: Error response from daemon: No command specified."
    assert docker.error_line("a\nRun 'docker run --help' for more information\n", 1) == "a"
    assert docker.error_line("", 125) == "exit code 125"


def test_parsers_read_what_docker_prints():
    assert docker.parse_port("127.0.0.1:32771\n") == 32771
    assert docker.parse_port("0.0.0.0:1\n127.0.0.1:49153\n[::1]:49153\n") == 49153
    with pytest.raises(ValueError, match="no port published on 127.0.0.1"):
        docker.parse_port("0.0.0.0:5000\n")
    assert docker.parse_image_id(A + "\n") == A
    assert docker.parse_image_id("Error: No such image") is None
    assert docker.parse_tags(f"r1\t{A}\n<none>\t{B}\nlive\t{A}\nbad\tline\n") == [
        ("r1", A), ("live", A)]
    created = docker.parse_created(f"{A}\t2026-11-28T17:43:33.592590763Z\n"
                                   f"{B}\t2026-11-28T17:43:33Z\n{C}\tgarbage\n")
    assert created == {A: datetime(2026, 11, 28, 17, 43, 33, 592590, tzinfo=UTC),
                       B: datetime(2026, 11, 28, 17, 43, 33, tzinfo=UTC)}


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ages(*ids: str) -> dict[str, datetime]:
    """The first ID is the oldest."""
    return {id_: T0 + timedelta(seconds=n) for n, id_ in enumerate(ids)}


def test_pruning_keeps_the_newest_releases_by_build_time():
    tags = [("r1", A), ("r2", B), ("r3", C), ("r4", D)]
    assert plan_prune(tags, ages(A, B, C, D), keep=2) == ["r2", "r1"]
    assert plan_prune(tags, ages(A, B, C, D), keep=4) == []
    assert plan_prune(tags, ages(D, C, B, A), keep=3) == ["r4"]


def test_pruning_never_removes_live_its_image_a_used_image_or_a_protected_tag():
    tags = [("r1", A), ("r2", B), ("r3", C), ("r4", D), ("live", B)]
    created = ages(A, B, C, D)
    assert plan_prune(tags, created, keep=1) == ["r3", "r1"]  # r2 is what live names
    assert plan_prune(tags, created, keep=1, in_use=[A]) == ["r3"]
    assert plan_prune(tags, created, keep=1, in_use=[A], protect=["r3"]) == []


def test_pruning_counts_an_image_with_no_known_age_as_the_oldest():
    assert plan_prune([("x", A), ("y", B)], {B: T0}, keep=1) == ["x"]


def test_pruning_keeps_at_least_one_release():
    with pytest.raises(ValueError, match=r"keep must be at least 1 \(got 0\), or 0 with the "
                                         "tags to keep in protect"):
        plan_prune([], {}, keep=0)


def test_pruning_with_keep_0_keeps_exactly_the_protected_tags_live_and_those_in_use():
    # A host: the images of its release directories stay; one shipped for a release no
    # host switched to (its directory removed) goes, however new it is.
    tags = [("staged", D), ("r3", C), ("r2", B), ("r1", A), ("live", C)]
    assert plan_prune(tags, ages(A, B, C, D), keep=0, protect=["r3", "r2"]) == ["staged", "r1"]
    assert plan_prune(tags, ages(A, B, C, D), keep=0, protect=["r2"], in_use=[A]) == ["staged"]


def settings(**values):
    return load_settings(environ=values, read_file=False)


def test_the_local_registry_is_the_default_and_its_image_a_setting():
    assert registry_config(settings()) == registry_config(settings(REGISTRY_IMAGE=""))
    config = registry_config(settings())
    assert (config.image, config.remote, config.user) == ("registry:2", None, None)
    local = registry_config(settings(REGISTRY_IMAGE="deploy-local/registry:37ed9ff69e3c"))
    assert local.image == "deploy-local/registry:37ed9ff69e3c"


def test_deploy_registry_with_a_login_keeps_the_password_out_of_its_repr():
    config = registry_config(settings(DEPLOY_REGISTRY="ghcr.io/acme", DEPLOY_REGISTRY_USER="bot",
                                      DEPLOY_REGISTRY_PASSWORD="s3cret-token"))
    assert (config.remote, config.user, config.password) == ("ghcr.io/acme", "bot",
                                                             "s3cret-token")
    assert "s3cret-token" not in repr(config)


@pytest.mark.parametrize(("values", "message"), [
    ({"DEPLOY_REGISTRY": "r.example.com", "DEPLOY_REGISTRY_USER": "bot"},
     "DEPLOY_REGISTRY_PASSWORD: missing; DEPLOY_REGISTRY_USER is set (a secret in CI, or .env; "
     "it goes to docker login on stdin)"),
    ({"DEPLOY_REGISTRY": "r.example.com", "DEPLOY_REGISTRY_PASSWORD": "hunter2"},
     "DEPLOY_REGISTRY_USER: missing; DEPLOY_REGISTRY_PASSWORD is set"),
    ({"DEPLOY_REGISTRY_USER": "bot", "DEPLOY_REGISTRY_PASSWORD": "hunter2"},
     "DEPLOY_REGISTRY_USER: set, but DEPLOY_REGISTRY is not: the login is for the registry "
     "named there"),
    ({"DEPLOY_REGISTRY": "acme"},
     "DEPLOY_REGISTRY: 'acme' is not a registry address (host[:port][/namespace], e.g. "
     "ghcr.io/acme or registry.example.com:5000)"),
    ({"REGISTRY_IMAGE": "Registry:2"},
     "REGISTRY_IMAGE: 'Registry:2' is not an image name (lower-case letters, digits, '.', '_', "
     "'-', '/' between components)"),
])
def test_bad_registry_settings_name_the_setting(values, message):
    with pytest.raises(ConfigError) as info:
        registry_config(settings(**values))
    assert str(info.value) == message
    assert info.value.exit_code == 2
    assert "hunter2" not in str(info.value)


def test_stop_with_a_timeout_or_with_each_container_s_own_grace_period():
    assert docker.stop(["a1", "b2"], 35) == ["docker", "stop", "--time", "35", "a1", "b2"]
    # None: Docker uses each container's stop timeout (Compose's stop_grace_period).
    assert docker.stop(["w1"], None) == ["docker", "stop", "w1"]
    assert docker.stop(["w1"], 0) == ["docker", "stop", "--time", "0", "w1"]
    with pytest.raises(ValueError, match="container or image ids expected"):
        docker.stop(["--all"], None)
