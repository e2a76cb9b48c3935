"""One database host and web hosts on network-namespace hosts (tests/support/netns.py),
deployed with the real `invoke` from a throwaway git copy of this project (the sample
stack), every host with the same Compose project: roles come from the overlays alone.

    h1  the database host   deploy/hosts/<h1>.env: APP_SERVICES= WORKER_SERVICES=
                            POSTGRES_PUBLISHED_HOST=<its address>
    h2… web hosts           deploy/hosts/<hK>.env: DB_SERVICE=

Every host and this machine reach the database at one address, the relay
(tests/support/relay.py) on this machine's end of h1's veth: the shared DATABASE_URL,
which a deploy also hands the web hosts' backends (their release .env's APP_DATABASE_URL).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg

from tests.support.base import LOCAL_IMAGES_ENV, read_env_file
from tests.support.fleet_rig import KEEP, SECRET, Fleet
from tests.support.relay import Relay
from tests.support.release_tree import ReleaseTree

PROXY_PORT = 8080


class RolesFleet(Fleet):
    """Fleet's commands and probes (invoke, docker, health, releases…) for a database host
    and web hosts."""

    def __init__(self, rig, tmp: Path):  # noqa: D107 - Fleet's fields, other settings
        self.rig = rig
        self.tmp = tmp
        self.hosts = list(rig.hosts)
        self.names = [h.address for h in self.hosts]
        self.db, self.webs = self.hosts[0], self.hosts[1:]
        (tmp / "src").mkdir()
        self.tree = ReleaseTree(tmp / "src")
        self.hosts_dir = tmp / "hosts"
        self.hosts_dir.mkdir()
        self.project = "e2er" + uuid.uuid4().hex[:6]
        # Images of this fleet alone (see Fleet): the backend's code, and the proxy's
        # rendered config through a load balancer path of its own (LB_PATH).
        path = self.tree.path / "deploy/stack/backend/app.py"
        path.write_text(path.read_text() + f"# roles {self.project}\n")
        self.lb_path = f"/.deploy/{self.project}"
        self.tree.commit(f"the images of roles fleet {self.project}")
        self.projects = {h.name: self.project for h in self.hosts}
        self.ports = {h.name: (5432, PROXY_PORT) for h in self.hosts}
        self.relay = Relay(self.db.root_address, (self.db.address, 5432)).__enter__()
        rig.reach(self.db.root_address)
        self.url = (f"postgresql://app:{SECRET}@{self.db.root_address}:{self.relay.port}/app")
        for h in self.hosts:
            self.write_overlay(h)
        shared = read_env_file(LOCAL_IMAGES_ENV) if LOCAL_IMAGES_ENV.exists() else {}
        shared.update({
            "COMPOSE_PROJECT_NAME": self.project,
            "POSTGRES_USER": "app", "POSTGRES_PASSWORD": SECRET, "POSTGRES_DB": "app",
            "DATABASE_URL": self.url,
            "DEPLOY_USER": rig.user, "SSH_KEY_FILE": str(rig.key_file),
            "SSH_KNOWN_HOSTS": str(rig.known_hosts), "DEPLOY_HOSTS_DIR": str(self.hosts_dir),
            "HEALTH_TIMEOUT": "120", "KEEP_RELEASES": str(KEEP), "DRAIN_TIMEOUT": "10",
            "BACKEND_SLOW_REQUESTS": "1", "PROXY_HEALTH_PATH": self.lb_path,
        })
        self.env_file = tmp / "shared.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in shared.items()))
        self.outputs: list[str] = []

    def write_overlay(self, host, **extra: str) -> None:
        h = self.rig.host(host)
        values = ({"APP_SERVICES": "", "WORKER_SERVICES": "",
                   "POSTGRES_PUBLISHED_HOST": h.address} if h is self.db
                  else {"DB_SERVICE": ""})
        values.update(extra)
        (self.hosts_dir / f"{h.address}.env").write_text(
            "".join(f"{k}={v}\n" for k, v in values.items()))

    # --- what runs where ------------------------------------------------------------------

    def containers(self, host, service: str) -> list[str]:
        """IDs of the running containers of ``service`` on the host."""
        return self.docker(host, "ps", "-q", "--no-trunc", "--filter",
                           f"label=com.docker.compose.project={self.project}", "--filter",
                           f"label=com.docker.compose.service={service}").stdout.split()

    def query(self, sql: str, *args) -> list[tuple]:
        """SQL on the shared database, from here (through the relay)."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(sql, args)
            return cur.fetchall() if cur.description else []

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self.relay.__exit__(None, None, None)
