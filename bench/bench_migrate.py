"""Benchmark `python -m deploy migrate` against a minimal psycopg loop, yoyo and dbmate.

    python bench/bench_migrate.py [--files 300] [--runs 5] [--scale 5000] [--database-url URL]

Part 1: N realistic migrations (bench/generate.py), written in each tool's own format.
Each run, for each tool (in an order rotated run by run): a fresh database, a CHECKPOINT,
then the timed *fresh apply* (empty database) and the timed *no-op* (everything applied)
— each one process invocation, timed as wall time of the whole command including
interpreter start-up, because that is what a container entrypoint pays. One untimed
warm-up round first. Every run is checked: the tool's history has N rows, the last
table exists, the no-op added nothing.

Part 2 (--scale N, 0 to skip): N small files applied once (setup), then the no-op
`python -m deploy migrate` and `python -m deploy migrate-status`, timed the same way.

Without --database-url a throwaway cluster is started (tests/support/pg.py) and removed.
Progress goes to stderr; the Markdown report to stdout.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import generate  # noqa: E402

from tests.support.pg import Cluster, with_database, with_query  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CACHE = BENCH / ".cache"
PY = sys.executable
MIN_RUNS = 5


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class ToolFailed(RuntimeError):
    pass


@dataclass
class Tool:
    key: str
    label: str
    history: str                                   # its history table, for the checks
    argv: Callable[[str], list[str]] | None = None  # database URL -> argv
    env: dict = field(default_factory=dict)
    unavailable: str | None = None
    version: str = ""
    fresh: list[float] = field(default_factory=list)
    noop: list[float] = field(default_factory=list)

    def env_for(self, url: str) -> dict:
        # Our runner reads its URL from the environment, the others from argv.
        return {**self.env, "DATABASE_URL": url} if self.key == "deploy" else self.env


def clean_env() -> dict:
    """The parent environment without anything that could point a tool elsewhere.

    Bytecode caching is on for every Python tool, in bench/.cache/pycache (nothing is
    written into deploy/): the backend image runs `python3 -m compileall deploy`, so a
    container never compiles the runner from source. With PYTHONDONTWRITEBYTECODE=1
    inherited (as in some shells and Dockerfiles), our modules would be compiled on every
    run, while psycopg and yoyo load pip's precompiled .pyc files.
    """
    drop = ("PG", "DATABASE_URL", "POSTGRES_", "MIGRATION", "DEPLOY_", "ENV_FILE", "YOYO",
            "DBMATE_", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPYCACHEPREFIX"] = str(CACHE / "pycache")
    return env


def run_timed(argv: list[str], env: dict, cwd: Path = REPO) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).decode(errors="replace")[-2000:]
        raise ToolFailed(f"{argv[0]} exited {proc.returncode}:\n{tail}")
    return elapsed, proc.stdout.decode(errors="replace")


# --- the tools ---------------------------------------------------------------------------

def find_dbmate(explicit: str | None) -> tuple[str | None, str]:
    """The dbmate binary: --dbmate, else the npm package installed into bench/.cache/npm.

    The npm package `dbmate` ships the Go binary in an optional per-platform package
    (@dbmate/linux-x64 …). We run that binary directly, as a container that ships dbmate
    does; the package's Node launcher would add Node's start-up to every invocation.
    """
    if explicit:
        if Path(explicit).is_file():
            return explicit, ""
        return None, f"--dbmate {explicit}: no such file"
    prefix = CACHE / "npm"
    pattern = str(prefix / "node_modules" / "@dbmate" / "*" / "bin" / "dbmate")
    found = glob.glob(pattern)
    if not found:
        npm = shutil.which("npm")
        if npm is None:
            return None, "npm not found; install Node.js/npm or pass --dbmate PATH"
        log(f"installing dbmate from npm into {prefix.relative_to(REPO)} …")
        prefix.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund",
                               "--prefix", str(prefix), "dbmate"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return None, f"npm install dbmate failed: {last}"
        found = glob.glob(pattern)
        if not found:
            return None, "npm installed dbmate but no platform binary (@dbmate/*) for this machine"
    return found[0], ""


def make_tools(args, dirs: dict[str, Path], env_file: Path) -> list[Tool]:
    base = clean_env()
    minimal = Tool("minimal", "minimal psycopg loop", "minimal_history",
                   argv=lambda url: [PY, str(BENCH / "minimal_loop.py"), url, str(dirs["runner"])],
                   env=base, version=f"psycopg {psycopg.__version__}")

    deploy = Tool("deploy", "python -m deploy migrate", "migration_history",
                  argv=lambda url: [PY, "-m", "deploy", "migrate"], version="this repo")
    deploy.env = {**base, "MIGRATIONS_DIR": str(dirs["runner"]), "ENV_FILE": str(env_file)}

    yoyo = Tool("yoyo", "yoyo apply", "_yoyo_migration")
    probe = subprocess.run([PY, "-c", "import yoyo, importlib.metadata as m; "
                            "print(m.version('yoyo-migrations'))"], capture_output=True, text=True)
    if probe.returncode != 0:
        yoyo.unavailable = "yoyo-migrations not installed: pip install -e '.[bench]'"
    else:
        yoyo.version = f"yoyo-migrations {probe.stdout.strip()}"
        script = Path(sysconfig.get_path("scripts")) / "yoyo"
        launcher = [str(script)] if script.is_file() else [PY, "-m", "yoyo"]
        # postgresql+psycopg://: yoyo on psycopg 3, the driver the other Python tools use.
        yoyo.argv = lambda url: [
            *launcher, "apply", "--batch", "--no-config-file",
            "--database", url.replace("postgresql://", "postgresql+psycopg://", 1),
            str(dirs["yoyo"])]
        yoyo.env = base

    dbmate = Tool("dbmate", f"dbmate {args.dbmate_command}", "schema_migrations")
    binary, reason = find_dbmate(args.dbmate)
    if binary is None:
        dbmate.unavailable = reason
    else:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True)
        dbmate.version = out.stdout.strip() or out.stderr.strip()
        dbmate.argv = lambda url: [binary, "--url", url, "--migrations-dir", str(dirs["dbmate"]),
                                   "--no-dump-schema", args.dbmate_command]
        dbmate.env = base
    return [minimal, deploy, yoyo, dbmate]


# --- databases ---------------------------------------------------------------------------

def create_db(admin: str, name: str, created: list[str]) -> str:
    """A new database; its name goes on `created`, dropped only when all timing is done.

    Dropping databases between runs would skew the next runs when the server's data is on
    ext4: freeing thousands of files makes the next file creations slower for a while, all
    of it in the server's system CPU time, right after a DROP DATABASE.
    """
    created.append(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute("CHECKPOINT")
    return with_database(admin, name)


def drop_dbs(admin: str, names: list[str]) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def check_applied(url: str, tool: Tool, n: int, last_table: str) -> None:
    with psycopg.connect(url) as conn:
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(tool.history))).fetchone()[0]
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (last_table,)).fetchone()[0]
    if count != n or not exists:
        raise ToolFailed(f"{tool.label}: expected {n} history rows and table {last_table}, "
                         f"found {count} rows, table {'present' if exists else 'absent'}")


# --- part 1 ------------------------------------------------------------------------------

def part1(admin: str, tools: list[Tool], n: int, runs: int, last_table: str,
          created: list[str]) -> None:
    active = [t for t in tools if not t.unavailable]
    for run in range(-1, runs):  # run -1: warm-up (page cache, .pyc files), not counted
        shift = max(run, 0) % len(active)
        for tool in active[shift:] + active[:shift]:
            if tool.unavailable:
                continue
            url = create_db(admin, f"bench_{tool.key}_{uuid.uuid4().hex[:8]}", created)
            try:
                fresh, _ = run_timed(tool.argv(url), tool.env_for(url))
                check_applied(url, tool, n, last_table)
                noop, _ = run_timed(tool.argv(url), tool.env_for(url))
                check_applied(url, tool, n, last_table)
            except ToolFailed as exc:
                if tool.key in ("minimal", "deploy"):
                    raise  # without these two there is nothing to compare
                # A competitor that fails is reported as such, with no numbers.
                log(f"{tool.label} failed, dropped from the comparison: {exc}")
                tool.unavailable = "failed: " + str(exc).strip().splitlines()[-1][:120]
                tool.fresh.clear()
                tool.noop.clear()
                continue
            if run >= 0:
                tool.fresh.append(fresh)
                tool.noop.append(noop)
            label = "warm-up" if run < 0 else f"run {run + 1}/{runs}"
            log(f"  {label:>9}  {tool.label:<26} fresh {fresh:7.3f} s   no-op {noop:6.3f} s")


# --- part 2 ------------------------------------------------------------------------------

@dataclass
class ScaleResult:
    n: int
    setup_apply: float
    noop: list[float]
    status: list[float]
    minimal_noop: list[float]


def part2(admin: str, n: int, runs: int, workdir: Path, env_file: Path,
          created: list[str]) -> ScaleResult:
    directory = workdir / "scale"
    migrations = generate.small(n)
    generate.write_runner_dir(migrations, directory)
    width = generate.width_for(n)
    env = {**clean_env(), "MIGRATIONS_DIR": str(directory), "ENV_FILE": str(env_file)}
    url = create_db(admin, f"bench_scale_{uuid.uuid4().hex[:8]}", created)
    env["DATABASE_URL"] = url
    log(f"scale: applying {n} small files once with python -m deploy migrate (setup) …")
    setup, _ = run_timed([PY, "-m", "deploy", "migrate"], env)
    # The minimal loop's no-op only reads its history: fill it directly.
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE minimal_history (filename TEXT PRIMARY KEY,"
                     " executed_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        with conn.cursor().copy("COPY minimal_history (filename) FROM STDIN") as copy:
            for m in migrations:
                copy.write_row((m.filename(width),))
    result = ScaleResult(n, setup, [], [], [])
    for run in range(-1, runs):
        noop, out = run_timed([PY, "-m", "deploy", "migrate"], env)
        if "nothing to apply" not in out:
            raise ToolFailed(f"scale no-op applied something:\n{out[-500:]}")
        status, out = run_timed([PY, "-m", "deploy", "migrate-status"], env)
        if out.count(" applied ") < n:
            raise ToolFailed(f"scale status: expected {n} applied rows:\n{out[-500:]}")
        minimal, _ = run_timed([PY, str(BENCH / "minimal_loop.py"), url, str(directory)],
                               clean_env())
        if run >= 0:
            result.noop.append(noop)
            result.status.append(status)
            result.minimal_noop.append(minimal)
        label = "warm-up" if run < 0 else f"run {run + 1}/{runs}"
        log(f"  {label:>9}  no-op {noop:.3f} s   status {status:.3f} s   "
            f"minimal no-op {minimal:.3f} s")
    return result


# --- import profile ----------------------------------------------------------------------

@dataclass
class ImportProfile:
    deploy_total: float                 # ms, all imports of `python -m deploy migrate`
    minimal_total: float                # ms, all imports of minimal_loop.py
    only_deploy: list[tuple[float, str]]  # (self ms, module) imported by deploy only
    heavy: list[str]                    # Invoke, Fabric, … if any were imported


def _importtime(argv: list[str], env: dict) -> dict[str, tuple[int, int, int]]:
    """module -> (self µs, cumulative µs, depth), from the last of three runs (warm)."""
    for _ in range(3):
        proc = subprocess.run([PY, "-X", "importtime", *argv], env=env, cwd=REPO,
                              capture_output=True, text=True)
    rows = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows[m.group(4)] = (int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2)
    return rows


def import_profile(admin: str, tools: list[Tool], n: int, last_table: str,
                   created: list[str]) -> ImportProfile:
    """`python -X importtime` on the no-op path of our runner and of the minimal loop."""
    deploy = next(t for t in tools if t.key == "deploy")
    minimal = next(t for t in tools if t.key == "minimal")
    url = create_db(admin, f"bench_imports_{uuid.uuid4().hex[:8]}", created)
    for tool in (deploy, minimal):
        run_timed(tool.argv(url), tool.env_for(url))
        check_applied(url, tool, n, last_table)
    ours = _importtime(["-m", "deploy", "migrate"], deploy.env_for(url))
    floor = _importtime(minimal.argv(url)[1:], minimal.env_for(url))

    def total(rows):
        return sum(cum for _self, cum, depth in rows.values() if depth == 0) / 1000

    only = sorted(((v[0] / 1000, k) for k, v in ours.items() if k not in floor), reverse=True)
    heavy = [m for m in ("invoke", "fabric", "paramiko", "pglast", "yaml") if m in ours]
    return ImportProfile(total(ours), total(floor), only, heavy)


# --- report ------------------------------------------------------------------------------

def _noisy(values: list[float]) -> bool:
    """Background load shows as a median well above the fastest run, or as a wide spread
    of the middle runs (the fastest and slowest quarter left out: 1 of 5 each side)."""
    v = sorted(values)
    k = len(v) // 4
    median = statistics.median(v)
    limit = max(0.10 * median, 0.01)
    return median - v[0] > limit or v[len(v) - 1 - k] - v[k] > limit


def fmt_ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}×" if base else "–"


def report(tools: list[Tool], args, scale: ScaleResult | None, imports, meta: dict) -> str:
    out = []
    minimal = next(t for t in tools if t.key == "minimal")
    base_f = statistics.median(minimal.fresh)
    base_n = statistics.median(minimal.noop)
    out.append(f"### Migration runners: {args.files} files, median of {args.runs} runs\n")
    out.append("| tool | fresh apply | × minimal | min–max | no-op | × minimal | min–max |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for t in tools:
        if t.unavailable:
            out.append(f"| {t.label} | unavailable ({t.unavailable}) | | | | | |")
            continue
        f, n = statistics.median(t.fresh), statistics.median(t.noop)
        out.append(f"| {t.label} | {f:.3f} s | {fmt_ratio(f, base_f)} | "
                   f"{min(t.fresh):.3f}–{max(t.fresh):.3f} | {n:.3f} s | {fmt_ratio(n, base_n)} | "
                   f"{min(t.noop):.3f}–{max(t.noop):.3f} |")
    out.append("")
    deploy = next(t for t in tools if t.key == "deploy")
    dbmate = next(t for t in tools if t.key == "dbmate")
    d_f, d_n = statistics.median(deploy.fresh), statistics.median(deploy.noop)
    # Each target: name, measured on medians (decides PASS/FAIL),
    # the same ratio on each tool's fastest run (background load only ever adds time, so
    # this shows what the code costs when the machine is quiet), and the verdict.
    targets = [
        ("fresh apply: deploy ≤ 1.05× minimal loop", f"{d_f / base_f:.2f}×",
         f"{min(deploy.fresh) / min(minimal.fresh):.2f}×", d_f <= 1.05 * base_f),
    ]
    if dbmate.unavailable:
        targets.append(("fresh apply: deploy no slower than dbmate",
                        f"dbmate unavailable ({dbmate.unavailable})", "", None))
    else:
        m_f = statistics.median(dbmate.fresh)
        targets.append(("fresh apply: deploy no slower than dbmate",
                        f"{d_f:.3f} s vs {m_f:.3f} s ({d_f / m_f:.2f}×)",
                        f"{min(deploy.fresh) / min(dbmate.fresh):.2f}×", d_f <= m_f))
    targets.append(("no-op: deploy ≤ 1.3× minimal loop", f"{d_n / base_n:.2f}×",
                    f"{min(deploy.noop) / min(minimal.noop):.2f}×", d_n <= 1.3 * base_n))
    if scale:
        s_n, s_s = statistics.median(scale.noop), statistics.median(scale.status)
        targets.append((f"{scale.n:,} files: no-op `migrate` < 1 s", f"{s_n:.3f} s",
                        f"{min(scale.noop):.3f} s", s_n < 1.0))
        targets.append((f"{scale.n:,} files: `migrate-status` < 1 s", f"{s_s:.3f} s",
                        f"{min(scale.status):.3f} s", s_s < 1.0))
    out.append("### Targets\n")
    out.append("| target | measured (medians) | fastest runs | result |")
    out.append("|---|---|---|---|")
    for name, measured, fastest, ok in targets:
        verdict = "n/a" if ok is None else "PASS" if ok else "FAIL"
        out.append(f"| {name} | {measured} | {fastest} | {verdict} |")
    out.append("")
    noisy = [f"{t.label} ({what})" for t in tools if not t.unavailable
             for what, v in (("fresh", t.fresh), ("no-op", t.noop)) if _noisy(v)]
    if noisy:
        out.append(f"Noise warning: {', '.join(noisy)}: the median is more than 10% above the "
                   "fastest run, or the middle runs spread by more than 10%, so something else "
                   "was using the machine. Ratios near a threshold are not reliable from this "
                   "run: rerun on a quiet machine or with more --runs.\n")
    if scale:
        m = statistics.median(scale.minimal_noop)
        out.append(f"### Scale: {scale.n:,} small files, all applied, median of {args.runs} runs\n")
        out.append("| command | median | × minimal no-op | min–max |")
        out.append("|---|---:|---:|---:|")
        for label, values in (("python -m deploy migrate (no-op)", scale.noop),
                              ("python -m deploy migrate-status", scale.status),
                              ("minimal psycopg loop (no-op)", scale.minimal_noop)):
            med = statistics.median(values)
            out.append(f"| {label} | {med:.3f} s | {med / m:.2f}× | "
                       f"{min(values):.3f}–{max(values):.3f} |")
        out.append(f"\n(setup, not a target: the first `python -m deploy migrate` of the "
                   f"{scale.n:,} files took {scale.setup_apply:.1f} s)\n")
    if imports:
        out.append("### Imports on the no-op path (`python -X importtime`, warm)\n")
        extra = sum(ms for ms, _ in imports.only_deploy)
        out.append(f"All imports: `python -m deploy migrate` {imports.deploy_total:.1f} ms, "
                   f"minimal loop {imports.minimal_total:.1f} ms (psycopg is most of both). "
                   f"Modules only our runner imports: {len(imports.only_deploy)}, "
                   f"{extra:.1f} ms of self time (importtime inflates small modules). "
                   "The slowest:\n")
        out.append("| module | self ms |")
        out.append("|---|---:|")
        for ms, name in imports.only_deploy[:10]:
            out.append(f"| {name} | {ms:.1f} |")
        out.append(f"\nInvoke / Fabric / Paramiko / pglast / PyYAML imported: "
                   f"{', '.join(imports.heavy) if imports.heavy else 'none'}\n")
    out.append("### Setup\n")
    for key, value in meta.items():
        out.append(f"- {key}: {value}")
    for t in tools:
        if not t.unavailable:
            out.append(f"- {t.label}: {t.version}")
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=300, help="realistic migrations (300)")
    parser.add_argument("--runs", type=int, default=5, help=f"timed runs per tool (≥ {MIN_RUNS})")
    parser.add_argument("--scale", type=int, default=5000,
                        help="files for the scale part (5000; 0 skips it)")
    parser.add_argument("--database-url", help="an admin URL of an existing server; the "
                        "benchmark creates and drops its own databases there")
    parser.add_argument("--dbmate", help="path of a dbmate binary (default: npm install "
                        "into bench/.cache/npm)")
    parser.add_argument("--dbmate-command", choices=("up", "migrate"), default="up",
                        help="dbmate subcommand (up: create the database if missing, then "
                        "migrate; it costs dbmate ~2 ms over `migrate`)")
    parser.add_argument("--pgdata-parent", help="where the throwaway cluster's data directory "
                        "goes (default: /dev/shm when it has 2 GiB free, else the temp dir)")
    parser.add_argument("--no-imports", action="store_true", help="skip the import profile")
    args = parser.parse_args(argv)
    if args.runs < MIN_RUNS:
        parser.error(f"--runs: at least {MIN_RUNS}")
    if args.files < 1:
        parser.error("--files: at least 1")

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    cluster = None
    admin = None
    created: list[str] = []
    try:
        if args.database_url:
            admin = with_query(args.database_url, sslmode="disable")
        else:
            log("starting a throwaway PostgreSQL cluster …")
            cluster = Cluster(args.pgdata_parent)
            admin = cluster.__enter__()
            log(f"  data directory in {cluster.tmp}")
        env_file = workdir / "empty.env"
        env_file.write_text("")
        migrations = generate.realistic(args.files)
        dirs = {"runner": workdir / "runner", "yoyo": workdir / "yoyo",
                "dbmate": workdir / "dbmate" / "db" / "migrations"}
        generate.write_runner_dir(migrations, dirs["runner"])
        generate.write_yoyo_dir(migrations, dirs["yoyo"])
        generate.write_dbmate_dir(migrations, dirs["dbmate"])
        last_table = migrations[-1].name
        size = sum(len(m.up.encode()) for m in migrations)
        log(f"generated {args.files} migrations ({size / 1024:.0f} KiB of SQL) in {workdir}")

        tools = make_tools(args, dirs, env_file)
        for t in tools:
            if t.unavailable:
                log(f"{t.label}: unavailable ({t.unavailable})")
        with psycopg.connect(admin) as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]
        load_before = os.getloadavg()
        log(f"part 1: {args.files} files, {args.runs} runs (+1 warm-up) per tool …")
        part1(admin, tools, args.files, args.runs, last_table, created)
        imports = None if args.no_imports else import_profile(admin, tools, args.files,
                                                              last_table, created)
        scale = None
        if args.scale > 0:
            log(f"part 2: {args.scale} files …")
            scale = part2(admin, args.scale, args.runs, workdir, env_file, created)
        where = (f"throwaway cluster: TCP 127.0.0.1, scram-sha-256, sslmode=disable, "
                 f"fsync=off, data directory in {cluster.tmp.parent}" if cluster
                 else "the server of --database-url")
        meta = {
            "command": " ".join(["python bench/bench_migrate.py"] + [
                "<url>" if "://" in a else a for a in (sys.argv[1:] if argv is None else argv)]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
                       f"{platform.release()}",
            "load average (1/5/15 min) before / after": (
                f"{' '.join(f'{x:.2f}' for x in load_before)} / "
                f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"),
            "PostgreSQL": f"{server} ({where}; one new database per tool per run)",
            "Python": platform.python_version(),
            "migrations": f"{args.files} files, {size / 1024:.0f} KiB of SQL (bench/generate.py)",
            "wall time of this benchmark": f"{time.perf_counter() - started:.0f} s",
        }
        print(report(tools, args, scale, imports, meta))
        return 0
    except ToolFailed as exc:
        log(f"benchmark aborted: {exc}")
        return 1
    finally:
        if cluster is not None:
            cluster.__exit__(None, None, None)  # removes every database with it
        elif admin is not None and created:
            drop_dbs(admin, created)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
