"""Images reach hosts that cannot build or pull them, and each host holds the exact image
built here, on the network-namespace hosts: separate engines, no registry
access, every command line they were sent recorded."""

from __future__ import annotations

import os
import re
import uuid

import invoke
import pytest

from deploy.commands.docker import parse_ref
from deploy.errors import DeployError
from deploy.fleet import registry, shipping
from tests.support import shipping_rig
from tests.support.fleet_rig import BUILD
from tests.support.services import missing as _missing
from tests.support.shipping_rig import AppImages, connect, image_id, run


@pytest.fixture(scope="module")
def local():
    return invoke.Context()


@pytest.fixture(scope="module")
def registry_image(docker_ready):
    image = shipping_rig.registry_image()
    if not image or run(["docker", "image", "inspect", image]).returncode != 0:
        _missing(f"no registry image ({image or 'REGISTRY_IMAGE not in .ci/local-images.env'}"
                 "): run bash .ci/build-images")
    return image


@pytest.fixture(scope="module")
def project():
    name = "e2eimg" + uuid.uuid4().hex[:6]
    yield name
    run(["docker", "volume", "rm", "--force", registry.names(name)[1]])


@pytest.fixture(scope="module")
def settings(netns_hosts, project, registry_image):
    return shipping_rig.settings_for(netns_hosts, project, REGISTRY_IMAGE=registry_image)


@pytest.fixture(scope="module")
def hosts(netns_hosts, settings):
    conns = [connect(netns_hosts, h, settings) for h in netns_hosts.hosts]
    yield conns
    for c in conns:
        c.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory, project):
    images = AppImages(f"deploy-e2e/{project}-app", tmp_path_factory.mktemp("app"))
    yield images
    images.remove()


@pytest.fixture(scope="module")
def r1(app):
    """The first release, built here: (name, image ID)."""
    return app.repository + ":r1", app.build("r1", "release one")


@pytest.fixture(scope="module")
def r2(app, r1):
    """The same app with its code (the top layer) changed."""
    return app.repository + ":r2", app.build("r2", "release two")


@pytest.fixture(scope="module")
def shipped_registry(local, settings, registry_image):
    """The project's registry here, for the whole module (as for one deploy)."""
    lines: list[str] = []
    with registry.open_registry(local, settings, out=lines.append) as reg:
        yield reg


def host_ids(rig, ref: str) -> list[str | None]:
    """Each host's ID for ref, asked from this machine straight to its engine."""
    return [image_id(rig.docker_argv(h), ref) for h in rig.hosts]


def changed_layer_bytes(address: str, before, after) -> int:
    old = {layer["digest"] for layer in registry.manifest(address, before)["layers"]}
    return sum(layer["size"] for layer in registry.manifest(address, after)["layers"]
               if layer["digest"] not in old)


def test_both_hosts_hold_the_image_built_here_and_run_it_without_building(
        netns_hosts, local, hosts, shipped_registry, app, r1):
    built = r1[1]
    lines: list[str] = []
    published = registry.publish(local, shipped_registry, [app.repository + ":r1"],
                                 out=lines.append)
    assert [(p.ref, p.id) for p in published] == [(app.repository + ":r1", built)]
    for c in hosts:
        report = shipping.ship(c, shipped_registry, published, out=lines.append)
        assert [(r.ref, r.id, r.action) for r in report.images] == [
            (app.repository + ":r1", built, "pulled")]
    assert host_ids(netns_hosts, app.repository + ":r1") == [built, built]
    for h in netns_hosts.hosts:
        ran = run(netns_hosts.docker_argv(h, "run", "--rm", app.repository + ":r1"))
        assert (ran.returncode, ran.stdout) == (0, "release one\n"), ran.stderr
        commands = netns_hosts.commands(h)
        assert "docker image pull 127.0.0.1:" in commands
        assert not BUILD.search(commands), commands
        # Only the plain name is left: the registry's name was dropped after the pull.
        names = run(netns_hosts.docker_argv(h, "image", "ls", "--format",
                                            "{{.Repository}}:{{.Tag}}")).stdout.split()
        assert app.repository + ":r1" in names
        assert not [n for n in names if n.startswith("127.0.0.1:")], names


def test_a_second_ship_of_the_same_image_sends_nothing(netns_hosts, local, hosts,
                                                       shipped_registry, r1):
    published = registry.publish(local, shipped_registry, [r1[0]], out=lambda _: None)
    for c, h in zip(hosts, netns_hosts.hosts, strict=True):
        shipping.ship(c, shipped_registry, published, out=lambda _: None)
        pulls_before = netns_hosts.commands(h).count("docker image pull")
        report = shipping.ship(c, shipped_registry, published, out=lambda _: None)
        assert [r.action for r in report.images] == ["present"]
        assert report.sent == 0
        assert netns_hosts.commands(h).count("docker image pull") == pulls_before


def test_a_code_only_change_sends_only_the_changed_layers(netns_hosts, local, hosts,
                                                          shipped_registry, app, r1, r2):
    first = registry.publish(local, shipped_registry, [r1[0]], out=lambda _: None)
    for c in hosts:  # the hosts run release one
        shipping.ship(c, shipped_registry, first, out=lambda _: None)
    new_id = r2[1]
    second = registry.publish(local, shipped_registry, [app.repository + ":r2"],
                              out=lambda _: None)
    changed = changed_layer_bytes(shipped_registry.address, first[0].remote, second[0].remote)
    total = sum(layer["size"] for layer in
                registry.manifest(shipped_registry.address, second[0].remote)["layers"])
    # The app layer (512 KiB, random) changed; busybox and the 4 MiB deps layer did not.
    assert 512 << 10 < changed < 600 << 10, changed
    assert total > 5 << 20, total
    for c, h in zip(hosts, netns_hosts.hosts, strict=True):
        before = netns_hosts.traffic(h)[0]
        report = shipping.ship(c, shipped_registry, second, out=lambda _: None)
        on_the_wire = netns_hosts.traffic(h)[0] - before
        assert report.pulled == [app.repository + ":r2"]
        assert changed <= report.sent <= 1.2 * changed, (report.sent, changed)
        assert changed <= on_the_wire <= 1.2 * changed, (on_the_wire, changed)
    assert host_ids(netns_hosts, app.repository + ":r2") == [new_id, new_id]


def test_a_host_without_the_base_images_and_without_registry_access_gets_them(
        netns_hosts, local, hosts, shipped_registry):
    base = shipping_rig.local_images().get("POSTGRES_IMAGE")
    if not base:
        _missing("POSTGRES_IMAGE not in .ci/local-images.env: run bash .ci/build-images")
    host, c = netns_hosts.hosts[1], hosts[1]
    assert image_id(netns_hosts.docker_argv(host), base) is None
    pulled = run(netns_hosts.ssh_argv(host, "docker pull postgres:16"), timeout=120)
    assert pulled.returncode == 1 and "registry-1.docker.io" in pulled.stderr
    published = registry.publish(local, shipped_registry, [base], out=lambda _: None)
    report = shipping.ship(c, shipped_registry, published, out=lambda _: None)
    assert report.pulled == [base]
    assert image_id(netns_hosts.docker_argv(host), base) == image_id(["docker"], base)
    ran = run(netns_hosts.docker_argv(host, "run", "--rm", "--entrypoint", "postgres", base,
                                      "--version"))
    assert ran.returncode == 0 and ran.stdout.startswith("postgres (PostgreSQL) "), ran.stderr
    assert not BUILD.search(netns_hosts.commands(host))


def test_another_image_under_the_same_name_on_a_host_is_replaced(netns_hosts, local, hosts,
                                                                 shipped_registry, r1):
    host, c = netns_hosts.hosts[0], hosts[0]
    ref = r1[0]
    stranger = netns_hosts.load_busybox(host, ref)  # the name, on another image
    published = registry.publish(local, shipped_registry, [ref], out=lambda _: None)
    assert stranger != published[0].id
    report = shipping.ship(c, shipped_registry, published, out=lambda _: None)
    assert report.pulled == [ref]
    assert image_id(netns_hosts.docker_argv(host), ref) == published[0].id


def test_a_host_holding_another_image_than_the_one_built_here_fails_naming_both_ids(
        netns_hosts, local, hosts, shipped_registry, app, r1, r2):
    host, c = netns_hosts.hosts[1], hosts[1]
    ref = r2[0]
    shipping.ship(c, shipped_registry, registry.publish(local, shipped_registry, [r1[0]],
                                                        out=lambda _: None), out=lambda _: None)
    published = registry.publish(local, shipped_registry, [ref], out=lambda _: None)
    shipping.transfer(c, shipped_registry, published, out=lambda _: None)
    # Between the pull and the check, the name is made to point at another image.
    assert run(netns_hosts.docker_argv(host, "tag", app.repository + ":r1", ref)).returncode == 0
    other = image_id(netns_hosts.docker_argv(host), ref)
    assert other != published[0].id
    with pytest.raises(shipping.ImageMismatch) as mismatch:
        shipping.verify(c, {ref: published[0].id})
    assert mismatch.value.exit_code == 1
    assert str(mismatch.value) == (
        f"{host.address}: image check failed: {ref}: expected {published[0].id}, the host has "
        f"{other} (the host does not run what was built and tested here)")
    # A wrong expectation is caught the same way, and a missing image is named as such.
    with pytest.raises(shipping.ImageMismatch, match="the host has no such image"):
        shipping.verify(c, {app.repository + ":never": published[0].id})
    # ship() verifies: the next ship repairs the name and passes.
    shipping.ship(c, shipped_registry, published, out=lambda _: None)
    assert image_id(netns_hosts.docker_argv(host), ref) == published[0].id


def test_the_registry_runs_only_during_the_deploy_and_keeps_its_layers(
        netns_hosts, local, project, settings, app, r1):
    container, volume = registry.names(project + "x")
    s = shipping_rig.settings_for(netns_hosts, project + "x",
                                  REGISTRY_IMAGE=settings.values["REGISTRY_IMAGE"])
    # A container left by a killed deploy is replaced, not reused.
    stale = run(["docker", "run", "-d", "--name", container, app.base, "sleep", "600"])
    assert stale.returncode == 0, stale.stderr
    try:
        lines: list[str] = []
        with registry.open_registry(local, s, out=lines.append) as reg:
            published = registry.publish(local, reg, [r1[0]], out=lines.append)
            ports = run(["docker", "port", container]).stdout
            assert re.fullmatch(r"5000/tcp -> 127\.0\.0\.1:\d+\n", ports), ports
            assert run(["docker", "inspect", "-f", "{{.Config.Image}}", container]
                       ).stdout.strip() == s.values["REGISTRY_IMAGE"]
        assert run(["docker", "ps", "-a", "-q", "--filter", f"name=^{container}$"]).stdout == ""
        # The volume keeps the layers: the next deploy's registry has the image already.
        with registry.open_registry(local, s, out=lines.append) as reg:
            manifest = registry.manifest(reg.address, published[0].remote)
            assert manifest["config"]["digest"] == published[0].id
        assert run(["docker", "ps", "-a", "-q", "--filter", f"name=^{container}$"]).stdout == ""
    finally:
        run(["docker", "rm", "-f", container])
        run(["docker", "volume", "rm", "-f", volume])


def test_two_deploys_of_a_project_here_share_its_registry_and_the_last_one_removes_it(
        netns_hosts, local, project, settings, r1):
    s = shipping_rig.settings_for(netns_hosts, project + "s",
                                  REGISTRY_IMAGE=settings.values["REGISTRY_IMAGE"])
    container, volume = registry.names(project + "s")

    def running() -> bool:
        return run(["docker", "ps", "-q", "--filter", f"name=^{container}$"]).stdout != ""

    lines: list[str] = []
    try:
        with registry.open_registry(local, s, out=lines.append) as first:
            with registry.open_registry(local, s, out=lines.append, lock_wait=5) as second:
                assert second.address == first.address
                assert lines[-1] == (f"   registry at {first.address} (container {container}, "
                                     "shared with another deploy of this project here)")
                registry.publish(local, second, [r1[0]], out=lines.append)
            assert running()  # the first deploy still uses it
            assert registry.manifest(first.address, parse_ref(r1[0]).in_registry(
                first.address))["config"]["digest"] == r1[1]
        assert not running()
    finally:
        run(["docker", "rm", "-f", container])
        run(["docker", "volume", "rm", "-f", volume])


def test_the_reverse_tunnel_is_gone_after_shipping(netns_hosts, local, hosts,
                                                   shipped_registry, app):
    host, c = netns_hosts.hosts[0], hosts[0]
    ref = app.repository + ":r3"
    app.build("r3", "release three")
    published = registry.publish(local, shipped_registry, [ref], out=lambda _: None)
    lines: list[str] = []
    shipping.ship(c, shipped_registry, published, out=lines.append)
    pulls = re.findall(r"^docker image pull 127\.0\.0\.1:(\d+)/(\S+)$",
                       netns_hosts.commands(host), re.M)
    port, pulled = pulls[-1]
    assert pulled == ref
    listening = run(netns_hosts.netns_exec_argv(host, "ss", "-Htln", f"sport = :{port}"))
    assert listening.returncode == 0 and listening.stdout.strip() == "", listening.stdout


def test_deploy_registry_with_a_login_never_puts_the_password_on_a_command_line(
        netns_hosts, local, hosts, r1, registry_image, capfd):
    ref = r1[0]
    with shipping_rig.login_registry(netns_hosts, registry_image) as reg:
        s = shipping_rig.settings_for(
            netns_hosts, "e2eimgdr", DEPLOY_REGISTRY=reg.address, DEPLOY_REGISTRY_USER=reg.user,
            DEPLOY_REGISTRY_PASSWORD=reg.password)
        # The hosts have the image from the tunnelled registry: make them need it again.
        for h in netns_hosts.hosts:
            run(netns_hosts.docker_argv(h, "image", "rm", "--force", ref))
        lines: list[str] = []
        with registry.open_registry(local, s, out=lines.append) as remote_reg:
            assert not remote_reg.tunnelled
            published = registry.publish(local, remote_reg, [ref], out=lines.append)
            assert str(published[0].remote) == f"{reg.address}/{parse_ref(ref).path}:r1"
            reports = [shipping.ship(c, remote_reg, published, out=lines.append) for c in hosts]
            config_dir = remote_reg.config_dir
        assert [r.pulled for r in reports] == [[ref], [ref]]
        assert all(r.sent == 0 for r in reports)  # no tunnel: the hosts pulled themselves
        assert host_ids(netns_hosts, ref) == [published[0].id] * 2
        output = "\n".join(lines) + "".join(capfd.readouterr())
        assert f"logged in to {reg.address} as {reg.user}" in output
        assert reg.password not in output
        for h in netns_hosts.hosts:
            commands = netns_hosts.commands(h)
            assert f"--password-stdin {reg.address}" in commands
            assert "docker --config /tmp/deploy-docker-config." in commands
            assert reg.password not in commands
            # The login lived in a directory of its own, removed after the pulls.
            dirs = re.findall(r"docker --config (\S+) login", commands)
            assert dirs and all(run(netns_hosts.enter_argv(h, "test", "-e", d)).returncode == 1
                                for d in dirs)
            home_config = h.home / ".docker" / "config.json"
            assert not home_config.exists() or reg.address not in home_config.read_text()
        assert not os.path.exists(config_dir)

        bad = shipping_rig.settings_for(
            netns_hosts, "e2eimgdr", DEPLOY_REGISTRY=reg.address, DEPLOY_REGISTRY_USER=reg.user,
            DEPLOY_REGISTRY_PASSWORD="not-" + reg.password)
        with pytest.raises(DeployError) as refused:
            with registry.open_registry(local, bad, out=lines.append):
                pass
        message = str(refused.value)
        assert message.startswith(f"here: docker login to {reg.address} as {reg.user} failed: ")
        assert "unauthorized" in message.lower() and reg.password not in message


def test_pruning_keeps_exactly_the_newest_releases_and_never_live_or_one_in_use(
        netns_hosts, hosts):
    host, c = netns_hosts.hosts[1], hosts[1]
    repo = "deploy-e2e/prune-" + uuid.uuid4().hex[:6]
    ids = {}
    for n in range(1, 7):  # r1 … r6, each a distinct image, created in this order
        ids[f"r{n}"] = netns_hosts.load_busybox(host, f"{repo}:r{n}")
    assert run(netns_hosts.docker_argv(host, "tag", f"{repo}:r3", f"{repo}:live")
               ).returncode == 0
    made = run(netns_hosts.docker_argv(host, "create", f"{repo}:r1", "true"))
    assert made.returncode == 0, made.stderr
    try:
        lines: list[str] = []
        removed = shipping.prune(c, repo, 2, out=lines.append)
        assert removed == ["r4", "r2"]
        left = run(netns_hosts.docker_argv(host, "image", "ls", "--format", "{{.Tag}}", repo))
        assert sorted(left.stdout.split()) == ["live", "r1", "r3", "r5", "r6"]
        assert lines == [f"   {host.address}: removed 2 old image(s) of {repo}, keeping 2: r4, r2"]
        # Nothing protected: exactly the newest N stay.
        run(netns_hosts.docker_argv(host, "rm", made.stdout.strip()))
        run(netns_hosts.docker_argv(host, "image", "rm", f"{repo}:live"))
        assert shipping.prune(c, repo, 2, out=lines.append) == ["r3", "r1"]
        left = run(netns_hosts.docker_argv(host, "image", "ls", "--format", "{{.Tag}}", repo))
        assert sorted(left.stdout.split()) == ["r5", "r6"]
        assert shipping.prune(c, repo, 2, out=lines.append) == []
    finally:
        run(netns_hosts.docker_argv(host, "rm", "-f", made.stdout.strip()))
        run(netns_hosts.docker_argv(host, "image", "rm", "-f",
                                    *(f"{repo}:{t}" for t in [*ids, "live"])))


def test_shipping_an_image_that_was_never_built_here_names_it(local, shipped_registry):
    with pytest.raises(DeployError) as missing:
        registry.publish(local, shipped_registry, ["deploy-e2e/never-built:1"])
    assert str(missing.value) == ("image deploy-e2e/never-built:1 is not on this machine "
                                  "(docker image inspect finds none): build or pull it before "
                                  "shipping")
    with pytest.raises(DeployError) as digest:
        registry.publish(local, shipped_registry, ["app@sha256:" + "0" * 64])
    assert digest.value.exit_code == 2
    assert str(digest.value) == (f"image app@sha256:{'0' * 64}: a digest reference cannot be "
                                 "re-tagged on a host; name the image by a tag")


def test_a_registry_image_that_cannot_run_fails_clearly_and_leaves_no_container(
        netns_hosts, local, project, app):
    s = shipping_rig.settings_for(netns_hosts, project + "bad", REGISTRY_IMAGE=app.base)
    container, volume = registry.names(project + "bad")
    try:
        with pytest.raises(DeployError) as failed:
            with registry.open_registry(local, s, out=lambda _: None):
                pass
        message = str(failed.value)
        assert message.startswith(f"registry: cannot start {app.base} as {container}: ")
        assert message.endswith("; on a machine that cannot pull it, set REGISTRY_IMAGE to a "
                                "local image (bash .ci/build-images builds one)")
        assert "No command specified" in message
        assert run(["docker", "ps", "-a", "-q", "--filter", f"name=^{container}$"]).stdout == ""
    finally:
        run(["docker", "volume", "rm", "-f", volume])
