"""A stand-in for the runtime API of the proxy that deploy/commands/proxyconf.py renders,
for unit tests of the deploy sequence: one backend per app service with eight slots, the
backend ``deploy_state`` with its server ``serving``; answers in HAProxy 2.6's own formats
(as tests/support/haproxy-captures/two-*.txt show them).

It keeps the routing the commands change and every command line it was sent (one line per
API call), and answers a command naming a server it does not have as HAProxy does. A slot
is UP with a passed check when its address and port are those of a container that
``answers(backend, addr, port)`` says serves there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from deploy.commands import haproxy as proxy
from tests.support.haproxy import captured

_HEADER = next(line for line in captured("two-state-fresh.txt").splitlines()
               if line.startswith("# be_id"))
_ADMIN = {"maint": 5, "drain": 12, "ready": 4}  # as the captures show slots (CMAINT kept)
_SET_ADDR = re.compile(r"^set server (\S+)/(\S+) addr (\S+) port (\d+)$")
_SET_STATE = re.compile(r"^set server (\S+)/(\S+) state (ready|drain|maint)$")
# Forced down until its next check: here every check is answered at once (``answers``).
_SET_HEALTH = re.compile(r"^set server (\S+)/(\S+) health down$")


@dataclass
class Slot:
    addr: str = proxy.PLACEHOLDER_ADDR
    port: int = 1
    state: str = "maint"
    sessions: int = 0


class FakeProxy:
    def __init__(self, backends: list[str], answers: Callable[[str, str, int], bool]):
        self.backends = {b: {name: Slot() for name in proxy.slot_names()} for b in backends}
        self.serving = True  # deploy_state/serving ready (the load balancer's check 200)
        self.answers = answers
        self.calls: list[str] = []  # every API call's command line, in order

    def route(self, backend: str, slot: str, addr: str, port: int) -> None:
        """As a switch left it: the slot serving that container."""
        self.backends[backend][slot] = Slot(addr, port, "ready")

    def slot(self, backend: str, slot: str) -> Slot:
        return self.backends[backend][slot]

    def routed(self, backend: str) -> list[str]:
        return [s.addr for s in self.backends[backend].values()
                if s.state == "ready" and self._up(backend, s)]

    def _up(self, backend: str, s: Slot) -> bool:
        return s.state != "maint" and s.addr != proxy.PLACEHOLDER_ADDR and self.answers(
            backend, s.addr, s.port)

    # --- the API -----------------------------------------------------------------------

    def call(self, line: str) -> str:
        self.calls.append(line)
        if line == proxy.show_servers_state():
            return self._state()
        if line == proxy.show_stat():
            return self._stat()
        out = []
        for command in line.split("; "):
            out.append(self._set(command))
        return "".join(out)

    def _set(self, command: str) -> str:
        if command == proxy.host_state(True) or command == proxy.host_state(False):
            self.serving = command.endswith("ready")
            return ""
        m = _SET_ADDR.match(command) or _SET_STATE.match(command) or _SET_HEALTH.match(command)
        if m is None:
            return f"Unknown command: {command!r}\n"
        if m.group(1) not in self.backends:
            return "No such backend.\n"  # two-answer-no-such-backend.txt
        slot = self.backends[m.group(1)].get(m.group(2))
        if slot is None:
            return "No such server.\n"
        if m.re is _SET_STATE:
            slot.state = m.group(3)
            return ""
        if m.re is _SET_HEALTH:
            return ""
        was = (slot.addr, slot.port)
        slot.addr, slot.port = m.group(3), int(m.group(4))
        return (f"IP changed from '{was[0]}' to '{slot.addr}', port changed from '{was[1]}' "
                f"to '{slot.port}' by 'stats socket command'\n")

    def _state(self) -> str:
        # As two-state-*.txt show it: the state backend first; its server, unchecked, is
        # running unless in maintenance.
        rows = [self._row(2, proxy.STATE_BACKEND, 1, proxy.STATE_SERVER, "127.0.0.1",
                          2 if self.serving else 0, 0 if self.serving else 1, 0, 1)]
        for be_id, (backend, slots) in enumerate(self.backends.items(), start=3):
            for srv_id, (name, s) in enumerate(slots.items(), start=1):
                up = self._up(backend, s)
                rows.append(self._row(be_id, backend, srv_id, name, s.addr, 2 if up else 0,
                                      _ADMIN[s.state], 3 if up else 0, s.port))
        return "1\n" + _HEADER + "\n" + "\n".join(rows) + "\n"

    @staticmethod
    def _row(be_id, backend, srv_id, name, addr, op, admin, check, port) -> str:
        return (f"{be_id} {backend} {srv_id} {name} {addr} {op} {admin} 1 1 0 15 {check} 2 6 "
                f"0 0 0 slot.invalid {port} - 0 0 - - 0")

    def _stat(self) -> str:
        lines = ["# pxname,svname,qcur,qmax,scur,smax,status"]
        for backend, slots in self.backends.items():
            lines += [f"{backend},{name},0,0,{s.sessions},{s.sessions},UP"
                      for name, s in slots.items()]
            lines.append(f"{backend},BACKEND,0,0,0,0,UP")
        return "\n".join(lines) + "\n"
