"""A stack on the Swarm rig (tests/support/swarm.py), for the e2e tests and bench/: the stand-in
backend (tests/support/swarm_backend.py, bind-mounted: every node shares this machine's
files) behind the HAProxy that deploy/commands/stackfile.py renders, deployed with the argv
of deploy/commands/swarm.py, and the waits that read its rollout.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from deploy.commands import stackfile, swarm
from deploy.services import Publish, Roles
from tests.support.base import ROOT
from tests.support.swarm import Swarm, local_images

BACKEND = ROOT / "tests" / "support" / "swarm_backend.py"
DRAIN = 5  # seconds the stand-in drains on SIGTERM (DRAIN_SECONDS)


def on(rig: Swarm, node, argv: list[str], timeout: float = 120) -> str:
    """Run one of deploy.commands.swarm's argv against a node's engine; its stdout."""
    if argv[0] != "docker":
        raise ValueError(f"a docker command expected, got {argv[:2]}")
    done = rig.docker(node, *argv[1:], timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5):
    """predicate()'s first truthy value; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:.0f} s")
        time.sleep(poll)


def tasks(rig: Swarm, service: str, node="n1") -> list[swarm.Task]:
    return swarm.parse_tasks(on(rig, node, swarm.service_ps(service)))


def running(rig: Swarm, service: str, node="n1") -> list[swarm.Task]:
    return [t for t in tasks(rig, service, node) if t.running]


def rollout(rig: Swarm, service: str, node="n1") -> swarm.Rollout:
    (found,) = swarm.parse_services(on(rig, node, swarm.service_inspect(service)))
    return swarm.rollout_state(found, tasks(rig, service, node))


def compose_config(image: str) -> dict:
    """What `compose config` prints for a one-service project running the stand-in."""
    probe = ("import urllib.request; "
             "urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)")
    return {"services": {"backend": {
        "image": image, "command": ["python3", "/app/backend.py"],
        "environment": {"RELEASE": "r1", "DRAIN_SECONDS": str(DRAIN)},
        "volumes": [{"type": "bind", "source": str(BACKEND), "target": "/app/backend.py",
                     "read_only": True, "bind": {"create_host_path": True}}],
        "healthcheck": {"test": ["CMD", "python3", "-c", probe], "interval": "2s",
                        "timeout": "3s", "retries": 2},
        "networks": {"default": None}}}}


def roles(port: int) -> Roles:
    return Roles(app_services=("backend",), app_ports={"backend": 8000},
                 health_paths={"backend": "/health"}, worker_services=(), db_service="",
                 proxy_publish={"backend": Publish("0.0.0.0", port)},
                 proxy_health_path="/.deploy/health")


def deploy_stack(rig: Swarm, directory: Path, stack: str, port: int, replicas: int = 6
                 ) -> stackfile.StackFile:
    """Render the stack file into `directory` and `docker stack deploy` it (returns at once)."""
    python, proxy = local_images()
    out = stackfile.render(compose_config(python), roles(port), stackfile.SwarmOptions(
        stack=stack, images={"backend": python}, proxy_image=proxy, replicas=replicas,
        drain=DRAIN))
    (directory / "stack.yml").write_text(out.text)
    for name, content in out.files.items():
        (directory / name).write_text(content)
    on(rig, "n1", swarm.stack_deploy(str(directory / "stack.yml"), stack))
    return out


def build_release(rig: Swarm, tag: str, env: dict[str, str] | None = None) -> None:
    """A new release of the stand-in: its image plus a label (and `env`, e.g. STARTUP_FAIL=1
    for a release whose container fails at start), built on each node from what the node
    has (a second `docker load` of 450 MB takes ~40 s). The nodes' image IDs then differ,
    unlike a shipped image's."""
    lines = [f"FROM {local_images()[0]}", f"LABEL deploy.release={tag}"]
    lines += [f"ENV {key}={value}" for key, value in (env or {}).items()]
    dockerfile = ("\n".join(lines) + "\n").encode()
    for node in rig.nodes:
        built = subprocess.run(node.docker_argv("build", "-q", "-t", tag, "-"),
                               input=dockerfile, capture_output=True, timeout=120)
        if built.returncode != 0:
            raise AssertionError(f"docker build on {node.name}: "
                                 f"{built.stderr.decode(errors='replace').strip()}")
