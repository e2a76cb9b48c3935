"""The swarm target's pure parts: settings and their errors, the release history, the
one-off task's environment, the rollout watch on captured Docker 20.10 output, `ps` rows,
the first deploy's base stack and the runner's arguments."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from deploy.commands import swarm
from deploy.errors import ConfigError, DeployError
from deploy.settings import load_settings
from deploy.swarm import history, oneoff, watch
from deploy.swarm.deploy import base_stack
from deploy.swarm.migrate import app_environment, migrate_args
from deploy.swarm.target import COMPOSE, SWARM, swarm_config, target
from deploy.swarm.views import service_row
from deploy.tasks.migrations import check_tables_args, runner_migrate_args

CAPTURES = Path(__file__).resolve().parents[1] / "support" / "swarm-captures"


def settings(**values):
    return load_settings(environ={"POSTGRES_PASSWORD": "pw", **values}, read_file=False)


# --- settings -----------------------------------------------------------------------------


def test_the_target_is_compose_unless_the_flag_or_deploy_target_says_swarm():
    assert target(None, settings()) == COMPOSE
    assert target(None, settings(DEPLOY_TARGET="swarm")) == SWARM
    assert target("compose", settings(DEPLOY_TARGET="swarm")) == COMPOSE


def test_an_unknown_target_is_refused_naming_the_setting_or_the_flag():
    with pytest.raises(ConfigError) as exc:
        target(None, settings(DEPLOY_TARGET="kubernetes"))
    assert str(exc.value) == ("DEPLOY_TARGET: 'kubernetes' is not a target; use one of "
                              "compose, swarm")
    assert exc.value.exit_code == 2
    with pytest.raises(ConfigError, match=r"^--target: 'swam' is not a target"):
        target("swam", settings())


def test_swarm_config_reads_the_manager_replicas_and_placement():
    config = swarm_config(settings(SWARM_MANAGER="deploy@10.0.0.5:2222", APP_REPLICAS="6",
                                   SWARM_DB_NODE="db=true", SWARM_PROXY_LABEL="edge",
                                   COMPOSE_PROJECT_NAME="shop", DEPLOY_PATH="/opt/shop"))
    assert (config.manager.name, config.manager.user, config.manager.port) == \
        ("10.0.0.5", "deploy", 2222)
    assert (config.replicas, config.db_node, config.proxy_label) == (6, "db=true", "edge")
    assert config.runner == ("python3", "-m", "deploy")
    assert config.network == "shop_default"
    assert config.service("backend") == "shop_backend"
    assert config.state_dir == "/opt/shop/swarm"
    assert config.rollout_timeout == 600


def test_without_a_manager_the_swarm_target_says_what_to_set():
    with pytest.raises(ConfigError) as exc:
        swarm_config(settings())
    assert str(exc.value).startswith("SWARM_MANAGER: missing; the swarm target needs a "
                                     "manager node as user@host[:port]")


@pytest.mark.parametrize(("values", "message"), [
    ({"SWARM_MANAGER": "a,b"}, "SWARM_MANAGER: 'a,b' names more than one node"),
    ({"SWARM_MANAGER": "root@n1:99999"}, "SWARM_MANAGER: 'root@n1:99999' has a bad port"),
    ({"APP_REPLICAS": "0"}, "APP_REPLICAS: '0' is not a number of replicas (1 or more)"),
    ({"APP_REPLICAS": "six"}, "APP_REPLICAS: 'six' is not a number of replicas"),
    ({"SWARM_PROXY_LABEL": "edge=true"}, "SWARM_PROXY_LABEL: 'edge=true' is not a node "
                                         "label name"),
    ({"SWARM_RUNNER": "python3 -m 'deploy"}, "SWARM_RUNNER: cannot split"),
    ({"SWARM_ROLLOUT_TIMEOUT": "soon"}, "SWARM_ROLLOUT_TIMEOUT: 'soon' is not a number of "
                                        "seconds"),
    ({"SWARM_ROLLOUT_TIMEOUT": "0"}, "SWARM_ROLLOUT_TIMEOUT: '0' is not a number"),
])
def test_a_bad_swarm_setting_is_one_line_naming_it(values, message):
    with pytest.raises(ConfigError) as exc:
        swarm_config(settings(**{"SWARM_MANAGER": "root@n1", **values}))
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


# --- the release history ------------------------------------------------------------------


def entries(*releases):
    return [history.Entry(r, {"backend": f"sha256:{r}"}, f"t{i}")
            for i, r in enumerate(releases)]


def test_history_round_trips_and_keeps_the_newest_entries():
    text = history.append(entries("r1", "r2"), history.Entry("r3", {"backend": "x"}, "t"),
                          keep=2)
    assert [e.release for e in history.parse(text)] == ["r2", "r3"]
    assert history.parse(text)[1].images == {"backend": "x"}


def test_a_broken_history_line_names_the_file_and_line():
    with pytest.raises(DeployError) as exc:
        history.parse('{"release": "r1", "images": {}}\nnot json\n', "/srv/app/swarm/r.jsonl")
    assert str(exc.value) == "/srv/app/swarm/r.jsonl:2: not a release record: 'not json'"


def test_rollback_goes_to_the_release_before_the_serving_one():
    assert history.previous(entries("r1", "r2", "r3"), "r3").release == "r2"
    # r3 was rolled back to r2: the next rollback from r2 goes to r1, not to r3.
    rolled = entries("r1", "r2", "r3") + [history.Entry("r2", {}, "t", "rollback")]
    assert history.previous(rolled, "r2").release == "r1"
    # the same release deployed twice in a row is skipped
    assert history.previous(entries("r1", "r2", "r2"), "r2").release == "r1"


def test_rollback_without_an_earlier_release_is_refused():
    with pytest.raises(ConfigError) as exc:
        history.previous(entries("r1"), "r1")
    assert str(exc.value) == ("rollback: no release before r1 in the Swarm's release "
                              "history: nothing to roll back to")
    with pytest.raises(ConfigError, match="the serving release 'r9' is not in the Swarm's"):
        history.previous(entries("r1"), "r9")


def test_releases_rows_are_newest_first_each_once_with_the_serving_one_marked():
    rows = history.rows(entries("r1", "r2", "r1"), "r1")
    assert rows == ["* r1  t2  deploy  backend=sha256:r1", "  r2  t1  deploy  backend=sha256:r2"]
    long = history.Entry("r4", {"backend": "sha256:" + "a" * 64}, "t")
    assert history.rows([long], None) == ["  r4  t  deploy  backend=sha256:aaaaaaaaaaaa"]


# --- the one-off task ---------------------------------------------------------------------


def test_the_env_file_is_literal_key_value_lines():
    assert oneoff.env_file_text({"A": "1", "URL": "postgresql://u:p#w@db/x", "E": None}) == \
        "A=1\nURL=postgresql://u:p#w@db/x\nE=\n"


def test_a_value_with_a_line_break_cannot_reach_the_task():
    with pytest.raises(ConfigError) as exc:
        oneoff.env_file_text({"KEY": "a\nb"})
    assert str(exc.value).startswith("KEY: a value with a line break cannot reach a Swarm task")


def test_the_task_sees_the_apps_database_url_as_the_sample_entrypoint_sets_it():
    assert oneoff.task_env({"DATABASE_URL": "postgresql://a@postgres/app",
                            "APP_DATABASE_URL": ""}) == \
        {"DATABASE_URL": "postgresql://a@postgres/app"}
    assert oneoff.task_env({"DATABASE_URL": "postgresql://a@postgres/app",
                            "APP_DATABASE_URL": "postgresql://b@db.example/app"}) == \
        {"DATABASE_URL": "postgresql://b@db.example/app"}


def test_the_app_environment_comes_from_the_first_app_service():
    config = {"services": {"backend": {"environment": {"DATABASE_URL": "u", "X": None}}}}
    assert app_environment(config, settings()) == {"DATABASE_URL": "u", "X": ""}
    listed = {"services": {"backend": {"environment": ["DATABASE_URL=u=v"]}}}
    assert app_environment(listed, settings()) == {"DATABASE_URL": "u=v"}
    with pytest.raises(ConfigError, match="^APP_SERVICES: empty; on a Swarm the migrations"):
        app_environment(config, settings(APP_SERVICES="", DB_SERVICE="postgres"))


def test_describe_names_the_exit_code_or_the_state():
    failed = oneoff.OneOffResult("t", "failed", 3, "task: non-zero exit (3)", ())
    assert oneoff.describe(failed) == "exit code 3 (task: non-zero exit (3))"
    rejected = oneoff.OneOffResult("t", "rejected", None, "no such image", ())
    assert oneoff.describe(rejected) == "rejected (no such image)"
    assert not rejected.ok
    assert oneoff.OneOffResult("t", "complete", 0, "", ()).ok


def test_the_runner_arguments_match_the_flags():
    assert migrate_args(60) == ["migrate", "--wait", "60", "--lock-wait", "60"]
    assert runner_migrate_args("5", 30.0, True, False, {"lock_retries": 3,
                                                         "lock_budget": None}) == [
        "migrate", "--wait", "5", "--lock-wait", "30", "--dry-run", "--lock-retries", "3"]
    assert check_tables_args("ai_", "public", True, False, 0.0) == [
        "check-tables", "--schema", "public", "--wait", "0", "--prefix", "ai_", "--expected"]


# --- the rollout watch, on captured output -----------------------------------------------


class FakeManager:
    """Answers `service inspect`, `service ps` and `service logs` with captured text."""

    def __init__(self, inspect: list[str], ps: str, logs: str = ""):
        self.inspect = list(inspect)
        self.ps = ps
        self.logs = logs
        self.commands: list[list[str]] = []

    def run(self, argv, check=True, what=None, input=None):
        self.commands.append(argv)
        if argv[:3] == ["docker", "service", "inspect"]:
            text = self.inspect[0] if len(self.inspect) == 1 else self.inspect.pop(0)
        elif argv[:3] == ["docker", "service", "ps"]:
            text = self.ps
        else:
            text = self.logs
        return SimpleNamespace(stdout=text, stderr="", exited=0)


def capture(name: str) -> str:
    return (CAPTURES / name).read_text()


FAST = watch.WatchPolicy(interval=0, budget=60, settle=0)


def test_a_completed_rollout_is_a_success_with_its_progress_line():
    lines = []
    manager = FakeManager([capture("service-inspect-completed.json")],
                          capture("service-ps-completed.jsonl"))
    (service,) = swarm.parse_services(capture("service-inspect-completed.json"))
    state = watch.wait(manager, service.name, policy=FAST, out=lines.append)
    assert state.ok
    assert lines[0] == f"   {service.name} {state.total}/{state.total} on the new release"
    assert lines[1].startswith(f"   {service.name}: rollout completed in ")


def test_a_rolled_back_update_fails_naming_the_service_the_task_errors_and_what_serves():
    manager = FakeManager([capture("service-inspect-rollback-completed.json")],
                          capture("service-ps-updating.jsonl"),
                          logs="backend: BACKEND_FAIL_AT_START=1\n")
    (service,) = swarm.parse_services(capture("service-inspect-rollback-completed.json"))
    lines = []
    with pytest.raises(watch.RolloutFailed) as exc:
        watch.wait(manager, service.name, policy=FAST, out=lines.append)
    assert lines == []  # no "6/6 on the new release" for the old spec Swarm went back to
    text = str(exc.value)
    assert exc.value.exit_code == 1
    assert text.startswith(f"deploy failed: {service.name}: the update failed and Swarm "
                           "rolled it back")
    # each failed task's own log (`service logs <task id>`), at most two tasks
    assert ("  cap-web.2 on swarm-n2, its last 1 log lines:\n"
            "    backend: BACKEND_FAIL_AT_START=1\n"
            "  cap-web.4 on swarm-n3, its last 1 log lines:\n") in text
    logs = [argv for argv in manager.commands if argv[:3] == ["docker", "service", "logs"]]
    assert [argv[-1] for argv in logs] == [t.id for t in swarm.parse_tasks(
        capture("service-ps-updating.jsonl")) if t.current == "failed"]
    assert f"now serving: {service.name} release " in text


def test_a_rollout_that_takes_too_long_fails_naming_the_timeout():
    manager = FakeManager([capture("service-inspect-updating.json")],
                          capture("service-ps-updating.jsonl"))
    (service,) = swarm.parse_services(capture("service-inspect-updating.json"))
    with pytest.raises(watch.RolloutFailed) as exc:
        watch.wait(manager, service.name, policy=watch.WatchPolicy(interval=0, budget=0,
                                                                    settle=0),
                   out=lambda line: None)
    assert "not completed after 0 s (SWARM_ROLLOUT_TIMEOUT)" in str(exc.value)


# --- ps and the base stack -----------------------------------------------------------------


def test_a_ps_row_shows_replicas_release_and_tasks_per_node():
    service = swarm.Service("app_web", "img", None, 3, "completed",
                            labels=(("deploy.release", "r7"),))
    tasks = [swarm.Task("1", "app_web.1", "n1", "running", "running", "", "img"),
             swarm.Task("2", "app_web.2", "n1", "running", "running", "", "img"),
             swarm.Task("3", "app_web.3", "n2", "running", "starting", "", "img"),
             swarm.Task("4", "app_web.3", "n2", "shutdown", "failed", "exit 1", "img")]
    assert service_row(service, tasks) == ("app_web  2/3 running  release r7  update "
                                           "completed  n1: 2 running, n2: 1 starting")


def test_the_base_stack_drops_the_app_services_and_keeps_the_rest_as_rendered():
    text = ("# Rendered.\nversion: '3.8'\nservices:\n  backend:\n    image: b\n"
            "  postgres:\n    image: p\n  proxy:\n    image: h\n")
    base = base_stack(text, ("backend",))
    assert base.startswith("# Rendered.\n")
    assert list(yaml.safe_load(base)["services"]) == ["postgres", "proxy"]


# --- argv added for the target ------------------------------------------------------------


def test_the_new_argv_options_for_image_ids_entrypoints_and_labels():
    assert swarm.stack_deploy("/s.yml", "app", resolve_image=False)[-3:] == [
        "--resolve-image", "never", "app"]
    assert swarm.stack_services("app") == [
        "docker", "service", "ls", "--filter", "label=com.docker.stack.namespace=app",
        "--format", "{{.Name}}"]
    argv = swarm.one_off("app-migrate-1", "sha256:" + "b" * 64, ["-m", "deploy"],
                         network="app_default", entrypoint="python3", resolve_image=False)
    assert argv[12:] == ["--entrypoint", "python3", "--no-resolve-image",
                         "sha256:" + "b" * 64, "-m", "deploy"]
    assert swarm.service_update_image("app_web", "sha256:" + "c" * 64, resolve_image=False,
                                      labels={"deploy.release": "r6"})[6:] == [
        "--no-resolve-image", "--label-add", "deploy.release=r6", "app_web"]


def test_logs_read_the_tasks_meant_to_run_and_those_that_failed():
    tasks = swarm.parse_tasks(capture("service-ps-updating.jsonl"))
    from deploy.swarm.views import logged_tasks

    chosen = logged_tasks(tasks)
    assert {t.current for t in chosen if t.desired != "running"} == {"failed"}
    assert len([t for t in chosen if t.current == "failed"]) == 2
    assert all(t.desired == "running" or t.current == "failed" for t in chosen)
    assert len(chosen) < len(tasks)  # the shut-down tasks of earlier releases are left out


def test_a_spec_the_deploy_did_not_change_is_judged_by_its_tasks_not_an_old_rollback():
    text = capture("service-inspect-rollback-completed.json")
    (service,) = swarm.parse_services(text)
    assert service.version > 0
    manager = FakeManager([text], capture("service-ps-completed.jsonl"))
    # unchanged since before the deploy: the old rollback_completed says nothing now
    assert watch.read(manager, service.name, unchanged_at=service.version).phase != \
        swarm.ROLLBACK_COMPLETED
    # changed (or not known): Swarm's own state stands
    assert watch.read(manager, service.name).phase == swarm.ROLLBACK_COMPLETED
