"""deploy/machine/{proxy,routing,containers}.py against the stand-in of the tool's proxy
(tests/support/fake_proxy.py): `invoke up`'s routing of every app service (sync), what `ps`
shows of each container, the drain's timeout, and which containers of a service serve."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from invoke import Result

from deploy.commands import haproxy as proxy
from deploy.commands.compose import ContainerState
from deploy.errors import DeployError
from deploy.machine import routing
from deploy.machine.containers import classify
from deploy.machine.proxy import Proxy
from deploy.output import Output
from tests.support.fake_proxy import FakeProxy

PORTS = {"web": 8000, "admin": 9000}


def container(id_: str, service: str, ip: str, status: str = "running") -> ContainerState:
    return ContainerState(id_, f"shop-{id_}", service, status, "healthy", 0, 0, ip=ip)


class StubStack:
    """A stack whose only command is the proxy's runtime API (a `docker exec`)."""

    def __init__(self, containers: list[ContainerState]):
        self.containers = [ContainerState("px", "shop-proxy-1", "proxy", "running",
                                          "healthy", 0, 0), *containers]
        self.lines: list[str] = []
        self.out = Output(self.lines.append)
        self.settings = SimpleNamespace(app_services=("web", "admin"), app_ports=PORTS,
                                        drain_timeout=30.0, health_timeout=5.0)
        self.fake = FakeProxy(["web", "admin"], self._answers)

    def _answers(self, backend, addr, port):
        return port == PORTS[backend] and any(
            s.service == backend and s.ip == addr and s.status == "running"
            for s in self.containers)

    def states(self):
        return list(self.containers)

    def run(self, argv, check=True, **_):
        assert argv[:2] == ["docker", "exec"] and argv[2] == "px"
        return Result(stdout=self.fake.call(argv[argv.index(proxy.API_SCRIPT) + 2]), exited=0)


def _proxy(stack: StubStack) -> Proxy:
    """Its waits on a clock that only its own sleeps move."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return Proxy(stack, proxy.DrainPolicy(drain_timeout=3.0, up_timeout=2.0), sleep=sleep,
                 clock=lambda: now[0])


# --- `invoke up`: every app service routed to its running containers -------------------------


def test_a_fresh_proxy_is_routed_to_each_service_in_one_prepare_and_one_flip():
    stack = StubStack([container("w1", "web", "10.0.0.2"), container("a1", "admin", "10.0.0.3")])
    routed = _proxy(stack).sync({"web": [stack.containers[1]], "admin": [stack.containers[2]]},
                                PORTS)
    assert routed == ["admin/slot1", "web/slot1"]
    changes = [line for line in stack.fake.calls if line.startswith("set ")]
    assert changes == [
        "set server web/slot1 addr 10.0.0.2 port 8000; set server web/slot1 state drain; "
        "set server web/slot1 health down; "
        "set server admin/slot1 addr 10.0.0.3 port 9000; set server admin/slot1 state drain; "
        "set server admin/slot1 health down",
        "set server web/slot1 state ready; set server admin/slot1 state ready"]
    assert stack.fake.routed("web") == ["10.0.0.2"] and stack.fake.routed("admin") == ["10.0.0.3"]


def test_a_proxy_already_routed_to_exactly_these_containers_is_left_alone():
    stack = StubStack([container("w1", "web", "10.0.0.2"), container("a1", "admin", "10.0.0.3")])
    stack.fake.route("web", "slot4", "10.0.0.2", 8000)
    stack.fake.route("admin", "slot2", "10.0.0.3", 9000)
    routed = _proxy(stack).sync({"web": [stack.containers[1]], "admin": [stack.containers[2]]},
                                PORTS)
    assert routed == ["admin/slot2", "web/slot4"]
    assert not any(line.startswith("set ") for line in stack.fake.calls)


def test_a_restarted_proxy_holding_a_gone_container_is_moved_to_the_running_one():
    stack = StubStack([container("w2", "web", "10.0.0.5")])
    stack.fake.route("web", "slot1", "10.0.0.4", 8000)  # a container that is gone
    routed = _proxy(stack).sync({"web": [stack.containers[1]], "admin": []}, PORTS)
    assert routed == ["web/slot2"]
    assert stack.fake.slot("web", "slot1").state == "maint"
    assert stack.fake.routed("web") == ["10.0.0.5"]
    assert stack.fake.calls[-1] == "set server web/slot1 state maint"


def test_a_container_that_never_passes_the_check_is_not_routed_and_says_why():
    stack = StubStack([container("w1", "web", "10.0.0.2")])
    PORTS_WRONG = {"web": 8001, "admin": 9000}  # nothing answers there
    with pytest.raises(DeployError) as err:
        _proxy(stack).sync({"web": [stack.containers[1]]}, PORTS_WRONG, timeout=2.0)
    assert str(err.value) == (
        "proxy: the new container(s) did not pass HAProxy's health check within 2 s: "
        "web/slot1 (10.0.0.2): drain DOWN, check result 0")
    assert not any("state ready" in line for line in stack.fake.calls)


# --- what `ps` shows -------------------------------------------------------------------------


def test_each_app_container_is_shown_with_its_own_backend_s_slot():
    stack = StubStack([container("w1", "web", "10.0.0.2"), container("a1", "admin", "10.0.0.2"),
                       container("w2", "web", "10.0.0.7")])
    stack.fake.route("web", "slot3", "10.0.0.2", 8000)
    stack.fake.backends["web"]["slot4"] = stack.fake.backends["web"]["slot3"].__class__(
        "10.0.0.7", 8000, "drain")
    # admin's container has the web container's address on another network: not routed.
    assert routing.routes(stack, stack.states()) == {
        "w1": "web/slot3 ready UP", "a1": "not routed", "w2": "web/slot4 drain UP"}


def test_without_a_running_proxy_ps_shows_no_routing():
    stack = StubStack([container("w1", "web", "10.0.0.2")])
    states = [s for s in stack.states() if s.service != "proxy"]
    assert routing.routes(stack, states) == {}


# --- the drain --------------------------------------------------------------------------------


def test_old_slots_still_busy_at_the_drain_timeout_go_to_maintenance_and_it_says_so():
    stack = StubStack([container("w1", "web", "10.0.0.2"), container("a1", "admin", "10.0.0.3")])
    stack.fake.route("web", "slot1", "10.0.0.2", 8000)
    stack.fake.route("admin", "slot1", "10.0.0.3", 9000)
    stack.fake.slot("web", "slot1").sessions = 2
    plans = [proxy.SwitchPlan("web", 8000, new={}, old=["slot1"]),
             proxy.SwitchPlan("admin", 9000, new={}, old=["slot1"])]
    waited = _proxy(stack).drain(plans)
    assert waited == pytest.approx(3.0, abs=0.11)
    assert stack.lines == [
        "   drain timeout (3 s, DRAIN_TIMEOUT): 2 request(s) still in flight on web/slot1; "
        "the containers get 8 s more to finish them"]
    assert stack.fake.calls[-1] == ("set server web/slot1 state maint; "
                                    "set server admin/slot1 state maint")


def test_idle_old_slots_are_put_in_maintenance_at_once():
    stack = StubStack([container("w1", "web", "10.0.0.2")])
    stack.fake.route("web", "slot1", "10.0.0.2", 8000)
    waited = _proxy(stack).drain([proxy.SwitchPlan("web", 8000, new={}, old=["slot1"])])
    assert waited == 0.0 and stack.lines == []
    assert stack.fake.slot("web", "slot1").state == "maint"


# --- which containers serve -------------------------------------------------------------------


def test_an_app_service_serves_from_its_ready_slots_and_a_worker_from_its_running_ones():
    states = [container("w1", "web", "10.0.0.2"), container("w2", "web", "10.0.0.3"),
              container("w3", "web", "10.0.0.4", status="exited"),
              container("k1", "worker", "10.0.0.5"),
              container("k2", "worker", "10.0.0.6", status="exited")]
    servers = [proxy.Server("slot1", "10.0.0.2", 8000, proxy.OP_RUNNING, 4, 3, backend="web"),
               # the same address in another service's backend does not count for web
               proxy.Server("slot1", "10.0.0.3", 9000, proxy.OP_RUNNING, 4, 3,
                            backend="admin")]
    serving, leftovers = classify(states, servers, "web")
    assert [s.id for s in serving] == ["w1"] and [s.id for s in leftovers] == ["w2", "w3"]
    serving, leftovers = classify(states, servers, "worker", app=False)
    assert [s.id for s in serving] == ["k1"] and [s.id for s in leftovers] == ["k2"]
    # Nothing routed (a fresh proxy): every running container of the service serves.
    serving, _ = classify(states, [], "web")
    assert [s.id for s in serving] == ["w1", "w2"]
