"""A throwaway git copy of this project, where each change() is a new release.

`invoke deploy` names a release by the git commit of the directory it runs in
(deploy/release/revision.py), so tests and benchmarks that need a *changed*
release deploy from such a copy and commit a change between deploys.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.base import ROOT

COPIED = ("deploy", "migrations", "tasks.py", "fabfile.py", ".dockerignore", "pyproject.toml")


class ReleaseTree:
    """A git copy of the project (as it is on disk): each change() is a new release."""

    def __init__(self, path: Path):
        self.path = path
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", *COPIED],
            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
        for name in filter(None, listed):
            source = ROOT / name
            if source.is_file():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, path / name)
        self.git("init", "-q")
        self.changes = 0
        self.commit("the project")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=e2e", "-c", "user.email=e2e@localhost",
                               *args], cwd=self.path, capture_output=True, text=True,
                              check=True).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.sha

    @property
    def sha(self) -> str:
        return self.git("rev-parse", "--short", "HEAD")

    def change(self) -> str:
        """A new release: the backend's code changes (a comment), committed."""
        self.changes += 1
        app = self.path / "deploy/stack/backend/app.py"
        app.write_text(app.read_text() + f"# release change {self.changes}\n")
        return self.commit(f"change {self.changes}")
