"""What every rig needs: this checkout's paths, a free port, the real `invoke` command line
and the KEY=VALUE env files of .ci/."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MIGRATIONS = ROOT / "migrations"
LOCAL_IMAGES_ENV = ROOT / ".ci" / "local-images.env"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def invoke_argv(*args: str) -> list[str]:
    """`invoke ARGS` with this checkout's tasks, whatever the working directory."""
    return [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args]


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values
