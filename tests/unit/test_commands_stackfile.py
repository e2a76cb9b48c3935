"""The Swarm stack file rendered from `compose config` output: the real captures of
tests/support/compose-captures (project `shop`: web, worker, db, cache, admin)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.commands import stackfile
from deploy.commands.stackfile import SwarmOptions
from deploy.errors import ConfigError
from deploy.services import Publish, Roles

CAPTURES = Path(__file__).resolve().parents[1] / "support" / "compose-captures"
WEB_IMAGE = "shop-web@sha256:" + "b" * 64


def config(flavour: str = "v1") -> dict:
    return yaml.safe_load((CAPTURES / f"{flavour}-config.yml").read_text())


def roles(**extra) -> Roles:
    values = dict(app_services=("web",), app_ports={"web": 8000},
                  health_paths={"web": "/health"}, worker_services=("worker",),
                  db_service="db", proxy_publish={"web": Publish("0.0.0.0", 8088)},
                  proxy_health_path="/.deploy/health")
    values.update(extra)
    return Roles(**values)


def options(**extra) -> SwarmOptions:
    values = dict(stack="shop", images={"web": WEB_IMAGE, "worker": WEB_IMAGE,
                                        "admin": "shop-admin:r1"},
                  proxy_image="haproxy:2.6", replicas=6, db_node="swarm-n1", drain=5,
                  labels={"deploy.release": "r1"})
    values.update(extra)
    return SwarmOptions(**values)


def rendered(flavour: str = "v1", **extra) -> tuple[dict, stackfile.StackFile]:
    out = stackfile.render(config(flavour), roles(), options(**extra))
    return yaml.safe_load(out.text), out


def test_app_service_rolls_start_first_one_at_a_time_and_rolls_back_by_itself():
    doc, _ = rendered()
    web = doc["services"]["web"]
    assert web["image"] == WEB_IMAGE
    assert web["deploy"]["replicas"] == 6
    assert web["deploy"]["endpoint_mode"] == "dnsrr"
    assert web["deploy"]["update_config"] == {
        "parallelism": 1, "delay": "2s", "failure_action": "rollback", "monitor": "5s",
        "max_failure_ratio": 0, "order": "start-first"}
    assert web["deploy"]["rollback_config"]["order"] == "start-first"
    assert web["deploy"]["rollback_config"]["failure_action"] == "pause"
    assert web["healthcheck"]["test"] == ["CMD", "python3", "/srv/server.py", "--probe"]
    assert web["deploy"]["labels"] == {"deploy.release": "r1"}
    assert web["deploy"]["restart_policy"] == {"condition": "any", "delay": "2s"}


def test_stop_grace_period_outlasts_the_drain_but_a_longer_one_is_kept():
    doc, _ = rendered(drain=30)
    assert doc["services"]["web"]["stop_grace_period"] == "35s"  # 30 s drain + 5 s margin
    doc, _ = rendered(drain=5)
    assert doc["services"]["web"]["stop_grace_period"] == "20s"  # the compose file's


def test_composes_own_keys_and_published_ports_are_dropped():
    doc, _ = rendered()
    web, db = doc["services"]["web"], doc["services"]["db"]
    assert "depends_on" not in web and "build" not in web
    assert "ports" not in db and "ports" not in doc["services"]["cache"]
    assert doc["services"]["admin"]["image"] == "shop-admin:r1"


def test_the_database_stays_on_its_node_and_stops_before_its_replacement_starts():
    doc, _ = rendered()
    db = doc["services"]["db"]
    assert db["deploy"]["replicas"] == 1
    assert db["deploy"]["placement"] == {"constraints": ["node.hostname==swarm-n1"]}
    assert db["deploy"]["update_config"]["order"] == "stop-first"
    assert db["volumes"] == ["dbdata:/var/lib/postgresql/data:rw"]
    assert doc["volumes"] == {"dbdata": {}}
    doc, _ = rendered(db_node="db=true")
    assert doc["services"]["db"]["deploy"]["placement"]["constraints"] == [
        "node.labels.db==true"]


def test_a_database_service_without_a_node_is_refused_naming_the_setting():
    with pytest.raises(ConfigError) as err:
        rendered(db_node=None)
    assert str(err.value).startswith("SWARM_DB_NODE: missing; the database service 'db'")
    assert err.value.exit_code == 2
    with pytest.raises(ConfigError, match=r"^SWARM_DB_NODE: 'a b' is neither"):
        rendered(db_node="a b")


def test_the_worker_keeps_its_command_and_gets_one_replica():
    doc, _ = rendered()
    worker = doc["services"]["worker"]
    assert worker["command"] == ["python3", "/srv/server.py", "--worker"]
    assert worker["deploy"]["replicas"] == 1
    assert worker["stop_signal"] == "SIGINT"


def test_the_proxy_runs_on_every_node_with_a_host_mode_port_and_a_hashed_config():
    doc, out = rendered()
    proxy = doc["services"]["proxy"]
    assert proxy["deploy"]["mode"] == "global"
    assert proxy["deploy"]["endpoint_mode"] == "dnsrr"
    assert proxy["ports"] == [{"target": 8088, "published": 8088, "protocol": "tcp",
                               "mode": "host"}]
    (name, content), = out.files.items()
    digest = name.removeprefix("haproxy-").removesuffix(".cfg")
    assert doc["configs"]["proxy_config"] == {"name": f"shop-proxy-{digest}",
                                              "file": f"./{name}"}
    assert out.proxy_config == f"shop-proxy-{digest}"
    assert proxy["configs"] == [{"source": "proxy_config",
                                 "target": "/usr/local/etc/haproxy/haproxy.cfg"}]
    doc, _ = rendered(proxy_label="edge")
    assert doc["services"]["proxy"]["deploy"]["placement"] == {
        "constraints": ["node.labels.edge==true"]}


def test_haproxy_finds_the_tasks_by_dns_and_checks_the_health_path():
    _, out = rendered()
    cfg = next(iter(out.files.values()))
    assert "server-template s 12 tasks.shop_web:8000 resolvers docker init-addr none" in cfg
    assert "nameserver dns 127.0.0.11:53" in cfg and "hold valid 10s" in cfg
    assert "option httpchk GET /health" in cfg
    assert "default-server check inter 1s fall 2 rise 2" in cfg
    assert "bind :8088" in cfg and "monitor-uri /.deploy/health" in cfg
    assert "retry-on all-retryable-errors" in cfg and "option redispatch 1" in cfg


def test_a_new_release_keeps_the_proxy_config_and_so_its_name():
    _, first = rendered(images={"web": "shop-web:r1", "worker": "shop-web:r1",
                                "admin": "a:1"})
    _, second = rendered(images={"web": "shop-web:r2", "worker": "shop-web:r2",
                                 "admin": "a:2"})
    assert first.proxy_config == second.proxy_config
    changed = stackfile.render(config(), roles(app_ports={"web": 9000}), options())
    assert changed.proxy_config != first.proxy_config


def test_every_service_is_on_the_stack_overlay_network():
    doc, _ = rendered()
    assert doc["networks"]["default"] == {"driver": "overlay", "attachable": True}
    assert doc["networks"]["front"] == {"driver": "overlay", "attachable": True}
    assert doc["services"]["admin"]["networks"] == ["default", "front"]


def test_zero_replicas_and_an_unknown_app_service_are_refused():
    with pytest.raises(ConfigError, match=r"^APP_REPLICAS: 0 is not a number of replicas"):
        rendered(replicas=0)
    with pytest.raises(ConfigError, match=r"no service 'api' in the compose file"):
        stackfile.render(config(), roles(app_services=("api",)), options())


def test_server_slots_cover_a_start_first_update():
    assert stackfile.server_slots(2) == 10
    assert stackfile.server_slots(6) == 12


def _check_jsonschema() -> list[str]:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) \
        or shutil.which("check-jsonschema")
    return [exe] if exe else [sys.executable, "-m", "check_jsonschema"]


@pytest.mark.parametrize("flavour", ["v1", "v2"])
def test_the_rendered_file_validates_against_the_compose_spec(flavour, tmp_path):
    _, out = rendered(flavour)
    path = tmp_path / "stack.yml"
    path.write_text(out.text)
    done = subprocess.run([*_check_jsonschema(), "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_release_label_is_on_the_app_and_worker_services_only():
    doc, _ = rendered()
    labelled = {name for name, body in doc["services"].items()
                if "labels" in body["deploy"]}
    assert labelled == {"web", "worker"}
