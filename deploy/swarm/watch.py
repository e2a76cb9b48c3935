"""Watching a rolling update: `docker stack deploy` returns at once (and the 20.10 CLI exits
0 even after Swarm rolled an update back by itself), so the deploy polls each service's
UpdateStatus and tasks and classifies them (deploy/commands/swarm.py `rollout_state`).

A progress line each time the count on the new release changes (`web 3/6 on the new
release`); `completed` is success; `rollback_*`, `paused` or the timeout are a failed
deploy, reported with the failed tasks' errors, their logs' last lines, and the release
that now serves.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from deploy.commands import swarm
from deploy.errors import DeployError
from deploy.output import Output, as_output

RELEASE_LABEL = "deploy.release"


@dataclass(frozen=True)
class WatchPolicy:
    """How often a rollout is read, how long it may take, and how long a failed one is
    given to finish rolling back before the deploy reports which release serves."""

    interval: float = 1.0
    budget: float = 600.0
    settle: float = 120.0
    log_lines: int = 10


class RolloutFailed(DeployError):
    """A service's update rolled back, paused or timed out (exit 1)."""


def versions(manager, services: Sequence[str]) -> dict[str, int]:
    """Each existing service's spec version (before a deploy: what "unchanged" means)."""
    found = manager.run(swarm.service_inspect(*services), check=False) if services else None
    if found is None or found.exited != 0:  # a service that does not exist yet
        out = {}
        for name in services:
            one = manager.run(swarm.service_inspect(name), check=False)
            if one.exited == 0:
                out.update({s.name: s.version for s in swarm.parse_services(one.stdout)})
        return out
    return {s.name: s.version for s in swarm.parse_services(found.stdout)}


def read(manager, service: str, unchanged_at: int | None = None) -> swarm.Rollout:
    """The rollout's state. ``unchanged_at``: the spec version before the deploy; a spec
    the deploy did not change keeps the UpdateStatus of an older update (a rollback of an
    earlier failed deploy), which says nothing about this one: its tasks decide."""
    (found,) = swarm.parse_services(manager.run(swarm.service_inspect(service)).stdout)
    if unchanged_at is not None and found.version == unchanged_at:
        found = replace(found, update_state=None, update_message="")
    tasks = swarm.parse_tasks(manager.run(swarm.service_ps(service)).stdout)
    return swarm.rollout_state(found, tasks)


def release_of(manager, service: str) -> str:
    (found,) = swarm.parse_services(manager.run(swarm.service_inspect(service)).stdout)
    return dict(found.labels).get(RELEASE_LABEL, "") or found.image


def wait_all(manager, services: Sequence[str], *, policy: WatchPolicy = WatchPolicy(),
             out: Output | None = None, what: str = "on the new release",
             before: dict[str, int] | None = None) -> None:
    """Each service in turn until its rollout completed; the first failure raises.
    ``before``: spec versions read before the deploy (see `read`)."""
    out = as_output(out)
    for service in services:
        wait(manager, service, policy=policy, out=out, what=what,
             unchanged_at=(before or {}).get(service))


def wait(manager, service: str, *, policy: WatchPolicy = WatchPolicy(),
         out: Output | None = None, what: str = "on the new release",
         unchanged_at: int | None = None) -> swarm.Rollout:
    out = as_output(out)
    started = time.monotonic()
    shown = None
    while True:
        state = read(manager, service, unchanged_at)
        if state.failed:  # the spec is the old one again: no progress line for it
            raise RolloutFailed(failure_message(manager, service, state, policy))
        line = f"{state.service} {state.updated}/{state.total} {what}"
        if line != shown:
            out(f"   {line}")
            shown = line
        if state.ok:
            out(f"   {service}: rollout completed in {time.monotonic() - started:.1f} s")
            return state
        if time.monotonic() - started >= policy.budget:
            raise RolloutFailed(failure_message(
                manager, service, state, policy,
                reason=f"not completed after {policy.budget:g} s "
                       "(SWARM_ROLLOUT_TIMEOUT)"))
        time.sleep(policy.interval)


def _settled(manager, service: str, state: swarm.Rollout, policy: WatchPolicy
             ) -> swarm.Rollout:
    """A rollback that started is given `settle` seconds to complete."""
    deadline = time.monotonic() + policy.settle
    while state.phase == swarm.ROLLBACK_STARTED and time.monotonic() < deadline:
        time.sleep(policy.interval)
        state = read(manager, service)
    return state


def failure_message(manager, service: str, state: swarm.Rollout, policy: WatchPolicy,
                    reason: str | None = None) -> str:
    state = _settled(manager, service, state, policy)
    lines = [f"deploy failed: {service}: " + (reason or _phase_text(state))]
    if state.message:
        lines.append(f"  Swarm says: {state.message}")
    for error in state.errors[:10]:
        lines.append(f"  task {error}")
    tasks = swarm.parse_tasks(manager.run(swarm.service_ps(service), check=False).stdout)
    failed = [t for t in tasks if t.error and t.current in ("failed", "rejected")]
    for task in failed[:2]:  # a task ID is what `service logs` takes for one task
        logs = manager.run(swarm.service_logs(task.id, tail=policy.log_lines), check=False)
        tail = [line for line in ((logs.stdout or "") + (logs.stderr or "")).splitlines()
                if line.strip()][-policy.log_lines:]
        if tail:
            lines.append(f"  {task.name} on {task.node}, its last {len(tail)} log lines:")
            lines += [f"    {line}" for line in tail]
    lines.append(f"  now serving: {service} release {release_of(manager, service)} "
                 f"({state.updated}/{state.total} tasks on its spec's image, phase "
                 f"{state.phase})")
    return "\n".join(lines)


def _phase_text(state: swarm.Rollout) -> str:
    return {
        swarm.ROLLBACK_STARTED: "the update failed and Swarm is rolling it back",
        swarm.ROLLBACK_COMPLETED: "the update failed and Swarm rolled it back",
        swarm.ROLLBACK_PAUSED: "the update failed and its rollback paused",
        swarm.PAUSED: "the update failed and paused",
    }.get(state.phase, state.phase)
