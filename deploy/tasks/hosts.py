"""deploy (here or on hosts), rollback and releases."""

from __future__ import annotations

from invoke import task

from deploy.errors import ConfigError
from deploy.output import Output, emit
from deploy.settings import load_settings
from deploy.shell import is_remote
from deploy.tasks.common import count, exits, seconds, settings_for


@task(auto_shortflags=False, help={
    "no_build": "do not build: here, deploy the image built before; to hosts, ship this "
                "commit's images, which must already be here (built by `invoke deploy`)",
    "lock_wait": "seconds to wait for another deploy of this project/host (default 300)",
    "hosts": "deploy to these hosts over SSH instead of locally: web1,deploy@web2:2222",
    "parallel": "with --hosts: at most N hosts at once (default 1: rolling)",
    "allow_dirty": "to hosts: ship a tree with uncommitted changes, as <sha>-dirty-<hash>",
})
@exits
def deploy(c, no_build=False, lock_wait=None, hosts=None, parallel=None, allow_dirty=False):
    """Build, start, wait until healthy, migrate, verify tables: here, or on hosts."""

    wait = seconds("--lock-wait", lock_wait, 300.0)
    n_parallel = count("--parallel", parallel, 1)
    if is_remote(c):  # fab -H …: Fabric calls us once per host
        import invoke

        from deploy.fleet import rollout as fleet
        from deploy.fleet.releases import deploy_host

        settings = settings_for(c)
        # The first host's call builds and publishes; the others reuse it (one process).
        rollout = fleet.session(invoke.Context(), load_settings(), build=not no_build,
                                allow_dirty=allow_dirty, lock_wait=wait, out=emit)
        deploy_host(c, settings, rollout, lock_wait=wait, out=Output(prefix=f"[{c.host}] "))
        return
    if hosts:
        _deploy_hosts(hosts, n_parallel, build=not no_build, allow_dirty=allow_dirty,
                      lock_wait=wait)
        return
    from deploy.release.locks import LocalLock, local_lock_path
    from deploy.release.sequence import deploy_here

    settings = settings_for(c)
    with LocalLock(local_lock_path(settings.project_name), wait):
        deploy_here(c, settings, build=not no_build)


def _targets(hosts: str):
    from deploy.fleet import hosts as remote

    shared = load_settings()
    targets = remote.parse_hosts(hosts)
    # Every host's settings are checked before any host is touched.
    per_host = {h.name: remote.host_settings(shared, h.name) for h in targets}
    return shared, targets, per_host


def _deploy_hosts(hosts: str, parallel: int, *, build: bool, allow_dirty: bool,
                  lock_wait: float) -> None:
    """Build here once, publish once; stage every host (lock, upload, ship), then the
    switches, rolling."""
    import invoke

    from deploy.fleet import rollout as fleet
    from deploy.machine.stack import require_stack_settings

    shared, targets, per_host = _targets(hosts)
    for settings in per_host.values():
        require_stack_settings(settings)
    with fleet.Rollout(invoke.Context(), shared, build=build, allow_dirty=allow_dirty,
                       lock_wait=lock_wait, out=emit) as rollout:
        rollout.prepare(per_host.values())
        for settings in per_host.values():  # every image published before any host
            rollout.images_for(settings)
        fleet.stage_then_switch(targets, per_host, rollout, parallel=parallel,
                                lock_wait=lock_wait)


def _run_on_hosts(targets, per_host, action: str, parallel: int, fn, **kwargs) -> None:
    from deploy.fleet import hosts as remote

    def job(host):
        settings = per_host[host.name]
        c = remote.connection(host, settings)
        try:
            fn(c, settings, out=Output(prefix=f"[{host.name}] "), **kwargs)
        finally:
            c.close()

    remote.run_on_hosts(action, targets, job, parallel)


@task(auto_shortflags=False, help={
            "hosts": "the hosts to roll back, e.g. web1 (or use fab -H web1 rollback)",
            "lock_wait": "seconds to wait for a deploy in progress (default 300)",
            "parallel": "at most N hosts at once (default 1)"})
@exits
def rollback(c, hosts=None, lock_wait=None, parallel=None):
    """Back to the previous release's image, already on the host: no build, no upload."""

    wait = seconds("--lock-wait", lock_wait, 300.0)
    if is_remote(c):
        from deploy.fleet.releases import rollback_host

        settings = settings_for(c)
        rollback_host(c, settings, lock_wait=wait, out=Output(prefix=f"[{c.host}] "))
        return
    if not hosts:
        raise ConfigError("--hosts: rollback works on hosts (e.g. --hosts web1, or "
                          "fab -H web1 rollback)")
    from deploy.fleet.releases import rollback_host

    _, targets, per_host = _targets(hosts)
    _run_on_hosts(targets, per_host, "rollback", count("--parallel", parallel, 1),
                  rollback_host, lock_wait=wait)


@task(auto_shortflags=False,
      help={"hosts": "the hosts to list, e.g. web1,web2 (or use fab -H web1 releases)"})
@exits
def releases(c, hosts=None):
    """The releases kept on each host: * = current, their image, its ID, which one is live."""
    from deploy.fleet import hosts as remote
    from deploy.fleet.releases import format_release, release_images

    def show(conn, settings, name):
        rows = release_images(conn, settings)
        for row in rows:
            emit(f"[{name}] {format_release(row)}")
        if not rows:
            emit(f"[{name}]   (no releases in {settings.deploy_path}/releases)")

    if is_remote(c):
        show(c, settings_for(c), c.host)
        return
    if not hosts:
        raise ConfigError("--hosts: releases are kept on hosts (e.g. --hosts web1)")
    shared = load_settings()
    for host in remote.parse_hosts(hosts):
        settings = remote.host_settings(shared, host.name)
        conn = remote.connection(host, settings)
        try:
            remote.open_connection(conn, settings)
            show(conn, settings, host.name)
        finally:
            conn.close()
