"""Databases that several hosts share: migrated once per deploy, from here; and the
database host's part in a deploy.

A host's role is its overlay (deploy/hosts/<host>.env): a web host empties DB_SERVICE and
uses the database its DATABASE_URL names; a database host empties APP_SERVICES and
WORKER_SERVICES and runs the database service. Hosts of either kind whose DATABASE_URL
names the same server, port and database share that database: it is migrated once, before
any host starts its new release, from this machine: directly when the database answers
here, else through an SSH tunnel via a database host, else via the first of its hosts. A
host that runs both app services and its own database service (each host a whole stack)
migrates its own database in its prepare step, as before.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from deploy.commands import compose, haproxy
from deploy.defaults import DATABASE_WAIT
from deploy.errors import ConfigError
from deploy.fleet import hosts as remote
from deploy.fleet import releases, trust, tunnel
from deploy.fleet.hosts import Host
from deploy.machine.containers import say_if_recreated
from deploy.machine.stack import Stack
from deploy.migrate.runner import migrate
from deploy.output import Output
from deploy.redaction import redact_url
from deploy.services import host_services
from deploy.settings import Settings

# How long this machine tries to open a TCP connection to a shared database before it
# goes through a host instead (a database on a private network answers nothing here).
DIRECT_TIMEOUT = 2.0


@dataclass(frozen=True)
class SharedDatabase:
    """One database several deploy targets use, and how to reach it from here."""

    key: tuple[str, int, str]  # server, port, database name, as DATABASE_URL names them
    hosts: tuple[str, ...]  # the targets that use it, in deploy order
    via: tuple[str, ...]  # hosts to tunnel through if this machine cannot reach it:
    #                       its database hosts first, then the others

    def __str__(self) -> str:
        server, port, name = self.key
        return f"database {name!r} on {server}:{port}"


def migrates_itself(settings: Settings) -> bool:
    """A host with app services and its own database service: its database is its own."""
    return bool(settings.db_service and settings.app_services)


def database_key(settings: Settings) -> tuple[str, int, str]:
    """Server, port and database name of the host's DATABASE_URL (ConfigError without one)."""
    parts = urlsplit(settings.database_url)
    name = unquote(parts.path.lstrip("/")) or unquote(parts.username or "")
    return ((parts.hostname or "").lower(), parts.port or 5432, name)


def shared_databases(targets: Sequence[str], per_host: dict[str, Settings],
                     others: dict[str, Settings] | None = None) -> list[SharedDatabase]:
    """The databases the targets share, each with its hosts; pure. ``others``: hosts not
    deployed to (DEPLOY_HOSTS) that may serve as a tunnel's way in: database hosts only."""
    groups: dict[tuple[str, int, str], list[str]] = {}
    for name in targets:
        settings = per_host[name]
        if not migrates_itself(settings):
            try:
                groups.setdefault(database_key(settings), []).append(name)
            except ConfigError as exc:
                raise ConfigError(f"{exc} [host {name}]") from None
    found = []
    for key, names in groups.items():
        extra = [n for n, s in (others or {}).items() if n not in names and s.db_service
                 and not s.app_services and _key_or_none(s) == key]
        db_hosts = [n for n in names if per_host[n].db_service] + extra
        found.append(SharedDatabase(key, tuple(names),
                                    tuple(dict.fromkeys([*db_hosts, *names]))))
    return found


def _key_or_none(settings: Settings) -> tuple[str, int, str] | None:
    try:
        return database_key(settings)
    except ConfigError:
        return None


def answers_here(url: str, timeout: float = DIRECT_TIMEOUT) -> bool:
    """Does the database's server accept a TCP connection from this machine?"""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432),
                                      timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def reach(db: SharedDatabase, settings: dict[str, Settings], hosts: dict[str, Host],
          answers: Callable[[str], bool] = answers_here) -> Iterator[tuple[Settings, str]]:
    """(settings whose DATABASE_URL reaches ``db`` from here, how it is reached): directly,
    or through an SSH tunnel via the first host of ``db.via`` (the URL as that host sees
    it). ``settings`` and ``hosts``: every host of ``db.via``, by name."""
    first = settings[db.hosts[0]]
    if answers(first.database_url):
        yield first, "directly from here"
        return
    via = db.via[0]
    conn = trust.connection(hosts[via], settings[via])
    try:
        with tunnel.database_url(conn, settings[via]) as url:
            yield settings[via].with_database_url(url), f"through an SSH tunnel via {via}"
    finally:
        conn.close()


def migrate_once(db: SharedDatabase, settings: dict[str, Settings], hosts: dict[str, Host],
                 out: Output, answers: Callable[[str], bool] = answers_here):
    """The runner (its lock, its lock-timeout policy) on ``db``, once for all its hosts;
    one line says which database and how it was reached. Returns the runner's result."""
    with reach(db, settings, hosts, answers) as (reachable, how):
        shown = redact_url(settings[db.hosts[0]].database_url)
        out(f"migrate: once for {', '.join(db.hosts)}: {shown}, {how}")
        return out.step(f"migrate {db} (every host still serves its release)", migrate,
                        reachable, wait=DATABASE_WAIT, out=out)


def database_host_up(state: releases.Staged, shared: Settings, out: Output) -> None:
    """A database host among a deploy's targets (its overlay empties APP_SERVICES): the
    services it runs (deploy/services.host_services) up from the staged release with
    `--no-deps`, each left alone by Compose unless its definition or image changed (said
    first); then `current` moves to the release. Nothing is switched: it serves no app."""
    c, settings = state.c, state.settings
    stack = Stack(c, remote.release_paths(settings, state.release), out)
    runs = host_services(tuple(stack.project.services), shared, settings, haproxy.SERVICE)
    say_if_recreated(stack, stack.states())
    out.step(f"up {', '.join(runs)} (a database host: no app, no switch)", stack.run,
             compose.up(stack.compose, runs, build=False, no_deps=True), hide=False, what="up")
    out.step(f"wait-healthy ({', '.join(runs)})", stack.wait_healthy, settings.health_timeout,
             runs)
    releases.switch_current(c, settings, state.release)
    state.switched = True
    releases.prune(c, settings, settings.keep_releases, out,
                   releases.HostReleases(sorted({*state.before.names, state.release}),
                                         state.release))
    out(f"deploy: {c.host} is a database host: {', '.join(runs)} up, {state.release} current")
