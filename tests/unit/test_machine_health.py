"""wait_until_healthy on scripted probes and a fake clock: no Docker, no real time."""

import pytest

from deploy.commands.compose import ContainerState
from deploy.errors import DeployError, DeployTimeout
from deploy.machine.health import HealthTimeout, ServiceFailed, describe_failure, wait_until_healthy


def state(service, status="running", health=None, exit_code=0, restarts=0, log=(), **kw):
    return ContainerState(
        id=kw.pop("id", f"id-{service}"),
        name=kw.pop("name", f"app-{service}-1"),
        service=service,
        status=status,
        health=health,
        exit_code=exit_code,
        restart_count=restarts,
        health_log=tuple(log),
        **kw,
    )


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(*rounds):
    """A probe answering each round in turn, then repeating the last one."""
    rounds = list(rounds)
    calls = []

    def probe():
        calls.append(1)
        return rounds[min(len(calls), len(rounds)) - 1]

    probe.calls = calls
    return probe


def wait(probe, clock, timeout=120, **kw):
    return wait_until_healthy(probe, timeout=timeout, clock=clock, sleep=clock.sleep, **kw)


def test_healthy_and_running_containers_are_done_once_healthchecks_pass():
    clock = FakeClock()
    starting = [state("postgres", health="starting"), state("backend", health="starting")]
    half = [state("postgres", health="healthy"), state("backend", health="starting")]
    done = [state("postgres", health="healthy"), state("backend", health="healthy"),
            state("worker")]  # fmt: skip
    probe = scripted(starting, half, done)
    assert wait(probe, clock) == done
    assert len(probe.calls) == 3
    assert clock.sleeps == [0.25, 0.25]


def test_polling_is_never_slower_than_a_quarter_second():
    clock = FakeClock()
    probe = scripted([state("postgres", health="starting")], [state("postgres", health="healthy")])
    wait(probe, clock, interval=5)
    assert clock.sleeps == [0.25]


def test_the_probe_time_counts_toward_the_interval():
    clock = FakeClock()
    rounds = iter([[state("db", health="starting")], [state("db", health="healthy")]])

    def slow_probe():
        clock.now += 0.1  # `docker ps` + `docker inspect` take time too
        return next(rounds)

    wait(slow_probe, clock)
    assert clock.sleeps == [pytest.approx(0.15)]


def test_an_exited_container_fails_early_without_waiting_out_the_timeout():
    clock = FakeClock()
    start = clock.now
    probe = scripted(
        [state("postgres", health="starting"), state("backend", health="starting")],
        [state("postgres", health="healthy"), state("backend", "exited", exit_code=3)],
    )
    with pytest.raises(ServiceFailed) as err:
        wait(probe, clock, timeout=120)
    assert clock.now - start < 1  # far less than 120 s
    assert str(err.value) == "service failed: backend: exited with exit code 3"
    assert err.value.exit_code == 1
    assert isinstance(err.value, DeployError)
    assert [s.service for s in err.value.failing] == ["backend"]
    assert [s.service for s in err.value.states] == ["postgres", "backend"]


def test_a_restarting_container_is_a_restart_loop():
    clock = FakeClock()
    probe = scripted([state("backend", "restarting", exit_code=1, restarts=1)])
    with pytest.raises(
        ServiceFailed, match=r"backend: restarting \(restart-looping, exit code 1\)"
    ):
        wait(probe, clock)
    assert clock.sleeps == []


def test_a_restart_count_rising_during_the_wait_is_a_restart_loop():
    clock = FakeClock()
    probe = scripted(
        [state("backend", health="starting", restarts=0)],
        [state("backend", health="starting", restarts=1)],  # crashed and was brought back
    )
    with pytest.raises(ServiceFailed, match=r"backend: restarted 1 time\(s\) while waiting"):
        wait(probe, clock)
    assert clock.now - 1000.0 < 1


def test_a_fresh_container_that_restarted_before_the_first_poll_has_failed():
    clock = FakeClock()
    probe = scripted([state("backend", health="starting", restarts=1)])
    with pytest.raises(ServiceFailed, match=r"backend: restarted 1 time\(s\) while waiting"):
        wait(probe, clock, fresh=True)
    # Not fresh: a restart before the wait began is history, not this wait's failure.
    clock = FakeClock()
    probe = scripted([state("backend", health="starting", restarts=1)],
                     [state("backend", health="healthy", restarts=1)])
    assert wait(probe, clock)[0].health == "healthy"


def test_answers_ends_the_wait_before_docker_says_healthy():
    clock = FakeClock()
    asked = []

    def answers(states):
        asked.append([s.health for s in states])
        return len(asked) == 2  # the proxy's check passes on the second poll

    probe = scripted([state("backend", health="starting")])
    done = wait(probe, clock, answers=answers)
    assert [s.health for s in done] == ["starting"]
    assert asked == [["starting"], ["starting"]]
    assert clock.sleeps == [0.25]


def test_answers_is_not_asked_when_a_container_failed_or_is_not_running():
    asked = []

    def answers(states):
        asked.append(1)
        return True

    clock = FakeClock()
    probe = scripted([state("backend", "created", health="starting")],
                     [state("backend", "exited", exit_code=3)])
    with pytest.raises(ServiceFailed, match="backend: exited with exit code 3"):
        wait(probe, clock, answers=answers)
    clock = FakeClock()
    probe = scripted([state("backend", health="unhealthy", log=["503 no"])])
    with pytest.raises(ServiceFailed, match="backend: unhealthy; last probe: 503 no"):
        wait(probe, clock, answers=answers)
    assert asked == []


def test_two_restarts_already_is_a_restart_loop():
    clock = FakeClock()
    probe = scripted([state("backend", restarts=2)])
    with pytest.raises(ServiceFailed, match=r"backend: restart-looping \(2 restarts\)"):
        wait(probe, clock)


def test_an_unhealthy_container_fails_early_showing_its_probe_output():
    clock = FakeClock()
    probe = scripted(
        [state("backend", health="starting")],
        [state("backend", health="unhealthy",
               log=["ok", 'missing tables: ai_cost_thresholds\nHTTP 503'])],
    )  # fmt: skip
    with pytest.raises(ServiceFailed) as err:
        wait(probe, clock)
    assert str(err.value) == (
        "service failed: backend: unhealthy; last probe: missing tables: ai_cost_thresholds"
    )
    assert clock.now - 1000.0 < 1


def test_still_starting_at_the_deadline_is_a_health_timeout_with_exit_code_4():
    clock = FakeClock()
    probe = scripted([state("postgres", health="healthy"), state("backend", health="starting")])
    with pytest.raises(HealthTimeout) as err:
        wait(probe, clock, timeout=10)
    assert str(err.value) == "not healthy after 10s: backend: running, health starting"
    assert err.value.exit_code == 4
    assert isinstance(err.value, DeployTimeout)
    assert [s.service for s in err.value.failing] == ["backend"]
    assert clock.now == pytest.approx(1010.0)
    assert max(clock.sleeps) <= 0.25


def test_no_containers_at_all_times_out_saying_so():
    clock = FakeClock()
    with pytest.raises(HealthTimeout, match=r"^no containers after 3s") as err:
        wait(scripted([]), clock, timeout=3)
    assert err.value.states == [] and err.value.failing == []


def test_containers_appearing_late_are_waited_for():
    clock = FakeClock()
    probe = scripted([], [], [state("backend")])
    assert wait(probe, clock) == [state("backend")]


def test_one_off_run_containers_are_ignored():
    clock = FakeClock()
    leftover = state("backend", "exited", exit_code=1, id="run1", name="app-backend-run-1",
                     one_off=True)  # fmt: skip
    probe = scripted([state("backend", health="healthy"), leftover])
    assert wait(probe, clock) == [state("backend", health="healthy")]


def test_replicas_of_one_service_are_named_by_container():
    clock = FakeClock()
    probe = scripted([
        state("web", id="a", name="app-web-1"),
        state("web", "exited", exit_code=137, id="b", name="app-web-2"),
    ])  # fmt: skip
    with pytest.raises(
        ServiceFailed, match=r"^service failed: app-web-2: exited with exit code 137$"
    ):
        wait(probe, clock)


def test_on_change_sees_each_distinct_set_of_states_once():
    clock = FakeClock()
    seen = []
    starting = [state("db", health="starting")]
    probe = scripted(starting, starting, starting, [state("db", health="healthy")])
    wait(probe, clock, on_change=seen.append)
    assert [s[0].health for s in seen] == ["starting", "healthy"]


def test_the_failure_report_shows_state_probe_output_and_last_30_log_lines():
    sick = state(
        "backend",
        health="unhealthy",
        restarts=1,
        log=["HTTP 503", 'missing: ai_cost_thresholds\nrelation "x" does not exist'],
    )
    ok = state("postgres", health="healthy")
    logs = {"backend": [f"line {i}" for i in range(100)], "postgres": ["ready"]}
    report = describe_failure([ok, sick], logs)
    assert report.splitlines()[:9] == [
        "postgres: running, health healthy",
        "== backend (app-backend-1) ==",
        "  state:      running",
        "  health:     unhealthy",
        "  exit code:  0",
        "  restarts:   1",
        "  last health-probe outputs:",
        "    | HTTP 503",
        "    | missing: ai_cost_thresholds",
    ]  # fmt: skip
    assert '    | relation "x" does not exist' in report
    assert "  last 30 log lines:" in report
    assert "    line 70" in report and "    line 99" in report
    assert "line 69\n" not in report


def test_the_failure_report_of_a_crash_without_logs_says_so():
    crashed = state("backend", "exited", exit_code=3, finished_at="2026-11-26T07:50:24Z",
                    error="exec /app/entrypoint.sh: no such file or directory")  # fmt: skip
    report = describe_failure([crashed], {})
    assert report.splitlines() == [
        "== backend (app-backend-1) ==",
        "  state:      exited",
        "  health:     no healthcheck",
        "  exit code:  3",
        "  restarts:   0",
        "  error:      exec /app/entrypoint.sh: no such file or directory",
        "  finished:   2026-11-26T07:50:24Z",
        "  logs: (none)",
    ]


def test_probe_now_runs_the_healthcheck_of_starting_containers_once_it_passes():
    clock = FakeClock()
    ran = []

    def probe_now(s):
        ran.append(s.service)
        return s.service == "proxy" or ran.count("postgres") == 2  # postgres fails once

    starting = [state("postgres", health="starting"), state("proxy", health="starting")]
    probe = scripted(starting)
    done = wait(probe, clock, probe_now=probe_now)
    # Docker still says starting: the passed checks are reported as healthy, each container
    # probed until it passed and then no more.
    assert [(s.service, s.health) for s in done] == [("postgres", "healthy"),
                                                     ("proxy", "healthy")]
    assert ran == ["postgres", "proxy", "postgres"]
    assert clock.sleeps == [0.25]


def test_probe_now_is_not_run_for_a_container_docker_already_judged():
    ran = []
    clock = FakeClock()
    probe = scripted([state("db", health="healthy"), state("web")])
    wait(probe, clock, probe_now=lambda s: ran.append(s) or True)
    assert ran == []
    clock = FakeClock()
    probe = scripted([state("db", health="unhealthy", log=["refused"])])
    with pytest.raises(ServiceFailed, match="db: unhealthy; last probe: refused"):
        wait(probe, clock, probe_now=lambda s: ran.append(s) or True)
    assert ran == []
