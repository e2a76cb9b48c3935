"""Load that notices every failed request: clients that never retry, and wrk.

- ``Clients``: N threads, each with one keep-alive HTTP/1.1 connection (http.client), that
  send requests back to back and never retry: every exception (a reset, a closed
  connection, a timeout) and every status other than 2xx counts as a failure; after a
  failure the client opens a new connection for its *next* request.
- ``SlowRequests``: a stream of ``GET /slow?seconds=S`` (the backend's test hook), one
  after the other on one keep-alive connection: requests in flight while the old backend
  is drained.
- ``Wrk``: Debian's wrk, stopped with SIGINT (it then prints its summary); its report is
  parsed for requests, non-2xx/3xx responses, socket errors and latency percentiles.

Used by tests/e2e/test_zero_downtime.py and bench/bench_deploy.py.
"""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Tally:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.failures += other.failures
        self.latencies += other.latencies


def _request(conn: http.client.HTTPConnection, method: str, path: str) -> tuple[int, str]:
    """Status and the body on one line (who answered: HAProxy's page or the backend's JSON)."""
    conn.request(method, path, body=b"" if method == "POST" else None)
    response = conn.getresponse()
    body = response.read().decode("utf-8", "replace").strip()
    return response.status, " ".join(body.split())[:200]


class _Loop(threading.Thread):
    def __init__(self, port: int, paths: list[tuple[str, str]], stop: threading.Event,
                 timeout: float):
        super().__init__(daemon=True)
        self.port, self.paths, self.stop, self.timeout = port, paths, stop, timeout
        self.tally = Tally()

    def run(self) -> None:
        conn = None
        i = 0
        while not self.stop.is_set():
            method, path = self.paths[i % len(self.paths)]
            i += 1
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            started = time.perf_counter()
            try:
                status, said = _request(conn, method, path)
            except (OSError, http.client.HTTPException) as exc:
                self.tally.requests += 1
                self.tally.failures.append(f"{method} {path}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = None  # the next request (not this one again) on a new connection
                continue
            self.tally.requests += 1
            self.tally.latencies.append(time.perf_counter() - started)
            if not 200 <= status < 300:
                self.tally.failures.append(f"{method} {path}: HTTP {status}: {said}")
        if conn is not None:
            conn.close()


class Clients:
    """Keep-alive clients that never retry: reads and writes of the hot table."""

    def __init__(self, port: int, count: int = 8, timeout: float = 30.0,
                 paths: list[tuple[str, str]] | None = None):
        self.stop = threading.Event()
        paths = paths or [("GET", "/counters/1"), ("POST", "/counters/2"),
                          ("GET", "/counters/3"), ("GET", "/health")]
        self.loops = [_Loop(port, paths[i % len(paths):] + paths[:i % len(paths)], self.stop,
                            timeout) for i in range(count)]

    def __enter__(self) -> Clients:
        for loop in self.loops:
            loop.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for loop in self.loops:
            loop.join(timeout=60)

    def tally(self) -> Tally:
        total = Tally()
        for loop in self.loops:
            total.add(loop.tally)
        return total


class SlowRequests(Clients):
    """One stream of slow requests (``GET /slow?seconds=S``), each of them counted."""

    def __init__(self, port: int, seconds: float = 2.0, count: int = 1):
        super().__init__(port, count=count, timeout=seconds + 30,
                         paths=[("GET", f"/slow?seconds={seconds:g}")])


@dataclass
class WrkReport:
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    latency: dict[str, float]  # seconds: p50, p90, p99, max
    text: str

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text: str) -> WrkReport:
    requests = re.search(r"^\s*(\d+) requests in ", text, re.M)
    if requests is None:
        raise ValueError(f"no request count in wrk's report:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    latency = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s*{pct}(?:\.0+)?%\s+(\S+)", text, re.M)
        if m:
            latency[f"p{pct}"] = _seconds(m.group(1))
    m = re.search(r"^\s*Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)
    if m:
        latency["max"] = _seconds(m.group(1))
    names = ("connect", "read", "write", "timeout")
    return WrkReport(
        requests=int(requests.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(names, (int(x) for x in errors.groups()), strict=True))
        if errors else dict.fromkeys(names, 0),
        latency=latency, text=text)


class Wrk:
    """wrk against one URL until stopped (SIGINT: it prints its summary then)."""

    def __init__(self, url: str, connections: int = 8, threads: int = 2,
                 max_seconds: int = 600):
        if shutil.which("wrk") is None:
            raise RuntimeError("wrk is not installed (apt-get install wrk; .ci/provision does)")
        self.argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max_seconds}s",
                     "--latency", "--timeout", "30s", url]
        self.proc: subprocess.Popen | None = None
        self.report: WrkReport | None = None

    def __enter__(self) -> Wrk:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        return self

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        self.report = parse_wrk(out)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def get(port: int, path: str = "/") -> tuple[int, str]:
    """One GET on a fresh connection to 127.0.0.1: (status, body stripped)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode().strip()
    finally:
        conn.close()
