"""Finding and removing what the network-namespace test hosts (tests/support/netns.py) leave
on this machine: processes, the namespace and its veth, cgroups, the rig directory.

Every trace carries the rig's name, `deploy-netns-<pid>-<hex>` (hosts: `…-hK`): the
namespaces in /run/netns, the cgroup parent of each host's dockerd at the top of each
cgroup hierarchy, the directory in the temp dir (dockerd's and sshd's command lines name
it), and the root end of each veth, `dn<hex>hK`. A rig whose pid is gone was interrupted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import sshd

PREFIX = "deploy-netns-"
TMP = Path(tempfile.gettempdir())
NAME_RE = re.compile(rf"^{re.escape(PREFIX)}(\d+)-([0-9a-f]+)(?:-h(\d+))?$")


class NetnsError(RuntimeError):
    """The rig could not be set up or torn down; the message says what and where."""


def run(argv: list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` exited with {done.returncode}: "
                         f"{(done.stderr or done.stdout).strip()[:500]}")
    return done


def pids_in_netns(netns: str) -> list[int]:
    done = run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def cgroup_dirs(name: str) -> list[Path]:
    """This name's cgroup directories in every hierarchy, deepest first."""
    found = []
    for top in cgroup_tops(name):
        found.extend(sorted((p for p in top.rglob("*") if p.is_dir()),
                            key=lambda p: -len(p.parts)))
        found.append(top)
    return found


def cgroup_tops(pattern: str) -> list[Path]:
    """--cgroup-parent=/NAME: NAME at the top of each v1 hierarchy, or of the v2 tree."""
    root = Path("/sys/fs/cgroup")
    return [p for p in [*root.glob(pattern), *root.glob(f"*/{pattern}")] if p.is_dir()]


def pids_in_cgroups(name: str) -> list[int]:
    pids = set()
    for d in cgroup_dirs(name):
        try:
            pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        except (OSError, ValueError):
            pass
    return sorted(pids)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(netns: str, veth: str) -> list[str]:
    """Kill what is left in the namespace and its cgroups, delete the veth, the
    namespace and the cgroups. Returns what could not be removed."""
    deadline = time.monotonic() + 10
    while True:
        pids = set(pids_in_netns(netns)) | set(pids_in_cgroups(netns))
        pids.discard(os.getpid())
        if not pids or time.monotonic() > deadline:
            break
        for pid in pids:
            sshd._kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    problems = [f"processes {sorted(pids)} still in {netns}"] if pids else []
    if Path("/sys/class/net", veth).exists():
        run(["ip", "link", "del", veth], check=False)
    if Path("/run/netns", netns).exists():
        done = run(["ip", "netns", "del", netns], check=False)
        if done.returncode != 0:
            problems.append(f"ip netns del {netns}: {done.stderr.strip()}")
    for d in cgroup_dirs(netns):
        try:
            d.rmdir()
        except OSError as e:
            problems.append(f"cgroup {d}: {e}")
    return problems


def leftovers(include_live: bool = False) -> dict[str, dict[str, list[str]]]:
    """Rigs by name whose owning process is gone: their namespaces, dirs and cgroups."""
    found: dict[str, dict[str, list[str]]] = {}

    def add(kind: str, name: str) -> None:
        match = NAME_RE.match(name)
        if not match or (not include_live and alive(int(match[1]))):
            return
        rig = f"{PREFIX}{match[1]}-{match[2]}"
        found.setdefault(rig, {"netns": [], "dirs": [], "cgroups": []})[kind].append(name)

    netns_dir = Path("/run/netns")
    for entry in sorted(netns_dir.iterdir()) if netns_dir.is_dir() else []:
        add("netns", entry.name)
    for entry in sorted(TMP.glob(f"{PREFIX}*")):
        if entry.is_dir():
            add("dirs", entry.name)
    cgroups = {p.name for p in cgroup_tops(f"{PREFIX}*-h*")}
    for name in sorted(cgroups):
        add("cgroups", name)
    return found


def cleanup_leftovers(include_live: bool = False) -> list[str]:
    """Remove the leftovers of interrupted rigs; what was removed, one line each."""
    removed = []
    for rig, parts in leftovers(include_live).items():
        rig_id = NAME_RE.match(rig)[2]
        # dockerd and sshd outside the namespace list (a namespace already deleted).
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if f"{TMP / rig}/".encode() in cmdline and int(entry.name) != os.getpid():
                    sshd._kill(int(entry.name), signal.SIGKILL)
        for name in sorted(set(parts["netns"]) | set(parts["cgroups"])):
            host = name.rsplit("-", 1)[1]
            problems = sweep(name, f"dn{rig_id}{host}")
            removed.append(f"{name}: namespace, veth, processes, cgroups"
                           + (f" (left: {'; '.join(problems)})" if problems else ""))
        if (TMP / rig).exists():
            shutil.rmtree(TMP / rig, ignore_errors=True)
            removed.append(f"{TMP / rig}")
    return removed
