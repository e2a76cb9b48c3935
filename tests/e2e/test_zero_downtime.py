"""Deploys nobody notices, on the real engine, real HAProxy and real PostgreSQL.

Zero failed requests is a correctness property, so it is asserted, under a short load of
keep-alive clients that never retry (tests/support/load.py) plus wrk. Each deploy of a
"changed release" deploys a new commit of a throwaway git copy of this project.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time

import pytest

from tests.support.load import Clients, SlowRequests, Wrk
from tests.support.release_tree import ReleaseTree


@pytest.fixture
def tree(tmp_path) -> ReleaseTree:
    path = tmp_path / "src"
    path.mkdir()
    return ReleaseTree(path)


def ps(stack, tree) -> list[dict]:
    result = stack.invoke("ps", "--json", cwd=tree.path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def serving(stack, tree) -> tuple[set[str], list[dict]]:
    """The releases the proxy routes new requests to, and the backend rows."""
    rows = [r for r in ps(stack, tree) if r["service"] == "backend"]
    routed = {r["release"] for r in rows
              if re.fullmatch(r"backend/slot\d+ ready UP", r["proxy"] or "")}
    return routed, rows


def get(port: int, path: str = "/counters/1") -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def deploy_ok(stack, tree, **kwargs) -> subprocess.CompletedProcess:
    result = stack.invoke("deploy", cwd=tree.path, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_a_changed_release_deployed_under_load_fails_no_request(make_stack, tree):
    stack = make_stack(BACKEND_SLOW_REQUESTS="1")
    first = deploy_ok(stack, tree)  # the first deploy, on an empty machine
    assert "traffic moves from nothing to " + tree.sha in first.stdout
    old = tree.sha
    assert serving(stack, tree)[0] == {old}

    new = tree.change()
    port = stack.backend_port
    with Wrk(f"http://127.0.0.1:{port}/counters/1", connections=8) as wrk, \
            Clients(port, count=8) as clients, SlowRequests(port, seconds=2) as slow:
        time.sleep(1.5)
        second = stack.invoke("deploy", cwd=tree.path)
        time.sleep(0.5)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"traffic moves from {old} to {new}" in second.stdout

    load, slow_load = clients.tally(), slow.tally()
    assert load.failures == [], load.failures[:20]
    assert load.requests > 100
    assert slow_load.failures == []
    assert slow_load.requests >= 3
    # A 2 s request was in flight on the old container at the switch: the drain waited.
    drained = re.search(r"old slots drained in (\d+\.\d) s", second.stdout)
    assert drained and float(drained.group(1)) > 0.0, second.stdout
    assert wrk.report.requests > 100
    assert (wrk.report.non_2xx, wrk.report.socket_errors) == (
        0, {"connect": 0, "read": 0, "write": 0, "timeout": 0}), wrk.report.text

    routed, rows = serving(stack, tree)
    assert routed == {new}
    assert [r["release"] for r in rows] == [new]  # the old container is gone

    # A restarted proxy routes as before (its saved server state), with no deploy.
    proxy_id = stack.compose("ps", "-q", "proxy").stdout.strip()
    subprocess.run(["docker", "restart", proxy_id], check=True, capture_output=True)
    deadline = time.monotonic() + 30
    while serving(stack, tree)[0] != {new} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert serving(stack, tree)[0] == {new}
    assert get(port) == 200

    # Docker's own status of the new backend follows within one healthcheck interval (5 s).
    row = rf"backend\s+\S+\s+running\s+healthy\s+0\s+{new}\s+backend/slot\d+ ready UP"
    deadline = time.monotonic() + 6
    table = stack.invoke("ps", cwd=tree.path)
    while not re.search(row, table.stdout) and time.monotonic() < deadline:
        time.sleep(0.5)
        table = stack.invoke("ps", cwd=tree.path)
    assert re.search(row, table.stdout), table.stdout


def test_a_new_release_that_never_becomes_healthy_leaves_the_old_one_serving(make_stack, tree):
    stack = make_stack()
    deploy_ok(stack, tree)
    old = tree.sha
    live_before = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}",
                                  f"{stack.project}-backend:live"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    tree.change()
    port = stack.backend_port
    with Clients(port, count=8) as clients:
        time.sleep(1)
        bad = stack.invoke("deploy", cwd=tree.path,
                           env={"BACKEND_FORCE_UNHEALTHY": "1", "BACKEND_START_PERIOD": "1s"})
    assert bad.returncode == 1, bad.stdout[-3000:] + bad.stderr[-3000:]
    assert "service failed: backend: unhealthy; last probe: " in bad.stderr
    assert "BACKEND_FORCE_UNHEALTHY" in bad.stderr  # its probe output / state, shown
    assert "== backend (" in bad.stderr
    assert "<== wait-healthy (new) FAILED after" in bad.stdout
    assert "the old release keeps serving; removing what this deploy started" in bad.stdout
    assert "point of no return" not in bad.stdout

    load = clients.tally()
    assert load.failures == [], load.failures[:20]
    assert load.requests > 50
    routed, rows = serving(stack, tree)
    assert routed == {old}
    assert [r["release"] for r in rows] == [old]  # the new container was removed
    live_after = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}",
                                 f"{stack.project}-backend:live"], capture_output=True,
                                text=True, check=True).stdout.strip()
    assert live_after == live_before  # `live` moved back


KILL_AT = ("build", "migrate", "tag live", "start new", "wait-healthy (new)", "proxy: prepare",
           "switch", "drain + stop old")


def test_a_deploy_killed_at_any_step_leaves_one_release_serving(make_stack, tree):
    stack = make_stack(BACKEND_SLOW_REQUESTS="1")
    deploy_ok(stack, tree)
    port = stack.backend_port
    phases = []  # (step, phase, failed requests so far): where failures began, if any

    def mark(step: str, phase: str, output: str = "") -> None:
        phases.append((step, phase, len(clients.tally().failures) + len(slow.tally().failures),
                       output))

    with Clients(port, count=4) as clients, SlowRequests(port, seconds=1) as slow:
        for step in KILL_AT:
            mark(step, "before")
            tree.change()
            proc = stack.popen_invoke("deploy", cwd=tree.path, stderr=subprocess.STDOUT)
            seen = []
            for line in proc.stdout:
                seen.append(line)
                if line.startswith(f"==> {step}"):
                    proc.send_signal(signal.SIGKILL)
                    break
            proc.stdout.close()
            proc.wait(timeout=60)
            assert proc.returncode == -signal.SIGKILL, f"{step}: never reached\n{''.join(seen)}"
            time.sleep(1)  # what the killed deploy left running settles
            mark(step, "killed", "".join(seen))
            routed, rows = serving(stack, tree)
            assert len(routed) == 1, (step, rows)
            assert get(port) == 200, step
            recovered = deploy_ok(stack, tree)
            routed, rows = serving(stack, tree)
            assert routed == {tree.sha}, (step, rows, recovered.stdout[-2000:])
            assert [r["release"] for r in rows] == [tree.sha], (step, rows)
            mark(step, "recovered", recovered.stdout)
    load = clients.tally()
    load.add(slow.tally())
    # Where the first failures came: the phase (kill, or the deploy after it) and its output.
    pairs = zip(phases[1:], phases[:-1], strict=True)
    began = next(((s, ph, out) for (s, ph, n, out), prev in pairs if n > prev[2]), None)
    counts = [(s, ph, n) for s, ph, n, _ in phases]
    assert load.failures == [], (counts, load.failures[:5], began and began[2][-4000:])


@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"),
                                                   (signal.SIGINT, 130, "SIGINT")])
def test_a_deploy_stopped_by_a_signal_undoes_itself_and_says_so_in_one_line(make_stack, tree,
                                                                            sig, code, name):
    stack = make_stack()
    deploy_ok(stack, tree)
    old = tree.sha
    port = stack.backend_port
    with Clients(port, count=4) as clients:
        for step in ("wait-healthy (new)", "migrate (the old release keeps serving)"):
            tree.change()
            proc = stack.popen_invoke("deploy", cwd=tree.path)
            seen = []
            for line in proc.stdout:
                seen.append(line)
                if line.startswith(f"==> {step}"):
                    proc.send_signal(sig)
                    break
            rest, err = proc.communicate(timeout=120)
            out = "".join(seen) + rest
            assert proc.returncode == code, f"{step}:\n{out}\n{err}"
            # Compose's own progress goes to stderr too; ours is its one last line.
            assert err.strip().splitlines()[-1] == f"deploy: interrupted ({name})", err
            assert "Traceback" not in out + err
            if step.startswith("wait-healthy"):
                assert f"<== {step} INTERRUPTED after " in out
                assert "the old release keeps serving; removing what this deploy started" in out
            routed, rows = serving(stack, tree)
            assert routed == {old}, (step, rows)
            assert [r["release"] for r in rows] == [old], (step, rows)  # nothing left behind
            assert get(port) == 200
    assert clients.tally().failures == []


HOT_ALTER = """\
-- Migration 024: a note on each counter. Needs ACCESS EXCLUSIVE on the hot table (briefly).
-- ROLLBACK: ALTER TABLE hot_counters DROP COLUMN IF EXISTS note;
ALTER TABLE hot_counters ADD COLUMN IF NOT EXISTS note TEXT;
"""
LOCK_TIMEOUT = 0.5  # MIGRATION_LOCK_TIMEOUT's default
READ_MARGIN = 0.6  # the reads' own latency on this machine, with a deploy running


def _hold_hot_table(stack, name: str):
    """A session with an open transaction that read the hot table (ACCESS SHARE held),
    like a long report: it blocks the migration's ALTER until it ends."""
    import psycopg

    conn = psycopg.connect(f"postgresql://app:{stack.password}@127.0.0.1:{stack.pg_port}/app",
                           autocommit=True, application_name=name)
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM hot_counters").fetchone()
    return conn


def test_a_migration_blocked_by_a_long_transaction_never_stalls_the_hot_table(make_stack,
                                                                              tree):
    stack = make_stack()
    deploy_ok(stack, tree)
    old, port = tree.sha, stack.backend_port
    (tree.path / "migrations/024_hot_counters_note.sql").write_text(HOT_ALTER)
    tree.commit("a migration that needs ACCESS EXCLUSIVE on the hot table")
    reads = [("GET", "/counters/1"), ("GET", "/counters/2"), ("POST", "/counters/3")]

    # A blocker that outlives the retry budget: the deploy stops before anything new starts.
    blocker = _hold_hot_table(stack, "nightly report")
    pid = blocker.info.backend_pid
    try:
        with Clients(port, count=4, paths=reads) as clients:
            time.sleep(1)
            blocked = stack.invoke("deploy", cwd=tree.path,
                                   env={"MIGRATION_LOCK_RETRIES": "2"})
            time.sleep(1)
    finally:
        blocker.close()
    assert blocked.returncode == 4, blocked.stdout[-3000:] + blocked.stderr[-3000:]
    assert "024_hot_counters_note.sql: lock timeout: gave up after 3 attempt(s)" in \
        blocked.stderr
    assert f"blocked by pid {pid} (application_name 'nightly report', user app, state idle " \
           "in transaction" in blocked.stderr
    assert "<== migrate (the old release keeps serving) FAILED" in blocked.stdout
    assert "==> start new" not in blocked.stdout
    assert stack.psql("SELECT count(*) FROM migration_history "
                      "WHERE filename = '024_hot_counters_note.sql'") == "0"
    routed, rows = serving(stack, tree)
    assert routed == {old} and [r["release"] for r in rows] == [old], rows
    load = clients.tally()
    assert load.failures == [], load.failures[:10]
    # Requests queued behind the waiting ALTER at most one lock timeout each time.
    assert load.requests > 50
    assert max(load.latencies) < LOCK_TIMEOUT + READ_MARGIN, max(load.latencies)

    # The same blocker, released once the migration has timed out on it (whenever the build
    # before it ends on a busy machine): the retries carry the deploy through.
    blocker = _hold_hot_table(stack, "nightly report")
    seen = []
    with Clients(port, count=4, paths=reads) as clients:
        proc = stack.popen_invoke("deploy", cwd=tree.path, stderr=subprocess.STDOUT)
        try:
            for line in proc.stdout:
                seen.append(line)
                if "024_hot_counters_note.sql: lock timeout after 0.5 s (attempt 1/" in line:
                    threading.Timer(1.0, blocker.close).start()  # a retry or two later
        finally:
            proc.stdout.close()
            proc.wait(timeout=300)
            blocker.close()
    out = "".join(seen)
    assert proc.returncode == 0, out[-4000:]
    assert "024_hot_counters_note.sql: lock timeout after 0.5 s (attempt 1/" in out
    assert "migration 024_hot_counters_note.sql applied in" in out
    routed, rows = serving(stack, tree)
    assert routed == {tree.sha}, rows
    load = clients.tally()
    assert load.failures == [], load.failures[:10]
    assert max(load.latencies) < LOCK_TIMEOUT + READ_MARGIN, max(load.latencies)
