"""Load against a Swarm node's published port, from this machine: keep-alive clients that
never retry (tests/support/load.py's rules: every exception and every non-2xx status is a
failure; after one, the *next* request opens a new connection), at any address.

    with AddressClients("10.214.1.11", 8088, count=2) as clients: …
    clients.tally()  # requests, failures (first 50 kept in full), latencies, who answered
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter

from tests.support.load import Tally


class _Loop(threading.Thread):
    def __init__(self, host: str, port: int, path: str, stop: threading.Event,
                 timeout: float):
        super().__init__(daemon=True)
        self.host, self.port, self.path, self.stop, self.timeout = host, port, path, stop, timeout
        self.tally = Tally()
        self.tasks: Counter[str] = Counter()

    def _once(self, conn: http.client.HTTPConnection) -> None:
        conn.request("GET", self.path)
        response = conn.getresponse()
        body = response.read()
        if not 200 <= response.status < 300:
            self.tally.failures.append(f"GET {self.path}: HTTP {response.status}: "
                                       f"{body[:200]!r}")
            return
        try:
            self.tasks[json.loads(body).get("task", "?")] += 1
        except ValueError:
            self.tasks["?"] += 1

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            started = time.perf_counter()
            self.tally.requests += 1
            try:
                self._once(conn)
            except (OSError, http.client.HTTPException) as exc:
                self.tally.failures.append(f"GET {self.path}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = None
                continue
            self.tally.latencies.append(time.perf_counter() - started)
        if conn is not None:
            conn.close()


class AddressClients:
    def __init__(self, host: str, port: int, count: int = 2, path: str = "/",
                 timeout: float = 30.0):
        self.stop = threading.Event()
        self.loops = [_Loop(host, port, path, self.stop, timeout) for _ in range(count)]

    def __enter__(self) -> AddressClients:
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

    def tasks(self) -> Counter[str]:
        """How many answers each task (the backend container's hostname) gave."""
        total: Counter[str] = Counter()
        for loop in self.loops:
            total.update(loop.tasks)
        return total
