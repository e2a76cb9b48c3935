"""A release's images for a Swarm: built here once, then on every node, pinned.

    build       each app and worker service's image, here, tagged by release
                (deploy/machine/builds.py, as for hosts; the tag from deploy/release/revision.py)
    base        the other services' images and PROXY_IMAGE as they are here (pulled here
                when missing: the nodes may have no registry access)
    without DEPLOY_REGISTRY
                a registry here (deploy/fleet/registry.py), and every Ready node of
                `docker node ls`, at its advertised address with the manager's SSH user, port,
                key and known_hosts, pulls what it lacks through a reverse SSH tunnel, its
                image IDs then checked against this machine's (deploy/fleet/shipping.py);
                the stack pins every service to its image ID (`sha256:…`, deployed with
                `--resolve-image never`): a Swarm node runs an image-ID reference from its
                own store without asking a registry, so each node runs exactly these bytes
    with DEPLOY_REGISTRY
                pushed there once; the stack names `<registry>/<path>:<release>` and
                `docker stack deploy --with-registry-auth` pins each to its digest, which
                the nodes pull
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

from deploy import shell
from deploy.commands import docker, swarm
from deploy.errors import ConfigError, DeployError
from deploy.fleet import registry as registries
from deploy.fleet import shipping
from deploy.fleet.hosts import Host
from deploy.machine import builds
from deploy.machine.stack import Stack
from deploy.output import Output, as_output
from deploy.release import revision
from deploy.settings import Settings
from deploy.swarm.target import connect

# Nodes shipped to at the same time.
SHIP_AT_ONCE = 4


@dataclass(frozen=True)
class Pinned:
    """What the stack file names: each service's image (apps, workers and the others) and
    the proxy's, and whether `docker stack deploy` may resolve them (False: image IDs)."""

    release: str
    images: dict[str, str] = field(default_factory=dict)
    proxy: str = ""
    resolve: bool = False


@dataclass(frozen=True)
class NodeAddress:
    hostname: str
    address: str
    ready: bool
    status: str


def node_addresses(manager) -> list[NodeAddress]:
    """Every node of `docker node ls` with its advertised address."""
    nodes = swarm.parse_nodes(manager.run(swarm.node_ls(), what="docker node ls").stdout)
    if not nodes:
        raise DeployError("docker node ls: the manager lists no nodes")
    addresses = swarm.parse_node_addresses(
        manager.run(swarm.node_addresses([n.id for n in nodes]),
                    what="docker node inspect").stdout)
    return [NodeAddress(n.hostname, addresses.get(n.hostname, ""), n.ready,
                        f"{n.status}/{n.availability}") for n in nodes]


def wanted_refs(stack: Stack, config: dict, tag: str, proxy_image: str) -> dict[str, str]:
    """service -> the image a release runs: app and worker services at the release tag,
    the others as the compose file names them, and the proxy (key "proxy")."""
    s = stack.settings
    built = (*s.app_services, *s.worker_services)
    refs = {}
    for name, body in (config.get("services") or {}).items():
        if name in built:
            refs[name] = f"{stack.image_name(name)}:{tag}"
        elif name != "proxy":
            image = (body or {}).get("image")
            if not image:
                raise ConfigError(f"service {name!r}: no image (a Swarm runs images; only "
                                  "the app and worker services are built by the deploy)")
            refs[name] = image
    refs["proxy"] = proxy_image
    return refs


def release(local, settings: Settings, manager, config: dict, *, rev: revision.Revision,
            build: bool, lock_wait: float, out: Output | None = None) -> Pinned:
    """Build here, then bring the release's images to the Swarm; what to pin."""
    out = as_output(out)
    stack = Stack(local, settings, out)
    stack.check_roles()
    refs = wanted_refs(stack, config, rev.tag, settings.proxy_image)
    apps = [refs[s] for s in (*settings.app_services, *settings.worker_services)
            if s in refs]
    if build:
        out.step(f"build {', '.join(apps)} here", builds.build_release, stack, rev.tag, True)
    else:
        missing = [r for r in apps if builds.image_id(local, r) is None]
        if missing:
            raise ConfigError(f"--no-build: there is no image {missing[0]} here (release "
                              f"{rev.tag}); deploy without --no-build")
    for ref in dict.fromkeys(refs.values()):
        if ref not in apps:
            _ensure_here(local, ref, out)
    config_ = registries.registry_config(settings)
    with ExitStack() as stack_:
        reg = stack_.enter_context(registries.open_registry(
            local, settings, out=out, lock_wait=lock_wait))
        published = {p.ref: p for p in registries.publish(
            local, reg, list(dict.fromkeys(refs.values())), out=out)}
        if config_.remote:
            pinned = {s: str(published[r].remote) for s, r in refs.items()}
            return Pinned(rev.tag, {s: i for s, i in pinned.items() if s != "proxy"},
                          pinned["proxy"], resolve=True)
        ship_to_nodes(manager, settings, reg, list(published.values()), out)
    ids = {s: published[r].id for s, r in refs.items()}
    return Pinned(rev.tag, {s: i for s, i in ids.items() if s != "proxy"}, ids["proxy"],
                  resolve=False)


def _ensure_here(local, ref: str, out: Output) -> None:
    if builds.image_id(local, ref) is None:
        out(f"   {ref} is not here: pulling it here, to ship it to the nodes")
        pulled = shell.run(local, docker.pull(ref), check=False)
        if pulled.exited != 0:
            raise ConfigError(
                f"image {ref} is neither on this machine nor pullable here "
                f"({docker.error_line(pulled.stderr or '', pulled.exited)}); the nodes get "
                "it from here: pull or load it here first")


def ship_to_nodes(manager, settings: Settings, reg, published, out: Output) -> None:
    """Every Ready node gets the images it lacks and shows the IDs built here; a node that
    is not Ready is named and skipped (Swarm places no task there)."""
    nodes = node_addresses(manager)
    ready = [n for n in nodes if n.ready and n.address]
    for n in nodes:
        if n not in ready:
            out(f"   {n.hostname}: {n.status}: not shipped to (Swarm places no task there)")
    if not ready:
        raise DeployError("no node is Ready: nothing can run the release")
    user, port = manager.config.manager.user, manager.config.manager.port

    def one(node: NodeAddress) -> None:
        conn = connect(Host(node.address, user, port), settings)
        try:
            shipping.ship(conn, reg, published, out=out.for_host(node.hostname))
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=min(SHIP_AT_ONCE, len(ready))) as pool:
        futures = [pool.submit(one, n) for n in ready]
        errors = [f.exception() for f in futures]
    failed = [(n, e) for n, e in zip(ready, errors, strict=True) if e is not None]
    if failed:
        node, first = failed[0]
        if isinstance(first, DeployError):
            raise DeployError(f"shipping to {node.hostname} ({node.address}) failed: {first}"
                              ) from None
        raise first
    out(f"   {len(ready)} node(s) hold the release's images: "
        + ", ".join(n.hostname for n in ready))
