"""`invoke backup` and `invoke restore` against an external database (DB_SERVICE empty): the
real PostgreSQL of the fixtures, pg_dump/pg_restore in a throwaway POSTGRES_IMAGE container."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid

import psycopg
import pytest

from tests.support.base import LOCAL_IMAGES_ENV, invoke_argv, read_env_file
from tests.support.pg import PASSWORD, with_database

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="needs Docker")


@pytest.fixture
def external(project, db, tmp_path):
    """The project pointed at its database as an external one, with a table and a row."""
    image = (read_env_file(LOCAL_IMAGES_ENV).get("POSTGRES_IMAGE")
             if LOCAL_IMAGES_ENV.exists() else None) or "postgres:16"
    db.execute("CREATE TABLE users (id text PRIMARY KEY, email text NOT NULL)")
    db.execute("INSERT INTO users VALUES ('keep-me', 'keep@example.com')")
    project.env.update({"DB_SERVICE": "", "BACKUP_DIR": str(tmp_path / "backups"),
                        "POSTGRES_IMAGE": image, "COMPOSE_PROJECT_NAME": "shop"})
    return project


def _database(url: str) -> str:
    return url.rsplit("/", 1)[-1].split("?")[0]


def test_backup_then_a_changed_row_then_restore_brings_the_row_back(external, db, tmp_path):
    name = _database(external.url)
    made = external.invoke("backup")
    assert made.returncode == 0, made.stdout + made.stderr
    files = list((tmp_path / "backups").glob(f"shop-{name}-*.dump"))
    assert len(files) == 1
    assert files[0].stat().st_mode & 0o777 == 0o600
    assert files[0].read_bytes()[:5] == b"PGDMP"
    assert f"   backup written: {files[0]} (" in made.stdout
    assert f"==> backup (database {name!r} at 127.0.0.1:" in made.stdout
    assert PASSWORD not in made.stdout + made.stderr

    db.execute("UPDATE users SET email = 'changed@example.com'")
    db.execute("CREATE TABLE later (id int)")
    refused = external.invoke("restore", files[0].name)
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert refused.stderr.strip() == (
        f"restore: replaces the contents of database {name!r}; not interactive, so pass "
        f"--yes-destroy={name} (nothing was touched)")
    assert db.execute("SELECT email FROM users").fetchone()[0] == "changed@example.com"

    done = external.invoke("restore", files[0].name, f"--yes-destroy={name}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert db.execute("SELECT email FROM users").fetchone()[0] == "keep@example.com"
    assert "==> check the file (readable, custom format)" in done.stdout
    assert "==> restore (pg_restore, one transaction)" in done.stdout
    assert "==> check-tables --expected" in done.stdout
    # A table made after the backup is not in it: left as it is, and said.
    assert "   not in the backup, so left as they are: public.later" in done.stdout
    assert db.execute("SELECT to_regclass('later') IS NOT NULL").fetchone()[0]
    assert f"restore: done; database {name!r} at 127.0.0.1:" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr


def test_a_missing_or_foreign_file_is_refused_naming_it_before_anything(external, db,
                                                                        tmp_path):
    name = _database(external.url)
    missing = external.invoke("restore", "nope.dump", f"--yes-destroy={name}")
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert missing.stderr.strip() == (f"restore: {tmp_path}/backups/nope.dump: No such file "
                                      "or directory; nothing was touched")
    plain = tmp_path / "plain.sql"
    plain.write_text("DROP TABLE users;\n")
    foreign = external.invoke("restore", str(plain), f"--yes-destroy={name}")
    assert foreign.returncode == 2, foreign.stdout + foreign.stderr
    assert foreign.stderr.strip() == (
        f"restore: {plain} is not a pg_dump custom-format file (one that `invoke backup` or "
        "`pg_dump -Fc` writes); nothing was touched")
    assert "==> restore" not in foreign.stdout
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 1


def test_a_role_without_privileges_gets_one_line_and_the_database_stays_as_it_was(
        external, db, pg_admin_url, tmp_path):
    made = external.invoke("backup")
    assert made.returncode == 0, made.stdout + made.stderr
    dump = next((tmp_path / "backups").glob("*.dump"))
    role = "r_" + uuid.uuid4().hex[:8]
    name = _database(external.url)
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'weak-{role}'")
    try:
        url = with_database(pg_admin_url, name).replace(
            pg_admin_url.split("://", 1)[1].split("@", 1)[0], f"{role}:weak-{role}", 1)
        env = {"DATABASE_URL": url}
        denied = external.invoke("backup", env=env)
        assert denied.returncode == 2, denied.stdout + denied.stderr
        assert denied.stderr.strip() == ("backup: permission denied for table users; no "
                                         "backup written")
        db.execute("UPDATE users SET email = 'changed@example.com'")
        refused = external.invoke("restore", str(dump), f"--yes-destroy={name}", env=env)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr.strip() == ("restore: must be owner of table users; nothing was "
                                          "changed (one transaction, rolled back)")
        assert f"weak-{role}" not in denied.stdout + denied.stderr + refused.stdout + \
            refused.stderr
        assert db.execute("SELECT email FROM users").fetchone()[0] == "changed@example.com"
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY {role}; DROP ROLE {role}')


def test_ctrl_c_while_pg_restore_waits_leaves_the_database_as_it_was(external, db,
                                                                    database_url, tmp_path):
    name = _database(external.url)
    assert external.invoke("backup").returncode == 0
    dump = next((tmp_path / "backups").glob("*.dump"))
    db.execute("UPDATE users SET email = 'changed@example.com'")
    # A reader's open transaction: pg_restore's DROP TABLE waits for it, inside its own.
    with psycopg.connect(database_url) as reader:
        reader.execute("SELECT * FROM users").fetchall()
        proc = subprocess.Popen(
            invoke_argv("restore", str(dump), f"--yes-destroy={name}"), cwd=external.root,
            env=external.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not db.execute("SELECT 1 FROM pg_stat_activity WHERE application_name "
                                 "LIKE 'deploy-restore-%' AND wait_event_type = 'Lock'"
                                 ).fetchall():
                assert time.monotonic() < deadline, "pg_restore never waited for the lock"
                time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        reader.rollback()
    # pg_restore got the SIGINT too (docker run passes it on) and cancelled its own
    # statement; the session the task then looks for is gone.
    assert proc.returncode == 130, out + err
    assert err.strip() == (
        "restore: interrupted (SIGINT); no restore session is left on the server: pg_restore "
        f"stopped and its transaction rolled back (database {name!r} at 127.0.0.1:"
        f"{psycopg.conninfo.conninfo_to_dict(database_url)['port']} is as it was), unless it "
        "had just committed (then it is as in the backup); `invoke check-tables --expected` "
        "and the data tell which")
    assert "<== restore (pg_restore, one transaction) INTERRUPTED after" in out
    assert db.execute("SELECT email FROM users").fetchone()[0] == "changed@example.com"
    assert not db.execute("SELECT 1 FROM pg_stat_activity WHERE application_name LIKE "
                          "'deploy-restore-%'").fetchall()
