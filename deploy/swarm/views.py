"""What `ps`, `releases`, `logs`, `migrate`, `migrate-status` and `check-tables` do with
`--target swarm`: read the manager, or run the runner there as a one-off task."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence

from deploy.commands import swarm
from deploy.errors import ConfigError
from deploy.output import Output, as_output
from deploy.settings import Settings
from deploy.swarm import history, oneoff, watch
from deploy.swarm.deploy import compose_config, read_history, serving
from deploy.swarm.migrate import app_environment, run_runner
from deploy.swarm.target import Manager, SwarmConfig, swarm_config


def service_row(service: swarm.Service, tasks: Sequence[swarm.Task]) -> str:
    """`<service>  running/desired  release <r>  <node>: <n> <state>, …`."""
    live = [t for t in tasks if t.desired == "running"]
    running = sum(1 for t in live if t.running)
    desired = service.replicas if service.replicas is not None else len(live)
    release = dict(service.labels).get(watch.RELEASE_LABEL, "-")
    per_node = Counter((t.node, t.current) for t in live)
    nodes = ", ".join(f"{node}: {n} {state}" for (node, state), n in sorted(per_node.items()))
    update = f"  update {service.update_state}" if service.update_state else ""
    return (f"{service.name}  {running}/{desired} running  release {release}{update}"
            f"  {nodes or 'no tasks'}")


def ps(settings: Settings, out: Output | None = None) -> list[str]:
    out = as_output(out)
    config = swarm_config(settings)
    with Manager(settings, config) as manager:
        names = manager.run(swarm.stack_services(config.stack)).stdout.split()
        if not names:
            raise ConfigError(f"stack {config.stack}: no services on the Swarm (deploy it "
                              "first: invoke deploy --target swarm)")
        services = swarm.parse_services(manager.run(swarm.service_inspect(*names)).stdout)
        lines = []
        for service in sorted(services, key=lambda s: s.name):
            tasks = swarm.parse_tasks(manager.run(swarm.service_ps(service.name)).stdout)
            lines.append(service_row(service, tasks))
    for line in lines:
        out(line)
    return lines


def releases(settings: Settings, out: Output | None = None) -> list[str]:
    out = as_output(out)
    config = swarm_config(settings)
    with Manager(settings, config) as manager:
        entries = read_history(manager, config)
        current = serving(manager, config, settings)
    lines = history.rows(entries, current)
    if not lines:
        lines = [f"  (no releases recorded in {config.state_dir}/{history.FILE})"]
    for line in lines:
        out(line)
    return lines


# Lines read per task unless --tail says otherwise.
DEFAULT_LOG_TAIL = 2000


def logged_tasks(tasks: Sequence[swarm.Task]) -> list[swarm.Task]:
    """The tasks whose logs `logs` reads: those meant to run, and those that failed (a
    release that rolled back), in `service ps` order."""
    return [t for t in tasks if t.desired == "running" or t.current in ("failed", "rejected")]


def log_lines(settings: Settings, services: Sequence[str], *, tail: int | None = None,
              since: str | None = None) -> list[str]:
    """The logs of each named service (without the stack prefix; none: all of the stack's),
    task by task: `<service>.<slot>@<node> | <line>`, the last DEFAULT_LOG_TAIL lines of
    each task unless --tail says otherwise.

    Task by task, because `docker service logs SERVICE` of Docker 20.10 may never return
    on a busy service, with --tail too (measured on the rig: --tail 50 of a 6-replica
    backend returned in 0.6 s, --tail 300 still streamed after 30 s), while
    `docker service logs TASK` returned in 0.04–0.1 s for each of 12 tasks."""
    config = swarm_config(settings)
    tail = DEFAULT_LOG_TAIL if tail is None else tail
    lines = []
    with Manager(settings, config) as manager:
        names = services or [n[len(config.stack) + 1:] for n in manager.run(
            swarm.stack_services(config.stack)).stdout.split()]
        for name in names:
            found = manager.run(swarm.service_ps(config.service(name)), check=False)
            if found.exited != 0:
                raise ConfigError(f"SERVICES: no service {name!r} in stack {config.stack} "
                                  "on the Swarm")
            for task in logged_tasks(swarm.parse_tasks(found.stdout)):
                got = manager.run(swarm.service_logs(task.id, tail=tail, since=since),
                                  check=False)
                label = f"{task.name[len(config.stack) + 1:]}@{task.node}"
                text = (got.stdout or "") + (got.stderr or "")
                lines += [f"{label} | {line}" for line in text.splitlines()]
    return lines


def runner(settings: Settings, args: Sequence[str], what: str, out: Output | None = None,
           config: SwarmConfig | None = None) -> oneoff.OneOffResult:
    """The runner (`migrate …`, `migrate-status`, `check-tables …`) as a one-off task from
    the image the first app service runs now; its lines printed, its exit code kept."""
    out = as_output(out) if out is not None else Output(target=sys.stderr)
    config = config or swarm_config(settings)
    cfg = _config_here(settings)
    with Manager(settings, config) as manager:
        if not settings.app_services:
            raise ConfigError("APP_SERVICES: empty; the runner runs from an app image")
        service = config.service(settings.app_services[0])
        found = manager.run(swarm.service_inspect(service), check=False)
        if found.exited != 0:
            raise ConfigError(f"stack {config.stack}: no service {service} on the Swarm "
                              "(deploy it first: invoke deploy --target swarm)")
        (spec,) = swarm.parse_services(found.stdout)
        image = spec.image
        result = run_runner(manager, config, image=image,
                            resolve_image=not image.startswith("sha256:"),
                            env=app_environment(cfg, settings), args=args, what=what,
                            out=out)
    for line in result.lines:
        print(line, flush=True)
    if not result.ok:
        code = result.exit_code if result.exit_code else 1
        raise oneoff.TaskFailed(f"{what} on the Swarm: the one-off task ended with "
                                f"{oneoff.describe(result)}", code)
    return result


def _config_here(settings: Settings) -> dict:
    import invoke

    return compose_config(invoke.Context(), settings)
