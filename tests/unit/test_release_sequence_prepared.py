"""The prepared release's last check before its switch, on captured HAProxy answers and a
stand-in for the proxy container (no Docker here: the e2e tests run the whole switch)."""

import pytest

from deploy.commands import haproxy as proxy
from deploy.errors import DeployError
from deploy.release import sequence as release_switch
from tests.support.haproxy import captured


class Switcher:
    """Answers `show servers state` with a captured table; the policy a deploy uses."""

    def __init__(self, text):
        self.text = text
        self.policy = proxy.DrainPolicy()

    def servers(self):
        return proxy.parse_servers_state(self.text)


def prepared(text, undone):
    p = release_switch.Prepared(
        stack=None, timer=None, switcher=Switcher(text), plan=proxy.SwitchPlan(
            new={"slot2": "172.22.0.3"}), serving=[], new=[], previous_live=None,
        release="r2", target="app-backend:r2", migrated=None, database=None, schema=False,
        started=0.0, ready_at=0.0)
    p.undo = lambda: undone.append(p.release)
    return p


def test_a_prepared_release_whose_slots_still_pass_goes_ahead():
    undone = []
    release_switch._still_up(prepared(captured("state-old-ready-new-prepared.txt"), undone))
    assert undone == []


def test_a_prepared_release_whose_new_container_stopped_passing_is_taken_back():
    undone = []
    down = captured("state-prepared-unchecked.txt")  # slot1 only: slot2 is not up there
    with pytest.raises(DeployError) as err:
        release_switch._still_up(prepared(down, undone))
    assert str(err.value) == (
        "proxy: the new container(s) stopped passing HAProxy's check while waiting for the "
        "switch: slot2 (172.22.0.3): maint, check result 0")
    assert undone == ["r2"]


def test_undo_runs_once_and_never_after_the_switch_was_sent(monkeypatch):
    calls = []
    monkeypatch.setattr(release_switch, "_undo", lambda *args: calls.append(args[3]))

    def make(**kw):
        return release_switch.Prepared(
            stack=type("Stack", (), {"out": print})(), timer=None, switcher=Switcher(""),
            plan=proxy.SwitchPlan(new={}), serving=[], new=[], previous_live=None,
            release="r", target="t", migrated=None, database=None, schema=False,
            started=0.0, ready_at=0.0, **kw)

    first = make()
    first.undo()
    first.undo()
    assert calls == [set()]
    make(undoable=False).undo()  # finish() clears it right before it sends the switch
    assert calls == [set()]
