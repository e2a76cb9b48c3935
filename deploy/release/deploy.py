"""One deploy of one stack as data: ``Deploy``, which its steps (deploy/release/sequence.py)
advance, its undo, and ``run_steps``, which runs a step list and undoes on any failure or
signal before the switch."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from deploy.commands import docker
from deploy.commands import haproxy as proxy
from deploy.commands.compose import ContainerState
from deploy.errors import DeployError
from deploy.machine.builds import service_image
from deploy.machine.containers import replaced
from deploy.machine.proxy import Proxy, policy_for
from deploy.machine.stack import Stack
from deploy.output import Output
from deploy.settings import Settings


@dataclass
class Deploy:
    """One deploy of one stack, as its steps advance it. ``undo`` takes back what it
    started, at most once, and never once the switch command was sent. Per service maps
    are keyed by the app and worker services (APP_SERVICES, WORKER_SERVICES)."""

    stack: Stack
    release: str
    database: Callable[[], AbstractContextManager[Settings]]
    on_switch: Callable[[], None] | None = None
    proxy: Proxy = field(init=False)
    started: float = field(default_factory=time.perf_counter)
    first_timing: int = 0  # out.timings before this deploy's steps
    states: list[ContainerState] | None = None  # read by a step that may skip the base
    base_skipped: bool = False
    servers: list[proxy.Server] = field(default_factory=list)
    serving: dict[str, list[ContainerState]] = field(default_factory=dict)
    previous_live: dict[str, str | None] = field(default_factory=dict)  # live ref -> image id
    new_ids: dict[str, set[str]] = field(default_factory=dict)
    new: dict[str, list[ContainerState]] = field(default_factory=dict)
    plans: list[proxy.SwitchPlan] = field(default_factory=list)
    migrated: object = None  # the runner's result; None without a migrate step
    tables: object = None  # the check-tables report; None without that step
    ready_at: float = 0.0
    undoable: bool = False  # from `tag live` until the switch is sent (or it was undone)
    host_draining: bool = False  # the load balancer's check answers 503
    summary: dict | None = None

    def __post_init__(self) -> None:
        self.proxy = Proxy(self.stack, policy_for(self.stack.settings))
        self.first_timing = len(self.out.timings)

    @property
    def out(self) -> Output:
        return self.stack.out

    @property
    def services(self) -> tuple[str, ...]:
        return replaced(self.stack.settings)

    @property
    def apps(self) -> tuple[str, ...]:
        return self.stack.settings.app_services

    @property
    def target(self) -> str:
        """The images this deploy runs, for its lines."""
        return ", ".join(dict.fromkeys(service_image(self.stack, s, self.release)
                                       for s in self.services))

    @property
    def old_releases(self) -> list[str]:
        return sorted({s.release or "?" for c in self.serving.values() for s in c})

    def undo(self) -> None:
        """Before the switch: the old release keeps serving; take back what was started."""
        if not self.undoable:
            return
        self.undoable = False
        self.out("   the old release keeps serving; removing what this deploy started")
        try:
            if any(p.new for p in self.plans):
                self.proxy.command(proxy.join(*(proxy.set_state(p.backend, p.new, "maint")
                                                for p in self.plans if p.new)),
                                   "clear new slots")
            ids = sorted(i for ids in self.new_ids.values() for i in ids)
            if ids:
                self.stack.run(docker.remove(ids), what="remove new", check=False)
            for live, previous in self.previous_live.items():
                self.stack.run(docker.tag(previous, live) if previous else docker.untag(live),
                               check=False)
        except DeployError as exc:
            self.out(f"   could not undo everything: {str(exc).splitlines()[0]}")


Step = Callable[[Deploy], None]


def run_steps(d: Deploy, steps: Sequence[Step]) -> Deploy:
    """The steps in order; a failure or a signal in any of them undoes the deploy (which
    does nothing once the switch was sent) and goes on."""
    try:
        for step in steps:
            step(d)
    except BaseException:
        d.undo()
        if d.host_draining:
            host_serving_again(d)
        raise
    return d


def host_serving_again(d: Deploy) -> None:
    """The load balancer's check back to 200 (after a host's drain, or its failure)."""
    try:
        d.proxy.set_serving(True)
        d.host_draining = False
    except DeployError as exc:
        d.out(f"   could not set the load balancer check back to 200: {exc}")
