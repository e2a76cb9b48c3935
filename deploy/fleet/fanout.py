"""One job on many hosts: rolling or a few at a time, stopping at the first failure, with
a summary of which hosts are done, which failed and which were not touched."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from deploy.errors import ConfigError, DeployError
from deploy.fleet.hosts import Host
from deploy.output import emit


@dataclass
class HostsReport:
    done: list[str]
    failed: list[tuple[str, DeployError]]
    untouched: list[str]

    def summary(self, done: str = "done") -> str:
        def names(items):
            return ", ".join(items) or "none"

        failed = "; ".join(f"{h} (exit {e.exit_code}: {str(e).splitlines()[0]})"
                           for h, e in self.failed)
        return (f"hosts: {done}: {names(self.done)}; failed: {failed or 'none'}; "
                f"untouched: {names(self.untouched)}")


def on_hosts(hosts: list[Host], job: Callable[[Host], None], *, parallel: int = 1) -> HostsReport:
    """Rolling (one at a time, stop at the first failure) or at most `parallel` at once;
    after a failure no further host is started."""
    if parallel < 1:
        raise ConfigError(f"--parallel: must be at least 1 (got {parallel})")
    stop = threading.Event()
    outcome: dict[str, DeployError | None] = {}

    def attempt(host: Host) -> None:
        if stop.is_set():
            return
        try:
            job(host)
            outcome[host.name] = None
        except DeployError as exc:
            outcome[host.name] = exc
            stop.set()
        except Exception as exc:  # a bug or a library error must not hide the summary
            outcome[host.name] = DeployError(f"{host}: {type(exc).__name__}: {exc}")
            stop.set()

    with ThreadPoolExecutor(max_workers=min(parallel, len(hosts))) as pool:
        list(pool.map(attempt, hosts))
    return HostsReport(
        done=[h.name for h in hosts if h.name in outcome and outcome[h.name] is None],
        failed=[(h.name, outcome[h.name]) for h in hosts if outcome.get(h.name) is not None],
        untouched=[h.name for h in hosts if h.name not in outcome],
    )


def run_on_hosts(action: str, hosts: list[Host], job: Callable[[Host], None], parallel: int,
                 *, mode: str | None = None, done: str = "done",
                 failed_note: str | None = None) -> None:
    """on_hosts with its plan and summary printed; the first failure raised, with its exit
    code (e.g. 4 for a lock) and the summary."""
    if mode is None:
        mode = "rolling, one host at a time" if parallel == 1 else f"at most {parallel} at once"
    emit(f"{action}: {', '.join(h.name for h in hosts)} ({mode})")
    report = on_hosts(hosts, job, parallel=parallel)
    summary = report.summary(done)
    emit(summary)
    if report.failed:
        host, first = report.failed[0]
        note = f"\n{action}: {failed_note}" if failed_note else ""
        error = DeployError(f"{action} failed on {host}: {first}\n{summary}{note}")
        error.exit_code = first.exit_code  # the first failure's meaning, e.g. 4 for a lock
        raise error
