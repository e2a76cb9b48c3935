"""The stack file a Swarm deploy needs, rendered from the Compose project: pure, YAML text out.

The user's compose file stays a Compose file. What Swarm needs beyond it is rendered here,
from `compose config` output (variables already resolved: `docker stack deploy` reads no
`.env`), the role settings (deploy/services.py) and the Swarm options:

- every service gets `endpoint_mode: dnsrr`: a virtual IP needs IPVS, which many kernels
  lack (then a VIP service converges but carries no traffic); with dnsrr its name and
  `tasks.<service>` resolve to its tasks' IPs;
- app services: APP_REPLICAS replicas, their pinned image, a rolling update that starts the
  new task first, one at a time, and rolls back by itself on a failure within the monitor
  window (`update_config`), the same shape back (`rollback_config`), their healthcheck, a
  `stop_grace_period` longer than the backend's drain (a task stopped before it drained
  drops the requests in flight to it), and a 2 s restart delay (Swarm's 5 s default also
  holds back the replacements of a lost node's tasks);
- the tool's HAProxy as service `proxy` (a compose service of that name is replaced): one
  task on every node (`mode: global`; with SWARM_PROXY_LABEL only on the nodes carrying that
  label), its port published in `mode: host` (the ingress routing mesh needs IPVS too; a
  host-mode port binds every address of the node: PROXY_PUBLISH's port is used, its address
  is not), its
  config a Swarm config whose name carries a hash of the content (configs are immutable: a
  changed config is a new name, and so a proxy update; an app release never changes it). It
  finds the app's tasks through `tasks.<stack>_<service>` with Docker's DNS and checks
  HEALTH_PATH on each at APP_PORT; a task that drains answers 503 there and leaves;
- the database service: one replica, placed by a node label or hostname (its volume stays on
  that node), stopped before its replacement starts (two servers on one data directory
  corrupt it);
- published ports of the other services are dropped: ingress mode publishes nothing without
  IPVS, and host mode binds every address of the node (a database port opened to the
  network). Operators reach them through SSH, as on hosts.

HAProxy's settings are those that gave 0 failed requests in a rolling update of 6 replicas
over 3 nodes under load (docs/swarm.md): `hold valid 10s`, checks every 1 s, fall 2 rise 2,
and GET requests retried on another task (`retry-on all-retryable-errors`, `redispatch`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from deploy.commands.project import parse_duration
from deploy.errors import ConfigError
from deploy.services import Roles

PROXY_SERVICE = "proxy"
PROXY_CONFIG_TARGET = "/usr/local/etc/haproxy/haproxy.cfg"
# The Compose file version the Docker 20.10 CLI's `stack deploy` needs to read `name:` on
# configs and `rollback_config` (3.7+); the compose-spec accepts and ignores it.
STACK_VERSION = "3.8"
# Keys of a service that Swarm reads and the 20.10 CLI's schema accepts; the others (build,
# depends_on with conditions, container_name, restart, pull_policy…) are Compose's own.
_KEPT = ("command", "entrypoint", "environment", "healthcheck", "init", "labels", "logging",
         "stop_signal", "user", "working_dir", "extra_hosts", "tmpfs", "ulimits", "sysctls",
         "cap_add", "cap_drop", "hostname")
_VOLUME_KEYS = ("driver", "driver_opts", "external", "labels", "name")
_LABEL_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)=([A-Za-z0-9_.-]+)$")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


@dataclass(frozen=True)
class SwarmOptions:
    stack: str  # the stack's name: services are <stack>_<service>
    images: Mapping[str, str]  # service -> the pinned image (digest or ID), apps and workers
    proxy_image: str
    replicas: int = 2  # APP_REPLICAS
    db_node: str | None = None  # SWARM_DB_NODE: a hostname, or LABEL=VALUE
    proxy_label: str | None = None  # SWARM_PROXY_LABEL: the proxy runs where LABEL=true
    drain: float = 30.0  # DRAIN_TIMEOUT: how long a stopping backend drains
    stop_margin: float = 5.0  # stop_grace_period = drain + this
    update_delay: str = "2s"
    update_monitor: str = "5s"
    # How long Swarm waits before it replaces a task that stopped, a lost node's included
    # (Swarm's default: 5s).
    restart_delay: str = "2s"
    # On the app and worker services (the release): a label that changed on the database or
    # the proxy would name a release they do not run (a rollback returns only the apps).
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StackFile:
    """The stack file's text and the files it names, each by its name beside it."""

    text: str
    files: dict[str, str]
    proxy_config: str  # the Swarm config's name (with the content's hash)


def db_constraint(value: str) -> str:
    """A placement constraint from SWARM_DB_NODE: `LABEL=VALUE` for a node label, else a
    hostname."""
    value = value.strip()
    label = _LABEL_RE.match(value)
    if label:
        return f"node.labels.{label[1]}=={label[2]}"
    if _HOSTNAME_RE.match(value):
        return f"node.hostname=={value}"
    raise ConfigError(f"SWARM_DB_NODE: {value!r} is neither a node's hostname nor a "
                      "label as LABEL=VALUE (e.g. db=true; set it with `docker node update "
                      "--label-add db=true NODE`)")


def server_slots(replicas: int) -> int:
    """server-template slots: every task of a start-first update (replicas + 1), and room
    for the tasks a lost node's replacements add while its old ones are still in DNS."""
    return max(10, 2 * replicas)


def haproxy_config(stack: str, roles: Roles, replicas: int) -> str:
    """The proxy's haproxy.cfg: one frontend and backend per app service."""
    parts = [_HAPROXY_HEAD]
    for app in roles.app_services:
        port = roles.proxy_publish[app].port
        parts.append(
            f"\nfrontend {app}\n"
            f"    bind :{port}\n"
            f"    monitor-uri {roles.proxy_health_path}\n"
            f"    default_backend {app}\n"
            f"\nbackend {app}\n"
            "    # A POST may have reached a task before it failed: never send it twice.\n"
            "    http-request disable-l7-retry unless METH_GET\n"
            f"    option httpchk GET {roles.health_paths[app]}\n"
            "    http-check expect status 200\n"
            "    default-server check inter 1s fall 2 rise 2\n"
            f"    server-template s {server_slots(replicas)} "
            f"tasks.{stack}_{app}:{roles.app_ports[app]} resolvers docker init-addr none\n")
    return "".join(parts)


_HAPROXY_HEAD = """\
# Rendered by deploy/commands/stackfile.py for a Swarm: the app's tasks are found through
# Docker's DNS (tasks.<service>), each checked on its health path.
global
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    # A GET whose connection failed or got no answer goes to another task, up to 3 times.
    retries 3
    option redispatch 1
    retry-on all-retryable-errors
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

resolvers docker
    nameserver dns 127.0.0.11:53
    hold valid 10s
    accepted_payload_size 8192
"""


def _rolling(delay: str, monitor: str, failure_action: str) -> dict:
    return {"parallelism": 1, "delay": delay, "failure_action": failure_action,
            "monitor": monitor, "max_failure_ratio": 0, "order": "start-first"}


def _seconds(value: float) -> str:
    return f"{math.ceil(value)}s"


def _volumes(body: dict) -> list:
    """Long-form volumes reduced to what the 20.10 schema takes (no create_host_path)."""
    out = []
    for v in body.get("volumes") or ():
        if isinstance(v, dict):
            kept = {k: v[k] for k in ("type", "source", "target", "read_only") if k in v}
            if v.get("type") == "bind" and (v.get("bind") or {}).get("propagation"):
                kept["bind"] = {"propagation": v["bind"]["propagation"]}
            out.append(kept)
        else:
            out.append(v)
    return out


def _base(name: str, body: dict, options: SwarmOptions) -> dict:
    service = {k: body[k] for k in _KEPT if body.get(k) not in (None, {}, [])}
    image = options.images.get(name) or body.get("image")
    if not image:
        raise ConfigError(f"service {name!r}: no image (it has only build:, and no image "
                          "was built for it)")
    service = {"image": image, **service}
    volumes = _volumes(body)
    if volumes:
        service["volumes"] = volumes
    service["networks"] = sorted(body.get("networks") or {"default": None})
    if body.get("stop_grace_period"):
        service["stop_grace_period"] = body["stop_grace_period"]
    return service


def _deploy(options: SwarmOptions, labelled: bool = True, **values) -> dict:
    deploy = {"endpoint_mode": "dnsrr", **values}
    if options.labels and labelled:
        deploy["labels"] = dict(options.labels)
    return deploy


def _app(name: str, body: dict, options: SwarmOptions) -> dict:
    service = _base(name, body, options)
    grace = options.drain + options.stop_margin
    given = body.get("stop_grace_period")
    if given is None or (parse_duration(given) or 0.0) < grace:
        service["stop_grace_period"] = _seconds(grace)
    service["deploy"] = _deploy(
        options, mode="replicated", replicas=options.replicas,
        update_config=_rolling(options.update_delay, options.update_monitor, "rollback"),
        rollback_config=_rolling("0s", options.update_monitor, "pause"),
        restart_policy={"condition": "any", "delay": options.restart_delay})
    return service


def _db(name: str, body: dict, options: SwarmOptions) -> dict:
    if not options.db_node:
        raise ConfigError(f"SWARM_DB_NODE: missing; the database service {name!r} must "
                          "stay on the node that holds its volume: name that node's "
                          "hostname, or a node label as LABEL=VALUE")
    service = _base(name, body, options)
    service["deploy"] = _deploy(
        options, False, mode="replicated", replicas=1,
        placement={"constraints": [db_constraint(options.db_node)]},
        update_config={"parallelism": 1, "order": "stop-first", "failure_action": "pause"})
    return service


def _other(name: str, body: dict, options: SwarmOptions, worker: bool) -> dict:
    """A worker or any other service: one replica unless its own `deploy:` says more."""
    service = _base(name, body, options)
    replicas = (body.get("deploy") or {}).get("replicas", 1)
    service["deploy"] = _deploy(
        options, worker, mode="replicated", replicas=replicas,
        update_config=_rolling(options.update_delay, options.update_monitor, "rollback"))
    return service


def _proxy(roles: Roles, options: SwarmOptions, config_key: str) -> dict:
    placement = ({"constraints": [f"node.labels.{options.proxy_label}==true"]}
                 if options.proxy_label else {})
    ports = [{"target": roles.proxy_publish[app].port,
              "published": roles.proxy_publish[app].port,
              "protocol": "tcp", "mode": "host"} for app in roles.app_services]
    deploy = _deploy(options, False, mode="global",
                     # A host-mode port allows one task per node: stop first, one node at
                     # a time, so the other nodes keep serving.
                     update_config={"parallelism": 1, "delay": options.update_delay,
                                    "order": "stop-first", "failure_action": "rollback",
                                    "monitor": options.update_monitor})
    if placement:
        deploy["placement"] = placement
    return {"image": options.proxy_image, "ports": ports,
            "configs": [{"source": config_key, "target": PROXY_CONFIG_TARGET}],
            "networks": ["default"], "deploy": deploy}


def render(config: Mapping, roles: Roles, options: SwarmOptions) -> StackFile:
    """The stack file for `docker stack deploy`, from `compose config` parsed as YAML."""
    import yaml  # only the Swarm tasks pay for the import

    if options.replicas < 1:
        raise ConfigError(f"APP_REPLICAS: {options.replicas} is not a number of replicas "
                          "(1 or more)")
    bodies = dict(config.get("services") or {})
    missing = [s for s in (*roles.app_services, *roles.worker_services) if s not in bodies]
    if missing:
        raise ConfigError(f"APP_SERVICES/WORKER_SERVICES: no service {missing[0]!r} in the "
                          f"compose file (its services: {', '.join(sorted(bodies))})")
    cfg = haproxy_config(options.stack, roles, options.replicas)
    digest = hashlib.sha256(cfg.encode()).hexdigest()[:12]
    config_key, config_file = "proxy_config", f"haproxy-{digest}.cfg"
    services = {}
    for name, body in bodies.items():
        body = body or {}
        if name == PROXY_SERVICE:
            continue
        if name in roles.app_services:
            services[name] = _app(name, body, options)
        elif roles.db_service and name == roles.db_service:
            services[name] = _db(name, body, options)
        else:
            services[name] = _other(name, body, options, name in roles.worker_services)
    services[PROXY_SERVICE] = _proxy(roles, options, config_key)
    networks = {"default": {"driver": "overlay", "attachable": True}}
    for net, spec in (config.get("networks") or {}).items():
        if net != "default":
            networks[net] = ({"external": True, "name": spec.get("name", net)}
                             if (spec or {}).get("external")
                             else {"driver": "overlay", "attachable": True})
    doc = {"version": STACK_VERSION, "services": services, "networks": networks,
           "configs": {config_key: {"name": f"{options.stack}-proxy-{digest}",
                                    "file": f"./{config_file}"}}}
    volumes = {name: {k: v for k, v in (spec or {}).items() if k in _VOLUME_KEYS}
               for name, spec in (config.get("volumes") or {}).items()}
    if volumes:
        doc["volumes"] = volumes
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    return StackFile(f"# Rendered by `invoke deploy` for stack {options.stack}.\n" + text,
                     {config_file: cfg}, f"{options.stack}-proxy-{digest}")
