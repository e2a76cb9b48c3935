"""One remote deploy run: the release's images are made here once and shipped to each host.

    revision: a commit (or --allow-dirty) → build here, once (--no-build: they must exist
    here already) → the registry, opened once → publish, once → every host at once
    (deploy/fleet/releases.py): lock → upload → ship → prepare (the new release running beside
    the old, no traffic) → then host by host: the switch → current → prune

A host never builds. Each needs these images, named as its settings name them:

    backend    <image>:<release tag>         each app and worker service's, built here from
                                             this tree (deploy.release label); <image> as
                                             deploy/machine/builds.py names it (the sample:
                                             BACKEND_IMAGE)
    proxy      <project>-proxy:live          built here: the rendered haproxy.cfg + PROXY_IMAGE
    postgres   POSTGRES_IMAGE                the base image, as it is here (pulled here if
                                             missing: a host may have no registry access)

Per-host overlays (deploy/hosts/<host>.env) may name them differently: the backend is
built once, under the shared settings' name, and the other names are tags of that very
image (one ID everywhere); the proxy is built once per distinct source (its files and
PROXY_IMAGE). deploy/fleet/shipping.py checks on every host that each name has the ID it has
here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass

from deploy import shell
from deploy.commands import docker
from deploy.defaults import DEPLOY_LOCK_WAIT
from deploy.errors import ConfigError
from deploy.fleet import databases, fanout, registry, releases, trust
from deploy.fleet.imagenames import image_names
from deploy.machine import builds
from deploy.machine.stack import Stack
from deploy.output import Output, as_output
from deploy.release import revision
from deploy.settings import Settings


@dataclass(frozen=True)
class HostImages:
    """The images one host's stack runs, by the names its Compose file uses."""

    backend: str  # the first app or worker service's image ("" on a database host)
    proxy: str  # "" without app services
    postgres: str
    others: tuple[str, ...] = ()  # the other app and worker services' images, if any

    @property
    def apps(self) -> list[str]:
        return [r for r in (self.backend, *self.others) if r]

    @property
    def refs(self) -> list[str]:
        return [*self.apps, self.postgres, *([self.proxy] if self.proxy else [])]


def _normal(ref: str, setting: str) -> str:
    try:
        return str(docker.parse_ref(ref, setting))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def host_images(settings: Settings, tag: str, names: tuple[str, ...] | None = None
                ) -> HostImages:
    """``names``: the image names of the host's app and worker services (without a tag),
    as its compose file resolves them; None: the sample's, BACKEND_IMAGE."""
    names = (settings.backend_image,) if names is None else names
    refs = [_normal(f"{n}:{tag}", "BACKEND_IMAGE") for n in names]
    return HostImages(
        backend=refs[0] if refs else "",
        proxy=(_normal(builds.proxy_image(settings), "COMPOSE_PROJECT_NAME")
               if settings.app_services else ""),
        postgres=_normal(builds.postgres_image(settings), "POSTGRES_IMAGE"),
        others=tuple(refs[1:]))


def no_build_message(ref: str, rev: revision.Revision) -> str:
    return (f"--no-build: there is no image {ref} here, the backend image of {rev.tag}; "
            "build it here first with `invoke deploy` (it also checks that the stack comes "
            "up healthy with it), or deploy without --no-build")


def no_proxy_message(ref: str, settings: Settings, stale: bool) -> str:
    what = ("was built from another haproxy.cfg or PROXY_IMAGE than this tree's" if stale
            else "is not here")
    return (f"--no-build: the proxy image {ref} {what} (its haproxy.cfg is rendered from "
            f"the role settings, PROXY_IMAGE={settings.proxy_image}); build it here first "
            "with `invoke deploy`, or deploy without --no-build")


class Rollout:
    """The images of one release for any number of hosts: made here once, published once.

    ``prepare(hosts)`` builds or checks every image those hosts need; ``images_for(host)``
    publishes what is not published yet (opening the registry the first time) and returns
    the host's images with their IDs, for shipping.ship. ``close()`` removes the local
    registry. Safe to share between threads (parallel hosts).
    """

    def __init__(self, local, shared: Settings, *, build: bool, allow_dirty: bool = False,
                 lock_wait: float = DEPLOY_LOCK_WAIT,
                 out: Output | Callable[[str], object] | None = None,
                 rev: revision.Revision | None = None):
        self.local = local
        self.shared = shared
        self.build = build
        self.lock_wait = lock_wait
        self.out = out = as_output(out)
        self.rev = rev or revision.revision()
        revision.require_committed(self.rev, allow_dirty)
        if not self.rev.committed:
            out(f"deploy: {revision.ALLOW_FLAG}: shipping this tree as {self.rev.tag}, not a "
                f"commit ({len(self.rev.changed)} file(s) differ from "
                f"{self.rev.sha or 'any commit'})")
        self.tag = self.rev.tag
        self.registry: registry.Registry | None = None
        self._built: list[str] | None = None  # the shared settings' images of the release
        self._ready: set[str] = set()  # names made or checked here
        self._proxies: dict[str, str] = {}  # proxy source -> the image name made for it
        self._published: dict[str, registry.Published] = {}
        self._lock = threading.RLock()
        self._exit = ExitStack()

    # --- images here ------------------------------------------------------------------

    def prepare(self, hosts: Iterable[Settings]) -> None:
        with self._lock:
            for settings in hosts:
                self._make(settings)

    def _names_for(self, settings: Settings) -> tuple[str, ...]:
        return image_names(settings, self.local)

    def _make(self, settings: Settings) -> HostImages:
        wanted = host_images(settings, self.tag, self._names_for(settings))
        built = self._primary_images() if wanted.apps else []
        for i, ref in enumerate(wanted.apps):
            if ref not in self._ready:
                primary = built[min(i, len(built) - 1)]
                if ref != primary:  # another name for the same service: the same image
                    self._run(docker.tag(primary, ref), "tag")
                self._ready.add(ref)
        if wanted.proxy and wanted.proxy not in self._ready:
            self._make_proxy(settings, wanted.proxy)
        if wanted.postgres not in self._ready:
            self._ensure_base(wanted.postgres)
        return wanted

    def _primary_images(self) -> list[str]:
        """The shared settings' app and worker images of this release, built (or found)
        once, in service order."""
        if self._built is None:
            stack = Stack(self.local, self.shared, self.out)
            stack.check_roles()  # a service the file lacks, an app with no build: exit 2
            refs = host_images(self.shared, self.tag, self._names_for(self.shared)).apps
            shown = ", ".join(refs)
            if self.build:
                self.out.step(f"build {shown} here (once, for every host)",
                              builds.build_release, stack, self.tag, True)
            else:
                missing = [r for r in refs if builds.image_id(self.local, r) is None]
                if missing:
                    raise ConfigError(no_build_message(missing[0], self.rev))
                self.out(f"   --no-build: shipping {shown}, built here before")
            self._built = refs
            self._ready.update(refs)
        return self._built

    def _make_proxy(self, settings: Settings, ref: str) -> None:
        source = builds.proxy_source(settings)
        made = self._proxies.get(source)
        if made is not None:
            if made != ref:
                self._run(docker.tag(made, ref), "tag")
        elif self.build:
            self.out.step(f"build {ref} here", builds.build_proxy,
                          Stack(self.local, settings, self.out))
        else:
            found = self._run(docker.image_label(ref, docker.PROXY_SOURCE_LABEL), "inspect",
                              check=False)
            if found.exited != 0:
                raise ConfigError(no_proxy_message(ref, settings, stale=False))
            if found.stdout.strip() != source:
                raise ConfigError(no_proxy_message(ref, settings, stale=True))
        self._proxies.setdefault(source, ref)
        self._ready.add(ref)

    def _ensure_base(self, ref: str) -> None:
        """A base image hosts get from here: pulled here when this machine lacks it."""
        if builds.image_id(self.local, ref) is None:
            self.out(f"   {ref} is not here: pulling it here, to ship it to the hosts")
            pulled = self._run(docker.pull(ref), "pull", check=False)
            if pulled.exited != 0:
                raise ConfigError(
                    f"POSTGRES_IMAGE: {ref} is neither on this machine nor pullable here ("
                    f"{docker.error_line(pulled.stderr or '', pulled.exited)}); the hosts get "
                    "it from here: pull or load it here first")
        self._ready.add(ref)

    def _run(self, argv: list[str], what: str, check: bool = True):
        return shell.run(self.local, argv, what=what, check=check)

    # --- publishing -------------------------------------------------------------------

    def images_for(self, settings: Settings) -> list[registry.Published]:
        """The host's images, published (each once per run), with their IDs here."""
        with self._lock:
            wanted = self._make(settings)
            missing = [r for r in wanted.refs if r not in self._published]
            if missing:
                if self.registry is None:
                    self.registry = self._exit.enter_context(registry.open_registry(
                        self.local, self.shared, out=self.out, lock_wait=self.lock_wait))
                for published in registry.publish(self.local, self.registry, missing,
                                                  out=self.out):
                    self._published[published.ref] = published
            return [self._published[r] for r in wanted.refs]

    def close(self) -> None:
        self._exit.close()

    def __enter__(self) -> Rollout:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Hosts staged at the same time (lock, upload, ship: nothing they serve changes); the
# switches that follow roll, `parallel` at a time.
STAGE_AT_ONCE = 8


def stage_then_switch(targets, per_host: dict[str, Settings], rollout: Rollout, *,
                      parallel: int = 1, lock_wait: float = DEPLOY_LOCK_WAIT,
                      out: Output | None = None, others: dict[str, tuple] | None = None
                      ) -> None:
    """`invoke deploy --hosts`: every host gets the release (its directory and images,
    under its deploy lock) and runs it, healthy, beside the old one, taking no traffic,
    before any host switches (releases.staged, releases.prepare_host), so a host that
    cannot stops the deploy with every host still serving what it served (each prepared
    one taken back); then the switches, rolling: each a few API calls, the drain and the
    old containers' stop. Each host keeps its lock until the end of the run. ``out``:
    where the lines go (stdout by default), each host's with its `[name] ` prefix.
    Hosts sharing a database (deploy/fleet/databases.py): all staged (a database host
    brings its database up, never switched), each shared database migrated once from
    here, then the app hosts prepared. ``others``: name → (Host, Settings) of hosts not
    deployed to, a way in to a database."""
    out = as_output(out)
    held: dict[str, ExitStack] = {}
    ready: dict[str, releases.Staged] = {}
    shared_dbs = databases.shared_databases([h.name for h in targets], per_host,
                                            {n: s for n, (_, s) in (others or {}).items()})
    apps = [h for h in targets if per_host[h.name].app_services]

    def stage(host) -> None:
        settings = per_host[host.name]
        with ExitStack() as stack:
            c = trust.connection(host, settings)
            stack.callback(c.close)
            state = stack.enter_context(releases.staged(
                c, settings, rollout, lock_wait=lock_wait, out=out.for_host(host.name)))
            held[host.name] = stack.pop_all()
        ready[host.name] = state
        if not settings.app_services:
            databases.database_host_up(state, rollout.shared, out.for_host(host.name))
        elif not shared_dbs:
            prepare(host)

    def prepare(host) -> None:
        releases.prepare_host(ready[host.name], out=out.for_host(host.name),
                              migrate=databases.migrates_itself(per_host[host.name]))

    def switch(host) -> None:
        releases.switch_host(ready[host.name], out=out.for_host(host.name))

    try:
        at_once = min(len(targets), max(parallel, STAGE_AT_ONCE))
        fanout.run_on_hosts("stage", targets, stage, at_once,
                            mode=_stage_mode(bool(shared_dbs), at_once), done="ready",
                            failed_note=NONE_SWITCHED)
        if shared_dbs:
            _migrate_shared(shared_dbs, per_host, targets, others or {}, out)
            _prepare_all(apps, prepare, at_once)
        if apps:
            fanout.run_on_hosts("deploy", apps, switch, parallel)
    finally:
        for stack in held.values():  # each lock released; a release not switched to removed
            stack.close()


NONE_SWITCHED = "no host switched: each still serves what it served"


def _prepare_all(apps, prepare, at_once: int) -> None:
    if apps:
        fanout.run_on_hosts(
            "prepare", apps, prepare, min(len(apps), at_once), done="ready",
            mode=f"start the new containers beside the old, healthy, no traffic yet; at "
                 f"most {at_once} at once", failed_note=NONE_SWITCHED)


def _stage_mode(shared: bool, at_once: int) -> str:
    if shared:
        return (f"lock, upload, ship; a database host's database up; at most {at_once} at "
                "once; then each shared database migrated once; nothing switches until "
                "every host is ready")
    return (f"lock, upload, ship, migrate, start the new containers beside the old, "
            f"healthy, no traffic yet; at most {at_once} at once; nothing switches until "
            "every host is ready")


def _migrate_shared(shared_dbs, per_host: dict[str, Settings], targets,
                    others: dict[str, tuple], out: Output) -> None:
    """Each shared database migrated once, from here, before any host starts its release;
    a failure stops the deploy with every host still serving what it served."""
    hosts = {h.name: h for h in targets}
    settings = dict(per_host)
    for name, (host, host_settings) in others.items():
        hosts.setdefault(name, host)
        settings.setdefault(name, host_settings)
    for db in shared_dbs:
        databases.migrate_once(db, settings, hosts, out)
