"""Deploying to 1, 2 and 4 web hosts that share one database host, against the parts a
deploy cannot do without: one build, one migration run and N switches, in one run.

    python bench/bench_roles.py [--hosts 1,2,4] [--runs 2]   # as root (network-namespace hosts)

One Markdown report on stdout (progress on stderr). For each web-host count N, a fresh rig
of N + 1 hosts (tests/support/netns.py: own network namespace, sshd and Docker engine, no
registry access): one database host and N web hosts, the sample stack, roles from the
overlays (tests/support/roles_rig.py: the web hosts reach the database through a relay on
this machine). Untimed: `invoke deploy --hosts <db>` (the database up), then a first
`invoke deploy --hosts <webs>` (every image shipped once).

Timed, `--runs` times: a release with a code change (a comment in the backend) and a new
migration file, deployed with the real `invoke deploy --hosts <webs>` (rolling). From the
deploy's own step lines (`<== … done in N s`), in the same run:

- **one build**: `build … here (once, for every host)`;
- **one migration run**: `migrate database …`, the shared database migrated once, here;
- **N switches**: per web host, `switch` + `drain + stop old` + `check-tables`: what each
  host's turn costs once its new release is ready (the point of no return and after).

The ratio is the deploy's wall time over their sum: what the rest (staging, shipping,
starting the new containers beside the old, SSH) adds. Also printed: wall time over the
one-host wall time, and where the rest went, from the same step lines (hosts are staged
and prepared at once: the worst host counts), with what no step line covers. Everything
(rigs, images, the work tree) is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import netns  # noqa: E402
from tests.support.roles_rig import RolesFleet  # noqa: E402

BUILD = re.compile(r"^<== build \S+ here \(once, for every host\) done in ([\d.]+) s$", re.M)
MIGRATE = re.compile(r"^<== migrate database .* done in ([\d.]+) s$", re.M)
SWITCH = re.compile(r"^\[(\S+)\] <== (?:switch|drain \+ stop old|check-tables --expected) "
                    r"done in ([\d.]+) s$", re.M)

SWITCH_STEP = re.compile(r"^(?:switch|drain \+ stop old|check-tables --expected)$")
HOST_STEP = re.compile(r"^\[(\S+)\] <== (.+) done in ([\d.]+) s$", re.M)
STEP = re.compile(r"^<== (.+) done in ([\d.]+) s$", re.M)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def deploy(fleet: RolesFleet, *hosts) -> tuple[float, str]:
    started = time.perf_counter()
    done = fleet.invoke("deploy", "--hosts", fleet.spec(*hosts))
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"deploy failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-2000:]}")
    return wall, done.stdout


def parts(output: str, webs: int) -> dict[str, float]:
    """The baseline's parts, and where the rest went: before the hosts (registry, push),
    staging (upload + ship) and preparing (the new release beside the old), worst host."""
    build = [float(x) for x in BUILD.findall(output)]
    migrate = [float(x) for x in MIGRATE.findall(output)]
    switches: dict[str, float] = {}
    for host, seconds in SWITCH.findall(output):
        switches[host] = switches.get(host, 0.0) + float(seconds)
    if len(build) != 1 or len(migrate) != 1 or len(switches) != webs:
        raise RuntimeError(f"unexpected deploy output: {len(build)} build(s), {len(migrate)} "
                           f"migration run(s), {len(switches)} switch(es):\n{output[-3000:]}")
    staging: dict[str, float] = {}
    prepare: dict[str, float] = {}
    for host, name, seconds in HOST_STEP.findall(output):
        if name.startswith(("upload ", "ship images")):
            staging[host] = staging.get(host, 0.0) + float(seconds)
        elif not SWITCH_STEP.match(name):
            prepare[host] = prepare.get(host, 0.0) + float(seconds)
    before = sum(float(s) for n, s in STEP.findall(output)) - build[0] - migrate[0]
    return {"build": build[0], "migrate": migrate[0], "switches": sum(switches.values()),
            "before": before, "staging": max(staging.values(), default=0.0),
            "prepare": max(prepare.values(), default=0.0)}


def measure(webs: int, runs: int, work: Path) -> dict:
    with netns.running_netns_hosts(webs + 1) as rig:
        (work / f"n{webs}").mkdir()
        fleet = RolesFleet(rig, work / f"n{webs}")
        try:
            log(f"[{webs} web host(s)] untimed: the database host, then a first deploy")
            deploy(fleet, fleet.db)
            deploy(fleet, *fleet.webs)
            rows = []
            for i in range(runs):
                fleet.tree.change()
                (fleet.tree.path / f"migrations/{900 + i}_bench_roles_{i}.sql").write_text(
                    f"CREATE TABLE IF NOT EXISTS bench_roles_{i} (id int PRIMARY KEY);\n")
                fleet.tree.commit(f"bench run {i}")
                wall, output = deploy(fleet, *fleet.webs)
                row = {"wall": wall, **parts(output, webs)}
                log(f"[{webs} web host(s)] run {i + 1}: {wall:.1f} s ({row})")
                rows.append(row)
        finally:
            fleet.teardown()
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def report(results: dict[int, dict], runs: int) -> None:
    print(f"#### bench/bench_roles.py — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"One database host and N web hosts (network namespaces, own dockerd and sshd); "
          f"a release with a code change and one new migration, `invoke deploy --hosts "
          f"<webs>` rolling; medians of {runs} run(s). Baseline = one build + one migration "
          "run + N switches (switch, drain + stop old, check-tables per host), taken from "
          "the same deploy's step lines.\n")
    print("| web hosts | deploy | one build | one migration run | N switches | baseline | "
          "deploy ÷ baseline | deploy ÷ 1-host deploy |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    first = results[min(results)]["wall"]
    for n, r in sorted(results.items()):
        base = r["build"] + r["migrate"] + r["switches"]
        print(f"| {n} | {r['wall']:.1f} s | {r['build']:.1f} s | {r['migrate']:.2f} s | "
              f"{r['switches']:.1f} s | {base:.1f} s | {r['wall'] / base:.2f}× | "
              f"{r['wall'] / first:.2f}× |")
    print("\nWhere the rest went (the deploy's step lines; hosts staged and prepared at "
          "once, so the worst host counts):\n")
    print("| web hosts | other steps before the hosts | staging: upload + ship (worst "
          "host) | prepare: new beside old, healthy (worst host) | no step line (SSH "
          "sessions, locks, the registry and push, pruning, process start) |")
    print("|---:|---:|---:|---:|---:|")
    for n, r in sorted(results.items()):
        named = sum(r[k] for k in ("build", "migrate", "switches", "before", "staging",
                                   "prepare"))
        print(f"| {n} | {r['before']:.1f} s | {r['staging']:.1f} s | {r['prepare']:.1f} s | "
              f"{r['wall'] - named:.1f} s |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", default="1,2,4", help="web-host counts (default 1,2,4)")
    parser.add_argument("--runs", type=int, default=2, help="timed deploys per count")
    args = parser.parse_args()
    try:
        counts = [int(n) for n in args.hosts.split(",")]
        if not counts or any(n < 1 for n in counts) or args.runs < 1:
            raise ValueError
    except ValueError:
        print(f"--hosts: {args.hosts!r} is not a list of host counts, e.g. 1,2,4 (and "
              "--runs at least 1)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench_roles: run as root (network namespaces, dockerd)", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-roles-") as tmp:
        for n in counts:
            results[n] = measure(n, args.runs, Path(tmp))
    report(results, args.runs)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.TimeoutExpired as exc:
        print(f"bench_roles: timed out: {exc}", file=sys.stderr)
        sys.exit(1)
