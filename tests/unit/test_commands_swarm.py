"""Swarm argv builders and parsers: exact argv, and real outputs of Docker 20.10 captured on
the three-node rig (tests/support/swarm-captures/README.md)."""

from pathlib import Path

import pytest

from deploy.commands import swarm
from deploy.errors import DeployError

CAPTURES = Path(__file__).resolve().parents[1] / "support" / "swarm-captures"


def capture(name: str) -> str:
    return (CAPTURES / name).read_text()


def service(state: str) -> swarm.Service:
    (found,) = swarm.parse_services(capture(f"service-inspect-{state}.json"))
    return found


# --- builders -----------------------------------------------------------------------------


def test_node_ls_prints_one_json_object_a_node():
    assert swarm.node_ls() == ["docker", "node", "ls", "--format", "{{json .}}"]


def test_node_addresses_names_each_node():
    assert swarm.node_addresses(["abc", "def"]) == [
        "docker", "node", "inspect", "--format",
        "{{.ID}} {{.Description.Hostname}} {{.Status.Addr}}", "abc", "def"]


def test_stack_deploy_prunes_and_passes_the_registry_login():
    assert swarm.stack_deploy("/srv/app/stack.yml", "app") == [
        "docker", "stack", "deploy", "--compose-file", "/srv/app/stack.yml",
        "--with-registry-auth", "--prune", "app"]


def test_one_off_runs_once_on_the_stack_network_with_env_and_command():
    argv = swarm.one_off("app-migrate-r7", "app-backend@sha256:" + "a" * 64,
                         ["python3", "-m", "deploy", "migrate"], network="app_default",
                         env={"MIGRATIONS_DIR": "/app/migrations"},
                         env_file="/tmp/deploy-env.x1", labels={"deploy.release": "r7"})
    assert argv == [
        "docker", "service", "create", "--detach", "--name", "app-migrate-r7",
        "--replicas", "1", "--restart-condition", "none", "--network", "app_default",
        "--env-file", "/tmp/deploy-env.x1", "--env", "MIGRATIONS_DIR=/app/migrations",
        "--label", "deploy.release=r7",
        "app-backend@sha256:" + "a" * 64, "python3", "-m", "deploy", "migrate"]


def test_service_ps_is_untruncated_json_and_can_keep_only_desired_running_tasks():
    assert swarm.service_ps("app_web") == [
        "docker", "service", "ps", "--no-trunc", "--format", "{{json .}}", "app_web"]
    assert swarm.service_ps("app_web", desired_running=True)[-3:] == [
        "--filter", "desired-state=running", "app_web"]


def test_task_status_reads_the_tasks_status_json():
    assert swarm.task_status("t1") == [
        "docker", "inspect", "--type", "task", "--format", "{{json .Status}}", "t1"]


def test_service_rm_logs_update_and_inspect_are_the_exact_argv():
    assert swarm.service_rm("a", "b") == ["docker", "service", "rm", "a", "b"]
    assert swarm.service_logs("app_web", tail=50, since="10m") == [
        "docker", "service", "logs", "--raw", "--no-task-ids", "--tail", "50",
        "--since", "10m", "app_web"]
    assert swarm.service_update_image("app_web", "reg.example.com/web:r8",
                                      registry_auth=True) == [
        "docker", "service", "update", "--image", "reg.example.com/web:r8", "--detach",
        "--with-registry-auth", "app_web"]
    assert swarm.service_inspect("app_web") == ["docker", "service", "inspect", "app_web"]


@pytest.mark.parametrize("call", [
    lambda: swarm.service_rm("--all"),
    lambda: swarm.service_rm(),
    lambda: swarm.service_logs("-f"),
    lambda: swarm.service_update_image("web", "--force"),
    lambda: swarm.one_off("job", "img", [], network="bad net"),
    lambda: swarm.stack_deploy("", "app"),
])
def test_an_option_or_a_bad_name_in_place_of_a_name_is_refused(call):
    with pytest.raises(ValueError):
        call()


# --- parsers on real output ---------------------------------------------------------------


def test_node_ls_parses_three_ready_managers():
    nodes = swarm.parse_nodes(capture("node-ls.jsonl"))
    assert [(n.hostname, n.ready, n.manager_status) for n in nodes] == [
        ("swarm-n1", True, "Leader"), ("swarm-n2", True, "Reachable"),
        ("swarm-n3", True, "Reachable")]
    assert [n.self_ for n in nodes] == [True, False, False]  # asked on n1
    assert nodes[0].id == "i238ezfh81i3786ycy535nq2j"


def test_a_stopped_engine_is_a_node_down_and_unreachable():
    nodes = swarm.parse_nodes(capture("node-ls-one-down.jsonl"))
    down = [n for n in nodes if not n.ready]
    assert [(n.hostname, n.status, n.manager_status) for n in down] == [
        ("swarm-n3", "Down", "Unreachable")]


def test_node_addresses_are_the_advertise_addresses():
    assert swarm.parse_node_addresses(capture("node-addrs.txt")) == {
        "swarm-n1": "10.214.1.11", "swarm-n2": "10.214.1.12", "swarm-n3": "10.214.1.13"}


def test_service_inspect_gives_image_previous_image_replicas_and_update_state():
    s = service("completed")
    assert (s.name, s.image, s.previous_image, s.replicas, s.update_state) == (
        "cap-web", "deploy-local/base:3888e5567394", "swarmtest/backend:v2", 6, "completed")
    assert service("no-update").update_state is None


def test_service_ps_parses_node_states_error_and_image():
    tasks = swarm.parse_tasks(capture("service-ps-updating.jsonl"))
    first = tasks[0]
    assert (first.name, first.node, first.desired, first.current, first.image) == (
        "cap-web.1", "swarm-n1", "running", "running", "swarmtest/backend:v2")
    assert first.id == "3pkq688rjzfxs1f46tntqcc7p"
    failed = [t for t in tasks if t.current == "failed"]
    assert failed and failed[0].error == "task: non-zero exit (3)"
    # start-first: the old task of a slot still runs (draining) while shutdown is desired.
    assert any(t.desired == "shutdown" and t.current == "running" for t in tasks)


def test_a_one_off_task_that_failed_gives_its_exit_code_and_error():
    (status,) = swarm.parse_task_status(capture("task-status-failed.json"))
    assert (status.state, status.exit_code, status.error, status.done) == (
        "failed", 3, "task: non-zero exit (3)", True)
    (ok,) = swarm.parse_task_status(capture("task-status-complete.json"))
    assert (ok.state, ok.exit_code, ok.done) == ("complete", 0, True)
    (task,) = swarm.parse_tasks(capture("service-ps-oneoff-complete.jsonl"))
    assert (task.current, task.desired) == ("complete", "shutdown")


def test_a_running_task_has_no_exit_code_yet():
    text = '{"State":"running","Message":"started","ContainerStatus":{"ExitCode":0}}\n'
    (status,) = swarm.parse_task_status(text)
    assert (status.exit_code, status.done) == (None, False)


def test_garbage_instead_of_json_names_the_command_and_line():
    with pytest.raises(DeployError, match=r"^docker service ps: line 2 is not JSON: 'oops'"):
        swarm.parse_tasks('{"ID": "x"}\noops\n')
    with pytest.raises(DeployError, match="^docker service inspect: its output is not JSON"):
        swarm.parse_services("Error: no such service: web")


# --- rollout_state ------------------------------------------------------------------------


def rollout(state: str, ps: str) -> swarm.Rollout:
    return swarm.rollout_state(service(state), swarm.parse_tasks(capture(ps)))


def test_an_update_in_progress_counts_the_replicas_on_the_new_image():
    r = rollout("updating", "service-ps-updating.jsonl")
    assert (r.phase, r.finished, r.failed) == ("updating", False, False)
    assert r.progress() == "cap-web 3/6 on the new release"


def test_a_completed_update_has_every_replica_on_the_new_image():
    r = rollout("completed", "service-ps-completed.jsonl")
    assert (r.phase, r.ok, r.finished, r.updated, r.total) == ("completed", True, True, 6, 6)


def test_completed_with_a_replica_still_missing_is_still_updating():
    tasks = [t for t in swarm.parse_tasks(capture("service-ps-completed.jsonl"))
             if t.name != "cap-web.6"]
    r = swarm.rollout_state(service("completed"), tasks)
    assert (r.phase, r.updated, r.ok) == ("updating", 5, False)


@pytest.mark.parametrize("state, phase", [
    ("rollback-started", "rollback_started"), ("rollback-completed", "rollback_completed"),
    ("paused", "paused")])
def test_a_rollback_or_a_pause_is_a_failed_rollout_with_the_task_errors(state, phase):
    r = rollout(state, "service-ps-updating.jsonl")
    assert (r.phase, r.failed, r.ok) == (phase, True, False)
    assert "cap-web.2 on swarm-n2: task: non-zero exit (3)" in r.errors
    assert r.message.startswith(("update rolled back", "rollback completed", "update paused"))


def test_a_rollback_still_running_is_not_finished_but_a_completed_one_is():
    assert not rollout("rollback-started", "service-ps-completed.jsonl").finished
    assert rollout("rollback-completed", "service-ps-completed.jsonl").finished


def test_without_update_status_the_tasks_decide():
    tasks = swarm.parse_tasks(capture("service-ps-completed.jsonl"))
    fresh = swarm.Service("cap-web", "deploy-local/base:3888e5567394", None, 6, None)
    assert swarm.rollout_state(fresh, tasks).phase == "completed"
    assert swarm.rollout_state(fresh, tasks[:3]).phase == "starting"
