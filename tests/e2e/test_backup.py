"""`invoke backup` and `invoke restore` on the real sample stack: pg_dump and pg_restore
inside its postgres service (DB_SERVICE's default)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import psycopg

from tests.support.base import ROOT, invoke_argv


def test_backup_then_restore_round_trips_a_row_and_an_unguarded_restore_touches_nothing(
        make_stack, tmp_path):
    stack = make_stack()
    deployed = stack.invoke("deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    stack.psql("INSERT INTO users (id, email) VALUES ('keep-me', 'keep@example.com')")

    made = stack.invoke("backup", "--hosts", "local")
    assert made.returncode == 0, made.stdout + made.stderr
    files = list((tmp_path / "backups").glob(f"{stack.project}-app-*.dump"))
    assert len(files) == 1, made.stdout
    dump = files[0]
    assert re.fullmatch(rf"{stack.project}-app-\d{{8}}T\d{{6}}Z\.dump", dump.name)
    assert dump.stat().st_mode & 0o777 == 0o600
    assert dump.read_bytes()[:5] == b"PGDMP"
    assert "==> backup (database 'app' in service postgres)" in made.stdout
    assert f"   backup written: {dump} ({dump.stat().st_size:,} bytes)" in made.stdout
    assert stack.password not in made.stdout + made.stderr

    stack.psql("UPDATE users SET email = 'changed@example.com' WHERE id = 'keep-me'")
    unguarded = stack.invoke("restore", dump.name)
    assert unguarded.returncode == 5, unguarded.stdout + unguarded.stderr
    assert unguarded.stderr.strip() == (
        "restore: replaces the contents of database 'app'; not interactive, so pass "
        "--yes-destroy=app (nothing was touched)")
    assert unguarded.stdout == ""
    assert stack.psql("SELECT email FROM users WHERE id = 'keep-me'") == "changed@example.com"

    restored = stack.invoke("restore", str(dump), "--yes-destroy=app")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    out = restored.stdout
    assert f"   restore: {dump} ({dump.stat().st_size:,} bytes) into database 'app' in " \
           "service postgres" in out
    assert re.search(r"<== restore \(pg_restore, one transaction\) done in \d+\.\d s", out)
    assert re.search(r"<== check-tables --expected done in \d+\.\d s", out)
    assert out.rstrip().endswith(f"restore: done; database 'app' in service postgres is as "
                                 f"in {dump}")
    assert stack.psql("SELECT email FROM users WHERE id = 'keep-me'") == "keep@example.com"
    assert stack.password not in out + restored.stderr

    checked = stack.invoke("check-tables", "--expected")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Nothing of the backup's own temporary files is left in the container.
    assert stack.compose("exec", "-T", "postgres", "sh", "-c",
                         "ls /tmp | grep -c deploy- || true").stdout.strip() == "0"


def test_restore_of_a_file_that_is_not_a_backup_is_refused_before_the_stack_is_touched(
        make_stack, tmp_path):
    stack = make_stack()
    plain = tmp_path / "plain.sql"
    plain.write_text("DROP TABLE users;\n")
    # The stack is not even up: the file is refused first, with exit 2 and its name.
    result = stack.invoke("restore", str(plain), "--yes-destroy=app")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"restore: {plain} is not a pg_dump custom-format file (one that `invoke backup` or "
        "`pg_dump -Fc` writes); nothing was touched")


def test_ctrl_c_during_a_restore_in_the_service_ends_its_session_and_changes_nothing(
        make_stack, tmp_path):
    # `compose exec` does not pass a signal into the container: the task ends the restore's
    # session on the server itself, so its one transaction rolls back.
    stack = make_stack()
    assert stack.invoke("deploy").returncode == 0
    stack.psql("INSERT INTO users (id, email) VALUES ('keep-me', 'keep@example.com')")
    assert stack.invoke("backup").returncode == 0
    dump = next((tmp_path / "backups").glob("*.dump"))
    stack.psql("UPDATE users SET email = 'changed@example.com' WHERE id = 'keep-me'")
    url = stack.values["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as watch, psycopg.connect(url) as reader:
        reader.execute("SELECT * FROM users").fetchall()  # holds a lock pg_restore waits for
        proc = subprocess.Popen(invoke_argv("restore", str(dump), "--yes-destroy=app"),
                                cwd=ROOT, env=stack.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while not watch.execute("SELECT 1 FROM pg_stat_activity WHERE application_name "
                                    "LIKE 'deploy-restore-%' AND wait_event_type = 'Lock'"
                                    ).fetchall():
                assert time.monotonic() < deadline, "pg_restore never waited for the lock"
                time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        reader.rollback()
        left = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                             "LIKE 'deploy-restore-%'").fetchone()[0]
    assert proc.returncode == 130, out + err
    assert err.strip() == ("restore: interrupted (SIGINT); the restore's transaction was ended "
                           "on the server: database 'app' in service postgres is as it was")
    assert "<== restore (pg_restore, one transaction) INTERRUPTED after" in out
    assert left == 0
    assert stack.psql("SELECT email FROM users WHERE id = 'keep-me'") == "changed@example.com"
