"""The Compose project as data: what `docker compose config` (v2) or `docker-compose
config` (v1) printed, parsed into services with what a deploy needs of each.

Pure: text in, a Project out; and the refusals a deploy checks before it changes anything.
Both versions print the canonical YAML; they differ in details this parser absorbs: v1 mixes
short (`127.0.0.1:5432:5432/tcp`) and long port forms and prints a `version:` key, v2 prints
`name:`, long port forms with `published` as a string and `networks: {default: null}`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from deploy.errors import ConfigError, DeployError

PROXY_SERVICE = "proxy"  # the service the tool adds (deploy/commands/proxyconf.py)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


@dataclass(frozen=True)
class Build:
    """A service's `build:` section; two services with equal ones share one image."""

    context: str
    dockerfile: str = "Dockerfile"
    args: tuple[tuple[str, str], ...] = ()
    target: str | None = None


@dataclass(frozen=True)
class Port:
    target: str  # the container port (or range), e.g. "8000"
    published: str | None = None  # the host port; None: an ephemeral one Docker picks
    host_ip: str = ""
    protocol: str = "tcp"


@dataclass(frozen=True)
class Service:
    name: str
    image: str | None = None  # as written, tag included
    build: Build | None = None
    ports: tuple[Port, ...] = ()
    healthcheck: tuple[str, ...] | None = None  # its test; None: none (or disabled)
    stop_signal: str | None = None
    stop_grace_period: float | None = None  # seconds
    networks: tuple[str, ...] = ()
    # A digest of the whole definition: a changed one means Compose would recreate it.
    definition: str = ""

    @property
    def fixed_ports(self) -> tuple[Port, ...]:
        """Ports published on a fixed host port: no second container can run beside it."""
        return tuple(p for p in self.ports if p.published)


@dataclass(frozen=True)
class Project:
    name: str
    services: dict[str, Service]
    networks: tuple[str, ...] = ()

    def image_name(self, service: str) -> str:
        """The image name a deploy tags by release: `image:` without its tag or digest, or
        `<project>-<service>` when the service names none."""
        image = self.services[service].image
        if not image:
            return f"{self.name}-{service}"
        path = image.split("@", 1)[0]
        head, _, last = path.rpartition("/")
        last = last.split(":", 1)[0]
        return f"{head}/{last}" if head else last


@dataclass(frozen=True)
class BuildGroup:
    """One image build shared by the services whose `build:` sections are equal."""

    build: Build
    services: tuple[str, ...]
    images: tuple[str, ...]  # their image names, without a tag, in service order

    @property
    def dockerfile(self) -> str:
        """The Dockerfile's path: Compose resolves the context, not the Dockerfile."""
        if self.build.dockerfile.startswith("/"):
            return self.build.dockerfile
        return f"{self.build.context.rstrip('/')}/{self.build.dockerfile}"


def build_groups(project: Project, services: Iterable[str]) -> list[BuildGroup]:
    """The builds of ``services`` (those with a `build:` section), each build once."""
    groups: dict[Build, list[str]] = {}
    for name in services:
        build = project.services[name].build
        if build is not None:
            groups.setdefault(build, []).append(name)
    return [BuildGroup(build, tuple(names),
                       tuple(dict.fromkeys(project.image_name(n) for n in names)))
            for build, names in groups.items()]


def parse_duration(value: object) -> float | None:
    """Seconds from a Compose duration (`20s`, `1m30s`, `500ms`) or a number of seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise DeployError(f"compose config: {text!r} is not a duration (e.g. 10s, 1m30s)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _port(entry: object) -> Port:
    if isinstance(entry, dict):
        published = entry.get("published")
        return Port(target=str(entry.get("target", "")),
                    published=str(published) if published not in (None, "") else None,
                    host_ip=str(entry.get("host_ip") or ""),
                    protocol=str(entry.get("protocol") or "tcp"))
    text, _, protocol = str(entry).partition("/")
    fields = text.rsplit(":", 2)
    target = fields[-1]
    published = fields[-2] if len(fields) > 1 else ""
    host_ip = fields[0].strip("[]") if len(fields) > 2 else ""
    return Port(target=target, published=published or None, host_ip=host_ip,
                protocol=protocol or "tcp")


def _build(section: object) -> Build | None:
    if section is None:
        return None
    if isinstance(section, str):
        return Build(context=section)
    args = section.get("args") or {}
    if isinstance(args, list):  # ["K=V", …]
        args = dict(a.split("=", 1) if "=" in a else (a, "") for a in args)
    return Build(context=str(section.get("context", ".")),
                 dockerfile=str(section.get("dockerfile") or "Dockerfile"),
                 args=tuple(sorted((str(k), "" if v is None else str(v))
                                   for k, v in args.items())),
                 target=section.get("target") or None)


def _healthcheck(section: object) -> tuple[str, ...] | None:
    if not isinstance(section, dict) or section.get("disable"):
        return None
    test = section.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if not test or test == ["NONE"]:
        return None
    return tuple(str(t) for t in test)


def _networks(section: object) -> tuple[str, ...]:
    if isinstance(section, dict):
        return tuple(sorted(section))
    return tuple(sorted(str(n) for n in section or ()))


def _service(name: str, body: dict) -> Service:
    canonical = json.dumps(body, sort_keys=True, default=str)
    return Service(
        name=name,
        image=body.get("image") or None,
        build=_build(body.get("build")),
        ports=tuple(_port(p) for p in body.get("ports") or ()),
        healthcheck=_healthcheck(body.get("healthcheck")),
        stop_signal=body.get("stop_signal") or None,
        stop_grace_period=parse_duration(body.get("stop_grace_period")),
        networks=_networks(body.get("networks")) or ("default",),
        definition=hashlib.sha256(canonical.encode()).hexdigest()[:16],
    )


def parse_config(text: str, project: str) -> Project:
    """The project from `compose config` output; `project` names it when v1 does not."""
    import yaml  # only the tasks that read a compose file pay for the import

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DeployError(f"compose config: unreadable YAML{where}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise DeployError("compose config: no services: in its output")
    services = {str(n): _service(str(n), body or {}) for n, body in doc["services"].items()}
    return Project(name=str(doc.get("name") or project), services=services,
                   networks=tuple(sorted(doc.get("networks") or {})))


def refusals(project: Project, compose_file: str, apps: Iterable[str],
             workers: Iterable[str], db: str) -> None:
    """ConfigError (one line, exit 2) when the settings name a service the compose file
    lacks, or an app service publishes a fixed host port; before anything is changed."""
    roles = [("APP_SERVICES", s) for s in apps] + [("WORKER_SERVICES", s) for s in workers]
    roles += [("DB_SERVICE", db)] if db else []
    for setting, name in roles:
        if name not in project.services:
            has = ", ".join(sorted(project.services)) or "none"
            raise ConfigError(f"{setting}: {compose_file} has no service {name!r} "
                              f"(its services: {has})")
    if apps and PROXY_SERVICE in project.services:
        raise ConfigError(
            f"COMPOSE_FILE: {compose_file} has a service named {PROXY_SERVICE!r}; the tool runs "
            "its own proxy under that name in front of APP_SERVICES: rename yours, or drop it "
            "if it only fronted the app (PROXY_PUBLISH says where the tool's proxy publishes)")
    for name in apps:
        if project.services[name].build is None:
            raise ConfigError(f"APP_SERVICES: service {name!r} in {compose_file} has no "
                              "`build:` section; a deploy builds each app service's image "
                              "by release")
        fixed = project.services[name].fixed_ports
        if fixed:
            port = fixed[0]
            shown = ":".join(p for p in (port.host_ip, port.published, port.target) if p)
            raise ConfigError(
                f"APP_SERVICES: service {name!r} in {compose_file} publishes the fixed host "
                f"port {shown}; a deploy runs two of its containers side by side: drop its "
                "`ports:`; the proxy publishes it at PROXY_PUBLISH")
