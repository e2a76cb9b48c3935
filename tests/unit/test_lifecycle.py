"""The reset guard, the local deploy lock and the one executor, without Docker."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from invoke import MockContext, Result

from deploy import shell
from deploy.errors import DeployTimeout, Refused
from deploy.machine.reset import confirm_reset
from deploy.output import Output
from deploy.release.locks import LocalLock, describe_holder
from deploy.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _settings(**values):
    return load_settings(environ={"DATABASE_URL": "postgresql://h/d",
                                  "COMPOSE_PROJECT_NAME": "shop", **values},
                         read_file=False, cwd=ROOT)


def test_reset_without_its_guard_is_refused_when_not_interactive():
    with pytest.raises(Refused) as info:
        confirm_reset(_settings(), None, False, interactive=False)
    assert info.value.exit_code == 5
    assert str(info.value) == ("reset: destroys the volumes of project 'shop'; not "
                               "interactive, so pass --yes-destroy=shop (nothing was touched)")


def test_reset_needs_the_exact_project_name():
    with pytest.raises(Refused) as info:
        confirm_reset(_settings(), "Shop", False, interactive=False)
    assert "--yes-destroy='Shop' does not match the Compose project name 'shop'" in str(
        info.value)
    confirm_reset(_settings(), "shop", False, interactive=False)


def test_reset_asks_for_the_name_when_interactive():
    asked = []
    confirm_reset(_settings(), None, False, interactive=True,
                  ask=lambda prompt: asked.append(prompt) or "shop\n")
    assert "Type the project name to confirm" in asked[0]
    with pytest.raises(Refused) as info:
        confirm_reset(_settings(), None, False, interactive=True, ask=lambda _: "yes")
    assert str(info.value) == "reset: you typed 'yes', not 'shop'; nothing was touched"


def test_reset_in_production_also_needs_production():
    prod = _settings(DEPLOY_ENV="production")
    with pytest.raises(Refused) as info:
        confirm_reset(prod, "shop", False, interactive=False)
    assert "DEPLOY_ENV=production; add --production" in str(info.value)
    confirm_reset(prod, "shop", True, interactive=False)


def _hold(path: str, seconds: float, ready) -> None:
    with LocalLock(Path(path), wait=0):
        ready.set()
        time.sleep(seconds)


def test_a_second_local_deploy_waits_then_names_the_holder(tmp_path):
    path = tmp_path / "deploy.lock"
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(str(path), 3, ready))
    holder.start()
    try:
        assert ready.wait(10)
        started = time.monotonic()
        said = []
        with pytest.raises(DeployTimeout) as info:
            with LocalLock(path, wait=0.5, out=said.append):
                pass
        assert 0.4 < time.monotonic() - started < 3
        message = str(info.value)
        assert message.startswith(f"deploy lock: {path} is held by ")
        assert f" pid {holder.pid}, since " in message
        assert message.endswith("waited 0.5s (--lock-wait)")
        # Said once at the start (the next report would be 5 s later).
        assert len(said) == 1 and said[0].startswith("deploy lock: waiting for ")
        assert f" pid {holder.pid}, since " in said[0]
    finally:
        holder.join()
    with LocalLock(path, wait=0):
        pass  # released when the holder ended


def test_the_one_executor_quotes_every_argument():
    c = MockContext(run={
        "docker-compose logs --no-color 'back end' '$(touch x)' 2>&1": Result("ok\n"),
        "false": Result("", exited=3, stderr="bad thing\n"),
    })
    result = shell.run(c, ["docker-compose", "logs", "--no-color", "back end", "$(touch x)"],
                       merge_stderr=True)
    assert result.stdout == "ok\n"
    with pytest.raises(shell.CommandFailed) as info:
        shell.run(c, ["false"], what="probe")
    assert str(info.value) == "probe: command failed with exit code 3: false\n  bad thing"


def test_the_compose_flavour_is_probed_once_until_the_binaries_change(tmp_path, monkeypatch):
    from deploy.machine.flavour import detect_flavour_cached

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def probe(argv):
        calls.append(argv)
        if argv[0] == "docker-compose":
            return 0, "1.29.2\n"
        return 1, ""

    assert detect_flavour_cached(None, probe) == (("docker-compose",), "v1")
    probes = len(calls)
    assert probes >= 2
    assert detect_flavour_cached(None, probe) == (("docker-compose",), "v1")
    assert len(calls) == probes
    assert detect_flavour_cached("docker-compose", probe) == (("docker-compose",), "v1")
    assert len(calls) == probes + 1  # another COMPOSE_CMD is another key


def test_a_waiting_deploy_repeats_who_holds_the_lock_every_few_seconds(tmp_path):
    import fcntl

    from deploy.release import locks

    path = tmp_path / "deploy.lock"
    path.write_text(locks.holder_record("20261128T170000Z-abc1234"))
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    said = []
    with open(path) as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(DeployTimeout):
            with LocalLock(path, wait=12, out=said.append, clock=lambda: now[0],
                           sleep=sleep):
                pass
    assert [line.split("(")[1] for line in said] == ["0 s of 12 s)", "5 s of 12 s)",
                                                      "10 s of 12 s)"]
    assert "release 20261128T170000Z-abc1234" in said[0]


def test_a_holder_is_described_in_words():
    assert describe_holder('{"by": "ci@runner", "pid": 7, "release": "r1", "since": "T"}') == \
        "ci@runner pid 7, release r1, since T"
    assert describe_holder("") == "an unknown process"
    assert describe_holder("not json") == "not json"


def test_the_deploy_summary_lists_one_item_per_line_and_counts_long_lists():
    from deploy.release.summary import LIST_AT_MOST, print_summary

    said = []
    names = [f"ai_table_{i:02d}" for i in range(12)]
    print_summary({"applied": ["005_a.sql", "006_b.sql"], "tables": 40, "table_prefix": "ai_",
                   "prefixed_tables": names}, Output(said.append))
    assert said[:3] == ["deploy: migrations applied (2):", "   005_a.sql", "   006_b.sql"]
    assert said[3:5] == ["deploy: 40 expected table(s) verified", "deploy: 12 ai_ table(s) exist:"]
    assert " ".join(said[5:]).replace(",", " ").split() == names
    assert max(len(line) for line in said) <= 92

    said.clear()
    many = [f"ai_{i}" for i in range(LIST_AT_MOST + 1)]
    print_summary({"applied": [], "tables": 40, "table_prefix": "ai_",
                   "prefixed_tables": many}, Output(said.append))
    assert said == ["deploy: migrations applied: none (schema already up to date)",
                    "deploy: 40 expected table(s) verified",
                    f"deploy: {LIST_AT_MOST + 1} ai_ tables exist; list them with "
                    "`invoke check-tables --prefix ai_`"]


def test_sigterm_unwinds_a_task_like_ctrl_c_and_names_the_signal():
    import os
    import signal

    from deploy import cli

    with pytest.raises(cli.Terminated) as info:
        with cli.terminate_unwinds():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
    assert isinstance(info.value, KeyboardInterrupt)  # psycopg cancels on the server for it
    assert cli.interrupted_exit("deploy", info.value) == ("deploy: interrupted (SIGTERM)", 143)
    assert cli.interrupted_exit("logs", KeyboardInterrupt()) == ("logs: interrupted (SIGINT)",
                                                                 130)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored afterwards


def test_a_step_stopped_by_a_signal_is_reported_as_interrupted():
    said = []
    timer = Output(said.append)

    def stopped():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        timer.step("wait-healthy (new)", stopped)
    assert said[0] == "==> wait-healthy (new)"
    assert said[1].startswith("<== wait-healthy (new) INTERRUPTED after ")


def test_the_deploy_summary_lists_no_tables_by_prefix_when_no_prefix_is_set():
    from deploy.release.summary import print_summary

    said = []
    print_summary({"applied": [], "tables": 3, "table_prefix": "",
                   "prefixed_tables": []}, Output(said.append))
    assert said == ["deploy: migrations applied: none (schema already up to date)",
                    "deploy: 3 expected table(s) verified"]


def test_the_summary_keeps_the_tables_of_the_prefix_setting_only():
    from types import SimpleNamespace

    from deploy.release.summary import summarize

    report = SimpleNamespace(expected=[{"table": "ai_b"}, {"table": "users"},
                                       {"table": "ai_a"}])
    migrated = SimpleNamespace(applied=["001_a.sql"], total_applied=5)
    assert summarize(migrated, report, "r1", "ai_") == {
        "applied": ["001_a.sql"], "tables": 3, "table_prefix": "ai_",
        "prefixed_tables": ["ai_a", "ai_b"], "total": 5, "release": "r1"}
    assert summarize(None, None, "r1", "")["prefixed_tables"] == []
