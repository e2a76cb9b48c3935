"""`invoke deploy` and friends on the real sample stack, on the real Docker engine."""

from __future__ import annotations

import json
import re
import subprocess
import time

from tests.support.base import EXAMPLE_MIGRATIONS, ROOT

EXAMPLE_FILES = sorted(p.name for p in EXAMPLE_MIGRATIONS.glob("*.sql"))
AI_TABLES_SAMPLE = {"ai_cost_thresholds", "ai_monitoring_metrics", "ai_transparency_logs"}


def test_deploy_from_nothing_then_again_then_inspect_search_and_stop(make_stack, tmp_path):
    stack = make_stack()
    first = stack.invoke("deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    for step in ("docker", "build e2e", "wait-healthy (postgres, proxy)",
                 "migrate (the old release keeps serving)", "tag live", "start new",
                 "wait-healthy (new)", "switch", "drain + stop old", "check-tables --expected"):
        assert f"==> {step}" in out
        assert re.search(rf"<== {re.escape(step)}.* done in \d+\.\d s", out), step
    assert re.search(r"deploy: done in \d+\.\d s; each step:\n   docker \d+\.\d s, ", out)
    # Every file applied, listed one per line after the count (never one long line).
    lines = out.splitlines()
    start = lines.index(f"deploy: migrations applied ({len(EXAMPLE_FILES)}):")
    assert [line.strip() for line in lines[start + 1:start + 1 + len(EXAMPLE_FILES)]] == \
        EXAMPLE_FILES
    assert re.search(r"deploy: \d+ expected table\(s\) verified", out)
    # It ends with the AI tables, the check the team used to do by hand.
    ai_start = next(i for i, line in enumerate(lines)
                    if re.fullmatch(r"deploy: \d+ ai_ table\(s\) exist:", line))
    listed_ai = " ".join(lines[ai_start + 1:]).replace(",", " ").split()
    assert AI_TABLES_SAMPLE <= set(listed_ai)
    assert all(name.startswith("ai_") for name in listed_ai)
    assert max(len(line) for line in lines) < 200
    assert stack.password not in first.stdout + first.stderr

    history = stack.psql("SELECT count(*) FROM migration_history")
    assert history == str(len(EXAMPLE_FILES))

    postgres_id = stack.compose("ps", "-q", "postgres").stdout.strip()
    second = stack.invoke("deploy", "--no-build")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "deploy: migrations applied: none (schema already up to date)" in second.stdout
    # The database's definition did not change: Compose left it alone, and nothing said so.
    assert stack.compose("ps", "-q", "postgres").stdout.strip() == postgres_id != ""
    assert "recreates it now" not in second.stdout
    assert "migrations: up to date, nothing to apply" in second.stdout

    tables = stack.invoke("check-tables", "--prefix", "ai_")
    assert tables.returncode == 0, tables.stderr
    listed = set(tables.stdout.splitlines()[:-1])
    assert AI_TABLES_SAMPLE <= listed
    assert all(name.startswith("ai_") for name in listed)

    logs = stack.invoke("logs", "backend", "--grep", "migration")
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    # The deploy migrated before the backend started: its start-up runner found nothing to do.
    assert any("migrations: up to date, nothing to apply" in line for line in lines), logs.stdout
    assert "migration 020_ai_cost_management_system.sql applied in" in out
    assert all(line.startswith("backend | ") for line in lines)
    nothing = stack.invoke("logs", "backend", "--grep", "no such line anywhere")
    assert nothing.returncode == 3
    assert "logs: no line matched 'no such line anywhere'" in nothing.stderr
    bad_regex = stack.invoke("logs", "all", "--grep", "migration(")
    assert bad_regex.returncode == 2
    assert "--grep: invalid regular expression 'migration('" in bad_regex.stderr

    ps = stack.invoke("ps", "--json")
    assert ps.returncode == 0, ps.stderr
    rows = {r["service"]: r for r in json.loads(ps.stdout)}
    assert re.fullmatch(r"backend/slot\d ready UP", rows["backend"]["proxy"]), rows["backend"]
    # The deploy took the new backend as ready when HAProxy's check passed; Docker's own
    # status follows at its next probe, within one healthcheck interval (5 s).
    deadline = time.monotonic() + 6
    while rows["backend"]["health"] == "starting" and time.monotonic() < deadline:
        time.sleep(0.5)
        ps = stack.invoke("ps", "--json")
        rows = {r["service"]: r for r in json.loads(ps.stdout)}
    assert {rows["postgres"]["health"], rows["backend"]["health"]} == {"healthy"}, rows
    assert rows["backend"]["ports"] == ["8080/tcp"]  # only the proxy publishes a port
    assert f"127.0.0.1:{stack.backend_port}->8080/tcp" in rows["proxy"]["ports"]
    assert f"127.0.0.1:{stack.pg_port}->5432/tcp" in rows["postgres"]["ports"]

    health = subprocess.run(["python3", "-c", "import urllib.request,sys; r=urllib.request."
                             f"urlopen('http://127.0.0.1:{stack.backend_port}/health');"
                             "print(r.status, r.read().decode())"],
                            capture_output=True, text=True, timeout=30)
    assert health.stdout.startswith("200 "), health.stdout + health.stderr

    # `invoke build` makes the release's image, tagged by commit, and nothing else moves.
    from deploy.release.revision import revision

    built = stack.invoke("build")
    assert built.returncode == 0, built.stdout + built.stderr
    ref = f"{stack.project}-backend:{revision(ROOT).tag}"
    assert f"build: {ref} (sha256:" in built.stdout
    inspected = subprocess.run(["docker", "image", "inspect", "--format",
                                '{{index .Config.Labels "deploy.release"}}', ref],
                               capture_output=True, text=True)
    assert inspected.stdout.strip() == revision(ROOT).tag
    assert stack.invoke("ps", "--json").stdout == ps.stdout  # no container was touched

    down = stack.invoke("down")
    assert down.returncode == 0, down.stderr
    assert stack.invoke("ps", "--json").stdout.strip() == "[]"


def test_user_input_reaches_commands_as_data_never_as_shell(make_stack, tmp_path):
    stack = make_stack()
    assert stack.invoke("deploy").returncode == 0
    marker = tmp_path / "pwned"
    hostile = f"$(touch {marker}); touch {marker} ' \" `touch {marker}`"
    grep = stack.invoke("logs", "backend", "--grep", hostile)
    assert grep.returncode == 3, grep.stderr
    service = stack.invoke("logs", hostile)
    assert service.returncode == 1
    assert "No such service" in service.stderr or "no such service" in service.stderr
    project = stack.invoke("ps", env={"COMPOSE_PROJECT_NAME": hostile})
    assert project.returncode == 2
    assert "COMPOSE_PROJECT_NAME:" in project.stderr
    spaced = stack.invoke("logs", "backend", "--grep", "migration 005 user", "--case-sensitive")
    assert spaced.returncode == 3
    assert not marker.exists()


def test_a_backend_that_crashes_at_start_fails_fast_with_its_logs(make_stack):
    stack = make_stack(BACKEND_FAIL_AT_START="1", HEALTH_TIMEOUT="120")
    started = time.monotonic()
    result = stack.invoke("deploy")
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    err = result.stderr
    assert "service failed: backend: " in err
    assert "== backend (" in err
    assert "exit code:  1" in err
    assert "last " in err and "log lines:" in err
    assert "BACKEND_FAIL_AT_START" in err  # the crash's own log line, shown
    assert "<== wait-healthy (new) FAILED after" in result.stdout
    assert elapsed < 100, elapsed  # far from the 120 s timeout (build included)


def test_a_backend_that_stays_unhealthy_shows_its_probe_output(make_stack):
    stack = make_stack(BACKEND_FORCE_UNHEALTHY="1", BACKEND_START_PERIOD="1s")
    result = stack.invoke("deploy")
    assert result.returncode == 1, result.stdout + result.stderr
    err = result.stderr
    assert "service failed: backend: unhealthy; last probe: " in err
    assert "last health-probe outputs:" in err
    assert "BACKEND_FORCE_UNHEALTHY" in err


def test_reset_is_guarded_then_backs_up_and_restores_old_rows(make_stack, tmp_path):
    stack = make_stack()
    assert stack.invoke("deploy").returncode == 0
    stack.psql("INSERT INTO users (id, email) VALUES ('keep-me', 'keep@example.com')")

    unguarded = stack.invoke("reset")
    assert unguarded.returncode == 5
    assert (f"reset: destroys the volumes of project {stack.project!r}; not interactive, so "
            f"pass --yes-destroy={stack.project} (nothing was touched)") in unguarded.stderr
    wrong = stack.invoke("reset", "--yes-destroy=someone-else")
    assert wrong.returncode == 5
    assert "does not match the Compose project name" in wrong.stderr
    prod = stack.invoke("reset", f"--yes-destroy={stack.project}",
                        env={"DEPLOY_ENV": "production"})
    assert prod.returncode == 5
    assert "DEPLOY_ENV=production; add --production" in prod.stderr
    assert stack.psql("SELECT id FROM users WHERE id = 'keep-me'") == "keep-me"
    assert list((tmp_path / "backups").glob("*")) == []

    done = stack.invoke("reset", f"--yes-destroy={stack.project}")
    assert done.returncode == 0, done.stdout + done.stderr
    backups = list((tmp_path / "backups").glob(f"{stack.project}-*.dump"))
    assert len(backups) == 1
    assert f"backup written: {backups[0]}" in done.stdout
    assert backups[0].stat().st_mode & 0o777 == 0o600
    assert stack.psql("SELECT count(*) FROM users WHERE id = 'keep-me'") == "0"
    assert stack.psql("SELECT count(*) FROM migration_history") == str(len(EXAMPLE_FILES))

    # The backup restores, with the old row, into a scratch database of the new stack.
    stack.psql("CREATE DATABASE restored")
    container = stack.compose("ps", "-q", "postgres").stdout.strip()
    subprocess.run(["docker", "cp", str(backups[0]), f"{container}:/tmp/b.dump"], check=True)
    restore = stack.compose("exec", "-T", "postgres", "pg_restore", "-U", "app", "-d",
                            "restored", "/tmp/b.dump", check=False)
    assert restore.returncode == 0, restore.stderr
    row = stack.compose("exec", "-T", "postgres", "psql", "-U", "app", "-d", "restored", "-At",
                        "-c", "SELECT email FROM users WHERE id = 'keep-me'").stdout.strip()
    assert row == "keep@example.com"


def test_docker_missing_or_its_daemon_down_is_a_setup_error_with_what_to_do(make_stack):
    import os
    import sys

    stack = make_stack()
    down = stack.invoke("deploy", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert down.returncode == 2, down.stdout + down.stderr
    assert "docker: the daemon is not reachable" in down.stderr
    assert "start it (`sudo systemctl start docker`, or `dockerd &`)" in down.stderr
    # A PATH with Python but no docker: the real "command not found".
    python_only = os.path.dirname(sys.executable)
    assert not os.path.exists(os.path.join(python_only, "docker"))
    missing = stack.invoke("ps", env={"PATH": python_only})
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert missing.stderr.strip().startswith("docker: not installed; install Docker Engine")


def test_the_exit_code_of_a_container_docker_restarted_comes_from_its_die_events(docker_ready):
    # `docker inspect` says exit code 0 once the restart policy started a crashed container
    # again; the failure report reads the crash's code from Docker's events instead.
    import invoke

    from deploy import shell
    from deploy.commands import compose
    from deploy.machine.stack import last_exit_code
    from tests.support.base import LOCAL_IMAGES_ENV, read_env_file

    image = read_env_file(LOCAL_IMAGES_ENV).get("PYTHON_IMAGE", "python:3.12-slim")
    c = invoke.Context()
    started = subprocess.run(["docker", "run", "-d", "--restart", "unless-stopped", image,
                              "sh", "-c", "sleep 0.3; exit 7"],
                             capture_output=True, text=True, check=True).stdout.strip()
    try:
        deadline = time.monotonic() + 30
        while True:
            (state,) = compose.parse_inspect(shell.run(c, ["docker", "inspect", started]).stdout)
            if state.status == "running" and state.restart_count >= 1:
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
        assert state.exit_code == 0  # what inspect says of a restarted container

        class OnThisMachine:
            def run(self, argv, **kwargs):
                return shell.run(c, argv, **kwargs)

        assert last_exit_code(OnThisMachine(), state) == 7
    finally:
        subprocess.run(["docker", "rm", "-f", started], capture_output=True)
