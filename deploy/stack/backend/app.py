"""The sample backend: a stdlib HTTP server whose /health guards against missing tables.

``GET /health`` answers 200 ``{"status": "ok"}`` only when the database is reachable and
every table the migrations create exists; otherwise 503 with the reason, naming each
missing table and the migration file that creates it. That is the team's outage
("relation \\"ai_cost_thresholds\\" does not exist") caught before the container takes traffic.

    python3 -m deploy.stack.backend.app            # serve on 0.0.0.0:8080 (the entrypoint does)
    python3 -m deploy.stack.backend.app --probe    # the container's healthcheck

Settings: ``DATABASE_URL`` (required), ``MIGRATIONS_DIR`` (default ``migrations``).

Test hooks, for the end-to-end tests only; never set them in a real deployment:
    BACKEND_FAIL_AT_START=1     the container exits 1 at start (see entrypoint.sh)
    BACKEND_FORCE_UNHEALTHY=1   /health answers 503 with that reason (the container stays unhealthy)
"""

from __future__ import annotations

import json
import os
import signal
import sys
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

HealthCheck = Callable[[], tuple[int, dict]]


def make_health_check(database_url: str, migrations_dir: str) -> HealthCheck:
    """Return the /health logic. Imports the database code now: a broken image fails at start."""
    from psycopg.conninfo import conninfo_to_dict

    from deploy.checks import expected_tables, missing_expected_tables
    from deploy.migrations import discover

    # libpq waits forever for an unanswering host by default; /health must not. Through the
    # environment, so the URL reaches the checks unchanged (and redacted in their messages).
    os.environ.setdefault("PGCONNECT_TIMEOUT", str(CONNECT_TIMEOUT_S))
    password = str(conninfo_to_dict(database_url).get("password") or "")
    secrets = [x for x in {password, urllib.parse.quote(password, safe="")} if x]

    def redact(text: str) -> str:
        # /health's answer ends up in `docker inspect` and in CI logs.
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    # Parsed once: the image's migrations never change while it runs.
    expected = expected_tables(discover(Path(migrations_dir)))

    def check() -> tuple[int, dict]:
        if os.environ.get("BACKEND_FORCE_UNHEALTHY") == "1":
            return 503, {"status": "unhealthy", "reason": "BACKEND_FORCE_UNHEALTHY=1 (test hook)"}
        try:
            missing = missing_expected_tables(database_url, migrations_dir, expected=expected)
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


def make_handler(health: HealthCheck) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "deploy-backend"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == HEALTH_PATH:
                self._send_json(*health())
            elif path == "/":
                self._send_json(200, {"service": "backend", "health": HEALTH_PATH})
            else:
                self._send_json(404, {"error": f"no route {path}"})

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # The healthcheck calls /health every few seconds: logging it would bury the rest.
            if self.path.split("?", 1)[0] != HEALTH_PATH:
                super().log_request(code, size)

        def _send_json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def serve() -> int:
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url:
        print("backend: DATABASE_URL is not set", file=sys.stderr)
        return 2
    migrations_dir = os.environ.get("MIGRATIONS_DIR", "migrations")
    health = make_health_check(database_url, migrations_dir)
    server = ThreadingHTTPServer((HOST, PORT), make_handler(health))
    server.daemon_threads = True

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(0)  # unwinds serve_forever in the main thread

    signal.signal(signal.SIGTERM, stop)
    print(f"backend: serving on {HOST}:{PORT} (health: {HEALTH_PATH})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except (SystemExit, KeyboardInterrupt):
        print("backend: stopping", file=sys.stderr, flush=True)
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
