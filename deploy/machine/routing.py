"""What `ps` shows and what `up` does about the proxy's routing.

`ps` lists each container with its release and how the proxy sees it; `up` (and `reset`)
routes the proxy to the healthy backend containers, since a restarted proxy may hold the
addresses of containers that are gone.
"""

from __future__ import annotations

from deploy.commands.compose import ContainerState
from deploy.errors import DeployError
from deploy.machine import health
from deploy.machine.containers import backends
from deploy.machine.proxy import Proxy, policy_for, running_proxies
from deploy.machine.stack import Stack


def routes(stack: Stack, states: list[ContainerState]) -> dict[str, str]:
    """Container id -> how the proxy sees it: ``slot2 ready UP`` (routed), ``slot1 drain
    UP``, or ``not routed``; the proxy itself is ``routing API`` (or why it cannot answer);
    empty when there is no running proxy."""
    if not running_proxies(states):
        return {}
    try:
        servers = Proxy(stack, policy_for(stack.settings)).servers()
    except DeployError as exc:
        return {s.id: f"unknown ({str(exc).splitlines()[0]})" for s in backends(states)}
    by_ip = {s.addr: s for s in servers if s.is_slot and s.assigned and not s.maint}
    backup = next((s for s in servers if not s.is_slot), None)
    any_routed = any(s.routed for s in by_ip.values())
    out = {}
    for s in backends(states):
        slot = by_ip.get(s.ip)
        if slot is not None:
            out[s.id] = f"{slot.name} {slot.state}"
        elif not any_routed and backup is not None and backup.addr == s.ip and backup.up:
            out[s.id] = f"{backup.name} (backup, by service name)"
        else:
            out[s.id] = "not routed"
    return out


def resync(stack: Stack) -> list[str]:
    """`invoke up`: route to the running backend containers that are healthy (a restarted
    proxy may hold addresses of containers that are gone). Returns the routed slots."""
    states = stack.states()
    if not running_proxies(states):
        return []
    healthy = [s for s in backends(states) if health.is_ready(s) and s.ip]
    if not healthy:
        return []
    return Proxy(stack, policy_for(stack.settings)).sync(healthy)


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
