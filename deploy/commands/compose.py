"""Docker Compose as data: argv builders and output parsers, for v1 and v2/v5.

Nothing here runs a process or builds shell text (docs/design.md, "commands are data").
Every builder returns a ``list[str]``; the one executor elsewhere joins it with
``shlex.join``. Parsers take the text a command printed and return plain values.

Flavours:
- ``v2``: the ``docker compose`` plugin (2.x, and 5.x, which is the same CLI), or a
  standalone ``docker-compose`` binary of version 2+.
- ``v1``: the Python ``docker-compose`` 1.x (1.29.2 is the last). It has no
  ``ps --format json``, no ``logs --since`` and no ``up --wait``; its container names
  use ``_`` (``proj_backend_1``) where v2 uses ``-``.

Health is read from ``docker inspect``, which every version has, not from ``compose ps``.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from deploy.errors import ConfigError, DeployError

# probe(argv) -> (returncode, stdout); it may raise OSError when argv[0] is missing.
Probe = Callable[[list[str]], tuple[int, str]]

NOT_FOUND = (
    "Docker Compose not found: install the docker compose plugin (v2) or docker-compose, "
    "or set COMPOSE_CMD"
)

SERVICE_LABEL = "com.docker.compose.service"
CONFIG_HASH_LABEL = "com.docker.compose.config-hash"
ONEOFF_LABEL = "com.docker.compose.oneoff"

# Docker's zero time: a container that never started or never finished.
_ZERO_TIME = "0001-01-01T00:00:00Z"

_VERSION = re.compile(r"\bv?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Compose:
    """How to invoke Compose for one project: the command, its flavour, file and name."""

    base: tuple[str, ...]
    flavour: str
    file: str
    project: str
    env_file: str | None = None
    # Variables set for Compose itself (`env K=V … compose …`): they win over the env file.
    env: tuple[str, ...] = ()
    # More files merged over ``file`` (the tool's override: its proxy, the `live` images).
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.flavour not in ("v1", "v2"):
            raise ValueError(f"flavour must be 'v1' or 'v2', not {self.flavour!r}")
        if not self.base:
            raise ValueError("base command is empty")

    def argv(self, *args: str) -> list[str]:
        """The full command line for one Compose subcommand."""
        argv = ["env", *self.env] if self.env else []
        argv += [*self.base, "-f", self.file]
        for extra in self.overrides:
            argv += ["-f", extra]
        argv += ["-p", self.project]
        if self.env_file:
            # A global option in v2 and in v1 since 1.25, so both take it before the command.
            argv += ["--env-file", self.env_file]
        return argv + list(args)


# --- flavour detection -------------------------------------------------------------


def flavour_of(version_output: str) -> str | None:
    """``"v1"``/``"v2"`` from what ``… version`` printed, or None if no version is in it."""
    m = _VERSION.search(version_output)
    if not m:
        return None
    return "v1" if int(m.group(1)) < 2 else "v2"


def _try(probe: Probe, argv: list[str]) -> str | None:
    try:
        code, out = probe(argv)
    except OSError:  # the executable itself is missing
        return None
    return out if code == 0 else None


def detect_flavour(compose_cmd: str | None, probe: Probe) -> tuple[tuple[str, ...], str]:
    """Find the Compose command to use and its flavour: ``(base argv, "v1" | "v2")``.

    ``COMPOSE_CMD`` wins when set. Otherwise the plugin (``docker compose``) is preferred
    over a ``docker-compose`` binary, whose flavour is read from its version because
    standalone 2.x binaries exist too.
    """
    if compose_cmd is not None and compose_cmd.strip():
        try:
            base = tuple(shlex.split(compose_cmd))
        except ValueError as err:
            raise ConfigError(f"COMPOSE_CMD: cannot parse {compose_cmd!r}: {err}") from None
        out = _try(probe, [*base, "version"])
        if out is None:
            raise ConfigError(
                f"COMPOSE_CMD: '{compose_cmd} version' failed; set it to a working "
                "Docker Compose command (e.g. 'docker compose' or 'docker-compose')"
            )
        flavour = flavour_of(out)
        if flavour is None:
            raise ConfigError(
                f"COMPOSE_CMD: '{compose_cmd} version' printed no version number: "
                f"{out.strip()[:200]!r}"
            )
        return base, flavour

    out = _try(probe, ["docker", "compose", "version"])
    flavour = flavour_of(out or "")
    if flavour:
        return ("docker", "compose"), flavour

    out = _try(probe, ["docker-compose", "version", "--short"])
    if out is None:  # very old 1.x without --short
        out = _try(probe, ["docker-compose", "version"])
    flavour = flavour_of(out or "")
    if flavour:
        return ("docker-compose",), flavour

    raise ConfigError(NOT_FOUND)


# --- builders ------------------------------------------------------------------------


def _services(services: str | Iterable[str]) -> list[str]:
    # A lone string is one service, not a sequence of one-letter services.
    names = [services] if isinstance(services, str) else list(services)
    for name in names:
        # Shell metacharacters are harmless (argv never meets a shell unquoted), but a
        # leading '-' would be read by Compose as an option: refuse it.
        if not name or name.startswith("-"):
            raise ConfigError(f"service name {name!r}: must be non-empty and not start with '-'")
    return names


def up(c: Compose, services: str | Iterable[str] = (), build: bool | None = False,
       no_deps: bool = False) -> list[str]:
    """``up -d``; never ``--wait``: health is ours to wait for (and v1 lacks it).
    ``build=None``: build only a missing image."""
    args = ["up", "-d"]
    if build is not None:
        args.append("--build" if build else "--no-build")
    if no_deps:
        args.append("--no-deps")
    return c.argv(*args, *_services(services))


def services(c: Compose) -> list[str]:
    """The Compose file's service names, one per line (v1 and v2)."""
    return c.argv("config", "--services")


def config(c: Compose) -> list[str]:
    """The whole project, resolved and canonical, as YAML (v1 and v2; parsed by
    deploy/commands/project.py). It holds the environment's values: never print it."""
    return c.argv("config")


def config_hashes(c: Compose, services: Iterable[str]) -> list[str]:
    """Prints `<service> <hash>` for each service (a comma-separated --hash, v1 and v2):
    the hash Compose labels the service's containers with (com.docker.compose.config-hash)
    and compares to decide on recreating."""
    return c.argv("config", f"--hash={','.join(_services(list(services)))}")


def parse_config_hashes(text: str) -> dict[str, str]:
    pairs = (line.strip().partition(" ") for line in text.splitlines())
    return {name: digest.strip() for name, _, digest in pairs if name and digest.strip()}


def scale_up(c: Compose, counts: dict[str, int]) -> list[str]:
    """Start new containers of each service beside its running ones (``counts``: service ->
    how many in all), from the current image and config, leaving the existing ones untouched
    (v1 and v2)."""
    if not counts or any(n < 1 for n in counts.values()):
        raise ValueError(f"each count must be at least 1: {counts}")
    names = _services(list(counts))
    scales = [a for name in names for a in ("--scale", f"{name}={counts[name]}")]
    return c.argv("up", "-d", "--no-deps", "--no-recreate", "--no-build", *scales, *names)


def down(c: Compose, volumes: bool = False) -> list[str]:
    args = ["down", "--remove-orphans"]
    if volumes:
        args.append("--volumes")
    return c.argv(*args)


def logs(
    c: Compose,
    services: str | Iterable[str] = (),
    tail: int | str | None = None,
    since: str | None = None,
    timestamps: bool = False,
) -> list[str]:
    args = ["logs", "--no-color"]
    if timestamps:
        args.append("--timestamps")
    if tail is not None:
        if not (str(tail) == "all" or str(tail).isdigit()):
            raise ConfigError(f"--tail: expected a number of lines or 'all', got {tail!r}")
        args += ["--tail", str(tail)]
    if since is not None:
        if c.flavour == "v1":
            # docker-compose 1.29's `logs` has --no-color, -f, -t, --tail, --no-log-prefix
            # and nothing else.
            raise ConfigError(
                "--since needs Docker Compose v2 (docker-compose 1.x has no logs --since); "
                "install the docker compose plugin or use --tail"
            )
        args += ["--since", since]
    return c.argv(*args, *_services(services))


def exec_(c: Compose, service: str, argv: Sequence[str], tty: bool = False) -> list[str]:
    """Run ``argv`` in a running service container; ``-T`` unless a terminal is wanted."""
    (name,) = _services([service])
    args = ["exec"] if tty else ["exec", "-T"]
    return c.argv(*args, name, *argv)


_STATES_SCRIPT = (
    'ids=$(docker ps -a -q --no-trunc --filter "$1" --filter "$2") || exit\n'
    '[ -z "$ids" ] || exec docker inspect --type container $ids'
)


def project_states(project: str) -> list[str]:
    """``docker inspect`` of a project's service containers, in one command (no output
    when there are none).

    Straight from the engine: both flavours label containers with the project name, and
    ``docker ps`` costs tens of milliseconds where ``docker-compose ps`` (v1) costs most of
    a second. One command, not two: over SSH each is a session (~0.2 s), and the health
    poll runs every 0.25 s. The script is a constant; the filters are its arguments.
    """
    return ["sh", "-c", _STATES_SCRIPT, "sh",
            f"label=com.docker.compose.project={project}", f"label={ONEOFF_LABEL}=False"]


def docker_info() -> list[str]:
    """Prints the daemon's version as JSON; fails when the daemon is unreachable."""
    return ["docker", "info", "--format", "{{json .ServerVersion}}"]


# --- parsers --------------------------------------------------------------------------


def _json(text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DeployError(f"{what}: unreadable JSON ({err}): {text.strip()[:200]!r}") from None


@dataclass(frozen=True)
class ContainerState:
    """What ``docker inspect`` says about one container, as health checking needs it."""

    id: str
    name: str
    service: str
    status: str  # created | running | paused | restarting | removing | exited | dead
    health: str | None  # starting | healthy | unhealthy; None without a healthcheck
    exit_code: int
    restart_count: int
    health_log: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    started_at: str | None = None
    finished_at: str | None = None
    one_off: bool = False  # a `compose run` container, not part of the service set
    error: str = ""  # .State.Error, e.g. why the runtime could not start it
    ip: str = ""  # its address on the project's network (the proxy routes to it)
    image_id: str = ""
    release: str = ""  # the deploy.release label of its image (deploy/release/sequence.py)
    healthcheck: tuple[str, ...] = ()  # its healthcheck's test: ("CMD", …) or ("CMD-SHELL", …)
    config_hash: str = ""  # the service definition Compose created it from (config_hash)

    @property
    def label(self) -> str:
        return self.service or self.name


def _time(value: str | None) -> str | None:
    return None if not value or value == _ZERO_TIME else value


def _ports(ports: dict | None) -> tuple[str, ...]:
    out = []
    for container_port, bindings in sorted((ports or {}).items()):
        if not bindings:  # exposed, not published
            out.append(container_port)
            continue
        for b in bindings:
            ip, port = b.get("HostIp", ""), b.get("HostPort", "")
            host = f"[{ip}]" if ":" in ip else ip
            out.append(f"{host}:{port}->{container_port}" if host else f"{port}->{container_port}")
    return tuple(out)


def _first_ip(networks: dict | None) -> str:
    for name in sorted(networks or {}):
        ip = (networks[name] or {}).get("IPAddress")
        if ip:
            return ip
    return ""


def parse_inspect(text: str) -> list[ContainerState]:
    """Container states from ``docker inspect`` output (a JSON array)."""
    if not text.strip():
        return []
    states = []
    for c in _json(text, "docker inspect"):
        state = c.get("State") or {}
        labels = (c.get("Config") or {}).get("Labels") or {}
        health = state.get("Health")
        log = (health or {}).get("Log") or []
        states.append(
            ContainerState(
                id=c.get("Id", ""),
                name=c.get("Name", "").lstrip("/"),
                service=labels.get(SERVICE_LABEL, ""),
                status=state.get("Status", ""),
                health=health.get("Status") if health else None,
                exit_code=int(state.get("ExitCode") or 0),
                restart_count=int(c.get("RestartCount") or 0),
                health_log=tuple((e.get("Output") or "").strip() for e in log),
                ports=_ports((c.get("NetworkSettings") or {}).get("Ports")),
                started_at=_time(state.get("StartedAt")),
                finished_at=_time(state.get("FinishedAt")),
                one_off=labels.get(ONEOFF_LABEL, "False") == "True",
                error=state.get("Error") or "",
                ip=_first_ip((c.get("NetworkSettings") or {}).get("Networks")),
                image_id=c.get("Image", ""),
                release=labels.get("deploy.release", ""),
                healthcheck=tuple(((c.get("Config") or {}).get("Healthcheck") or {})
                                  .get("Test") or ()),
                config_hash=labels.get(CONFIG_HASH_LABEL, ""),
            )
        )
    return states
