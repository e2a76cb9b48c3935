"""Wait until a stack is healthy, and explain it when it is not.

The probe, the clock and the sleep are injected: the task passes a probe that runs
``compose ps`` + ``docker inspect`` through the one executor; tests pass lists of
``ContainerState`` and a fake clock, so no test waits in real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from deploy.commands.compose import ContainerState
from deploy.errors import DeployError, DeployTimeout

# A failed or ready container is noticed within 0.5 s; a poll (docker ps + inspect) plus
# the exit must fit in that, so poll at half of it.
MAX_INTERVAL = 0.25
LOG_LINES = 30

_STOPPED = frozenset({"exited", "dead"})


class _HealthError(Exception):
    """Mixin: the last states seen, and the ones to blame."""

    def __init__(
        self,
        message: str,
        states: Sequence[ContainerState] = (),
        failing: Sequence[ContainerState] = (),
    ) -> None:
        super().__init__(message)
        self.states = list(states)
        self.failing = list(failing)


class ServiceFailed(_HealthError, DeployError):
    """A container exited, is restart-looping or is unhealthy (exit 1)."""

    exit_code = 1


class HealthTimeout(_HealthError, DeployTimeout):
    """Not every container was ready before the timeout (exit 4)."""

    exit_code = 4


def is_ready(s: ContainerState) -> bool:
    """Healthy when it has a healthcheck, running when it has none."""
    if s.health is not None:
        return s.status == "running" and s.health == "healthy"
    return s.status == "running"


def problem(s: ContainerState, restarts_at_start: int | None = None) -> str | None:
    """Why this container will not become ready by waiting, or None if it still may.

    ``restarts_at_start`` is its restart count when the wait began: any increase means
    the restart policy brought it back after a crash.
    """
    if s.status in _STOPPED:
        return f"{s.status} with exit code {s.exit_code}"
    if s.status == "restarting":
        return f"restarting (restart-looping, exit code {s.exit_code})"
    if restarts_at_start is not None and s.restart_count > restarts_at_start:
        return f"restarted {s.restart_count - restarts_at_start} time(s) while waiting"
    if s.restart_count >= 2:
        return f"restart-looping ({s.restart_count} restarts)"
    if s.health == "unhealthy":
        last = s.health_log[-1].splitlines()[0][:200] if s.health_log and s.health_log[-1] else ""
        return "unhealthy" + (f"; last probe: {last}" if last else "")
    return None


def summary(s: ContainerState) -> str:
    """``running, health starting`` / ``exited, exit code 3``: one container in a phrase."""
    parts = [s.status or "unknown"]
    if s.health is not None:
        parts.append(f"health {s.health}")
    if s.status in _STOPPED or s.status == "restarting" or s.exit_code:
        parts.append(f"exit code {s.exit_code}")
    if s.restart_count:
        parts.append(f"{s.restart_count} restarts")
    return ", ".join(parts)


def _labels(states: Sequence[ContainerState]) -> dict[str, str]:
    # The service name reads best; replicas of one service need their container name.
    seen: dict[str, int] = {}
    for s in states:
        seen[s.label] = seen.get(s.label, 0) + 1
    return {s.id: (s.label if seen[s.label] == 1 else s.name) for s in states}


def wait_until_healthy(
    probe: Callable[[], list[ContainerState]],
    *,
    timeout: float,
    interval: float = MAX_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_change: Callable[[list[ContainerState]], None] | None = None,
    answers: Callable[[list[ContainerState]], bool] | None = None,
    fresh: bool = False,
    probe_now: Callable[[ContainerState], bool] | None = None,
) -> list[ContainerState]:
    """Poll ``probe`` until every container is ready; return the final states.

    Raises ServiceFailed as soon as a container exited, restart-loops or is unhealthy
    (no point waiting out the timeout), HealthTimeout when time runs out. One-off
    ``compose run`` containers are ignored. ``interval`` is capped at 0.25 s and counts
    the probe's own time, so a change is noticed within one interval.

    ``answers(states)``: another way to be ready, asked while Docker's healthcheck has not
    passed yet and no container has a problem (a deploy: the proxy's check of the new
    containers). ``fresh``: the containers were just created, so any restart counts (not
    only one after the first poll). ``probe_now(container)``: run the container's own
    healthcheck at once (a passed one counts as healthy, as Docker's would at its next
    probe): Docker runs the first probe a whole healthcheck interval after the start.
    """
    interval = min(max(interval, 0.0), MAX_INTERVAL)
    deadline = clock() + timeout
    restarts_at_start: dict[str, int] = {}
    last_seen: tuple = ()
    passed: set[str] = set()  # containers whose healthcheck probe_now ran and passed
    while True:
        polled_at = clock()
        states = [s for s in probe() if not s.one_off]
        for s in states:
            restarts_at_start.setdefault(s.id, 0 if fresh else s.restart_count)
        seen = tuple((s.id, s.status, s.health, s.restart_count) for s in states)
        if on_change is not None and seen != last_seen:
            on_change(states)
        last_seen = seen
        _raise_failed(states, restarts_at_start)
        if probe_now is not None:
            passed.update(s.id for s in states if s.status == "running"
                          and s.health == "starting" and s.id not in passed and probe_now(s))
        if states and all(_ready(s, passed) for s in states):
            # A healthcheck that passed here is what Docker reports at its next probe.
            return [replace(s, health="healthy") if s.id in passed else s for s in states]
        if states and answers is not None and all(s.status == "running" for s in states) \
                and answers(states):
            return states
        now = clock()
        if now >= deadline:
            raise _timed_out(states, passed, timeout)
        sleep(max(0.0, min(polled_at + interval, deadline) - now))


def _ready(s: ContainerState, passed: set[str]) -> bool:
    return is_ready(s) or (s.status == "running" and s.id in passed)


def _raise_failed(states: list[ContainerState], restarts_at_start: dict[str, int]) -> None:
    """ServiceFailed naming every container that will not become ready by waiting."""
    labels = _labels(states)
    failed = [(s, why) for s in states if (why := problem(s, restarts_at_start[s.id]))]
    if failed:
        raise ServiceFailed(
            "service failed: " + "; ".join(f"{labels[s.id]}: {why}" for s, why in failed),
            states,
            [s for s, _ in failed],
        )


def _timed_out(states: list[ContainerState], passed: set[str], timeout: float
               ) -> HealthTimeout:
    if not states:
        return HealthTimeout(f"no containers after {timeout:g}s: is the stack up? "
                             "(compose ps listed none for this project)", states, [])
    labels = _labels(states)
    waiting = [s for s in states if not _ready(s, passed)]
    return HealthTimeout(
        f"not healthy after {timeout:g}s: "
        + "; ".join(f"{labels[s.id]}: {summary(s)}" for s in waiting),
        states,
        waiting,
    )


def describe_failure(
    states: Iterable[ContainerState],
    logs_by_service: Mapping[str, Sequence[str]],
    *,
    log_lines: int = LOG_LINES,
) -> str:
    """A report for a human, per container: state, health, exit code, restarts, the last
    health-probe outputs and the last ``log_lines`` log lines of its service.

    Pass the exception's ``failing``; ready containers passed in get one line only.
    """
    states = list(states)
    labels = _labels(states)
    blocks = []
    for s in states:
        if is_ready(s) and not s.restart_count:
            blocks.append(f"{labels[s.id]}: {summary(s)}")
            continue
        lines = [
            f"== {labels[s.id]} ({s.name}) ==",
            f"  state:      {s.status or 'unknown'}",
            f"  health:     {s.health or 'no healthcheck'}",
            f"  exit code:  {s.exit_code}",
            f"  restarts:   {s.restart_count}",
        ]
        if s.error:
            lines.append(f"  error:      {s.error}")
        if s.finished_at and s.status in _STOPPED:
            lines.append(f"  finished:   {s.finished_at}")
        if s.health_log:
            lines.append("  last health-probe outputs:")
            for out in s.health_log:
                lines += [f"    | {line}" for line in (out.splitlines() or ["(no output)"])]
        log = list(logs_by_service.get(s.service, ()))[-log_lines:] if log_lines else []
        if log:
            lines.append(f"  last {len(log)} log lines:")
            lines += [f"    {line.rstrip()}" for line in log]
        else:
            lines.append("  logs: (none)")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
