"""Frozen settings read from the environment and an env file (python-dotenv).

The process environment wins over the file. Every validation error names the setting
and where its value came from, so the user knows which line to fix.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote, urlsplit

from deploy.defaults import (
    DRAIN_TIMEOUT,
    HEALTH_TIMEOUT,
    KEEP_RELEASES,
    PROXY_IMAGE,
    STATEMENT_LOCK_BUDGET,
    STATEMENT_LOCK_RETRIES,
    STATEMENT_LOCK_TIMEOUT,
)
from deploy.errors import ConfigError
from deploy.redaction import redact, redact_url
from deploy.services import (
    DEFAULT_APP_PORT,
    DEFAULT_APP_SERVICES,
    DEFAULT_DB_SERVICE,
    DEFAULT_HEALTH_PATH,
    DEFAULT_PROXY_HEALTH_PATH,
    Publish,
    read_roles,
)

HINT = "set it in .env or the environment (see .env.example)"
# The sample stack's database user (deploy/stack/docker-compose.yml): one default for both.
STACK_USER = "app"
DEPLOY_ENVS = ("development", "staging", "production")
# Compose's own file names, in the order `docker compose` looks for them.
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
SAMPLE_COMPOSE = "deploy/stack/docker-compose.yml"
# A table name, optionally schema-qualified; both parts are interpolated as identifiers.
_TABLE_RE = re.compile(r"^(?:[a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$")
_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# An image name without tag: [registry[:port]/]path, Docker's reference grammar.
_IMAGE_RE = re.compile(r"^(?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                       r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


@dataclass(frozen=True)
class Settings:
    # The database URL, or None with the reason in db_error: only the tasks that talk to
    # the database need one (`ps`, `logs`, `build` … must work without it).
    db_url: str | None
    migrations_dir: Path
    migration_table: str
    deploy_env: str
    env_file: Path | None
    compose_file: Path
    project_name: str
    compose_cmd: str | None
    health_timeout: float
    backup_dir: Path
    deploy_hosts: tuple[str, ...]
    deploy_user: str | None
    deploy_path: str
    ssh_key_file: Path | None
    ssh_known_hosts: Path
    keep_releases: int
    hosts_dir: Path
    values: Mapping[str, str]  # the merged raw values, for modules with their own settings
    db_error: ConfigError | None = field(default=None, compare=False, repr=False)
    # The zero-downtime switch (deploy/release/sequence.py).
    drain_timeout: float = DRAIN_TIMEOUT
    backend_image: str = "app-backend"
    proxy_image: str = PROXY_IMAGE
    # How migration statements wait for table locks (deploy/migrate/policy.py).
    migration_lock_timeout: float = STATEMENT_LOCK_TIMEOUT
    migration_lock_retries: int = STATEMENT_LOCK_RETRIES
    migration_lock_budget: float = STATEMENT_LOCK_BUDGET
    migration_statement_timeout: float | None = None
    # The table-name prefix the deploy summary counts and lists ("": no such line).
    summary_table_prefix: str = ""
    # The stack's roles (deploy/services.py): HTTP services behind the proxy, workers, the
    # database service ("" = none: DATABASE_URL names an external database).
    app_services: tuple[str, ...] = DEFAULT_APP_SERVICES
    app_ports: dict[str, int] = field(default_factory=lambda: {"backend": DEFAULT_APP_PORT})
    health_paths: dict[str, str] = field(
        default_factory=lambda: {"backend": DEFAULT_HEALTH_PATH})
    worker_services: tuple[str, ...] = ()
    db_service: str = DEFAULT_DB_SERVICE
    proxy_publish: dict[str, Publish] = field(
        default_factory=lambda: {"backend": Publish("127.0.0.1", DEFAULT_APP_PORT)})
    proxy_health_path: str = DEFAULT_PROXY_HEALTH_PATH
    # On a host: every service the shared settings give a role (deploy/fleet/hosts.py).
    fleet_roles: tuple[str, ...] = ()

    @property
    def database_url(self) -> str:
        """DATABASE_URL, or the one built from POSTGRES_*; ConfigError when neither works."""
        if self.db_url is None:
            raise self.db_error or ConfigError(f"DATABASE_URL: missing; {HINT}")
        return self.db_url

    def with_database_url(self, url: str) -> Settings:
        return replace(self, db_url=url, db_error=None)

    @property
    def password(self) -> str | None:
        return urlsplit(self.database_url).password


class _Source:
    """Looks up a setting and remembers where it came from, for error messages."""

    def __init__(self, environ: Mapping[str, str], file_values: Mapping[str, str | None],
                 env_file: Path | None):
        self.environ = environ
        self.file_values = {k: v for k, v in file_values.items() if v is not None}
        self.env_file = env_file

    def get(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None:
            value = self.file_values.get(name)
        return value if value not in (None, "") else None

    def raw(self, name: str) -> str | None:
        """The value as set, "" included (set to empty); None when not set at all."""
        value = self.environ.get(name)
        return self.file_values.get(name) if value is None else value

    def where(self, name: str) -> str:
        if name in self.environ:
            return "set in the environment"
        if name in self.file_values:
            return f"set in {self.env_file}"
        return HINT

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"{name}: {problem} ({self.where(name)})")

    def merged(self) -> dict[str, str]:
        return {**self.file_values, **{k: v for k, v in self.environ.items()}}


def _read_env_file(environ: Mapping[str, str], env_file: str | os.PathLike | None,
                   cwd: Path) -> tuple[Path | None, dict[str, str | None]]:
    explicit = env_file if env_file is not None else environ.get("ENV_FILE") or None
    path = Path(explicit) if explicit else Path(".env")
    if not path.is_absolute():
        path = cwd / path
    if not path.exists():
        if explicit:
            raise ConfigError(f"ENV_FILE: {explicit} does not exist")
        return None, {}
    if not path.is_file():
        raise ConfigError(f"ENV_FILE: {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"ENV_FILE: {path} is not valid UTF-8 ({exc.reason})") from None
    if not text.strip():
        return path, {}
    return path, parse_env_text(text, path)


def parse_env_text(text: str, path: Path) -> dict[str, str | None]:
    """python-dotenv's values, but a line it cannot parse is an error naming the file and
    line (python-dotenv itself only logs a warning and drops the line)."""
    # python-dotenv is imported here, when there is a file: a container's start-up runner,
    # configured by its environment, never loads it.
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            # Only the key is shown: the rest of the line may be a secret.
            first = (binding.original.string.strip().splitlines() or [""])[0]
            key, eq, _ = first.partition("=")
            what = f"the value of {key.strip()[:60]}" if eq else "no KEY=value"
            raise ConfigError(
                f"{path}:{binding.original.line}: cannot parse this line ({what}); write "
                "KEY=value, quote a value that holds spaces or #, and close every quote")
    return dotenv_values(stream=io.StringIO(text), interpolate=True)


def _database_url(src: _Source, base: Path) -> str:
    url = src.get("DATABASE_URL")
    if url is not None:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a non-numeric port
        except ValueError as exc:
            raise src.error("DATABASE_URL", f"not a valid URL ({redact(str(exc), url)})") from None
        if parts.scheme not in ("postgresql", "postgres"):
            got = parts.scheme + "://" if parts.scheme else "none"
            raise src.error("DATABASE_URL", f"scheme must be postgresql:// (got {got})")
        if not parts.hostname and "host=" not in parts.query:
            raise src.error("DATABASE_URL", f"no host in {redact_url(url)}")
        return url
    names = ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
    if not any(src.get(n) for n in names):
        # Only a checkout of this repository has the script; a project that installed
        # the tool writes its own .env.
        quickstart = "; `bash .ci/quickstart` writes a .env (see .env.example)" \
            if (base / ".ci" / "quickstart").is_file() else ""
        raise ConfigError(
            "DATABASE_URL: missing; set POSTGRES_PASSWORD (and POSTGRES_USER/POSTGRES_DB) or "
            "DATABASE_URL in .env or the environment" + quickstart)
    # The sample stack's database as this machine sees it: published on 127.0.0.1.
    host = src.get("POSTGRES_HOST") or "127.0.0.1"
    port_name = "POSTGRES_PORT" if src.get("POSTGRES_PORT") else "POSTGRES_PUBLISHED_PORT"
    port = src.get(port_name) or "5432"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise src.error(port_name, f"{port!r} is not a port number (1-65535)")
    user = src.get("POSTGRES_USER") or STACK_USER
    db = src.get("POSTGRES_DB") or user
    password = src.get("POSTGRES_PASSWORD")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    host_part = f"[{host}]" if ":" in host else host
    return f"postgresql://{auth}@{host_part}:{port}/{quote(db, safe='')}"


def _positive_float(src: _Source, name: str, default: float) -> float:
    raw = src.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise src.error(name, f"{raw!r} is not a number of seconds") from None
    if not value > 0:
        raise src.error(name, f"must be greater than 0 (got {raw})")
    return value


def _positive_int(src: _Source, name: str, default: int) -> int:
    raw = src.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise src.error(name, f"{raw!r} is not a whole number of at least 1")
    return int(raw)


def _whole_number(src: _Source, name: str, default: int) -> int:
    raw = src.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise src.error(name, f"{raw!r} is not a whole number (0 or more)")
    return int(raw)


def _optional_seconds(src: _Source, name: str) -> float | None:
    """Seconds, or None when unset or 0 (no limit)."""
    raw = src.get(name)
    if raw is None or raw.strip() in ("0", "0.0"):
        return None
    return _positive_float(src, name, 0.0)


def load_settings(environ: Mapping[str, str] | None = None,
                  env_file: str | os.PathLike | None = None,
                  cwd: str | os.PathLike | None = None,
                  read_file: bool = True) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad one."""
    environ = os.environ if environ is None else environ
    base = Path(cwd) if cwd is not None else Path.cwd()
    path, file_values = _read_env_file(environ, env_file, base) if read_file else (None, {})
    src = _Source(environ, file_values, path)

    def resolve(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else base / q

    # Validated in this order: the first bad one is the one reported.
    table, deploy_env, project = _migration_table(src), _deploy_env(src), _project_name(src)
    try:
        db_url, db_error = _database_url(src, base), None
    except ConfigError as exc:
        db_url, db_error = None, exc
    roles = read_roles(src)
    return Settings(
        db_url=db_url,
        migrations_dir=resolve(src.get("MIGRATIONS_DIR") or "migrations"),
        migration_table=table,
        deploy_env=deploy_env,
        env_file=path,
        compose_file=resolve(src.get("COMPOSE_FILE") or _default_compose_file(base)),
        project_name=project,
        compose_cmd=src.get("COMPOSE_CMD"),
        health_timeout=_positive_float(src, "HEALTH_TIMEOUT", HEALTH_TIMEOUT),
        backup_dir=resolve(src.get("BACKUP_DIR") or "backups"),
        deploy_hosts=tuple(h.strip() for h in (src.get("DEPLOY_HOSTS") or "").split(",")
                           if h.strip()),
        deploy_user=src.get("DEPLOY_USER"),
        deploy_path=_deploy_path(src, project),
        ssh_key_file=_existing_file(src, "SSH_KEY_FILE", resolve),
        ssh_known_hosts=resolve(os.path.expanduser(src.get("SSH_KNOWN_HOSTS")
                                                   or "~/.ssh/known_hosts")),
        keep_releases=_positive_int(src, "KEEP_RELEASES", KEEP_RELEASES),
        hosts_dir=resolve(src.get("DEPLOY_HOSTS_DIR") or "deploy/hosts"),
        values=src.merged(),
        db_error=db_error,
        drain_timeout=_positive_float(src, "DRAIN_TIMEOUT", DRAIN_TIMEOUT),
        backend_image=_image(src, "BACKEND_IMAGE", f"{project}-backend", tag=False),
        proxy_image=_image(src, "PROXY_IMAGE", PROXY_IMAGE, tag=True),
        migration_lock_timeout=_positive_float(src, "MIGRATION_LOCK_TIMEOUT",
                                               STATEMENT_LOCK_TIMEOUT),
        migration_lock_retries=_whole_number(src, "MIGRATION_LOCK_RETRIES",
                                             STATEMENT_LOCK_RETRIES),
        migration_lock_budget=_positive_float(src, "MIGRATION_LOCK_BUDGET",
                                              STATEMENT_LOCK_BUDGET),
        migration_statement_timeout=_optional_seconds(src, "MIGRATION_STATEMENT_TIMEOUT"),
        summary_table_prefix=src.get("SUMMARY_TABLE_PREFIX") or "",
        app_services=roles.app_services, app_ports=roles.app_ports,
        health_paths=roles.health_paths, worker_services=roles.worker_services,
        db_service=roles.db_service, proxy_publish=roles.proxy_publish,
        proxy_health_path=roles.proxy_health_path,
    )


def _default_compose_file(base: Path) -> str:
    """Without COMPOSE_FILE: the file `docker compose` itself would pick in the working
    directory, else this repository's sample stack (its path when run from a checkout)."""
    return next((name for name in COMPOSE_FILE_NAMES if (base / name).is_file()), SAMPLE_COMPOSE)


def _matching(src: _Source, name: str, default: str, pattern: re.Pattern, what: str) -> str:
    value = src.get(name) or default
    if not pattern.match(value):
        raise src.error(name, f"{value!r} is not {what}")
    return value


def _migration_table(src: _Source) -> str:
    return _matching(src, "MIGRATION_TABLE", "migration_history", _TABLE_RE,
                     "a valid table name (lower-case letters, digits, _; optionally "
                     "schema.table)")


def _deploy_env(src: _Source) -> str:
    deploy_env = src.get("DEPLOY_ENV") or "development"
    if deploy_env not in DEPLOY_ENVS:
        raise src.error("DEPLOY_ENV", f"{deploy_env!r} is not one of {', '.join(DEPLOY_ENVS)}")
    return deploy_env


def _project_name(src: _Source) -> str:
    return _matching(src, "COMPOSE_PROJECT_NAME", "app", _PROJECT_RE,
                     "a valid Compose project name (lower-case letters, digits, '-' and '_', "
                     "starting with a letter or digit)")


def _image(src: _Source, name: str, default: str, tag: bool) -> str:
    value = src.get(name) or default
    ref, at, digest = value.partition("@")
    path, colon, version = ref.rpartition(":") if tag and ":" in ref.rsplit("/", 1)[-1] \
        else (ref, "", "")
    ok = bool(_IMAGE_RE.match(path)) and (not colon or re.fullmatch(r"[\w][\w.-]{0,127}",
                                                                     version))
    if at and not (tag and re.fullmatch(r"[a-z0-9]+:[0-9a-f]{32,}", digest)):
        ok = False
    if not ok:
        what = "an image name with an optional :tag" if tag else \
            "an image name without a tag (the deploy tags it by release)"
        raise src.error(name, f"{value!r} is not {what}, e.g. "
                              + ("haproxy:2.6" if tag else "registry.example.com/app-backend"))
    return value


def _deploy_path(src: _Source, project: str) -> str:
    value = src.get("DEPLOY_PATH") or f"/srv/{project}"
    if not value.startswith("/") or value.rstrip("/") == "" or "\n" in value:
        raise src.error("DEPLOY_PATH", f"{value!r} must be an absolute path on the host, "
                                       "not /")
    return value.rstrip("/")


def _existing_file(src: _Source, name: str, resolve) -> Path | None:
    value = src.get(name)
    if value is None:
        return None
    path = resolve(os.path.expanduser(value))
    if not path.is_file():
        raise src.error(name, f"{path} does not exist")
    return path
