"""Where a command's lines go: one object for plain lines, `[host]` prefixes, streamed
command output and timed steps.

Every function that reports progress takes one `Output` (usually named `out`) and calls it
like a function: `out("==> migrate")`. `out.for_host("web1")` gives the same output with a
`[web1] ` prefix; `out.stream` is a file-like object for `c.run(out_stream=…)` that
prefixes each whole line the same way; `out.step(name, fn, …)` runs one named, timed step
and records it in `out.timings`. Lines from several threads (hosts in parallel) never
interleave mid-line.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from deploy.errors import DeployError

# Anything that takes one line: an Output, print, a list's append (tests). Lower layers
# (the migration engine) accept this, so they need nothing of Output but the call.
Lines = Callable[[str], Any]

_print_lock = threading.Lock()


def emit(line: str, target: TextIO | None = None) -> None:
    """Print one whole line, never interleaved with another thread's."""
    with _print_lock:
        print(line, file=target or sys.stdout, flush=True)


class PrefixStream:
    """A text stream that writes whole lines, each with a prefix (a host's `[name] `)."""

    def __init__(self, prefix: str = "", target: TextIO | None = None, quiet: bool = False):
        self.prefix = prefix
        self.target = target
        self.quiet = quiet
        self.buffer = ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self.buffer:
            self._emit(self.buffer)
            self.buffer = ""

    def _emit(self, line: str) -> None:
        if not self.quiet:
            emit(self.prefix + line, self.target)


class Output:
    """Lines for the user. Callable, so `out("text")` prints one line.

    `write` replaces the printing (tests pass `lines.append`); `quiet` keeps streamed
    command output (Compose's, docker's) off the screen while step lines still print.
    """

    def __init__(self, write: Callable[[str], Any] | None = None, *, prefix: str = "",
                 target: TextIO | None = None, quiet: bool = False):
        self._write = write
        self.prefix = prefix
        self.target = target
        self.quiet = quiet
        self.timings: list[tuple[str, float]] = []

    def __call__(self, line: str) -> None:
        if self._write is not None:
            self._write(self.prefix + line)
        else:
            emit(self.prefix + line, self.target)

    def for_host(self, name: str) -> Output:
        """The same output, each line prefixed with `[name] `."""
        return Output(self._write, prefix=f"{self.prefix}[{name}] ", target=self.target,
                      quiet=self.quiet)

    @property
    def stream(self) -> PrefixStream | None:
        """Where a command's own output goes; None (the terminal) when nothing is added."""
        if not self.prefix and not self.quiet and self._write is None and self.target is None:
            return None
        if self._write is not None:
            return _CallbackStream(self)
        return PrefixStream(self.prefix, self.target, self.quiet)

    def step(self, name: str, fn: Callable, *args, **kwargs):
        """Run one named step: `==> name`, then `<== name done in N s` (or FAILED /
        INTERRUPTED, and the error goes on)."""
        started = time.perf_counter()
        try:
            # Inside the try: a signal that lands right after this line still gets its
            # closing line below.
            self(f"==> {name}")
            result = fn(*args, **kwargs)
        except (DeployError, KeyboardInterrupt) as exc:
            stopped = isinstance(exc, KeyboardInterrupt) or exc.exit_code in (130, 143)
            how = "INTERRUPTED" if stopped else "FAILED"
            self(f"<== {name} {how} after {time.perf_counter() - started:.1f} s")
            raise
        elapsed = time.perf_counter() - started
        self.timings.append((name, elapsed))
        self(f"<== {name} done in {elapsed:.1f} s")
        return result


class _CallbackStream(PrefixStream):
    """Streamed command output sent, line by line, to an Output's own `write`."""

    def __init__(self, out: Output):
        super().__init__(out.prefix, quiet=out.quiet)
        self._out = out

    def _emit(self, line: str) -> None:
        if not self.quiet and self._out._write is not None:
            self._out._write(self.prefix + line)


def as_output(out: Output | Callable[[str], Any] | None) -> Output:
    """An Output from what a caller passed: an Output, a plain function, or None (stdout)."""
    if isinstance(out, Output):
        return out
    return Output(out) if out is not None and out is not print else Output()
