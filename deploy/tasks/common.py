"""What every task shares: the task decorator, settings for where `c` points, the hosts a
task works on, flag parsing, DeployError → Exit.

Fabric, Paramiko, psycopg and pglast are imported only inside the functions that use them
(deploy/fleet/trust.py, the migration runner): they cost more to import than everything
else the tasks load, and `invoke --list` or a local task needs none of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import contextmanager

import invoke
from invoke import Exit

from deploy import cli
from deploy.commands import haproxy
from deploy.errors import ConfigError, DeployError
from deploy.fleet import trust, tunnel
from deploy.fleet.hosts import Host, host_settings, parse_hosts, release_paths
from deploy.machine.stack import Stack
from deploy.output import Output
from deploy.services import host_services
from deploy.settings import Settings, load_settings
from deploy.shell import is_remote

# What `--hosts` says for "this machine", e.g. to run here although DEPLOY_HOSTS is set.
LOCAL = "local"


def task(*args, **kwargs):
    """`invoke.task` without automatic short flags.

    Invoke derives a short flag from each flag's first free letter, so which letter means
    what depends on the order of the other flags (`logs -i` was --since, `reset -y` took a
    name while `redo-migration -y` was yes/no). Invoke has no per-flag short option, only
    that automatic one, so no task flag has a short form: every flag is spelled out (and
    none can clash with `-H`, Invoke's --hide and Fabric's --hosts).
    """
    kwargs.setdefault("auto_shortflags", False)
    return invoke.task(*args, **kwargs)


def exits(fn):
    """Convert the project's errors into invoke.Exit(message, code) in one place; SIGTERM
    and Ctrl-C end the task with one line and 143/130 (deploy/cli.py)."""

    name = fn.__name__.replace("_", "-")

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        with cli.terminate_unwinds():
            try:
                return fn(c, *args, **kwargs)
            except DeployError as exc:
                raise Exit(str(exc), code=exc.exit_code) from None
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (cli.Terminated)
                message, code = cli.interrupted_exit(name, exc)
                raise Exit(message, code=code) from None

    return wrapper


def settings_for(c) -> Settings:
    """The settings for where `c` points: local, or on a host (fab -H, --hosts) the host's
    overlay (deploy/hosts/<host>.env) with its host key checked before anything is sent."""
    settings = load_settings()
    if not is_remote(c):
        return settings
    settings = host_settings(settings, c.host)
    trust.secure(c, settings)
    trust.open_connection(c, settings)
    return settings


def host_list(hosts: str | None, settings: Settings) -> list[Host]:
    """The hosts a task works on: --hosts, else DEPLOY_HOSTS. An empty list means this
    machine: neither is set, or `--hosts local` (or an empty `--hosts=`) says so."""
    if hosts is None:
        if not settings.deploy_hosts:
            return []
        return parse_hosts(list(settings.deploy_hosts), "DEPLOY_HOSTS")
    if hosts.strip() in ("", LOCAL):
        return []
    return parse_hosts(hosts)


def not_under_fab(c, hosts: str | None) -> None:
    """Under `fab -H` the host is Fabric's: a --hosts as well would be a second list."""
    if is_remote(c) and hosts is not None:
        raise ConfigError(f"--hosts: fab -H already gives the host ({c.host}); use one or "
                          "the other")


def each_target(c, hosts: str | None, fn: Callable[[object, str], None]) -> None:
    """`fn(context, prefix)` where the task runs: on the host `fab -H` gave (Fabric calls
    the task once per host); on each host of --hosts or DEPLOY_HOSTS in turn, stopping at
    the first failure, each line prefixed `[host] `; or here."""
    not_under_fab(c, hosts)
    if is_remote(c):
        fn(c, "")
        return
    shared = load_settings()
    targets = host_list(hosts, shared)
    if not targets:
        fn(c, "")
        return
    for host in targets:
        conn = trust.connection(host, host_settings(shared, host.name))
        try:
            fn(conn, f"[{host.name}] ")
        finally:
            conn.close()


@contextmanager
def database(c, settings: Settings):
    """Settings whose DATABASE_URL reaches the database from here (a tunnel on a host)."""
    with tunnel.database_url(c, settings) as url:
        yield settings.with_database_url(url)


def seconds(flag: str, value, default: float) -> float:
    """Parse a number-of-seconds flag; Invoke's own float parsing dies with a traceback."""
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{flag}: {value!r} is not a number of seconds") from None
    if number < 0:
        raise ConfigError(f"{flag}: must be 0 or more seconds (got {value})")
    return number


def print_lines(lines, prefix: str = "") -> None:
    for line in lines:
        print(prefix + line, flush=True)


def stack_for(c) -> Stack:
    """The stack where `c` points: the local one, or the host's live release."""
    settings = settings_for(c)
    if is_remote(c):
        return Stack(c, release_paths(settings, "current"), Output(prefix=f"[{c.host}] "))
    return Stack(c, settings)


def host_runs(c, stack: Stack) -> tuple[str, ...] | None:
    """The services the host `c` points at runs, its role (deploy/services.host_services:
    its overlay over the shared settings); None here, where every service runs."""
    if not is_remote(c):
        return None
    # The tool's proxy is in its override, not in the project's file: named here.
    return host_services((*stack.project.services, haproxy.SERVICE), load_settings(),
                         stack.settings, haproxy.SERVICE)


def services_list(value) -> list[str]:
    # Invoke has no variadic positionals: several services are given comma-separated.
    return [s for s in (value or "").split(",") if s]


def count(flag: str, value, default: int | None) -> int | None:
    """Parse a whole-number flag (--context, --parallel) with a message, not a traceback."""
    if value is None:
        return default
    text = str(value)
    if not text.isdigit():
        raise ConfigError(f"{flag}: expected a whole number, got {text!r}")
    return int(text)


TARGET_HELP = "compose (this machine or hosts) or swarm (SWARM_MANAGER); default DEPLOY_TARGET"


def on_swarm(c, target: str | None, hosts: str | None = None) -> Settings | None:
    """The settings when the task works on the Swarm (--target swarm, else DEPLOY_TARGET=
    swarm); None for this machine or hosts. A bad target is exit 2 naming it."""
    from deploy.swarm.target import SWARM
    from deploy.swarm.target import target as resolve

    settings = load_settings()
    if resolve(target, settings) != SWARM:
        return None
    if is_remote(c):
        raise ConfigError("--target swarm: not under fab -H; the Swarm is reached through "
                          "SWARM_MANAGER (run invoke)")
    if hosts is not None:
        raise ConfigError("--hosts: not with the swarm target, which is reached through "
                          "SWARM_MANAGER (use --target compose for hosts)")
    return settings
