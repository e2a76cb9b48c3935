"""The Swarm tests' stand-in backend (tests/support/swarm_backend.py), run as a process here:
it serves, drains on SIGTERM (503 on /health, Connection: close, still answering), then
exits 0; with STARTUP_FAIL=1 it exits 3 at once."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.base import free_port

BACKEND = Path(__file__).resolve().parents[1] / "support" / "swarm_backend.py"


def start(port: int, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(BACKEND)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PORT": str(port), **env})


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, str | None, dict]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.getheader("Connection"), json.loads(response.read())


def test_it_drains_on_sigterm_then_exits_0():
    port = free_port()
    proc = start(port, RELEASE="r9", DRAIN_SECONDS="1")
    try:
        wait_listening(port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        status, _, body = get(conn, "/")
        assert (status, body["release"]) == (200, "r9")
        assert get(conn, "/health")[:2] == (200, None)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        status, connection, body = get(conn, "/health")
        assert (status, connection, body) == (503, "close", {"status": "draining"})
        again = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        assert get(again, "/")[:2] == (200, "close")  # still answering while it drains
        assert proc.wait(timeout=10) == 0
        assert "SIGTERM: draining for 1 s" in proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()


def test_startup_fail_exits_3_at_once():
    proc = start(free_port(), STARTUP_FAIL="1")
    assert proc.wait(timeout=10) == 3
    assert "startup failed on purpose" in proc.stdout.read()

