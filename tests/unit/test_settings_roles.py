"""The stack's roles from settings: APP_SERVICES, APP_PORT, HEALTH_PATH, WORKER_SERVICES,
DB_SERVICE, PROXY_PUBLISH, PROXY_HEALTH_PATH; every bad value is one line naming it."""

from __future__ import annotations

import pytest

from deploy.errors import ConfigError
from deploy.services import Publish
from tests.support.settings import load


def error_of(tmp_path, env: dict, file_text: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, env, file_text)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)
    return str(info.value)


def test_the_defaults_describe_the_sample_stack(tmp_path):
    s = load(tmp_path, {})
    assert s.app_services == ("backend",)
    assert s.app_ports == {"backend": 8080}
    assert s.health_paths == {"backend": "/health"}
    assert s.worker_services == ()
    assert s.db_service == "postgres"
    assert s.proxy_publish == {"backend": Publish("127.0.0.1", 8080)}
    assert s.proxy_health_path == "/.deploy/health"


def test_the_default_proxy_address_follows_backend_published_port(tmp_path):
    s = load(tmp_path, {"BACKEND_PUBLISHED_PORT": "18080"})
    assert str(s.proxy_publish["backend"]) == "127.0.0.1:18080"


def test_one_port_and_one_path_apply_to_every_app_service(tmp_path):
    s = load(tmp_path, {"APP_SERVICES": "web, admin", "APP_PORT": "8000",
                        "HEALTH_PATH": "/healthz",
                        "PROXY_PUBLISH": "web=0.0.0.0:80,admin=127.0.0.1:9001"})
    assert s.app_services == ("web", "admin")
    assert s.app_ports == {"web": 8000, "admin": 8000}
    assert s.health_paths == {"web": "/healthz", "admin": "/healthz"}
    assert s.proxy_publish == {"web": Publish("0.0.0.0", 80), "admin": Publish("127.0.0.1", 9001)}


def test_each_app_service_can_have_its_own_port_and_health_path(tmp_path):
    s = load(tmp_path, {"APP_SERVICES": "web,admin", "APP_PORT": "web:8000,admin:9000",
                        "HEALTH_PATH": "web:/healthz,admin:/ping?deep=1",
                        "PROXY_PUBLISH": "web=80,admin=[::1]:9001"})
    assert s.app_ports == {"web": 8000, "admin": 9000}
    assert s.health_paths == {"web": "/healthz", "admin": "/ping?deep=1"}
    assert str(s.proxy_publish["web"]) == "127.0.0.1:80"
    assert str(s.proxy_publish["admin"]) == "[::1]:9001"


def test_workers_and_a_public_proxy_address(tmp_path):
    s = load(tmp_path, {"APP_SERVICES": "web", "WORKER_SERVICES": "worker,scheduler",
                        "DB_SERVICE": "db", "PROXY_PUBLISH": "0.0.0.0:80",
                        "PROXY_HEALTH_PATH": "/lb-check"})
    assert s.worker_services == ("worker", "scheduler")
    assert s.db_service == "db"
    assert s.proxy_publish == {"web": Publish("0.0.0.0", 80)}
    assert s.proxy_health_path == "/lb-check"


def test_db_service_set_to_empty_means_no_database_service(tmp_path):
    assert load(tmp_path, {"DB_SERVICE": ""}).db_service == ""
    assert load(tmp_path, {}, "DB_SERVICE=\n").db_service == ""
    # The environment's empty value wins over the file's name, as every setting does.
    assert load(tmp_path, {"DB_SERVICE": ""}, "DB_SERVICE=db\n").db_service == ""
    assert load(tmp_path, {}, "DB_SERVICE=db\n").db_service == "db"


def test_app_services_set_to_empty_leaves_no_service_behind_the_proxy(tmp_path):
    s = load(tmp_path, {"APP_SERVICES": "", "WORKER_SERVICES": ""})
    assert s.app_services == () and s.app_ports == {} and s.proxy_publish == {}


@pytest.mark.parametrize(("env", "message"), [
    ({"APP_SERVICES": "web,Bad Name"},
     "APP_SERVICES: 'Bad Name' is not a Compose service name"),
    ({"APP_SERVICES": "web,web"}, "APP_SERVICES: 'web' is named twice"),
    ({"APP_PORT": "80800"}, "APP_PORT: '80800' is not a port number (1-65535)"),
    ({"APP_PORT": "http"}, "APP_PORT: 'http' is not a port number (1-65535)"),
    ({"APP_PORT": "backend:x"}, "APP_PORT: 'backend:x': 'x' is not a port number (1-65535)"),
    ({"APP_PORT": "web:8000"}, "APP_PORT: 'web' is not in APP_SERVICES (backend)"),
    ({"APP_SERVICES": "web,admin", "APP_PORT": "web:8000", "PROXY_PUBLISH": "web=80,admin=81"},
     "APP_PORT: no value for admin (name every app service, e.g. web:…,admin:…)"),
    ({"HEALTH_PATH": "healthz"}, "HEALTH_PATH: 'healthz' is not a path starting with /"),
    ({"HEALTH_PATH": "/a b"}, "HEALTH_PATH: '/a b' is not a path starting with /"),
    ({"WORKER_SERVICES": "backend"},
     "WORKER_SERVICES: 'backend' is also in APP_SERVICES"),
    ({"DB_SERVICE": "backend"}, "DB_SERVICE: 'backend' is also in APP_SERVICES"),
    ({"DB_SERVICE": "no such"}, "DB_SERVICE: 'no such' is not a Compose service name"),
    ({"PROXY_PUBLISH": "0.0.0.0"}, "PROXY_PUBLISH: '0.0.0.0' is not an address:port"),
    ({"PROXY_PUBLISH": "example.com:80"}, "PROXY_PUBLISH: 'example.com:80' is not an "
                                          "address:port"),
    ({"APP_SERVICES": "web,admin"},
     "PROXY_PUBLISH: missing; with several APP_SERVICES (web, admin) name each one's "
     "address, e.g. web=…,admin=…"),
    ({"APP_SERVICES": "web,admin", "PROXY_PUBLISH": "0.0.0.0:80"},
     "PROXY_PUBLISH: one address for several APP_SERVICES (web, admin); name each"),
    ({"APP_SERVICES": "web,admin", "PROXY_PUBLISH": "web=80"},
     "PROXY_PUBLISH: no address for admin"),
    ({"APP_SERVICES": "web,admin", "PROXY_PUBLISH": "web=80,admin=0.0.0.0:80"},
     "PROXY_PUBLISH: two app services on one port"),
    ({"PROXY_PUBLISH": "web=80"}, "PROXY_PUBLISH: 'web' is not in APP_SERVICES (backend)"),
    ({"BACKEND_PUBLISHED_PORT": "0"}, "BACKEND_PUBLISHED_PORT: '0' is not a port number"),
    ({"PROXY_HEALTH_PATH": "health"}, "PROXY_HEALTH_PATH: 'health' is not a path"),
])
def test_a_bad_role_setting_is_one_line_naming_it(tmp_path, env, message):
    got = error_of(tmp_path, env)
    assert message in got
    named = message.split(":", 1)[0]
    where = "(set in the environment)" if named in env else "(set it in .env or the environment"
    assert where in got


def test_a_bad_value_in_the_env_file_names_the_file(tmp_path):
    message = error_of(tmp_path, {}, "APP_PORT=abc\n")
    assert message == f"APP_PORT: 'abc' is not a port number (1-65535) (set in {tmp_path}/.env)"
