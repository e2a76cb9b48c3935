"""Deploying a changed release under load: the old recreate path against the switch.

    python bench/bench_deploy.py [--runs 1] [--rest 10] [--connections 16]

In one run, on this machine's Docker engine, for each path:

- **recreate** (the old behaviour, reproduced here): the stack as it was before the proxy
  (the backend publishes the service port itself), and a deploy is what `invoke deploy`
  did: `compose up -d --build` (which recreates the backend of a changed release), wait
  until healthy (docker inspect every 0.25 s), `python -m deploy migrate`,
  `python -m deploy check-tables --expected`;
- **switch** (now): the sample stack with HAProxy in front, `invoke deploy`
  (deploy/release/sequence.py).

Each path gets its own throwaway Compose project deployed from a git copy of this project
(tests/support/release_tree.py); a changed release is a new commit of that copy. Load, the
same for both: wrk from Debian's packages (`--connections`, GET /counters/1: a read of
the hot table) plus a stream of 2 s requests (GET /slow?seconds=2, one after the other,
never retried). Measured first at rest (`--rest` seconds, no deploy), then through one
deploy of a changed release (the load starts 1 s before the deploy and stops 1 s after).

Then the locked-table case: a changed release whose migration needs ACCESS EXCLUSIVE on
the hot table (`ALTER TABLE hot_counters ADD COLUMN …`) while a long transaction holds a
conflicting lock on it (a "report" that read the table and stays open `--block` seconds),
under wrk on GET /counters/1 (a read of that very table), deployed twice on fresh
projects: with the runner's lock timeout (now: MIGRATION_LOCK_TIMEOUT, 0.5 s, retried on
its schedule until the report ends) and without one (every other migration tool's
behaviour, reproduced with MIGRATION_LOCK_TIMEOUT=3600: the ALTER waits in the lock queue,
and every read of the table queues behind it).

Targets: 0 failed requests; p99 during the deploy ≤ 1.5× p99 at rest; deploy
wall time ≤ 1.3× the recreate path's; in the locked-table case 0 failed and hot-table p99 ≤ lock
timeout + 250 ms. Prints a Markdown report; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.stack_rig import PY, REPO, Project, ensure_local_images, log  # noqa: E402
from tests.support.load import SlowRequests, Wrk, WrkReport  # noqa: E402
from tests.support.release_tree import ReleaseTree  # noqa: E402
from tests.support.stack import remove_project_images  # noqa: E402

# The stack as it was before the proxy (deploy/stack/docker-compose.yml at 50cd559, minus
# comments): the backend publishes the service port and is recreated by `up --build`.
OLD_STACK = """\
services:
  postgres:
    image: ${POSTGRES_IMAGE:-postgres:16}
    restart: unless-stopped
    environment:
      POSTGRES_USER: ${POSTGRES_USER:-app}
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-}
      POSTGRES_DB: ${POSTGRES_DB:-app}
    volumes:
      - pgdata:/var/lib/postgresql/data
    ports:
      - "127.0.0.1:${POSTGRES_PUBLISHED_PORT:-5432}:5432"
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -q -h 127.0.0.1 -p 5432 -U \\"$${POSTGRES_USER}\\""]
      interval: 1s
      timeout: 5s
      retries: 5
      start_period: 60s
  backend:
    build:
      context: ../..
      dockerfile: deploy/stack/backend/Dockerfile
      args:
        PYTHON_IMAGE: ${PYTHON_IMAGE:-python:3.12-slim}
    init: true
    restart: unless-stopped
    environment:
      DATABASE_URL: postgresql://${POSTGRES_USER:-app}:${POSTGRES_PASSWORD:-}@postgres:5432/${POSTGRES_DB:-app}
      DEPLOY_ENV: ${DEPLOY_ENV:-development}
      MIGRATION_TABLE: ${MIGRATION_TABLE:-migration_history}
      BACKEND_SLOW_REQUESTS: ${BACKEND_SLOW_REQUESTS:-0}
    depends_on:
      postgres:
        condition: service_healthy
    ports:
      - "127.0.0.1:${BACKEND_PUBLISHED_PORT:-8080}:8080"
    healthcheck:
      test: ["CMD", "python3", "-m", "deploy.stack.backend.app", "--probe"]
      interval: 2s
      timeout: 5s
      retries: 3
      start_period: ${BACKEND_START_PERIOD:-30s}
volumes:
  pgdata:
"""


@dataclass
class Window:
    wrk: WrkReport
    slow_requests: int
    slow_failures: list[str]
    seconds: float  # the deploy's wall time (0 at rest)

    @property
    def failed(self) -> int:
        return self.wrk.errors + len(self.slow_failures)


class Path_:
    """One deploy path on its own project."""

    name = ""

    def __init__(self, tree: ReleaseTree, imgs: dict[str, str]):
        self.tree = tree
        self.project = Project({**imgs, "BACKEND_SLOW_REQUESTS": "1"},
                               compose_file=self.compose_file(), owns_tmp=True)
        self.port = int(self.project.values["BACKEND_PUBLISHED_PORT"])

    def compose_file(self) -> Path:
        return self.tree.path / "deploy" / "stack" / "docker-compose.yml"

    def deploy(self) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        self.project.destroy()
        remove_project_images(self.project.name)


class Recreate(Path_):
    name = "recreate (today: `compose up -d --build`)"

    def compose_file(self) -> Path:
        path = self.tree.path / "deploy" / "stack" / "docker-compose.old.yml"
        path.write_text(OLD_STACK)
        return path

    def deploy(self) -> None:
        p = self.project
        p.compose("up", "-d", "--build", timeout=600)
        deadline = time.monotonic() + 120
        while True:
            states = p.states()
            if states and all((c["State"].get("Health") or {}).get("Status") == "healthy"
                              for c in states):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{p.name}: not healthy after 120 s")
            time.sleep(0.25)
        for argv in ([PY, "-m", "deploy", "migrate", "--wait", "30"],
                     [PY, "-m", "deploy", "check-tables", "--expected"]):
            subprocess.run(argv, cwd=self.tree.path, env=p.env, check=True,
                           capture_output=True, timeout=300)


class Switch(Path_):
    name = "switch (now: `invoke deploy`)"
    extra_env: dict[str, str] = {}

    def deploy(self) -> None:
        result = subprocess.run([PY, "-m", "invoke", "--search-root", str(REPO), "deploy"],
                                cwd=self.tree.path, env={**self.project.env, **self.extra_env},
                                capture_output=True,
                                text=True, timeout=600, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"invoke deploy failed ({result.returncode}):\n"
                               f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        lines = result.stdout.splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("deploy: done in")),
                     None)
        if start is not None:  # where the time went: the deploy's own step timings
            steps = [lines[start]]
            for line in lines[start + 1:]:
                if not line.startswith("   "):
                    break
                steps.append(line.strip())
            log("  " + " ".join(steps))


def measure(path: Path_, connections: int, rest: float, deploy: bool) -> Window:
    url = f"http://127.0.0.1:{path.port}/counters/1"
    with Wrk(url, connections=connections, threads=2) as wrk, \
            SlowRequests(path.port, seconds=2) as slow:
        time.sleep(1.0)
        took = 0.0
        if deploy:
            started = time.perf_counter()
            path.deploy()
            took = time.perf_counter() - started
            time.sleep(1.0)
        else:
            time.sleep(rest)
    tally = slow.tally()
    return Window(wrk.report, tally.requests, tally.failures, took)


def run_path(cls, imgs: dict[str, str], args) -> tuple[Window, Window]:
    with tempfile.TemporaryDirectory(prefix="bench_deploy-") as tmp:
        tree = ReleaseTree(Path(tmp))
        path = cls(tree, imgs)
        try:
            log(f"{cls.name}: first deploy of {tree.sha} ({path.project.name})")
            path.deploy()
            log(f"{cls.name}: {args.rest:g} s of load at rest")
            at_rest = measure(path, args.connections, args.rest, deploy=False)
            release = tree.change()
            log(f"{cls.name}: deploying the changed release {release} under load")
            during = measure(path, args.connections, args.rest, deploy=True)
        finally:
            path.destroy()
    return at_rest, during


HOT_ALTER = """\
-- A note on each counter: ACCESS EXCLUSIVE on the hot table, for an instant once granted.
-- ROLLBACK: ALTER TABLE hot_counters DROP COLUMN IF EXISTS note;
ALTER TABLE hot_counters ADD COLUMN IF NOT EXISTS note TEXT;
"""
LOCK_TIMEOUT = 0.5  # MIGRATION_LOCK_TIMEOUT's default (deploy/migrate/policy.py)
LOCKED_CASES = {  # name -> MIGRATION_LOCK_TIMEOUT for the deploy
    "lock timeout (now: 0.5 s, retried)": None,
    "no lock timeout (today)": "3600",
}


def run_locked(imgs: dict[str, str], args, lock_timeout: str | None) -> Window:
    """A changed release whose migration waits for a lock on the hot table, under load."""
    import threading

    import psycopg

    with tempfile.TemporaryDirectory(prefix="bench_deploy-") as tmp:
        tree = ReleaseTree(Path(tmp))
        path = Switch(tree, imgs)
        try:
            path.deploy()
            (tree.path / "migrations" / "024_hot_counters_note.sql").write_text(HOT_ALTER)
            tree.commit("a migration that needs ACCESS EXCLUSIVE on the hot table")
            path.extra_env = {"MIGRATION_LOCK_TIMEOUT": lock_timeout} if lock_timeout else {}
            report = psycopg.connect(path.project.values["DATABASE_URL"], autocommit=True,
                                     application_name="bench long report")
            report.execute("BEGIN")
            report.execute("SELECT count(*) FROM hot_counters").fetchone()
            threading.Timer(1.0 + args.block, report.close).start()  # from the load's start
            timeout = f"{lock_timeout} s" if lock_timeout else "the default"
            log(f"locked table ({timeout} lock timeout): deploying while a "
                f"transaction holds the hot table for {args.block:g} s")
            return measure(path, args.connections, args.rest, deploy=True)
        finally:
            path.destroy()


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def row(name: str, w: Window) -> str:
    e = w.wrk.socket_errors
    errors = f"{sum(e.values())} (connect {e['connect']}, read {e['read']}, write " \
             f"{e['write']}, timeout {e['timeout']})"
    return (f"| {name} | {w.wrk.requests:,} | {w.wrk.non_2xx} | {errors} | "
            f"{w.slow_requests - len(w.slow_failures)}/{w.slow_requests} | "
            f"{fmt_ms(w.wrk.latency.get('p50'))} | {fmt_ms(w.wrk.latency.get('p99'))} | "
            f"{fmt_ms(w.wrk.latency.get('max'))} | "
            + (f"{w.seconds:.2f} s |" if w.seconds else "- |"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="deploys per path (default 1)")
    parser.add_argument("--rest", type=float, default=10.0,
                        help="seconds of load at rest (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--block", type=float, default=8.0,
                        help="seconds the long transaction holds the hot table (default 8)")
    args = parser.parse_args()
    imgs = ensure_local_images()
    results: dict[str, list[tuple[Window, Window]]] = {Recreate.name: [], Switch.name: []}
    for run in range(args.runs):
        # Alternate the order, so a busy moment of the machine does not always hit one path.
        order = (Recreate, Switch) if run % 2 == 0 else (Switch, Recreate)
        for cls in order:
            results[cls.name].append(run_path(cls, imgs, args))

    print("## Deploying a changed release under load\n")
    print(f"`python bench/bench_deploy.py --runs {args.runs} --rest {args.rest:g} "
          f"--connections {args.connections}`: wrk -c{args.connections} on GET /counters/1 "
          "plus one stream of GET /slow?seconds=2.\n")
    print("| path, window | wrk requests | non-2xx | socket errors | 2 s requests ok "
          "| p50 | p99 | max | deploy wall time |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        for i, (rest, during) in enumerate(runs, 1):
            tag = f" (run {i})" if len(runs) > 1 else ""
            print(row(f"{name}{tag}, at rest", rest))
            print(row(f"{name}{tag}, during the deploy", during))

    old, new = results[Recreate.name], results[Switch.name]
    failed_new = sum(d.failed for _, d in new)
    failed_old = sum(d.failed for _, d in old)
    p99_ratio = statistics.median(d.wrk.latency["p99"] / r.wrk.latency["p99"] for r, d in new)
    time_old = statistics.median(d.seconds for _, d in old)
    time_new = statistics.median(d.seconds for _, d in new)
    ratio = time_new / time_old

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print("\n| target | measured | verdict |")
    print("|---|---|---|")
    print(f"| 0 failed requests during the deploy | {failed_new} (today: {failed_old}) | "
          f"{verdict(failed_new == 0)} |")
    print(f"| p99 during the deploy ≤ 1.5× p99 at rest | {p99_ratio:.2f}× | "
          f"{verdict(p99_ratio <= 1.5)} |")
    print(f"| deploy wall time ≤ 1.3× today's | {time_new:.2f} s / {time_old:.2f} s = "
          f"{ratio:.2f}× | {verdict(ratio <= 1.3)} |")

    locked = {name: run_locked(imgs, args, value) for name, value in LOCKED_CASES.items()}
    print("\n## A migration that waits for a lock on the hot table, under load\n")
    print(f"A transaction holds a lock on hot_counters for {args.block:g} s while a changed "
          "release whose migration needs ACCESS EXCLUSIVE on it is deployed; wrk "
          f"-c{args.connections} reads that table (GET /counters/1) throughout.\n")
    print("| migration, window | wrk requests | non-2xx | socket errors | 2 s requests ok "
          "| p50 | p99 | max | deploy wall time |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for name, window in locked.items():
        print(row(f"{name}, during the deploy", window))
    now = locked[next(iter(LOCKED_CASES))]
    today = locked[list(LOCKED_CASES)[1]]
    bound = LOCK_TIMEOUT + 0.25
    print("\n| target | measured | verdict |")
    print("|---|---|---|")
    print(f"| 0 failed requests (locked table) | {now.failed} (without a lock timeout: "
          f"{today.failed}) | {verdict(now.failed == 0)} |")
    print(f"| hot-table p99 ≤ lock timeout + 250 ms = {bound * 1000:.0f} ms | "
          f"{fmt_ms(now.wrk.latency.get('p99'))} (without a lock timeout: "
          f"{fmt_ms(today.wrk.latency.get('p99'))}) | "
          f"{verdict(now.wrk.latency.get('p99', 99) <= bound)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
