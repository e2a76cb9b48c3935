"""One registry for this machine and every node of the Swarm rig (tests/support/swarm.py),
at the same name everywhere: `127.0.0.1:PORT`, for DEPLOY_REGISTRY.

The rig's nodes reach nothing but the segment 10.214.S.0/24, and an engine pushes or pulls
over plain HTTP only to 127.0.0.0/8 (insecure by default, no daemon config). So:

- the registry (REGISTRY_IMAGE of .ci/local-images.env) runs here with `--network host`,
  listening on 0.0.0.0:PORT: this machine pushes to 127.0.0.1:PORT, and the nodes' side of
  the segment reaches it at the rig's root address 10.214.S.1:PORT;
- in each node's network namespace a relay (tests/support/relay.py, a python3 process of
  `ip netns exec <node netns>`) listens on 127.0.0.1:PORT and copies each connection to
  10.214.S.1:PORT. The node's engine and the manager's docker client (sshd runs in that
  namespace too) then pull from `127.0.0.1:PORT/…` as this machine pushed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.base import LOCAL_IMAGES_ENV, read_env_file
from tests.support.swarm import Swarm, SwarmError

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
RELAY = """\
import signal, sys
from tests.support.relay import Relay
relay = Relay("127.0.0.1", (sys.argv[1], int(sys.argv[2])), port=int(sys.argv[2])).__enter__()
print("listening", flush=True)
signal.pause()
"""


def free_port() -> int:
    """A TCP port nothing listens on here (on any address)."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


class SharedRegistry:
    """`with SharedRegistry(rig, name) as reg:` then `reg.address` (127.0.0.1:PORT)."""

    def __init__(self, rig: Swarm, name: str, port: int | None = None):
        self.rig = rig
        self.name = name  # the registry container's name here
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.image = read_env_file(LOCAL_IMAGES_ENV).get("REGISTRY_IMAGE") or "registry:2"
        self.relays: list[subprocess.Popen] = []

    def __enter__(self) -> SharedRegistry:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        subprocess.run(["docker", "rm", "-f", "-v", self.name], capture_output=True)
        done = subprocess.run(
            ["docker", "run", "-d", "--name", self.name, "--network", "host",
             "-e", f"REGISTRY_HTTP_ADDR=0.0.0.0:{self.port}", self.image],
            capture_output=True, text=True)
        if done.returncode != 0:
            raise SwarmError(f"registry {self.image}: docker run: {done.stderr.strip()}")
        self._wait(f"http://{self.address}/v2/", "here")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for node in self.rig.nodes:
            relay = subprocess.Popen(
                self.rig.netns_exec_argv(node, sys.executable, "-c", RELAY,
                                         self.rig.root_address, str(self.port)),
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, start_new_session=True)
            self.relays.append(relay)
            said = relay.stdout.readline().strip()
            if said != "listening":
                raise SwarmError(f"{node.name}: the relay to {self.rig.root_address}:"
                                 f"{self.port} did not start: {said} {relay.stdout.read()}")
        for node in self.rig.nodes:
            self.node_get("/v2/", node)

    def _wait(self, url: str, where: str, budget: float = 30) -> None:
        deadline = time.monotonic() + budget
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", "--tail", "20", self.name],
                                      capture_output=True, text=True)
                raise SwarmError(f"registry {self.name}: {url} does not answer {where} after "
                                 f"{budget:g} s; its log:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.2)

    def node_get(self, path: str, node) -> str:
        """GET http://127.0.0.1:PORT<path> from inside a node's namespace: the body."""
        code = ("import sys, urllib.request; "
                "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())")
        done = subprocess.run(self.rig.netns_exec_argv(
            node, sys.executable, "-c", code, f"http://{self.address}{path}"),
            capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise SwarmError(f"{self.rig.node(node).name}: GET http://{self.address}{path}: "
                             f"{done.stderr.strip()[-500:]}")
        return done.stdout

    def digest(self, path: str, tag: str) -> str:
        """The registry's digest of path:tag (its schema 2 manifest)."""
        request = urllib.request.Request(f"http://{self.address}/v2/{path}/manifests/{tag}",
                                         method="HEAD", headers={"Accept": MANIFEST_V2})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.headers["Docker-Content-Digest"]

    def close(self) -> None:
        for relay in self.relays:
            if relay.poll() is None:
                relay.terminate()
                try:
                    relay.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    relay.kill()
                    relay.wait(timeout=10)
            if relay.stdout:
                relay.stdout.close()
        self.relays = []
        subprocess.run(["docker", "rm", "-f", "-v", self.name], capture_output=True)
