"""The one place an argv becomes a command: `c.run(shlex.join(argv))`.

`c` is an invoke.Context locally or a fabric.Connection on a host; nothing else in
the project builds shell text, so every user-supplied value stays one quoted word.
"""

from __future__ import annotations

import io
import os
import shlex
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from deploy.errors import DeployError


class CommandFailed(DeployError):
    """A command exited non-zero (exit 1); the message says which and why."""

    def __init__(self, message: str, exited: int, stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.exited = exited
        self.stdout = stdout
        self.stderr = stderr


def is_remote(c) -> bool:
    """A fabric.Connection (a host), told apart without importing Fabric on the local path."""
    return hasattr(c, "forward_local") and getattr(c, "host", None) is not None


_FAST: dict[type, type] = {}


def _without_watcher_scan(runner: type) -> type:
    """The runner minus its per-chunk re-join of all captured output.

    Invoke joins the whole capture buffer after every 1000-byte read so that watchers can
    scan it; we use no watchers, and on a large output (`compose logs` of a busy stack)
    that join makes reading it quadratic in its size.
    """
    if getattr(runner, "_skips_watcher_scan", False):
        return runner
    if runner not in _FAST:
        def respond(self, buffer_):
            if self.watchers:
                runner.respond(self, buffer_)

        _FAST[runner] = type(runner.__name__, (runner,),
                             {"respond": respond, "_skips_watcher_scan": True})
    return _FAST[runner]


def _speed_up(c) -> None:
    runners = getattr(getattr(c, "config", None), "runners", None)
    if runners is None:
        return
    name = "remote" if is_remote(c) else "local"
    current = runners.get(name)
    if current is None:
        return
    fast = _without_watcher_scan(current)
    # Written once only: each write re-merges Invoke's config from scratch, and a thread
    # reading it meanwhile (a build beside `compose up`) fails with a KeyError traceback.
    if fast is not current:
        runners[name] = fast


def render(argv: Sequence[str], merge_stderr: bool = False) -> str:
    # " 2>&1" is a fixed suffix, never built from input: both streams in one, in order.
    return shlex.join(argv) + (" 2>&1" if merge_stderr else "")


def run(c, argv: Sequence[str], *, hide: bool = True, check: bool = True,
        merge_stderr: bool = False, pty: bool = False, what: str | None = None,
        stream=None, input: str | None = None):
    """Run argv through the context; raise CommandFailed with its stderr when check.

    ``stream``, when given, receives the output that is not hidden (e.g. a writer that
    prefixes each line with its host). ``input`` is written to the command's stdin, which
    is then closed (on a host: over the SSH channel): the way a secret reaches a command
    (`docker login --password-stdin`) without ever being on a command line.
    """
    command = render(argv, merge_stderr)
    kwargs = {} if pty else {"in_stream": False}  # reading stdin breaks under pytest/CI
    if input is not None:
        kwargs.update(in_stream=io.StringIO(input), echo_stdin=False)
    if stream is not None and not hide:
        kwargs.update(out_stream=stream, err_stream=stream)
    _speed_up(c)
    try:
        result = c.run(command, hide=hide, warn=True, pty=pty, **kwargs)
    except (AttributeError, ValueError) as exc:
        # Invoke's runner cleans up in a `finally` that assumes its set-up finished: a
        # signal that lands during that set-up comes out as this AttributeError. And it
        # forwards Ctrl-C by writing to the command's stdin, which ``input`` has closed:
        # a ValueError. Either way the signal is what happened; let it unwind as one.
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise exc.__context__ from None
        raise
    if check and result.exited != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()[-15:]
        raise CommandFailed(
            f"{what or argv[0]}: command failed with exit code {result.exited}: {command}"
            + ("".join(f"\n  {line}" for line in detail) if detail else ""),
            result.exited, result.stdout, result.stderr,
        )
    return result


def write_file(c, path: str, text: str) -> None:
    """Write ``text`` to ``path`` where ``c`` runs (its directory made), atomically: beside
    it, then renamed. Here with Python, on a host over SFTP (no shell, no command line)."""
    target = PurePosixPath(path)
    temp = f"{path}.{os.getpid()}.tmp"
    if not is_remote(c):
        Path(target.parent).mkdir(parents=True, exist_ok=True)
        Path(temp).write_text(text, encoding="utf-8")
        os.replace(temp, path)
        return
    sftp = c.sftp()
    try:
        sftp.stat(str(target.parent))
    except OSError:
        run(c, ["mkdir", "-p", str(target.parent)], what="mkdir")
    with sftp.open(temp, "w") as fh:
        fh.write(text)
    sftp.posix_rename(temp, path)

