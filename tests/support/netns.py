"""Test hosts that are really separate: each in its own network namespace, with its own
sshd and its own Docker engine.

Per host `hK` (K = 1, 2, …) of a rig named `deploy-netns-<pid>-<hex>`:

- a network namespace `<rig>-hK` and a veth pair: `dn<hex>hK` in the root namespace with
  10.213.N.1/30, `eth0` in the host with 10.213.N.2/30 (N: the first /30 no interface or
  route here uses yet), `lo` up. The host has no default route: it reaches this machine's
  10.213.N.1 and nothing else, so nothing can be pulled from a registry;
- a mount namespace (an anchor process, `sleep infinity`, started by `ip netns exec`
  through a small init script) where /sys/fs/cgroup is mounted again as in the root
  namespace (`ip netns exec` gives a fresh /sys without it, and dockerd fails with
  "Devices cgroup isn't mounted") and the host's own directories are bound over /run,
  /root, /srv and /etc/docker. Nothing of it leaks out: `ip netns exec` makes / a slave
  first. So /run/docker.sock on the host is the host's engine (plain `docker`, Compose and
  `-H unix:///var/run/docker.sock` all reach it, never the root engine); ~, the default
  DEPLOY_PATH (/srv/<project>) and /etc/docker (engine ID, daemon.json) are the host's
  own. The rest of the file system (/tmp, /usr, /etc) is shared with this machine;
- a dockerd in that namespace: own --data-root, --exec-root /run/docker, socket
  /run/docker.sock, --pidfile /run/docker.pid, --cgroup-parent /<rig>-hK, overlay2;
  its containerd, shims and containers live there too;
- an sshd on 10.213.N.2:22 in that namespace, set up like tests/support/sshd.py: its own
  host key, the rig's one client key, key-only auth, every command line recorded.

Teardown stops sshd, kills the containers, stops dockerd by its pid file, then kills
whatever is left in the namespace or the cgroups, deletes the veth and the namespace,
removes the cgroups and the rig directory (the data roots with it). An interrupted run's
leftovers carry the dead pid in their names: `cleanup_leftovers()` (run before each rig,
or `python3 -m tests.support.netns cleanup`) removes them. `python3 -m tests.support.netns up`
holds a rig open and prints how to reach it.
"""

from __future__ import annotations

import fcntl
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
from pathlib import Path

from tests.support import sshd
from tests.support.busybox import busybox_tar
from tests.support.netns_cleanup import (
    PREFIX,
    TMP,
    NetnsError,
    alive,
    cleanup_leftovers,
    run,
    sweep,
)

__all__ = ["PREFIX", "TMP", "NetnsError", "NetnsHosts", "Host", "cleanup_leftovers",
           "missing_tools", "running_netns_hosts"]

# Allocation of the /30s is serialised across rigs (several test runs on one machine).
LOCK = TMP / "deploy-netns.lock"
PORT = 22
USER = "root"
TOOLS = ("ip", "nsenter", "mount", "dockerd", "docker")

INIT = """\
#!/bin/sh
# Written by tests/support/netns.py; run by `ip netns exec {netns}`, which gave this process
# a mount namespace of its own (/ made a slave: nothing here reaches the root namespace)
# and a fresh /sys. Everything the host's processes share is set up here, then this
# process stays as the namespace's anchor: sshd and dockerd join it with nsenter.
set -eu
{cgroups}
mount --bind {run} /run
mount --bind {home} /root
mount --bind {srv} /srv
mkdir -p /etc/docker && mount --bind {etc_docker} /etc/docker
mkdir -p /run/sshd && chmod 755 /run/sshd
touch {ready}
exec sleep infinity
"""


def missing_tools() -> list[str]:
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    return missing + sshd.missing_tools()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _cgroup_mounts() -> str:
    """Shell lines that mount /sys/fs/cgroup again as the root namespace has it (cgroup
    v1 hierarchies, v2, or both), in /proc/self/mounts order: parents first."""
    lines = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, target, fstype, options = line.split()[:4]
        if not target.startswith("/sys/fs/cgroup"):
            continue
        if fstype in ("cgroup", "cgroup2", "tmpfs"):
            lines.append(f"mkdir -p {target} && mount -t {fstype} -o {options} "
                         f"{source} {target}")
    if not lines:
        raise NetnsError("no cgroup file system is mounted under /sys/fs/cgroup here; "
                         "dockerd needs one")
    return "\n".join(lines)


def _free_subnets(count: int) -> list[int]:
    used = run(["ip", "-4", "-o", "addr", "show"]).stdout + run(["ip", "-4", "route"]).stdout
    taken = {int(n) for n in re.findall(r"\b10\.213\.(\d+)\.", used)}
    free = [n for n in range(1, 255) if n not in taken]
    if len(free) < count:
        raise NetnsError(f"no free /30 left in 10.213.0.0/16 for {count} hosts")
    return free[:count]


class Host:
    """One host: network, mount namespace anchor, dockerd, sshd; all its files in dir."""

    def __init__(self, rig: NetnsHosts, index: int, subnet: int):
        self.name = f"h{index}"
        self.netns = f"{rig.name}-{self.name}"
        self.veth = f"dn{rig.id}{self.name}"
        self.root_address = f"10.213.{subnet}.1"
        self.address = f"10.213.{subnet}.2"
        self.dir = rig.root / self.name
        self.run_dir, self.home, self.srv, self.etc_docker = (
            self.dir / d for d in ("run", "root", "srv", "etc-docker"))
        self.data_root = self.dir / "docker"
        for d in (self.run_dir, self.home, self.srv, self.etc_docker, self.data_root):
            d.mkdir(parents=True, mode=0o755)
        self.socket = self.run_dir / "docker.sock"
        self.docker_pid_file = self.run_dir / "docker.pid"
        self.docker_log = self.dir / "dockerd.log"
        self.init_log = self.dir / "init.log"
        self.ready = self.dir / "init.ready"
        self.engine_id = ""
        self.anchor: subprocess.Popen | None = None
        self.dockerd: subprocess.Popen | None = None
        self.sshd = _Sshd(self, rig.authorized_keys)

    def docker_argv(self, *args: str) -> list[str]:
        return ["docker", "-H", f"unix://{self.socket}", *args]

    def enter_argv(self, *args: str) -> list[str]:
        """Run in this host's network and mount namespaces (its /run, /root, /srv)."""
        if self.anchor is None:
            raise NetnsError(f"{self.name} is not running")
        return ["nsenter", "-t", str(self.anchor.pid), "-m", "-n", "--", *args]

    def create_network(self) -> None:
        peer = f"{self.veth}p"
        for argv in (["ip", "netns", "add", self.netns],
                     ["ip", "link", "add", self.veth, "type", "veth", "peer", "name", peer],
                     ["ip", "link", "set", peer, "netns", self.netns],
                     ["ip", "addr", "add", f"{self.root_address}/30", "dev", self.veth],
                     ["ip", "link", "set", self.veth, "up"]):
            run(argv)
        for argv in (["ip", "link", "set", peer, "name", "eth0"],
                     ["ip", "addr", "add", f"{self.address}/30", "dev", "eth0"],
                     ["ip", "link", "set", "eth0", "up"],
                     ["ip", "link", "set", "lo", "up"]):
            run(["ip", "netns", "exec", self.netns, *argv])

    def start_anchor(self) -> None:
        init = self.dir / "init"
        init.write_text(INIT.format(netns=self.netns, cgroups=_cgroup_mounts(),
                                    run=self.run_dir, home=self.home, srv=self.srv,
                                    etc_docker=self.etc_docker,
                                    ready=self.ready))
        init.chmod(0o755)
        self.anchor = _spawn(["ip", "netns", "exec", self.netns, str(init)], self.init_log)
        deadline = time.monotonic() + 15
        while not self.ready.exists():
            if self.anchor.poll() is not None or time.monotonic() > deadline:
                raise NetnsError(f"{self.name}: the namespace's init script failed "
                                 f"({self.init_log}):\n{_tail(self.init_log)}")
            time.sleep(0.02)

    def start_dockerd(self) -> None:
        # /etc/docker is the host's own (empty) directory: dockerd 20.10 takes its engine
        # ID from /etc/docker/key.json, and the root engine's daemon.json stays out.
        self.dockerd = _spawn(self.enter_argv(
            "dockerd", "--data-root", str(self.data_root),
            "--exec-root", "/run/docker", "-H", "unix:///run/docker.sock",
            "--pidfile", "/run/docker.pid", "--storage-driver=overlay2",
            f"--cgroup-parent=/{self.netns}", "--shutdown-timeout", "2"), self.docker_log)

    def wait_dockerd(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.dockerd is not None and self.dockerd.poll() is not None:
                raise NetnsError(f"{self.name}: dockerd exited with {self.dockerd.returncode}"
                                 f"; its log ({self.docker_log}):\n{_tail(self.docker_log)}")
            done = subprocess.run(self.docker_argv("info", "--format", "{{.ID}}"),
                                  capture_output=True, text=True, timeout=30)
            if done.returncode == 0 and done.stdout.strip():
                self.engine_id = done.stdout.strip()
                return
            if time.monotonic() > deadline:
                raise NetnsError(f"{self.name}: dockerd not answering on {self.socket} after "
                                 f"{timeout:.0f} s ({done.stderr.strip()[:200]}); its log "
                                 f"({self.docker_log}):\n{_tail(self.docker_log)}")
            time.sleep(0.1)

    def stop(self) -> list[str]:
        self.sshd.stop()
        if self.socket.exists():
            # The rig is going away: no graceful stop for containers (dockerd would give
            # each --shutdown-timeout seconds, one after the other).
            ids = run(self.docker_argv("ps", "-q"), check=False, timeout=30).stdout.split()
            if ids:
                run(self.docker_argv("kill", *ids), check=False, timeout=60)
        pid = _read_pid(self.docker_pid_file)
        if pid is not None:
            sshd._kill(pid)
            deadline = time.monotonic() + 30
            while alive(pid) and time.monotonic() < deadline:
                if self.dockerd is not None and self.dockerd.poll() is not None:
                    break
                time.sleep(0.05)
        problems = sweep(self.netns, self.veth)
        for process in (self.dockerd, self.anchor):
            if process is not None:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    problems.append(f"{self.name}: pid {process.pid} did not exit")
        return problems


class _Sshd(sshd.SshHost):
    """sshd.py's host, started inside the host's namespaces, on port 22."""

    def __init__(self, host: Host, authorized_keys: Path):
        super().__init__(host.dir, host.address, PORT, authorized_keys)
        self.netns_host = host

    @property
    def known_hosts_line(self) -> str:
        # OpenSSH and paramiko write port 22 without brackets.
        return f"{self.host} {self.public_key}\n"

    def start(self) -> None:
        test = subprocess.run([str(sshd.SSHD), "-t", "-f", str(self.config)],
                              capture_output=True, text=True)
        if test.returncode != 0:
            raise NetnsError(f"sshd rejects {self.config}: {test.stderr.strip()}")
        self.process = _spawn(self.netns_host.enter_argv(
            str(sshd.SSHD), "-D", "-f", str(self.config), "-E", str(self.log)), self.log)


def _spawn(argv: list[str], log: Path) -> subprocess.Popen:
    with open(os.devnull, "rb") as devnull, open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=devnull, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class NetnsHosts:
    """What the tests get: hosts, addresses, ssh credentials, argv builders, logs."""

    def __init__(self, count: int = 2):
        self.id = secrets.token_hex(3)
        self.name = f"{PREFIX}{os.getpid()}-{self.id}"
        self.root = TMP / self.name
        self.root.mkdir(mode=0o700)
        self.user = USER
        self.port = PORT
        self.key_file = self.root / "client_ed25519"
        sshd._keygen(self.key_file, "deploy-e2e client")
        self.authorized_keys = self.root / "authorized_keys"
        shutil.copy(self.key_file.with_suffix(".pub"), self.authorized_keys)
        self.known_hosts = self.root / "known_hosts"
        self.count = count
        self.hosts: list[Host] = []

    def start(self) -> None:
        with open(LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for index, subnet in enumerate(_free_subnets(self.count), start=1):
                host = Host(self, index, subnet)
                self.hosts.append(host)
                host.create_network()
        self.known_hosts.write_text("".join(h.sshd.known_hosts_line for h in self.hosts))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # for `sshd -t` here
        for host in self.hosts:
            host.start_anchor()
            host.start_dockerd()
            host.sshd.start()
        for host in self.hosts:
            host.wait_dockerd()
            try:
                host.sshd.wait_ready()
            except sshd.SshdError as e:
                raise NetnsError(f"{host.name}: {e}") from e

    def stop(self) -> None:
        # dockerd takes about a second to stop: the hosts stop side by side.
        with ThreadPoolExecutor(max_workers=max(1, len(self.hosts))) as pool:
            problems = [p for found in pool.map(Host.stop, self.hosts) for p in found]
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            problems.append(f"{self.root} could not be removed")
        if problems:
            raise NetnsError("teardown left things behind: " + "; ".join(problems))

    def host(self, host: Host | str) -> Host:
        """A host by object, name (h1) or address (10.213.N.2)."""
        if isinstance(host, Host):
            return host
        for h in self.hosts:
            if host in (h.name, h.address):
                return h
        raise KeyError(f"no host {host!r} in {[h.name for h in self.hosts]}")

    @property
    def addresses(self) -> list[str]:
        return [h.address for h in self.hosts]

    def spec(self, host: Host | str) -> str:
        """`root@10.213.N.2:22`, as DEPLOY_HOSTS and `fab -H` take it."""
        return f"{self.user}@{self.host(host).address}:{self.port}"

    def ssh_argv(self, host: Host | str, command: str, known_hosts: Path | None = None
                 ) -> list[str]:
        """OpenSSH with no user config, the rig's key and strict host key checking."""
        return ["ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.key_file),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
                f"{self.user}@{self.host(host).address}", command]

    def docker_argv(self, host: Host | str, *args: str) -> list[str]:
        """The docker CLI, from here, against that host's engine."""
        return self.host(host).docker_argv(*args)

    def netns_exec_argv(self, host: Host | str, *args: str) -> list[str]:
        """Run a command (curl, wrk, python3) in that host's network namespace."""
        return ["ip", "netns", "exec", self.host(host).netns, *args]

    def enter_argv(self, host: Host | str, *args: str) -> list[str]:
        """Run a command as on that host: its network and its /run, /root, /srv."""
        return self.host(host).enter_argv(*args)

    def traffic(self, host: Host | str) -> tuple[int, int]:
        """(bytes sent to the host, bytes received from it) so far: the counters of the
        veth's end here, which every packet between this machine and the host crosses."""
        stats = Path("/sys/class/net", self.host(host).veth, "statistics")
        return (int((stats / "tx_bytes").read_text()), int((stats / "rx_bytes").read_text()))

    def reach(self, address: str) -> None:
        """Let every host reach `address`, an address of this machine (e.g. another host's
        veth end, where a shared service listens), through its own veth: a /32 route. The
        routes go with the namespaces."""
        for h in self.hosts:
            if address != h.root_address:
                run(["ip", "netns", "exec", h.netns, "ip", "route", "replace",
                     f"{address}/32", "via", h.root_address])

    def trust_registry(self, address: str, ca_pem: str) -> None:
        """Every host's engine trusts this CA for the registry at address (host:port):
        /etc/docker/certs.d/<address>/ca.crt in the host's own /etc/docker, which dockerd
        reads at each pull (no restart). For a TLS registry on this machine, such as a
        DEPLOY_REGISTRY stand-in, that the hosts reach with `reach`."""
        for h in self.hosts:
            certs = h.etc_docker / "certs.d" / address
            certs.mkdir(parents=True, exist_ok=True)
            (certs / "ca.crt").write_text(ca_pem)

    def host_public_key(self, host: Host | str) -> str:
        return self.host(host).sshd.public_key

    def host_key_fingerprint(self, host: Host | str) -> str:
        """`SHA256:…`, as `ssh-keygen -lf` prints it."""
        return self.host(host).sshd.fingerprint

    def only_known(self, host: Host | str) -> Path:
        """A known_hosts file that holds this host's key only: every other host is unknown."""
        h = self.host(host)
        path = self.root / f"known_hosts.only-{h.name}"
        path.write_text(h.sshd.known_hosts_line)
        return path

    def changed_key(self, host: Host | str) -> Path:
        """A known_hosts file whose entry for this host holds another host's key."""
        h = self.host(host)
        other = next(o for o in self.hosts if o is not h)
        path = self.root / f"known_hosts.changed-{h.name}"
        path.write_text(f"{h.address} {other.sshd.public_key}\n")
        return path

    def commands(self, host: Host | str) -> str:
        """Every command line clients sent to this host's sshd so far, one per line."""
        path = self.host(host).sshd.commands
        return path.read_text() if path.exists() else ""

    def logs(self, host: Host | str, lines: int = 25) -> str:
        """The tails of the host's sshd and dockerd logs, for assertion messages."""
        h = self.host(host)
        return (f"--- {h.name} sshd ({h.sshd.log}):\n{h.sshd.log_tail(lines)}\n"
                f"--- {h.name} dockerd ({h.docker_log}):\n{_tail(h.docker_log, lines)}")

    def load_busybox(self, host: Host | str, tag: str) -> str:
        """Import the busybox image (busybox_tar) into that host's engine; its ID."""
        done = subprocess.run(self.docker_argv(host, "import", "-", tag), input=busybox_tar(),
                              capture_output=True, timeout=120)
        if done.returncode != 0:
            raise NetnsError(f"docker import into {self.host(host).name}: "
                             f"{done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode().strip()


@contextmanager
def running_netns_hosts(count: int = 2) -> Iterator[NetnsHosts]:
    """Bring up `count` hosts; tear everything down afterwards, also on failure."""
    cleanup_leftovers()
    rig = NetnsHosts(count)
    try:
        rig.start()
        yield rig
    finally:
        rig.stop()


def main(argv: list[str]) -> int:
    if argv[:1] == ["cleanup"]:
        for line in cleanup_leftovers(include_live="--all" in argv):
            print(f"removed {line}")
        return 0
    if argv[:1] == ["up"] and len(argv) <= 2 and (len(argv) == 1 or argv[1].isdigit()):
        count = int(argv[1]) if len(argv) > 1 else 2
        # Any of these ends the pause and tears down (SIGINT too: a shell's background
        # job starts with it ignored).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: sys.exit(0))
        with running_netns_hosts(count) as rig:
            for h in rig.hosts:
                print(f"{h.name}: ssh {rig.spec(h)}  docker -H unix://{h.socket}  "
                      f"ip netns exec {h.netns} …  engine {h.engine_id}", flush=True)
            print(f"key {rig.key_file}, known_hosts {rig.known_hosts}; Ctrl-C tears down",
                  flush=True)
            signal.pause()
        return 0
    print("usage: python3 -m tests.support.netns cleanup [--all] | up [COUNT]  "
          f"(got: {' '.join(argv) or 'nothing'})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
