"""The commands as a shell user meets them: closed pipes, argument errors, bad .env lines."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.base import ROOT, invoke_argv


def _closed_pipe(argv: list[str], project) -> subprocess.CompletedProcess:
    """Run argv with its stdout's reader already gone, as `… | head` leaves it."""
    proc = subprocess.Popen(argv, cwd=project.root, env=project.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, proc.returncode, "", err)


INVOKE = invoke_argv()


@pytest.mark.parametrize("argv", [
    [*INVOKE, "--list"],
    [*INVOKE, "migrate-status"],
    [sys.executable, "-m", "deploy", "migrate-status"],
    [sys.executable, "-m", "fabric", "--search-root", str(ROOT), "--list"],
], ids=["invoke --list", "invoke migrate-status", "python -m deploy migrate-status",
        "fab --list"])
def test_a_closed_pipe_ends_quietly_with_141(project, argv):
    project.copy_examples()
    assert project.run("migrate").returncode == 0
    result = _closed_pipe(argv, project)
    assert result.stderr == ""
    assert result.returncode == 141


@pytest.mark.parametrize(("args", "message"), [
    (["migrate", "--nope"], "No idea what '--nope' is!"),
    (["nosuch-task"], "No idea what 'nosuch-task' is!"),
    (["logs"], "'logs' did not receive required positional arguments: 'services'"),
])
def test_argument_errors_exit_2_naming_the_argument(project, args, message):
    result = project.invoke(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"{message}; see `invoke --list` and `invoke --help TASK`")


def test_an_unparsable_env_line_stops_every_task_with_exit_2(project):
    env_file = project.root / "test.env"
    env_file.write_text('POSTGRES_USER=app\nPOSTGRES_PASSWORD="unterminated\n')
    for args in (["ps"], ["migrate"]):
        result = project.invoke(*args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == (
            f"{env_file}:2: cannot parse this line (the value of POSTGRES_PASSWORD); write "
            "KEY=value, quote a value that holds spaces or #, and close every quote")
        assert "Traceback" not in result.stderr


NOTICE = ("--lock-timeout is now --lock-wait (the wait for the runner's lock); "
          "the old name will go")


def test_the_old_lock_timeout_flag_still_sets_the_runners_lock_wait_with_a_notice(project):
    project.write("001_ok.sql", "CREATE TABLE IF NOT EXISTS ok_t (id int);\n")
    for run in (project.run, project.invoke):
        refused = run("migrate", "--lock-timeout", "0")
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.splitlines() == [NOTICE,
                                               "--lock-wait: must be greater than 0 (got 0)"]
    applied = project.invoke("migrate", "--lock-timeout", "5")
    assert applied.returncode == 0, applied.stderr
    assert applied.stderr == NOTICE + "\n"
    assert project.history() == ["001_ok.sql"]
    for task in ("redo-migration", "forget-migration"):
        unconfirmed = project.invoke(task, "001_ok.sql", "--lock-timeout", "5")
        assert unconfirmed.returncode == 5, unconfirmed.stderr
        assert unconfirmed.stderr.splitlines()[0] == NOTICE
    assert project.run("migrate", "--lock-wait", "5").stderr == ""


def test_the_migration_tasks_have_no_automatic_short_flags(project):
    # Invoke would have made -a --accept-drift, -s --statement-timeout and -y --yes: arbitrary
    # letters. (-c, -d, -l … are Invoke's own core flags, which it accepts after a task too.)
    for args in (["migrate", "-a"], ["migrate", "-s", "60"],
                 ["redo-migration", "001_ok.sql", "-y"]):
        result = project.invoke(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("No idea what '-"), (args, result.stderr)
