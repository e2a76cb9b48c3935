"""The stack's containers by role: the backend's (old and new during a deploy), and the
base services, the database service and the proxy, that every release shares.

Release identity lives in Docker, not in state files: the backend image is built as
``BACKEND_IMAGE:<release>`` with the label ``deploy.release=<release>`` (containers show
their image's labels), and ``BACKEND_IMAGE:live`` is the tag Compose always runs.
"""

from __future__ import annotations

from deploy.commands import compose, docker
from deploy.commands import haproxy as proxy
from deploy.commands.compose import ContainerState
from deploy.errors import DeployError
from deploy.machine import health
from deploy.machine.builds import build_proxy, image_id, image_ids, postgres_image, proxy_image
from deploy.machine.proxy import running_proxies
from deploy.machine.stack import Stack
from deploy.settings import Settings

BACKEND = "backend"


def base_services(settings: Settings) -> tuple[str, ...]:
    """The services every release shares: the database service (DB_SERVICE; none when it
    is empty: DATABASE_URL names an external database) and the proxy."""
    return (*((settings.db_service,) if settings.db_service else ()), proxy.SERVICE)


def backends(states: list[ContainerState]) -> list[ContainerState]:
    return [s for s in states if s.service == BACKEND and not s.one_off]


def classify(states: list[ContainerState], servers: list[proxy.Server]
             ) -> tuple[list[ContainerState], list[ContainerState]]:
    """(serving, leftovers) among the backend containers.

    Serving: the running ones a ready slot points at; when no slot points at one (a fresh
    stack, served through the backup server), every running one. Leftovers: all others
    (a killed deploy's new containers, stopped ones): removed before new ones start.
    """
    mine = backends(states)
    ready_ips = {s.addr for s in servers if s.is_slot and s.assigned and s.ready}
    running = [s for s in mine if s.status == "running"]
    serving = [s for s in running if s.ip in ready_ips] or running
    return serving, [s for s in mine if s not in serving]


def remove_containers(stack: Stack, ids: list[str], stop_seconds: int) -> None:
    if ids:
        stack.run(docker.stop(ids, stop_seconds), what="stop", check=False)
        stack.run(docker.remove(ids), what="remove")


def base_up(stack: Stack, build: bool, may_build: bool = True) -> None:
    """postgres and the proxy, never the backend. A running proxy is recreated only when
    its image changed (haproxy.cfg or PROXY_IMAGE): Compose v1 would otherwise recreate it
    whenever the release directory (its build context) moves, as it does on a host.

    ``may_build=False`` (a host: its images were shipped): a missing proxy image is an
    error, never a build."""
    ref = proxy_image(stack.settings)
    built = None if build else image_id(stack.c, ref)
    if built is None:
        if not (build or may_build):
            raise DeployError(f"proxy: no image {ref} on {stack.c.host}; the deploy ships it "
                              "(nothing is built on a host)")
        build_proxy(stack)
        built = image_id(stack.c, ref)
    states = stack.states()
    running = running_proxies(states)
    services = list(base_services(stack.settings)[:-1])
    if not running or any(s.image_id != built for s in running):
        services.append(proxy.SERVICE)
        if running:
            stack.out("   the proxy's image changed (haproxy.cfg or PROXY_IMAGE): recreating "
                      "it, which closes its open connections once")
    if services:  # none named would be every service
        say_if_recreated(stack, states)
        stack.run(compose.up(stack.compose, services, build=False, no_deps=True), hide=False,
                  what="up")


def base_ready(stack: Stack, states: list[ContainerState]) -> bool:
    """The database service and the proxy running and healthy, each on the image the
    machine has under its name (what `up` would change otherwise): a deploy may then leave
    them alone."""
    base = base_services(stack.settings)
    states = [s for s in states if s.service in base and not s.one_off]
    if not ({s.service for s in states} == set(base)
            and all(s.status == "running" and health.is_ready(s) for s in states)):
        return False
    refs = [proxy_image(stack.settings), *(_db_image(stack) for _ in base[:-1])]
    wanted = dict(zip((proxy.SERVICE, *base[:-1]), image_ids(stack.c, refs), strict=True))
    return all(s.image_id == wanted[s.service] for s in states)


def _db_image(stack: Stack) -> str:
    """The database service's image: the sample's POSTGRES_IMAGE, else its `image:`."""
    db = stack.settings.db_service
    if db == "postgres":
        return postgres_image(stack.settings)
    return stack.project.services[db].image or stack.project.image_name(db)


def say_if_recreated(stack: Stack, states: list[ContainerState]) -> None:
    """Before `up`: when the running database container's definition (its config hash) or
    image changed, say that Compose recreates it now; otherwise Compose leaves it alone."""
    db = stack.settings.db_service
    running = [s for s in states if db and s.service == db and s.status == "running"
               and not s.one_off]
    if not running:
        return
    result = stack.run(compose.config_hash(stack.compose, db), check=False)
    wanted = compose.parse_config_hash(result.stdout, db) if result.exited == 0 else None
    changed = []
    if wanted and any(s.config_hash and s.config_hash != wanted for s in running):
        changed.append("its definition in the compose file")
    ref = _db_image(stack)
    image = image_id(stack.c, ref)
    if image and any(s.image_id != image for s in running):
        changed.append(f"its image ({ref})")
    if changed:
        stack.out(f"   {db}: {' and '.join(changed)} changed: Compose recreates it now "
                  "(the database restarts; the old release's connections drop)")
