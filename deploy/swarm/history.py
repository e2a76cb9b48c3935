"""The releases a Swarm ran: one JSON line per deploy or rollback, in a file on the manager
(`<DEPLOY_PATH>/swarm/releases.jsonl`), and which one serves (the app services' label
`deploy.release`, which Swarm keeps in the spec and rolls back with it).

A rollback returns every app service to the images recorded for the release before the
one that serves: the images are still on the nodes (nothing is pruned), so nothing is
built or shipped. Pure: text in, entries out; reading and writing the file is the caller's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from deploy.errors import ConfigError, DeployError

FILE = "releases.jsonl"
KEEP = 50  # entries kept in the file


@dataclass(frozen=True)
class Entry:
    release: str
    images: Mapping[str, str] = field(default_factory=dict)  # app/worker service -> pinned
    at: str = ""  # UTC, ISO 8601
    action: str = "deploy"  # or "rollback"

    def line(self) -> str:
        return json.dumps({"release": self.release, "at": self.at, "action": self.action,
                           "images": dict(self.images)}, sort_keys=True)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str, where: str = FILE) -> list[Entry]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            entries.append(Entry(release=str(doc["release"]), images=dict(doc["images"]),
                                 at=str(doc.get("at", "")),
                                 action=str(doc.get("action", "deploy"))))
        except (ValueError, KeyError, TypeError):
            raise DeployError(f"{where}:{number}: not a release record: "
                              f"{line.strip()[:80]!r}") from None
    return entries


def append(entries: Sequence[Entry], entry: Entry, keep: int = KEEP) -> str:
    """The file's new text: the entries plus this one, the newest `keep`."""
    kept = [*entries, entry][-keep:]
    return "".join(e.line() + "\n" for e in kept)


def previous(entries: Sequence[Entry], current: str) -> Entry:
    """The release to roll back to: the newest other release recorded before the current
    release was last deployed (a rollback record of it does not count, so rolling back
    twice goes two releases back). ConfigError (exit 2) when there is none."""
    index = None
    for i in range(len(entries) - 1, -1, -1):
        if entries[i].release == current and (entries[i].action == "deploy" or index is None):
            index = i
            if entries[i].action == "deploy":
                break
    if index is None:
        raise ConfigError(f"rollback: the serving release {current!r} is not in the Swarm's "
                          f"release history ({FILE}); nothing recorded to return to")
    for entry in reversed(entries[:index]):
        if entry.release != current:
            return entry
    raise ConfigError(f"rollback: no release before {current} in the Swarm's release "
                      "history: nothing to roll back to")


def rows(entries: Sequence[Entry], current: str | None) -> list[str]:
    """`releases` lines, newest first: `* <release>  <when>  <action>  <service=image>…`,
    * marking the release that serves; each release once, at its latest record."""
    seen, lines = set(), []
    for entry in reversed(entries):
        if entry.release in seen:
            continue
        seen.add(entry.release)
        mark = "*" if entry.release == current else " "
        images = ", ".join(f"{s}={_short(i)}" for s, i in entry.images.items())
        lines.append(f"{mark} {entry.release}  {entry.at}  {entry.action}  {images}")
    return lines


def _short(image: str) -> str:
    """sha256:<64 hex> shown as sha256:<12 hex>; names as they are."""
    if image.startswith("sha256:") and len(image) > 19:
        return image[:19]
    return image
