"""The tests' own app server (tests/support/anystack/server.py), run as a real process:
it answers /healthz on a keep-alive connection fast (TCP_NODELAY) and drains on SIGTERM."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time

from tests.support.base import ROOT, free_port

SERVER = ROOT / "tests" / "support" / "anystack" / "server.py"


def start(port: int, **env: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(SERVER)],
                            env={**os.environ, "PORT": str(port), **env})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start")


def test_it_answers_many_keep_alive_requests_quickly_then_exits_on_sigterm():
    port = free_port()
    proc = start(port, RELEASE_NOTE="r1")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        began = time.monotonic()
        for _ in range(50):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"one r1\n")
        # Without TCP_NODELAY each request on this connection waits ~40 ms (2 s in all).
        assert time.monotonic() - began < 1.5
        assert subprocess.run([sys.executable, str(SERVER), "--probe"],
                              env={**os.environ, "PORT": str(port)}).returncode == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_its_health_fails_when_told_to():
    port = free_port()
    proc = start(port, WEB_FAIL_HEALTH="1")
    try:
        assert subprocess.run([sys.executable, str(SERVER), "--probe"],
                              env={**os.environ, "PORT": str(port)}).returncode == 1
    finally:
        proc.kill()
