"""A three-node Docker Swarm on this one machine: each node a network namespace with its own
hostname, Docker engine and sshd; the nodes joined as three managers.

Why three managers: Raft keeps a quorum with one of three managers gone, so a test can stop
ANY node's engine (the node-loss test stops one) and the Swarm still schedules; with one
manager and two workers, losing the manager freezes the cluster. Tasks run on managers as on
workers (no drain), so the three nodes share the replicas.

Layout of a rig named `deploy-swarm-<pid>-<hex>` (nothing is named like the network-namespace
hosts' `deploy-netns-…`, 10.213.N.x and `dn<hex>hK` of tests/support/netns.py, so both rigs
run side by side and neither one's cleanup touches the other):

- the nodes' L2 segment: bridge `br0` in a namespace of its own, `<rig>-br`. A Docker engine
  in the root namespace sets the host's FORWARD policy to DROP, and with
  bridge-nf-call-iptables=1 traffic between veths on a root-namespace bridge is then dropped
  (a `swarm join` times out); the bridge's own namespace has no such rules. This machine
  reaches the segment through a veth, `ds<hex>r` (10.214.S.1/24, S: the first /24 of
  10.214.0.0/16 no interface or route here uses yet);
- node `nK` (K = 1, 2, 3): namespace `<rig>-nK`, `eth0` 10.214.S.(10+K)/24 on the bridge,
  no default route (nothing can be pulled from outside). An anchor process started by
  `ip netns exec … unshare --uts` sets the hostname `swarm-nK` (without it every node is
  named after this machine and `node.hostname` constraints cannot tell them apart), mounts
  /sys/fs/cgroup again (`ip netns exec` gives a fresh /sys without it, and dockerd fails
  with "Devices cgroup isn't mounted") and binds the node's own directories over /run,
  /root and /etc/docker (dockerd 20.10 takes its engine ID from /etc/docker/key.json).
  dockerd and sshd join it with nsenter: own --data-root, --exec-root /run/docker, socket
  /run/docker.sock (this machine: `<rig dir>/nK/run/docker.sock`), --pidfile, and
  --cgroup-parent /<rig>-nK;
- an sshd per node on 10.214.S.(10+K):22 (tests/support/sshd.py's locked-down setup: its
  own host key, the rig's one client key, every command line recorded); the rig writes the
  key and a known_hosts file with the three host keys.

This kernel has no IPVS and no ESP: VIP services and the ingress routing mesh carry no
traffic and encrypted overlays drop everything. What works, and what the tests use: VXLAN
overlays, `endpoint_mode: dnsrr` (`tasks.<service>` DNS) and `mode: host` published ports.

No node can pull: the images the tests need (.ci/local-images.env: the Python stand-in and
HAProxy) are saved once here and loaded into each engine (`load_images`).

    python3 -m tests.support.swarm up       # holds a rig open until Ctrl-C / SIGTERM
    python3 -m tests.support.swarm status   # the running rigs, their nodes, `node ls`
    python3 -m tests.support.swarm down     # ends the rigs `up` holds, removes stale ones

A rig whose pid (in its name) is gone was interrupted: `cleanup_leftovers()`
(tests/support/swarm_cleanup.py; run before each rig and by `down`) removes its processes,
namespaces, veths, cgroups and directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import sshd
from tests.support.base import LOCAL_IMAGES_ENV, read_env_file
from tests.support.netns_cleanup import TMP, alive, run, sweep
from tests.support.swarm_cleanup import NAME_RE, PREFIX, cleanup_leftovers, running_rigs

LOCK = TMP / "deploy-swarm.lock"
NODES = 3
SSH_PORT = 22
USER = "root"
TOOLS = ("ip", "nsenter", "unshare", "mount", "dockerd", "docker")
# What the tests run on the nodes: the Python stand-in and the proxy.
IMAGE_KEYS = ("PYTHON_IMAGE", "PROXY_IMAGE")

INIT = """\
#!/bin/sh
# Written by tests/support/swarm.py; run by `ip netns exec {netns} unshare --uts`: a mount
# namespace (/ a slave: nothing here reaches the root namespace) and a UTS namespace of its
# own. dockerd and sshd join this anchor process with nsenter.
set -eu
hostname {hostname}
{cgroups}
mount --bind {run} /run
mount --bind {home} /root
mkdir -p /etc/docker && mount --bind {etc_docker} /etc/docker
mkdir -p /run/sshd && chmod 755 /run/sshd
touch {ready}
exec sleep infinity
"""


class SwarmError(RuntimeError):
    """The rig could not be set up or torn down; the message says what and where."""


def missing_tools() -> list[str]:
    return [t for t in TOOLS if not shutil.which(t)] + sshd.missing_tools()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _spawn(argv: list[str], log: Path) -> subprocess.Popen:
    with open(os.devnull, "rb") as devnull, open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=devnull, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _cgroup_mounts() -> str:
    """Shell lines mounting /sys/fs/cgroup as the root namespace has it, parents first."""
    lines = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, target, fstype, options = line.split()[:4]
        if target.startswith("/sys/fs/cgroup") and fstype in ("cgroup", "cgroup2", "tmpfs"):
            lines.append(f"mkdir -p {target} && mount -t {fstype} -o {options} "
                         f"{source} {target}")
    if not lines:
        raise SwarmError("no cgroup file system is mounted under /sys/fs/cgroup; dockerd "
                         "needs one")
    return "\n".join(lines)


def _free_subnet() -> int:
    used = run(["ip", "-4", "-o", "addr", "show"]).stdout + run(["ip", "-4", "route"]).stdout
    taken = {int(n) for n in re.findall(r"\b10\.214\.(\d+)\.", used)}
    free = [n for n in range(1, 255) if n not in taken]
    if not free:
        raise SwarmError("no free /24 left in 10.214.0.0/16")
    return free[0]


@dataclass(frozen=True)
class NodeInfo:
    """What a test or a bench needs of a node: all plain values (see `Swarm.info`)."""

    name: str  # n1, n2, n3
    hostname: str  # swarm-n1 …: node.hostname in constraints
    address: str  # 10.214.S.11 …: its advertise address, sshd, host-mode ports
    socket: str  # its engine, from this machine: docker -H unix://SOCKET
    ssh_port: int
    netns: str


class Node:
    """One node: its namespace, anchor, dockerd and sshd; all its files under dir."""

    def __init__(self, rig: Swarm, index: int):
        self.name = f"n{index}"
        self.hostname = f"swarm-{self.name}"
        self.netns = f"{rig.name}-{self.name}"
        self.veth = f"ds{rig.id}{self.name}"  # created here, then moved into the bridge ns
        self.address = f"10.214.{rig.subnet}.{10 + index}"
        self.dir = rig.root / self.name
        self.run_dir, self.home, self.etc_docker = (
            self.dir / d for d in ("run", "root", "etc-docker"))
        self.data_root = self.dir / "docker"
        for d in (self.run_dir, self.home, self.etc_docker, self.data_root):
            d.mkdir(parents=True, mode=0o755)
        self.socket = self.run_dir / "docker.sock"
        self.pid_file = self.run_dir / "docker.pid"
        self.docker_log = self.dir / "dockerd.log"
        self.init_log = self.dir / "init.log"
        self.ready = self.dir / "init.ready"
        self.anchor: subprocess.Popen | None = None
        self.dockerd: subprocess.Popen | None = None
        self.sshd = _Sshd(self, rig.authorized_keys)

    @property
    def info(self) -> NodeInfo:
        return NodeInfo(self.name, self.hostname, self.address, str(self.socket),
                        SSH_PORT, self.netns)

    def docker_argv(self, *args: str) -> list[str]:
        return ["docker", "-H", f"unix://{self.socket}", *args]

    def enter_argv(self, *args: str) -> list[str]:
        if self.anchor is None:
            raise SwarmError(f"{self.name} is not running")
        return ["nsenter", "-t", str(self.anchor.pid), "-m", "-n", "-u", "--", *args]

    def create_network(self, bridge_ns: str) -> None:
        peer = f"{self.veth}p"
        run(["ip", "netns", "add", self.netns])
        run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", peer])
        run(["ip", "link", "set", peer, "netns", self.netns])
        run(["ip", "link", "set", self.veth, "netns", bridge_ns])
        for argv in (["ip", "link", "set", self.veth, "master", "br0"],
                     ["ip", "link", "set", self.veth, "up"]):
            run(["ip", "netns", "exec", bridge_ns, *argv])
        for argv in (["ip", "link", "set", peer, "name", "eth0"],
                     ["ip", "addr", "add", f"{self.address}/24", "dev", "eth0"],
                     ["ip", "link", "set", "eth0", "up"],
                     ["ip", "link", "set", "lo", "up"]):
            run(["ip", "netns", "exec", self.netns, *argv])

    def start_anchor(self) -> None:
        init = self.dir / "init"
        init.write_text(INIT.format(netns=self.netns, hostname=self.hostname,
                                    cgroups=_cgroup_mounts(), run=self.run_dir,
                                    home=self.home, etc_docker=self.etc_docker,
                                    ready=self.ready))
        init.chmod(0o755)
        self.anchor = _spawn(["ip", "netns", "exec", self.netns, "unshare", "--uts",
                              str(init)], self.init_log)
        deadline = time.monotonic() + 15
        while not self.ready.exists():
            if self.anchor.poll() is not None or time.monotonic() > deadline:
                raise SwarmError(f"{self.name}: the namespace's init script failed "
                                 f"({self.init_log}):\n{_tail(self.init_log)}")
            time.sleep(0.02)

    def start_dockerd(self) -> None:
        self.dockerd = _spawn(self.enter_argv(
            "dockerd", "--data-root", str(self.data_root), "--exec-root", "/run/docker",
            "-H", "unix:///run/docker.sock", "--pidfile", "/run/docker.pid",
            "--storage-driver=overlay2", f"--cgroup-parent=/{self.netns}",
            "--shutdown-timeout", "15"), self.docker_log)

    def wait_dockerd(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.dockerd is not None and self.dockerd.poll() is not None:
                raise SwarmError(f"{self.name}: dockerd exited with {self.dockerd.returncode}"
                                 f"; its log ({self.docker_log}):\n{_tail(self.docker_log)}")
            done = run(self.docker_argv("info", "--format", "{{.ID}}"), check=False)
            if done.returncode == 0 and done.stdout.strip():
                return
            if time.monotonic() > deadline:
                raise SwarmError(f"{self.name}: dockerd not answering on {self.socket} after "
                                 f"{timeout:.0f} s; its log ({self.docker_log}):\n"
                                 f"{_tail(self.docker_log)}")
            time.sleep(0.1)

    def stop_dockerd(self, timeout: float = 30) -> None:
        """SIGTERM to this node's engine and wait for it: a node lost in the node-loss test.
        Its containers get SIGTERM and up to 15 s (--shutdown-timeout) to drain."""
        pid = _read_pid(self.pid_file)
        if pid is None:
            return
        sshd._kill(pid)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            if self.dockerd is not None and self.dockerd.poll() is not None:
                break
            time.sleep(0.05)

    def stop(self) -> list[str]:
        self.sshd.stop()
        if self.socket.exists():
            # The rig is going away: no graceful stop (dockerd would give each container
            # its stop_grace_period, and the drain tests set 15 s).
            ids = run(self.docker_argv("ps", "-q"), check=False, timeout=30).stdout.split()
            if ids:
                run(self.docker_argv("kill", *ids), check=False, timeout=60)
        self.stop_dockerd()
        problems = sweep(self.netns, self.veth)
        for process in (self.dockerd, self.anchor):
            if process is not None:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    problems.append(f"{self.name}: pid {process.pid} did not exit")
        return problems


class _Sshd(sshd.SshHost):
    """sshd.py's host, started inside the node's namespaces, on port 22."""

    def __init__(self, node: Node, authorized_keys: Path):
        super().__init__(node.dir, node.address, SSH_PORT, authorized_keys)
        self.node = node

    @property
    def known_hosts_line(self) -> str:
        return f"{self.host} {self.public_key}\n"  # port 22: no brackets

    def start(self) -> None:
        test = run([str(sshd.SSHD), "-t", "-f", str(self.config)], check=False)
        if test.returncode != 0:
            raise SwarmError(f"sshd rejects {self.config}: {test.stderr.strip()}")
        self.process = _spawn(self.node.enter_argv(
            str(sshd.SSHD), "-D", "-f", str(self.config), "-E", str(self.log)), self.log)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Swarm:
    """The rig: nodes, the bridge, the client key and known_hosts, argv builders."""

    def __init__(self, count: int = NODES):
        self.id = secrets.token_hex(3)
        self.name = f"{PREFIX}{os.getpid()}-{self.id}"
        self.root = TMP / self.name
        self.root.mkdir(mode=0o700)
        self.bridge_ns = f"{self.name}-br"
        self.root_veth = f"ds{self.id}r"
        self.subnet = 0
        self.user = USER
        self.key_file = self.root / "client_ed25519"
        sshd._keygen(self.key_file, "deploy-e2e swarm client")
        self.authorized_keys = self.root / "authorized_keys"
        shutil.copy(self.key_file.with_suffix(".pub"), self.authorized_keys)
        self.known_hosts = self.root / "known_hosts"
        self.count = count
        self.nodes: list[Node] = []
        self.timings: dict[str, float] = {}

    @property
    def root_address(self) -> str:
        """This machine's address on the nodes' segment."""
        return f"10.214.{self.subnet}.1"

    def _create_bridge(self) -> None:
        peer = f"{self.root_veth}p"
        run(["ip", "netns", "add", self.bridge_ns])
        run(["ip", "link", "add", self.root_veth, "type", "veth", "peer", "name", peer])
        run(["ip", "link", "set", peer, "netns", self.bridge_ns])
        run(["ip", "addr", "add", f"{self.root_address}/24", "dev", self.root_veth])
        run(["ip", "link", "set", self.root_veth, "up"])
        for argv in (["ip", "link", "add", "br0", "type", "bridge"],
                     ["ip", "link", "set", "br0", "up"],
                     ["ip", "link", "set", peer, "master", "br0"],
                     ["ip", "link", "set", peer, "up"],
                     ["ip", "link", "set", "lo", "up"]):
            run(["ip", "netns", "exec", self.bridge_ns, *argv])

    def start(self) -> None:
        started = time.monotonic()
        with open(LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.subnet = _free_subnet()
            self._create_bridge()
            for index in range(1, self.count + 1):
                node = Node(self, index)
                self.nodes.append(node)
                node.create_network(self.bridge_ns)
        self.known_hosts.write_text("".join(n.sshd.known_hosts_line for n in self.nodes))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # for `sshd -t` here
        for node in self.nodes:
            node.start_anchor()
            node.start_dockerd()
            node.sshd.start()
        for node in self.nodes:
            node.wait_dockerd()
            try:
                node.sshd.wait_ready()
            except sshd.SshdError as e:
                raise SwarmError(f"{node.name}: {e}") from e
        self.timings["engines"] = time.monotonic() - started
        self._join()
        self.write_state()

    def _join(self) -> None:
        first, *others = self.nodes
        began = time.monotonic()
        run(first.docker_argv("swarm", "init", "--advertise-addr", first.address,
                              "--listen-addr", f"{first.address}:2377"))
        self.timings["swarm init"] = time.monotonic() - began
        token = run(first.docker_argv("swarm", "join-token", "-q", "manager")).stdout.strip()
        for node in others:
            began = time.monotonic()
            run(node.docker_argv("swarm", "join", "--token", token,
                                 "--advertise-addr", node.address,
                                 "--listen-addr", f"{node.address}:2377",
                                 f"{first.address}:2377"), timeout=60)
            self.timings[f"join {node.name}"] = time.monotonic() - began

    def write_state(self) -> None:
        """rig.json in the rig's directory: what `status` and `attach` read."""
        state = {"name": self.name, "root_address": self.root_address,
                 "key_file": str(self.key_file), "known_hosts": str(self.known_hosts),
                 "user": self.user, "nodes": [n.info.__dict__ for n in self.nodes]}
        (self.root / "rig.json").write_text(json.dumps(state, indent=1) + "\n")

    def stop(self) -> None:
        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            problems = [p for found in pool.map(Node.stop, self.nodes) for p in found]
        problems += sweep(self.bridge_ns, self.root_veth)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            problems.append(f"{self.root} could not be removed")
        if problems:
            raise SwarmError("teardown left things behind: " + "; ".join(problems))

    # --- for the tests ------------------------------------------------------------------

    def node(self, node: Node | str) -> Node:
        if isinstance(node, Node):
            return node
        for n in self.nodes:
            if node in (n.name, n.hostname, n.address):
                return n
        raise KeyError(f"no node {node!r} in {[n.name for n in self.nodes]}")

    @property
    def info(self) -> list[NodeInfo]:
        return [n.info for n in self.nodes]

    def docker_argv(self, node: Node | str, *args: str) -> list[str]:
        return self.node(node).docker_argv(*args)

    def docker(self, node: Node | str, *args: str, timeout: float = 120
               ) -> subprocess.CompletedProcess:
        return run(self.docker_argv(node, *args), check=False, timeout=timeout)

    def manager(self) -> Node:
        """A node whose engine answers (the first one, unless a test stopped it)."""
        for n in self.nodes:
            if n.socket.exists() and self.docker(n, "info", "--format", "{{.ID}}",
                                                 timeout=15).returncode == 0:
                return n
        raise SwarmError("no node's engine answers")

    def netns_exec_argv(self, node: Node | str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.node(node).netns, *args]

    def ssh_argv(self, node: Node | str, command: str) -> list[str]:
        """OpenSSH with no user config, the rig's key and strict host key checking."""
        return ["ssh", "-F", "/dev/null", "-p", str(SSH_PORT), "-i", str(self.key_file),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
                f"{self.user}@{self.node(node).address}", command]

    def spec(self, node: Node | str) -> str:
        """`root@10.214.S.11:22`, as SWARM_MANAGER takes it."""
        return f"{self.user}@{self.node(node).address}:{SSH_PORT}"

    def logs(self, node: Node | str, lines: int = 25) -> str:
        n = self.node(node)
        return (f"--- {n.name} sshd ({n.sshd.log}):\n{n.sshd.log_tail(lines)}\n"
                f"--- {n.name} dockerd ({n.docker_log}):\n{_tail(n.docker_log, lines)}")

    def load_images(self, refs: list[str] | None = None) -> dict[str, str]:
        """Load the images (default: the local Python stand-in and HAProxy) into every
        node: one `docker save` here, then `docker load` into the engines side by side.
        Their IDs by reference."""
        refs = refs or local_images()
        began = time.monotonic()
        tar = self.root / "images.tar"
        run(["docker", "image", "save", "-o", str(tar), *refs], timeout=600)

        def load(node: Node) -> None:
            run(node.docker_argv("image", "load", "-q", "-i", str(tar)), timeout=600)

        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(load, self.nodes))
        tar.unlink()
        self.timings["load images"] = time.monotonic() - began
        ids = run(["docker", "image", "inspect", "--format", "{{.Id}}", *refs]).stdout.split()
        return dict(zip(refs, ids, strict=True))


def local_images() -> list[str]:
    """The references of .ci/local-images.env the Swarm tests run (IMAGE_KEYS)."""
    if not LOCAL_IMAGES_ENV.exists():
        raise SwarmError(f"{LOCAL_IMAGES_ENV} is missing: run bash .ci/build-images")
    values = read_env_file(LOCAL_IMAGES_ENV)
    missing = [k for k in IMAGE_KEYS if not values.get(k)]
    if missing:
        raise SwarmError(f"{LOCAL_IMAGES_ENV}: no {', '.join(missing)}")
    return [values[k] for k in IMAGE_KEYS]


@contextmanager
def running_swarm(count: int = NODES, images: bool = True) -> Iterator[Swarm]:
    """A joined Swarm (images loaded unless images=False), torn down afterwards, also on
    failure; an interrupted run's rig is removed first."""
    cleanup_leftovers()
    rig = Swarm(count)
    try:
        rig.start()
        if images:
            rig.load_images()
        yield rig
    finally:
        rig.stop()


def rig_for_tests(images: bool = True) -> Iterator[Swarm]:
    """A pytest fixture's body: the rig, or services.missing (a failure in CI, a loud skip
    elsewhere) when this machine cannot run one; a rig that fails to start is an error."""
    from tests.support.services import missing

    if os.geteuid() != 0:
        missing("the Swarm rig must run as root (ip netns, mount, dockerd)")
    tools = missing_tools()
    if tools:
        missing(f"the Swarm rig needs {', '.join(tools)} (iproute2, util-linux, docker.io, "
                "openssh-server)")
    with running_swarm(images=images) as rig:
        yield rig


# --- for humans and bench/ --------------------------------------------------------------


def _status() -> int:
    states = running_rigs()
    if not states:
        print("no Swarm rig is running")
        return 1
    for state in states:
        print(f"{state['name']}: key {state['key_file']}, known_hosts {state['known_hosts']}")
        for n in state["nodes"]:
            print(f"  {n['name']} {n['hostname']} {n['address']}  "
                  f"docker -H unix://{n['socket']}  ssh {state['user']}@{n['address']}")
        first = state["nodes"][0]["socket"]
        done = run(["docker", "-H", f"unix://{first}", "node", "ls"], check=False)
        print("  " + (done.stdout or done.stderr).strip().replace("\n", "\n  "))
    return 0


def _down() -> int:
    """End the rigs `up` holds (it tears down on SIGTERM) and remove stale ones; a rig a test
    run or a bench holds is left to it."""
    for state in running_rigs():
        pid = int(NAME_RE.match(state["name"])[1])
        try:
            owner = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "tests.support.swarm" not in owner:
            print(f"{state['name']}: held by pid {pid} ({owner.strip()[:80]}); not touched")
            continue
        sshd._kill(pid)
        deadline = time.monotonic() + 120
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    for line in cleanup_leftovers(include_live=False):
        print(f"removed {line}")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["status"]:
        return _status()
    if argv == ["down"]:
        return _down()
    if argv == ["up"]:
        # Any of these ends the pause and tears down (SIGINT too: a shell's background
        # job starts with it ignored).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: sys.exit(0))
        with running_swarm() as rig:
            for n in rig.nodes:
                print(f"{n.name} ({n.hostname}): ssh {rig.spec(n)}  "
                      f"docker -H unix://{n.socket}  ip netns exec {n.netns} …", flush=True)
            timings = ", ".join(f"{k} {v:.1f} s" for k, v in rig.timings.items())
            print(f"key {rig.key_file}, known_hosts {rig.known_hosts}; {timings}; "
                  "Ctrl-C or `python3 -m tests.support.swarm down` tears down", flush=True)
            signal.pause()
        return 0
    print("usage: python3 -m tests.support.swarm up | status | down  "
          f"(got: {' '.join(argv) or 'nothing'})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
