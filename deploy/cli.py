"""Process-level behaviour shared by `invoke`, `fab` and `python -m deploy`; no Invoke here.

- A closed pipe (`invoke migrate-status | head`, `python -m deploy migrate-status | head`)
  ends quietly with exit 141, as a program killed by SIGPIPE does, instead of a
  BrokenPipeError traceback (``install``, ``silence_stdout``).
- SIGTERM, like Ctrl-C, unwinds a task (what a deploy started before its switch is undone
  on the way) and ends it with one line and exit 143 (130 for SIGINT), instead of dying
  where it stood (``terminate_unwinds``, ``interrupted_exit``; deploy/tasks/common.py
  `exits` wraps each task in them).

- A flag renamed keeps its old name for a while, with a one-line notice (``lock_wait_flag``).

What is specific to Invoke's program (its parser's exit codes) is in deploy/tasks/program.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from deploy.errors import ConfigError

CLOSED_PIPE_EXIT = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _excepthook(previous):
    def hook(kind, value, traceback):
        if issubclass(kind, BrokenPipeError):
            silence_stdout()
            # os._exit: after a closed pipe nothing more can be said; sys.exit here would
            # be reported as another error by the interpreter.
            os._exit(CLOSED_PIPE_EXIT)
        previous(kind, value, traceback)

    hook._deploy = True  # type: ignore[attr-defined]
    return hook


def install() -> None:
    """A BrokenPipeError that reaches the top of the program exits 141, quietly."""
    if not getattr(sys.excepthook, "_deploy", False):
        sys.excepthook = _excepthook(sys.excepthook)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the task stands, unwinding it as Ctrl-C does (psycopg, too,
    cancels the running statement on the server for a KeyboardInterrupt)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextmanager
def terminate_unwinds() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated (main thread only: signals are
    delivered there); the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_exit(task: str, exc: KeyboardInterrupt) -> tuple[str, int]:
    """The one line and the exit code of a task stopped by SIGTERM or SIGINT."""
    signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
    return f"{task}: interrupted ({signal.Signals(signum).name})", 128 + signum


LOCK_TIMEOUT_RENAMED = ("--lock-timeout is now --lock-wait (the wait for the runner's lock); "
                        "the old name will go")


def lock_wait_flag(lock_wait, lock_timeout):
    """The value of --lock-wait, or of its old name --lock-timeout with a notice on stderr."""
    if lock_timeout is None:
        return lock_wait
    print(LOCK_TIMEOUT_RENAMED, file=sys.stderr, flush=True)
    if lock_wait is not None:
        raise ConfigError("--lock-timeout: the old name of --lock-wait; give only --lock-wait")
    return lock_timeout
