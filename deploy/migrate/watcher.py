"""A thread that watches the file being applied: progress lines and who blocks it.

While a file runs longer than Progress.after it prints "still running, N s" every
Progress.every seconds. Once a file has run longer than a fraction of the lock timeout,
the thread opens a second connection (once per run) and samples pg_blocking_pids of the
migrating session, so a lock timeout can name the session that blocked it. Files that
finish sooner cost nothing but an attribute assignment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from deploy.migrate.lock import Blocker, blockers
from deploy.migrate.policy import DEFAULT_PROGRESS, Progress, sample_every, watch_after
from deploy.output import Lines


class Watcher:
    def __init__(self, connect: Callable[[], object], pid: int, out: Lines, *,
                 lock_timeout: float, progress: Progress = DEFAULT_PROGRESS,
                 on_tick: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic):
        self._connect = connect
        self._on_tick = on_tick  # SignalGuard.poll: cancels a statement begun after a signal
        self._pid = pid
        self._out = out
        self._progress = progress
        self._watch_after = watch_after(progress, lock_timeout)
        self._sample_every = sample_every(progress, lock_timeout)
        self._clock = clock
        self._file: tuple[str, float] | None = None  # (label, started): set by the main thread
        self._conn = None
        self._failed = False
        self._opening = False
        self._lock = threading.Lock()
        self._sample: tuple[float, list[Blocker]] | None = None  # the last non-empty one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="migration-watcher", daemon=True)
        self._thread.start()

    # --- main thread ------------------------------------------------------------------------
    def watch(self, label: str) -> None:
        self._file = (label, self._clock())

    def idle(self) -> None:
        self._file = None

    def blockers_since(self, since: float) -> list[Blocker]:
        """The last sessions seen blocking the migrating session, if sampled after since."""
        with self._lock:
            sample = self._sample
        return sample[1] if sample and sample[0] >= since else []

    def connect_now(self) -> None:
        """Open the sampling connection now (after a first lock timeout), not when due."""
        self._open()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)  # a daemon: one stuck in a slow connect is left behind
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the thread ---------------------------------------------------------------------------
    def _open(self) -> None:
        """Connect (without holding the lock: close() must not wait for a slow connect)."""
        with self._lock:
            if self._conn is not None or self._failed or self._opening:
                return
            self._opening = True
        conn = None
        try:
            conn = self._connect()
        except Exception:  # no sampling then; the lock-timeout message says so
            pass
        with self._lock:
            self._opening = False
            if conn is None:
                self._failed = True
            elif self._stop.is_set():
                conn.close()
            else:
                self._conn = conn

    def _loop(self) -> None:
        current: tuple[str, float] | None = None
        next_progress = 0.0
        while not self._stop.wait(self._sample_every if self._conn else self._watch_after / 2):
            self._on_tick()
            watched = self._file
            if watched is None:
                continue
            if watched is not current:
                current, next_progress = watched, watched[1] + self._progress.after
            now = self._clock()
            elapsed = now - watched[1]
            if elapsed < self._watch_after:
                continue
            self._open()
            with self._lock:
                found = self._blockers()
                if found:
                    self._sample = (now, found)
            if now >= next_progress and self._file is watched:
                line = f"migration {watched[0]} still running, {elapsed:.0f} s"
                if found:
                    line += f"; waiting for {found[0].waiting_for or 'a lock'} held by {found[0]}"
                self._out(line)
                next_progress += self._progress.every

    def _blockers(self) -> list[Blocker]:  # with self._lock held
        if self._conn is None:
            return []
        try:
            return blockers(self._conn, self._pid)
        except Exception:
            self._conn.close()
            self._conn, self._failed = None, True
            return []
