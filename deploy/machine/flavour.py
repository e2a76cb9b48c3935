"""Which Compose a machine has (v1 `docker-compose` or the v2 plugin), remembered on disk.

Asking docker-compose v1 its version starts a slow Python program, on every task that uses
Compose; the answer is kept per machine until COMPOSE_CMD or a Compose binary changes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from deploy import shell
from deploy.commands import compose

_PLUGIN_DIRS = ("~/.docker/cli-plugins", "/usr/local/lib/docker/cli-plugins",
                "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
                "/usr/libexec/docker/cli-plugins")


def _binaries_key(compose_cmd: str | None) -> str:
    """What the detected flavour depends on: COMPOSE_CMD and the installed binaries."""
    parts = [compose_cmd or ""]
    paths = [shutil.which("docker"), shutil.which("docker-compose")]
    paths += [os.path.join(os.path.expanduser(d), "docker-compose") for d in _PLUGIN_DIRS]
    for path in paths:
        if path and os.path.exists(path):
            st = os.stat(path)
            parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def detect_flavour_cached(compose_cmd: str | None, probe) -> tuple[tuple[str, ...], str]:
    """compose.detect_flavour, remembered per machine until a Compose binary changes."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deploy"
    path = cache / "compose-flavour.json"
    key = _binaries_key(compose_cmd)
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return tuple(saved["base"]), saved["flavour"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    base, flavour = compose.detect_flavour(compose_cmd, probe)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "base": list(base), "flavour": flavour}))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home only costs the probe next time
    return base, flavour


_HOST_FLAVOURS: dict[tuple, tuple[tuple[str, ...], str]] = {}


def flavour_for(c, compose_cmd: str | None, probe) -> tuple[tuple[str, ...], str]:
    """(Compose's argv base, its flavour) where ``c`` runs: on a host, asked once per
    process; on this machine, from the disk cache."""
    if not shell.is_remote(c):
        return detect_flavour_cached(compose_cmd, probe)
    key = (c.host, c.port, compose_cmd)
    if key not in _HOST_FLAVOURS:
        _HOST_FLAVOURS[key] = compose.detect_flavour(compose_cmd, probe)
    return _HOST_FLAVOURS[key]
