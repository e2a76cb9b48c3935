"""The stack's containers by role: each app and worker service's (old and new during a
deploy), and the base services that every release shares: the database service, the
proxy, and every service the settings give no role.

Release identity lives in Docker, not in state files: each app and worker image is built as
``<image>:<release>`` with the label ``deploy.release=<release>`` (containers show their
image's labels), and ``<image>:live`` is the tag Compose always runs (the tool's override).
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


def base_services(settings: Settings) -> tuple[str, ...]:
    """The database service (DB_SERVICE; none when it is empty: DATABASE_URL names an
    external database) and the proxy (none without app services), in that order."""
    return (*((settings.db_service,) if settings.db_service else ()),
            *((proxy.SERVICE,) if settings.app_services else ()))


def replaced(settings: Settings) -> tuple[str, ...]:
    """The services a deploy replaces: the app services, then the workers."""
    return (*settings.app_services, *settings.worker_services)


def other_services(stack: Stack) -> tuple[str, ...]:
    """The compose file's services the settings (on a host: the fleet's shared settings
    too) give no role: `up` starts them, a deploy leaves them alone unless their
    definition changed."""
    s = stack.settings
    # On a host, a service the fleet's shared settings give a role is never "other": a
    # web host (DB_SERVICE=) does not start the database service of the compose file.
    taken = {*replaced(s), s.db_service, proxy.SERVICE, *s.fleet_roles}
    return tuple(n for n in stack.project.services if n not in taken)


def of_service(states: list[ContainerState], service: str) -> list[ContainerState]:
    return [s for s in states if s.service == service and not s.one_off]


def classify(states: list[ContainerState], servers: list[proxy.Server], service: str,
             app: bool = True) -> tuple[list[ContainerState], list[ContainerState]]:
    """(serving, leftovers) among one app or worker service's containers.

    Serving: for an app service, the running ones a ready slot of its backend points at
    (none routed: every running one); for a worker, the running ones. Leftovers: all
    others (a killed deploy's new containers, stopped ones): removed before new ones start.
    """
    mine = of_service(states, service)
    running = [s for s in mine if s.status == "running"]
    serving = running
    if app:
        ready_ips = {s.addr for s in servers if s.is_slot and s.backend == service
                     and s.assigned and s.ready}
        serving = [s for s in running if s.ip in ready_ips] or running
    return serving, [s for s in mine if s not in serving]


def remove_containers(stack: Stack, ids: list[str], stop_seconds: int | None) -> None:
    """``stop_seconds`` None: each container's own grace period (its stop_grace_period)."""
    if ids:
        stack.run(docker.stop(ids, stop_seconds), what="stop", check=False)
        stack.run(docker.remove(ids), what="remove")


def base_up(stack: Stack, build: bool, may_build: bool = True) -> None:
    """The database, the services with no role and the proxy, never an app or worker
    service. A running proxy is recreated only when its image changed (the rendered
    haproxy.cfg or PROXY_IMAGE).

    ``may_build=False`` (a host: its images were shipped): a missing proxy image is an
    error, never a build."""
    db = stack.settings.db_service
    services = [*([db] if db else []), *other_services(stack)]
    if stack.settings.app_services:
        services += _proxy_up(stack, build, may_build)
    if not services:  # none named would be every service
        return
    changes = base_changes(stack, services, stack.states())
    if not any(changes.values()):  # what `up` would find: one Compose run fewer
        stack.out(f"   {', '.join(services)}: running as the compose file defines them")
        return
    _say_if_db_recreated(stack, changes)
    stack.run(compose.up(stack.compose, services, build=False, no_deps=True), hide=False,
              what="up")


def _proxy_up(stack: Stack, build: bool, may_build: bool) -> list[str]:
    """[the proxy] when it must be (re)created, else []; builds its image when missing."""
    ref = proxy_image(stack.settings)
    built = None if build else image_id(stack.c, ref)
    if built is None:
        if not (build or may_build):
            raise DeployError(f"proxy: no image {ref} on {stack.c.host}; the deploy ships it "
                              "(nothing is built on a host)")
        build_proxy(stack)
        built = image_id(stack.c, ref)
    running = running_proxies(stack.states())
    if running and all(s.image_id == built for s in running):
        return []
    if running:
        stack.out("   the proxy's image changed (its rendered haproxy.cfg or PROXY_IMAGE): "
                  "recreating it, which closes its open connections once")
    return [proxy.SERVICE]


def base_ready(stack: Stack, states: list[ContainerState]) -> bool:
    """The database service and the proxy running and healthy, each on the image the
    machine has under its name (what `up` would change otherwise): a deploy may then leave
    them alone."""
    base = base_services(stack.settings)
    states = [s for s in states if s.service in base and not s.one_off]
    if not ({s.service for s in states} == set(base)
            and all(s.status == "running" and health.is_ready(s) for s in states)):
        return False
    refs = {proxy.SERVICE: proxy_image(stack.settings),
            stack.settings.db_service: _db_image(stack) if stack.settings.db_service else ""}
    refs = {k: v for k, v in refs.items() if k in base}
    wanted = dict(zip(refs, image_ids(stack.c, list(refs.values())), strict=True))
    return all(s.image_id == wanted[s.service] for s in states)


def _db_image(stack: Stack) -> str:
    """The database service's image: the sample's POSTGRES_IMAGE, else its `image:`."""
    db = stack.settings.db_service
    if db == "postgres":
        return postgres_image(stack.settings)
    return stack.project.services[db].image or stack.project.image_name(db)


# base_changes' words for what `up` would change; only real changes are said before it.
NOT_RUNNING = "not running"
DEFINITION = "its definition in the compose file"
UNKNOWN = "unknown (no config hash, or no image here)"


def base_changes(stack: Stack, services: list[str], states: list[ContainerState]
                 ) -> dict[str, list[str]]:
    """What `up` would change for each service: nothing (``[]``) when it runs, each
    container with the config hash Compose computes now and the image ID its image has
    here; else "not running", its definition, its image. One Compose run for all."""
    result = stack.run(compose.config_hashes(stack.compose, services), check=False)
    hashes = compose.parse_config_hashes(result.stdout) if result.exited == 0 else {}
    db = stack.settings.db_service
    refs = {s: proxy_image(stack.settings) if s == proxy.SERVICE else _db_image(stack)
            if s == db else stack.project.services[s].image or stack.project.image_name(s)
            for s in services}
    ids = dict(zip(refs, image_ids(stack.c, list(refs.values())), strict=True))
    changes: dict[str, list[str]] = {}
    for service in services:
        running = [s for s in states if s.service == service and s.status == "running"
                   and not s.one_off]
        what = [] if running else [NOT_RUNNING]
        wanted, image = hashes.get(service), ids[service]
        if running and any(s.config_hash != wanted for s in running):
            # Unknown on either side: not said to change, but `up` runs to be sure.
            what.append(DEFINITION if wanted and any(
                s.config_hash and s.config_hash != wanted for s in running) else UNKNOWN)
        if running and any(s.image_id != image for s in running):
            what.append(f"its image ({refs[service]})" if image else UNKNOWN)
        changes[service] = what
    return changes


def say_if_recreated(stack: Stack, states: list[ContainerState]) -> None:
    """Before `up` of the database service: when its running container's definition (its
    config hash) or image changed, say that Compose recreates it now."""
    db = stack.settings.db_service
    if db:
        _say_if_db_recreated(stack, base_changes(stack, [db], states))


def _say_if_db_recreated(stack: Stack, changes: dict[str, list[str]]) -> None:
    db = stack.settings.db_service
    changed = [c for c in changes.get(db, []) if c not in (NOT_RUNNING, UNKNOWN)] if db else []
    if changed:
        stack.out(f"   {db}: {' and '.join(changed)} changed: Compose recreates it now "
                  "(the database restarts; the old release's connections drop)")
