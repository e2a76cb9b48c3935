"""Output.step: a named, timed step's opening and closing lines."""

from __future__ import annotations

import pytest

from deploy.output import Output


def test_a_step_stopped_by_a_signal_is_reported_as_interrupted():
    said = []
    timer = Output(said.append)

    def stopped():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        timer.step("wait-healthy (new)", stopped)
    assert said[0] == "==> wait-healthy (new)"
    assert said[1].startswith("<== wait-healthy (new) INTERRUPTED after ")
