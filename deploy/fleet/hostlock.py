"""The host lock: one deploy (or rollback) per DEPLOY_PATH at a time, saying who holds it."""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from deploy.errors import DeployError, DeployTimeout
from deploy.output import emit
from deploy.release.locks import PROGRESS_EVERY, describe_holder, holder_record
from deploy.settings import Settings

# $1 DEPLOY_PATH, $2 lock file, $3 seconds to wait (whole), $4 holder JSON, $5 holder file,
# $6 seconds between progress reports. Prints WAITING <holder> when it starts waiting and
# every $6 s, then LOCKED (and holds the lock until our channel closes) or BUSY <holder>.
_LOCK_SCRIPT = (
    'mkdir -p "$1/releases" && exec 9>>"$2" || exit 1\n'
    'if ! flock -n 9; then\n'
    '  end=$(( $(date +%s) + $3 ))\n'
    '  while :; do\n'
    '    left=$(( end - $(date +%s) ))\n'
    '    if [ "$left" -le 0 ]; then printf "BUSY "; cat "$5" 2>/dev/null; echo; exit 4; fi\n'
    '    printf "WAITING "; cat "$5" 2>/dev/null; echo\n'
    '    [ "$left" -le "$6" ] || left=$6\n'
    '    flock -w "$left" 9 && break\n'
    '  done\n'
    'fi\n'
    'printf "%s\\n" "$4" > "$5"; echo LOCKED; cat >/dev/null; : > "$5"'
)


@contextmanager
def host_lock(c, settings: Settings, *, wait: float, release: str,
              out: Callable[[str], object] = emit) -> Iterator[None]:
    """flock on DEPLOY_PATH/.deploy.lock, held by a remote shell blocked on `cat` for as
    long as we keep its channel open: if this process dies, the channel closes and the
    lock goes with it. The holder (who, pid, release, since) is written beside it, and a
    waiting deploy says who holds it, at the start and every few seconds.

    The one command not sent through shell.run: it needs a channel kept open.
    """
    root = settings.deploy_path
    argv = ["sh", "-c", _LOCK_SCRIPT, "sh", root, f"{root}/.deploy.lock",
            str(math.ceil(wait)), holder_record(release), f"{root}/.deploy.lock.holder",
            str(int(PROGRESS_EVERY))]
    channel = c.client.get_transport().open_session()
    channel.exec_command(shlex.join(argv))
    reader = channel.makefile("rb")
    started = time.monotonic()
    while True:
        raw = reader.readline()
        line = raw.decode(errors="replace").strip()
        if raw and not line:
            continue  # the holder file's own newline
        word, _, rest = line.partition(" ")
        if word != "WAITING":
            break
        out(f"{c.host}: waiting for the deploy lock held by {describe_holder(rest)} "
            f"({time.monotonic() - started:.0f} s of {wait:g} s)")
    if word != "LOCKED":
        rest = (rest + " " + reader.read().decode(errors="replace")).strip()
        channel.close()
        if word == "BUSY":
            raise DeployTimeout(f"{c.host}: another deploy holds {root}/.deploy.lock "
                                f"(holder: {describe_holder(rest)}); waited {wait:g}s "
                                "(--lock-wait)")
        raise DeployError(f"{c.host}: cannot take the deploy lock in {root}: {line} {rest}")
    try:
        yield
    finally:
        channel.shutdown_write()
        channel.close()
