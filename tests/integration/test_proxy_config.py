"""The tool's proxy config against the real HAProxy of PROXY_IMAGE (.ci/local-images.env,
else the official haproxy:2.6): `haproxy -c` accepts the rendered haproxy.cfg for one and
for two app services; the image built from proxyconf's Dockerfile answers the load
balancer's path with 503 until a slot is up, 200 then, 503 while the host drains; and Compose
merges the override over a user's compose file."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest
import yaml

from deploy.commands import haproxy as proxy
from deploy.commands import proxyconf
from deploy.commands.project import Port, parse_config
from deploy.services import Publish
from tests.support.haproxy import LB, STUB_CFG, TWO, proxy_image

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="needs Docker")

ONE = proxyconf.routes(["backend"], {"backend": 8080}, {"backend": "/health"},
                       {"backend": Publish("127.0.0.1", 8080)})
# A first start has no saved routing yet: the one warning `haproxy -c` may print.
NO_STATE_YET = (f"config : config: Can't open global server state file '{proxy.STATE_FILE}': "
                "No such file or directory")


def _docker(*args: str, check: bool = True, timeout: float = 120):
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"docker {' '.join(args[:3])}: exit {done.returncode}: "
                    f"{done.stderr.strip()}", pytrace=False)
    return done


@pytest.mark.parametrize("routes", [ONE, TWO], ids=["one-app-service", "two-app-services"])
def test_haproxy_accepts_the_rendered_config(tmp_path, routes):
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(proxyconf.haproxy_cfg(routes, LB))
    cfg.chmod(0o644)
    done = _docker("run", "--rm", "-v", f"{cfg}:/h.cfg:ro", proxy_image(), "haproxy", "-c", "-f",
                   "/h.cfg", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file is valid" in done.stdout + done.stderr
    warnings = [line.split(" : ", 1)[1] for line in done.stderr.splitlines()
                if line.startswith(("[WARNING]", "[ALERT]"))]
    assert warnings == [NO_STATE_YET]


def test_haproxy_refuses_a_broken_config(tmp_path):
    # Guards the test above: a config HAProxy cannot load fails the same check.
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(proxyconf.haproxy_cfg(ONE, LB).replace("default_backend backend",
                                                          "default_backend nowhere"))
    cfg.chmod(0o644)
    done = _docker("run", "--rm", "-v", f"{cfg}:/h.cfg:ro", proxy_image(), "haproxy", "-c", "-f",
                   "/h.cfg", check=False)
    assert done.returncode != 0
    assert "nowhere" in done.stderr


# --- the proxy running ---------------------------------------------------------------------

@pytest.fixture
def running(tmp_path):
    """The tool's proxy for web and admin, built from proxyconf's Dockerfile, and a stub
    app container answering 200 on :8000, on a network of their own."""
    name = f"deploy-proxytest-{uuid.uuid4().hex[:8]}"
    context = tmp_path / "proxy"
    context.mkdir()
    (context / "Dockerfile").write_text(proxyconf.dockerfile())
    (context / "haproxy.cfg").write_text(proxyconf.haproxy_cfg(TWO, LB))
    stub = tmp_path / "stub.cfg"
    stub.write_text(STUB_CFG)
    stub.chmod(0o644)
    made: list[list[str]] = []
    try:
        _docker("build", "--quiet", "--build-arg", f"PROXY_IMAGE={proxy_image()}", "--tag",
                f"{name}:test", str(context), timeout=300)
        made.append(["image", "rm", "--force", f"{name}:test"])
        _docker("network", "create", name)
        made.append(["network", "rm", name])
        mount = ["-v", f"{stub}:{proxyconf.CONFIG_PATH}:ro"]
        for role, image, extra in (("proxy", f"{name}:test", []),
                                   ("app", proxy_image(), mount)):
            _docker("run", "--detach", "--name", f"{name}-{role}", "--network", name, *extra,
                    image)
            made.append(["rm", "--force", f"{name}-{role}"])
        app_ip = _docker("inspect", "--format",
                         "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                         f"{name}-app").stdout.strip()
        yield f"{name}-proxy", app_ip
    finally:
        for args in reversed(made):
            _docker(*args, check=False)


def _api(container: str, command: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        argv = proxy.api(container, command)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            return done.stdout
        if time.monotonic() > deadline:  # the API is up within a second of the start
            pytest.fail(f"runtime API: exit {done.returncode}: {done.stderr}", pytrace=False)
        time.sleep(0.2)


def _status(container: str, port: int, path: str = LB) -> str:
    """The status line the proxy answers on its own port, from inside its container."""
    script = (f'exec 3<>/dev/tcp/127.0.0.1/{port} && '
              f'printf "GET {path} HTTP/1.0\\r\\n\\r\\n" >&3 && head -n 1 <&3')
    done = _docker("exec", container, "bash", "-c", script, check=False, timeout=30)
    return done.stdout.strip()


def _until(what, wanted: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    got = what()
    while got != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        got = what()
    return got


def test_the_lb_path_answers_503_until_a_slot_is_up_and_while_the_host_drains(running):
    container, app_ip = running
    web, admin = (r.bind for r in TWO)
    _api(container, proxy.show_servers_state())  # waits for the runtime API
    assert _status(container, web) == "HTTP/1.1 503 Service Unavailable"

    plan = proxy.SwitchPlan("web", 8000, new={"slot1": app_ip})
    proxy.check_answer(_api(container, proxy.assign([plan])), "prepare")
    proxy.check_answer(_api(container, proxy.flip([plan])), "switch")
    servers = proxy.parse_servers_state(_api(container, proxy.show_servers_state()))
    assert {s.backend for s in servers} == {"web", "admin", proxy.STATE_BACKEND}
    assert _until(lambda: _status(container, web), "HTTP/1.1 200 OK") == "HTTP/1.1 200 OK"
    assert _status(container, web, "/anything") == "HTTP/1.1 200 OK"  # routed to the stub
    assert _status(container, admin) == "HTTP/1.1 503 Service Unavailable"  # no admin slot

    proxy.check_answer(_api(container, proxy.host_state(False)), "host draining")
    assert _status(container, web) == "HTTP/1.1 503 Service Unavailable"
    assert _status(container, web, "/anything") == "HTTP/1.1 200 OK"  # it still serves
    proxy.check_answer(_api(container, proxy.host_state(True)), "host serving")
    assert _status(container, web) == "HTTP/1.1 200 OK"


def test_a_slot_pointed_at_a_new_container_is_not_up_before_a_check_there_passed(running):
    """A slot reused for a new container comes out of maintenance: HAProxy then reads it UP
    with its last check passed (at the old address) until it checks the new one. The
    prepare forces it down, so a deploy that polls at that instant waits."""
    container, app_ip = running
    _api(container, proxy.show_servers_state())  # waits for the runtime API
    serving = proxy.SwitchPlan("web", 8000, new={"slot1": app_ip})
    proxy.check_answer(_api(container, proxy.assign([serving])), "prepare")
    proxy.check_answer(_api(container, proxy.flip([serving])), "switch")
    assert _until(lambda: _status(container, TWO[0].bind), "HTTP/1.1 200 OK") == "HTTP/1.1 200 OK"
    proxy.check_answer(_api(container, proxy.set_state("web", ["slot1"], "maint")), "retire")

    nobody = proxy.SwitchPlan("web", 8001, new={"slot1": app_ip})  # nothing listens on 8001
    # One API call: its commands run back to back, before any check can.
    answer = _api(container, f"{proxy.assign([nobody])}; {proxy.show_servers_state()}")
    up, missing = proxy.new_slots_up(proxy.parse_servers_state(answer), nobody)
    assert not up
    assert missing == [f"web/slot1 ({app_ip}): drain DOWN, check result 3"]


# --- the override, merged by Compose ----------------------------------------------------------

USER_FILE = """services:
  web:
    build: {context: .}
    image: shop-web:r1
    networks: [front, back]
  admin:
    build: {context: .}
  worker:
    build: {context: .}
    image: shop-web:r1
networks:
  front: {}
  back: {}
"""


def _compose() -> list[str]:
    if _docker("compose", "version", check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor docker-compose is installed", pytrace=False)


def test_compose_merges_the_override_over_the_user_file(tmp_path):
    user = tmp_path / "docker-compose.yml"
    user.write_text(USER_FILE)
    images = {"web": "shop-web:live", "admin": "shop-admin:live", "worker": "shop-worker:live"}
    override = tmp_path / "override.yml"
    override.write_text(proxyconf.override(parse_config(USER_FILE, "shop"), TWO, images,
                                           "shop-proxy:live"))
    done = subprocess.run([*_compose(), "-f", str(user), "-f", str(override), "-p", "shop",
                           "config"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    merged = parse_config(done.stdout, "shop")  # as a deploy reads it (v1 or v2 output)
    assert {s: merged.services[s].image for s in images} == images  # pinned to `live`
    assert merged.services["web"].build.context == str(tmp_path)  # the user's build kept
    proxy_service = merged.services[proxy.SERVICE]
    assert proxy_service.image == "shop-proxy:live"
    assert proxy_service.ports == (Port("8080", "80", "0.0.0.0"),
                                   Port("8081", "9001", "127.0.0.1"))
    assert proxy_service.networks == ("back", "default", "front")
    volumes = yaml.safe_load(done.stdout)["volumes"]
    assert proxyconf.STATE_VOLUME in volumes
