"""The images a deploy builds, always on this machine: the app and worker services' and
the proxy.

    <image>:<release>         each app or worker service's own `build:` section (context,
                              dockerfile, args, target) as Compose resolves it; <image> is
                              its `image:` without the tag, or <project>-<service>; label
                              deploy.release=<release> (containers show it). Services with
                              equal `build:` sections share one build.
    <project>-proxy:live      the rendered haproxy.cfg (deploy/commands/proxyconf.py) baked
                              into PROXY_IMAGE, label deploy.proxy.source=<hash of the
                              config, the Dockerfile and PROXY_IMAGE>

`invoke deploy` builds them for the stack here (deploy/release/sequence.py); a remote deploy
builds them here once and ships them (deploy/fleet/rollout.py): a host never builds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from deploy import shell
from deploy.commands import docker, proxyconf
from deploy.commands.docker import LIVE
from deploy.commands.project import build_groups
from deploy.machine.stack import Stack
from deploy.settings import Settings


def build_release(stack: Stack, release: str, hide: bool = False,
                  no_cache: bool = False) -> list[str]:
    """Build every app and worker service's image from its own `build:` section, tagged
    by release; returns the images built."""
    settings = stack.settings
    services = (*settings.app_services, *settings.worker_services)
    project = stack.project
    built = []
    for group in build_groups(project, services):
        refs = [f"{name}:{release}" for name in group.images]
        argv = docker.build(
            refs[0], group.dockerfile, group.build.context, build_args=dict(group.build.args),
            labels={docker.RELEASE_LABEL: release}, no_cache=no_cache,
            target=group.build.target, also=refs[1:])
        stack.run(argv, hide=hide, what=f"build ({', '.join(group.services)})")
        built += refs
    return built


def service_image(stack: Stack, service: str, tag: str) -> str:
    """An app or worker service's image at a release (or `live`)."""
    return f"{stack.image_name(service)}:{tag}"


def proxy_image(settings: Settings) -> str:
    return f"{settings.project_name}-proxy:{LIVE}"  # as the tool's override names it


DEFAULT_POSTGRES_IMAGE = "postgres:16"  # as deploy/stack/docker-compose.yml defaults it


def postgres_image(settings: Settings) -> str:
    return settings.values.get("POSTGRES_IMAGE") or DEFAULT_POSTGRES_IMAGE


def proxy_cfg(settings: Settings) -> str:
    s = settings
    return proxyconf.haproxy_cfg(
        proxyconf.routes(s.app_services, s.app_ports, s.health_paths, s.proxy_publish),
        s.proxy_health_path)


def proxy_source(settings: Settings) -> str:
    """What the proxy image is built from, as a short hash: the rendered haproxy.cfg, its
    Dockerfile and PROXY_IMAGE. Built images carry it as a label, so an image made for other
    roles is never taken for these."""
    return proxyconf.source_hash(proxy_cfg(settings), settings.proxy_image)


def _proxy_images(stack: Stack) -> tuple[str | None, bool]:
    """(the ID of PROXY_IMAGE here or None, whether the proxy image here was built from
    this very config on it: a build would change nothing)."""
    settings = stack.settings
    result = stack.run(docker.image_labels(
        (docker.PROXY_SOURCE_LABEL, docker.PROXY_BASE_LABEL), settings.proxy_image,
        proxy_image(settings)), check=False)
    rows = [line.split() for line in result.stdout.splitlines() if len(line.split()) == 3]
    base = rows[0][0] if rows and rows[0][0].startswith("sha256:") else None
    if result.exited != 0 or len(rows) != 2 or base is None:
        return base, False
    _, source, built_on = rows[1]
    return base, (source, built_on) == (proxy_source(settings), base)


def build_proxy(stack: Stack) -> bool:
    """Always on this machine (a host gets the image shipped); not at all when the image
    here was built from the same config on the same PROXY_IMAGE (returns False then)."""
    settings = stack.settings
    base, current = _proxy_images(stack)
    if current:
        return False
    labels = {docker.PROXY_SOURCE_LABEL: proxy_source(settings)}
    if base:  # else the build pulls it: the next deploy labels what it got
        labels[docker.PROXY_BASE_LABEL] = base
    with tempfile.TemporaryDirectory(prefix="proxy-") as context:
        Path(context, "Dockerfile").write_text(proxyconf.dockerfile(), encoding="utf-8")
        Path(context, "haproxy.cfg").write_text(proxy_cfg(settings), encoding="utf-8")
        stack.run(docker.build(proxy_image(settings), f"{context}/Dockerfile", context,
                               build_args={"PROXY_IMAGE": settings.proxy_image},
                               labels=labels),
                  what="build proxy")
    return True


def image_id(c, ref: str) -> str | None:
    """The image's ID where ``c`` runs (this machine or a host), or None without it."""
    result = shell.run(c, docker.image_id(ref), check=False)
    return docker.parse_image_id(result.stdout) if result.exited == 0 else None


def image_ids(c, refs: list[str]) -> list[str | None]:
    """The IDs of several images in one command (one by one when any is missing)."""
    result = shell.run(c, docker.image_id(*refs), check=False)
    ids = [docker.parse_image_id(line) for line in result.stdout.split()]
    if result.exited == 0 and len(ids) == len(refs):
        return ids
    return [image_id(c, ref) for ref in refs]
