"""A fleet of two network-namespace hosts (tests/support/netns.py) deployed with the real
`invoke` and `fab`, from a throwaway git copy of this project (tests/support/release_tree.py:
every deploy ships a commit, each change() is a new one).

Host h1 uses the shared settings; h2 has an overlay (deploy/hosts/<host>.env, here in a
temp dir) with its own Compose project name, published ports and so its own image names,
so the same release reaches the hosts under different names with one image ID. Each host
has its own engine: after a deploy, what runs there can only have come from this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from deploy.fleet import hosts as remote
from deploy.fleet import registry
from deploy.settings import load_settings
from tests.support.base import LOCAL_IMAGES_ENV, ROOT, invoke_argv, read_env_file
from tests.support.release_tree import ReleaseTree
from tests.support.stack import remove_project_images

SECRET = "s3cret-" + uuid.uuid4().hex[:12]
# A build step in a recorded command line: `docker build`, `docker image build`, `docker
# buildx`, `compose build`, `--build` (not `--no-build`, which forbids one).
BUILD = re.compile(r"(?<![\w/.-])(?:build|buildx|--build)(?![\w/.-])")
FAB = "from fabric.main import program; program.run()"
# KEEP_RELEASES on the hosts: how many releases a host has at most after a deploy.
KEEP = 3


class Fleet:
    def __init__(self, rig, tmp: Path):
        self.rig = rig
        self.tmp = tmp
        self.hosts = list(rig.hosts)
        self.names = [h.address for h in self.hosts]  # what --hosts and [prefix] say
        (tmp / "src").mkdir()
        self.tree = ReleaseTree(tmp / "src")
        self.hosts_dir = tmp / "hosts"
        self.hosts_dir.mkdir()
        self.project = "e2ef" + uuid.uuid4().hex[:6]
        # Images of this fleet alone: a line of its own in the backend's code, and a load
        # balancer path of its own in the proxy's rendered config (PROXY_HEALTH_PATH below).
        # Built from the same files, another test's stack would get the very same image IDs
        # from the layer cache, and its cleanup would remove ours with its own.
        path = self.tree.path / "deploy/stack/backend/app.py"
        path.write_text(path.read_text() + f"# fleet {self.project}\n")
        self.tree.commit(f"the images of fleet {self.project}")
        self.projects = {self.hosts[0].name: self.project,
                         self.hosts[1].name: "e2eg" + uuid.uuid4().hex[:6]}
        self.ports = {self.hosts[0].name: (5432, 8080), self.hosts[1].name: (15432, 18080)}
        self.write_overlay(self.hosts[1])
        shared = read_env_file(LOCAL_IMAGES_ENV) if LOCAL_IMAGES_ENV.exists() else {}
        shared.update({
            "COMPOSE_PROJECT_NAME": self.project,
            "POSTGRES_USER": "app", "POSTGRES_PASSWORD": SECRET, "POSTGRES_DB": "app",
            "DEPLOY_USER": rig.user, "SSH_KEY_FILE": str(rig.key_file),
            "SSH_KNOWN_HOSTS": str(rig.known_hosts), "DEPLOY_HOSTS_DIR": str(self.hosts_dir),
            "HEALTH_TIMEOUT": "120", "KEEP_RELEASES": str(KEEP), "DRAIN_TIMEOUT": "10",
            "BACKEND_SLOW_REQUESTS": "1", "PROXY_HEALTH_PATH": f"/.deploy/{self.project}",
        })
        self.env_file = tmp / "shared.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in shared.items()))
        self.outputs: list[str] = []

    # --- settings ----------------------------------------------------------------------

    def write_overlay(self, host, **extra: str) -> None:
        """h2's overlay (its own project and ports), plus `extra`; h1's holds only `extra`."""
        h = self.rig.host(host)
        values = {}
        if h is self.hosts[1]:
            pg, backend = self.ports[h.name]
            values = {"COMPOSE_PROJECT_NAME": self.projects[h.name],
                      "POSTGRES_PUBLISHED_PORT": str(pg), "BACKEND_PUBLISHED_PORT": str(backend)}
        values.update(extra)
        path = self.hosts_dir / f"{h.address}.env"
        if values:
            path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        else:
            path.unlink(missing_ok=True)

    def settings(self, host):
        """The host's settings as a deploy reads them (shared file + its overlay)."""
        shared = load_settings(environ={"ENV_FILE": str(self.env_file)}, cwd=self.tree.path)
        return remote.host_settings(shared, self.rig.host(host).address)

    def spec(self, *hosts) -> str:
        return ",".join(self.rig.spec(h) for h in hosts or self.hosts)

    def backend_image(self, host) -> str:
        return f"{self.projects[self.rig.host(host).name]}-backend"

    def path(self, host) -> Path:
        """DEPLOY_PATH (/srv/<project>) of the host, as this machine sees it."""
        h = self.rig.host(host)
        return h.srv / self.projects[h.name]

    # --- commands ------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("POSTGRES_", "DEPLOY_", "COMPOSE_", "DATABASE_URL",
                                     "SSH_", "BACKEND_", "MIGRATION", "REGISTRY_"))}
        return {**keep, "ENV_FILE": str(self.env_file), "DOCKER_BUILDKIT": "0"}

    def _run(self, argv, env=None, timeout=900) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, cwd=self.tree.path, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        self.outputs.append(done.stdout + done.stderr)
        return done

    def invoke_argv(self, *args: str) -> list[str]:
        return invoke_argv(*args)

    def invoke(self, *args: str, env=None) -> subprocess.CompletedProcess:
        return self._run(self.invoke_argv(*args), env)

    def popen_invoke(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.invoke_argv(*args), cwd=self.tree.path, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)

    def fab(self, *args: str, env=None) -> subprocess.CompletedProcess:
        return self._run([sys.executable, "-c", FAB, "--search-root", str(ROOT), *args], env)

    # --- what is on a host ---------------------------------------------------------------

    def docker(self, host, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.rig.docker_argv(host, *args), capture_output=True,
                              text=True, timeout=120)

    def image_id(self, host, ref: str) -> str | None:
        done = self.docker(host, "image", "inspect", "--format", "{{.Id}}", ref)
        return done.stdout.strip() if done.returncode == 0 else None

    def backend_ids(self, host) -> list[str]:
        """The image ID of each backend container running on the host."""
        project = self.projects[self.rig.host(host).name]
        ids = self.docker(host, "ps", "-q", "--filter",
                          f"label=com.docker.compose.project={project}", "--filter",
                          "label=com.docker.compose.service=backend").stdout.split()
        if not ids:
            return []
        return self.docker(host, "inspect", "--format", "{{.Image}}", *ids).stdout.split()

    def health(self, host) -> int:
        """GET /health through the host's proxy, from inside the host (its loopback)."""
        port = self.ports[self.rig.host(host).name][1]
        probe = ("import urllib.request, urllib.error\n"
                 "try:\n"
                 f"    print(urllib.request.urlopen('http://127.0.0.1:{port}/health', "
                 "timeout=10).status)\n"
                 "except urllib.error.HTTPError as e:\n    print(e.code)\n"
                 "except OSError:\n    print(0)\n")
        done = subprocess.run(self.rig.netns_exec_argv(host, sys.executable, "-c", probe),
                              capture_output=True, text=True, timeout=60)
        return int(done.stdout.strip() or 0)

    def releases(self, host) -> list[str]:
        root = self.path(host) / "releases"
        return sorted(p.name for p in root.iterdir()) if root.exists() else []

    def current(self, host) -> str:
        return (self.path(host) / "current").resolve().name

    # --- a known state for each test ---------------------------------------------------------

    def serving(self, host) -> bool:
        """A release is current and its stack answers /health through the proxy."""
        return bool(self.releases(host)) and (self.path(host) / "current").exists() \
            and self.health(host) == 200

    def wipe(self, host) -> None:
        """The host as before any deploy of this fleet: no containers, volumes, networks or
        images of its project, no DEPLOY_PATH."""
        h = self.rig.host(host)
        project = self.projects[h.name]
        label = f"label=com.docker.compose.project={project}"
        ids = self.docker(h, "ps", "-aq", "--filter", label).stdout.split()
        if ids:
            self.docker(h, "rm", "-f", "-v", *ids)
        for kind in ("volume", "network"):
            names = self.docker(h, kind, "ls", "-q", "--filter", label).stdout.split()
            if names:
                self.docker(h, kind, "rm", *names)
        for repo in (f"{project}-backend", f"{project}-proxy"):
            refs = self.docker(h, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                               repo).stdout.split()
            if refs:
                self.docker(h, "image", "rm", "-f", *refs)
        shutil.rmtree(self.path(h), ignore_errors=True)

    def ensure_releases(self, count: int, *hosts, most: int | None = None) -> None:
        """Each host (default: all) serving with `count` releases (or up to `most`),
        whatever the tests before left: a host with too many releases, or one that does not
        serve, is wiped, and new commits are deployed until each has enough. The tree is
        left clean and every overlay as written at the start, so each test can run alone
        and in any order."""
        hosts = list(hosts or self.hosts)
        most = count if most is None else most
        self.tree.git("reset", "--hard", "-q")
        self.tree.git("clean", "-fdq")
        for h in self.hosts:
            self.write_overlay(h)
        for h in hosts:
            found = len(self.releases(h))
            if found and (found > most or not self.serving(h)):
                self.wipe(h)
            elif not found:
                self.wipe(h)  # what a failed first deploy may have left
        while short := [h for h in hosts if len(self.releases(h)) < count]:
            fewest = min(len(self.releases(h)) for h in short)
            batch = [h for h in short if len(self.releases(h)) == fewest]
            self.tree.change()  # each deploy a new commit, as each release has its own tag
            done = self.invoke("deploy", "--hosts", self.spec(*batch))
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # --- this machine ----------------------------------------------------------------------

    @staticmethod
    def local_id(ref: str) -> str | None:
        done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref],
                              capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    def teardown(self) -> None:
        for host in self.hosts:
            for project in self.projects.values():
                ids = self.docker(host, "ps", "-aq", "--filter",
                                  f"label=com.docker.compose.project={project}").stdout.split()
                if ids:
                    self.docker(host, "rm", "-f", "-v", *ids)
        for project in self.projects.values():
            remove_project_images(project)
        subprocess.run(["docker", "volume", "rm", "-f", registry.names(self.project)[1]],
                       capture_output=True)
