"""deploy (here or on hosts), rollback and releases.

`invoke deploy --hosts a,b` stages every host before any switches (deploy/fleet/rollout.py).
`fab -H a,b deploy` cannot: Fabric calls a task once per host, one host after the other,
so deploy and rollback refuse to run under it and say which command to use.
"""

from __future__ import annotations

import sys

import invoke

from deploy.defaults import DEPLOY_LOCK_WAIT
from deploy.errors import ConfigError
from deploy.fleet import fanout, trust
from deploy.fleet import rollout as fleet
from deploy.fleet.hosts import Host, host_settings
from deploy.fleet.releases import format_release, release_images, rollback_host
from deploy.machine.stack import require_stack_settings
from deploy.output import Output, emit
from deploy.release.locks import LocalLock, local_lock_path
from deploy.release.sequence import deploy_here
from deploy.settings import Settings, load_settings
from deploy.shell import is_remote
from deploy.tasks.common import (
    TARGET_HELP,
    count,
    exits,
    host_list,
    not_under_fab,
    on_swarm,
    seconds,
    settings_for,
    task,
)

HOSTS_HELP = ("the hosts, over SSH: web1,deploy@web2:2222 (default DEPLOY_HOSTS; "
              "'local' for this machine)")
LOCK_WAIT_HELP = (f"seconds to wait for another deploy's lock, here or on a host "
                  f"(default {DEPLOY_LOCK_WAIT:g})")
# Why `fab -H` cannot run these: one line, exit 2, naming the command that can.
FAB_REFUSED = {
    "deploy": "a deploy must stage every host first",
    "rollback": "a rollback must stop at the first failing host and report every host",
}


def fab_hosts(argv: list[str]) -> str | None:
    """The host list given to `fab` on its command line (-H/--hosts), as written."""
    for i, arg in enumerate(argv):
        if arg in ("-H", "--hosts") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--hosts="):
            return arg.partition("=")[2]
        if arg.startswith("-H") and len(arg) > 2:
            return arg[2:]
    return None


def refuse_fab(c, name: str) -> None:
    """Fabric gives a task one host at a time: refuse the tasks that need them all."""
    if is_remote(c):
        hosts = fab_hosts(sys.argv) or c.host
        raise ConfigError(f"fab -H runs a task on each host in turn; {FAB_REFUSED[name]}: "
                          f"use invoke {name} --hosts {hosts}")


@task(help={
    "no_build": "do not build: here, deploy the image built before; to hosts, ship this "
                "commit's images, which must already be here (built by `invoke deploy`)",
    "lock_wait": LOCK_WAIT_HELP,
    "hosts": "deploy to " + HOSTS_HELP,
    "parallel": "with hosts: at most N hosts switch at once (default 1: rolling)",
    "allow_dirty": "to hosts or a Swarm: ship a tree with uncommitted changes, as "
                   "<sha>-dirty-<hash>",
    "target": TARGET_HELP,
})
@exits
def deploy(c, no_build=False, lock_wait=None, hosts=None, parallel=None, allow_dirty=False,
           target=None):
    """Build, start, wait until healthy, migrate, verify tables: here, on hosts or a Swarm."""
    refuse_fab(c, "deploy")
    wait = seconds("--lock-wait", lock_wait, DEPLOY_LOCK_WAIT)
    n_parallel = count("--parallel", parallel, 1)
    swarm_settings = on_swarm(c, target, hosts)
    if swarm_settings is not None:
        from deploy.defaults import RUNNER_LOCK_WAIT
        from deploy.swarm import deploy as swarm_deploy

        if parallel is not None:
            raise ConfigError("--parallel: not with the swarm target (its update_config "
                              "rolls one task at a time)")
        swarm_deploy.deploy(invoke.Context(), swarm_settings, build=not no_build,
                            allow_dirty=allow_dirty, lock_wait=wait,
                            migration_lock_wait=seconds("--lock-wait", lock_wait,
                                                        RUNNER_LOCK_WAIT),
                            out=Output())
        return
    shared = load_settings()
    targets = host_list(hosts, shared)
    if targets:
        _deploy_hosts(shared, targets, n_parallel, build=not no_build,
                      allow_dirty=allow_dirty, lock_wait=wait)
        return
    with LocalLock(local_lock_path(shared.project_name), wait):
        deploy_here(c, shared, build=not no_build)


def _per_host(shared: Settings, targets: list[Host]) -> dict[str, Settings]:
    # Every host's settings are checked before any host is touched.
    return {h.name: host_settings(shared, h.name) for h in targets}


def _deploy_hosts(shared: Settings, targets: list[Host], parallel: int, *, build: bool,
                  allow_dirty: bool, lock_wait: float) -> None:
    """Build here once, publish once; stage every host (lock, upload, ship), then the
    switches, rolling."""
    per_host = _per_host(shared, targets)
    for settings in per_host.values():
        require_stack_settings(settings)
    with fleet.Rollout(invoke.Context(), shared, build=build, allow_dirty=allow_dirty,
                       lock_wait=lock_wait, out=emit) as rollout:
        rollout.prepare(per_host.values())
        for settings in per_host.values():  # every image published before any host
            rollout.images_for(settings)
        fleet.stage_then_switch(targets, per_host, rollout, parallel=parallel,
                                lock_wait=lock_wait, others=_other_hosts(shared, targets))


def _other_hosts(shared: Settings, targets: list[Host]) -> dict[str, tuple]:
    """DEPLOY_HOSTS not deployed to, with their settings: a database host among them is a
    way in to the database the targets share (deploy/fleet/databases.py). One whose
    overlay cannot be read is left out: it is not deployed to."""
    names = {h.name for h in targets}
    others = {}
    for host in host_list(None, shared):
        if host.name not in names:
            try:
                others[host.name] = (host, host_settings(shared, host.name))
            except ConfigError:
                continue
    return others


@task(help={"hosts": "roll back " + HOSTS_HELP,
            "lock_wait": LOCK_WAIT_HELP,
            "parallel": "at most N hosts at once (default 1)",
            "target": TARGET_HELP})
@exits
def rollback(c, hosts=None, lock_wait=None, parallel=None, target=None):
    """Back to the previous release's image, already on the host: no build, no upload."""
    refuse_fab(c, "rollback")
    wait = seconds("--lock-wait", lock_wait, DEPLOY_LOCK_WAIT)
    n_parallel = count("--parallel", parallel, 1)
    swarm_settings = on_swarm(c, target, hosts)
    if swarm_settings is not None:
        from deploy.swarm import deploy as swarm_deploy

        swarm_deploy.rollback(swarm_settings, lock_wait=wait, out=Output())
        return
    shared = load_settings()
    targets = host_list(hosts, shared)
    if not targets:
        raise ConfigError("--hosts: rollback works on hosts (e.g. --hosts web1, or set "
                          "DEPLOY_HOSTS)")
    per_host = _per_host(shared, targets)

    def job(host: Host) -> None:
        settings = per_host[host.name]
        prefix = f"[{host.name}] "
        if not settings.app_services:
            emit(f"{prefix}rollback: a database host (APP_SERVICES is empty): no app to "
                 "roll back; migrations are never reversed")
            return
        conn = trust.connection(host, settings)
        try:
            rollback_host(conn, settings, lock_wait=wait, out=Output(prefix=prefix))
        finally:
            conn.close()

    fanout.run_on_hosts("rollback", targets, job, n_parallel)


@task(help={"hosts": "list the releases of " + HOSTS_HELP, "target": TARGET_HELP})
@exits
def releases(c, hosts=None, target=None):
    """The releases kept on each host (or run by a Swarm): * = current, their images."""
    swarm_settings = on_swarm(c, target, hosts)
    if swarm_settings is not None:
        from deploy.swarm import views

        views.releases(swarm_settings, Output())
        return

    def show(conn, settings, name):
        rows = release_images(conn, settings)
        for row in rows:
            emit(f"[{name}] {format_release(row)}")
        if not rows:
            emit(f"[{name}]   (no releases in {settings.deploy_path}/releases)")

    not_under_fab(c, hosts)
    if is_remote(c):
        show(c, settings_for(c), c.host)
        return
    shared = load_settings()
    targets = host_list(hosts, shared)
    if not targets:
        raise ConfigError("--hosts: releases are kept on hosts (e.g. --hosts web1, or set "
                          "DEPLOY_HOSTS)")
    for host in targets:
        settings = host_settings(shared, host.name)
        conn = trust.connection(host, settings)
        try:
            trust.open_connection(conn, settings)
            show(conn, settings, host.name)
        finally:
            conn.close()
