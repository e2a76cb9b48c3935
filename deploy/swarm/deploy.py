"""A deploy to a Swarm, and a rollback, as named steps in one order.

deploy:
    1. settings and roles checked; the manager reached (SSH, known host keys only)
    2. images: built here, on every node (or in DEPLOY_REGISTRY), pinned (images.py)
    3. the stack file rendered (deploy/commands/stackfile.py) and uploaded to the manager
    4. first deploy only: the stack without its app and worker services (database, proxy,
       other base services) deployed and waited for
    5. migrations: once, as a one-off task from the new app image; a failure stops here
       with nothing updated
    == the point of no return: `docker stack deploy` of the full stack ==
    6. each app and worker service's rolling update watched until `completed`; a rollback,
       a pause or the timeout is exit 1 naming the service and the release that serves
    7. the release recorded in the history on the manager

rollback: every app and worker service back to the previous release's recorded images,
with the same rolling update (`docker service update --image`), watched the same way; no
build, nothing shipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from deploy.commands import stackfile, swarm
from deploy.errors import ConfigError, MigrationError
from deploy.fleet.hostlock import host_lock
from deploy.machine.stack import Stack
from deploy.output import Output, as_output
from deploy.release import revision
from deploy.services import Roles
from deploy.settings import Settings
from deploy.swarm import history, images, watch
from deploy.swarm.migrate import app_environment, migrate_args, run_runner, show
from deploy.swarm.target import Manager, SwarmConfig, swarm_config

STACK_FILE = "stack.yml"
BASE_FILE = "stack-base.yml"


def roles_of(settings: Settings) -> Roles:
    s = settings
    return Roles(s.app_services, s.app_ports, s.health_paths, s.worker_services,
                 s.db_service, s.proxy_publish, s.proxy_health_path)


def compose_config(local, settings: Settings) -> dict:
    """`compose config` here, parsed: every variable resolved (`docker stack deploy` reads
    no .env). Its text holds the environment's values: never printed."""
    import yaml

    return yaml.safe_load(Stack(local, settings).config_text()) or {}


def base_stack(text: str, drop: tuple[str, ...]) -> str:
    """The rendered stack file without the services in ``drop`` (the app and worker
    services): what a first deploy starts before the migrations."""
    import yaml

    head, _, _ = text.partition("\n")
    doc = yaml.safe_load(text)
    for name in drop:
        doc["services"].pop(name, None)
    return head + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def rolled(settings: Settings) -> tuple[str, ...]:
    """The services a release rolls: its app and worker services."""
    return (*settings.app_services, *settings.worker_services)


def existing(manager, config: SwarmConfig) -> set[str]:
    """The stack's services that exist now (their names without the stack prefix)."""
    listed = manager.run(swarm.stack_services(config.stack), what="docker service ls").stdout
    prefix = f"{config.stack}_"
    return {n[len(prefix):] for n in listed.split() if n.startswith(prefix)}


def upload(manager, directory: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        manager.write_file(f"{directory}/{name}", text)


@dataclass(frozen=True)
class Run:
    """One deploy's context, shared by its steps."""

    manager: Manager
    config: SwarmConfig
    settings: Settings
    cfg: dict  # `compose config`, parsed
    out: Output

    @property
    def policy(self) -> watch.WatchPolicy:
        return watch.WatchPolicy(budget=self.config.rollout_timeout)


def deploy(local, settings: Settings, *, build: bool, allow_dirty: bool, lock_wait: float,
           migration_lock_wait: float, out: Output | None = None) -> str:
    """The deploy's steps in order (module docstring); the release deployed."""
    out = as_output(out)
    config = swarm_config(settings)
    roles = roles_of(settings)
    started = time.monotonic()
    rev = revision.revision()
    revision.require_committed(rev, allow_dirty)
    if not rev.committed:
        out(f"deploy: {revision.ALLOW_FLAG}: shipping this tree as {rev.tag}, not a commit")
    cfg = compose_config(local, settings)
    # Rendered once with stand-in images before anything is built or shipped: a setting
    # the stack file cannot use (SWARM_DB_NODE, APP_REPLICAS, a role the file lacks) is
    # exit 2 with nothing done.
    stackfile.render(cfg, roles, _options(config, settings, {}, "", "check"))
    with Manager(settings, config) as manager, \
            host_lock(manager.conn, settings, wait=lock_wait, release=rev.tag, out=out):
        run = Run(manager, config, settings, cfg, out)
        out(f"==> swarm: stack {config.stack} via manager {config.manager.name} "
            f"({len(images.node_addresses(manager))} node(s)), holding "
            f"{settings.deploy_path}/.deploy.lock there")
        out("==> images")
        pinned = images.release(local, settings, manager, cfg, rev=rev, build=build,
                                lock_wait=lock_wait, out=out)
        rendered = stackfile.render(cfg, roles, _options(
            config, settings, pinned.images, pinned.proxy, pinned.release))
        directory = f"{config.state_dir}/{pinned.release}"
        first = not any(s in existing(manager, config) for s in settings.app_services)
        upload_stack(run, directory, rendered, first)
        if first:
            start_base(run, f"{directory}/{BASE_FILE}", pinned)
        migrate_once(run, pinned, migration_lock_wait)
        roll(run, f"{directory}/{STACK_FILE}", pinned)
        record(manager, config, history.Entry(
            pinned.release, {s: pinned.images[s] for s in rolled(settings)}, history.now()))
    out(f"deploy: release {pinned.release} serves on the Swarm "
        f"({config.replicas} replica(s) of {', '.join(settings.app_services)}) in "
        f"{time.monotonic() - started:.1f} s")
    return pinned.release


def upload_stack(run: Run, directory: str, rendered: stackfile.StackFile, first: bool
                 ) -> None:
    """The stack file and its proxy config (and on a first deploy the base stack file)."""
    files = {STACK_FILE: rendered.text, **rendered.files}
    if first:
        files[BASE_FILE] = base_stack(rendered.text, rolled(run.settings))
    upload(run.manager, directory, files)
    run.out(f"==> stack file {directory}/{STACK_FILE} (proxy config {rendered.proxy_config})")


def start_base(run: Run, path: str, pinned: images.Pinned) -> None:
    """First deploy: the database and the other base services (and the proxy) running
    before the migrations."""
    base = [s for s in run.cfg.get("services") or {} if s not in rolled(run.settings)]
    run.out(f"==> first deploy: the base services first ({', '.join(base)}, proxy)")
    run.manager.run(swarm.stack_deploy(path, run.config.stack, resolve_image=pinned.resolve),
                    what="docker stack deploy (base)")
    waited = [run.config.service(s) for s in base if s != stackfile.PROXY_SERVICE]
    watch.wait_all(run.manager, waited, policy=run.policy, out=run.out, what="running")


def migrate_once(run: Run, pinned: images.Pinned, lock_wait: float) -> None:
    """The runner from the new app image, once; a failure stops the deploy here."""
    run.out("==> migrate (one-off task, before the update)")
    app = run.settings.app_services[0]
    result = run_runner(run.manager, run.config, image=pinned.images[app],
                        resolve_image=pinned.resolve,
                        env=app_environment(run.cfg, run.settings),
                        args=migrate_args(lock_wait), what="migrate", out=run.out)
    show(result, run.out)
    if not result.ok:
        raise MigrationError(
            f"deploy failed: migrations: the one-off task ended with "
            f"{_how(result)}; nothing was updated: the stack still runs what it ran"
            + ("".join(f"\n  {line}" for line in result.lines[-15:])))


def roll(run: Run, path: str, pinned: images.Pinned) -> None:
    """The point of no return: the full stack deployed, each rolled service watched until
    completed, then the others (database, proxy) until they run their spec."""
    config = run.config
    watched = [config.service(s) for s in rolled(run.settings)]
    others = list(dict.fromkeys(
        config.service(s) for s in [*(run.cfg.get("services") or {}), stackfile.PROXY_SERVICE]
        if s not in rolled(run.settings)))
    before = watch.versions(run.manager, [*watched, *others])
    run.out("==> point of no return: docker stack deploy (rolling update, start-first)")
    run.manager.run(swarm.stack_deploy(path, config.stack, resolve_image=pinned.resolve),
                    what="docker stack deploy")
    watch.wait_all(run.manager, watched, policy=run.policy, out=run.out, before=before)
    # The database and the proxy change only when their settings do; they converge too.
    watch.wait_all(run.manager, others, policy=run.policy, out=run.out, what="running",
                   before=before)


def _options(config: SwarmConfig, settings: Settings, images_: dict[str, str], proxy: str,
             release: str) -> stackfile.SwarmOptions:
    stand_in = {s: f"{s}:{release}" for s in rolled(settings)}
    return stackfile.SwarmOptions(
        stack=config.stack, images={**stand_in, **images_}, proxy_image=proxy or "proxy",
        replicas=config.replicas, db_node=config.db_node, proxy_label=config.proxy_label,
        drain=settings.drain_timeout, labels={watch.RELEASE_LABEL: release})


def _how(result) -> str:
    from deploy.swarm.oneoff import describe

    return describe(result)


def history_path(config: SwarmConfig) -> str:
    return f"{config.state_dir}/{history.FILE}"


def read_history(manager, config: SwarmConfig) -> list[history.Entry]:
    path = history_path(config)
    found = manager.run(["cat", "--", path], check=False)
    if found.exited != 0:
        return []
    return history.parse(found.stdout, path)


def record(manager, config: SwarmConfig, entry: history.Entry) -> None:
    manager.write_file(history_path(config),
                       history.append(read_history(manager, config), entry))


def serving(manager, config: SwarmConfig, settings: Settings) -> str | None:
    """The release the first app service's spec names (its deploy.release label)."""
    if not settings.app_services:
        return None
    service = config.service(settings.app_services[0])
    found = manager.run(swarm.service_inspect(service), check=False)
    if found.exited != 0:
        return None
    (spec,) = swarm.parse_services(found.stdout)
    return dict(spec.labels).get(watch.RELEASE_LABEL)


def rollback(settings: Settings, *, lock_wait: float, out: Output | None = None) -> str:
    """Every app and worker service back to the previous release's images; the release."""
    out = as_output(out)
    config = swarm_config(settings)
    with Manager(settings, config) as manager, \
            host_lock(manager.conn, settings, wait=lock_wait, release="rollback", out=out):
        current = serving(manager, config, settings)
        if current is None:
            raise ConfigError(f"rollback: stack {config.stack} has no app service "
                              f"{settings.app_services[0] if settings.app_services else ''} "
                              "on the Swarm: nothing to roll back")
        entries = read_history(manager, config)
        target = history.previous(entries, current)
        out(f"==> rollback: {current} -> {target.release} (no build: the images are on the "
            "nodes)")
        services = [s for s in rolled(settings) if s in target.images]
        missing = [s for s in rolled(settings) if s not in target.images]
        if missing:
            raise ConfigError(f"rollback: release {target.release} ran no {missing[0]!r} "
                              "(its record has no image for it)")
        resolve = not target.images[services[0]].startswith("sha256:")
        for name in services:
            manager.run(swarm.service_update_image(
                config.service(name), target.images[name], registry_auth=resolve,
                resolve_image=resolve, labels={watch.RELEASE_LABEL: target.release}),
                what=f"docker service update {config.service(name)}")
        watch.wait_all(manager, [config.service(s) for s in services],
                       policy=watch.WatchPolicy(budget=config.rollout_timeout), out=out,
                       what=f"on release {target.release}")
        record(manager, config, history.Entry(target.release, dict(target.images),
                                              history.now(), action="rollback"))
    out(f"rollback: release {target.release} serves on the Swarm")
    return target.release

