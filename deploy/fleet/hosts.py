"""Fabric: hosts, host-key trust, per-host settings, the DB tunnel and the host lock.

Local or remote is decided by which context arrives (docs/design.md): tasks pass `c` on; this
module only knows how to reach a host safely. Releases live in deploy/fleet/releases.py.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from deploy.errors import ConfigError, DeployError, DeployTimeout
from deploy.output import emit
from deploy.settings import Settings, load_settings, parse_env_text
from deploy.shell import is_remote


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
        return load_settings(environ=values, read_file=False)
    except ConfigError as exc:
        raise ConfigError(f"{exc} [host {host}, overlay {path}]") from None


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


# --- trust ---------------------------------------------------------------------------


def fingerprint(key) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _reject_policy():
    import paramiko

    class RejectUnknownHosts(paramiko.RejectPolicy):
        """RejectPolicy that keeps the offered key, so the refusal can show its fingerprint."""

        def missing_host_key(self, client, hostname, key):
            raise UnknownHostKey(hostname, key)

    return RejectUnknownHosts()


class UnknownHostKey(Exception):
    def __init__(self, hostname: str, key):
        super().__init__(f"Server {hostname!r} not found in known_hosts")
        self.hostname = hostname
        self.key = key


def secure(c, settings: Settings) -> None:
    """Refuse unknown or changed host keys; Fabric's own default would auto-add them."""
    known = settings.ssh_known_hosts
    if not known.is_file():
        raise ConfigError(f"SSH_KNOWN_HOSTS: {known} does not exist; write the hosts' keys "
                          "there (ssh-keyscan, or the DEPLOY_KNOWN_HOSTS secret in CI)")
    c.client.set_missing_host_key_policy(_reject_policy())
    c.client.load_host_keys(str(known))
    if settings.ssh_key_file and not c.connect_kwargs.get("key_filename"):
        c.connect_kwargs["key_filename"] = [str(settings.ssh_key_file)]
    c.connect_kwargs.setdefault("look_for_keys", settings.ssh_key_file is None)


def open_connection(c, settings: Settings) -> None:
    """Open the SSH connection, turning each failure into a message that says what to do."""
    import paramiko

    where = f"{c.user}@{c.host}:{c.port}"
    try:
        c.open()
    except UnknownHostKey as exc:
        raise ConfigError(
            f"{c.host}: host key not in SSH_KNOWN_HOSTS ({settings.ssh_known_hosts}); the "
            f"server offers {exc.key.get_name()} {fingerprint(exc.key)}. Refusing to connect: "
            f"verify that fingerprint out of band, then add the key "
            f"(ssh-keyscan -p {c.port} {c.host} >> {settings.ssh_known_hosts})") from None
    except paramiko.BadHostKeyException as exc:
        raise ConfigError(
            f"{c.host}: host key CHANGED: the server offers {exc.key.get_name()} "
            f"{fingerprint(exc.key)} but SSH_KNOWN_HOSTS has {fingerprint(exc.expected_key)}. "
            "Refusing to connect (a reinstalled host, or someone in the middle)") from None
    except paramiko.AuthenticationException as exc:
        raise ConfigError(f"{where}: SSH authentication failed ({exc}); check DEPLOY_USER and "
                          "SSH_KEY_FILE") from None
    except (OSError, paramiko.SSHException) as exc:
        raise DeployError(f"{where}: cannot connect: {exc}") from None


def connection(host: Host, settings: Settings):
    from fabric import Config, Connection

    c = Connection(host.name, user=host.user or settings.deploy_user, port=host.port,
                   connect_timeout=15, config=Config(overrides={"run": {"in_stream": False}}))
    secure(c, settings)
    return c


# --- the database through a tunnel ----------------------------------------------------


@contextmanager
def database_url(c, settings: Settings) -> Iterator[str]:
    """DATABASE_URL as seen from here: as is locally; through an SSH tunnel to the host's
    loopback-published port remotely (DATABASE_URL then describes the database as the
    host sees it). The tunnel listens before its URL is handed out (deploy/fleet/tunnel.py)."""
    if not is_remote(c):
        yield settings.database_url
        return
    from deploy.fleet.tunnel import forward_local

    parts = urlsplit(settings.database_url)
    remote_port = parts.port or 5432
    if not settings.values.get("DATABASE_URL"):
        # Built from POSTGRES_*: the stack publishes PostgreSQL on this loopback port.
        published = settings.values.get("POSTGRES_PUBLISHED_PORT") or "5432"
        if not published.isdigit() or not 1 <= int(published) <= 65535:
            raise ConfigError(f"POSTGRES_PUBLISHED_PORT: {published!r} is not a port number "
                              f"(1-65535) [host {c.host}]")
        remote_port = int(published)
    if not c.is_connected:
        open_connection(c, settings)
    auth = parts.netloc.rpartition("@")[0]
    remote_host = parts.hostname or "127.0.0.1"
    with forward_local(c.client.get_transport(), remote_host, remote_port) as forward:
        yield urlunsplit(parts._replace(
            netloc=(auth + "@" if auth else "") + f"127.0.0.1:{forward.port}"))


# --- the host lock ------------------------------------------------------------------------

# $1 DEPLOY_PATH, $2 lock file, $3 seconds to wait (whole), $4 holder JSON, $5 holder file,
# $6 seconds between progress reports. Prints WAITING <holder> when it starts waiting and
# every $6 s, then LOCKED (and holds the lock until our channel closes) or BUSY <holder>.
_LOCK_SCRIPT = (
    'mkdir -p "$1/releases" && exec 9>>"$2" || exit 1\n'
    'if ! flock -n 9; then\n'
    '  end=$(( $(date +%s) + $3 ))\n'
    '  while :; do\n'
    '    left=$(( end - $(date +%s) ))\n'
    '    if [ "$left" -le 0 ]; then printf "BUSY "; cat "$5" 2>/dev/null; echo; exit 4; fi\n'
    '    printf "WAITING "; cat "$5" 2>/dev/null; echo\n'
    '    [ "$left" -le "$6" ] || left=$6\n'
    '    flock -w "$left" 9 && break\n'
    '  done\n'
    'fi\n'
    'printf "%s\\n" "$4" > "$5"; echo LOCKED; cat >/dev/null; : > "$5"'
)


@contextmanager
def host_lock(c, settings: Settings, *, wait: float, release: str,
              out: Callable[[str], None] = print) -> Iterator[None]:
    """flock on DEPLOY_PATH/.deploy.lock, held by a remote shell blocked on `cat` for as
    long as we keep its channel open: if this process dies, the channel closes and the
    lock goes with it. The holder (who, pid, release, since) is written beside it, and a
    waiting deploy says who holds it, at the start and every few seconds.

    The one command not sent through shell.run: it needs a channel kept open.
    """
    import math

    from deploy.release.locks import PROGRESS_EVERY, describe_holder, holder_record

    root = settings.deploy_path
    argv = ["sh", "-c", _LOCK_SCRIPT, "sh", root, f"{root}/.deploy.lock",
            str(math.ceil(wait)), holder_record(release), f"{root}/.deploy.lock.holder",
            str(int(PROGRESS_EVERY))]
    channel = c.client.get_transport().open_session()
    channel.exec_command(shlex.join(argv))
    reader = channel.makefile("rb")
    started = time.monotonic()
    while True:
        raw = reader.readline()
        line = raw.decode(errors="replace").strip()
        if raw and not line:
            continue  # the holder file's own newline
        word, _, rest = line.partition(" ")
        if word != "WAITING":
            break
        out(f"{c.host}: waiting for the deploy lock held by {describe_holder(rest)} "
            f"({time.monotonic() - started:.0f} s of {wait:g} s)")
    if word != "LOCKED":
        rest = (rest + " " + reader.read().decode(errors="replace")).strip()
        channel.close()
        if word == "BUSY":
            raise DeployTimeout(f"{c.host}: another deploy holds {root}/.deploy.lock "
                                f"(holder: {describe_holder(rest)}); waited {wait:g}s "
                                "(--lock-wait)")
        raise DeployError(f"{c.host}: cannot take the deploy lock in {root}: {line} {rest}")
    try:
        yield
    finally:
        channel.shutdown_write()
        channel.close()


# --- many hosts --------------------------------------------------------------

@dataclass
class HostsReport:
    done: list[str]
    failed: list[tuple[str, DeployError]]
    untouched: list[str]

    def summary(self, done: str = "done") -> str:
        def names(items):
            return ", ".join(items) or "none"

        failed = "; ".join(f"{h} (exit {e.exit_code}: {str(e).splitlines()[0]})"
                           for h, e in self.failed)
        return (f"hosts: {done}: {names(self.done)}; failed: {failed or 'none'}; "
                f"untouched: {names(self.untouched)}")


def on_hosts(hosts: list[Host], job: Callable[[Host], None], *, parallel: int = 1) -> HostsReport:
    """Rolling (one at a time, stop at the first failure) or at most `parallel` at once;
    after a failure no further host is started."""
    from concurrent.futures import ThreadPoolExecutor

    if parallel < 1:
        raise ConfigError(f"--parallel: must be at least 1 (got {parallel})")
    stop = threading.Event()
    outcome: dict[str, DeployError | None] = {}

    def attempt(host: Host) -> None:
        if stop.is_set():
            return
        try:
            job(host)
            outcome[host.name] = None
        except DeployError as exc:
            outcome[host.name] = exc
            stop.set()
        except Exception as exc:  # a bug or a library error must not hide the summary
            outcome[host.name] = DeployError(f"{host}: {type(exc).__name__}: {exc}")
            stop.set()

    with ThreadPoolExecutor(max_workers=min(parallel, len(hosts))) as pool:
        list(pool.map(attempt, hosts))
    return HostsReport(
        done=[h.name for h in hosts if h.name in outcome and outcome[h.name] is None],
        failed=[(h.name, outcome[h.name]) for h in hosts if outcome.get(h.name) is not None],
        untouched=[h.name for h in hosts if h.name not in outcome],
    )


def run_on_hosts(action: str, hosts: list[Host], job: Callable[[Host], None], parallel: int,
                 *, mode: str | None = None, done: str = "done",
                 failed_note: str | None = None) -> None:
    """on_hosts with its plan and summary printed; the first failure raised, with its exit
    code (e.g. 4 for a lock) and the summary."""
    if mode is None:
        mode = "rolling, one host at a time" if parallel == 1 else f"at most {parallel} at once"
    emit(f"{action}: {', '.join(h.name for h in hosts)} ({mode})")
    report = on_hosts(hosts, job, parallel=parallel)
    summary = report.summary(done)
    emit(summary)
    if report.failed:
        host, first = report.failed[0]
        note = f"\n{action}: {failed_note}" if failed_note else ""
        error = DeployError(f"{action} failed on {host}: {first}\n{summary}{note}")
        error.exit_code = first.exit_code  # the first failure's meaning, e.g. 4 for a lock
        raise error
