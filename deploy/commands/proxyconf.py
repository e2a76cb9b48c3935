"""The proxy the tool runs beside any Compose project, as text: its haproxy.cfg, the
Dockerfile that bakes it into an image, and the Compose override file that adds it (and pins
the app and worker services to their `live` image) without touching the user's file.

Pure: settings and the parsed project in, text out. One HAProxy frontend per app service,
bound inside the container at 8080, 8081, … and published at PROXY_PUBLISH; one backend per
app service, named after it, with eight slots (commands/haproxy.py drives them through the
runtime API). No server resolves a service name: only a switch routes, so a container a
killed deploy left behind never takes traffic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deploy.commands import haproxy
from deploy.commands.project import Project

BIND_BASE = 8080  # the first app service's frontend, inside the proxy container
STATE_VOLUME = "deploy-proxy-state"  # the routing HAProxy saves after each switch
CONFIG_PATH = "/usr/local/etc/haproxy/haproxy.cfg"  # the official image's, and the stand-in's


@dataclass(frozen=True)
class Route:
    """One app service behind the proxy."""

    service: str
    port: int  # where its containers listen (APP_PORT)
    health_path: str  # what HAProxy checks (HEALTH_PATH)
    publish: str  # HOST:PORT on the host (PROXY_PUBLISH)
    bind: int  # the frontend's port inside the proxy container


def routes(apps: Sequence[str], ports: Mapping[str, int], paths: Mapping[str, str],
           publish: Mapping[str, object]) -> list[Route]:
    return [Route(a, ports[a], paths[a], str(publish[a]), BIND_BASE + i)
            for i, a in enumerate(apps)]


_GLOBAL = f"""\
# Rendered by the deploy tool (deploy/commands/proxyconf.py) from APP_SERVICES, APP_PORT,
# HEALTH_PATH, PROXY_PUBLISH and PROXY_HEALTH_PATH; never edited by hand. Routing changes at
# run time through the runtime API (a reload would close idle keep-alive connections).
global
    # The runtime API, on the container's own loopback: reachable only with `docker exec`.
    stats socket ipv4@127.0.0.1:{haproxy.API_PORT} level admin
    # Each switch saves `show servers state` here (a named volume), so a restarted proxy
    # routes as before (with `init-addr last` below).
    server-state-file {haproxy.STATE_FILE}
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlog-normal           # log errors and retries only, not every request
    load-server-state-from-file global
    # A request whose connection to a server fails, or which gets no response, is sent
    # again (to another server: redispatch), up to 3 times; only GETs, see the backends.
    retries 3
    option redispatch
    retry-on conn-failure empty-response response-timeout
    timeout connect 2s
    timeout client 60s
    timeout server 60s              # longer than any request an app serves
    timeout http-keep-alive 60s

# This host's own state for a load balancer: `serving` goes to maintenance while the host
# drains (a rolling deploy's turn), which turns every frontend's PROXY_HEALTH_PATH to 503.
backend {haproxy.STATE_BACKEND}
    server {haproxy.STATE_SERVER} 127.0.0.1:1
"""

_FRONTEND = """
frontend {name}
    bind :{bind}
    # The load balancer's check: 200 while this host serves and some {service} slot is up;
    # 503 while it drains or has nothing healthy. Never reaches the app.
    acl lb_check path {lb_path}
    acl host_on nbsrv({state}) gt 0
    acl app_up nbsrv({backend}) gt 0
    http-request return status 200 content-type text/plain string ok if lb_check host_on app_up
    http-request return status 503 content-type text/plain string draining if lb_check
    default_backend {backend}

backend {backend}
    # A POST may have reached the app before it failed: never send it twice. A connection
    # that could not be made (conn-failure) is still retried for every method.
    http-request disable-l7-retry unless METH_GET
    option httpchk GET {health_path}
    http-check expect status 200
    # Only a container that does not answer, or answers non-200, twice in a row is taken
    # out; a server that is down, or whose last check failed, is checked every 100 ms: a
    # new container's slot passes within ~0.1 s of its app answering.
    timeout check 4s
    default-server check inter 1s fastinter 100ms downinter 100ms fall 2 rise 1
    server-template {prefix} 1-{slots} slot.invalid:1 disabled init-addr last,127.0.0.1
"""


def haproxy_cfg(routes_: Sequence[Route], lb_path: str) -> str:
    parts = [_GLOBAL]
    for r in routes_:
        parts.append(_FRONTEND.format(
            name=f"fe_{r.service}", bind=r.bind, service=r.service, lb_path=lb_path,
            state=haproxy.STATE_BACKEND, backend=r.service, health_path=r.health_path,
            prefix=haproxy.SLOT_PREFIX, slots=haproxy.SLOTS))
    return "".join(parts)


def dockerfile() -> str:
    return (
        "# The tool's proxy: HAProxy with the rendered haproxy.cfg baked in, so the proxy\n"
        "# container is the same wherever the stack's files live.\n"
        "ARG PROXY_IMAGE=haproxy:2.6\n"
        "FROM ${PROXY_IMAGE}\n"
        "USER root\n"
        "RUN mkdir -p /var/lib/haproxy && chown haproxy:haproxy /var/lib/haproxy\n"
        f"COPY haproxy.cfg {CONFIG_PATH}\n"
        "USER haproxy\n")


def source_hash(cfg: str, base_image: str) -> str:
    """What the proxy image is built from, as a short hash (its label)."""
    digest = hashlib.sha256()
    for part in (base_image, dockerfile(), cfg):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def override(project: Project, routes_: Sequence[Route], images: Mapping[str, str],
             proxy_image: str) -> str:
    """The Compose override file (JSON, which is YAML): the proxy service, and each app and
    worker service pinned to ``images[service]`` (its `live` tag)."""
    networks = _proxy_networks(project, [r.service for r in routes_])
    proxy: dict[str, object] = {
        "image": proxy_image,
        "restart": "unless-stopped",
        "ports": [f"{r.publish}:{r.bind}" for r in routes_],
        "volumes": [f"{STATE_VOLUME}:/var/lib/haproxy"],
        "healthcheck": {
            "test": ["CMD", "bash", "-c",
                     f"exec 3<>/dev/tcp/127.0.0.1/{routes_[0].bind if routes_ else BIND_BASE}"],
            "interval": "5s", "timeout": "3s", "retries": 3},
        "labels": {"deploy.role": "proxy"},
    }
    if networks:
        proxy["networks"] = networks
    services: dict[str, object] = {name: {"image": ref} for name, ref in images.items()}
    if routes_:
        services[haproxy.SERVICE] = proxy
    doc: dict[str, object] = {"services": services}
    if routes_:
        doc["volumes"] = {STATE_VOLUME: {}}
    return json.dumps(doc, indent=2) + "\n"


def _proxy_networks(project: Project, apps: Sequence[str]) -> list[str]:
    """The networks of the app services (none named: Compose's default network, which the
    proxy joins by itself)."""
    names: list[str] = []
    for app in apps:
        for net in project.services[app].networks or ("default",):
            if net not in names:
                names.append(net)
    return [] if names in ([], ["default"]) else names
