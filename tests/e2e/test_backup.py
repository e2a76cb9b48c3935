"""`invoke backup` and `invoke restore` on the real sample stack: pg_dump and pg_restore
inside its postgres service (DB_SERVICE's default)."""

from __future__ import annotations

import re


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
