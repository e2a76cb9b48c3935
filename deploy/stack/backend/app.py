"""The sample backend: a stdlib HTTP server whose /health guards against missing tables.

``GET /health`` answers 200 ``{"status": "ok"}`` only when the database is reachable and
every table the migrations create exists; otherwise 503 with the reason, naming each
missing table and the migration file that creates it. That is the team's outage
("relation \\"ai_cost_thresholds\\" does not exist") caught before the container takes traffic.

``GET /counters/<id>`` reads one row of the "hot" table (migrations/023_hot_counters.sql),
``POST /counters/<id>`` adds one to it: the load of the deploy tests and benchmark goes
through the database. Database connections are reused, never opened per request: the
counters share a bounded pool (psycopg_pool, at most ``POOL_SIZE``; a request waits for a
free connection), /health keeps one connection of its own. A busy or CPU-starved host then
never turns a burst of requests into a burst of new connections, whose connect timeouts
would be answered 503.

Keep-alive HTTP/1.1. On SIGTERM the server drains: it stops accepting connections, closes
its idle keep-alive connections, lets in-flight requests finish (answering them with
``Connection: close``) and exits, within ``BACKEND_DRAIN_TIMEOUT`` seconds (default 30;
the deploy's ``docker stop -t`` allows DRAIN_TIMEOUT plus a margin).

    python3 -m deploy.stack.backend.app            # serve on 0.0.0.0:8080 (the entrypoint does)
    python3 -m deploy.stack.backend.app --probe    # GET /health once (the container's healthcheck,
                                                    # backend/healthcheck.sh, does the same in bash)

Settings: ``DATABASE_URL`` (required), ``MIGRATIONS_DIR`` (default ``migrations``).

Test hooks, for the end-to-end tests only; never set them in a real deployment:
    BACKEND_FAIL_AT_START=1     the container exits 1 at start (see entrypoint.sh)
    BACKEND_FORCE_UNHEALTHY=1   /health answers 503 with that reason (the container stays unhealthy)
    BACKEND_SLOW_REQUESTS=1     GET /slow?seconds=S answers after S seconds (at most 30)
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "0.0.0.0"
PORT = 8080
HEALTH_PATH = "/health"
PROBE_URL = f"http://127.0.0.1:{PORT}{HEALTH_PATH}"
# A /health request must answer before Docker's healthcheck timeout (5 s in the stack).
CONNECT_TIMEOUT_S = 3
# How long a /counters request waits for a free pooled connection before answering 503.
POOL_WAIT_S = 10.0
# An idle keep-alive connection is closed after this long: longer than the proxy keeps
# idle connections to a server, so the proxy, not the server, closes them.
IDLE_TIMEOUT_S = 75
DRAIN_TIMEOUT_S = 30.0
POOL_SIZE = 8
SLOW_MAX_S = 30.0
_COUNTER = re.compile(r"^/counters/(\d{1,9})$")

HealthCheck = Callable[[], tuple[int, dict]]


def make_health_check(database_url: str, migrations_dir: str) -> HealthCheck:
    """Return the /health logic. Imports the database code now: a broken image fails at start."""
    from psycopg.conninfo import conninfo_to_dict

    from deploy.migrate.files import discover
    from deploy.migrate.tables import expected_tables, missing_expected_tables

    password = str(conninfo_to_dict(database_url).get("password") or "")
    secrets = [x for x in {password, urllib.parse.quote(password, safe="")} if x]

    def redact(text: str) -> str:
        # /health's answer ends up in `docker inspect` and in CI logs.
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    # Parsed once: the image's migrations never change while it runs.
    expected = expected_tables(discover(Path(migrations_dir)))
    connection = OneConnection(database_url, "deploy health")

    def check() -> tuple[int, dict]:
        if os.environ.get("BACKEND_FORCE_UNHEALTHY") == "1":
            return 503, {"status": "unhealthy", "reason": "BACKEND_FORCE_UNHEALTHY=1 (test hook)"}
        try:
            missing = connection.run(lambda conn: missing_expected_tables(conn, expected))
        except Exception as exc:  # any failure is an answer here, not a crash of the server
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            reason = redact(f"database check failed: {first_line}")
            return 503, {"status": "unhealthy", "reason": reason}
        if missing:
            names = ", ".join(table for table, _ in missing)
            return 503, {
                "status": "unhealthy",
                "reason": f"missing tables: {names}",
                "missing_tables": [{"table": t, "created_by": f} for t, f in missing],
            }
        return 200, {"status": "ok"}

    return check


class OneConnection:
    """One database connection, used by one caller at a time and reopened when it broke:
    the /health checks (the proxy's, Docker's and anyone's) share it."""

    def __init__(self, database_url: str, application_name: str,
                 wait: float = CONNECT_TIMEOUT_S):
        self.database_url, self.application_name, self.wait = (
            database_url, application_name, wait)
        self._conn = None
        self._lock = threading.Lock()

    def run(self, work: Callable):
        if not self._lock.acquire(timeout=self.wait):
            raise TimeoutError(f"the previous check has not answered for {self.wait:g} s")
        try:
            from deploy.migrate import db

            if self._conn is None or self._conn.closed:
                # Raises "database: cannot connect to <url, password hidden>: <reason>".
                self._conn = db.connect(self.database_url,
                                        application_name=self.application_name)
            try:
                return work(self._conn)
            except Exception:
                self._conn.close()  # broken or in an unknown state: the next check reconnects
                self._conn = None
                raise
        finally:
            self._lock.release()


def make_pool(database_url: str, size: int = POOL_SIZE):
    """A bounded pool (autocommit connections), opened in the background: the server
    starts even while the database does not answer yet."""
    from psycopg_pool import ConnectionPool

    from deploy.migrate.db import CLIENT_KEEPALIVES

    pool = ConnectionPool(
        database_url, min_size=2, max_size=size, open=False, name="backend",
        timeout=POOL_WAIT_S, check=ConnectionPool.check_connection,
        kwargs={"autocommit": True, "application_name": "backend",
                "connect_timeout": CONNECT_TIMEOUT_S, **CLIENT_KEEPALIVES})
    pool.open(wait=False)
    return pool


Counters = Callable[[str, int], tuple[int, dict]]


def make_counters(pool, redact: Callable[[str], str] = str) -> Counters:
    """GET reads a row of hot_counters; POST adds one to it."""

    def counters(method: str, counter_id: int) -> tuple[int, dict]:
        try:
            with pool.connection() as conn:
                if method == "POST":
                    row = conn.execute(
                        "INSERT INTO hot_counters AS h (id, hits) VALUES (%s, 1) "
                        "ON CONFLICT (id) DO UPDATE SET hits = h.hits + 1, "
                        "updated_at = CURRENT_TIMESTAMP RETURNING hits", (counter_id,)).fetchone()
                else:
                    row = conn.execute("SELECT hits FROM hot_counters WHERE id = %s",
                                       (counter_id,)).fetchone()
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return 503, {"error": redact(f"database: {first_line}")}
        if row is None:
            return 404, {"error": f"no counter {counter_id}"}
        return 200, {"id": counter_id, "hits": row[0]}

    return counters


def make_handler(health: HealthCheck, counters: Counters | None = None,
                 slow_requests: bool = False) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "deploy-backend"
        protocol_version = "HTTP/1.1"  # keep-alive: the proxy reuses its connections
        timeout = IDLE_TIMEOUT_S

        def handle_one_request(self) -> None:
            # Idle until a request line arrives; a draining server closes idle connections.
            if not getattr(self.server, "mark", _always)(self.connection, idle=True):
                self.close_connection = True
                return
            super().handle_one_request()

        def parse_request(self) -> bool:
            getattr(self.server, "mark", _always)(self.connection, idle=False)
            return super().parse_request()

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path, _, query = self.path.partition("?")
            counter = _COUNTER.match(path)
            if path == HEALTH_PATH:
                self._send_json(*health())
            elif counter and counters is not None:
                self._send_json(*counters("GET", int(counter.group(1))))
            elif path == "/slow" and slow_requests:
                self._send_json(*slow(query))
            elif path == "/":
                self._send_json(200, {"service": "backend", "health": HEALTH_PATH})
            else:
                self._send_json(404, {"error": f"no route {path}"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 1 << 16))
            counter = _COUNTER.match(self.path.partition("?")[0])
            if counter and counters is not None:
                self._send_json(*counters("POST", int(counter.group(1))))
            else:
                self._send_json(404, {"error": f"no route {self.path}"})

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # The healthcheck calls /health every few seconds: logging it would bury the rest.
            if self.path.split("?", 1)[0] != HEALTH_PATH:
                super().log_request(code, size)

        def _send_json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if getattr(self.server, "draining", False):
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _always(_conn, idle: bool) -> bool:
    return True


def slow(query: str) -> tuple[int, dict]:
    """The slow-request test hook: sleep ``seconds`` (at most SLOW_MAX_S), then answer."""
    values = urllib.parse.parse_qs(query)
    try:
        seconds = float(values.get("seconds", ["1"])[0])
    except ValueError:
        return 400, {"error": "seconds: not a number"}
    seconds = min(max(seconds, 0.0), SLOW_MAX_S)
    time.sleep(seconds)
    return 200, {"slept": seconds}


class DrainingServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its connections, idle or busy, so that it can
    drain: stop accepting, close the idle ones, wait for the busy ones."""

    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs when the proxy opens many at once

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.draining = False
        self._connections: dict[socket.socket, bool] = {}  # connection -> idle?
        self._changed = threading.Condition()

    def handle_error(self, request, client_address) -> None:
        """One line, never a traceback. A client that went away (HAProxy closes its health
        checks with a reset) is nothing to report at all."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return
        print(f"backend: request from {client_address[0]}: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)

    def get_request(self):
        # Headers and body leave in two writes; with Nagle's algorithm on, the body waits
        # for the client's delayed ACK of the headers (~40 ms per keep-alive request).
        request, client_address = super().get_request()
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return request, client_address

    def process_request_thread(self, request, client_address) -> None:
        with self._changed:
            self._connections[request] = True
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._changed:
                self._connections.pop(request, None)
                self._changed.notify_all()

    def mark(self, connection: socket.socket, idle: bool) -> bool:
        """Record a connection as idle or busy; False: idle while draining, so close it."""
        with self._changed:
            if idle and self.draining:
                return False
            self._connections[connection] = idle
            return True

    def drain(self, timeout: float) -> int:
        """Stop accepting, close idle connections, wait for busy ones; returns how many
        were still busy when the timeout ran out."""
        with self._changed:
            self.draining = True
            idle = [c for c, is_idle in self._connections.items() if is_idle]
        self.socket.close()
        for conn in idle:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._connections and time.monotonic() < deadline:
                self._changed.wait(min(0.1, max(deadline - time.monotonic(), 0.0)))
            return len(self._connections)


def serve() -> int:
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url:
        print("backend: DATABASE_URL is not set", file=sys.stderr)
        return 2
    migrations_dir = os.environ.get("MIGRATIONS_DIR", "migrations")
    try:
        drain_timeout = float(os.environ.get("BACKEND_DRAIN_TIMEOUT") or DRAIN_TIMEOUT_S)
    except ValueError:
        print("backend: BACKEND_DRAIN_TIMEOUT is not a number of seconds", file=sys.stderr)
        return 2
    health = make_health_check(database_url, migrations_dir)
    counters = make_counters(make_pool(database_url))
    slow_requests = os.environ.get("BACKEND_SLOW_REQUESTS") == "1"
    server = DrainingServer((HOST, PORT), make_handler(health, counters, slow_requests))

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(0)  # unwinds serve_forever in the main thread

    signal.signal(signal.SIGTERM, stop)
    print(f"backend: serving on {HOST}:{PORT} (health: {HEALTH_PATH})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except (SystemExit, KeyboardInterrupt):
        print(f"backend: draining (at most {drain_timeout:g} s)", file=sys.stderr, flush=True)
        started = time.monotonic()
        left = server.drain(drain_timeout)
        print(f"backend: drained in {time.monotonic() - started:.1f} s"
              + (f"; {left} request(s) cut off by the timeout" if left else "")
              + "; stopping", file=sys.stderr, flush=True)
    finally:
        server.server_close()
    return 0


def probe(url: str = PROBE_URL, timeout: float = 4.0) -> int:
    """GET /health, print the status and body (Docker keeps it as the probe's output), 0 on 200."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=timeout) as response:
            print(response.status, response.read().decode(errors="replace"))
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError) as exc:
        print(f"no answer from {url}: {getattr(exc, 'reason', exc)}")
    return 1


def main(argv: list[str]) -> int:
    if argv == ["--probe"]:
        return probe()
    if argv:
        print("usage: python3 -m deploy.stack.backend.app [--probe]", file=sys.stderr)
        return 2
    return serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
