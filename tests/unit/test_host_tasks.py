"""The tasks' host interface: DEPLOY_HOSTS as the default host list, `--hosts local`,
`fab -H` refused for deploy and rollback, no automatic short flags, the lock-wait default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Context, Exit

from deploy.defaults import DEPLOY_LOCK_WAIT
from deploy.errors import ConfigError
from deploy.fleet.hosts import Host
from deploy.settings import load_settings
from deploy.tasks import common
from deploy.tasks import hosts as host_tasks
from deploy.tasks.common import each_target, host_list

ROOT = Path(__file__).resolve().parents[2]


def _settings(**values):
    base = {"DATABASE_URL": "postgresql://app:pw@127.0.0.1:5432/app", **values}
    return load_settings(environ=base, read_file=False, cwd=ROOT)


class FabConnection(Context):
    """What `fab -H web1 TASK` hands a task: a context that is a host."""

    host = "web1"

    def forward_local(self):  # what makes it a fabric.Connection to is_remote
        raise AssertionError("not used")


def test_deploy_hosts_is_the_default_host_list():
    settings = _settings(DEPLOY_HOSTS="web1, deploy@web2:2222")
    assert host_list(None, settings) == [Host("web1"), Host("web2", "deploy", 2222)]


def test_an_explicit_hosts_flag_wins_over_deploy_hosts():
    settings = _settings(DEPLOY_HOSTS="web1,web2")
    assert host_list("web3", settings) == [Host("web3")]


@pytest.mark.parametrize("flag", ["local", " local ", ""])
def test_hosts_local_or_empty_means_this_machine_even_with_deploy_hosts(flag):
    assert host_list(flag, _settings(DEPLOY_HOSTS="web1,web2")) == []


def test_without_hosts_or_deploy_hosts_a_task_runs_here():
    assert host_list(None, _settings()) == []


def test_a_bad_deploy_hosts_entry_names_the_setting():
    with pytest.raises(ConfigError) as info:
        host_list(None, _settings(DEPLOY_HOSTS="web1,web1"))
    assert str(info.value) == "DEPLOY_HOSTS: a host is listed twice in ['web1', 'web1']"


def _capture_deploys(monkeypatch, settings):
    calls = {}
    monkeypatch.setattr(host_tasks, "load_settings", lambda: settings)
    monkeypatch.setattr(host_tasks, "_deploy_hosts", lambda shared, targets, parallel, **kw:
                        calls.update(hosts=targets, parallel=parallel, **kw))
    monkeypatch.setattr(host_tasks, "deploy_here", lambda c, s, build: calls.update(local=True))
    monkeypatch.setattr(host_tasks, "LocalLock", lambda path, wait: _NoLock(calls, wait))
    return calls


class _NoLock:
    def __init__(self, calls, wait):
        calls["local_wait"] = wait

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_invoke_deploy_with_deploy_hosts_set_deploys_to_those_hosts(monkeypatch):
    calls = _capture_deploys(monkeypatch, _settings(DEPLOY_HOSTS="web1,web2"))
    host_tasks.deploy(Context())
    assert calls == {"hosts": [Host("web1"), Host("web2")], "parallel": 1, "build": True,
                     "allow_dirty": False, "lock_wait": DEPLOY_LOCK_WAIT}


def test_invoke_deploy_hosts_local_deploys_here_although_deploy_hosts_is_set(monkeypatch):
    calls = _capture_deploys(monkeypatch, _settings(DEPLOY_HOSTS="web1,web2"))
    host_tasks.deploy(Context(), hosts="local", lock_wait="7")
    assert calls == {"local": True, "local_wait": 7.0}


def test_rollback_with_deploy_hosts_set_rolls_those_hosts_back(monkeypatch):
    monkeypatch.setattr(host_tasks, "load_settings", lambda: _settings(DEPLOY_HOSTS="web1"))
    ran = []
    monkeypatch.setattr(host_tasks.fanout, "run_on_hosts",
                        lambda action, targets, job, parallel: ran.append((action, targets)))
    host_tasks.rollback(Context())
    assert ran == [("rollback", [Host("web1")])]


def test_rollback_leaves_a_database_host_alone_and_says_so(monkeypatch, capsys):
    monkeypatch.setattr(host_tasks, "load_settings", lambda: _settings(DEPLOY_HOSTS="db1"))
    monkeypatch.setattr(host_tasks, "host_settings",
                        lambda shared, name: _settings(APP_SERVICES="", WORKER_SERVICES=""))
    monkeypatch.setattr(host_tasks.trust, "connection", lambda *a: pytest.fail("connected"))
    monkeypatch.setattr(host_tasks.fanout, "run_on_hosts",
                        lambda action, targets, job, parallel: [job(h) for h in targets])
    host_tasks.rollback(Context())
    assert capsys.readouterr().out == (
        "[db1] rollback: a database host (APP_SERVICES is empty): no app to roll back; "
        "migrations are never reversed\n")


def test_a_stack_task_runs_on_each_deploy_hosts_host_with_its_prefix(monkeypatch):
    monkeypatch.setattr(common, "load_settings", lambda: _settings(DEPLOY_HOSTS="web1,web2"))
    opened = []

    class Conn:
        def __init__(self, host, settings):
            self.host = host.name

        def close(self):
            opened.append(f"closed {self.host}")

    monkeypatch.setattr(common.trust, "connection", Conn)
    each_target(Context(), None, lambda c, prefix: opened.append(f"{c.host} {prefix!r}"))
    assert opened == ["web1 '[web1] '", "closed web1", "web2 '[web2] '", "closed web2"]


@pytest.mark.parametrize(("task", "text"), [
    (host_tasks.deploy, "fab -H runs a task on each host in turn; a deploy must stage every "
                        "host first: use invoke deploy --hosts web1,deploy@web2"),
    (host_tasks.rollback, "fab -H runs a task on each host in turn; a rollback must stop at "
                          "the first failing host and report every host: use invoke rollback "
                          "--hosts web1,deploy@web2"),
])
def test_fab_h_deploy_and_rollback_are_refused_with_one_line_and_exit_2(monkeypatch, task,
                                                                          text):
    monkeypatch.setattr(host_tasks.sys, "argv", ["fab", "-H", "web1,deploy@web2", "deploy"])
    with pytest.raises(Exit) as info:
        task(FabConnection())
    assert info.value.code == 2
    assert info.value.message == text


@pytest.mark.parametrize(("argv", "hosts"), [
    (["fab", "-H", "a,b", "deploy"], "a,b"),
    (["fab", "--hosts", "a", "deploy"], "a"),
    (["fab", "--hosts=a,b", "deploy"], "a,b"),
    (["fab", "-Ha,b", "deploy"], "a,b"),
    (["fab", "deploy"], None),
])
def test_the_hosts_given_to_fab_are_read_from_its_command_line(argv, hosts):
    assert host_tasks.fab_hosts(argv) == hosts


def test_hosts_and_fab_h_together_are_refused(monkeypatch):
    with pytest.raises(ConfigError) as info:
        each_target(FabConnection(), "web2", lambda c, prefix: None)
    assert str(info.value) == ("--hosts: fab -H already gives the host (web1); use one or "
                               "the other")


# Invoke pops each flag's help as it builds the parser, so the collection is inspected in a
# fresh interpreter, whatever other tests did with it.
_ARGUMENTS = """
import json
from deploy.tasks import ns
print(json.dumps({t.name: [[a.names, a.help or ""] for a in t.get_arguments()]
                  for t in ns.tasks.values()
                  if t.body.__module__ in ("deploy.tasks.hosts", "deploy.tasks.stack")}))
"""


@pytest.fixture(scope="module")
def arguments() -> dict:
    done = subprocess.run([sys.executable, "-c", _ARGUMENTS], cwd=ROOT, capture_output=True,
                          text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(done.stdout)


def test_no_task_flag_has_an_automatic_short_flag(arguments):
    assert len(arguments) == 11
    for name, args in arguments.items():
        for names, _ in args:
            assert all(len(n) > 1 for n in names), (name, names)


def test_every_task_that_takes_hosts_defaults_to_deploy_hosts_in_its_help(arguments):
    with_hosts = {name: dict((names[0], text) for names, text in args).get("hosts")
                  for name, args in arguments.items()}
    with_hosts = {name: text for name, text in with_hosts.items() if text is not None}
    assert sorted(with_hosts) == ["deploy", "down", "logs", "ps", "releases", "rollback", "up",
                                  "wait-healthy"]
    for name, text in with_hosts.items():
        assert "default DEPLOY_HOSTS" in text, name


def test_backup_and_restore_run_on_each_deploy_hosts_host_guarded_on_each(monkeypatch):
    from deploy.errors import Refused
    from deploy.tasks import backups as backup_tasks

    monkeypatch.setattr(common, "load_settings", lambda: _settings(DEPLOY_HOSTS="web1,web2"))
    done = []

    class Conn:
        def __init__(self, host, settings):
            self.host = host.name

        def close(self):
            pass

    class FakeStack:
        def __init__(self, c):
            self.c, self.settings = c, _settings()
            self.out = lambda line: None
            self.out.step = lambda name, fn, *args: fn(*args)

        def check_docker(self):
            pass

    monkeypatch.setattr(common.trust, "connection", Conn)
    monkeypatch.setattr(backup_tasks, "stack_for", FakeStack)
    monkeypatch.setattr(backup_tasks.backups, "backup",
                        lambda stack: done.append(f"backup {stack.c.host}"))
    monkeypatch.setattr(backup_tasks.backups, "restore",
                        lambda stack, file, database: done.append(f"restore {stack.c.host} "
                                                                  f"{file}"))
    backup_tasks.backup.body(Context())
    backup_tasks.restore.body(Context(), "x.dump", yes_destroy="app")
    backup_tasks.backup.body(Context(), hosts="web2")
    assert done == ["backup web1", "backup web2", "restore web1 x.dump",
                    "restore web2 x.dump", "backup web2"]
    with pytest.raises(Exit) as info:
        backup_tasks.restore.body(Context(), "x.dump", hosts="local")
    assert info.value.code == Refused.exit_code
    assert done[-1] == "backup web2"
