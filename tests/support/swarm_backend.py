"""A small HTTP backend for the Swarm tests: standard library only, so it runs in the local
Python stand-in image with nothing installed (the rig's nodes pull nothing).

    python3 swarm_backend.py            # PORT (8000), RELEASE, DRAIN_SECONDS (5) from env

- `GET /health` 200 while serving; 503 once SIGTERM came (HAProxy's check takes it out);
- `GET /` and any other path: 200 with `{"release", "task", "pid"}` (which task answered);
- `GET /exit?code=N`: exits at once with N (a one-off task's exit code, in the tests);
- on SIGTERM it drains: every response says `Connection: close`, it keeps answering for
  DRAIN_SECONDS (longer than HAProxy's checks need to notice), then exits 0. A task killed
  without a drain just vanishes from the overlay, and HAProxy waits out `timeout connect` on
  it: requests fail. `stop_grace_period` must exceed DRAIN_SECONDS.
- TCP_NODELAY on every connection: without it small responses on keep-alive connections wait
  for the peer's delayed ACK (~40 ms each).
- STARTUP_FAIL=1: exits 3 at start (a release whose container fails).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

DRAINING = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args) -> None:  # quiet: the tests read the task logs
        pass

    def _send(self, status: int, body: dict) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if DRAINING.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        if url.path == "/health":
            self._send(503 if DRAINING.is_set() else 200,
                       {"status": "draining" if DRAINING.is_set() else "ok"})
            return
        if url.path == "/exit":
            code = int(parse_qs(url.query).get("code", ["0"])[0])
            self._send(200, {"exit": code})
            os._exit(code)
        self._send(200, {"release": os.environ.get("RELEASE", ""),
                         "task": socket.gethostname(), "pid": os.getpid()})


def main() -> int:
    if os.environ.get("STARTUP_FAIL") == "1":
        print("startup failed on purpose (STARTUP_FAIL=1)", flush=True)
        return 3
    port = int(os.environ.get("PORT", "8000"))
    drain = float(os.environ.get("DRAIN_SECONDS", "5"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True

    def on_term(*_) -> None:
        print(f"SIGTERM: draining for {drain:g} s", flush=True)
        DRAINING.set()
        threading.Timer(drain, server.shutdown).start()

    signal.signal(signal.SIGTERM, on_term)
    print(f"serving release {os.environ.get('RELEASE', '')!r} on :{port}", flush=True)
    server.serve_forever()
    time.sleep(0.1)  # the last responses leave
    return 0


if __name__ == "__main__":
    sys.exit(main())
