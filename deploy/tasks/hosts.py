"""deploy (here or on hosts), rollback and releases."""

from __future__ import annotations

from invoke import task

from deploy.errors import ConfigError, DeployError
from deploy.settings import load_settings
from deploy.tasks.common import count, exits, seconds, settings_for


@task(auto_shortflags=False, help={
    "no_build": "skip the build step (images already built)",
    "lock_wait": "seconds to wait for another deploy of this project/host (default 300)",
    "hosts": "deploy to these hosts over SSH instead of locally: web1,deploy@web2:2222",
    "parallel": "with --hosts: at most N hosts at once (default 1: rolling)",
})
@exits
def deploy(c, no_build=False, lock_wait=None, hosts=None, parallel=None):
    """Build, start, wait until healthy, migrate, verify tables: here, or on hosts."""
    from deploy import remote

    wait = seconds("--lock-wait", lock_wait, 300.0)
    n_parallel = count("--parallel", parallel, 1)
    if remote.is_remote(c):  # fab -H …: Fabric calls us once per host
        from deploy.releases import deploy_host

        settings = settings_for(c)
        prefix = f"[{c.host}] "
        deploy_host(c, settings, build=not no_build, lock_wait=wait,
                    out=remote.printer(prefix), stream=remote.PrefixStream(prefix))
        return
    if hosts:
        _on_hosts(hosts, "deploy", n_parallel, build=not no_build, lock_wait=wait)
        return
    from deploy.deploy_locks import LocalLock, local_lock_path
    from deploy.lifecycle import deploy as run_deploy

    settings = settings_for(c)
    with LocalLock(local_lock_path(settings.project_name), wait):
        run_deploy(c, settings, build=not no_build)


def _on_hosts(hosts: str, action: str, parallel: int, **kwargs) -> None:
    from deploy import remote
    from deploy.releases import deploy_host, rollback_host

    shared = load_settings()
    targets = remote.parse_hosts(hosts)
    # Every host's settings are checked before any host is touched.
    per_host = {h.name: remote.host_settings(shared, h.name) for h in targets}
    fn = {"deploy": deploy_host, "rollback": rollback_host}[action]

    def job(host):
        settings = per_host[host.name]
        prefix = f"[{host.name}] "
        c = remote.connection(host, settings)
        try:
            fn(c, settings, out=remote.printer(prefix), stream=remote.PrefixStream(prefix),
               **kwargs)
        finally:
            c.close()

    mode = "rolling, one host at a time" if parallel == 1 else f"at most {parallel} at once"
    remote.emit(f"{action}: {', '.join(h.name for h in targets)} ({mode})")
    report = remote.on_hosts(targets, job, parallel=parallel)
    remote.emit(report.summary())
    if report.failed:
        host, first = report.failed[0]
        error = DeployError(f"{action} failed on {host}: {first}\n{report.summary()}")
        error.exit_code = first.exit_code  # the first failure's meaning, e.g. 4 for a lock
        raise error


@task(auto_shortflags=False, help={
            "hosts": "the hosts to roll back, e.g. web1 (or use fab -H web1 rollback)",
            "lock_wait": "seconds to wait for a deploy in progress (default 300)",
            "parallel": "at most N hosts at once (default 1)"})
@exits
def rollback(c, hosts=None, lock_wait=None, parallel=None):
    """Switch `current` back to the previous release and bring it up (schema unchanged)."""
    from deploy import remote

    wait = seconds("--lock-wait", lock_wait, 300.0)
    if remote.is_remote(c):
        from deploy.releases import rollback_host

        settings = settings_for(c)
        prefix = f"[{c.host}] "
        rollback_host(c, settings, lock_wait=wait, out=remote.printer(prefix),
                      stream=remote.PrefixStream(prefix))
        return
    if not hosts:
        raise ConfigError("--hosts: rollback works on hosts (e.g. --hosts web1, or "
                          "fab -H web1 rollback)")
    _on_hosts(hosts, "rollback", count("--parallel", parallel, 1), lock_wait=wait)


@task(auto_shortflags=False,
      help={"hosts": "the hosts to list, e.g. web1,web2 (or use fab -H web1 releases)"})
@exits
def releases(c, hosts=None):
    """The releases kept on each host, the live one marked with *."""
    from deploy import remote
    from deploy.releases import list_releases

    def show(conn, settings, name):
        state = list_releases(conn, settings)
        for release in state.names:
            mark = "*" if release == state.current else " "
            remote.emit(f"[{name}] {mark} {release}")
        if not state.names:
            remote.emit(f"[{name}]   (no releases in {settings.deploy_path}/releases)")

    if remote.is_remote(c):
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
