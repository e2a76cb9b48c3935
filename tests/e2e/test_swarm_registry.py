"""`invoke deploy --target swarm` with DEPLOY_REGISTRY, on the three-node Swarm rig
(tests/support/swarm.py): the images are pushed from here to the registry, `docker stack
deploy --with-registry-auth` on the manager pins each to its digest, and the nodes pull.

The registry is one at the same name for this machine and every node, 127.0.0.1:PORT
(tests/support/swarm_registry.py: a registry here on the host network, a relay in each
node's namespace). Nothing is loaded into the nodes beforehand: every image a node runs
(the backend built here, PostgreSQL, the Python stand-in, HAProxy) comes from that registry.

    1. the first deploy: exit 0; the output names the push to DEPLOY_REGISTRY and neither the
       tool's own registry nor its shipping to the nodes; every service's spec image is
       `127.0.0.1:PORT/…:<tag>@sha256:<the digest the registry has for that tag>`; every
       running backend task on every node runs the image built here (same ID); the proxy
       answers /health at every node
    2. a changed release under load (keep-alive clients that never retry, and wrk): 0 failed,
       the new digest pinned, every running backend task on the image built here
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
import uuid

import pytest

from deploy.commands import docker
from tests.support import swarm as rig_support
from tests.support.swarm_registry import SharedRegistry
from tests.support.swarm_target import APP, DB, DB_NODE, PROXY, SwarmTarget, UnderLoad

PORT = 8091  # the proxy's published port (tests/e2e/test_swarm_deploy.py has 8090)
REPLICAS = 3
NAMESPACE = "e2e"


@pytest.fixture(scope="module")
def rig(docker_ready):
    """The three-node Swarm; in CI a rig that cannot start fails every test here, never a
    silent skip. No images loaded: the nodes pull everything from the registry."""
    yield from rig_support.rig_for_tests(images=False)


@pytest.fixture(scope="module")
def target(rig, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("swarm-registry")
    with SharedRegistry(rig, f"e2eswr-registry-{uuid.uuid4().hex[:6]}") as reg:
        t = SwarmTarget(rig, tmp, PORT, replicas=REPLICAS, prefix="e2eswr",
                        DEPLOY_REGISTRY=f"{reg.address}/{NAMESPACE}")
        t.registry = reg
        t.releases = []
        try:
            yield t
        finally:
            t.teardown()


def ok(done) -> None:
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-4000:]


def get(address: str, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{address}:{PORT}{path}", timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


def pinned_to_registry(target: SwarmTarget, tag: str) -> dict[str, str]:
    """Every service's spec image is `<registry>/<namespace>/…:<tag>@<digest>`, the digest
    being the registry's for that tag (the backend at the release's tag); by service."""
    reg = target.registry
    specs = {}
    for service in (APP, DB, PROXY):
        image = target.inspect(service)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        ref = docker.parse_ref(image)
        assert ref.domain == reg.address and ref.path.startswith(NAMESPACE + "/"), image
        assert ref.digest == reg.digest(ref.path, ref.tag), (image, ref.path, ref.tag)
        specs[service] = image
    backend = docker.parse_ref(specs[APP])
    assert (backend.path, backend.tag) == (f"{NAMESPACE}/{target.project}-backend", tag), \
        specs[APP]
    return specs


def running_everywhere(target: SwarmTarget, tag: str, *, spread: bool) -> None:
    """REPLICAS backend tasks running (one per node when `spread`: a first deploy; a rolling
    update may place two on one node), each container on the image built here for `tag`."""
    want = target.local_id(target.backend_ref(tag))
    assert want, f"no image {target.backend_ref(tag)} here"
    assert target.rollout(APP).ok, target.rollout(APP)
    per_node = target.per_node(APP)
    print(f"\nbackend tasks per node: {per_node}")
    assert sum(per_node.values()) == REPLICAS, per_node
    if spread:
        assert sorted(per_node.values()) == [1] * REPLICAS, per_node
    seen = {n.hostname: target.container_images(n) for n in target.rig.nodes}
    assert all(ids == [want] * per_node[node] for node, ids in seen.items()), (want, seen)


def shipped_through_the_registry(target: SwarmTarget, text: str, tag: str) -> None:
    """The deploy's output: pushed to DEPLOY_REGISTRY, no registry of its own started here,
    nothing shipped to the nodes through tunnels."""
    reg = target.registry
    assert f"pushed {target.backend_ref(tag)} (sha256:" in text, text[-4000:]
    assert f"to {reg.address}/{NAMESPACE} in " in text, text[-4000:]
    assert not re.search(r"^\s*registry .*\(container ", text, re.M), text[-4000:]
    assert "hold the release's images" not in text and "not shipped to" not in text, \
        text[-4000:]


def test_the_first_deploy_pins_every_service_to_the_registrys_digest_and_nodes_pull_it(
        target, rig):
    tag = target.tree.sha
    # The nodes hold none of the stack's images before the deploy.
    for node in rig.nodes:
        assert target.docker("images", "-q", node=node).split() == [], node.name
    done = target.invoke("deploy", "--target", "swarm")
    ok(done)
    text = done.stdout + done.stderr
    print(f"\nfirst deploy output (tail):\n{done.stdout[-2500:]}")
    target.releases.append(tag)
    shipped_through_the_registry(target, text, tag)
    specs = pinned_to_registry(target, tag)
    print(f"\nspec images: {specs}")
    running_everywhere(target, tag, spread=True)
    assert [t.node for t in target.running(DB)] == [DB_NODE]
    assert sorted(t.node for t in target.running(PROXY)) == [n.hostname for n in rig.nodes]
    # What the nodes hold came from the registry: the backend by its digest, as pinned.
    backend = docker.parse_ref(specs[APP])
    for node in rig.nodes:
        digests = target.docker("image", "inspect", "--format", "{{json .RepoDigests}}",
                                target.local_id(target.backend_ref(tag)), node=node)
        assert f"{backend.domain}/{backend.path}@{backend.digest}" in digests, \
            (node.name, digests)
    for node in rig.nodes:
        assert get(node.address, "/health") == 200, node.name
    assert "Traceback" not in text
    assert not target.secret_leaked()


def test_a_changed_release_rolls_under_load_with_no_failure_from_the_registry(target, rig):
    before = pinned_to_registry(target, target.releases[-1])
    tag = target.tree.change()
    with UnderLoad(PORT, rig.node("n1").address, rig.node("n2").address) as load:
        done = target.invoke("deploy", "--target", "swarm")
    ok(done)
    print(f"\nsecond deploy output (tail):\n{done.stdout[-2500:]}")
    target.releases.append(tag)
    r = load.result
    print(f"\nload: {r.line()}")
    assert r.requests > 100 and r.failures == [], r.failures[:5]
    assert r.wrk_requests > 100 and r.wrk_errors == 0, r.wrk_text
    shipped_through_the_registry(target, done.stdout + done.stderr, tag)
    after = pinned_to_registry(target, tag)
    assert after[APP] != before[APP], (before, after)
    running_everywhere(target, tag, spread=False)
    assert not target.secret_leaked()
