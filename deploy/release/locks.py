"""Deploy locks that say who holds them: one deploy per project here, one per host.

The holder is written beside the lock as JSON ({"by", "pid", "release", "since"}); a
waiter prints it when it starts waiting and again every PROGRESS_EVERY seconds, so a
blocked deploy is never silent until --lock-wait runs out.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from deploy.errors import DeployTimeout
from deploy.migrate.db import applied_by
from deploy.output import Output, as_output

# How often a waiting deploy repeats who holds the lock (seconds).
PROGRESS_EVERY = 5.0
# How often the local lock is tried again (seconds).
LOCAL_POLL = 0.2


def holder_record(release: str | None = None) -> str:
    # The same "who" as the migration history's rows.
    record = {"by": applied_by(), "pid": os.getpid(),
              "since": datetime.now(UTC).isoformat(timespec="seconds")}
    if release:
        record["release"] = release
    return json.dumps(record)


def describe_holder(text: str) -> str:
    """'root@ci pid 4242, release 2026…-abc, since 2026-11-28T17:00:00+00:00' from the
    holder file's JSON; anything else is shown as it is (or as unknown)."""
    text = text.strip()
    try:
        record = json.loads(text)
    except ValueError:
        return text or "an unknown process"
    if not isinstance(record, dict):
        return text
    parts = [f"{record.get('by') or record.get('user') or 'someone'} pid {record.get('pid', '?')}"]
    if record.get("release"):
        parts.append(f"release {record['release']}")
    if record.get("since"):
        parts.append(f"since {record['since']}")
    return ", ".join(parts)


class LocalLock:
    """One deploy per project on this machine: flock on a file, holder written inside."""

    def __init__(self, path: Path, wait: float, out: Output | None = None,
                 release: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.path = Path(path)
        self.wait = wait
        self.out = as_output(out)
        self.release = release
        self.clock = clock
        self.sleep = sleep

    def _holder(self) -> str:
        self.fh.seek(0)
        return describe_holder(self.fh.read())

    def __enter__(self):
        self.fh = open(self.path, "a+")
        started = self.clock()
        deadline = started + self.wait
        next_report = started
        while True:
            try:
                fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = self.clock()
                if now >= deadline:
                    holder = self._holder()
                    self.fh.close()
                    raise DeployTimeout(f"deploy lock: {self.path} is held by {holder}; "
                                        f"waited {self.wait:g}s (--lock-wait)") from None
                if now >= next_report:
                    self.out(f"deploy lock: waiting for {self._holder()} "
                             f"({now - started:.0f} s of {self.wait:g} s)")
                    next_report = now + PROGRESS_EVERY
                self.sleep(LOCAL_POLL)
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(holder_record(self.release))
        self.fh.flush()
        return self

    def __exit__(self, *exc):
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.close()


def local_lock_path(project: str) -> Path:
    return Path(tempfile.gettempdir()) / f"deploy-{project}.lock"
