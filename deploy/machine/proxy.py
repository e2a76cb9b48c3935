"""The proxy of one stack, driven through HAProxy's runtime API (a `docker exec` of
commands/haproxy.py's constant script in the proxy container): read the routing, point
slots at new containers, wait for their checks, flip, drain.

The command lines and the parsers of HAProxy's answers are deploy/commands/haproxy.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deploy.commands import haproxy as proxy
from deploy.commands.compose import ContainerState
from deploy.errors import DeployError
from deploy.machine.stack import Stack
from deploy.settings import Settings


def running_proxies(states: list[ContainerState]) -> list[ContainerState]:
    """The stack's proxy containers that run (one, or none)."""
    return [s for s in states if s.service == proxy.SERVICE and s.status == "running"]


def policy_for(settings: Settings) -> proxy.DrainPolicy:
    return proxy.DrainPolicy(drain_timeout=settings.drain_timeout)


@dataclass
class Proxy:
    """The proxy container of one stack, reached through its runtime API."""

    stack: Stack
    policy: proxy.DrainPolicy
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _container: str | None = field(default=None, init=False, repr=False)
    _up: bool = field(default=False, init=False, repr=False)  # the last answers() said yes

    def container(self) -> str:
        """The running proxy container, looked up once: a deploy never recreates it after
        this object exists (base_up comes first), and a restart keeps its ID."""
        if self._container is None:
            running = running_proxies(self.stack.states())
            if not running:
                raise DeployError("proxy: the proxy service is not running (`invoke up` "
                                  "starts it)")
            self._container = running[0].id
        return self._container

    def remember(self, states: list[ContainerState]) -> None:
        """Take the proxy container from states just read (one query fewer)."""
        running = running_proxies(states)
        if running and self._container is None:
            self._container = running[0].id

    def call(self, command: str, what: str, save: bool = False) -> str:
        """One runtime-API command line; ``save``: the routing saved right after it (what
        HAProxy loads when it starts), in the same `docker exec`."""
        result = self.stack.run(proxy.api(self.container(), command, save), check=False)
        if result.exited != 0:
            detail = (result.stderr or result.stdout or "").strip().splitlines()[-3:]
            raise DeployError(f"proxy: {what}: the runtime API did not answer (exit "
                              f"{result.exited})" + "".join(f"\n  {line}" for line in detail))
        return result.stdout

    def command(self, command: str, what: str, save: bool = False) -> None:
        proxy.check_answer(self.call(command, what, save), what)

    def servers(self) -> list[proxy.Server]:
        """Every backend's servers (slots of each app service, and the host's state)."""
        return proxy.parse_servers_state(self.call(proxy.show_servers_state(), "routing"))

    def sessions(self) -> dict[tuple[str, str], int]:
        return proxy.parse_stat(self.call(proxy.show_stat(), "sessions"))

    def set_serving(self, serving: bool) -> None:
        """The load balancer's check: 503 while this host drains (``serving=False``)."""
        self.command(proxy.host_state(serving), "host " + ("serving" if serving
                                                            else "draining"), save=True)

    def prepare(self, plans: list[proxy.SwitchPlan], timeout: float | None = None) -> None:
        """``assign``, then wait until each new slot passed a check."""
        self.assign(plans)
        self.wait_up(plans, timeout)

    def assign(self, plans: list[proxy.SwitchPlan]) -> None:
        """New slots get their addresses, weight 0 (stale ones maintenance), in one API
        call: HAProxy checks them from then on, every 0.1 s until they pass."""
        if any(p.new or p.stale for p in plans):
            self.command(proxy.assign(plans), "prepare " + ", ".join(
                f"{p.backend}/{slot}" for p in plans for slot in p.new))
        self._up = False

    def missing(self, plans: list[proxy.SwitchPlan], passed: bool = True) -> list[str]:
        """The new slots not (yet) up; ``passed=False``: up, and no failed check."""
        servers = self.servers()
        return [m for p in plans for m in proxy.new_slots_up(servers, p, passed=passed)[1]]

    def answers(self, plans: list[proxy.SwitchPlan]) -> bool:
        """Has every new slot passed HAProxy's check at its address (HEALTH_PATH, 200)?"""
        self._up = not self.missing(plans)
        return self._up

    def wait_up(self, plans: list[proxy.SwitchPlan], timeout: float | None = None) -> None:
        """Until every new slot passed a check (at once when ``answers`` just said so)."""
        if self._up:
            return
        timeout = self.policy.up_timeout if timeout is None else timeout
        deadline = self.clock() + timeout
        while True:
            missing = self.missing(plans)
            if not missing:
                return
            if self.clock() >= deadline:
                raise DeployError(
                    f"proxy: the new container(s) did not pass HAProxy's health check within "
                    f"{timeout:g} s: {'; '.join(missing)}")
            self.sleep(self.policy.poll)

    def drain(self, plans: list[proxy.SwitchPlan]) -> float:
        """Wait until the old slots' current sessions reach 0 (or the drain timeout); then
        maintenance. Returns the seconds waited."""
        slots = {(p.backend, slot) for p in plans for slot in p.old}
        started = self.clock()
        deadline = started + self.policy.drain_timeout
        busy = {}
        while slots:
            busy = {k: n for k, n in self.sessions().items() if k in slots and n}
            if not busy or self.clock() >= deadline:
                break
            self.sleep(self.policy.poll)
        if busy:
            self.stack.out(f"   drain timeout ({self.policy.drain_timeout:g} s, DRAIN_TIMEOUT): "
                f"{sum(busy.values())} request(s) still in flight on "
                f"{', '.join(f'{b}/{s}' for b, s in busy)}; the containers get "
                f"{self.policy.stop_seconds} s more to finish them")
        if slots:
            self.command(proxy.join(*(proxy.set_state(p.backend, p.old, "maint")
                                      for p in plans if p.old)),
                         "old slots to maintenance", save=True)
        return self.clock() - started

    def sync(self, wanted: dict[str, list[ContainerState]], ports: dict[str, int],
             timeout: float | None = None) -> list[str]:
        """Route each app service to exactly these containers (`invoke up`, or after a
        restart), once HAProxy's checks pass; returns the slots that route."""
        servers = self.servers()
        plans, kept = [], []
        for backend, containers in wanted.items():
            now = proxy.routed(servers, backend)
            ips = [s.ip for s in containers if s.ip]
            keep = {ip: s for ip, s in now.items() if ip in ips}
            kept += [f"{backend}/{s.name}" for s in keep.values()]
            if sorted(now) == sorted(ips) and all(s.ready for s in now.values()):
                continue
            rest = [s for s in servers if s.backend == backend and s not in keep.values()]
            plans.append(proxy.plan_switch(rest, [ip for ip in ips if ip not in keep],
                                           backend, ports[backend]))
        if plans:
            self.prepare(plans, timeout)
            old = any(p.old for p in plans)
            self.command(proxy.flip(plans), "route", save=not old)
            if old:
                self.command(proxy.join(*(proxy.set_state(p.backend, p.old, "maint")
                                          for p in plans if p.old)),
                             "clear old slots", save=True)
        return sorted(kept + [f"{p.backend}/{slot}" for p in plans for slot in p.new])
