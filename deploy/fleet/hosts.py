"""Hosts as the user names them, each host's settings, and where its releases live.

`--hosts`/`DEPLOY_HOSTS` entries become `Host`s; deploy/hosts/<host>.env overlays the shared
settings for one host; a release's compose file, env file and backups are found under
DEPLOY_PATH. Reaching a host safely is deploy/fleet/trust.py; its lock, hostlock.py; many
hosts at once, fanout.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from deploy.errors import ConfigError
from deploy.settings import Settings, load_settings, parse_env_text


@dataclass(frozen=True)
class Host:
    name: str  # what the user wrote, minus user@ and :port; names deploy/hosts/<name>.env
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        return self.name


def parse_hosts(value: str | tuple[str, ...] | list[str], setting: str = "--hosts") -> list[Host]:
    """'web1,deploy@web2:2222,[::1]:22' → Hosts; a bad entry names the setting."""
    items = value.split(",") if isinstance(value, str) else list(value)
    hosts = []
    for raw in (i.strip() for i in items):
        if not raw:
            continue
        user, _, rest = raw.rpartition("@")
        port = None
        if rest.startswith("["):
            name, _, tail = rest[1:].partition("]")
            if tail.startswith(":"):
                port = tail[1:]
        elif rest.count(":") == 1:
            name, port = rest.split(":")
        else:
            name = rest
        if port is not None and (not port.isdigit() or not 1 <= int(port) <= 65535):
            raise ConfigError(f"{setting}: {raw!r} has a bad port {port!r}")
        if not name or any(ch in name for ch in " /\\'\"$;`"):
            raise ConfigError(f"{setting}: {raw!r} is not a host name")
        hosts.append(Host(name, user or None, int(port) if port else None))
    if not hosts:
        raise ConfigError(f"{setting}: no hosts given (e.g. web1,web2 or deploy@web1:2222)")
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ConfigError(f"{setting}: a host is listed twice in {value!r}")
    return hosts


def host_settings(settings: Settings, host: str) -> Settings:
    """The shared settings overlaid with deploy/hosts/<host>.env (like Ansible host_vars)."""
    path = settings.hosts_dir / f"{host}.env"
    values = dict(settings.values)
    if path.is_file():
        try:
            overlay = parse_env_text(path.read_text(encoding="utf-8"), path)
        except UnicodeDecodeError:
            raise ConfigError(f"DEPLOY_HOSTS_DIR: {path} is not valid UTF-8") from None
        values.update({k: v for k, v in overlay.items() if v is not None})
    values.pop("ENV_FILE", None)
    try:
        own = load_settings(environ=values, read_file=False)
    except ConfigError as exc:
        raise ConfigError(f"{exc} [host {host}, overlay {path}]") from None
    # The roles of the whole fleet: a service one of them names and this host's overlay
    # took away (a web host's database, a database host's app) is not started here.
    return replace(own, fleet_roles=(*settings.app_services, *settings.worker_services,
                                     *((settings.db_service,) if settings.db_service else ())))


def release_paths(settings: Settings, release: str) -> Settings:
    """Settings whose compose file, env file and backups are the host's, in a release."""
    root = PurePosixPath(settings.deploy_path)
    rel_dir = root / "releases" / release if release != "current" else root / "current"
    compose_rel = relative_compose(settings)
    return replace(settings, compose_file=rel_dir / compose_rel, env_file=rel_dir / ".env",
                   backup_dir=root / "backups")


def relative_compose(settings: Settings) -> PurePosixPath:
    try:
        path = Path(settings.compose_file).resolve()
        return PurePosixPath(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        raise ConfigError(f"COMPOSE_FILE: {settings.compose_file} must be inside the project "
                          f"({Path.cwd()}) to be shipped to hosts") from None
