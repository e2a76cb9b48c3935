"""The Swarm rig and the network-namespace hosts name their traces apart, so that each one's
cleanup leaves the other's rig alone (tests/support/swarm.py, tests/support/netns_cleanup.py)."""

from tests.support import netns_cleanup, swarm

SWARM_NAMES = ["deploy-swarm-123-abcdef", "deploy-swarm-123-abcdef-n1",
               "deploy-swarm-123-abcdef-n3", "deploy-swarm-123-abcdef-br"]
NETNS_NAMES = ["deploy-netns-123-abcdef", "deploy-netns-123-abcdef-h1"]


def test_the_netns_cleanup_matches_none_of_the_swarm_rigs_names():
    assert [n for n in SWARM_NAMES if netns_cleanup.NAME_RE.match(n)] == []


def test_the_swarm_cleanup_matches_its_own_names_and_none_of_the_netns_hosts():
    assert all(swarm.NAME_RE.match(n) for n in SWARM_NAMES)
    assert [n for n in NETNS_NAMES if swarm.NAME_RE.match(n)] == []
    assert swarm.NAME_RE.match("deploy-swarm-123-abcdef-n2")[3] == "n2"


def test_the_swarm_rigs_lock_file_is_no_rig():
    assert not swarm.NAME_RE.match(swarm.LOCK.name)
