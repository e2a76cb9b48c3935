"""Benchmark the Compose lifecycle tasks against the bare commands they replace.

    python bench/bench_stack.py [--runs 5] [--lines 100000]

One run, three measurements, one Markdown report on stdout (progress on stderr):

1. ``invoke deploy`` and ``invoke deploy --no-build`` vs the bare sequence
   ``docker-compose up -d`` → a ``docker inspect`` poll every 0.1 s until every container
   is healthy → ``python -m deploy migrate``. Images are built once before timing.
   Starting state of every timed run, on every side: the stack is down (``docker-compose
   down``: containers and network removed) and its volume holds the already migrated
   database, so the migrations are a no-op — the everyday re-deploy. Each side is timed as
   the wall time of the whole command (interpreter start-up included), in an order rotated
   run by run, after one untimed warm-up of each. Target: ≤ 1.10×.
2. Health detection latency: the stack is started with ``docker-compose up -d`` (which
   returns once postgres is healthy and backend is created), then ``invoke wait-healthy``
   runs; latency = the moment that command returned − the moment the backend, the last
   container to get ready, first answered ``GET /health`` with 200 (what its healthcheck
   asks), seen by a prober here that asks its container address every 10 ms (same host
   clock). The backend answers a roughly fixed time after ``up`` returns, so run i starts
   the command i/runs × 0.25 s later, spreading the samples over wait-healthy's 0.25 s
   poll phase. Target: ≤ 0.5 s, judged on the maximum. Docker's own ``health_status:
   healthy`` event (``docker events``) is shown against the same moment: its first probe
   runs a whole healthcheck interval (5 s) after the start, which is why the tasks run a
   starting container's healthcheck themselves. Every timed ``invoke deploy`` and the bare
   loop are also timed against Docker's last healthy event (the bare loop waits for it;
   a deploy does not, so its number is negative).
3. ``invoke logs noisy --grep migration`` vs ``docker-compose logs --no-color noisy | grep -i
   migration`` on a one-shot ``noisy`` service (a separate throwaway project with its own
   compose file, the local Python image) that printed ``--lines`` lines, 1 in 100 of them
   containing "migration" in mixed case. Both matched-line counts are printed and must be
   equal. Target: ≤ 1.2×.

4. What the running stack costs at rest: the machine's CPU (``/proc/stat``, every process:
   Docker runs each healthcheck with ``docker exec``-like machinery in dockerd, containerd
   and runc, which no container's cgroup is charged for) over ``IDLE_SECONDS`` with the
   stack healthy and no request, minus the same window with its containers paused; and the
   CPU of one backend healthcheck, run 50 times in a loop inside the backend container
   (one exec for all, so only the probe itself counts): ``backend/healthcheck.sh`` (bash)
   against ``python3 -m deploy.stack.backend.app --probe``, the Python probe it replaced.
   Target: the bash probe ≤ 0.1× the Python one.

Every Compose project is ``bench`` + random hex with its own loopback ports and env file
(local base images from .ci/local-images.env, built by .ci/build-images when missing); all
of them — containers, volumes, the built backend image — are removed at the end, also on
failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack_rig import (  # noqa: E402
    PY,
    Project,
    Stamped,
    ensure_local_images,
    log,
    run_counted,
    run_stamped,
)

DEPLOY_TARGET = 1.10
LATENCY_TARGET = 0.5
LOGS_TARGET = 1.2
POLL = 0.1  # the bare loop's interval
PROBE_TARGET = 0.1
IDLE_SECONDS = 20.0
PROBES = {
    "bash": "bash /app/deploy/stack/backend/healthcheck.sh",
    "python": "python3 -m deploy.stack.backend.app --probe",
}
MAX_POLL = 0.25  # wait-healthy's poll interval (deploy/machine/health.py MAX_INTERVAL)
SERVICES = {"postgres", "backend", "proxy"}

# The bare sequence, stamped between phases (date +%s%N: wall clock, like Docker's events).
BARE_DEPLOY = r"""
set -euo pipefail
stamp() { echo "T $1 $(date +%s%N)"; }
compose=($BENCH_COMPOSE --env-file "$ENV_FILE" $BENCH_COMPOSE_FILES -p "$BENCH_PROJECT")
"${compose[@]}" up -d
stamp up
ids=$(docker ps -aq --filter "label=com.docker.compose.project=$BENCH_PROJECT")
[ -n "$ids" ] || { echo "no containers" >&2; exit 1; }
deadline=$((SECONDS + 120))
while :; do
  states=$(docker inspect --type container \
    -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids)
  grep -qvE '^running/(healthy|none)$' <<<"$states" || break
  (( SECONDS < deadline )) || { echo "not healthy after 120 s: $states" >&2; exit 4; }
  sleep __POLL__
done
stamp healthy
"$BENCH_PYTHON" -m deploy migrate
stamp migrate
""".replace("__POLL__", str(POLL))

BARE_LOGS = ('$BENCH_COMPOSE --env-file "$ENV_FILE" $BENCH_COMPOSE_FILES '
             '-p "$BENCH_PROJECT" logs --no-color noisy | grep -i migration')
COMPOSE_LOGS_ONLY = ('$BENCH_COMPOSE --env-file "$ENV_FILE" $BENCH_COMPOSE_FILES '
                     '-p "$BENCH_PROJECT" logs --no-color noisy')

# What the noisy container prints (no "$": Compose would interpolate it).
NOISY = """
import sys
n = int(sys.argv[1])
w = sys.stdout.write
kinds = ("backend: applying migration %03d_feature_%d.sql",
         "Migration %03d_feature_%d.sql applied in 12 ms",
         "MIGRATION_HISTORY: recorded %03d_feature_%d.sql")
for i in range(n):
    if i % 100 == 0:
        msg = kinds[i // 100 % 3] % (i // 100 % 1000, i)
    else:
        msg = "GET /api/items/%d 200 %d ms user=u%d" % (i, i % 97, i % 13)
    w("2026-01-01T00:00:00.000Z INFO %06d %s\\n" % (i, msg))
"""


def med(values):
    return statistics.median(values) if values else float("nan")


def rotated(items: list, r: int) -> list:
    k = r % len(items)
    return items[k:] + items[:k]


# --- 1. deploy vs the bare sequence ----------------------------------------------------


VARIANTS = {
    "invoke deploy": ("deploy",),
    "invoke deploy --no-build": ("deploy", "--no-build"),
    "bare": None,
}


@dataclass
class DeployRun:
    variant: str
    seconds: float
    phases: dict[str, float]
    latency: float  # noticed healthy − Docker's last healthy transition


def invoke_phases(r: Stamped) -> tuple[dict[str, float], int]:
    """Per step, from the arrival times of its ``==> step`` / ``<== step done`` lines."""
    starts, phases, first, last = {}, {}, None, None
    for t, line in r.lines:
        if line.startswith("==> "):
            starts[line[4:].strip()] = t
            first = first or t
        elif line.startswith("<== ") and " done in " in line:
            name = line[4:line.index(" done in ")]
            phases[name] = (t - starts[name]) / 1e9
            last = t
    phases = {"start-up (Python, Invoke, settings, lock)": (first - r.start_ns) / 1e9,
              **phases, "summary + exit": (r.end_ns - last) / 1e9}
    # "wait-healthy (new)": the new backend containers, before the switch.
    noticed = next((t for t, line in r.lines
                    if line.startswith("<== wait-healthy") and " done in " in line), None)
    if noticed is None:
        raise RuntimeError("invoke deploy printed no `<== wait-healthy … done` line:\n"
                           + "\n".join(line for _, line in r.lines[-30:]))
    return phases, noticed


def bare_phases(r: Stamped) -> tuple[dict[str, float], int]:
    stamps = {}
    for _, line in r.lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "T" and parts[2].isdigit():
            stamps[parts[1]] = int(parts[2])
    phases = {"up (docker-compose up -d)": (stamps["up"] - r.start_ns) / 1e9,
              f"wait (docker inspect every {POLL:g} s)": (stamps["healthy"] - stamps["up"]) / 1e9,
              "migrate (python -m deploy migrate)": (stamps["migrate"] - stamps["healthy"]) / 1e9,
              "exit": (r.end_ns - stamps["migrate"]) / 1e9}
    return phases, stamps["healthy"]


def deploy_once(stack: Project, variant: str) -> DeployRun:
    stack.stop()  # containers gone, migrated volume kept: the same start for every side
    env = {**stack.env, "PYTHONUNBUFFERED": "1", "BENCH_PYTHON": PY}
    args = VARIANTS[variant]
    if args is None:
        r = run_stamped(["bash", "-c", BARE_DEPLOY], env).check(variant)
        phases, noticed = bare_phases(r)
        no_op = "nothing to apply" in r.text
    else:
        r = run_stamped(stack.invoke_argv(*args), env).check(variant)
        phases, noticed = invoke_phases(r)
        no_op = "migrations applied: none" in r.text
    if not no_op:  # the agreed starting state: an already migrated database
        raise RuntimeError(f"{variant}: migrations were applied; expected a no-op:\n{r.text}")
    stack.assert_healthy(SERVICES)  # Docker's status follows within an interval
    healthy = stack.healthy_transitions(r.start_ns)
    if len(healthy) != len(SERVICES):
        raise RuntimeError(f"{variant}: health events for {sorted(healthy)}, "
                           f"expected {len(SERVICES)} containers")
    return DeployRun(variant, r.seconds, phases, (noticed - max(healthy.values())) / 1e9)


def bench_deploy(stack: Project, runs: int) -> list[DeployRun]:
    log("part 1: warm-up (untimed): bare, invoke deploy --no-build, invoke deploy")
    for variant in ("bare", "invoke deploy --no-build", "invoke deploy"):
        deploy_once(stack, variant)
    results = []
    for r in range(runs):
        for variant in rotated(list(VARIANTS), r):
            run = deploy_once(stack, variant)
            results.append(run)
            log(f"part 1 run {r + 1}/{runs}: {variant}: {run.seconds:.2f} s "
                f"(health noticed after {run.latency:.2f} s)")
    return results


# --- 2. health detection latency --------------------------------------------------------


@dataclass
class LatencyRun:
    returned: float  # process exit − the backend's first answer to /health
    printed: float  # its state table printed − the same
    waited: float  # how long wait-healthy ran
    docker: float | None  # Docker's health_status: healthy event − the same


class FirstAnswer:
    """A prober on this machine: GET /health straight to the backend container's address
    (the bridge network reaches it) every 10 ms; ``at`` = when it first answered 200
    (time.time_ns()), the moment the backend's healthcheck could first pass."""

    def __init__(self, ip: str, port: int = 8080):
        self.ip, self.port = ip, port
        self.at: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import http.client

        while not self._stop.is_set() and self.at is None:
            try:
                conn = http.client.HTTPConnection(self.ip, self.port, timeout=0.5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    self.at = time.time_ns()
                conn.close()
            except OSError:
                pass
            self._stop.wait(0.01)

    def __enter__(self) -> FirstAnswer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def latency_once(stack: Project, delay: float) -> LatencyRun | None:
    stack.stop()
    since = time.time_ns()
    stack.compose("up", "-d", "--no-build")  # returns with backend created, not yet healthy
    backend = next(c for c in stack.states()
                   if c["Config"]["Labels"].get("com.docker.compose.service") == "backend")
    ip = next(n["IPAddress"] for n in backend["NetworkSettings"]["Networks"].values())
    # The backend answers a roughly fixed time after `up` returns, and wait-healthy polls
    # from its own start: without a varied delay every run would sample the same phase of
    # the poll interval.
    with FirstAnswer(ip) as first:
        time.sleep(delay)
        env = {**stack.env, "PYTHONUNBUFFERED": "1"}
        w = run_stamped(stack.invoke_argv("wait-healthy"), env).check("invoke wait-healthy")
        deadline = time.monotonic() + 5
        while first.at is None and time.monotonic() < deadline:
            time.sleep(0.05)
    if first.at is None:
        raise RuntimeError("wait-healthy returned, but the backend never answered /health")
    if first.at <= w.start_ns:
        return None  # already answering before the command started: measures nothing
    # Docker's own verdict, for comparison: its first probe runs an interval after the start.
    deadline = time.monotonic() + 7
    while True:
        healthy = stack.healthy_transitions(since)
        if backend["Name"].lstrip("/") in healthy or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    docker_at = healthy.get(backend["Name"].lstrip("/"))
    printed = w.first("SERVICE")
    return LatencyRun((w.end_ns - first.at) / 1e9, (printed - first.at) / 1e9, w.seconds,
                      (docker_at - first.at) / 1e9 if docker_at else None)


def bench_latency(stack: Project, runs: int) -> list[LatencyRun]:
    results, attempts = [], 0
    while len(results) < runs and attempts < runs * 2:
        attempts += 1
        delay = MAX_POLL * (attempts - 1) / runs % MAX_POLL  # 0, 0.1, … 0.4 s for 5 runs
        run = latency_once(stack, delay)
        if run is None:
            log("part 2: stack was healthy before wait-healthy started; run discarded")
            continue
        results.append(run)
        log(f"part 2 run {len(results)}/{runs} (started {delay:.2f} s after up): returned "
            f"{run.returned:.3f} s after the backend first answered (waited "
            f"{run.waited:.2f} s)")
    return results


# --- 3. logs --grep vs compose logs | grep -i ------------------------------------------


@dataclass
class LogsResult:
    ours: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    compose_only: list[float] = field(default_factory=list)
    ours_count: set[int] = field(default_factory=set)
    bare_count: set[int] = field(default_factory=set)
    expected: int = 0


@dataclass
class IdleResult:
    busy: float  # cores, the stack healthy and idle
    paused: float  # cores, the same window with its containers paused
    probe: dict[str, float]  # CPU seconds per probe, by kind

    @property
    def stack(self) -> float:
        return self.busy - self.paused


def busy_cores(seconds: float) -> float:
    """The machine's CPU use over `seconds`, in cores (every process, /proc/stat)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    (b0, t0), _ = sample(), time.sleep(seconds)
    b1, t1 = sample()
    return (os.cpu_count() or 1) * (b1 - b0) / max(t1 - t0, 1)


def probe_cpu(container: str, command: str, count: int = 50) -> float:
    """CPU seconds (user + sys of the children) per run of `command` in the container."""
    script = (f'TIMEFORMAT="%U %S"; time (for i in $(seq {count}); do {command} >/dev/null; '
              'done)')
    done = subprocess.run(["docker", "exec", container, "bash", "-c", script],
                          capture_output=True, text=True, timeout=300)
    user, system = (float(x) for x in done.stderr.strip().splitlines()[-1].split())
    return (user + system) / count


def bench_idle(stack: Project) -> IdleResult:
    stack.assert_healthy(SERVICES)
    ids = stack.container_ids()
    backend = next(c["Id"] for c in stack.states()
                   if c["Config"]["Labels"].get("com.docker.compose.service") == "backend")
    probe = {kind: probe_cpu(backend, command) for kind, command in PROBES.items()}
    log(f"part 4: the stack at rest for {IDLE_SECONDS:g} s, then paused as long")
    time.sleep(3)  # the probes' own CPU is over
    busy = busy_cores(IDLE_SECONDS)
    subprocess.run(["docker", "pause", *ids], capture_output=True, check=True)
    try:
        paused = busy_cores(IDLE_SECONDS)
    finally:
        subprocess.run(["docker", "unpause", *ids], capture_output=True, check=True)
    return IdleResult(busy, paused, probe)


def make_noisy(images: dict[str, str], lines: int) -> Project:
    tmp = Path(tempfile.mkdtemp(prefix="bench_stack-noisy-"))
    compose_file = tmp / "noisy-compose.yml"
    # JSON is YAML: no quoting of the script needed.
    compose_file.write_text(json.dumps({"services": {"noisy": {
        "image": images["PYTHON_IMAGE"],
        "command": ["python3", "-c", NOISY, str(lines)],
        "restart": "no",
    }}}, indent=2))
    return Project(images, compose_file=compose_file, tmp=tmp)


def bench_logs(noisy: Project, runs: int, lines: int) -> LogsResult:
    log(f"part 3: noisy service printing {lines:,} lines (project {noisy.name})")
    noisy.compose("up", "-d")
    (cid,) = noisy.container_ids()
    code = subprocess.run(["docker", "wait", cid], capture_output=True, text=True,
                          check=True, timeout=300).stdout.strip()
    if code != "0":
        raise RuntimeError(f"noisy container exited {code}")
    result = LogsResult(expected=(lines + 99) // 100)
    env = noisy.env
    sides = {
        "ours": noisy.invoke_argv("logs", "noisy", "--grep", "migration"),
        "bare": ["bash", "-c", BARE_LOGS],
        "compose_only": ["bash", "-c", COMPOSE_LOGS_ONLY],
    }
    for argv in sides.values():  # warm-up
        run_counted(argv, env)
    for r in range(runs):
        for side in rotated(list(sides), r):
            seconds, _, count = run_counted(sides[side], env)
            getattr(result, side).append(seconds)
            if side == "ours":
                result.ours_count.add(count)
            elif side == "bare":
                result.bare_count.add(count)
        log(f"part 3 run {r + 1}/{runs}: invoke logs {result.ours[-1]:.2f} s, "
            f"compose logs | grep {result.bare[-1]:.2f} s, "
            f"compose logs alone {result.compose_only[-1]:.2f} s")
    return result


# --- report ------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return "?"


def report(args, deploy_runs, latency_runs, logs, idle: IdleResult, started: float,
           load: str) -> bool:
    by = {v: [r for r in deploy_runs if r.variant == v] for v in VARIANTS}
    m = {v: med([r.seconds for r in runs]) for v, runs in by.items()}
    ratio_deploy = m["invoke deploy"] / m["bare"]
    ratio_nobuild = m["invoke deploy --no-build"] / m["bare"]
    lat_returned = [r.returned for r in latency_runs]
    lat_max = max(lat_returned)
    ours_logs, bare_logs = med(logs.ours), med(logs.bare)
    ratio_logs = ours_logs / bare_logs
    counts_equal = (len(logs.ours_count) == 1 and logs.ours_count == logs.bare_count)
    ours_n = "/".join(map(str, sorted(logs.ours_count)))
    bare_n = "/".join(map(str, sorted(logs.bare_count)))

    ok = {
        "deploy": ratio_deploy <= DEPLOY_TARGET,
        "nobuild": ratio_nobuild <= DEPLOY_TARGET,
        "latency": lat_max <= LATENCY_TARGET,
        "logs": ratio_logs <= LOGS_TARGET and counts_equal,
        "probe": idle.probe["bash"] / idle.probe["python"] <= PROBE_TARGET,
    }
    ratio_probe = idle.probe["bash"] / idle.probe["python"]
    p = print
    p(f"## bench/bench_stack.py — {time.strftime('%Y-%m-%d %H:%M %Z')}")
    p()
    docker = version(["docker", "version", "-f", "{{.Server.Version}}"])
    p(f"`python bench/bench_stack.py --runs {args.runs} --lines {args.lines}` · "
      f"{os.cpu_count()} CPUs · Docker {docker}"
      f" · docker-compose {version(['docker-compose', 'version', '--short'])} · "
      f"Python {platform.python_version()} · load average at start {load} · "
      f"{args.runs} timed runs per side, medians, order rotated per run, one warm-up each.")
    p()
    p("Deploy runs start from a stack that is down (containers and network removed) whose "
      "volume holds the migrated database (migrations are a no-op), images built; "
      "the same for every side.")
    p()
    p("| # | measurement | ours (median) | baseline (median) | ratio | target | result |")
    p("|---|---|---|---|---|---|---|")
    p(f"| 1 | `invoke deploy` vs bare `up -d` + `docker inspect` poll ({POLL:g} s) + "
      f"`python -m deploy migrate` | {m['invoke deploy']:.2f} s | {m['bare']:.2f} s | "
      f"{ratio_deploy:.2f}× | ≤ {DEPLOY_TARGET:.2f}× | {verdict(ok['deploy'])} |")
    p(f"| 1b | `invoke deploy --no-build` vs the same bare sequence | "
      f"{m['invoke deploy --no-build']:.2f} s | {m['bare']:.2f} s | {ratio_nobuild:.2f}× | "
      f"≤ {DEPLOY_TARGET:.2f}× | {verdict(ok['nobuild'])} |")
    p(f"| 2 | health detection latency of `invoke wait-healthy` (median / max of "
      f"{len(lat_returned)}) | {med(lat_returned):.3f} s / {lat_max:.3f} s | — | — | "
      f"≤ {LATENCY_TARGET:.1f} s (max) | {verdict(ok['latency'])} |")
    p(f"| 3 | `invoke logs noisy --grep migration` vs `docker-compose logs --no-color noisy "
      f"\\| grep -i migration`, {args.lines:,} lines; matched {ours_n} vs {bare_n} | "
      f"{ours_logs:.2f} s | {bare_logs:.2f} s | {ratio_logs:.2f}× | ≤ {LOGS_TARGET:.1f}×, "
      f"equal counts | {verdict(ok['logs'])} |")
    p(f"| 4 | CPU of one backend healthcheck: `backend/healthcheck.sh` (bash) vs the Python "
      f"probe it replaced | {idle.probe['bash'] * 1000:.1f} ms | "
      f"{idle.probe['python'] * 1000:.1f} ms | {ratio_probe:.3f}× | ≤ {PROBE_TARGET:g}× | "
      f"{verdict(ok['probe'])} |")
    p(f"| 4b | the stack at rest (healthy, no request): the machine's CPU minus the same "
      f"window paused, over {IDLE_SECONDS:g} s | {idle.stack:.3f} cores | — | — | — | "
      "measured |")
    p()

    p("### 1. Where a deploy spends its time (medians, seconds)")
    p()
    p("| phase | `invoke deploy` | `invoke deploy --no-build` | bare sequence |")
    p("|---|---|---|---|")
    phase_names: list[str] = []
    for v in ("invoke deploy", "invoke deploy --no-build"):
        for run in by[v]:
            phase_names += [n for n in run.phases if n not in phase_names]
    for name in phase_names:
        cells = []
        for v in ("invoke deploy", "invoke deploy --no-build"):
            vals = [r.phases[name] for r in by[v] if name in r.phases]
            cells.append(f"{med(vals):.2f}" if vals else "—")
        p(f"| {name} | {cells[0]} | {cells[1]} | |")
    for name in by["bare"][0].phases:
        p(f"| {name} | | | {med([r.phases[name] for r in by['bare']]):.2f} |")
    p(f"| **total (wall time of the command)** | **{m['invoke deploy']:.2f}** | "
      f"**{m['invoke deploy --no-build']:.2f}** | **{m['bare']:.2f}** |")
    p()

    p("### 2. Health detection latency (seconds)")
    p()
    p("| who noticed | after | median | max | samples |")
    p("|---|---|---|---|---|")
    lat_printed = [r.printed for r in latency_runs]
    p(f"| `invoke wait-healthy`: command returned (the target) | the backend first answered "
      f"/health | {med(lat_returned):.3f} | {lat_max:.3f} | {len(lat_returned)} |")
    p(f"| `invoke wait-healthy`: its state table printed | the same | {med(lat_printed):.3f} "
      f"| {max(lat_printed):.3f} | {len(lat_printed)} |")
    docker_lag = [r.docker for r in latency_runs if r.docker is not None]
    if docker_lag:
        p(f"| Docker: `health_status: healthy` event | the same | {med(docker_lag):.3f} | "
          f"{max(docker_lag):.3f} | {len(docker_lag)} |")
    in_deploy = [r.latency for v in ("invoke deploy", "invoke deploy --no-build")
                 for r in by[v]]
    p(f"| `invoke deploy`: `<== wait-healthy done` printed | Docker's last `health_status: "
      f"healthy` event | {med(in_deploy):.3f} | {max(in_deploy):.3f} | {len(in_deploy)} |")
    bare_lat = [r.latency for r in by["bare"]]
    p(f"| bare loop, `docker inspect` every {POLL:g} s | the same | {med(bare_lat):.3f} | "
      f"{max(bare_lat):.3f} | {len(bare_lat)} |")
    p()

    p(f"### 3. Logs, {args.lines:,} lines (medians, seconds)")
    p()
    p("| command | median | min | max | matched lines |")
    p("|---|---|---|---|---|")
    p(f"| `invoke logs noisy --grep migration` | {ours_logs:.2f} | {min(logs.ours):.2f} | "
      f"{max(logs.ours):.2f} | {ours_n} |")
    p(f"| `docker-compose logs --no-color noisy \\| grep -i migration` | {bare_logs:.2f} | "
      f"{min(logs.bare):.2f} | {max(logs.bare):.2f} | {bare_n} |")
    p(f"| `docker-compose logs --no-color noisy` alone (the floor) | "
      f"{med(logs.compose_only):.2f} | {min(logs.compose_only):.2f} | "
      f"{max(logs.compose_only):.2f} | — |")
    p(f"\nExpected matches: {logs.expected:,} (1 line in 100).")
    p()

    p("### Raw runs (seconds)")
    p()
    p("| run | " + " | ".join(f"`{v}`" for v in VARIANTS) + " | wait-healthy latency | "
      "invoke logs | compose logs \\| grep |")
    p("|---|" + "---|" * (len(VARIANTS) + 3))
    for i in range(args.runs):
        cells = [f"{by[v][i].seconds:.2f}" if i < len(by[v]) else "—" for v in VARIANTS]
        cells.append(f"{latency_runs[i].returned:.3f}" if i < len(latency_runs) else "—")
        cells.append(f"{logs.ours[i]:.2f}" if i < len(logs.ours) else "—")
        cells.append(f"{logs.bare[i]:.2f}" if i < len(logs.bare) else "—")
        p(f"| {i + 1} | " + " | ".join(cells) + " |")
    p()
    p(f"Total benchmark time: {time.perf_counter() - started:.0f} s.")
    return all(ok.values())


# --- main ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per side (default 5)")
    parser.add_argument("--lines", type=int, default=100_000,
                        help="log lines the noisy service prints (default 100000)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 3 when a target is missed (default: exit 0 once measured)")
    args = parser.parse_args()
    if args.runs < 1 or args.lines < 100:
        parser.error("--runs must be ≥ 1 and --lines ≥ 100")

    started = time.perf_counter()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        print("bench_stack: Docker is not reachable (docker info fails)", file=sys.stderr)
        return 2
    # SIGTERM (e.g. a CI timeout) cleans up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    images = ensure_local_images()
    projects: list[Project] = []
    try:
        stack = Project(images)
        projects.append(stack)
        env = stack.env
        log(f"project {stack.name}: building the backend image once (untimed)")
        run_stamped(stack.invoke_argv("build"), env, timeout=600).check("invoke build")
        log("first deploy from nothing (untimed): creates the volume, applies the migrations")
        run_stamped(stack.invoke_argv("deploy", "--no-build"), env).check("first deploy")
        stack.assert_healthy(SERVICES)

        deploy_runs = bench_deploy(stack, args.runs)
        latency_runs = bench_latency(stack, args.runs)
        if not latency_runs:
            raise RuntimeError("part 2: no valid run (the stack was always healthy first)")
        run_stamped(stack.invoke_argv("wait-healthy"), env).check("wait-healthy")
        idle = bench_idle(stack)
        stack.destroy()
        projects.remove(stack)

        noisy = make_noisy(images, args.lines)
        projects.append(noisy)
        logs = bench_logs(noisy, args.runs, args.lines)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        for project in projects:
            log(f"removing project {project.name} (containers, volumes, image)")
            project.destroy()

    all_ok = report(args, deploy_runs, latency_runs, logs, idle, started, load)
    return 3 if args.strict and not all_ok else 0


if __name__ == "__main__":
    sys.exit(main())
