"""End-to-end fixtures: the real Docker engine, the real sample stack, the real `invoke`.

Each stack gets its own Compose project name and free published ports, so tests never
collide, and is torn down with its volumes afterwards (tests/support/stack.py). Without
Docker these tests fail in CI (CI=true) and are skipped, loudly, elsewhere.
"""

from __future__ import annotations

import os

import pytest

from tests.support import netns
from tests.support.fleet_rig import Fleet
from tests.support.services import missing
from tests.support.stack import StackEnv, docker_problem


@pytest.fixture(scope="session")
def docker_ready() -> None:
    problem = docker_problem()
    if problem:
        missing(problem)


@pytest.fixture
def make_stack(docker_ready, tmp_path):
    stacks: list[StackEnv] = []

    def make(**extra: str) -> StackEnv:
        stack = StackEnv(tmp_path, **extra)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.down()


@pytest.fixture(scope="session")
def netns_hosts():
    """Two hosts that share nothing but this machine's kernel and files: each in its own
    network namespace (10.213.N.2), with its own sshd on port 22 and its own Docker engine,
    reaching nothing but this machine (no registry).

    See tests/support/netns.py for the API (hosts, addresses, user, port, key_file,
    known_hosts, spec, ssh_argv, docker_argv, netns_exec_argv, enter_argv, traffic,
    commands, logs, load_busybox, reach, trust_registry).
    """
    yield from _netns_rig(2)


def _netns_rig(count: int):
    if os.geteuid() != 0:
        missing("the network-namespace test hosts must run as root (ip netns, mount, dockerd)")
    tools = netns.missing_tools()
    if tools:
        missing(f"the network-namespace test hosts need {', '.join(tools)} "
                "(iproute2, util-linux, docker.io, openssh-server)")
    problem = None
    try:
        with netns.running_netns_hosts(count) as rig:
            yield rig
    except netns.NetnsError as e:
        problem = str(e)
    if problem:
        # Root and every tool are there, so the machine is broken: a failure, never a skip.
        pytest.fail(f"network-namespace test hosts: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def fleet_hosts():
    """Two more network-namespace hosts, for the fleet alone: its deploys leave stacks,
    images and command logs that other tests of `netns_hosts` must not meet."""
    yield from _netns_rig(2)


@pytest.fixture(scope="session")
def fleet(fleet_hosts, docker_ready, tmp_path_factory):
    """Two network-namespace hosts to deploy to with the real `invoke`/`fab`, from a git
    copy of this project (tests/support/fleet_rig.py). Shared by the remote tests, which run
    in file order and build on each other's deploys."""
    fleet = Fleet(fleet_hosts, tmp_path_factory.mktemp("fleet"))
    yield fleet
    fleet.teardown()


@pytest.fixture(scope="session")
def deployed_fleet(fleet):
    """The fleet with a release running on every host (deployed now if no test did yet)."""
    if not all(fleet.releases(h) for h in fleet.hosts):
        done = fleet.invoke("deploy", "--hosts", fleet.spec())
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return fleet
