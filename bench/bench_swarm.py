"""The tool's rolling update on a real three-node Swarm (tests/support/swarm.py) against a
bare `docker service update --image` with the same update config, and a node loss.

    python bench/bench_swarm.py [--replicas 6] [--clients 2] [--wrk-connections 4]

One Markdown report on stdout (progress on stderr). The sample stack (PostgreSQL on
swarm-n1, the backend in N replicas, the tool's HAProxy on every node) is deployed by the
real `invoke … --target swarm` from a git copy of this project
(tests/support/swarm_target.py). Load during each step: keep-alive clients that never retry
(GET /counters/1, through the database) against n1's published port, plus wrk (GET /)
against n2's:

1. the rig (engines, `swarm init`, joins, the base images loaded into each engine) and the
   tool's first deploy (build, ship to 3 nodes, database, migrations, N replicas);
2. the load's limit: wrk for 5 s against HAProxy's own monitor URI (the proxy answers it,
   no backend) and 5 s against GET / (through a backend), with wrk's CPU time: the second
   rate well below the first, with wrk using less than its one core, means the backend
   path, not the client, limits the load;
3. `invoke deploy --target swarm` of a changed release (build, ship, migration task,
   rolling update watched to the end);
4. `invoke rollback --target swarm` (no build: the same rolling update back);
5. the baseline, in the same run on the same services: a bare `docker service update
   --image <the release of step 3> --detach` on the manager (the spec's update_config:
   start-first, parallelism 1, rollback, delay 2s, monitor 5s), polled with `service
   inspect` and `service ps` until `completed`;
6. node n3's dockerd stopped (SIGTERM): the time until N replicas run on n1 and n2.

Ratios are against (5). Needs root, like the rig; everything is removed at the end, also on
failure.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deploy.commands import swarm  # noqa: E402
from tests.support.load import parse_wrk  # noqa: E402
from tests.support.swarm import running_swarm  # noqa: E402
from tests.support.swarm_stack import wait_for  # noqa: E402
from tests.support.swarm_target import APP, Load, SwarmTarget, UnderLoad  # noqa: E402

PORT = 8090
MONITOR = "/.deploy/health"  # PROXY_HEALTH_PATH's default: HAProxy's monitor-uri


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(action) -> float:
    began = time.monotonic()
    action()
    return time.monotonic() - began


def under_load(target: SwarmTarget, args, action) -> Load:
    rig = target.rig
    with UnderLoad(PORT, rig.node("n1").address, rig.node("n2").address,
                   clients=args.clients, connections=args.wrk_connections) as load:
        seconds = timed(action)
    result = load.result
    result.seconds = seconds
    log(f"  {seconds:.1f} s; {result.line()}")
    if result.failures:
        log("  first failures: " + "; ".join(result.failures[:3]))
    return result


def wrk_rate(url: str, connections: int, seconds: int = 5) -> tuple[float, float, int]:
    """Requests/s, wrk's CPU seconds per second, errors: one wrk run of `seconds`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                           url], capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = parse_wrk(done.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return report.requests / seconds, cpu / seconds, report.errors


def ok(done, what: str) -> None:
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n"
                         f"{done.stdout[-4000:]}{done.stderr[-3000:]}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=6)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--wrk-connections", type=int, default=4)
    args = parser.parse_args(argv)
    with running_swarm(images=False) as rig, tempfile.TemporaryDirectory() as tmp:
        target = SwarmTarget(rig, Path(tmp), PORT, replicas=args.replicas, prefix="bnsw")
        try:
            return run(target, args)
        finally:
            target.teardown()


def run(target: SwarmTarget, args) -> int:
    rig = target.rig
    target.load_base_images()
    log("rig up: " + ", ".join(f"{k} {v:.1f} s" for k, v in rig.timings.items()))
    rows: dict[str, Load] = {}

    def deploy() -> None:
        ok(target.invoke("deploy", "--target", "swarm"), "invoke deploy --target swarm")

    first = timed(deploy)
    log(f"first deploy: {first:.1f} s")
    n1, n2 = rig.node("n1").address, rig.node("n2").address
    wait_for(lambda: target.rollout().ok, 120, "the first release running")
    # The row the clients read.
    urllib.request.urlopen(urllib.request.Request(f"http://{n1}:{PORT}/counters/1",
                                                  method="POST"), timeout=10).close()

    proxy_rate, proxy_cpu, _ = wrk_rate(f"http://{n2}:{PORT}{MONITOR}", args.wrk_connections)
    app_rate, app_cpu, app_errors = wrk_rate(f"http://{n2}:{PORT}/", args.wrk_connections)
    log(f"load limit: proxy alone {proxy_rate:.0f}/s (wrk {proxy_cpu:.2f} cores), through "
        f"a backend {app_rate:.0f}/s (wrk {app_cpu:.2f} cores, {app_errors} errors)")

    target.tree.change()
    log("tool: rolling update of a changed release")
    rows["tool deploy"] = under_load(target, args, deploy)
    released = target.service(APP).image

    def rollback() -> None:
        ok(target.invoke("rollback", "--target", "swarm"), "invoke rollback --target swarm")

    log("tool: rollback")
    rows["tool rollback"] = under_load(target, args, rollback)

    service = target.service_name(APP)

    def bare() -> None:
        target.docker(*swarm.service_update_image(service, released)[1:])
        final = wait_for(lambda: (r := target.rollout()).finished and r, 900,
                         "the bare update finished", poll=0.5)
        if not final.ok:
            raise SystemExit(f"the bare update ended {final.phase}: {final.errors}")

    log("baseline: bare docker service update --image")
    rows["bare"] = under_load(target, args, bare)

    lost = rig.node("n3")
    others = {n.hostname for n in rig.nodes if n is not lost}

    def lose_node() -> None:
        lost.stop_dockerd()
        wait_for(lambda: len(up := target.running(APP)) == args.replicas
                 and {t.node for t in up} <= others, 120,
                 "the replicas running on the other nodes", poll=0.5)

    log("node loss")
    rows["node loss"] = under_load(target, args, lose_node)
    print(report(rig.timings, args, first, (proxy_rate, proxy_cpu, app_rate, app_cpu), rows))
    return 0


def report(timings, args, first, limit, rows) -> str:
    rig = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    proxy_rate, proxy_cpu, app_rate, app_cpu = limit
    base = rows["bare"].seconds
    names = {
        "tool deploy": "`invoke deploy --target swarm` (changed release: build, ship, "
                       "migration task, rolling update)",
        "tool rollback": "`invoke rollback --target swarm` (no build)",
        "bare": "baseline: bare `docker service update --image` (the spec's update_config)",
        "node loss": "node n3's dockerd stopped: replicas running on n1 and n2",
    }
    lines = []
    for key, r in rows.items():
        ratio = f"{r.seconds / base:.2f}" if key != "node loss" else "–"
        lines.append(f"| {names[key]} | {r.seconds:.1f} | {ratio} | {r.requests} | "
                     f"{len(r.failures)} | {r.p99 * 1000:.0f} | {r.wrk_requests} | "
                     f"{r.wrk_errors} | {r.wrk_p99 * 1000:.0f} |")
    failures = [f for r in rows.values() for f in r.failures[:3]]
    return "\n".join([
        f"#### bench/bench_swarm.py — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Rig: {rig}. The tool's first deploy of {args.replicas} replicas: {first:.1f} s.",
        f"Load: {args.clients} keep-alive clients that never retry (GET /counters/1) on n1's "
        f"published port + wrk -t1 -c{args.wrk_connections} (GET /) on n2's.",
        f"Load limit: wrk alone against HAProxy's monitor URI {proxy_rate:.0f} req/s "
        f"(wrk {proxy_cpu:.2f} cores); through a backend {app_rate:.0f} req/s "
        f"(wrk {app_cpu:.2f} cores): {app_rate / proxy_rate:.0%} of the proxy's rate.",
        "",
        "| what | seconds | ratio to bare | client requests | failed | client p99 ms | "
        "wrk requests | wrk errors | wrk p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
        *lines,
        *(["", "First failures: " + "; ".join(failures)] if failures else []),
    ])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
