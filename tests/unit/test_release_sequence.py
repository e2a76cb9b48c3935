"""The deploy sequence's branches on a stand-in stack (no Docker, no database): each entry
point's steps, a failure before the switch (undone: new containers removed, `live` moved
back), a failure after it (nothing undone; the old release drains), and a signal at each
step. The e2e tests run the same sequence against a real Docker engine."""

from __future__ import annotations

import shlex
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from invoke import Result

from deploy.commands import haproxy as proxy
from deploy.commands.compose import Compose, ContainerState
from deploy.commands.project import parse_config, refusals
from deploy.errors import CheckFailed, ConfigError, DeployError
from deploy.machine import health
from deploy.output import Output
from deploy.release import sequence
from deploy.settings import load_settings
from tests.support.haproxy import captured

ROOT = Path(__file__).resolve().parents[2]
OLD_ID, NEW_ID, PROXY_ID, PG_ID = ("sha256:" + c * 64 for c in "abcd")
OLD_IP, NEW_IP = "172.22.0.2", "172.22.0.3"  # slot1 serves; slot2 is where the new one goes


def _before_prepare() -> str:
    """slot1 serving the old container, every other slot free (slot2 as slot3 is)."""
    lines = captured("state-old-ready-new-prepared.txt").splitlines()
    free = lines[4].split(" ")
    free[2:4] = ["2", "slot2"]
    return "\n".join([*lines[:3], " ".join(free), *lines[4:]]) + "\n"


def backend(id_: str, ip: str, release: str) -> ContainerState:
    return ContainerState(id_, f"app-backend-{id_}", "backend", "running", "healthy", 0, 0,
                          ip=ip, release=release, image_id=OLD_ID if release == "r1" else NEW_ID)


class FakeStack:
    """Answers the commands a deploy runs as a Docker engine and HAProxy would, and keeps
    what they change: the images by name, the containers, the routing."""

    def __init__(self, settings):
        self.settings = settings
        self.lines: list[str] = []
        self.out = Output(self.lines.append)
        self.stream = None
        self.c = SimpleNamespace(host="here", run=self._run_text)
        self.compose = Compose(("docker", "compose"), "v2", "compose.yml", "app")
        self.ran: list[list[str]] = []
        self.images = {"app-backend:live": OLD_ID, "app-backend:r1": OLD_ID,
                       "app-backend:r2": NEW_ID, "app-proxy:live": PROXY_ID,
                       "postgres:16": PG_ID}
        self.containers = [
            ContainerState("px", "app-proxy-1", "proxy", "running", "healthy", 0, 0,
                           image_id=PROXY_ID),
            ContainerState("pg", "app-postgres-1", "postgres", "running", "healthy", 0, 0,
                           image_id=PG_ID, config_hash="h1"),
            backend("old1", OLD_IP, "r1")]
        self.routing = _before_prepare()
        self.new_healthy = True
        self.db_hash = "h1"  # what `compose config --hash` says of the database service

    # --- what the deploy calls ---------------------------------------------------------

    def check_docker(self) -> None:
        pass

    project = parse_config("services:\n  postgres: {image: 'postgres:16'}\n"
                           "  backend: {image: 'app-backend:live', build: /app}\n"
                           "  proxy: {image: 'app-proxy:live'}\n", "app")

    def check_roles(self) -> None:
        s = self.settings
        refusals(self.project, "compose.yml", s.app_services, s.worker_services, s.db_service)

    def states(self) -> list[ContainerState]:
        return list(self.containers)

    def wait_healthy(self, timeout, services=(), *, new=None, answers=None):
        if new is None:
            return [s for s in self.containers if s.service in services]
        states = [s for s in self.containers if s.id in new]
        if not self.new_healthy:
            raise health.HealthTimeout(f"not healthy after {timeout:g}s: backend", states,
                                       states)
        if answers is not None:
            assert answers(states)
        return states

    def run(self, argv, check=True, what=None, **_):
        self.ran.append(list(argv))
        out, exited = self._answer(list(argv))
        if check and exited:
            raise DeployError(f"{what or argv[0]}: command failed with exit code {exited}")
        return Result(stdout=out, exited=exited)

    def _run_text(self, command, **kwargs):
        return self.run(shlex.split(command), check=False)

    # --- the engine and the proxy --------------------------------------------------------

    def _answer(self, argv: list[str]) -> tuple[str, int]:
        if argv[:2] == ["docker", "exec"] and proxy.API_SCRIPT in argv:
            return self._proxy(argv[argv.index(proxy.API_SCRIPT) + 2]), 0
        if argv[:4] == ["docker", "image", "inspect", "--format"]:
            ids = [self.images.get(ref) for ref in argv[5:]]
            if "deploy.release" in argv[4]:
                return ("r1\n", 0) if ids[0] else ("", 1)
            return ("\n".join(ids) + "\n", 0) if all(ids) else ("", 1)
        if argv[:3] == ["docker", "image", "tag"]:
            self.images[argv[4]] = self.images.get(argv[3], argv[3])
        elif argv[:3] == ["docker", "image", "rm"]:
            self.images.pop(argv[-1], None)
        elif argv[:2] == ["docker", "build"]:
            self.images[argv[argv.index("--tag") + 1]] = NEW_ID
        elif argv[:3] == ["docker", "rm", "--force"]:
            self.containers = [s for s in self.containers if s.id not in argv[4:]]
        elif argv[-1].startswith("--hash="):
            return f"{argv[-1][7:]} {self.db_hash}\n", 0
        elif "--scale" in argv:
            self.containers.append(backend("new1", NEW_IP, "r2"))
        return "", 0

    def _proxy(self, command: str) -> str:
        if command.startswith("show servers state"):
            return self.routing
        if command.startswith("show stat"):
            return captured("stat-flipped.txt")
        if "addr" in command:  # assign: the new slot is checked and up at once
            self.routing = captured("state-old-ready-new-prepared.txt")
        elif "state ready" in command:  # the flip
            self.routing = captured("state-flipped.txt")
        return ""

    @property
    def steps(self) -> list[str]:
        return [line[4:] for line in self.lines if line.startswith("==> ")]


@pytest.fixture
def stack(monkeypatch):
    settings = replace(load_settings(environ={"DATABASE_URL": "postgresql://h/d",
                                              "COMPOSE_PROJECT_NAME": "app",
                                              "POSTGRES_PASSWORD": "pw"},
                                     read_file=False, cwd=ROOT), summary_table_prefix="ai_")
    fake = FakeStack(settings)
    monkeypatch.setattr(sequence, "Stack", lambda c, settings, out: fake)
    monkeypatch.setattr(sequence.revision, "revision", lambda: SimpleNamespace(tag="r2"))
    monkeypatch.setattr(sequence, "migrate", lambda settings, wait, out: SimpleNamespace(
        applied=["021_a.sql"], total_applied=21))
    report = SimpleNamespace(expected=[{"table": "ai_x"}, {"table": "users"}])
    monkeypatch.setattr(sequence, "verify_tables",
                        lambda reachable, out: out.step("check-tables --expected",
                                                        lambda: report))
    return fake


def _undone(fake: FakeStack) -> bool:
    return "   the old release keeps serving; removing what this deploy started" in fake.lines


# --- each entry point's steps ----------------------------------------------------------------

BESIDE_OLD = ["clear_leftovers", "tag_live", "start_new", "wait_new"]
SWITCH = ["recheck", "switch", "drain_old"]


def names(steps) -> list[str]:
    return [step.__name__ for step in steps]


def test_each_entry_point_has_its_steps_in_one_order():
    assert names(sequence.LOCAL_BUILD) == ["check_docker", "check_roles", "build_and_base_up",
                                           "wait_base", "migrate_schema", *BESIDE_OLD,
                                           *SWITCH, "check_tables", "report"]
    assert names(sequence.LOCAL_NO_BUILD) == ["check_docker", "check_roles",
                                              "base_up_built_before",
                                              *names(sequence.LOCAL_BUILD)[3:]]
    assert names(sequence.HOST_PREPARE) == ["base_up_shipped", "wait_base", "migrate_schema",
                                            *BESIDE_OLD]
    assert names(sequence.HOST_PREPARE_SAME_BASE) == ["base_up_unless_ready",
                                                      *names(sequence.HOST_PREPARE)[1:]]
    assert names(sequence.HOST_SWITCH) == [*SWITCH, "check_tables", "report"]
    assert names(sequence.HOST_ROLLBACK) == ["base_up_unless_ready", "wait_base", *BESIDE_OLD,
                                             *SWITCH, "report"]


def test_a_local_deploy_runs_every_step_switches_and_reports(stack):
    summary = sequence.deploy_here(None, stack.settings, build=True)
    assert stack.steps == [
        "docker", "build app-backend:r2, postgres + proxy up (at once)",
        "wait-healthy (postgres, proxy)", "migrate (the old release keeps serving)",
        "tag live", "start new (1 beside 1 old)",
        "proxy: prepare (new slots checked, no traffic yet)", "wait-healthy (new)",
        "proxy: new slots up", "switch", "drain + stop old", "check-tables --expected"]
    assert "   switch: the point of no return: traffic moves from r1 to r2" in stack.lines
    assert "deploy: release r2 serving (app-backend:r2); was r1" in stack.lines
    assert "   stopped and removed: app-backend-old1" in stack.lines
    assert stack.lines[-2:] == ["deploy: 1 ai_ table(s) exist:", "   ai_x"]
    assert summary == {"applied": ["021_a.sql"], "tables": 2, "table_prefix": "ai_",
                       "prefixed_tables": ["ai_x"], "total": 21, "release": "r2"}
    assert stack.images["app-backend:live"] == NEW_ID
    assert [s.id for s in stack.containers] == ["px", "pg", "new1"]
    assert not _undone(stack)


def test_a_local_deploy_without_build_and_without_an_image_deploys_the_live_release(stack):
    del stack.images["app-backend:r2"]
    sequence.deploy_here(None, stack.settings, build=False)
    assert stack.steps[:3] == ["docker", "postgres + proxy up",
                               "wait-healthy (postgres, proxy)"]
    assert ("   --no-build: no image for this tree; deploying the live release r1 again"
            in stack.lines)
    assert "deploy: release r1 serving (app-backend:r1); was r1" in stack.lines


def test_a_host_is_prepared_then_switched_with_its_current_moved_right_after(stack):
    d = sequence.prepare_on_host(None, stack.settings, "r2", base_unchanged=True,
                                 database=lambda: nullcontext(stack.settings), out=None)
    assert stack.steps == ["migrate (the old release keeps serving)", "tag live",
                           "start new (1 beside 1 old)",
                           "proxy: prepare (new slots checked, no traffic yet)",
                           "wait-healthy (new)", "proxy: new slots up"]
    assert "   postgres and the proxy are up and healthy: only the backend changes" \
        in stack.lines
    assert d.undoable and stack.images["app-backend:live"] == NEW_ID
    d.ready_at = 0.0  # it waited for the hosts before it: its slots are checked again
    moved = []
    summary = sequence.switch_on_host(d, lambda: moved.append(len(stack.ran)))
    assert stack.steps[6:] == ["proxy: new slots still up", "switch", "drain + stop old",
                               "check-tables --expected"]
    flip = next(i for i, argv in enumerate(stack.ran) if "slot2 state ready;"
                in " ".join(argv))
    assert moved == [flip + 1]  # `current` moves right after the switch, before the drain
    assert summary["release"] == "r2" and not d.undoable


def test_a_host_whose_stack_config_changed_brings_postgres_and_the_proxy_up(stack):
    sequence.prepare_on_host(None, stack.settings, "r2", base_unchanged=False,
                             database=lambda: nullcontext(stack.settings), out=None)
    assert stack.steps[:3] == ["postgres + proxy up", "wait-healthy (postgres, proxy)",
                               "migrate (the old release keeps serving)"]


def test_a_rollback_neither_migrates_nor_checks_tables(stack):
    switched = []
    summary = sequence.rollback_on_host(None, stack.settings, "r1",
                                        on_switch=lambda: switched.append(1), out=None)
    assert stack.steps == ["tag live", "start new (1 beside 1 old)",
                           "proxy: prepare (new slots checked, no traffic yet)",
                           "wait-healthy (new)", "proxy: new slots up", "switch",
                           "drain + stop old"]
    assert switched == [1]
    assert summary["applied"] == [] and summary["tables"] == 0
    assert stack.images["app-backend:live"] == OLD_ID  # r1's image


# --- failures and signals ---------------------------------------------------------------------


def test_a_new_container_that_never_gets_healthy_is_removed_and_live_moved_back(stack):
    stack.new_healthy = False
    with pytest.raises(health.HealthTimeout, match="not healthy after 120s: backend"):
        sequence.deploy_here(None, stack.settings, build=True)
    assert any(line.startswith("<== wait-healthy (new) FAILED after ") for line in stack.lines)
    assert _undone(stack)
    assert "switch" not in stack.steps
    assert stack.images["app-backend:live"] == OLD_ID
    assert [s.id for s in stack.containers] == ["px", "pg", "old1"]
    assert ["docker", "rm", "--force", "--volumes", "new1"] in stack.ran
    assert any(argv[-1] == proxy.set_state(["slot2"], "maint") for argv in stack.ran)


def test_a_first_deploy_that_fails_before_the_switch_removes_the_live_tag(stack):
    del stack.images["app-backend:live"]
    stack.new_healthy = False
    with pytest.raises(health.HealthTimeout):
        sequence.deploy_here(None, stack.settings, build=True)
    assert "app-backend:live" not in stack.images
    assert ["docker", "image", "rm", "app-backend:live"] in stack.ran


def test_a_failure_after_the_switch_undoes_nothing_and_the_old_release_drained(
        stack, monkeypatch):
    def missing(reachable, out):
        raise CheckFailed("check-tables: 1 expected table(s) missing: ai_x")

    monkeypatch.setattr(sequence, "verify_tables", missing)
    with pytest.raises(CheckFailed, match="ai_x"):
        sequence.deploy_here(None, stack.settings, build=True)
    assert not _undone(stack)
    assert "<== drain + stop old done in" in " ".join(stack.lines)
    assert stack.images["app-backend:live"] == NEW_ID
    assert [s.id for s in stack.containers] == ["px", "pg", "new1"]


def test_a_prepared_release_whose_slots_stopped_passing_is_taken_back_before_the_switch(
        stack):
    d = sequence.prepare_on_host(None, stack.settings, "r2", base_unchanged=True,
                                 database=lambda: nullcontext(stack.settings), out=None)
    d.ready_at = 0.0
    stack.routing = captured("state-prepared-unchecked.txt")  # slot2 is not up there
    with pytest.raises(DeployError) as err:
        sequence.switch_on_host(d, lambda: pytest.fail("switched"))
    assert str(err.value) == (
        "proxy: the new container(s) stopped passing HAProxy's check while waiting for the "
        "switch: slot2 (172.22.0.3): maint, check result 0")
    assert _undone(stack) and stack.images["app-backend:live"] == OLD_ID
    d.undo()  # at most once: `staged` calls it again when its host never switched
    assert stack.lines.count("   the old release keeps serving; removing what this deploy "
                             "started") == 1


def _sigterm() -> DeployError:
    err = DeployError("migrate: interrupted (SIGTERM)")
    err.exit_code = 143
    return err


LOCAL = names(sequence.LOCAL_BUILD)
ARMED, SENT = LOCAL.index("tag_live"), LOCAL.index("switch")


@pytest.mark.parametrize("signal", [KeyboardInterrupt, _sigterm, lambda: DeployError("boom")],
                         ids=["SIGINT", "SIGTERM", "failure"])
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("index", range(len(LOCAL)), ids=LOCAL)
def test_a_signal_or_failure_at_any_step_undoes_exactly_until_the_switch_is_sent(
        stack, monkeypatch, index, when, signal):
    real = sequence.LOCAL_BUILD[index]

    def stopped(d):
        if when == "after":
            real(d)
        raise signal()

    steps = list(sequence.LOCAL_BUILD)
    steps[index] = stopped
    monkeypatch.setattr(sequence, "LOCAL_BUILD", tuple(steps))
    with pytest.raises((KeyboardInterrupt, DeployError)):
        sequence.deploy_here(None, stack.settings, build=True)
    armed = ARMED <= index < SENT if when == "after" else ARMED < index <= SENT
    assert _undone(stack) == armed
    switched = index > SENT or (index == SENT and when == "after")
    assert stack.images["app-backend:live"] == (NEW_ID if switched else OLD_ID)
    assert ("old1" in [s.id for s in stack.containers]) == (
        index < LOCAL.index("drain_old") or (index == LOCAL.index("drain_old")
                                             and when == "before"))
    if armed:
        assert "new1" not in [s.id for s in stack.containers]


def test_a_signal_inside_a_step_closes_it_as_interrupted_and_undoes(stack):
    def interrupted(timeout, services=(), *, new=None, answers=None):
        raise KeyboardInterrupt

    stack.wait_healthy = interrupted
    with pytest.raises(KeyboardInterrupt):
        sequence.deploy_here(None, stack.settings, build=True)
    assert any(line.startswith("<== wait-healthy (postgres, proxy) INTERRUPTED after ")
               for line in stack.lines)
    assert not _undone(stack)  # nothing was started yet: nothing to take back


def test_a_deploy_naming_a_service_the_compose_file_lacks_changes_nothing(stack):
    stack.settings = replace(stack.settings, app_services=("web",))
    with pytest.raises(ConfigError) as info:
        sequence.deploy_here(None, stack.settings, build=True)
    assert str(info.value) == ("APP_SERVICES: compose.yml has no service 'web' (its services: "
                               "backend, postgres, proxy)")
    assert stack.ran == []


@pytest.mark.parametrize(("change", "message"), [
    ({"app_services": ("backend", "admin")},
     "APP_SERVICES: a deploy switches the service 'backend' only (got backend, admin)"),
    ({"app_ports": {"backend": 8000}},
     "APP_PORT, HEALTH_PATH: a deploy's proxy checks backend at 8080 /health only"),
    ({"health_paths": {"backend": "/healthz"}},
     "APP_PORT, HEALTH_PATH: a deploy's proxy checks backend at 8080 /health only"),
    ({"worker_services": ("backend",)},
     "WORKER_SERVICES: a deploy does not replace workers yet; leave it empty"),
])
def test_roles_the_switch_cannot_serve_are_refused_before_any_change(stack, change, message):
    stack.settings = replace(stack.settings, **change)
    stack.project = parse_config("services:\n  backend: {build: /app}\n  admin: {build: /a}\n"
                                 "  postgres: {image: 'postgres:16'}\n", "app")
    with pytest.raises(ConfigError) as info:
        sequence.deploy_here(None, stack.settings, build=True)
    assert str(info.value) == message
    assert stack.ran == []


def test_with_db_service_empty_a_deploy_starts_and_waits_for_no_database_container(stack):
    stack.settings = replace(stack.settings, db_service="")
    sequence.deploy_here(None, stack.settings, build=True)
    assert stack.steps[2] == "wait-healthy (proxy)"
    ups = [argv for argv in stack.ran if "up" in argv]
    assert not any("postgres" in argv for argv in ups)
    assert "deploy: release r2 serving (app-backend:r2); was r1" in stack.lines


def test_the_database_service_is_the_one_db_service_names(stack):
    stack.settings = replace(stack.settings, db_service="db")
    stack.project = parse_config("services:\n  db: {image: 'postgres:16'}\n"
                                 "  backend: {image: 'app-backend:live', build: /app}\n", "app")
    for s in list(stack.containers):
        if s.service == "postgres":
            stack.containers[stack.containers.index(s)] = replace(s, service="db")
    sequence.deploy_here(None, stack.settings, build=True)
    assert stack.steps[2] == "wait-healthy (db, proxy)"
    ups = [argv for argv in stack.ran if "up" in argv]
    assert ups[0][-3:] == ["--no-deps", "db", "proxy"]


RECREATES = ("   postgres: {} changed: Compose recreates it now (the database restarts; the "
             "old release's connections drop)")


def test_a_deploy_says_nothing_of_the_database_when_its_definition_and_image_are_unchanged(
        stack):
    sequence.deploy_here(None, stack.settings, build=True)
    assert ["docker", "compose", "-f", "compose.yml", "-p", "app", "config",
            "--hash=postgres"] in stack.ran
    assert not any("recreates" in line for line in stack.lines)


def test_a_deploy_says_first_that_a_changed_database_definition_recreates_it(stack):
    stack.db_hash = "h2"
    sequence.deploy_here(None, stack.settings, build=True)
    assert RECREATES.format("its definition in the compose file") in stack.lines
    said = next(i for i, argv in enumerate(stack.ran) if argv[-1] == "--hash=postgres")
    up = next(i for i, argv in enumerate(stack.ran) if "up" in argv and "postgres" in argv)
    assert said < up


def test_a_deploy_says_first_that_a_new_database_image_recreates_it(stack):
    stack.images["postgres:16"] = "sha256:" + "9" * 64
    sequence.deploy_here(None, stack.settings, build=True)
    assert RECREATES.format("its image (postgres:16)") in stack.lines
