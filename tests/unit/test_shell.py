"""shell.run: the one executor quotes every argument; a secret reaches a command on stdin,
never its command line; the config is written once, not on every run (threads read it)."""

from __future__ import annotations

import invoke
import pytest
from invoke import MockContext, Result

from deploy import shell


def test_input_reaches_the_commands_stdin_which_is_then_closed():
    # `cat` ends only when its stdin is closed: a hang here means it never was.
    result = shell.run(invoke.Context(), ["sh", "-c", "cat; echo end"], input="s3cret\n")
    assert result.stdout == "s3cret\nend\n"
    assert "s3cret" not in result.command


def test_runs_after_the_first_never_rewrite_the_config_other_threads_read(monkeypatch):
    # Each config write re-merges Invoke's config from an empty dict: a thread reading it
    # meanwhile (the build beside `compose up`) died with a KeyError traceback.
    c = invoke.Context()
    shell.run(c, ["true"])
    merges = []
    merge = invoke.Config.merge
    monkeypatch.setattr(invoke.Config, "merge",
                        lambda self, *a, **k: (merges.append(1), merge(self, *a, **k))[1])
    shell.run(c, ["true"])
    shell.run(c, ["true"])
    assert merges == []
    assert c.config.runners.local._skips_watcher_scan


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


def test_a_signal_during_invokes_runner_set_up_unwinds_as_the_signal():
    # Invoke's Runner.run stops the runner in a `finally`; a SIGINT inside its set-up
    # leaves the runner half-made and that stop raises AttributeError instead.
    class Interrupted:
        def run(self, command, **kwargs):
            try:
                raise KeyboardInterrupt
            finally:
                raise AttributeError("'Local' object has no attribute 'using_pty'")

    with pytest.raises(KeyboardInterrupt):
        shell.run(Interrupted(), ["true"])

    class Broken:
        def run(self, command, **kwargs):
            raise AttributeError("a real bug")

    with pytest.raises(AttributeError, match="a real bug"):
        shell.run(Broken(), ["true"])


def test_ctrl_c_during_a_command_given_input_unwinds_as_the_signal():
    # Invoke forwards Ctrl-C by writing \x03 to the command's stdin; with ``input`` that
    # stdin is already closed, and the write raises ValueError inside the handler.
    import signal
    import threading

    import invoke

    threading.Timer(0.5, lambda: signal.raise_signal(signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        shell.run(invoke.Context(), ["sleep", "2"], input="secret\n")


def test_write_file_here_makes_the_directory_and_replaces_the_file_whole(tmp_path):
    from invoke import Context

    from deploy import shell

    path = tmp_path / "a" / "b" / "override.yml"
    shell.write_file(Context(), str(path), "one\n")
    shell.write_file(Context(), str(path), "two\n")
    assert path.read_text() == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["override.yml"]  # no temp file left
