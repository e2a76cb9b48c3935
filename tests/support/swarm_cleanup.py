"""Finding and removing what the Swarm rig (tests/support/swarm.py) leaves on this machine:
processes, namespaces and their veths, cgroups, the rig directory.

Every trace carries the rig's name, `deploy-swarm-<pid>-<hex>`: the namespaces in /run/netns
(`…-nK` for the nodes, `…-br` for the bridge), each node's cgroup parent at the top of each
cgroup hierarchy, the directory in the temp dir (dockerd's and sshd's command lines name
it), and the veths `ds<hex>r` (this machine's end) and `ds<hex>nK`. A rig whose pid is gone
was interrupted. Nothing here matches the network-namespace hosts' `deploy-netns-…`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

from tests.support import sshd
from tests.support.netns_cleanup import TMP, alive, sweep

PREFIX = "deploy-swarm-"
NAME_RE = re.compile(rf"^{re.escape(PREFIX)}(\d+)-([0-9a-f]+)(?:-(n\d+|br))?$")


def _rigs(include_live: bool) -> dict[str, set[str]]:
    """Rig name -> its namespaces (and the rig's directory), for rigs whose pid is gone
    (or every rig, with include_live)."""
    found: dict[str, set[str]] = {}

    def add(name: str) -> None:
        m = NAME_RE.match(name)
        if m and (include_live or not alive(int(m[1]))):
            found.setdefault(f"{PREFIX}{m[1]}-{m[2]}", set()).add(name)

    netns_dir = Path("/run/netns")
    for entry in sorted(netns_dir.iterdir()) if netns_dir.is_dir() else []:
        add(entry.name)
    for entry in TMP.glob(f"{PREFIX}*"):
        if entry.is_dir():
            add(entry.name)
    for top in Path("/sys/fs/cgroup").glob(f"*/{PREFIX}*-n*"):
        add(top.name)
    for top in Path("/sys/fs/cgroup").glob(f"{PREFIX}*-n*"):
        add(top.name)
    return found


def cleanup_leftovers(include_live: bool = False) -> list[str]:
    """Remove interrupted rigs (all rigs with include_live); what was removed, a line each."""
    removed = []
    for rig, names in _rigs(include_live).items():
        rig_id = NAME_RE.match(rig)[2]
        marker = f"{TMP / rig}/".encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        sshd._kill(int(entry.name), signal.SIGKILL)
                except OSError:
                    continue
        for name in sorted(names - {rig}):
            part = NAME_RE.match(name)[3]
            veth = f"ds{rig_id}r" if part == "br" else f"ds{rig_id}{part}"
            problems = sweep(name, veth)
            removed.append(f"{name}: namespace, veth, processes, cgroups"
                           + (f" (left: {'; '.join(problems)})" if problems else ""))
        if (TMP / rig).exists():
            shutil.rmtree(TMP / rig, ignore_errors=True)
            removed.append(str(TMP / rig))
    return removed


def running_rigs() -> list[dict]:
    """rig.json of every live rig (started by `up` or a test run)."""
    states = []
    for rig in sorted(_rigs(include_live=True)):
        m = NAME_RE.match(rig)
        state = TMP / rig / "rig.json"
        if alive(int(m[1])) and state.exists():
            states.append(json.loads(state.read_text()))
    return states
