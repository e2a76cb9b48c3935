"""The release tag of the working tree: which commit an image is, visibly.

    clean checkout          abc1234                    the short commit sha
    uncommitted changes     abc1234-dirty-1a2b3c4d     + a hash of the changes (the diff
                                                       against HEAD, and untracked files)
    no git (or no commit)   nogit-20261128T174200Z     when it was built

So an image built from a dirty tree never passes for the commit, two different dirty trees
get two tags, and the same dirty tree keeps its tag. A remote deploy ships only a commit's
image unless the operator says otherwise (`require_committed`).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deploy.errors import Refused

HASH_LENGTH = 8
ALLOW_FLAG = "--allow-dirty"
_SHA_RE = re.compile(r"^[0-9a-f]{4,40}$")


@dataclass(frozen=True)
class Revision:
    tag: str
    state: str  # "clean", "dirty" or "nogit"
    sha: str | None = None
    changed: tuple[str, ...] = ()  # what differs from the commit (dirty only)

    @property
    def committed(self) -> bool:
        return self.state == "clean"


def dirty_tag(sha: str, diff: bytes, untracked: Iterable[tuple[str, bytes]]) -> str:
    """`<sha>-dirty-<hash>`: sha256 over the binary diff against HEAD, then each untracked
    file's name and content in name order."""
    digest = hashlib.sha256(diff)
    for name, content in sorted(untracked):
        digest.update(b"\0" + name.encode() + b"\0" + content)
    return f"{sha}-dirty-{digest.hexdigest()[:HASH_LENGTH]}"


def nogit_tag(now: datetime) -> str:
    return f"nogit-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def parse_status(porcelain: bytes) -> tuple[str, ...]:
    """Paths from `git status --porcelain=v1 -z` (a rename's source entry skipped)."""
    entries = porcelain.split(b"\0")
    paths, skip = [], False
    for entry in entries:
        if skip:
            skip = False
            continue
        if len(entry) < 4:
            continue
        paths.append(entry[3:].decode(errors="replace"))
        skip = entry[:1] in (b"R", b"C")  # the next field is the old name
    return tuple(paths)


def _git(cwd: Path | None, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60)


def revision(cwd: Path | None = None, now: datetime | None = None) -> Revision:
    """Ask git about the tree at cwd (this directory by default)."""
    try:
        head = _git(cwd, "rev-parse", "--short", "HEAD")
    except (OSError, subprocess.TimeoutExpired):
        head = None
    sha = head.stdout.decode(errors="replace").strip().lower() if head else ""
    if head is None or head.returncode != 0 or not _SHA_RE.match(sha):
        return Revision(nogit_tag(now or datetime.now(UTC)), "nogit")
    status = _git(cwd, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    changed = parse_status(status.stdout)
    if status.returncode == 0 and not changed:
        return Revision(sha, "clean", sha)
    diff = _git(cwd, "diff", "HEAD", "--binary", "--no-ext-diff", "--no-color").stdout
    listed = _git(cwd, "ls-files", "--others", "--exclude-standard", "-z").stdout
    untracked = []
    for raw in filter(None, listed.split(b"\0")):
        name = raw.decode(errors="replace")
        # ls-files names are relative to cwd; read them from there.
        path = (cwd or Path.cwd()) / name
        try:
            untracked.append((name, path.read_bytes()))
        except OSError:  # a directory, a dangling link, gone since: the name still counts
            untracked.append((name, b""))
    return Revision(dirty_tag(sha, diff, untracked), "dirty", sha, changed)


def require_committed(rev: Revision, allow: bool, flag: str = ALLOW_FLAG) -> None:
    """Refuse (exit 5) to ship a tree that is not a commit to hosts, unless `allow`."""
    if rev.committed or allow:
        return
    if rev.state == "dirty":
        shown = ", ".join(rev.changed[:5]) + (", …" if len(rev.changed) > 5 else "")
        raise Refused(
            f"deploy: refusing to ship uncommitted changes to hosts: the working tree differs "
            f"from commit {rev.sha} in {len(rev.changed)} file(s) ({shown}); its image would "
            f"be {rev.tag}. Commit or stash them, so that every host runs a commit's image, "
            f"or pass {flag} to ship this tree as {rev.tag}")
    raise Refused(
        "deploy: refusing to ship to hosts from a tree git does not know (not a checkout, no "
        f"commit yet, or no git): no commit names its image. Deploy from a clone, or pass "
        f"{flag} to ship it as {rev.tag}")
