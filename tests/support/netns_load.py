"""Load from inside a test host: the clients of tests/support/load.py against the host's proxy
on its own loopback, which only processes in the host's network namespace can reach.

    ip netns exec NETNS python3 -m tests.support.netns_load PORT [--clients N] [--slow SECONDS]
                                                                  [--lb PATH]

Keep-alive clients that never retry (and, with --slow, one stream of GET /slow requests)
run until stdin closes; then one JSON line with both tallies goes to stdout. With --lb, a
load balancer's health check too: GET PATH every 50 ms on a connection of its own, the
status codes it saw in order (each run of one code once: [200, 503, 200]). `NetnsLoad`
starts it from the tests and bench (cwd: the repository) and reads the tally.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.load import Clients, SlowRequests

ROOT = Path(__file__).resolve().parents[2]


def _tally(t) -> dict:
    return {"requests": t.requests, "failures": t.failures[:50],
            "failure_count": len(t.failures)}


class LbCheck(threading.Thread):
    """GET ``path`` every 50 ms until stopped; ``codes``: each run of one status once."""

    def __init__(self, port: int, path: str):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.codes: list[int | str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", self.path)
                code: int | str = conn.getresponse().status
            except OSError as exc:
                code = type(exc).__name__
            finally:
                conn.close()
            if not self.codes or self.codes[-1] != code:
                self.codes.append(code)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--lb", default="")
    args = parser.parse_args(argv)
    lb = LbCheck(args.port, args.lb) if args.lb else None
    if lb is not None:
        lb.start()
    clients = Clients(args.port, count=args.clients)
    slow = SlowRequests(args.port, seconds=args.slow) if args.slow else None
    with clients:
        if slow is not None:
            slow.__enter__()
        print("started", flush=True)
        sys.stdin.read()  # until the test closes our stdin
        if slow is not None:
            slow.__exit__(None, None, None)
    if lb is not None:
        lb.stop.set()
        lb.join(timeout=10)
    print(json.dumps({"clients": _tally(clients.tally()),
                      "slow": _tally(slow.tally()) if slow is not None else None,
                      "lb": lb.codes if lb is not None else None}), flush=True)
    return 0


class NetnsLoad:
    """`with NetnsLoad(rig, host, port) as load: …`, then `load.result` (the JSON tally)."""

    def __init__(self, rig, host, port: int, clients: int = 4, slow: float = 0.0,
                 lb: str = ""):
        self.argv = rig.netns_exec_argv(host, sys.executable, "-m", "tests.support.netns_load",
                                        str(port), "--clients", str(clients),
                                        "--slow", str(slow), "--lb", lb)
        self.proc: subprocess.Popen | None = None
        self.result: dict | None = None

    def __enter__(self) -> NetnsLoad:
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = self.proc.stdout.readline()
        if line.strip() != "started":
            self.proc.kill()
            raise RuntimeError(f"load generator did not start: {line}{self.proc.stderr.read()}")
        time.sleep(0.5)  # the clients are connected and sending
        return self

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        out, err = self.proc.communicate(input="", timeout=180)
        lines = out.strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"load generator failed ({self.proc.returncode}): {err}")
        self.result = json.loads(lines[-1])

    @property
    def clients(self) -> dict:
        return self.result["clients"]

    @property
    def slow(self) -> dict:
        return self.result["slow"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
