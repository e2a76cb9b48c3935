"""What `ps` shows and what `up` does about the proxy's routing.

`ps` lists each container with its release and how the proxy sees it; `up` (and `reset`)
routes the proxy to the healthy backend containers, since a restarted proxy may hold the
addresses of containers that are gone.
"""

from __future__ import annotations

from deploy.commands.compose import ContainerState
from deploy.errors import DeployError
from deploy.machine.containers import of_service
from deploy.machine.proxy import Proxy, policy_for, running_proxies
from deploy.machine.stack import Stack


def _app_containers(stack: Stack, states: list[ContainerState]) -> list[ContainerState]:
    return [s for a in stack.settings.app_services for s in of_service(states, a)]


def routes(stack: Stack, states: list[ContainerState]) -> dict[str, str]:
    """Container id -> how the proxy sees it: ``web/slot2 ready UP`` (routed), ``web/slot1
    drain UP``, or ``not routed``; empty when there is no running proxy."""
    if not running_proxies(states):
        return {}
    try:
        servers = Proxy(stack, policy_for(stack.settings)).servers()
    except DeployError as exc:
        return {s.id: f"unknown ({str(exc).splitlines()[0]})"
                for s in _app_containers(stack, states)}
    by_addr = {(s.backend, s.addr): s for s in servers
               if s.is_slot and s.assigned and not s.maint}
    out = {}
    for s in _app_containers(stack, states):
        slot = by_addr.get((s.service, s.ip))
        out[s.id] = f"{slot.backend}/{slot.name} {slot.state}" if slot else "not routed"
    return out


def resync(stack: Stack) -> list[str]:
    """`invoke up`: route each app service to its running containers once HAProxy's check
    of each passes (a restarted proxy may hold addresses of containers that are gone, a
    fresh one holds none), and the load balancer's check to 200. Returns the routed slots."""
    s = stack.settings
    states = stack.states()
    if not running_proxies(states):
        return []
    if any(of_service(states, a) for a in s.app_services):
        # Their own healthchecks, run at once: a proxy restarted from its saved routing may
        # hold a slot at a reused address it has not checked yet.
        states = stack.wait_healthy(s.health_timeout, s.app_services) + running_proxies(states)
    wanted = {a: [c for c in of_service(states, a) if c.status == "running" and c.ip]
              for a in s.app_services}
    proxy = Proxy(stack, policy_for(s))
    routed = proxy.sync(wanted, s.app_ports, timeout=s.health_timeout)
    proxy.set_serving(True)
    return routed


def format_states(states: list[ContainerState], routes: dict[str, str] | None = None
                  ) -> list[str]:
    """One row per container; with ``routes`` (container id -> the proxy's view, see
    routes), the release each one runs and whether the proxy routes to it."""
    head = ("SERVICE", "CONTAINER", "STATE", "HEALTH", "EXIT")
    extra = ("RELEASE", "PROXY") if routes is not None else ()
    rows = [(*head, *extra, "PORTS")]
    for s in sorted(states, key=lambda s: (s.service, s.name)):
        more = (s.release or "-", routes.get(s.id, "-")) if routes is not None else ()
        rows.append((s.service, s.name, s.status, s.health or "-", str(s.exit_code), *more,
                     ", ".join(s.ports) or "-"))
    n = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    return ["  ".join(f"{v:<{widths[i]}}" for i, v in enumerate(r[:n])) + "  " + r[n]
            for r in rows]


def state_dict(s: ContainerState, routes: dict[str, str] | None = None) -> dict:
    row = {"service": s.service, "container": s.name, "state": s.status, "health": s.health,
           "exit_code": s.exit_code, "restart_count": s.restart_count, "ports": list(s.ports)}
    if routes is not None:
        row.update(release=s.release or None, proxy=routes.get(s.id))
    return row
