"""The local deploy lock: a second deploy waits, says who holds it, and gives up naming
the holder."""

from __future__ import annotations

import fcntl
import multiprocessing
import time
from pathlib import Path

import pytest

from deploy.errors import DeployTimeout
from deploy.release import locks
from deploy.release.locks import LocalLock, describe_holder


def _hold(path: str, seconds: float, ready) -> None:
    with LocalLock(Path(path), wait=0):
        ready.set()
        time.sleep(seconds)


def test_a_second_local_deploy_waits_then_names_the_holder(tmp_path):
    path = tmp_path / "deploy.lock"
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(str(path), 3, ready))
    holder.start()
    try:
        assert ready.wait(10)
        started = time.monotonic()
        said = []
        with pytest.raises(DeployTimeout) as info:
            with LocalLock(path, wait=0.5, out=said.append):
                pass
        assert 0.4 < time.monotonic() - started < 3
        message = str(info.value)
        assert message.startswith(f"deploy lock: {path} is held by ")
        assert f" pid {holder.pid}, since " in message
        assert message.endswith("waited 0.5s (--lock-wait)")
        # Said once at the start (the next report would be 5 s later).
        assert len(said) == 1 and said[0].startswith("deploy lock: waiting for ")
        assert f" pid {holder.pid}, since " in said[0]
    finally:
        holder.join()
    with LocalLock(path, wait=0):
        pass  # released when the holder ended


def test_a_waiting_deploy_repeats_who_holds_the_lock_every_few_seconds(tmp_path):
    path = tmp_path / "deploy.lock"
    path.write_text(locks.holder_record("20261128T170000Z-abc1234"))
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    said = []
    with open(path) as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(DeployTimeout):
            with LocalLock(path, wait=12, out=said.append, clock=lambda: now[0],
                           sleep=sleep):
                pass
    assert [line.split("(")[1] for line in said] == ["0 s of 12 s)", "5 s of 12 s)",
                                                      "10 s of 12 s)"]
    assert "release 20261128T170000Z-abc1234" in said[0]


def test_a_holder_is_described_in_words():
    assert describe_holder('{"by": "ci@runner", "pid": 7, "release": "r1", "since": "T"}') == \
        "ci@runner pid 7, release r1, since T"
    assert describe_holder("") == "an unknown process"
    assert describe_holder("not json") == "not json"
