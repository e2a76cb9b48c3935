"""The migration runner's timing policies, as data: one place, tested as data.

- LockRetry: how long each migration statement may wait for a table lock, and how often a
  file (or a no-transaction statement) that timed out is retried, with what waits.
- Progress: when a long file and a wait for the migration lock report progress.
- Session settings: how the server notices a runner that vanished (killed, network lost),
  so its transaction is rolled back promptly and its advisory lock released.

Pure: no database, no clock. The default values live in deploy/defaults.py and are
explained in README.md ("Migrations: the contract") and docs/design.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.defaults import STATEMENT_LOCK_BUDGET, STATEMENT_LOCK_RETRIES, STATEMENT_LOCK_TIMEOUT

# --- Lock timeout and retries -------------------------------------------------------------
# Seconds to wait before retry n (1-based); the last one repeats. Short first (the blocker is
# often a transaction about to end), then backing off so a long one can finish.
RETRY_WAITS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0, 5.0)

LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired
QUERY_CANCELED = "57014"  # statement_timeout, or a cancel request (our signal handler)


@dataclass(frozen=True)
class LockRetry:
    """Per statement: wait at most lock_timeout for a lock; on timeout, roll back and retry
    after wait_before(n), while fewer than `retries` retries were made and the next attempt
    can still end within `budget` seconds of the first one's start."""

    lock_timeout: float = STATEMENT_LOCK_TIMEOUT
    retries: int = STATEMENT_LOCK_RETRIES
    budget: float = STATEMENT_LOCK_BUDGET
    statement_timeout: float | None = None
    waits: tuple[float, ...] = RETRY_WAITS

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def wait_before(self, retry: int) -> float:
        return self.waits[min(retry, len(self.waits)) - 1]

    def next_wait(self, failed_attempts: int, elapsed: float) -> float | None:
        """The wait before the next attempt, or None when retries or budget are spent.

        elapsed: seconds since the first attempt started, the failed ones included."""
        if failed_attempts > self.retries:
            return None
        wait = self.wait_before(failed_attempts)
        if elapsed + wait + self.lock_timeout > self.budget:
            return None
        return wait

    def schedule(self) -> list[float]:
        """The waits used when every attempt times out after exactly lock_timeout."""
        waits: list[float] = []
        elapsed = self.lock_timeout
        while (wait := self.next_wait(len(waits) + 1, elapsed)) is not None:
            waits.append(wait)
            elapsed += wait + self.lock_timeout
        return waits

    def worst_case(self) -> float:
        """Seconds from the first attempt to giving up, when every attempt times out."""
        waits = self.schedule()
        return sum(waits) + (len(waits) + 1) * self.lock_timeout


# --- Progress -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    after: float = 5.0  # a file running longer than this reports "still running, N s" ...
    every: float = 5.0  # ... and again this often
    lock_every: float = 5.0  # waiting for the migration lock: who holds it, this often
    lock_poll: float = 0.1  # pg_try_advisory_lock retried this often
    # A statement running longer than this gets a second connection that samples
    # pg_blocking_pids, so a lock timeout can name the session that blocked it. Never paid
    # by files that finish sooner (so not by a normal apply, nor by the no-op path).
    watch_after: float = 0.1
    sample_every: float = 0.05


DEFAULT_PROGRESS = Progress()


def watch_after(progress: Progress, lock_timeout: float) -> float:
    """Start watching early enough to sample at least a few times within one lock wait."""
    return min(progress.watch_after, lock_timeout / 4)


def sample_every(progress: Progress, lock_timeout: float) -> float:
    return max(0.01, min(progress.sample_every, lock_timeout / 8))


# --- Noticing a vanished runner ----------------------------------------------------------
# libpq keepalives: the runner notices a server that is gone (network lost) instead of
# waiting forever. Free: they are connection parameters, no round trip.
CLIENT_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
                     "keepalives_count": "3"}
# Set on the migrating session once, with its first try for the migration lock (no extra
# round trip, never on the no-op path). The server then notices a runner that was killed
# (SIGKILL: its socket closes) within client_connection_check_interval, or whose network
# vanished within tcp_keepalives_idle + interval * count (~25 s), aborts the running
# statement, rolls the file back and ends the session: only then is the migration lock,
# held by that same session, released.
CLIENT_CHECK_INTERVAL = "1s"  # PostgreSQL >= 14
SERVER_KEEPALIVES = (("tcp_keepalives_idle", "10"), ("tcp_keepalives_interval", "5"),
                     ("tcp_keepalives_count", "3"))


def milliseconds(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def session_settings(server_version: int, retry: LockRetry) -> list[tuple[str, str]]:
    """(name, value) pairs SET on the migrating session."""
    settings = [("lock_timeout", milliseconds(retry.lock_timeout)),
                ("statement_timeout", milliseconds(retry.statement_timeout)
                 if retry.statement_timeout else "0")]
    if server_version >= 140000:
        settings.append(("client_connection_check_interval", CLIENT_CHECK_INTERVAL))
    settings += SERVER_KEEPALIVES
    return settings
