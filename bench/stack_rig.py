"""Plumbing for bench/bench_stack.py: a throwaway Compose project, timed processes,
Docker's health events.

Every project this module creates is named ``bench`` + random hex, gets its own free
loopback ports and env file in a temporary directory, and is removed (containers,
volumes, the built backend image, the local deploy lock file) by ``Project.destroy``.
Nothing here touches a container, volume or image it did not create.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.base import LOCAL_IMAGES_ENV, free_port, read_env_file  # noqa: E402
from tests.support.stack import override_path, remove_tool_leftovers  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STACK_FILE = REPO / "deploy" / "stack" / "docker-compose.yml"
PY = sys.executable
PROJECT_LABEL = "com.docker.compose.project"
# Settings a caller's shell may carry that would point the tasks elsewhere.
_FOREIGN = ("POSTGRES_", "MIGRATION", "DEPLOY_", "COMPOSE_", "DATABASE_URL", "BACKEND_",
            "ENV_FILE", "HEALTH_TIMEOUT", "BACKUP_DIR")


def log(message: str) -> None:
    print(f"[bench_stack {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


LOCAL_IMAGES = ("POSTGRES_IMAGE", "PYTHON_IMAGE", "PROXY_IMAGE")


def ensure_local_images() -> dict[str, str]:
    """The stack's base images (PostgreSQL, Python, the proxy) from .ci/local-images.env,
    built when missing: nothing can be pulled here."""
    def present(values):
        return all(k in values and subprocess.run(["docker", "image", "inspect", values[k]],
                                                  capture_output=True).returncode == 0
                   for k in LOCAL_IMAGES)

    values = read_env_file(LOCAL_IMAGES_ENV) if LOCAL_IMAGES_ENV.exists() else {}
    if not present(values):
        log("local base images missing: running bash .ci/build-images (a few minutes, once)")
        subprocess.run(["bash", str(REPO / ".ci" / "build-images")], check=True,
                       stdout=sys.stderr)
        values = read_env_file(LOCAL_IMAGES_ENV)
    return {k: values[k] for k in LOCAL_IMAGES}


@dataclass
class Stamped:
    """A finished process: exit code, output lines with their arrival time (time_ns),
    wall-clock start/end (time_ns) and duration (perf_counter)."""

    argv: list[str]
    returncode: int
    lines: list[tuple[int, str]]
    start_ns: int
    end_ns: int
    seconds: float

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first(self, prefix: str) -> int | None:
        """Arrival time of the first output line starting with ``prefix``."""
        return next((t for t, line in self.lines if line.startswith(prefix)), None)

    def check(self, what: str) -> Stamped:
        if self.returncode != 0:
            tail = "\n".join(line for _, line in self.lines[-30:])
            raise RuntimeError(f"{what} failed (exit {self.returncode}):\n{tail}")
        return self


def run_stamped(argv: list[str], env: dict[str, str], timeout: float = 300) -> Stamped:
    """Run argv (stderr merged into stdout), stamping each output line on arrival."""
    lines: list[tuple[int, str]] = []
    start_ns = time.time_ns()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def reader():
        for raw in proc.stdout:
            lines.append((time.time_ns(), raw.decode("utf-8", "replace").rstrip("\n")))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:g}s: {' '.join(argv)}") from None
    finally:
        if proc.poll() is None:  # timed out, Ctrl-C or SIGTERM: never leave it running
            proc.kill()
            proc.wait()
    seconds = time.perf_counter() - started
    end_ns = time.time_ns()
    thread.join()
    return Stamped(list(argv), proc.returncode, lines, start_ns, end_ns, seconds)


def run_counted(argv: list[str], env: dict[str, str], timeout: float = 300
                ) -> tuple[float, int, int]:
    """(seconds, exit code, stdout line count): stdout read whole by this process."""
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=timeout)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {result.returncode}): "
                           f"{result.stderr.decode(errors='replace')[-2000:]}")
    return seconds, result.returncode, result.stdout.count(b"\n")


def compose_base() -> list[str]:
    """The Compose command of the bare baselines: docker-compose (v1 here), else the plugin."""
    return ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]


def _docker_time(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


@dataclass
class Project:
    """One Compose project of the sample stack (or of another compose file)."""

    images: dict[str, str]
    compose_file: Path = STACK_FILE
    name: str = field(default_factory=lambda: "bench" + secrets.token_hex(4))
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench_stack-")))
    owns_tmp: bool = True

    def __post_init__(self) -> None:
        password = "pw" + secrets.token_hex(8)
        pg_port, backend_port = free_port(), free_port()
        self.values = {
            **self.images,
            "COMPOSE_PROJECT_NAME": self.name,
            "COMPOSE_FILE": str(self.compose_file),
            "POSTGRES_USER": "app",
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": "app",
            "POSTGRES_PUBLISHED_PORT": str(pg_port),
            "BACKEND_PUBLISHED_PORT": str(backend_port),
            "DATABASE_URL": f"postgresql://app:{password}@127.0.0.1:{pg_port}/app",
            "BACKUP_DIR": str(self.tmp / "backups"),
            "HEALTH_TIMEOUT": "120",
        }
        self.env_file = self.tmp / f"{self.name}.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.values.items()))

    @property
    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
        return {**keep, "ENV_FILE": str(self.env_file), "DOCKER_BUILDKIT": "0",
                "BENCH_PROJECT": self.name, "BENCH_COMPOSE_FILES": " ".join(self.files()),
                "BENCH_COMPOSE": " ".join(compose_base())}

    def files(self) -> list[str]:
        """-f of the compose file and, once the tool wrote it, its override (the proxy)."""
        override = override_path(self.name)
        return ["-f", str(self.compose_file),
                *(["-f", str(override)] if override.exists() else [])]

    def compose_argv(self, *args: str) -> list[str]:
        return [*compose_base(), "--env-file", str(self.env_file), *self.files(), "-p",
                self.name, *args]

    def compose(self, *args: str, check: bool = True, timeout: float = 300
                ) -> subprocess.CompletedProcess:
        result = subprocess.run(self.compose_argv(*args), cwd=REPO, env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)} failed: "
                               f"{(result.stderr or result.stdout)[-2000:]}")
        return result

    def invoke_argv(self, *args: str) -> list[str]:
        return [PY, "-m", "invoke", "--search-root", str(REPO), *args]

    def container_ids(self) -> list[str]:
        out = subprocess.run(["docker", "ps", "-aq", "--no-trunc", "--filter",
                              f"label={PROJECT_LABEL}={self.name}"],
                             capture_output=True, text=True, check=True).stdout
        return out.split()

    def states(self) -> list[dict]:
        ids = self.container_ids()
        if not ids:
            return []
        out = subprocess.run(["docker", "inspect", "--type", "container", *ids],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    def assert_healthy(self, services: set[str], within: float = 6.0) -> None:
        """Every container running and healthy, and exactly these services present. Docker's
        status is given ``within`` seconds (one healthcheck interval, 5 s, and a margin) to
        follow: a deploy does not wait for Docker's next probe (README, "Health checks")."""
        deadline = time.monotonic() + within
        while True:
            seen = {}
            for c in self.states():
                service = c["Config"]["Labels"].get("com.docker.compose.service", "")
                health = (c["State"].get("Health") or {}).get("Status")
                seen[service] = (c["State"]["Status"], health)
            bad = {s: v for s, v in seen.items() if v != ("running", "healthy")}
            if set(seen) != services or not bad or time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        if set(seen) != services or bad:
            raise RuntimeError(f"{self.name}: expected {sorted(services)} running and healthy, "
                               f"got {seen}")

    def healthy_transitions(self, since_ns: int, until_ns: int | None = None
                            ) -> dict[str, int]:
        """Per container name: when Docker first reported it healthy after since_ns (ns)."""
        until_ns = until_ns or time.time_ns()
        out = subprocess.run(
            ["docker", "events", "--since", _docker_time(since_ns),
             "--until", _docker_time(until_ns), "--filter", "type=container",
             "--filter", "event=health_status",
             "--filter", f"label={PROJECT_LABEL}={self.name}", "--format", "{{json .}}"],
            capture_output=True, text=True, check=True, timeout=60).stdout
        first: dict[str, int] = {}
        for line in out.splitlines():
            event = json.loads(line)
            if event.get("status", event.get("Action", "")).strip() != "health_status: healthy":
                continue
            name = event["Actor"]["Attributes"]["name"]
            first.setdefault(name, int(event["timeNano"]))
        return first

    def stop(self) -> None:
        """down, volumes kept: the stack is gone but the migrated database stays."""
        self.compose("down", "--remove-orphans", "-t", "5")

    def destroy(self) -> None:
        """Everything this project made: containers, network, volumes, image, lock, tmp."""
        self.compose("down", "--volumes", "--remove-orphans", "-t", "2", check=False)
        subprocess.run(["docker", "image", "rm", "-f", f"{self.name}_backend",
                        f"{self.name}-backend", f"{self.name}-proxy:live"],
                       capture_output=True)
        remove_tool_leftovers(self.name)
        Path(tempfile.gettempdir(), f"deploy-{self.name}.lock").unlink(missing_ok=True)
        if self.owns_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
