"""The images a deploy builds, always on this machine: the app and worker services' and
the proxy.

    <image>:<release>         each app or worker service's own `build:` section (context,
                              dockerfile, args, target) as Compose resolves it; <image> is
                              its `image:` without the tag, or <project>-<service>; label
                              deploy.release=<release> (containers show it). Services with
                              equal `build:` sections share one build.
    <project>-proxy:live      deploy/stack/proxy (haproxy.cfg baked in) on PROXY_IMAGE,
                              label deploy.proxy.source=<hash of those files and PROXY_IMAGE>

`invoke deploy` builds them for the stack here (deploy/release/sequence.py); a remote deploy
builds them here once and ships them (deploy/fleet/rollout.py): a host never builds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

from deploy import shell
from deploy.commands import docker
from deploy.commands import haproxy as proxy
from deploy.commands.docker import LIVE
from deploy.commands.project import build_groups
from deploy.errors import ConfigError
from deploy.machine.stack import Stack
from deploy.settings import Settings


def image(settings: Settings, tag: str) -> str:
    return f"{settings.backend_image}:{tag}"


def build_release(stack: Stack, release: str, hide: bool = False,
                  no_cache: bool = False) -> list[str]:
    """Build every app and worker service's image from its own `build:` section, tagged
    by release; returns the images built."""
    settings = stack.settings
    services = (*settings.app_services, *settings.worker_services)
    project = stack.project
    for name in settings.app_services:
        if project.services[name].build is None:
            raise ConfigError(f"APP_SERVICES: service {name!r} in {settings.compose_file} has "
                              "no `build:` section; a deploy builds each app service's image "
                              "by release")
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


def proxy_image(settings: Settings) -> str:
    return f"{settings.project_name}-proxy:{LIVE}"  # as the compose file names it


DEFAULT_POSTGRES_IMAGE = "postgres:16"  # as deploy/stack/docker-compose.yml defaults it


def postgres_image(settings: Settings) -> str:
    return settings.values.get("POSTGRES_IMAGE") or DEFAULT_POSTGRES_IMAGE


def proxy_context(settings: Settings) -> PurePosixPath:
    return PurePosixPath(str(settings.compose_file)).parent / proxy.SERVICE


def proxy_source(settings: Settings) -> str:
    """What the proxy image is built from, as a short hash: every file of its build context
    here (haproxy.cfg, Dockerfile, entrypoint) and PROXY_IMAGE. Built images carry it as a
    label, so an image made from another haproxy.cfg is never taken for this tree's."""
    context = Path(str(proxy_context(settings)))
    digest = hashlib.sha256(settings.proxy_image.encode() + b"\0")
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(path.relative_to(context).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_proxy(stack: Stack) -> None:
    settings = stack.settings
    context = proxy_context(settings)
    labels = {docker.PROXY_SOURCE_LABEL: proxy_source(settings)}
    stack.run(docker.build(proxy_image(settings), str(context / "Dockerfile"), str(context),
                           build_args={"PROXY_IMAGE": settings.proxy_image}, labels=labels),
              what="build proxy")


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
