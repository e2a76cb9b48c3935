"""After the README's first command, every README command works in that checkout.

A copy of the checkout (what `git clone` would give, plus the local images file that
`.ci/build-images` writes on a machine without a registry) is configured by
`.ci/configure-env`, the step of `.ci/quickstart` that writes `.env`; then the README's
commands run there in order, with nothing else set up. Only the Compose project name and
the published ports come from the environment, so this stack never meets another one.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from deploy.release.locks import local_lock_path
from tests.support.base import LOCAL_IMAGES_ENV, ROOT, free_port, read_env_file
from tests.support.stack import remove_project_images


def _checkout_copy(target: Path) -> None:
    """The files a clone has (tracked and new, not ignored), as they are now."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


class Checkout:
    def __init__(self, root: Path):
        self.root = root
        self.project = "e2eq" + uuid.uuid4().hex[:8]
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("POSTGRES_", "MIGRATION", "DEPLOY_", "COMPOSE_",
                                     "DATABASE_URL", "BACKEND_", "ENV_FILE", "PROXY_"))}
        self.env = {**keep, "COMPOSE_PROJECT_NAME": self.project,
                    "POSTGRES_PUBLISHED_PORT": str(free_port()),
                    "BACKEND_PUBLISHED_PORT": str(free_port()), "DOCKER_BUILDKIT": "0"}

    def run(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def invoke(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "invoke", *args, timeout=timeout)


@pytest.fixture
def checkout(docker_ready, tmp_path):
    root = tmp_path / "checkout"
    root.mkdir()
    _checkout_copy(root)
    if LOCAL_IMAGES_ENV.exists():
        (root / ".ci").mkdir(exist_ok=True)
        shutil.copy(LOCAL_IMAGES_ENV, root / ".ci" / "local-images.env")
    co = Checkout(root)
    yield co
    co.invoke("down", timeout=300)
    subprocess.run(["docker", "volume", "rm", "-f", f"{co.project}_pgdata",
                    f"{co.project}_proxy-state"], capture_output=True)
    remove_project_images(co.project)  # every release tag, not only `latest`
    local_lock_path(co.project).unlink(missing_ok=True)


def test_after_configure_env_every_readme_command_works_with_no_further_step(checkout):
    assert not (checkout.root / ".env").exists()
    configured = checkout.run(sys.executable, ".ci/configure-env")
    assert configured.returncode == 0, configured.stderr
    env_file = checkout.root / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = read_env_file(env_file)
    password = values["POSTGRES_PASSWORD"]
    assert len(password) == 32 and password != "change-me"
    assert "DATABASE_URL" not in values  # built from POSTGRES_*: the password is said once
    if LOCAL_IMAGES_ENV.exists():
        for key, value in read_env_file(LOCAL_IMAGES_ENV).items():
            assert values[key] == value
    assert password not in configured.stdout + configured.stderr

    outputs = []
    for args in (["deploy"], ["migrate"], ["migrate-status"], ["check-tables", "--prefix", "ai_"],
                 ["check-tables", "--expected"], ["ps"], ["logs", "backend", "--grep", "migration"],
                 ["lint-migrations"], ["up"], ["wait-healthy"]):
        result = checkout.invoke(*args)
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == 0, f"invoke {' '.join(args)}:\n{outputs[-1]}"
    assert "ai_cost_thresholds" in outputs[3]
    status = checkout.run(sys.executable, "-m", "deploy", "migrate-status")
    assert status.returncode == 0, status.stderr
    outputs.append(status.stdout + status.stderr)
    assert all(password not in text for text in outputs)

    # Running it again keeps the password (and so the database) that the stack was made with.
    again = checkout.run(sys.executable, ".ci/configure-env")
    assert again.returncode == 0
    assert read_env_file(env_file)["POSTGRES_PASSWORD"] == password
