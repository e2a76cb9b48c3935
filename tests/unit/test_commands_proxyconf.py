"""deploy/commands/proxyconf.py: the tool's proxy as text: haproxy.cfg for one and for two
app services, its Dockerfile and source hash, and the Compose override that adds it. Read
section by section here; the real HAProxy checks the same configs and docker-compose merges
the override in tests/integration/test_proxy_config.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.commands import haproxy as proxy
from deploy.commands import proxyconf
from deploy.commands.project import parse_config
from deploy.services import Publish

ONE = proxyconf.routes(["backend"], {"backend": 8080}, {"backend": "/health"},
                       {"backend": Publish("127.0.0.1", 8080)})
TWO = proxyconf.routes(["web", "admin"], {"web": 8000, "admin": 9000},
                       {"web": "/healthz", "admin": "/ping"},
                       {"web": Publish("0.0.0.0", 80), "admin": Publish("::1", 9001)})
LB = "/.deploy/health"


def sections(cfg: str) -> dict[str, list[str]]:
    """`global`, `defaults`, `frontend NAME`, `backend NAME` -> their lines, without
    comments or blank lines."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in cfg.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace():
            current = " ".join(line.split())
            assert current not in out, f"section {current!r} twice"
            out[current] = []
        else:
            out[current].append(" ".join(line.split()))
    return out


def _frontend(service: str, bind: int) -> list[str]:
    return [f"bind :{bind}",
            f"acl lb_check path {LB}",
            "acl host_on nbsrv(deploy_state) gt 0",
            f"acl app_up nbsrv({service}) gt 0",
            "http-request return status 200 content-type text/plain string ok if lb_check "
            "host_on app_up",
            "http-request return status 503 content-type text/plain string draining if lb_check",
            f"default_backend {service}"]


def _backend(health_path: str) -> list[str]:
    return ["http-request disable-l7-retry unless METH_GET",
            f"option httpchk GET {health_path}",
            "http-check expect status 200",
            "timeout check 4s",
            "default-server check inter 1s fastinter 100ms downinter 100ms fall 2 rise 1",
            "server-template slot 1-8 slot.invalid:1 disabled init-addr last,127.0.0.1"]


# --- routes ---------------------------------------------------------------------------


def test_each_app_service_gets_the_next_bind_port_inside_the_proxy_container():
    assert [(r.service, r.port, r.health_path, r.publish, r.bind) for r in TWO] == [
        ("web", 8000, "/healthz", "0.0.0.0:80", 8080),
        ("admin", 9000, "/ping", "[::1]:9001", 8081)]
    assert [(r.service, r.bind, r.publish) for r in ONE] == [
        ("backend", 8080, "127.0.0.1:8080")]


# --- haproxy.cfg ------------------------------------------------------------------------


def test_one_app_service_a_frontend_and_its_slot_backend_behind_the_lb_check():
    cfg = sections(proxyconf.haproxy_cfg(ONE, LB))

    assert list(cfg) == ["global", "defaults", "backend deploy_state", "frontend fe_backend",
                         "backend backend"]
    assert cfg["frontend fe_backend"] == _frontend("backend", 8080)
    assert cfg["backend backend"] == _backend("/health")
    assert cfg["backend deploy_state"] == ["server serving 127.0.0.1:1"]


def test_two_app_services_each_their_own_frontend_bind_port_backend_and_health_path():
    cfg = sections(proxyconf.haproxy_cfg(TWO, LB))

    assert list(cfg) == ["global", "defaults", "backend deploy_state", "frontend fe_web",
                         "backend web", "frontend fe_admin", "backend admin"]
    assert cfg["frontend fe_web"] == _frontend("web", 8080)
    assert cfg["frontend fe_admin"] == _frontend("admin", 8081)
    assert cfg["backend web"] == _backend("/healthz")
    assert cfg["backend admin"] == _backend("/ping")


def test_the_lb_health_path_is_the_one_given():
    cfg = sections(proxyconf.haproxy_cfg(ONE, "/lb/ready"))
    assert "acl lb_check path /lb/ready" in cfg["frontend fe_backend"]


def test_nothing_routes_by_service_name_no_backup_server_no_resolvers():
    for routes in (ONE, TWO):
        cfg = proxyconf.haproxy_cfg(routes, LB)
        lines = [line for lines in sections(cfg).values() for line in lines]
        assert not any("backup" in line.split() for line in lines)
        assert not any(line.startswith(("resolvers", "nameserver")) for line in lines)
        assert not any(k.startswith("resolvers") for k in sections(cfg))
        servers = [line for line in lines if line.startswith(("server ", "server-template "))]
        # Only the slots (placeholder addresses) and the host's own state server.
        assert all("slot.invalid:1" in s or s == "server serving 127.0.0.1:1" for s in servers)
        assert "8000" not in cfg and "9000" not in cfg  # APP_PORT: set per slot at run time


def test_the_global_and_defaults_sections_match_what_the_runtime_api_client_expects():
    cfg = sections(proxyconf.haproxy_cfg(TWO, LB))

    assert f"stats socket ipv4@127.0.0.1:{proxy.API_PORT} level admin" in cfg["global"]
    assert f"server-state-file {proxy.STATE_FILE}" in cfg["global"]
    assert "load-server-state-from-file global" in cfg["defaults"]
    assert "mode http" in cfg["defaults"]
    # The names commands/haproxy.py sends: slot1..slot8 of each app backend, the host state.
    assert f"backend {proxy.STATE_BACKEND}" in cfg
    assert f"server {proxy.STATE_SERVER} 127.0.0.1:1" in cfg[f"backend {proxy.STATE_BACKEND}"]
    template = next(line for line in cfg["backend web"] if line.startswith("server-template"))
    prefix, numbers = template.split()[1:3]
    first, last = (int(n) for n in numbers.split("-"))
    assert [f"{prefix}{i}" for i in range(first, last + 1)] == proxy.slot_names()
    # The placeholder a slot keeps until a switch: what Server.assigned says is unassigned.
    assert template.endswith(f"init-addr last,{proxy.PLACEHOLDER_ADDR}")
    assert not proxy.Server("slot1", proxy.PLACEHOLDER_ADDR, 1, 0, 5, 0).assigned


# --- the image ---------------------------------------------------------------------------


def test_the_dockerfile_bakes_the_config_into_proxy_image():
    text = proxyconf.dockerfile()
    assert "ARG PROXY_IMAGE=haproxy:2.6\nFROM ${PROXY_IMAGE}\n" in text
    assert f"COPY haproxy.cfg {proxyconf.CONFIG_PATH}\n" in text
    assert proxyconf.CONFIG_PATH == "/usr/local/etc/haproxy/haproxy.cfg"
    assert text.rstrip().endswith("USER haproxy")


def test_the_source_hash_follows_the_config_and_the_base_image():
    one, two = proxyconf.haproxy_cfg(ONE, LB), proxyconf.haproxy_cfg(TWO, LB)
    first = proxyconf.source_hash(one, "haproxy:2.6")
    assert len(first) == 16 and first == proxyconf.source_hash(one, "haproxy:2.6")
    assert proxyconf.source_hash(two, "haproxy:2.6") != first
    assert proxyconf.source_hash(one, "haproxy:2.8") != first


# --- the Compose override -------------------------------------------------------------------

SHOP = """
services:
  db: {image: 'postgres:16', networks: {back: null}}
  web: {build: {context: /src}, image: 'shop-web:live', networks: {front: null, back: null}}
  admin: {build: {context: /src/admin}, networks: {default: null, front: null}}
  worker: {build: {context: /src}, image: 'shop-web:live'}
networks: {front: {}, back: {}, default: {}}
"""
SAMPLE = """
services:
  postgres: {image: 'postgres:16'}
  backend: {build: {context: /src}, image: 'app-backend:live'}
"""
IMAGES = {"web": "shop-web:live", "admin": "shop-admin:live", "worker": "shop-worker:live"}


def _override(text: str, routes, images) -> dict:
    project = parse_config(text, "shop")
    rendered = proxyconf.override(project, routes, images, "shop-proxy:live")
    assert json.loads(rendered) == yaml.safe_load(rendered)  # JSON, which Compose reads as YAML
    return yaml.safe_load(rendered)


def test_the_override_adds_the_proxy_published_at_proxy_publish_and_pins_live_images():
    doc = _override(SAMPLE, ONE, {"backend": "app-backend:live"})

    assert doc == {
        "services": {
            "backend": {"image": "app-backend:live"},
            "proxy": {
                "image": "shop-proxy:live",
                "restart": "unless-stopped",
                "ports": ["127.0.0.1:8080:8080"],
                "volumes": ["deploy-proxy-state:/var/lib/haproxy"],
                "healthcheck": {"test": ["CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080"],
                                "interval": "5s", "timeout": "3s", "retries": 3},
                "labels": {"deploy.role": "proxy"}}},
        "volumes": {"deploy-proxy-state": {}}}


def test_with_two_app_services_the_proxy_publishes_each_and_joins_their_named_networks():
    doc = _override(SHOP, TWO, IMAGES)
    services = doc["services"]

    assert services["proxy"]["ports"] == ["0.0.0.0:80:8080", "[::1]:9001:8081"]
    # web is on front and back only, admin on default and front: the proxy joins them all,
    # or it could not reach web's containers (and `default` is not implied once it names any).
    assert services["proxy"]["networks"] == ["back", "front", "default"]
    assert {name: s["image"] for name, s in services.items() if name != "proxy"} == IMAGES
    assert all(list(s) == ["image"] for name, s in services.items() if name != "proxy")
    assert "db" not in services  # a service with no role is left as the user wrote it


def test_app_services_on_the_default_network_only_leave_the_proxy_on_it_too():
    doc = _override(SAMPLE, ONE, {"backend": "app-backend:live"})
    assert "networks" not in doc["services"]["proxy"]


def test_without_app_services_there_is_no_proxy_only_the_pinned_workers():
    doc = _override(SHOP, [], {"worker": "shop-worker:live"})
    assert doc == {"services": {"worker": {"image": "shop-worker:live"}}}


def _check_jsonschema() -> list[str]:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) \
        or shutil.which("check-jsonschema")
    if exe:
        return [exe]
    try:
        import check_jsonschema  # noqa: F401
    except ImportError:
        pytest.fail("check-jsonschema is not installed: pip install -e '.[dev]'",
                    pytrace=False)
    return [sys.executable, "-m", "check_jsonschema"]


def test_the_override_is_a_valid_compose_file_and_the_check_can_fail(tmp_path):
    cases = {"one": (SAMPLE, ONE, {"backend": "app-backend:live"}),
             "two": (SHOP, TWO, IMAGES),
             "workers-only": (SHOP, [], {"worker": "shop-worker:live"})}
    paths = []
    for name, (text, routes, images) in cases.items():
        paths.append(tmp_path / f"{name}.yml")
        paths[-1].write_text(proxyconf.override(parse_config(text, "shop"), routes, images,
                                                "shop-proxy:live"))
    # One file the schema refuses, so that a check that passes everything cannot pass here.
    bad = tmp_path / "bad.yml"
    bad.write_text(json.dumps({"services": {"proxy": {"ports": {"not": "a list"}}}}))
    done = subprocess.run([*_check_jsonschema(), "--builtin-schema", "vendor.compose-spec",
                           *map(str, paths), str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    failed = {line.split("::")[0].strip() for line in done.stdout.splitlines()
              if "::" in line}
    assert failed == {str(bad)}, done.stdout
