"""The sample stack deployed to the Swarm rig (tests/support/swarm.py) with the real
`invoke … --target swarm`, from a throwaway git copy of this project
(tests/support/release_tree.py: each change() is a new release), for
tests/e2e/test_swarm_deploy.py and bench/bench_swarm.py.

Settings (a shared env file, ENV_FILE): DEPLOY_TARGET=swarm, SWARM_MANAGER=root@<n1>:22,
the rig's SSH_KEY_FILE and SSH_KNOWN_HOSTS, APP_REPLICAS, SWARM_DB_NODE=swarm-n1 (the
node-loss test stops n3), PROXY_PUBLISH=0.0.0.0:<port>, a project of its own and the local
base images (.ci/local-images.env). The nodes cannot pull: `load_base_images` puts the base
images there (what a real node pulls from a public registry); the backend image the tool
builds must reach them through the tool's own shipping.

What runs where is read from the engines themselves (`docker -H unix://<node socket>`), not
from the tool's output: services, tasks per node, the image ID behind each running
container, the database's migration history (psql in the postgres task).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from deploy.commands import swarm
from deploy.fleet import registry
from tests.support.base import LOCAL_IMAGES_ENV, invoke_argv, read_env_file
from tests.support.load import Wrk, percentile
from tests.support.release_tree import ReleaseTree
from tests.support.stack import remove_project_images
from tests.support.swarm import Swarm, local_images
from tests.support.swarm_load import AddressClients

SECRET = "s3cret-" + uuid.uuid4().hex[:12]
BASE_IMAGE_KEYS = ("PYTHON_IMAGE", "PROXY_IMAGE", "POSTGRES_IMAGE")
DB_NODE = "swarm-n1"
APP = "backend"
DB = "postgres"
PROXY = "proxy"


def base_images() -> list[str]:
    values = read_env_file(LOCAL_IMAGES_ENV)
    local_images()  # the rig's own check: a clear error when the file or a key is missing
    return [values[k] for k in BASE_IMAGE_KEYS if values.get(k)]


@dataclass
class Load:
    """What AddressClients and wrk saw while an action ran."""

    requests: int
    failures: list[str]
    p99: float
    wrk_requests: int
    wrk_errors: int
    wrk_p99: float
    wrk_text: str
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures) + self.wrk_errors

    def line(self) -> str:
        return (f"clients {self.requests} requests, {len(self.failures)} failed (p99 "
                f"{self.p99 * 1000:.0f} ms); wrk {self.wrk_requests} requests, "
                f"{self.wrk_errors} errors (p99 {self.wrk_p99 * 1000:.0f} ms)")


class UnderLoad:
    """Keep-alive clients that never retry (GET `path` on `clients_address`) and wrk (GET
    `wrk_path` on `wrk_address`), both at the proxy's published port, while the body of the
    `with` runs; `.result` afterwards."""

    def __init__(self, port: int, clients_address: str, wrk_address: str | None = None,
                 path: str = "/counters/1", wrk_path: str = "/", clients: int = 2,
                 connections: int = 4, settle: float = 2.0):
        self.clients = AddressClients(clients_address, port, count=clients, path=path)
        self.wrk = Wrk(f"http://{wrk_address or clients_address}:{port}{wrk_path}",
                       connections=connections, threads=1)
        self.settle = settle
        self.result: Load | None = None

    def __enter__(self) -> UnderLoad:
        import time

        self.clients.__enter__()
        self.wrk.__enter__()
        time.sleep(self.settle)
        return self

    def __exit__(self, *exc) -> None:
        import time

        time.sleep(self.settle)
        self.wrk.__exit__(*exc)
        self.clients.__exit__(*exc)
        tally, report = self.clients.tally(), self.wrk.report
        self.result = Load(tally.requests, tally.failures, percentile(tally.latencies, 99),
                           report.requests, report.errors, report.latency.get("p99", 0.0),
                           report.text)


class SwarmTarget:
    """The sample project, its settings for the swarm target, the real `invoke`, and what
    the rig's engines say about it."""

    def __init__(self, rig: Swarm, tmp: Path, port: int, replicas: int = 6,
                 prefix: str = "e2esw", **extra: str):
        self.rig = rig
        self.tmp = tmp
        self.port = port
        self.replicas = replicas
        self.project = prefix + uuid.uuid4().hex[:6]
        (tmp / "src").mkdir()
        self.tree = ReleaseTree(tmp / "src")
        # Images of this project alone (see tests/support/fleet_rig.py: built from the same
        # files, another test's images would share our IDs and its cleanup remove ours).
        app = self.tree.path / "deploy/stack/backend/app.py"
        app.write_text(app.read_text() + f"# swarm {self.project}\n")
        self.tree.commit(f"the images of swarm project {self.project}")
        self.manager = rig.node("n1")
        values = read_env_file(LOCAL_IMAGES_ENV) if LOCAL_IMAGES_ENV.exists() else {}
        values.update({
            "COMPOSE_PROJECT_NAME": self.project,
            "POSTGRES_USER": "app", "POSTGRES_PASSWORD": SECRET, "POSTGRES_DB": "app",
            "DEPLOY_TARGET": "swarm", "SWARM_MANAGER": rig.spec(self.manager),
            "SSH_KEY_FILE": str(rig.key_file), "SSH_KNOWN_HOSTS": str(rig.known_hosts),
            "APP_REPLICAS": str(replicas), "SWARM_DB_NODE": DB_NODE,
            "PROXY_PUBLISH": f"0.0.0.0:{port}",
            "HEALTH_TIMEOUT": "120", "DRAIN_TIMEOUT": "10",
        })
        values.update(extra)
        self.env_file = tmp / "shared.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        self.outputs: list[str] = []

    # --- settings and commands -----------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("POSTGRES_", "DEPLOY_", "COMPOSE_", "DATABASE_URL",
                                     "SSH_", "BACKEND_", "MIGRATION", "REGISTRY_", "SWARM_",
                                     "APP_", "PROXY_"))}
        return {**keep, "ENV_FILE": str(self.env_file), "DOCKER_BUILDKIT": "0"}

    def invoke(self, *args: str, env: dict[str, str] | None = None, timeout: float = 1200
               ) -> subprocess.CompletedProcess:
        try:
            done = subprocess.run(invoke_argv(*args), cwd=self.tree.path,
                                  env={**self.env, **(env or {})}, capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            said = e.stdout or ""
            if isinstance(said, bytes):
                said = said.decode(errors="replace")
            raise AssertionError(f"invoke {' '.join(args)}: still running after {timeout:g} s "
                                 f"(killed); its output so far:\n{said[-3000:]}") from None
        self.outputs.append(done.stdout + done.stderr)
        return done

    def secret_leaked(self) -> bool:
        return any(SECRET in text for text in self.outputs)

    # --- the rig ----------------------------------------------------------------------------

    def load_base_images(self) -> dict[str, str]:
        return self.rig.load_images(base_images())

    def docker(self, *args: str, node=None, timeout: float = 120) -> str:
        """A docker command on a node (default: a node whose engine answers); its stdout."""
        done = self.rig.docker(node or self.rig.manager(), *args, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def service_name(self, service: str) -> str:
        """The Swarm service of a compose service: `<stack>_<service>`, the stack being the
        one whose namespace label is the project's name."""
        names = self.docker("service", "ls", "--format", "{{.Name}}", "--filter",
                            f"label=com.docker.stack.namespace={self.project}").split()
        wanted = f"{self.project}_{service}"
        if wanted in names:
            return wanted
        raise AssertionError(f"no service {wanted} on the Swarm (the stack's: {names})")

    def stack_services(self) -> list[str]:
        return self.docker("service", "ls", "--format", "{{.Name}}", "--filter",
                           f"label=com.docker.stack.namespace={self.project}").split()

    def inspect(self, service: str) -> dict:
        (found,) = json.loads(self.docker("service", "inspect", self.service_name(service)))
        return found

    def service(self, service: str) -> swarm.Service:
        (found,) = swarm.parse_services(self.docker(*swarm.service_inspect(
            self.service_name(service))[1:]))
        return found

    def tasks(self, service: str) -> list[swarm.Task]:
        return swarm.parse_tasks(self.docker(*swarm.service_ps(self.service_name(service))[1:]))

    def running(self, service: str) -> list[swarm.Task]:
        return [t for t in self.tasks(service) if t.running]

    def rollout(self, service: str = APP) -> swarm.Rollout:
        return swarm.rollout_state(self.service(service), self.tasks(service))

    def per_node(self, service: str = APP) -> dict[str, int]:
        counts = Counter(t.node for t in self.running(service))
        return {n.hostname: counts.get(n.hostname, 0) for n in self.rig.nodes}

    def containers(self, node, service: str = APP) -> list[str]:
        """IDs of the running containers of a service on one node."""
        return self.docker("ps", "-q", "--no-trunc", "--filter",
                           f"label=com.docker.swarm.service.name={self.service_name(service)}",
                           node=node).split()

    def container_images(self, node, service: str = APP) -> list[str]:
        """The image ID behind each running container of the service on the node."""
        ids = self.containers(node, service)
        if not ids:
            return []
        return self.docker("inspect", "--format", "{{.Image}}", *ids, node=node).split()

    def psql(self, sql: str) -> list[list[str]]:
        """SQL in the database task (on SWARM_DB_NODE): rows of `|`-separated fields."""
        node = self.rig.node(DB_NODE)
        (container, *_) = self.containers(node, DB) or [None]
        if container is None:
            raise AssertionError(f"no {DB} container running on {DB_NODE}")
        out = self.docker("exec", container, "psql", "-U", "app", "-d", "app", "-At",
                          "-F", "|", "-c", sql, node=node)
        return [line.split("|") for line in out.splitlines() if line]

    def history(self) -> dict[str, int]:
        """Rows per file in the runner's history table (migration_history)."""
        return {name: int(count) for name, count in self.psql(
            "SELECT filename, count(*) FROM migration_history GROUP BY filename")}

    def task_created(self, service: str = APP) -> dict[str, str]:
        """CreatedAt (RFC 3339, UTC) of each of the service's tasks, by task ID."""
        ids = [t.id for t in self.tasks(service)]
        found = json.loads(self.docker("inspect", "--type", "task", *ids))
        return {t["ID"]: t["CreatedAt"] for t in found}

    # --- this machine ---------------------------------------------------------------------

    def local_images(self) -> dict[str, str]:
        """The project's images here (its backend, any other it names): ID by reference.
        Other projects' images come and go with other test runs on this machine."""
        out = subprocess.run(["docker", "images", "--no-trunc", "--format",
                              "{{.Repository}}:{{.Tag}} {{.ID}}"], capture_output=True,
                             text=True, check=True).stdout
        pairs = (line.split() for line in out.splitlines() if line.strip())
        return {ref: i for ref, i in pairs if ref.startswith((f"{self.project}-",
                                                             f"{self.project}_"))}

    def backend_ref(self, tag: str) -> str:
        return f"{self.project}-backend:{tag}"

    def local_id(self, ref: str) -> str | None:
        done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref],
                              capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    def teardown(self) -> None:
        # The manager's DEPLOY_PATH (/srv/<project>: stack files, the release history) is
        # on this machine's file system: a node binds only /run, /root and /etc/docker.
        shutil.rmtree(f"/srv/{self.project}", ignore_errors=True)
        remove_project_images(self.project)
        container, volume = registry.names(self.project)
        subprocess.run(["docker", "rm", "-f", "-v", container], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
