"""SIGTERM and SIGINT while migrating: cancel on the server, roll back, stop with one line.

Before the runner holds the migration lock there is nothing to undo: the handler raises
Interrupted at once. Once it holds the lock, the handler only records the signal and, if a
statement is running, asks the server to cancel it (the file's transaction then rolls back);
the runner stops at its next checkpoint and says exactly what happened to the file.

A signal can land between a checkpoint and the moment the statement reaches the server,
when a cancel request would be ignored: the watcher thread calls poll() every few tens of
milliseconds, which cancels a statement that started after the signal. One cancel per
statement, never more (a statement may catch the cancel, and the next one must then run).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from psycopg import pq

from deploy.errors import DeployError

SIGNALS = (signal.SIGTERM, signal.SIGINT)
CANCEL_TIMEOUT = 5.0  # seconds for the cancel request to reach the server


class Interrupted(DeployError):
    """Stopped by SIGTERM/SIGINT: exit 128 + the signal's number (143, 130)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class SignalGuard:
    """Installed for one command (main thread only: elsewhere signals stay as they are)."""

    def __init__(self, command: str):
        self.command = command
        self.signum: int | None = None
        self.phase = "before anything was applied"
        self._deferred = False
        self._running = None  # the connection whose statement a signal cancels
        self._statement = 0  # counts statements, so each is cancelled at most once
        self._cancelled = 0
        self._cancel_lock = threading.RLock()  # a second signal may arrive inside the handler
        self._previous: dict[int, object] = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
        if self._running is not None:
            self._cancel_running()
        elif not self._deferred:
            raise self.error(self.phase)

    def _cancel_running(self) -> None:
        with self._cancel_lock:
            conn, statement = self._running, self._statement
            if conn is None or self._cancelled == statement:
                return
            if conn.pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
                return  # not on the server yet: a cancel now would be ignored; poll() retries
            self._cancelled = statement
            try:
                conn.cancel_safe(timeout=CANCEL_TIMEOUT)
            except Exception:  # the statement then ends on its own
                pass

    def poll(self) -> None:
        """From another thread: cancel a statement that started after the signal."""
        if self.signum is not None and self._running is not None:
            self._cancel_running()

    def error(self, what: str) -> Interrupted:
        signum = self.signum or signal.SIGTERM
        sep = "" if what.startswith(":") else " "
        return Interrupted(f"{self.command}: interrupted ({signal_name(signum)}){sep}{what}",
                           signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """From here a signal is handled at checkpoints (and by cancelling statements)."""
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False

    @contextmanager
    def statement(self, conn, before: Callable[[], str]) -> Iterator[None]:
        """A statement runs on conn: a signal cancels it on the server. After a signal,
        it does not start: stop with the line before() describes."""
        self._statement += 1
        self._running = conn
        try:
            self.check(before)
            yield
        finally:
            self._running = None

    def check(self, what: Callable[[], str]) -> None:
        """A checkpoint: after a signal, stop with the line what() describes."""
        if self.signum is not None:
            raise self.error(what())

    def sleep(self, seconds: float, what: Callable[[], str]) -> None:
        """Sleep, stopping early at a signal."""
        deadline = time.monotonic() + seconds
        while True:
            self.check(what)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))
