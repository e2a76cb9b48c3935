"""The deploy sequence's branches on a stand-in stack (no Docker, no database): each entry
point's steps, a failure before the switch (undone: new containers removed, `live` moved
back), a failure after it (nothing undone; the old release drains), and a signal at each
step; with one app service (the sample's `backend`), and with two app services and a worker
(`web`, `admin`, `worker`). The e2e tests run the same sequence against a real Docker
engine."""

from __future__ import annotations

import itertools
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
from tests.support.fake_proxy import FakeProxy

ROOT = Path(__file__).resolve().parents[2]
OLD_ID, NEW_ID, PROXY_ID, PG_ID = ("sha256:" + c * 64 for c in "abcd")
RELEASES = {"r1": OLD_ID, "r2": NEW_ID}


def project_text(settings, proxy_service: bool = False) -> str:
    """The user's compose file as `compose config` gives it: the database, each app and
    worker service built from its own context (the worker shares the first app's build)."""
    lines = ["services:", "  postgres: {image: 'postgres:16'}"]
    apps = settings.app_services
    for name in apps:
        lines.append(f"  {name}: {{image: 'app-{name}:live', build: /src/{name}}}")
    for name in settings.worker_services:
        shared = apps[0] if apps else name
        lines.append(f"  {name}: {{image: 'app-{name}:live', build: /src/{shared}}}")
    if proxy_service:
        lines.append("  proxy: {image: 'haproxy:2.6'}")
    return "\n".join(lines) + "\n"


class FakeStack:
    """Answers the commands a deploy runs as a Docker engine and the tool's HAProxy would,
    and keeps what they change: the images by name, the containers, the routing."""

    def __init__(self, settings):
        self.settings = settings
        self.lines: list[str] = []
        self.out = Output(self.lines.append)
        self.stream = None
        self.c = SimpleNamespace(host="here", run=self._run_text)
        self.compose = Compose(("docker", "compose"), "v2", "compose.yml", "app")
        self.project = parse_config(project_text(settings), "app")
        self.ran: list[list[str]] = []
        self._ips = (f"172.22.0.{n}" for n in itertools.count(10))
        self.images = {"app-proxy:live": PROXY_ID, "postgres:16": PG_ID}
        self.containers = [
            ContainerState("px", "app-proxy-1", "proxy", "running", "healthy", 0, 0,
                           image_id=PROXY_ID, config_hash="hp"),
            ContainerState("pg", "app-postgres-1", "postgres", "running", "healthy", 0, 0,
                           image_id=PG_ID, config_hash="h1")]
        self.proxy = FakeProxy(list(settings.app_services), self._answers)
        for name in self.replaced:
            for release, id_ in RELEASES.items():
                self.images[f"app-{name}:{release}"] = id_
            self.images[f"app-{name}:live"] = OLD_ID
            old = self._container(f"old-{name}", name, OLD_ID)
            if name in settings.app_services:
                self.proxy.route(name, "slot1", old.ip, settings.app_ports[name])
        self.down: set[str] = set()  # containers that never get healthy (nor pass a check)
        self.db_hash = "h1"  # what `compose config --hash` says of the database service
        self.proxy_build = PROXY_ID  # the proxy image a build makes (its rendered config's)

    @property
    def replaced(self) -> tuple[str, ...]:
        return (*self.settings.app_services, *self.settings.worker_services)

    def _container(self, id_: str, service: str, image: str) -> ContainerState:
        release = next(r for r, i in RELEASES.items() if i == image)
        s = ContainerState(id_, f"app-{id_}", service, "running", "healthy", 0, 0,
                           ip=next(self._ips), release=release, image_id=image)
        self.containers.append(s)
        return s

    def _answers(self, backend: str, addr: str, port: int) -> bool:
        return port == self.settings.app_ports[backend] and any(
            s.service == backend and s.ip == addr and s.status == "running"
            and s.id not in self.down for s in self.containers)

    # --- what the deploy calls ---------------------------------------------------------

    def check_docker(self) -> None:
        pass

    def check_roles(self) -> None:
        s = self.settings
        refusals(self.project, "compose.yml", s.app_services, s.worker_services, s.db_service)

    def image_name(self, service: str) -> str:
        return self.project.image_name(service)

    def states(self) -> list[ContainerState]:
        return list(self.containers)

    def wait_healthy(self, timeout, services=(), *, new=None, answers=None):
        if new is None:
            return [s for s in self.containers if s.service in services]
        states = [s for s in self.containers if s.id in new]
        failing = [s for s in states if s.id in self.down]
        if failing:
            raise health.HealthTimeout(
                f"not healthy after {timeout:g}s: {', '.join(s.service for s in failing)}",
                states, failing)
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
            return self.proxy.call(argv[argv.index(proxy.API_SCRIPT) + 2]), 0
        if argv[:4] == ["docker", "image", "inspect", "--format"]:
            ids = [self.images.get(ref) for ref in argv[5:]]
            if "deploy.release" in argv[4]:
                found = [r for r, i in RELEASES.items() if i == ids[0]]
                return (found[0] + "\n", 0) if found else ("", 1)
            return ("\n".join(ids) + "\n", 0) if all(ids) else ("", 1)
        if argv[:3] == ["docker", "image", "tag"]:
            self.images[argv[4]] = self.images.get(argv[3], argv[3])
        elif argv[:3] == ["docker", "image", "rm"]:
            self.images.pop(argv[-1], None)
        elif argv[:2] == ["docker", "build"]:
            for i, arg in enumerate(argv[:-1]):
                if arg == "--tag":
                    ref = argv[i + 1]
                    self.images[ref] = RELEASES.get(ref.rpartition(":")[2], self.proxy_build)
        elif argv[:3] == ["docker", "rm", "--force"]:
            self.containers = [s for s in self.containers if s.id not in argv[4:]]
        elif argv[:2] == ["docker", "stop"]:
            self.containers = [replace(s, status="exited") if s.id in argv else s
                               for s in self.containers]
        elif argv[-1].startswith("--hash="):  # the database's, the proxy's "hp"
            return "".join(f"{name} {'hp' if name == 'proxy' else self.db_hash}\n"
                           for name in argv[-1][7:].split(",")), 0
        elif "--scale" in argv:
            self._scale(argv)
        return "", 0

    def _scale(self, argv: list[str]) -> None:
        for i, arg in enumerate(argv[:-1]):
            if arg == "--scale":
                name, _, count = argv[i + 1].partition("=")
                have = [s for s in self.containers if s.service == name]
                for n in range(int(count) - len(have)):
                    self._container(f"new-{name}" + (str(n + 1) if n else ""), name,
                                    self.images[f"app-{name}:live"])

    # --- what a test looks at ------------------------------------------------------------

    @property
    def steps(self) -> list[str]:
        return [line[4:] for line in self.lines if line.startswith("==> ")]

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.containers]

    def ip(self, id_: str) -> str:
        return next(s.ip for s in self.containers if s.id == id_)

    def api_index(self, line: str) -> int:
        """Where the API call with exactly this command line is in ``ran``."""
        return next(i for i, argv in enumerate(self.ran)
                    if argv[:2] == ["docker", "exec"] and line in argv)


def _settings(**environ):
    return replace(load_settings(environ={"DATABASE_URL": "postgresql://h/d",
                                          "COMPOSE_PROJECT_NAME": "app",
                                          "POSTGRES_PASSWORD": "pw", **environ},
                                 read_file=False, cwd=ROOT), summary_table_prefix="ai_")


def _fake(monkeypatch, settings) -> FakeStack:
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


@pytest.fixture
def stack(monkeypatch):
    """The sample's roles: one app service, `backend`, no worker."""
    return _fake(monkeypatch, _settings())


@pytest.fixture
def multi(monkeypatch):
    """Two app services on their own ports and health paths, and a worker."""
    return _fake(monkeypatch, _settings(
        APP_SERVICES="web,admin", WORKER_SERVICES="worker", APP_PORT="web:8000,admin:9000",
        HEALTH_PATH="web:/healthz,admin:/ping", PROXY_PUBLISH="web=8080,admin=8081"))


def _undone(fake: FakeStack) -> bool:
    return "   the old release keeps serving; removing what this deploy started" in fake.lines


def _prepare_host(fake: FakeStack):
    return sequence.prepare_on_host(None, fake.settings, "r2", base_unchanged=True,
                                    database=lambda: nullcontext(fake.settings), out=None)



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
    # A host drains from the load balancer's view for its switch and the old slots' drain.
    assert names(sequence.HOST_SWITCH) == ["recheck", "host_draining", "switch", "drain_old",
                                           "host_serving", "check_tables", "report"]
    # A rollback's host drains from the load balancer's view the same way.
    assert names(sequence.HOST_ROLLBACK) == ["base_up_unless_ready", "wait_base", *BESIDE_OLD,
                                             "recheck", "host_draining", "switch",
                                             "drain_old", "host_serving", "report"]


def test_a_local_deploy_runs_every_step_switches_and_reports(stack):
    old_ip = stack.ip("old-backend")
    summary = sequence.deploy_here(None, stack.settings, build=True)
    assert stack.steps == [
        "docker", "build app-backend:r2, postgres + proxy up (at once)",
        "wait-healthy (postgres, proxy)", "migrate (the old release keeps serving)",
        "tag live", "start new (backend 1 beside 1)",
        "proxy: prepare (new slots checked, no traffic yet)", "wait-healthy (new)",
        "proxy: new slots up", "switch", "drain + stop old", "check-tables --expected"]
    assert "   switch: the point of no return: traffic moves from r1 to r2" in stack.lines
    assert "   old slots drained in 0.0 s: backend/slot1" in stack.lines
    assert "deploy: release r2 serving (app-backend:r2); was r1" in stack.lines
    assert "   stopped and removed: app-old-backend" in stack.lines
    assert stack.lines[-2:] == ["deploy: 1 ai_ table(s) exist:", "   ai_x"]
    assert summary == {"applied": ["021_a.sql"], "tables": 2, "table_prefix": "ai_",
                       "prefixed_tables": ["ai_x"], "total": 21, "release": "r2"}
    assert stack.images["app-backend:live"] == NEW_ID
    assert stack.ids == ["px", "pg", "new-backend"]
    # The proxy: the new container in slot2 at APP_PORT, the old slot in maintenance.
    assert stack.proxy.routed("backend") == [stack.ip("new-backend")]
    assert stack.proxy.slot("backend", "slot2").port == 8080
    assert (stack.proxy.slot("backend", "slot1").addr, stack.proxy.slot(
        "backend", "slot1").state) == (old_ip, "maint")
    assert ["docker", "stop", "--time", "35", "old-backend"] in stack.ran
    assert stack.proxy.serving and not _undone(stack)


def test_a_local_deploy_without_build_and_without_an_image_deploys_the_live_release(stack):
    del stack.images["app-backend:r2"]
    sequence.deploy_here(None, stack.settings, build=False)
    assert stack.steps[:3] == ["docker", "postgres + proxy up",
                               "wait-healthy (postgres, proxy)"]
    assert ("   --no-build: no image for this tree; deploying the live release r1 again"
            in stack.lines)
    assert "deploy: release r1 serving (app-backend:r1); was r1" in stack.lines
    assert not any(argv[:2] == ["docker", "build"] for argv in stack.ran)


def test_a_host_is_prepared_then_switched_with_its_current_moved_right_after(stack):
    d = _prepare_host(stack)
    assert stack.steps == ["migrate (the old release keeps serving)",
                           "tag live", "start new (backend 1 beside 1)",
                           "proxy: prepare (new slots checked, no traffic yet)",
                           "wait-healthy (new)", "proxy: new slots up"]
    assert "   postgres + proxy: up and healthy; only the app and workers change" \
        in stack.lines
    assert d.undoable and stack.images["app-backend:live"] == NEW_ID
    d.ready_at = 0.0  # it waited for the hosts before it: its slots are checked again
    moved = []
    summary = sequence.switch_on_host(d, lambda: moved.append(len(stack.ran)))
    assert stack.steps[6:] == ["proxy: new slots still up",
                               "proxy: host draining (load balancer check 503)", "switch",
                               "drain + stop old",
                               "proxy: host serving (load balancer check 200)",
                               "check-tables --expected"]
    flip = stack.api_index("set server backend/slot2 state ready; "
                           "set server backend/slot1 state drain")
    assert moved == [flip + 1]  # `current` moves right after the switch, before the drain
    assert summary["release"] == "r2" and not d.undoable and stack.proxy.serving


def test_a_host_whose_stack_config_changed_brings_postgres_and_the_proxy_up(stack):
    sequence.prepare_on_host(None, stack.settings, "r2", base_unchanged=False,
                             database=lambda: nullcontext(stack.settings), out=None)
    assert stack.steps[:3] == ["postgres + proxy up", "wait-healthy (postgres, proxy)",
                               "migrate (the old release keeps serving)"]


def test_a_rollback_neither_migrates_nor_checks_tables(stack):
    switched = []
    summary = sequence.rollback_on_host(None, stack.settings, "r1",
                                        on_switch=lambda: switched.append(1), out=None)
    assert stack.steps == ["tag live", "start new (backend 1 beside 1)",
                           "proxy: prepare (new slots checked, no traffic yet)",
                           "wait-healthy (new)", "proxy: new slots up",
                           "proxy: host draining (load balancer check 503)", "switch",
                           "drain + stop old", "proxy: host serving (load balancer check 200)"]
    assert switched == [1]
    assert summary["applied"] == [] and summary["tables"] == 0
    assert stack.images["app-backend:live"] == OLD_ID  # r1's image
    assert [s.release for s in stack.containers if s.service == "backend"] == ["r1"]


# --- several app services and a worker ---------------------------------------------------------


def test_two_app_services_are_switched_in_one_api_call_each_on_its_own_port(multi):
    old = {a: multi.ip(f"old-{a}") for a in ("web", "admin")}
    sequence.deploy_here(None, multi.settings, build=True)
    new = {a: multi.ip(f"new-{a}") for a in ("web", "admin")}
    flips = [line for line in multi.proxy.calls if "state ready" in line]
    assert flips == ["set server web/slot2 state ready; set server admin/slot2 state ready; "
                     "set server web/slot1 state drain; set server admin/slot1 state drain"]
    assert multi.proxy.calls[multi.proxy.calls.index(flips[0]) - 1:][:1] == [
        proxy.show_servers_state()]  # the check that every new slot is up, then the flip
    assert [line for line in multi.proxy.calls if " addr " in line] == [
        f"set server web/slot2 addr {new['web']} port 8000; set server web/slot2 state drain; "
        "set server web/slot2 health down; "
        f"set server admin/slot2 addr {new['admin']} port 9000; "
        "set server admin/slot2 state drain; set server admin/slot2 health down"]
    for a in ("web", "admin"):
        assert multi.proxy.routed(a) == [new[a]]
        assert multi.proxy.slot(a, "slot1").addr == old[a]
        assert multi.proxy.slot(a, "slot1").state == "maint"
    assert "   old slots drained in 0.0 s: web/slot1, admin/slot1" in multi.lines
    assert ("deploy: release r2 serving (app-web:r2, app-admin:r2, app-worker:r2); was r1"
            in multi.lines)
    assert multi.ids == ["px", "pg", "new-web", "new-admin", "new-worker"]
    assert all(multi.images[f"app-{s}:live"] == NEW_ID for s in ("web", "admin", "worker"))


def test_the_shared_build_of_an_app_and_a_worker_runs_once_with_both_tags(multi):
    sequence.deploy_here(None, multi.settings, build=True)
    builds = [argv for argv in multi.ran if argv[:2] == ["docker", "build"]
              and "deploy.release=r2" in argv]
    assert [[a for i, a in enumerate(argv) if argv[i - 1] == "--tag"] for argv in builds] == [
        ["app-web:r2", "app-worker:r2"], ["app-admin:r2"]]
    assert "   built app-web:r2, app-worker:r2, app-admin:r2" in multi.lines


def test_a_worker_starts_beside_the_old_one_before_the_switch_and_the_old_is_stopped_after(
        multi):
    sequence.deploy_here(None, multi.settings, build=True)
    scale = next(i for i, argv in enumerate(multi.ran) if "--scale" in argv)
    assert multi.ran[scale][-9:] == ["--scale", "web=2", "--scale", "admin=2",
                                     "--scale", "worker=2", "web", "admin", "worker"]
    assert "start new (web 1 beside 1, admin 1 beside 1, worker 1 beside 1)" in multi.steps
    steps = multi.steps
    assert steps.index("wait-healthy (new worker)") < steps.index("switch")
    flip = multi.api_index(next(line for line in multi.proxy.calls if "state ready" in line))
    # Its own stop signal and grace period (stop_grace_period): `docker stop` without --time,
    # after the switch; the app services' old containers get the drain's timeout.
    stop_worker = multi.ran.index(["docker", "stop", "old-worker"])
    stop_apps = multi.ran.index(["docker", "stop", "--time", "35", "old-web", "old-admin"])
    assert scale < flip < stop_apps and flip < stop_worker
    assert not any(argv[:2] == ["docker", "stop"] and "old-worker" in argv and "--time" in argv
                   for argv in multi.ran)
    assert multi.ran[stop_worker + 1] == ["docker", "rm", "--force", "--volumes", "old-worker"]
    assert ("   stopped and removed: app-old-web, app-old-admin, app-old-worker"
            in multi.lines)


@pytest.mark.parametrize("broken", ["admin", "worker"])
def test_a_failure_before_the_switch_removes_new_app_and_worker_containers_and_every_live_tag(
        multi, broken):
    multi.down = {f"new-{broken}"}
    with pytest.raises(health.HealthTimeout, match=f"^not healthy after 120s: {broken}$"):
        sequence.deploy_here(None, multi.settings, build=True)
    assert _undone(multi) and "switch" not in multi.steps
    assert multi.ids == ["px", "pg", "old-web", "old-admin", "old-worker"]
    assert ["docker", "rm", "--force", "--volumes", "new-admin", "new-web",
            "new-worker"] in multi.ran
    assert all(multi.images[f"app-{s}:live"] == OLD_ID for s in ("web", "admin", "worker"))
    # The new slots of both services back in maintenance in one call; the old ones serve on.
    assert ("set server web/slot2 state maint; set server admin/slot2 state maint"
            in multi.proxy.calls)
    for a in ("web", "admin"):
        assert multi.proxy.routed(a) == [multi.ip(f"old-{a}")]
        assert multi.proxy.slot(a, "slot2").state == "maint"
    assert not any(argv[:2] == ["docker", "stop"] for argv in multi.ran)


def test_a_first_deploy_of_several_services_removes_every_live_tag_it_made(multi):
    for s in ("web", "admin", "worker"):
        del multi.images[f"app-{s}:live"]
    multi.images["app-web:live"] = OLD_ID  # one service had been deployed before
    multi.down = {"new-worker"}
    with pytest.raises(health.HealthTimeout):
        sequence.deploy_here(None, multi.settings, build=True)
    assert multi.images["app-web:live"] == OLD_ID
    assert "app-admin:live" not in multi.images and "app-worker:live" not in multi.images
    assert ["docker", "image", "rm", "app-admin:live"] in multi.ran


def test_a_host_drains_for_the_load_balancer_before_the_flip_and_serves_after_the_drain(multi):
    d = _prepare_host(multi)
    assert multi.proxy.serving
    sequence.switch_on_host(d, lambda: None)
    calls = multi.proxy.calls
    draining = calls.index(proxy.host_state(False))
    flip = next(i for i, line in enumerate(calls) if "state ready" in line)
    drained = calls.index("set server web/slot1 state maint; set server admin/slot1 state maint")
    serving = calls.index(proxy.host_state(True))
    assert draining < flip < drained < serving == len(calls) - 1
    # Saved with the routing, so a proxy restarted meanwhile keeps answering 503.
    assert [*multi.ran[multi.api_index(proxy.host_state(False))][-2:]] == [
        proxy.host_state(False), proxy.STATE_FILE]
    stop = multi.ran.index(["docker", "stop", "--time", "35", "old-web", "old-admin"])
    assert stop < multi.api_index(proxy.host_state(True))  # after the old ones are gone
    assert multi.proxy.serving


def test_a_host_whose_switch_fails_after_it_drained_serves_again_and_undoes_nothing(multi):
    d = _prepare_host(multi)
    real = multi.proxy.call

    def flip_refused(line):
        return "No such server.\n" if "web/slot2 state ready" in line else real(line)

    multi.proxy.call = flip_refused
    with pytest.raises(DeployError, match=r"^proxy: switch: HAProxy answered: No such server"):
        sequence.switch_on_host(d, lambda: pytest.fail("switched"))
    assert multi.proxy.calls[-1] == proxy.host_state(True) and multi.proxy.serving
    assert not _undone(multi)  # the switch command was sent: nothing is taken back
    assert "   could not set the load balancer check back to 200" not in " ".join(multi.lines)


HOST = names(sequence.HOST_SWITCH)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("index", range(len(HOST)), ids=HOST)
def test_a_host_is_serving_again_whatever_step_of_its_switch_fails(multi, monkeypatch, index,
                                                                   when):
    d = _prepare_host(multi)
    real = sequence.HOST_SWITCH[index]

    def stopped(d):
        if when == "after":
            real(d)
        raise KeyboardInterrupt

    steps = list(sequence.HOST_SWITCH)
    steps[index] = stopped
    monkeypatch.setattr(sequence, "HOST_SWITCH", tuple(steps))
    with pytest.raises(KeyboardInterrupt):
        sequence.switch_on_host(d, lambda: None)
    assert multi.proxy.serving
    drained = HOST.index("host_draining") < index or (
        HOST.index("host_draining") == index and when == "after")
    assert (proxy.host_state(False) in multi.proxy.calls) == drained
    # Taken back only before the switch is sent: then the old release serves on.
    sent = index > HOST.index("switch") or (index == HOST.index("switch") and when == "after")
    assert _undone(multi) == (not sent)
    assert multi.images["app-web:live"] == (NEW_ID if sent else OLD_ID)


def test_a_host_without_app_services_never_touches_the_load_balancer_check(monkeypatch):
    fake = _fake(monkeypatch, _settings(APP_SERVICES="", WORKER_SERVICES="worker"))
    d = _prepare_host(fake)
    sequence.switch_on_host(d, lambda: None)
    assert fake.proxy.calls == []
    assert ["docker", "stop", "old-worker"] in fake.ran
    assert fake.ids[-1] == "new-worker"


def test_a_host_that_cannot_serve_again_says_so_and_keeps_the_first_error(multi):
    d = _prepare_host(multi)
    real = multi.proxy.call

    def refused(line):
        refuse = "web/slot2 state ready" in line or line == proxy.host_state(True)
        return "No such server.\n" if refuse else real(line)

    multi.proxy.call = refused
    with pytest.raises(DeployError, match=r"^proxy: switch: HAProxy answered: No such server"):
        sequence.switch_on_host(d, lambda: None)
    assert ("   could not set the load balancer check back to 200: proxy: host serving: "
            "HAProxy answered: No such server.") in multi.lines
    assert not multi.proxy.serving


# --- failures and signals ---------------------------------------------------------------------


def test_a_new_container_that_never_gets_healthy_is_removed_and_live_moved_back(stack):
    stack.down = {"new-backend"}
    with pytest.raises(health.HealthTimeout, match="^not healthy after 120s: backend$"):
        sequence.deploy_here(None, stack.settings, build=True)
    assert any(line.startswith("<== wait-healthy (new) FAILED after ")
               for line in stack.lines)
    assert _undone(stack)
    assert "switch" not in stack.steps
    assert stack.images["app-backend:live"] == OLD_ID
    assert stack.ids == ["px", "pg", "old-backend"]
    assert ["docker", "rm", "--force", "--volumes", "new-backend"] in stack.ran
    assert proxy.set_state("backend", ["slot2"], "maint") in stack.proxy.calls
    assert stack.proxy.routed("backend") == [stack.ip("old-backend")]


def test_a_first_deploy_that_fails_before_the_switch_removes_the_live_tag(stack):
    del stack.images["app-backend:live"]
    stack.down = {"new-backend"}
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
    assert stack.ids == ["px", "pg", "new-backend"]
    assert stack.proxy.routed("backend") == [stack.ip("new-backend")]


def test_a_prepared_release_whose_slots_stopped_passing_is_taken_back_before_the_switch(
        multi):
    d = _prepare_host(multi)
    d.ready_at = 0.0
    new_admin = multi.ip("new-admin")
    multi.down = {"new-admin"}  # its slot stops passing HAProxy's check
    with pytest.raises(DeployError) as err:
        sequence.switch_on_host(d, lambda: pytest.fail("switched"))
    assert str(err.value) == (
        "proxy: the new container(s) stopped passing HAProxy's check while waiting for the "
        f"switch: admin/slot2 ({new_admin}): drain DOWN, check result 0")
    assert _undone(multi) and multi.images["app-admin:live"] == OLD_ID
    assert proxy.host_state(False) not in multi.proxy.calls  # never drained for it
    d.undo()  # at most once: `staged` calls it again when its host never switched
    assert multi.lines.count("   the old release keeps serving; removing what this deploy "
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
    assert ("old-backend" in stack.ids) == (
        index < LOCAL.index("drain_old") or (index == LOCAL.index("drain_old")
                                             and when == "before"))
    if armed:
        assert "new-backend" not in stack.ids
    routed = stack.proxy.routed("backend")
    assert routed == [stack.ip("new-backend" if switched else "old-backend")]


def test_a_signal_inside_a_step_closes_it_as_interrupted_and_undoes(stack):
    def interrupted(timeout, services=(), *, new=None, answers=None):
        raise KeyboardInterrupt

    stack.wait_healthy = interrupted
    with pytest.raises(KeyboardInterrupt):
        sequence.deploy_here(None, stack.settings, build=True)
    assert any(line.startswith("<== wait-healthy (postgres, proxy) INTERRUPTED after ")
               for line in stack.lines)
    assert not _undone(stack)  # nothing was started yet: nothing to take back


# --- refusals and the base services ----------------------------------------------------------


def test_a_deploy_naming_a_service_the_compose_file_lacks_changes_nothing(stack):
    stack.settings = replace(stack.settings, app_services=("web",))
    with pytest.raises(ConfigError) as info:
        sequence.deploy_here(None, stack.settings, build=True)
    assert str(info.value) == ("APP_SERVICES: compose.yml has no service 'web' (its services: "
                               "backend, postgres)")
    assert stack.ran == []


@pytest.mark.parametrize(("text", "message"), [
    ("  backend: {build: /app}\n  proxy: {image: 'haproxy:2.6'}\n",
     "COMPOSE_FILE: compose.yml has a service named 'proxy'; the tool runs its own proxy "
     "under that name in front of APP_SERVICES: rename yours, or drop it if it only fronted "
     "the app (PROXY_PUBLISH says where the tool's proxy publishes)"),
    ("  backend: {image: 'app-backend:live'}\n",
     "APP_SERVICES: service 'backend' in compose.yml has no `build:` section; a deploy "
     "builds each app service's image by release"),
    ("  backend: {build: /app, ports: ['8080:8080']}\n",
     "APP_SERVICES: service 'backend' in compose.yml publishes the fixed host port 8080:8080; "
     "a deploy runs two of its containers side by side: drop its `ports:`; the proxy "
     "publishes it at PROXY_PUBLISH"),
])
def test_a_compose_file_the_switch_cannot_serve_is_refused_before_any_change(stack, text,
                                                                            message):
    stack.project = parse_config("services:\n  postgres: {image: 'postgres:16'}\n" + text,
                                 "app")
    with pytest.raises(ConfigError) as info:
        sequence.deploy_here(None, stack.settings, build=True)
    assert str(info.value) == message
    assert info.value.exit_code == 2
    assert stack.ran == []


def test_with_db_service_empty_a_deploy_starts_and_waits_for_no_database_container(stack):
    # DATABASE_URL names an external database: the compose file has no database service.
    stack.settings = replace(stack.settings, db_service="")
    stack.project = parse_config("services:\n  backend: {image: 'app-backend:live', "
                                 "build: /app}\n", "app")
    stack.containers = [s for s in stack.containers if s.service != "postgres"]
    sequence.deploy_here(None, stack.settings, build=True)
    assert stack.steps[1:3] == ["build app-backend:r2, proxy up (at once)",
                                "wait-healthy (proxy)"]
    ups = [argv for argv in stack.ran if "up" in argv]
    assert not any("postgres" in argv for argv in ups)
    assert not any(argv[-1].startswith("--hash=") for argv in stack.ran)
    assert "deploy: release r2 serving (app-backend:r2); was r1" in stack.lines


def test_the_database_service_is_the_one_db_service_names(stack):
    stack.settings = replace(stack.settings, db_service="db")
    stack.project = parse_config("services:\n  db: {image: 'postgres:16'}\n"
                                 "  backend: {image: 'app-backend:live', build: /app}\n", "app")
    for s in list(stack.containers):
        if s.service == "postgres":
            stack.containers[stack.containers.index(s)] = replace(s, service="db")
    stack.proxy_build = "sha256:" + "e" * 64  # rendered from another config: recreated
    sequence.deploy_here(None, stack.settings, build=True)
    assert stack.steps[2] == "wait-healthy (db, proxy)"
    ups = [argv for argv in stack.ran if "up" in argv]
    assert ups[0][-3:] == ["--no-deps", "db", "proxy"]
    assert ("   the proxy's image changed (its rendered haproxy.cfg or PROXY_IMAGE): recreating "
            "it, which closes its open connections once") in stack.lines
    assert ["docker", "compose", "-f", "compose.yml", "-p", "app", "config",
            "--hash=db,proxy"] in stack.ran


RECREATES = ("   postgres: {} changed: Compose recreates it now (the database restarts; the "
             "old release's connections drop)")


def test_a_deploy_says_nothing_of_the_database_when_its_definition_and_image_are_unchanged(
        stack):
    sequence.deploy_here(None, stack.settings, build=True)
    assert ["docker", "compose", "-f", "compose.yml", "-p", "app", "config",
            "--hash=postgres"] in stack.ran
    assert not any("recreates" in line for line in stack.lines)


def test_a_deploy_runs_no_compose_up_when_the_base_services_run_as_defined(stack):
    sequence.deploy_here(None, stack.settings, build=True)
    assert "   postgres: running as the compose file defines them" in stack.lines
    assert not [argv for argv in stack.ran if "up" in argv and "postgres" in argv]


@pytest.mark.parametrize("change", ["stopped", "no-hash", "other-image"])
def test_compose_up_runs_when_a_base_service_is_not_as_defined(stack, change):
    pg = next(s for s in stack.containers if s.service == "postgres")
    stack.containers.remove(pg)
    stack.containers.append({"stopped": replace(pg, status="exited"),
                             "no-hash": replace(pg, config_hash=""),
                             "other-image": replace(pg, image_id="sha256:" + "8" * 64)}[change])
    sequence.deploy_here(None, stack.settings, build=True)
    ups = [argv for argv in stack.ran if "up" in argv and "postgres" in argv]
    assert ups and ups[0][-2:] == ["--no-deps", "postgres"]
    assert "   postgres: running as the compose file defines them" not in stack.lines
    said = [line for line in stack.lines if "recreates it now" in line]
    assert said == {"stopped": [], "no-hash": [],  # unknown: not said to change
                    "other-image": [RECREATES.format("its image (postgres:16)")]}[change]


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
