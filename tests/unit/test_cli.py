"""A task stopped by a signal: SIGTERM unwinds like Ctrl-C, and the exit names the signal."""

from __future__ import annotations

import os
import signal
import time

import pytest

from deploy import cli


def test_sigterm_unwinds_a_task_like_ctrl_c_and_names_the_signal():
    with pytest.raises(cli.Terminated) as info:
        with cli.terminate_unwinds():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
    assert isinstance(info.value, KeyboardInterrupt)  # psycopg cancels on the server for it
    assert cli.interrupted_exit("deploy", info.value) == ("deploy: interrupted (SIGTERM)", 143)
    assert cli.interrupted_exit("logs", KeyboardInterrupt()) == ("logs: interrupted (SIGINT)",
                                                                 130)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored afterwards
