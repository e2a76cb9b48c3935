"""The stack's roles, read from settings: which Compose services serve HTTP behind the
proxy, which are workers, which one is the database, and where the proxy publishes.

Pure parsing: `src` is the settings' source (get, raw, error); every bad value raises the
ConfigError that `src.error` builds, naming the setting and where it was set.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from deploy.errors import ConfigError

DEFAULT_APP_SERVICES = ("backend",)
DEFAULT_APP_PORT = 8080
DEFAULT_HEALTH_PATH = "/health"
DEFAULT_DB_SERVICE = "postgres"
DEFAULT_PROXY_HOST = "127.0.0.1"
DEFAULT_PROXY_HEALTH_PATH = "/.deploy/health"
# Compose's service-name grammar (compose-spec: ^[a-zA-Z0-9._-]+$, no leading separator).
_SERVICE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# An HTTP path HAProxy can put in `option httpchk` and `monitor-uri` without quoting.
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+;=:@%/?-]*$")


class _Src(Protocol):
    def get(self, name: str) -> str | None: ...
    def raw(self, name: str) -> str | None: ...
    def error(self, name: str, problem: str) -> ConfigError: ...


@dataclass(frozen=True)
class Publish:
    """Where the proxy publishes one app service on the host: address and port."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Roles:
    app_services: tuple[str, ...]
    app_ports: dict[str, int]
    health_paths: dict[str, str]
    worker_services: tuple[str, ...]
    db_service: str
    proxy_publish: dict[str, Publish]
    proxy_health_path: str


def read_roles(src: _Src) -> Roles:
    """Every role setting, validated in the order the README's table lists them."""
    apps = _service_list(src, "APP_SERVICES", DEFAULT_APP_SERVICES)
    ports = _per_service(src, "APP_PORT", apps, str(DEFAULT_APP_PORT), ":",
                         lambda raw: _port(raw), "a port number (1-65535)")
    paths = _per_service(src, "HEALTH_PATH", apps, DEFAULT_HEALTH_PATH, ":",
                         _path, "a path starting with /")
    workers = _service_list(src, "WORKER_SERVICES", ())
    db = _db_service(src)
    _disjoint(src, apps, workers, db)
    publish = _proxy_publish(src, apps)
    proxy_health = src.get("PROXY_HEALTH_PATH") or DEFAULT_PROXY_HEALTH_PATH
    if _path(proxy_health) is None:
        raise src.error("PROXY_HEALTH_PATH",
                        f"{proxy_health!r} is not a path starting with / (e.g. /.deploy/health)")
    return Roles(apps, ports, paths, workers, db, publish, proxy_health)


def _service_list(src: _Src, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = src.raw(name)
    if raw is None:
        return default
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for n in names:
        if not _SERVICE_RE.match(n):
            raise src.error(name, f"{n!r} is not a Compose service name (letters, digits, "
                                  "'.', '_' and '-')")
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise src.error(name, f"{twice!r} is named twice")
    return tuple(names)


def _db_service(src: _Src) -> str:
    raw = src.raw("DB_SERVICE")
    if raw is None:
        return DEFAULT_DB_SERVICE
    value = raw.strip()
    # Set to empty: the stack has no database service; DATABASE_URL names an external one.
    if value and not _SERVICE_RE.match(value):
        raise src.error("DB_SERVICE", f"{value!r} is not a Compose service name (letters, "
                                      "digits, '.', '_' and '-'; empty: no database service)")
    return value


def _disjoint(src: _Src, apps: tuple[str, ...], workers: tuple[str, ...], db: str) -> None:
    for w in workers:
        if w in apps:
            raise src.error("WORKER_SERVICES", f"{w!r} is also in APP_SERVICES; a service "
                                               "is either served by the proxy or a worker")
    if db and db in apps + workers:
        other = "APP_SERVICES" if db in apps else "WORKER_SERVICES"
        raise src.error("DB_SERVICE", f"{db!r} is also in {other}; a deploy never replaces "
                                      "the database service")


def _port(raw: str) -> int | None:
    raw = raw.strip()
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 65535 else None


def _path(raw: str) -> str | None:
    raw = raw.strip()
    return raw if _PATH_RE.match(raw) else None


def _per_service(src: _Src, name: str, apps: tuple[str, ...], default: str, sep: str,
                 parse, what: str) -> dict:
    """One value for every app service ("8000"), or one each ("web:8000,admin:9000")."""
    raw = (src.get(name) or default).strip()
    single = parse(raw) if not _names_service(raw, sep) else None
    if single is not None:
        return {app: single for app in apps}
    if not _names_service(raw, sep):
        raise src.error(name, f"{raw!r} is not {what}")
    values = {}
    for item in (i.strip() for i in raw.split(",") if i.strip()):
        service, _, value = item.partition(sep)
        service = service.strip()
        if service not in apps:
            raise src.error(name, f"{service!r} is not in APP_SERVICES "
                                  f"({', '.join(apps) or 'empty'})")
        parsed = parse(value) if sep in item else None
        if parsed is None:
            raise src.error(name, f"{item!r}: {value.strip()!r} is not {what} "
                                  f"(write SERVICE{sep}VALUE, comma-separated)")
        values[service] = parsed
    missing = [a for a in apps if a not in values]
    if missing:
        raise src.error(name, f"no value for {', '.join(missing)} (name every app service, "
                              f"e.g. {','.join(f'{a}{sep}…' for a in apps)})")
    return values


def _names_service(raw: str, sep: str) -> bool:
    """True for the per-service form: the text before the first separator is a name."""
    head, found, _ = raw.partition(sep)
    return bool(found) and bool(_SERVICE_RE.match(head.strip()))


def _address(raw: str) -> Publish | None:
    """HOST:PORT, [IPv6]:PORT or a bare PORT (published on 127.0.0.1)."""
    raw = raw.strip()
    if raw.isdigit():
        port = _port(raw)
        return Publish(DEFAULT_PROXY_HOST, port) if port else None
    host, colon, port_text = raw.rpartition(":")
    port = _port(port_text) if colon else None
    if port is None:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return Publish(str(ipaddress.ip_address(host)), port)
    except ValueError:
        return None


def _proxy_publish(src: _Src, apps: tuple[str, ...]) -> dict[str, Publish]:
    raw = src.get("PROXY_PUBLISH")
    example = "0.0.0.0:80, or web=0.0.0.0:80,admin=127.0.0.1:9001 with several APP_SERVICES"
    if raw is None:
        if len(apps) > 1:
            raise src.error("PROXY_PUBLISH", f"missing; with several APP_SERVICES "
                                             f"({', '.join(apps)}) name each one's address, "
                                             f"e.g. {','.join(f'{a}=…' for a in apps)}")
        port = src.get("BACKEND_PUBLISHED_PORT") or str(DEFAULT_APP_PORT)
        if _port(port) is None:
            raise src.error("BACKEND_PUBLISHED_PORT", f"{port!r} is not a port number (1-65535)")
        return {app: Publish(DEFAULT_PROXY_HOST, int(port)) for app in apps}
    if "=" not in raw:
        address = _address(raw)
        if address is None:
            raise src.error("PROXY_PUBLISH", f"{raw!r} is not an address:port, e.g. {example}")
        if len(apps) > 1:
            raise src.error("PROXY_PUBLISH", f"one address for several APP_SERVICES "
                                             f"({', '.join(apps)}); name each: "
                                             f"{','.join(f'{a}=…' for a in apps)}")
        return {app: address for app in apps}
    published: dict[str, Publish] = {}
    for item in (i.strip() for i in raw.split(",") if i.strip()):
        service, _, value = (s.strip() for s in item.partition("="))
        if service not in apps:
            raise src.error("PROXY_PUBLISH", f"{service!r} is not in APP_SERVICES "
                                             f"({', '.join(apps) or 'empty'})")
        address = _address(value)
        if address is None:
            raise src.error("PROXY_PUBLISH", f"{item!r}: {value!r} is not an address:port, "
                                             f"e.g. {example}")
        published[service] = address
    missing = [a for a in apps if a not in published]
    if missing:
        raise src.error("PROXY_PUBLISH", f"no address for {', '.join(missing)}")
    ports = [p.port for p in published.values()]
    if len(set(ports)) != len(ports):
        raise src.error("PROXY_PUBLISH", "two app services on one port; give each its own")
    return published


class _HasRoles(Protocol):
    app_services: tuple[str, ...]
    worker_services: tuple[str, ...]
    db_service: str


def _roled(roles: _HasRoles) -> set[str]:
    return {*roles.app_services, *roles.worker_services, *({roles.db_service} - {""})}


def host_services(services: Sequence[str], shared: _HasRoles, own: _HasRoles,
                  proxy: str | None = None) -> tuple[str, ...]:
    """The Compose services one host runs, in ``services``' order: its own app, worker and
    database services, and every service the shared settings give no role (a cache, a
    mail relay: everywhere, as on one machine). A service the shared settings give a role
    and the host's overlay took away is not started there: a web host's overlay empties
    DB_SERVICE, a database host's empties APP_SERVICES and WORKER_SERVICES. ``proxy``: the
    tool's proxy service, run only beside app services. Here (no hosts) shared is own:
    every service."""
    mine, roled = _roled(own), _roled(shared)
    return tuple(s for s in services
                 if (s in mine or s not in roled) and (s != proxy or own.app_services))
