"""Benchmark remote deploys over SSH: two hosts in parallel vs one, and SSH vs local.

    python bench/bench_remote.py [--runs 3] [--wait-for-hosts SECONDS] [--no-primitives] [--strict]

One run, one Markdown report on stdout (progress on stderr). The "hosts" are the two real
sshd instances of the end-to-end tests (tests/e2e/sshd.py: 127.0.0.2:2222 and
127.0.0.3:2222, key-only auth, their own host keys) sharing this machine's Docker engine;
each has its own overlay (Compose project, loopback ports, password, DEPLOY_PATH), as in
tests/e2e/test_remote.py. A third, local project with the same settings is the baseline
of part 2.

Three sides, timed as the wall time of the whole command (interpreter start-up included),
in an order rotated run by run:

- ``local``: ``invoke deploy --no-build`` of the local project;
- ``A``:     ``invoke deploy --hosts A --no-build``;
- ``A+B``:   ``invoke deploy --hosts A,B --parallel 2 --no-build``.

1. ``A+B`` / ``A``: target ≤ 1.3× (issue 4).
2. ``A`` vs ``local``: the per-host cost of the SSH path (no target; difference and ratio),
   broken down by step from the ``[host] ==> step`` / ``<== step done in`` lines, plus the
   SSH commands each deploy sends (the hosts' sshd command logs) and a few SSH primitives
   timed in-process (connect, one command, a health poll, Compose detection, a database
   connection through the tunnel, the bundle upload).

Warm-up (untimed): one full ``invoke deploy`` (with build) to A, then B (rolling), and of
the local project, so the images exist and every database is migrated.

Starting state of every timed run, every side: all three stacks down (``docker-compose
down``: containers and network removed; the volume with the migrated database kept), so
the migrations are a no-op and every side creates and starts the same two containers. Not
"up and healthy": every remote release is a new directory, so Compose sees a new build
context and recreates the backend on a host, while locally the same project is found
up-to-date and nothing is restarted: the two sides would not do the same work.

Every Compose project is ``benchr`` + random hex (its own ports, password, env file);
all of them — containers, volumes, networks, ``<project>_backend`` images — and the temp
dir with the hosts' DEPLOY_PATHs are removed at the end, also on failure or Ctrl-C. The
sshd port is shared with the e2e tests: the benchmark refuses to start while an sshd rig
runs (``pgrep -af deploy-sshd-``), or waits ``--wait-for-hosts`` seconds for it to end.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.stack_rig import (  # noqa: E402
    PROJECT_LABEL,
    Project,
    Stamped,
    ensure_local_images,
    run_stamped,
)
from tests.e2e.sshd import TMP_PREFIX, SshdError, missing_tools, running_sshd  # noqa: E402

PARALLEL_TARGET = 1.3
SERVICES = {"postgres", "backend"}
SIDES = ("local", "A", "A+B")
# Steps in the order deploy_host runs them; `upload <release>` is shown as `upload`.
STEP_ORDER = ("upload", "docker", "build + up", "up", "wait-healthy", "migrate",
              "check-tables --expected", "switch current")


def log(message: str) -> None:
    print(f"[bench_remote {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr,
          flush=True)


def med(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def rotated(items, r: int) -> list:
    items = list(items)
    k = r % len(items)
    return items[k:] + items[:k]


def ssh_version() -> str:
    out = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    return (out.stderr or out.stdout).strip().split(",")[0] or "OpenSSH ?"


def version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30
                              ).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


# --- the hosts ---------------------------------------------------------------------------


def rig_processes() -> list[str]:
    """Running sshd rigs (the e2e tests' or a leftover): `pgrep -af deploy-sshd-`."""
    out = subprocess.run(["pgrep", "-af", TMP_PREFIX], capture_output=True, text=True).stdout
    me = str(os.getpid())
    return [line for line in out.splitlines() if line.split()[0] != me]


def wait_for_free_hosts(wait: float) -> str | None:
    """None when no rig runs (after waiting up to `wait` s); else why we cannot start."""
    deadline = time.monotonic() + wait
    announced = False
    while True:
        found = rig_processes()
        if not found:
            return None
        if time.monotonic() >= deadline:
            return ("an sshd test rig is running (the e2e tests, or a leftover of an "
                    "interrupted run) and holds port 2222 on 127.0.0.2/3:\n  "
                    + "\n  ".join(found)
                    + "\nWait for the tests to finish (or pass --wait-for-hosts 600), or stop "
                    "a leftover by its pid, then rerun. Nothing was started.")
        if not announced:
            log(f"an sshd rig is running ({len(found)} process(es)); waiting up to "
                f"{wait:.0f} s for it to end")
            announced = True
        time.sleep(5)


@dataclass
class Fleet:
    """Two hosts (one sshd each, one shared engine) and one local project, same settings."""

    rig: object
    images: dict[str, str]
    tmp: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))

    def __post_init__(self) -> None:
        self.hosts = list(self.rig.hosts)
        self.hosts_dir = self.tmp / "hosts"
        self.hosts_dir.mkdir()
        self.projects: dict[str, Project] = {}
        self.paths: dict[str, Path] = {}
        for i, host in enumerate(self.hosts):
            name = f"benchr{self.run_id}h{i + 1}"
            project = Project(self.images, name=name, tmp=self.tmp, owns_tmp=False)
            self.projects[host] = project
            self.paths[host] = self.tmp / "srv" / host
            v = project.values
            # The project's own env file describes the same stack (ports, password), so
            # Project.stop()/destroy()/assert_healthy() act on what the deploys create.
            overlay = {
                "COMPOSE_PROJECT_NAME": name,
                "POSTGRES_PASSWORD": v["POSTGRES_PASSWORD"],
                "POSTGRES_PUBLISHED_PORT": v["POSTGRES_PUBLISHED_PORT"],
                "BACKEND_PUBLISHED_PORT": v["BACKEND_PUBLISHED_PORT"],
                "DATABASE_URL": v["DATABASE_URL"],
                "DEPLOY_PATH": str(self.paths[host]),
            }
            (self.hosts_dir / f"{host}.env").write_text(
                "".join(f"{k}={val}\n" for k, val in overlay.items()))
        self.local = Project(self.images, name=f"benchr{self.run_id}lo", tmp=self.tmp,
                             owns_tmp=False)
        self.shared = {
            **self.images,
            "POSTGRES_USER": "app", "POSTGRES_PASSWORD": "unused-see-overlays",
            "POSTGRES_DB": "app",
            "DEPLOY_USER": self.rig.user, "SSH_KEY_FILE": str(self.rig.key_file),
            "SSH_KNOWN_HOSTS": str(self.rig.known_hosts),
            "DEPLOY_HOSTS_DIR": str(self.hosts_dir),
            "HEALTH_TIMEOUT": "120", "KEEP_RELEASES": "5",
        }
        self.env_file = self.tmp / "shared.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.shared.items()))

    @property
    def all_projects(self) -> list[Project]:
        return [self.local, *self.projects.values()]

    @property
    def remote_env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("POSTGRES_", "DEPLOY_", "COMPOSE_", "DATABASE_URL",
                                     "SSH_", "BACKEND_", "MIGRATION", "ENV_FILE",
                                     "HEALTH_TIMEOUT", "BACKUP_DIR", "KEEP_RELEASES"))}
        return {**keep, "ENV_FILE": str(self.env_file), "DOCKER_BUILDKIT": "0",
                "PYTHONUNBUFFERED": "1"}

    def spec(self, *hosts: str) -> str:
        return ",".join(self.rig.spec(h) for h in hosts)

    def argv(self, side: str, *, build: bool = False) -> tuple[list[str], dict[str, str]]:
        tail = () if build else ("--no-build",)
        a, b = self.hosts
        if side == "local":
            return (self.local.invoke_argv("deploy", *tail),
                    {**self.local.env, "PYTHONUNBUFFERED": "1"})
        if side == "A":
            return (self.local.invoke_argv("deploy", "--hosts", self.spec(a), *tail),
                    self.remote_env)
        if side == "A+B":
            return (self.local.invoke_argv("deploy", "--hosts", self.spec(a, b),
                                           "--parallel", "2", *tail), self.remote_env)
        if side == "A,B rolling":
            return (self.local.invoke_argv("deploy", "--hosts", self.spec(a, b), *tail),
                    self.remote_env)
        raise ValueError(side)

    def targets(self, side: str) -> list[tuple[str | None, Project]]:
        a, b = self.hosts
        return {"local": [(None, self.local)], "A": [(a, self.projects[a])],
                "A+B": [(a, self.projects[a]), (b, self.projects[b])],
                "A,B rolling": [(a, self.projects[a]), (b, self.projects[b])]}[side]

    def stop_all(self) -> None:
        """Every stack down (volumes kept), in parallel: the common starting state."""
        errors: list[BaseException] = []

        def stop(p: Project) -> None:
            try:
                p.stop()
            except BaseException as exc:  # noqa: BLE001 (re-raised below)
                errors.append(exc)

        threads = [threading.Thread(target=stop, args=(p,)) for p in self.all_projects]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        for p in self.all_projects:
            if p.container_ids():
                raise RuntimeError(f"{p.name}: containers left after down")

    def command_count(self, host: str) -> list[str]:
        return self.rig.commands(host).splitlines()

    def destroy(self) -> None:
        for p in self.all_projects:
            log(f"removing project {p.name} (containers, volumes, network, image)")
            p.destroy()
            # Belt and braces, by label: whatever a half-finished deploy left behind.
            for kind in ("ps -aq", "volume ls -q"):
                ids = subprocess.run(["docker", *kind.split(), "--filter",
                                      f"label={PROJECT_LABEL}={p.name}"],
                                     capture_output=True, text=True).stdout.split()
                if ids:
                    rm = ["docker", "rm", "-f", "-v"] if kind.startswith("ps") else \
                        ["docker", "volume", "rm", "-f"]
                    subprocess.run([*rm, *ids], capture_output=True)
            subprocess.run(["docker", "network", "rm", f"{p.name}_default"],
                           capture_output=True)


# --- one timed deploy --------------------------------------------------------------------


@dataclass
class Run:
    side: str
    seconds: float
    phases: dict[str | None, dict[str, float]]  # per host (None: local)
    in_process: dict[str, float]  # remote: "now serves … (done in X s)" per host
    commands: dict[str, list[str]]  # per host: the command lines sshd recorded


def step_name(raw: str) -> str:
    return "upload" if raw.startswith("upload ") else raw


def phases_of(r: Stamped, prefix: str) -> dict[str, float]:
    """Per step, from the arrival times of its ``==>`` / ``<== … done in`` lines; plus the
    time before the first step, between steps and after the last one."""
    starts: dict[str, int] = {}
    out: dict[str, float] = {}
    first = last = None
    between = 0
    for t, line in r.lines:
        if not line.startswith(prefix):
            continue
        body = line[len(prefix):]
        if body.startswith("==> "):
            name = step_name(body[4:].strip())
            if last is not None:
                between += t - last
            starts[name] = t
            first = first if first is not None else t
        elif body.startswith("<== ") and " done in " in body:
            name = step_name(body[4:body.index(" done in ")])
            out[name] = (t - starts[name]) / 1e9
            last = t
    if first is None or last is None:
        raise RuntimeError(f"no step lines with prefix {prefix!r} in:\n{r.text[-3000:]}")
    return {"start-up": (first - r.start_ns) / 1e9, **out,
            "between steps": between / 1e9, "after the last step": (r.end_ns - last) / 1e9}


def deploy_once(fleet: Fleet, side: str, *, build: bool = False, timed: bool = True) -> Run:
    if timed:
        fleet.stop_all()
    argv, env = fleet.argv(side, build=build)
    before = {h: len(fleet.command_count(h)) for h in fleet.hosts}
    r = run_stamped(argv, env, timeout=900).check(f"{side}: {' '.join(argv[3:])}")
    commands = {h: fleet.command_count(h)[before[h]:] for h in fleet.hosts}
    phases: dict[str | None, dict[str, float]] = {}
    in_process: dict[str, float] = {}
    for host, project in fleet.targets(side):
        prefix = f"[{host}] " if host else ""
        if timed and f"{prefix}deploy: migrations applied: none" not in r.text:
            raise RuntimeError(f"{side}: migrations were applied on {host or 'local'}; the "
                               f"agreed start is a migrated database:\n{r.text[-3000:]}")
        project.assert_healthy(SERVICES)
        phases[host] = phases_of(r, prefix)
        if host:
            m = re.search(rf"^\[{re.escape(host)}\] deploy: {re.escape(host)} now serves \S+ "
                          r"\(done in ([\d.]+) s\)", r.text, re.M)
            if not m:
                raise RuntimeError(f"{side}: no 'now serves' line for {host}:\n{r.text[-3000:]}")
            in_process[host] = float(m.group(1))
    if side == "A+B" and "failed: none; untouched: none" not in r.text:
        raise RuntimeError(f"A+B: not both hosts done:\n{r.text[-3000:]}")
    return Run(side, r.seconds, phases, in_process, commands)


# --- SSH primitives, in-process -----------------------------------------------------------


@dataclass
class Primitive:
    name: str
    remote: list[float]
    local: list[float] | None
    note: str = ""


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def primitives(fleet: Fleet, reps: int) -> list[Primitive]:
    """The operations a remote deploy repeats, over SSH to host A and locally."""
    import psycopg
    from invoke import Config, Context

    from deploy import compose, releases, remote, shell
    from deploy.lifecycle import Stack
    from deploy.settings import load_settings

    host = fleet.hosts[0]
    project = fleet.projects[host]
    for p in (fleet.local, project):  # the health poll should see the two containers
        if not p.container_ids():
            p.compose("up", "-d", "--no-build")
    shared = load_settings(environ=fleet.shared, read_file=False, cwd=REPO)
    hs = remote.host_settings(shared, host)
    target = remote.parse_hosts(fleet.spec(host))[0]
    local_settings = load_settings(environ=fleet.local.values, read_file=False, cwd=REPO)
    lc = Context(config=Config(overrides={"run": {"in_stream": False}}))
    result: list[Primitive] = []

    def connect_close():
        c = remote.connection(target, hs)
        remote.open_connection(c, hs)
        c.close()

    result.append(Primitive("SSH connect (TCP, key exchange, host key check, ed25519 auth)"
                            " + close", timed(connect_close, max(3, reps // 2)), None))
    c = remote.connection(target, hs)
    remote.open_connection(c, hs)
    try:
        shell.run(c, ["true"])
        shell.run(lc, ["true"])
        result.append(Primitive("one command, `true` (shell.run)",
                                timed(lambda: shell.run(c, ["true"]), reps),
                                timed(lambda: shell.run(lc, ["true"]), reps)))
        # Where a session's time goes: the age of the process running the command when it
        # runs (sshd forks it, then the login shell starts, reading its rc files, then
        # the ForceCommand wrapper execs the command in the same process).
        ages = []
        for _ in range(reps):
            res = c.run("read up _ < /proc/uptime; echo $up $(cut -d' ' -f22 /proc/$$/stat) "
                        "$(getconf CLK_TCK)", hide=True, in_stream=False)
            up, start, hz = res.stdout.split()
            ages.append(float(up) - int(start) / int(hz))
        result.append(Primitive(
            "… of which the host's shell start-up before the command runs (age of the "
            "session's process, 10 ms resolution)", ages, None,
            "the login shell reads ~/.bashrc for commands that arrive over SSH"))
        r_stack = Stack(c, remote.release_paths(hs, "current"))
        l_stack = Stack(lc, local_settings)
        result.append(Primitive("one health poll (`docker ps` + `docker inspect`, 2 containers)",
                                timed(r_stack.states, reps), timed(l_stack.states, reps)))

        def probe(argv):
            res = shell.run(c, argv, check=False)
            return res.exited, res.stdout

        def detect_remote():
            compose.detect_flavour(None, probe)

        result.append(Primitive(
            "Compose detection (`docker compose version`, then `docker-compose version "
            "--short`)", timed(detect_remote, 3), [0.0],
            "locally cached per machine (lifecycle.detect_flavour_cached); on a host asked "
            "once per process, so once per deploy"))

        def pg_roundtrip(url):
            with psycopg.connect(url, connect_timeout=10) as conn:
                conn.execute("SELECT 1").fetchone()

        refused: list[int] = []

        def first_connection(url):
            # forward_local returns before its listener thread has bound the port: count
            # the refused attempts (database.connect retries 0.02 s after the first one).
            n = 0
            while True:
                try:
                    pg_roundtrip(url)
                    break
                except psycopg.OperationalError:
                    n += 1
                    if n > 2000:
                        raise
                    time.sleep(0.001)
            refused.append(n)

        with remote.database_url(c, hs) as url:
            first_connection(url)
            tunnelled = timed(lambda: pg_roundtrip(url), reps)
        pg_roundtrip(local_settings.database_url)
        direct = timed(lambda: pg_roundtrip(local_settings.database_url), reps)
        result.append(Primitive("PostgreSQL connect (scram) + `SELECT 1` + close",
                                tunnelled, direct, "through the forward_local tunnel vs direct"))

        def tunnel_cycle():
            with remote.database_url(c, hs) as url:
                first_connection(url)

        cycles = timed(tunnel_cycle, reps * 2)
        result.append(Primitive(
            "tunnel open + first connection + `SELECT 1` + tunnel close", cycles, None,
            f"connection attempts refused because forward_local had not bound its port yet "
            f"(retried every 1 ms here; database.connect retries after 0.02 s): "
            f"{sum(1 for n in refused[1:] if n)} of {len(refused) - 1} tunnels"))

        data = releases.bundle(hs)
        scratch = f"{hs.deploy_path}/bench-upload.tar.gz"
        import io

        result.append(Primitive(f"bundle: build the tar.gz ({len(data):,} bytes)",
                                timed(lambda: releases.bundle(hs), 3), None))
        result.append(Primitive("bundle: SFTP put", timed(
            lambda: c.put(io.BytesIO(data), remote=scratch), 3), None))
        shell.run(c, ["rm", "-f", scratch])
    finally:
        c.close()
    return result


# --- report ------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def kind_of(line: str) -> str | None:
    """What one recorded command line is (None: a continuation of the lock script)."""
    if line.startswith(("if flock", "else echo BUSY", '[ -z "$ids" ]')):
        return None  # the second line of a multi-line script (the lock, the health poll)
    if line.endswith("sftp-server") or line in ("", "internal-sftp"):
        return "SFTP session (upload, .env)"
    if line.startswith("sh -c 'mkdir -p"):
        return "host lock (`sh -c … flock`)"
    if line.startswith(("docker ps", "docker inspect", "sh -c 'ids=$(docker ps")):
        return "health poll (`docker ps`, `docker inspect`)"
    if line.startswith(("docker compose", "docker-compose")):
        if " version" in line:
            return "Compose detection (`… version`)"
        return "Compose (`up`)"
    if line.startswith("docker info"):
        return "`docker info`"
    return "files (`mkdir`, `tar`, `rm`, `ls`, `readlink`, `test`, `ln`, `mv`)"


def command_kinds(lines: list[str]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for line in lines:
        k = kind_of(line)
        if k:
            kinds[k] = kinds.get(k, 0) + 1
    return kinds


def report(args, fleet: Fleet, runs: list[Run], prims: list[Primitive], warm: dict,
           started: float, load: str) -> bool:
    p = print
    a, b = fleet.hosts
    by = {s: [r for r in runs if r.side == s] for s in SIDES}
    m = {s: med(r.seconds for r in by[s]) for s in SIDES}
    ratio_par = m["A+B"] / m["A"]
    ratio_ssh = m["A"] / m["local"]
    ok = ratio_par <= PARALLEL_TARGET

    p(f"## bench/bench_remote.py — {time.strftime('%Y-%m-%d %H:%M %Z')}")
    p()
    import fabric
    import paramiko

    p(f"`python bench/bench_remote.py --runs {args.runs}` · {os.cpu_count()} CPUs · Docker "
      f"{version(['docker', 'version', '-f', '{{.Server.Version}}'])} · docker-compose "
      f"{version(['docker-compose', 'version', '--short'])} · Python "
      f"{platform.python_version()} · Fabric {fabric.__version__} · Paramiko "
      f"{paramiko.__version__} · {ssh_version()} · load average "
      f"at start {load} · {args.runs} timed runs per side, medians, order rotated per run.")
    p()
    p(f"Hosts: A = `{fleet.spec(a)}`, B = `{fleet.spec(b)}` (two sshd, key-only auth, "
      "known_hosts checked), sharing this machine's Docker engine and 2 cores: a parallel "
      "deploy to A and B competes for the same CPUs, which separate machines would not. "
      "Each timed run starts with all three stacks down (containers and network removed), "
      "their volumes holding the migrated database (migrations: none), backend images "
      "built, earlier releases on the hosts: the same start for every side.")
    p()
    def rng(side):
        xs = [r.seconds for r in by[side]]
        return f"{min(xs):.2f}–{max(xs):.2f}"

    p("| # | measurement | ours (median; min–max) | baseline (median; min–max) | ratio "
      "| target | result |")
    p("|---|---|---|---|---|---|---|")
    p(f"| 1 | `invoke deploy --hosts A,B --parallel 2 --no-build` vs `invoke deploy --hosts A "
      f"--no-build` | {m['A+B']:.2f} s; {rng('A+B')} | {m['A']:.2f} s; {rng('A')} | "
      f"{ratio_par:.2f}× | ≤ {PARALLEL_TARGET:.1f}× | {verdict(ok)} |")
    p(f"| 2 | per-host SSH path: `invoke deploy --hosts A --no-build` vs local `invoke deploy "
      f"--no-build` (same stack, same start) | {m['A']:.2f} s; {rng('A')} | "
      f"{m['local']:.2f} s; {rng('local')} | {ratio_ssh:.2f}× (+{m['A'] - m['local']:.2f} s) "
      f"| — (measured, no target) | — |")
    p()

    p("### Where the time goes, per step (medians, seconds)")
    p()
    p("From the arrival time of each `==> step` / `<== step done in` line (`[host] `-prefixed "
      "on hosts). start-up = process start → first step (Python, Invoke, settings; on a host "
      "also SSH connect, host lock, listing releases); between steps = on a host mostly "
      "opening the DB tunnel and the connection to PostgreSQL it carries; after the last step "
      "= on a host prune, the summary query, closing (and, in A+B, waiting for the other "
      "host); locally the summary query and exit.")
    p()
    cols = [("local", None), ("A", a), ("A+B", a), ("A+B", b)]
    p("| phase | local | A alone | A in A+B | B in A+B | A alone − local |")
    p("|---|---:|---:|---:|---:|---:|")
    names = ["start-up"]
    for step in STEP_ORDER:
        if any(step in r.phases[h] for s, h in cols for r in by[s]):
            names.append(step)
    names += ["between steps", "after the last step"]
    for name in names:
        cells, vals = [], []
        for s, h in cols:
            xs = [r.phases[h][name] for r in by[s] if name in r.phases[h]]
            vals.append(med(xs) if xs else None)
            cells.append(f"{med(xs):.2f}" if xs else "—")
        diff = (f"{vals[1] - (vals[0] or 0):+.2f}" if vals[1] is not None else "—")
        p(f"| {name} | " + " | ".join(cells) + f" | {diff} |")
    p(f"| **total (wall time of the command)** | **{m['local']:.2f}** | **{m['A']:.2f}** | "
      f"**{m['A+B']:.2f}** (both) | | **{m['A'] - m['local']:+.2f}** |")
    p(f"| in-process `now serves … (done in X s)` | — | "
      f"{med(r.in_process[a] for r in by['A']):.2f} | "
      f"{med(r.in_process[a] for r in by['A+B']):.2f} | "
      f"{med(r.in_process[b] for r in by['A+B']):.2f} | |")
    p()

    p("### SSH commands per deploy (from the hosts' sshd command logs; medians)")
    p()
    p("Each is one SSH session channel: the ForceCommand wrapper, the login shell, then the "
      "command. The tunnel's direct-tcpip channels are not logged.")
    p()
    kinds: list[str] = []
    per = {}
    for s, h in cols[1:]:
        per[(s, h)] = [command_kinds(r.commands[h]) for r in by[s]]
        for d in per[(s, h)]:
            kinds += [k for k in d if k not in kinds]
    p("| command | A alone | A in A+B | B in A+B |")
    p("|---|---:|---:|---:|")
    for k in sorted(kinds):
        p(f"| {k} | " + " | ".join(f"{med(d.get(k, 0) for d in per[c]):g}"
                                     for c in cols[1:]) + " |")
    p("| **all** | " + " | ".join(f"**{med(sum(d.values()) for d in per[c]):g}**"
                                  for c in cols[1:]) + " |")
    p()

    if prims:
        p("### SSH primitives, timed in-process against host A (medians, seconds)")
        p()
        p("| operation | over SSH | local | difference | runs |")
        p("|---|---:|---:|---:|---:|")
        for x in prims:
            rm = med(x.remote)
            lm = med(x.local) if x.local else None
            p(f"| {x.name}{' — ' + x.note if x.note else ''} | {rm:.3f} | "
              + (f"{lm:.3f} | {rm - lm:+.3f}" if lm is not None else "— | —")
              + f" | {len(x.remote)} |")
        p()

    p("### Raw runs (seconds)")
    p()
    p("| run | order | local | A | A+B |")
    p("|---|---|---:|---:|---:|")
    for i in range(args.runs):
        order = " → ".join(rotated(SIDES, i))
        cells = [f"{by[s][i].seconds:.2f}" if i < len(by[s]) else "—" for s in SIDES]
        p(f"| {i + 1} | {order} | " + " | ".join(cells) + " |")
    p()
    p("Warm-up (untimed, with build, from nothing): " + ", ".join(
        f"{k} {v:.1f} s" for k, v in warm.items()) + ".")
    p()
    p(f"Total benchmark time: {time.perf_counter() - started:.0f} s.")
    return ok


# --- main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per side (default 3)")
    parser.add_argument("--wait-for-hosts", type=float, default=0, metavar="SECONDS",
                        help="wait up to this long for a running sshd rig (e2e tests) to end "
                        "(default 0: refuse at once)")
    parser.add_argument("--no-primitives", action="store_true",
                        help="skip the in-process timing of SSH primitives")
    parser.add_argument("--strict", action="store_true",
                        help="exit 3 when the target is missed (default: exit 0 once measured)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be ≥ 1")

    started = time.perf_counter()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    os.chdir(REPO)
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        print("bench_remote: Docker is not reachable (docker info fails)", file=sys.stderr)
        return 2
    missing = missing_tools()
    if missing:
        print(f"bench_remote: the sshd hosts need {', '.join(missing)} "
              "(apt-get install openssh-server)", file=sys.stderr)
        return 2
    busy = wait_for_free_hosts(args.wait_for_hosts)
    if busy:
        print(f"bench_remote: {busy}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    images = ensure_local_images()
    tmp = Path(tempfile.mkdtemp(prefix="bench_remote-"))
    fleet = None
    runs: list[Run] = []
    prims: list[Primitive] = []
    warm: dict[str, float] = {}
    try:
        with running_sshd() as rig:
            fleet = Fleet(rig, images, tmp)
            a, b = fleet.hosts
            log(f"hosts {a}, {b} up; projects "
                + ", ".join(p.name for p in fleet.all_projects))
            log("warm-up (untimed): full deploy with build to A then B (rolling), then local")
            w = deploy_once(fleet, "A,B rolling", build=True, timed=False)
            warm["`invoke deploy --hosts A,B` (rolling)"] = w.seconds
            w = deploy_once(fleet, "local", build=True, timed=False)
            warm["local `invoke deploy`"] = w.seconds
            log(f"warm-up done: {', '.join(f'{k} {v:.1f} s' for k, v in warm.items())}")
            for i in range(args.runs):
                for side in rotated(SIDES, i):
                    run = deploy_once(fleet, side)
                    runs.append(run)
                    log(f"run {i + 1}/{args.runs}: {side}: {run.seconds:.2f} s")
            if not args.no_primitives:
                log("SSH primitives (in-process)")
                prims = primitives(fleet, reps=10)
    except SshdError as exc:
        print(f"bench_remote: sshd hosts: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if fleet is not None:
            fleet.destroy()
        shutil.rmtree(tmp, ignore_errors=True)

    ok = report(args, fleet, runs, prims, warm, started, load)
    return 3 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
