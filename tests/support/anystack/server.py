"""The tests' own app: `web` serves HTTP on 8000 (/healthz), `worker` (--worker) loops.

TCP_NODELAY on every accepted socket: without it a keep-alive response's headers and body,
written separately, meet delayed ACKs (~40 ms a request). On SIGTERM `web` stops accepting,
finishes its in-flight requests and exits; `worker` exits on its stop signal (SIGINT).
"""

import os
import signal
import socket
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8000"))  # 8000 in the image; tests pick a free one
VERSION = "one"  # a test commits another value to make a new release ("crash": exits at start)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/healthz" and os.environ.get("WEB_FAIL_HEALTH") == "1":
            body, status = b"failing on purpose\n", 503
        else:
            body = f"{VERSION} {os.environ.get('RELEASE_NOTE', '')}".strip() + "\n"
            body, status = body.encode(), 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for in-flight requests
    block_on_close = True

    def __init__(self, *args):
        super().__init__(*args)
        self.open: set[socket.socket] = set()

    def get_request(self):
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.open.add(conn)
        return conn, addr

    def shutdown_request(self, request):
        self.open.discard(request)
        super().shutdown_request(request)

    def drain(self) -> None:
        """No new connections; each open one ends after the response it is writing (an
        idle keep-alive connection at once: its next read sees the end)."""
        self.shutdown()
        for conn in list(self.open):
            try:
                conn.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        self.server_close()  # waits for the in-flight requests


def serve() -> None:
    if VERSION == "crash":
        print("web: crashing at start on purpose", flush=True)
        sys.exit(3)
    server = Server(("0.0.0.0", PORT), Handler)
    print(f"web: version {VERSION} listening on {PORT}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait()
    server.drain()


def work() -> None:
    got = []
    running = threading.Event()

    def stop(signum, _frame):
        got.append(signal.Signals(signum).name)
        running.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"worker: version {VERSION} started", flush=True)
    while not running.wait(1.0):
        pass
    print(f"worker: version {VERSION} stopping on {got[0]}", flush=True)


def probe() -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=2) as r:
            return 0 if r.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    if "--probe" in sys.argv:
        sys.exit(probe())
    if "--worker" in sys.argv:
        work()
    else:
        serve()
