"""Process-level behaviour of the `invoke`/`fab` commands that Invoke leaves to us.

Installed when the task collection is imported (deploy/tasks/__init__.py), so `invoke`,
`fab` and their `--list`/`--help` all behave the same:

- A closed pipe (`invoke migrate-status | head`, `fab --list | head`) ends quietly with
  exit 141, as a program killed by SIGPIPE does, instead of a BrokenPipeError traceback.
- Argument errors that Invoke's parser finds (an unknown flag or task, a missing
  argument) exit 2, the code docs/design.md gives bad arguments; Invoke itself exits 1.

And for each task (deploy/tasks/common.py `exits`): SIGTERM, like Ctrl-C, unwinds the task
(what a deploy started before its switch is undone on the way) and ends it with one line
and exit 143 (130 for SIGINT), instead of dying where it stood.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

CLOSED_PIPE_EXIT = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`
BAD_ARGUMENTS_EXIT = 2


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


def _parse_errors_exit_2() -> None:
    from invoke.exceptions import Exit, ParseError
    from invoke.program import Program

    original = Program.parse_tasks
    if getattr(original, "_deploy", False):
        return

    def parse_tasks(self):
        try:
            return original(self)
        except ParseError as exc:
            hint = "; see `invoke --list` and `invoke --help TASK`"
            raise Exit(f"{exc}{hint}", code=BAD_ARGUMENTS_EXIT) from None

    parse_tasks._deploy = True  # type: ignore[attr-defined]
    Program.parse_tasks = parse_tasks


def install() -> None:
    if not getattr(sys.excepthook, "_deploy", False):
        sys.excepthook = _excepthook(sys.excepthook)
    _parse_errors_exit_2()


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
