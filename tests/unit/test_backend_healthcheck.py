"""deploy/stack/backend/healthcheck.sh, the backend container's healthcheck, run with bash
against a real HTTP server on this machine: it prints what /health answered and exits 0
on 200 only, like the backend's own `--probe`."""

from __future__ import annotations

import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "stack" / "backend" / "healthcheck.sh"


def serve(status: int, body: bytes):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.server.paths.append(self.path)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.paths = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def probe(port: int, timeout: float = 10):
    return subprocess.run(["bash", str(SCRIPT), str(port)], capture_output=True, text=True,
                          timeout=timeout)


def test_a_healthy_backend_passes_and_its_answer_is_printed():
    server = serve(200, b'{"status": "ok"}')
    try:
        done = probe(server.server_address[1])
    finally:
        server.shutdown()
    assert (done.returncode, done.stdout, done.stderr) == (0, '200 {"status": "ok"}\n', "")
    assert server.paths == ["/health"]


def test_an_unhealthy_answer_fails_with_its_reason_printed():
    server = serve(503, b'{"status": "unhealthy", "reason": "missing tables: ai_x"}')
    try:
        done = probe(server.server_address[1])
    finally:
        server.shutdown()
    assert done.returncode == 1
    assert done.stdout == '503 {"status": "unhealthy", "reason": "missing tables: ai_x"}\n'


def test_nothing_listening_fails_with_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        done = probe(port)
    assert done.returncode == 1
    assert done.stdout == f"no answer from http://127.0.0.1:{port}/health: connection refused\n"
    assert done.stderr == ""


def test_a_backend_that_accepts_but_never_answers_fails_on_its_own_timeout_with_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = probe(port)  # killed after 10 s (probe's timeout) if it hangs
    assert done.returncode == 1
    assert done.stdout == f"no answer from http://127.0.0.1:{port}/health within 4 s\n"
