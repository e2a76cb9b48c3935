"""A project adopts the tool as the README's "Use it in your project" says, in an empty
directory: the wheel of this checkout installed into a venv of its own, a two-line
tasks.py and fabfile.py, its own migrations and compose file, and an .env.

Everything runs with that venv's Python from the project's directory, without PYTHONPATH:
the installed package answers, never this checkout (asserted). The venv uses this machine's
site-packages for the dependencies (`--system-site-packages`: offline), so Invoke and
Fabric are run as `python -m invoke` / `python -m fabric` (their console scripts belong to
the system's Python, not to the venv).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from tests.support.base import LOCAL_IMAGES_ENV, ROOT, free_port, read_env_file
from tests.support.load import Clients, get

TWO_LINES = '"""The tasks of compose-switch: `invoke --list`."""\nfrom deploy.tasks import ns\n'

MIGRATIONS = {
    "001_create_orders.sql":
        "CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, total_cents integer);\n",
    "002_create_customers.sql":
        "CREATE TABLE IF NOT EXISTS customers (id bigserial PRIMARY KEY, name text);\n",
}

# The project's own stack: no `backend`, no `postgres`, no proxy; a web service on 8000
# with /healthz and a worker from the same Dockerfile. The database is the tests' cluster
# (DB_SERVICE empty: an external database, as a managed PostgreSQL would be).
COMPOSE = """\
services:
  web:
    build:
      context: .
      args:
        PYTHON_IMAGE: ${PYTHON_IMAGE:-python:3.12-slim}
    healthcheck:
      test: ["CMD", "python3", "-c",
             "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz')"]
      interval: 5s
      timeout: 3s
  worker:
    build:
      context: .
      args:
        PYTHON_IMAGE: ${PYTHON_IMAGE:-python:3.12-slim}
    command: ["python3", "-u", "worker.py"]
"""

DOCKERFILE = """\
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}
WORKDIR /app
COPY app.py worker.py ./
CMD ["python3", "-u", "app.py"]
"""

APP = '''\
"""A keep-alive HTTP server on 8000: / says its version, /healthz answers ok."""
import signal, socket, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "{version}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm
        # meets delayed ACKs and every keep-alive response waits ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        body = (b"ok" if self.path == "/healthz" else ("version " + VERSION).encode()) + b"\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


server = ThreadingHTTPServer(("0.0.0.0", 8000), Handler)
server.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print(f"web: version {{VERSION}} listening on 8000", flush=True)
server.serve_forever()
'''

WORKER = '''\
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("worker: started", flush=True)
while True:
    time.sleep(1)
'''


@dataclass
class Adopted:
    dir: Path
    venv_python: Path
    env: dict[str, str]
    database_url: str
    project: str
    proxy_port: int

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=self.dir, env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def invoke(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.run(str(self.venv_python), "-m", "invoke", *args, timeout=timeout)

    def fab(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(str(self.venv_python), "-m", "fabric", *args)

    def git(self, *args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                       cwd=self.dir, check=True, capture_output=True)


def build_wheel(out: Path) -> Path:
    """The wheel of this checkout as it is now, built from a copy holding only what the
    wheel is made of: whatever else the tool needs at run time would be missing."""
    src = out / "src"
    src.mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "deploy", src / "deploy",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = out.glob("*.whl")
    return wheel


def clean_env(venv: Path) -> dict[str, str]:
    """This process's environment without anything that would point at this checkout or
    configure the tool: the project's .env alone does."""
    dropped = ("POSTGRES_", "MIGRATION", "DEPLOY_", "COMPOSE_", "DATABASE_URL", "BACKEND_",
               "ENV_FILE", "PYTHONPATH", "VIRTUAL_ENV", "APP_", "HEALTH_", "WORKER_",
               "DB_SERVICE", "PROXY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def adopted(tmp_path, database_url) -> Adopted:
    wheel = build_wheel(tmp_path / "wheel")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, capture_output=True, timeout=120)
    python = venv / "bin" / "python"
    # In the environment the project will run in: with this checkout on PYTHONPATH, pip
    # would take a build's metadata left in it for an installed copy and skip the wheel.
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=clean_env(venv))
    assert done.returncode == 0, done.stdout + done.stderr

    project_dir = tmp_path / "shop"
    project_dir.mkdir()
    (project_dir / "tasks.py").write_text(TWO_LINES)
    (project_dir / "fabfile.py").write_text(TWO_LINES)
    migrations = project_dir / "db" / "migrations"
    migrations.mkdir(parents=True)
    for name, sql in MIGRATIONS.items():
        (migrations / name).write_text(sql)

    url = urlsplit(database_url)
    project = "adopt" + uuid.uuid4().hex[:8]
    proxy_port = free_port()
    (project_dir / ".env").write_text(textwrap.dedent(f"""\
        COMPOSE_PROJECT_NAME={project}
        COMPOSE_FILE=compose.yaml
        MIGRATIONS_DIR=db/migrations
        POSTGRES_HOST={url.hostname}
        POSTGRES_PORT={url.port}
        POSTGRES_USER={unquote(url.username or '')}
        POSTGRES_PASSWORD={unquote(url.password or '')}
        POSTGRES_DB={url.path.lstrip('/')}
        APP_SERVICES=web
        APP_PORT=8000
        HEALTH_PATH=/healthz
        WORKER_SERVICES=worker
        DB_SERVICE=
        PROXY_PUBLISH=127.0.0.1:{proxy_port}
        HEALTH_TIMEOUT=120
        """))
    return Adopted(project_dir, python, clean_env(venv), database_url, project, proxy_port)


def test_a_project_that_pip_installed_the_wheel_runs_its_own_migrations(adopted):
    where = adopted.run(str(adopted.venv_python), "-c", "import deploy; print(deploy.__file__)")
    assert where.returncode == 0, where.stderr
    installed = Path(where.stdout.strip())
    assert installed.is_relative_to(adopted.venv_python.parent.parent / "lib"), installed
    assert not installed.is_relative_to(ROOT)
    # The proxy's config is rendered by the installed package (the tool runs the proxy).
    rendered = adopted.run(str(adopted.venv_python), "-c",
                           "from deploy.commands import proxyconf as p; "
                           "print(p.haproxy_cfg(p.routes(('web',), {'web': 8000}, "
                           "{'web': '/healthz'}, {'web': '127.0.0.1:8080'}), '/lb'))")
    assert rendered.returncode == 0, rendered.stderr
    assert "option httpchk GET /healthz" in rendered.stdout

    listed = adopted.invoke("--list")
    assert listed.returncode == 0, listed.stderr
    for task in ("deploy", "migrate", "migrate-status", "check-tables", "ps", "logs", "up"):
        assert re.search(rf"^\s+{task}\s", listed.stdout, re.M), (task, listed.stdout)
    fab = adopted.fab("--list")
    assert fab.returncode == 0, fab.stderr
    assert re.search(r"^\s+migrate\s", fab.stdout, re.M), fab.stdout

    # What docs/templates/ci.yml runs, in the same order.
    linted = adopted.invoke("lint-migrations")
    assert linted.returncode == 0, linted.stdout + linted.stderr

    migrated = adopted.invoke("migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    output = migrated.stdout + migrated.stderr
    assert "migration 001_create_orders.sql applied in" in output, output
    assert "migration 002_create_customers.sql applied in" in output, output
    assert "migrations: applied 2 file(s)" in output, output
    password = urlsplit(adopted.database_url).password
    assert unquote(password) not in output

    status = adopted.invoke("migrate-status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert re.search(r"001_create_orders\.sql\s.*applied", status.stdout), status.stdout
    assert re.search(r"002_create_customers\.sql\s.*applied", status.stdout), status.stdout

    tables = adopted.invoke("check-tables", "--expected")
    assert tables.returncode == 0, tables.stdout + tables.stderr
    assert "orders" in tables.stdout and "customers" in tables.stdout, tables.stdout

    with psycopg.connect(adopted.database_url) as conn:
        rows = conn.execute("SELECT filename FROM migration_history ORDER BY id").fetchall()
    assert [r[0] for r in rows] == list(MIGRATIONS)

    # A second run finds nothing to do; a missing table is exit 3, naming it.
    again = adopted.invoke("migrate")
    assert again.returncode == 0, again.stdout + again.stderr
    with psycopg.connect(adopted.database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE customers")
    missing = adopted.invoke("check-tables", "--expected")
    assert missing.returncode == 3, missing.stdout + missing.stderr
    assert "customers" in missing.stdout + missing.stderr


# --- deploying the project's own stack ---------------------------------------------------


def _remove_project(project: str) -> None:
    """Containers, volumes, networks and images whose names start with this test's random
    project name: nothing else is touched."""
    def names(*argv: str) -> list[str]:
        out = subprocess.run(list(argv), capture_output=True, text=True).stdout.split()
        return [n for n in out if n.startswith(project)]

    containers = names("docker", "ps", "-a", "--format", "{{.Names}}")
    if containers:
        subprocess.run(["docker", "rm", "-f", *containers], capture_output=True)
    for kind in ("volume", "network"):
        found = names("docker", kind, "ls", "--format", "{{.Name}}")
        if found:
            subprocess.run(["docker", kind, "rm", *found], capture_output=True)
    images = [i for i in names("docker", "images", "--format", "{{.Repository}}:{{.Tag}}")
              if not i.endswith(":<none>")]
    if images:
        subprocess.run(["docker", "image", "rm", "-f", *images], capture_output=True)


@pytest.fixture
def stack_project(adopted, docker_ready) -> Adopted:
    """The adopted project with its own stack, in git (a release is a commit), built on
    this machine's base images."""
    images = read_env_file(LOCAL_IMAGES_ENV) if LOCAL_IMAGES_ENV.exists() else {}
    with (adopted.dir / ".env").open("a") as env:
        for name in ("PYTHON_IMAGE", "PROXY_IMAGE"):
            if images.get(name):
                env.write(f"{name}={images[name]}\n")
    (adopted.dir / "compose.yaml").write_text(COMPOSE)
    (adopted.dir / "Dockerfile").write_text(DOCKERFILE)
    (adopted.dir / "app.py").write_text(APP.format(version="one"))
    (adopted.dir / "worker.py").write_text(WORKER)
    (adopted.dir / ".gitignore").write_text(".env\n")
    adopted.git("init", "-q", "-b", "main")
    adopted.git("add", "-A")
    adopted.git("commit", "-q", "-m", "one")
    adopted.env["DOCKER_BUILDKIT"] = "0"
    try:
        yield adopted
    finally:
        adopted.invoke("down", timeout=120)
        _remove_project(adopted.project)


def _sha(project: Adopted) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project.dir,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_adopted_project_deploys_its_own_stack_with_no_failed_request(stack_project):
    project = stack_project
    first = project.invoke("deploy")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    old = _sha(project)
    assert get(project.proxy_port) == (200, "version one")
    assert get(project.proxy_port, "/healthz") == (200, "ok")

    (project.dir / "app.py").write_text(APP.format(version="two"))
    project.git("commit", "-q", "-am", "two")
    new = _sha(project)
    with Clients(project.proxy_port, count=8,
                 paths=[("GET", "/"), ("GET", "/healthz")]) as clients:
        time.sleep(1.0)
        second = project.invoke("deploy")
        time.sleep(0.5)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"traffic moves from {old} to {new}" in second.stdout, second.stdout
    load = clients.tally()
    assert load.failures == [], load.failures[:20]
    assert load.requests > 100
    assert get(project.proxy_port) == (200, "version two")

    ps = project.invoke("ps")
    assert ps.returncode == 0, ps.stdout + ps.stderr
    assert re.search(rf"^web\s+\S+\s+running\s+\S+\s+\S*\s*{new}\s+web/slot\d+ ready UP",
                     ps.stdout, re.M), ps.stdout
    assert re.search(rf"^worker\s+\S+\s+running\s.*{new}", ps.stdout, re.M), ps.stdout
    assert old not in ps.stdout, ps.stdout  # the old release's containers are gone

    logs = project.invoke("logs", "web", "--grep", "listening")
    assert logs.returncode == 0, logs.stdout + logs.stderr
    assert "web: version two listening on 8000" in logs.stdout, logs.stdout
    worker_logs = project.invoke("logs", "worker", "--grep", "started")
    assert worker_logs.returncode == 0, worker_logs.stdout + worker_logs.stderr
    assert "worker: started" in worker_logs.stdout

    with psycopg.connect(project.database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM migration_history").fetchone()
    assert rows == (len(MIGRATIONS),)
