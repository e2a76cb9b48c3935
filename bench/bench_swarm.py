"""A rolling update and a node loss on a real three-node Swarm (tests/support/swarm.py).

    python bench/bench_swarm.py [--replicas 6] [--clients 2] [--wrk-connections 4]

One Markdown report on stdout (progress on stderr):

1. the rig: engines answering, `swarm init`, each join, loading the local Python and HAProxy
   images into the three engines;
2. `docker stack deploy` of the stack file deploy/commands/stackfile.py renders (the
   stand-in backend tests/support/swarm_backend.py, N replicas, behind HAProxy on every
   node) until every replica runs and node n1's HAProxy routes to all of them;
3. a bare `docker service update --image` of the backend with the rendered update_config
   (start-first, parallelism 1, rollback, delay 2s, monitor 5s), polled with
   `service inspect` until `completed`, under load against n1's published port: keep-alive
   clients that never retry plus wrk; its time and failed requests;
4. node n3's dockerd stopped (SIGTERM) under load: the time until N replicas run on n1 and
   n2, and the failed GET requests.

No `invoke deploy --target swarm` exists yet: when it does, a row for it goes beside (3).
Needs root, like the rig; everything is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deploy.commands import swarm  # noqa: E402
from tests.support.load import Wrk, percentile  # noqa: E402
from tests.support.swarm import running_swarm  # noqa: E402
from tests.support.swarm_load import AddressClients  # noqa: E402
from tests.support.swarm_stack import (  # noqa: E402
    build_release,
    deploy_stack,
    on,
    rollout,
    running,
    wait_for,
)

STACK = "bench"
PORT = 8088
RELEASE = "deploy-swarm-bench/backend:v2"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def under_load(address: str, clients: int, connections: int, action) -> dict:
    """Run action() while clients and wrk hit address:PORT; its seconds and the tallies."""
    with AddressClients(address, PORT, count=clients) as load, \
            Wrk(f"http://{address}:{PORT}/", connections=connections, threads=1) as wrk:
        time.sleep(2)
        began = time.monotonic()
        action()
        seconds = time.monotonic() - began
        time.sleep(2)
    tally = load.tally()
    log(f"wrk's report:\n{wrk.report.text.strip()}")
    return {"seconds": seconds, "requests": tally.requests, "failed": len(tally.failures),
            "first_failures": tally.failures[:3],
            "p99": percentile(tally.latencies, 99),
            "wrk_requests": wrk.report.requests, "wrk_errors": wrk.report.errors,
            "wrk_p99": wrk.report.latency.get("p99", 0.0)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=6)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--wrk-connections", type=int, default=4)
    args = parser.parse_args(argv)
    service = f"{STACK}_backend"
    with running_swarm() as rig, tempfile.TemporaryDirectory() as tmp:
        log("rig up: " + ", ".join(f"{k} {v:.1f} s" for k, v in rig.timings.items()))
        n1 = rig.node("n1")
        began = time.monotonic()
        deploy_stack(rig, Path(tmp), STACK, PORT, replicas=args.replicas)
        wait_for(lambda: rollout(rig, service).ok, 300, "the stack's replicas running")
        running_at = time.monotonic() - began
        wait_for(lambda: len(_tasks_seen(n1.address, 4 * args.replicas)) == args.replicas,
                 120, "HAProxy routing to every replica")
        routed_at = time.monotonic() - began
        log(f"stack deployed: replicas running {running_at:.1f} s, routed {routed_at:.1f} s")
        build_release(rig, RELEASE)

        def update() -> None:
            on(rig, "n1", swarm.service_update_image(service, RELEASE))
            final = wait_for(lambda: (r := rollout(rig, service)).finished and r, 600,
                             "the update finished", poll=0.5)
            if not final.ok:
                raise SystemExit(f"the update ended {final.phase}: {final.errors}")

        rolled = under_load(n1.address, args.clients, args.wrk_connections, update)
        log(f"rolling update: {rolled}")
        lost = rig.node("n3")

        def lose_node() -> None:
            lost.stop_dockerd()
            wait_for(lambda: len(up := running(rig, service)) == args.replicas
                     and all(t.node != lost.hostname for t in up), 120,
                     "the replicas running on the other nodes", poll=0.5)

        recovered = under_load(n1.address, args.clients, args.wrk_connections, lose_node)
        log(f"node loss: {recovered}")
        print(report(rig.timings, args, running_at, routed_at, rolled, recovered))
    return 0


def _tasks_seen(address: str, count: int) -> set[str]:
    seen = set()
    for _ in range(count):
        try:
            with urllib.request.urlopen(f"http://{address}:{PORT}/", timeout=5) as r:
                seen.add(json.load(r)["task"])
        except (OSError, ValueError):
            return set()
    return seen


def report(timings, args, running_at, routed_at, rolled, recovered) -> str:
    rig = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    rows = []
    for name, r in (("bare `docker service update --image` (rendered update_config)", rolled),
                    ("node n3's dockerd stopped: replicas running elsewhere", recovered)):
        rows.append(f"| {name} | {r['seconds']:.1f} | {r['requests']} | {r['failed']} | "
                    f"{r['p99'] * 1000:.0f} | {r['wrk_requests']} | {r['wrk_errors']} | "
                    f"{r['wrk_p99'] * 1000:.0f} |")
    failures = [f for r in (rolled, recovered) for f in r["first_failures"]]
    return "\n".join([
        f"#### bench/bench_swarm.py — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Rig: {rig}. Stack deploy of {args.replicas} replicas: all running after "
        f"{running_at:.1f} s, n1's HAProxy routing to all after {routed_at:.1f} s.",
        f"Load: {args.clients} keep-alive clients that never retry + wrk "
        f"-c{args.wrk_connections}, against n1's published port.",
        "",
        "| what | seconds | client requests | failed | client p99 ms | wrk requests | "
        "wrk errors | wrk p99 ms |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        *(["", "First failures: " + "; ".join(failures)] if failures else []),
    ])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
