"""HAProxy's runtime API as data: command builders, parsers, the switch plan, the drain policy.

Nothing here runs a process. The proxy container has bash but no socat, so every command
reaches the API as ``docker exec <proxy> bash -c <API_SCRIPT> bash <command>``: a constant
script that opens ``/dev/tcp/127.0.0.1/9999`` (the ``stats socket`` in haproxy.cfg, bound
to the container's own loopback), sends one line and prints the answer. The argv goes
through deploy/shell.py like every command, so it runs unchanged on a host's Connection.

The routing model (the haproxy.cfg that deploy/commands/proxyconf.py renders): one HAProxy
backend per app service, named after it, with eight slots, ``slot1``..``slot8``, in
maintenance with a placeholder address until a switch gives one a container's IP and port.
Nothing routes by service name: only a switch (or `invoke up`'s sync) puts a container in a
slot. The backend ``deploy_state`` holds one server, ``serving``: in maintenance while the
host drains, which turns the load balancer's health check (PROXY_HEALTH_PATH) to 503.

A switch, in HAProxy's words:
  1. prepare: ``set server web/slotN addr <ip> port 8000; set server web/slotN state drain``
     for each new container: it is health-checked but takes no traffic (weight 0);
  2. wait until each new slot is UP with a passed check *at its new address*;
  3. flip, in one API call: new slots ``state ready``, old slots ``state drain`` — the point
     of no return, where traffic moves from the old release to the new one;
  4. wait until the old slots' current sessions are 0 (or the drain timeout), then
     ``state maint``; the old containers are then stopped (they drain on SIGTERM too).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from deploy.commands.project import PROXY_SERVICE
from deploy.errors import DeployError

SERVICE = PROXY_SERVICE  # the Compose service the tool adds to the project (proxyconf.py)
STATE_BACKEND = "deploy_state"  # the host's own state, for the load balancer's check
STATE_SERVER = "serving"
SLOT_PREFIX = "slot"
SLOTS = 8
API_PORT = 9999
STATE_FILE = "/var/lib/haproxy/server-state"
PLACEHOLDER_ADDR = "127.0.0.1"  # a slot nobody was given (haproxy.cfg: init-addr …,127.0.0.1)

# `show servers state` values (HAProxy's management guide, "show servers state").
OP_STOPPED, OP_STARTING, OP_RUNNING, OP_STOPPING = 0, 1, 2, 3
ADMF_FMAINT, ADMF_IMAINT, ADMF_CMAINT = 0x01, 0x02, 0x04
ADMF_FDRAIN, ADMF_IDRAIN, ADMF_RMAINT = 0x08, 0x10, 0x20
_MAINT = ADMF_FMAINT | ADMF_IMAINT | ADMF_RMAINT
_DRAIN = ADMF_FDRAIN | ADMF_IDRAIN
CHECK_PASSED = 3  # srv_check_result: CHK_RES_PASSED
CHECK_FAILED = 2  # CHK_RES_FAILED (0, CHK_RES_UNKNOWN: a check is running right now)

# The constant script: "$1" is the command line, whose answer is printed; with "$2", the
# routing (`show servers state`, on a second connection) is then saved to that file
# (atomically: written beside it, then renamed). Exit 3: the API is not there.
API_SCRIPT = (
    f'exec 3<>/dev/tcp/127.0.0.1/{API_PORT} || exit 3\n'
    'printf "%s\\n" "$1" >&3\n'
    'cat <&3 || exit\n'
    '[ -n "${2:-}" ] || exit 0\n'
    f'exec 4<>/dev/tcp/127.0.0.1/{API_PORT} || exit 3\n'
    'printf "show servers state\\n" >&4\n'
    'cat <&4 >"$2.tmp" && mv -f "$2.tmp" "$2"'
)

_SLOT_RE = re.compile(rf"^{SLOT_PREFIX}([1-9][0-9]*)$")
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")  # a Compose service name


@dataclass(frozen=True)
class DrainPolicy:
    """Every wait of a switch, in one place (tested as data: total budget, longest wait)."""

    drain_timeout: float = 30.0  # DRAIN_TIMEOUT: old slots' sessions reach 0 by then
    up_timeout: float = 15.0  # new slots must pass a check at their new address by then
    poll: float = 0.1  # how often the API is asked while waiting
    stop_margin: float = 5.0  # `docker stop -t`: the backend's own drain plus this

    @property
    def stop_seconds(self) -> int:
        """`docker stop -t`: the backend drains on SIGTERM for up to DRAIN_TIMEOUT."""
        return math.ceil(self.drain_timeout + self.stop_margin)

    @property
    def total_budget(self) -> float:
        """The longest a switch can take after the new containers are healthy."""
        return self.up_timeout + self.drain_timeout + self.stop_seconds

    @property
    def longest_wait(self) -> float:
        return max(self.up_timeout, self.drain_timeout, self.stop_seconds)


# --- commands --------------------------------------------------------------------------


def slot_names(count: int = SLOTS) -> list[str]:
    return [f"{SLOT_PREFIX}{i}" for i in range(1, count + 1)]


def _slot(backend: str, name: str) -> str:
    if not _SLOT_RE.match(name):
        raise ValueError(f"not a slot name: {name!r}")
    if not _NAME_RE.match(backend):
        raise ValueError(f"not a backend name: {backend!r}")
    return f"{backend}/{name}"


def _ip(value: str) -> str:
    return str(ipaddress.ip_address(value))  # ValueError on anything else


def api(container: str, command: str, save: bool = False) -> list[str]:
    """argv: one runtime-API command line in the proxy container; ``save``: then the
    routing saved to the state file HAProxy loads when it starts, in the same exec."""
    if not container or container.startswith("-"):
        raise ValueError(f"not a container id: {container!r}")
    argv = ["docker", "exec", container, "bash", "-c", API_SCRIPT, "bash", command]
    return [*argv, STATE_FILE] if save else argv


def join(*commands: str) -> str:
    """Several commands in one line: HAProxy runs them in order, in one API call."""
    parts = [c for c in commands if c]
    if any(";" in c or "\n" in c for c in parts):
        raise ValueError("a command must not contain ';' or a newline")
    return "; ".join(parts)


def show_servers_state() -> str:
    return "show servers state"  # every backend


def show_stat() -> str:
    """Every backend's servers (type 4), every column (scur: current sessions)."""
    return "show stat -1 4 -1"


def _prepare(backend: str, slot: str, ip: str, port: int) -> list[str]:
    """A slot leaving maintenance is UP at once, and keeps the result of the last check it
    had, at its *old* address, until its first check at the new one completes (measured on
    2.6: `op 2, check_result 3` in the same API call). Forced down, it is UP only once a
    check passed at the new address: a deploy never switches to a container that was
    never checked."""
    return [f"set server {_slot(backend, slot)} addr {_ip(ip)} port {int(port)}",
            f"set server {_slot(backend, slot)} state drain",
            f"set server {_slot(backend, slot)} health down"]


def prepare(backend: str, slot: str, ip: str, port: int) -> str:
    """Point a slot at a container; health-checked but weight 0 (drain) until the flip."""
    return join(*_prepare(backend, slot, ip, port))


def assign(plans: Iterable[SwitchPlan]) -> str:
    """One API call for a switch's preparation: the stale slots to maintenance, then each
    new slot pointed at its container, in drain."""
    plans = list(plans)
    return join(*(c for p in plans for c in _states(p.backend, p.stale, "maint")),
                *(c for p in plans for slot, ip in p.new.items()
                  for c in _prepare(p.backend, slot, ip, p.port)))


def _states(backend: str, slots: Iterable[str], state: str) -> list[str]:
    if state not in ("ready", "drain", "maint"):
        raise ValueError(f"not a server state: {state!r}")
    return [f"set server {_slot(backend, s)} state {state}" for s in slots]


def set_state(backend: str, slots: Iterable[str], state: str) -> str:
    return join(*_states(backend, slots, state))


def flip(plans: Iterable[SwitchPlan]) -> str:
    """The switch itself, one API call for every app service: new slots take traffic, old
    ones stop taking it."""
    plans = list(plans)
    return join(*(c for p in plans for c in _states(p.backend, p.new, "ready")),
                *(c for p in plans for c in _states(p.backend, p.old, "drain")))


def host_state(serving: bool) -> str:
    """The load balancer's check (PROXY_HEALTH_PATH) answers 200 while this server is
    ready and some app slot is up; 503 while it is in maintenance (the host drains)."""
    return (f"set server {STATE_BACKEND}/{STATE_SERVER} state "
            f"{'ready' if serving else 'maint'}")


# --- parsers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """One line of `show servers state`."""

    name: str
    addr: str
    port: int
    op_state: int
    admin_state: int
    check_result: int
    weight: int = 1
    backend: str = ""

    @property
    def is_slot(self) -> bool:
        return bool(_SLOT_RE.match(self.name))

    @property
    def maint(self) -> bool:
        return bool(self.admin_state & _MAINT)

    @property
    def draining(self) -> bool:
        return not self.maint and bool(self.admin_state & _DRAIN)

    @property
    def ready(self) -> bool:
        """Takes new requests when UP: not in maintenance, not draining."""
        return not self.maint and not self.draining

    @property
    def up(self) -> bool:
        return self.op_state == OP_RUNNING

    @property
    def assigned(self) -> bool:
        """A slot given a container's address (not the placeholder)."""
        return self.addr not in (PLACEHOLDER_ADDR, "-", "") and self.port > 1

    @property
    def routed(self) -> bool:
        """Takes new requests right now."""
        return self.assigned and self.ready and self.up

    @property
    def state(self) -> str:
        """maint / drain / ready, then UP or DOWN: `ready UP`, `drain UP`, `maint`."""
        if self.maint:
            return "maint"
        admin = "drain" if self.draining else "ready"
        return f"{admin} {'UP' if self.up else 'DOWN'}"


def _table(text: str, what: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line for line in lines if line.startswith("#")), None)
    if header is None:
        raise DeployError(f"proxy: unexpected answer to {what}: {text.strip()[:200]!r}")
    return header.lstrip("#").split(), [line.split() for line in lines
                                        if not line.startswith("#") and line[0].isdigit()]


def parse_servers_state(text: str, backend: str | None = None) -> list[Server]:
    """`show servers state`: a version line, a `# be_id be_name …` header, rows; with
    ``backend``, that backend's servers only."""
    columns, rows = _table(text, "show servers state")
    out = []
    for row in rows:
        if len(row) < len(columns) - 2:  # trailing columns vary between versions
            continue
        v = dict(zip(columns, row, strict=False))
        if backend is not None and v.get("be_name") != backend:
            continue
        out.append(Server(
            name=v["srv_name"], addr=v["srv_addr"],
            port=int(v.get("srv_port") or 0) if (v.get("srv_port") or "").isdigit() else 0,
            op_state=int(v["srv_op_state"]), admin_state=int(v["srv_admin_state"]),
            check_result=int(v.get("srv_check_result") or 0),
            weight=int(v.get("srv_uweight") or 0), backend=v.get("be_name", "")))
    return out


def parse_stat(text: str) -> dict[tuple[str, str], int]:
    """`show stat -1 4 -1` (CSV): current sessions (scur) per (backend, server)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        raise DeployError(f"proxy: unexpected answer to show stat: {text.strip()[:200]!r}")
    columns = lines[0][2:].split(",")
    out = {}
    for line in lines[1:]:
        v = dict(zip(columns, line.split(","), strict=False))
        if v.get("svname") not in (None, "FRONTEND", "BACKEND"):
            out[(v["pxname"], v["svname"])] = int(v.get("scur") or 0)
    return out


def check_answer(text: str, what: str) -> None:
    """`set server …` answers nothing on success, a sentence on failure; the address change
    answers with what it changed."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("IP changed from", "no need to change")):
            continue
        raise DeployError(f"proxy: {what}: HAProxy answered: {line}")


# --- plans ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SwitchPlan:
    backend: str  # the app service, and its HAProxy backend
    port: int  # where its containers listen (APP_PORT)
    new: dict[str, str]  # slot -> IP of a new container
    old: list[str] = field(default_factory=list)  # slots routed now, drained by the flip
    stale: list[str] = field(default_factory=list)  # slots with an address, not routed: maint


def plan_switch(servers: Sequence[Server], new_ips: Sequence[str], backend: str,
                port: int) -> SwitchPlan:
    """Which slots of ``backend`` take the new containers, which are drained by the flip,
    which are cleared. Old = slots that take traffic now (ready); a slot that is draining or
    whose address is a new container's is not reused until it is put in maintenance."""
    slots = [s for s in servers if s.is_slot and s.backend == backend]
    wanted = list(dict.fromkeys(_ip(ip) for ip in new_ips))
    old = [s.name for s in slots if s.assigned and not s.maint and not s.draining
           and s.addr not in wanted]
    stale = [s.name for s in slots if s.assigned and not s.maint
             and s.name not in old]
    busy = set(old) | set(stale)
    free = [s.name for s in slots if s.name not in busy]
    if len(free) < len(wanted):
        raise DeployError(f"proxy: {backend}: {len(wanted)} new container(s) need free "
                          f"slots, but only {len(free)} of {len(slots)} are free (old: "
                          f"{', '.join(old)})")
    return SwitchPlan(backend, int(port), new=dict(zip(free, wanted, strict=False)), old=old,
                      stale=stale)


def routed(servers: Sequence[Server], backend: str) -> dict[str, Server]:
    """IP -> slot for every slot of ``backend`` that takes new requests."""
    return {s.addr: s for s in servers if s.is_slot and s.backend == backend and s.routed}


def new_slots_up(servers: Sequence[Server], plan: SwitchPlan, *, passed: bool = True
                 ) -> tuple[bool, list[str]]:
    """Every new slot UP with a passed check at its new address; else what is missing."""
    by_name = {s.name: s for s in servers if s.backend == plan.backend}
    missing = []
    for slot, ip in plan.new.items():
        s = by_name.get(slot)
        # ``passed``: a check passed at the new address (the first wait). Later (a host's
        # last look before its switch), UP and no failed check: a check running right now
        # reads as "unknown".
        ok = s is not None and s.addr == ip and s.up and (
            s.check_result == CHECK_PASSED if passed else s.check_result != CHECK_FAILED)
        if not ok:
            missing.append(f"{plan.backend}/{slot} ({ip}): "
                           + (s.state + f", check result {s.check_result}" if s
                              else "not found"))
    return not missing, missing
