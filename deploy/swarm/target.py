"""Which target a task works on, the Swarm's settings, and the SSH connection to its manager.

    DEPLOY_TARGET         compose (default: this machine, or hosts) | swarm; `--target`
                          on the command line wins
    SWARM_MANAGER         user@host[:port] of a manager node, reached over SSH with the
                          hosts' trust rules (SSH_KNOWN_HOSTS, SSH_KEY_FILE; unknown or
                          changed host keys refused): every docker command runs there
    APP_REPLICAS          replicas of each app service (default 2)
    SWARM_DB_NODE         where the database service runs (a hostname or LABEL=VALUE)
    SWARM_PROXY_LABEL     the proxy runs only on nodes labelled LABEL=true (default: all)
    SWARM_RUNNER          the migration runner in the first app service's image (default
                          `python3 -m deploy`; its first word replaces the image's
                          ENTRYPOINT); the tool adds `migrate --wait 60 --lock-wait N`,
                          `migrate-status` or `check-tables …`
    SWARM_ROLLOUT_TIMEOUT seconds one service's rolling update may take (default 600)

Parsed from the merged settings (like deploy/fleet/registry.py's), so only the tasks that
use the Swarm check them; each error names its setting (exit 2).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from deploy.errors import ConfigError
from deploy.fleet.hosts import Host, parse_hosts
from deploy.settings import Settings

COMPOSE, SWARM = "compose", "swarm"
TARGETS = (COMPOSE, SWARM)
DEFAULT_REPLICAS = 2
DEFAULT_RUNNER = "python3 -m deploy"
DEFAULT_ROLLOUT_TIMEOUT = 600.0
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def target(flag: str | None, settings: Settings) -> str:
    """`--target`, else DEPLOY_TARGET, else compose; anything else is exit 2 naming it."""
    if flag is not None:
        value, name = flag.strip(), "--target"
    else:
        value, name = (settings.values.get("DEPLOY_TARGET") or COMPOSE).strip(), \
            "DEPLOY_TARGET"
    if value not in TARGETS:
        raise ConfigError(f"{name}: {value!r} is not a target; use one of "
                          f"{', '.join(TARGETS)}")
    return value


@dataclass(frozen=True)
class SwarmConfig:
    manager: Host
    stack: str  # the stack's name: COMPOSE_PROJECT_NAME
    replicas: int = DEFAULT_REPLICAS
    db_node: str | None = None
    proxy_label: str | None = None
    runner: tuple[str, ...] = tuple(shlex.split(DEFAULT_RUNNER))
    rollout_timeout: float = DEFAULT_ROLLOUT_TIMEOUT
    state_dir: str = "/srv/app/swarm"  # on the manager: stack files, the release history

    @property
    def network(self) -> str:
        """The stack's own overlay network (`default` in the stack file)."""
        return f"{self.stack}_default"

    def service(self, name: str) -> str:
        return f"{self.stack}_{name}"


def swarm_config(settings: Settings) -> SwarmConfig:
    values = settings.values

    def get(name: str) -> str | None:
        value = (values.get(name) or "").strip()
        return value or None

    manager = get("SWARM_MANAGER")
    if manager is None:
        raise ConfigError("SWARM_MANAGER: missing; the swarm target needs a manager node "
                          "as user@host[:port], reached over SSH (SSH_KNOWN_HOSTS, "
                          "SSH_KEY_FILE)")
    if "," in manager:
        raise ConfigError(f"SWARM_MANAGER: {manager!r} names more than one node; name one "
                          "manager")
    (host,) = parse_hosts(manager, "SWARM_MANAGER")
    replicas = get("APP_REPLICAS") or str(DEFAULT_REPLICAS)
    if not replicas.isdigit() or int(replicas) < 1:
        raise ConfigError(f"APP_REPLICAS: {replicas!r} is not a number of replicas "
                          "(1 or more)")
    label = get("SWARM_PROXY_LABEL")
    if label is not None and not _LABEL_RE.match(label):
        raise ConfigError(f"SWARM_PROXY_LABEL: {label!r} is not a node label name "
                          "(e.g. proxy; the proxy then runs on nodes labelled proxy=true)")
    command = get("SWARM_RUNNER") or DEFAULT_RUNNER
    try:
        argv = tuple(shlex.split(command))
    except ValueError as exc:
        raise ConfigError(f"SWARM_RUNNER: cannot split {command!r} ({exc})") from None
    timeout = get("SWARM_ROLLOUT_TIMEOUT") or str(DEFAULT_ROLLOUT_TIMEOUT)
    try:
        rollout_timeout = float(timeout)
    except ValueError:
        rollout_timeout = -1.0
    if rollout_timeout <= 0:
        raise ConfigError(f"SWARM_ROLLOUT_TIMEOUT: {timeout!r} is not a number of seconds "
                          "(more than 0)")
    return SwarmConfig(manager=host, stack=settings.project_name, replicas=int(replicas),
                       db_node=get("SWARM_DB_NODE"), proxy_label=label,
                       runner=argv, rollout_timeout=rollout_timeout,
                       state_dir=f"{settings.deploy_path}/swarm")


def connect(host: Host, settings: Settings):
    """An open Connection to a node that trusts only SSH_KNOWN_HOSTS (deploy/fleet/trust.py)."""
    from deploy.fleet import trust

    conn = trust.connection(host, settings)
    try:
        trust.open_connection(conn, settings)
    except BaseException:
        conn.close()
        raise
    return conn


class Manager:
    """The manager node, over SSH: `run(argv)` there; closed on exit."""

    def __init__(self, settings: Settings, config: SwarmConfig | None = None):
        self.settings = settings
        self.config = config or swarm_config(settings)
        self.conn = None

    def __enter__(self) -> Manager:
        self.conn = connect(self.config.manager, self.settings)
        return self

    def __exit__(self, *exc) -> None:
        if self.conn is not None:
            self.conn.close()

    def run(self, argv, *, check: bool = True, what: str | None = None,
            input: str | None = None):
        from deploy import shell

        return shell.run(self.conn, argv, check=check, input=input,
                         what=what or f"{self.config.manager.name}: {' '.join(argv[:3])}")

    def write_file(self, path: str, text: str) -> None:
        from deploy import shell

        shell.write_file(self.conn, path, text)
