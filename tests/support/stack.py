"""The sample stack under its own Compose project: a project name, free published ports and
an env file per stack, and the real `invoke` and Compose commands run against it.

Every project is named ``e2e`` + random hex and removed with its volumes and images by
``StackEnv.down``; nothing here touches a container, volume or image it did not create.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from deploy.commands.proxyconf import STATE_VOLUME
from deploy.release.locks import local_lock_path
from tests.support.base import LOCAL_IMAGES_ENV, ROOT, free_port, invoke_argv, read_env_file


def docker_problem() -> str | None:
    """Why the e2e tests cannot run the sample stack here, or None when they can."""
    if not shutil.which("docker"):
        return "docker CLI not installed"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True)
    if info.returncode != 0:
        return f"Docker daemon not reachable: {info.stderr.strip()[:200]}"
    if not LOCAL_IMAGES_ENV.exists() and not os.environ.get("E2E_PUBLIC_IMAGES"):
        return (f"{LOCAL_IMAGES_ENV} missing: run bash .ci/build-images "
                "(or set E2E_PUBLIC_IMAGES=1 on a machine that can pull images)")
    return None


@functools.cache
def compose_command() -> list[str]:
    """The tests' own Compose calls: the v2 plugin where there is one (GitHub's runners
    have no docker-compose v1), else docker-compose."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    return ["docker", "compose"] if plugin.returncode == 0 else ["docker-compose"]


class StackEnv:
    """A project name, ports and an env file for one sample stack; runs real commands."""

    def __init__(self, tmp: Path, **extra: str):
        self.project = "e2e" + uuid.uuid4().hex[:8]
        self.pg_port = free_port()
        self.backend_port = free_port()
        self.password = "pw-" + uuid.uuid4().hex[:10]
        self.tmp = tmp
        values = read_env_file(LOCAL_IMAGES_ENV) if LOCAL_IMAGES_ENV.exists() else {}
        values.update({
            "COMPOSE_PROJECT_NAME": self.project,
            "POSTGRES_USER": "app",
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DB": "app",
            "POSTGRES_PUBLISHED_PORT": str(self.pg_port),
            "BACKEND_PUBLISHED_PORT": str(self.backend_port),
            "DATABASE_URL": f"postgresql://app:{self.password}@127.0.0.1:{self.pg_port}/app",
            "BACKUP_DIR": str(tmp / "backups"),
            "HEALTH_TIMEOUT": "120",
            "SUMMARY_TABLE_PREFIX": "ai_",  # the sample schema's tables, listed by a deploy
        })
        values.update(extra)
        self.values = values
        self.env_file = tmp / f"{self.project}.env"
        self.write()

    def write(self) -> None:
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.values.items()))

    @property
    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("POSTGRES_", "MIGRATION", "DEPLOY_", "COMPOSE_",
                                     "DATABASE_URL", "BACKEND_"))}
        return {**keep, "ENV_FILE": str(self.env_file), "DOCKER_BUILDKIT": "0"}

    def invoke(self, *args: str, timeout: float = 600, env: dict | None = None,
               cwd: Path = ROOT) -> subprocess.CompletedProcess:
        return subprocess.run(invoke_argv(*args), cwd=cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def popen_invoke(self, *args: str, cwd: Path = ROOT,
                     stderr: int = subprocess.PIPE) -> subprocess.Popen:
        """The same command, running: its output read line by line as it comes (to act on a
        step); ``stderr=subprocess.STDOUT`` merges both streams."""
        return subprocess.Popen(invoke_argv(*args), cwd=cwd, env=self.env,
                                stdout=subprocess.PIPE, stderr=stderr, text=True,
                                stdin=subprocess.DEVNULL)

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Compose on the sample's file and, once a task wrote it, the tool's override (its
        proxy service)."""
        override = override_path(self.project)
        extra = ["-f", str(override)] if override.exists() else []
        return subprocess.run(
            [*compose_command(), "--env-file", str(self.env_file), "-f",
             str(ROOT / "deploy/stack/docker-compose.yml"), *extra, "-p", self.project, *args],
            capture_output=True, text=True, check=check, timeout=300,
            env={**self.env})

    def psql(self, sql: str) -> str:
        return self.compose("exec", "-T", "postgres", "psql", "-U", "app", "-d", "app",
                            "-At", "-c", sql).stdout.strip()

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "-t", "2", check=False)
        remove_tool_leftovers(self.project)
        remove_project_images(self.project)
        local_lock_path(self.project).unlink(missing_ok=True)


def remove_tool_leftovers(project: str) -> None:
    """What the tool adds beside the user's compose file: its proxy's state volume (not in
    that file, so `down --volumes` keeps it) and its override file."""
    subprocess.run(["docker", "volume", "rm", "-f", f"{project}_{STATE_VOLUME}"],
                   capture_output=True)
    override_path(project).unlink(missing_ok=True)


def override_path(project: str) -> Path:
    """Where the tool writes its Compose override for a project on this machine."""
    return Path(tempfile.gettempdir()) / f"compose-switch-{os.getuid()}" / f"{project}.override.yml"


def remove_project_images(project: str) -> None:
    """Every tag of the project's backend image (BACKEND_IMAGE, by release and `live`) and
    its proxy image (named by Compose: v1 `<project>_proxy`, v2 `<project>-proxy`)."""
    # By name, not by ID: an image built from the same files by another project has the same
    # ID, and `docker image rm -f <ID>` would remove that project's names too.
    refs = set()
    for repo in (f"{project}-backend", f"{project}_backend", f"{project}_proxy",
                 f"{project}-proxy"):
        listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                                 repo], capture_output=True, text=True).stdout.split()
        refs.update(r for r in listed if not r.endswith(":<none>"))
    if refs:
        subprocess.run(["docker", "image", "rm", "-f", *sorted(refs)], capture_output=True)
