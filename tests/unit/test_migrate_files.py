"""Pure migration logic: discovery, directives, ordering and planning, on temp file trees."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from deploy.errors import ConfigError, InvalidMigrations
from deploy.migrate.files import (
    HistoryRow,
    discover,
    new_migration_filename,
    parse_file,
    plan_migrations,
    render_template,
    status_rows,
)

SQL = "CREATE TABLE IF NOT EXISTS t (id int);\n"


def tree(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    for name, body in files.items():
        path = tmp_path / name
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return tmp_path


def invalid(tmp_path, files) -> str:
    with pytest.raises(InvalidMigrations) as info:
        discover(tree(tmp_path, files))
    assert info.value.exit_code == 3
    return str(info.value)


def test_files_are_ordered_by_integer_prefix_not_by_string(tmp_path):
    found = discover(tree(tmp_path, {"1000_b.sql": SQL, "999_a.sql": SQL, "02_c.sql": SQL}))
    assert [m.filename for m in found] == ["02_c.sql", "999_a.sql", "1000_b.sql"]
    assert [m.version for m in found] == [2, 999, 1000]


def test_checksum_is_the_sha256_of_the_file_bytes(tmp_path):
    (m,) = discover(tree(tmp_path, {"001_a.sql": SQL}))
    assert m.checksum == hashlib.sha256(SQL.encode()).hexdigest()


def test_non_sql_files_are_ignored(tmp_path):
    found = discover(tree(tmp_path, {"001_a.sql": SQL, "README.md": "x", "notes.txt": "y"}))
    assert [m.filename for m in found] == ["001_a.sql"]


def test_two_files_with_one_number_are_rejected_naming_both(tmp_path):
    message = invalid(tmp_path, {"005_a.sql": SQL, "5_b.sql": SQL})
    assert "number 5 is used by more than one file: 005_a.sql, 5_b.sql" in message
    assert message.startswith("1 invalid migration file; nothing was applied:")


@pytest.mark.parametrize("name", ["add_users.sql", "005-users.sql", "005_Users.sql",
                                  "005_users table.sql", "005_.sql"])
def test_a_badly_named_sql_file_is_rejected(tmp_path, name):
    message = invalid(tmp_path, {name: SQL})
    assert f"{tmp_path / name}: file name must look like NNN_lower_snake_name.sql" in message


def test_an_empty_or_comment_only_file_is_rejected(tmp_path):
    message = invalid(tmp_path, {"001_empty.sql": "", "002_comments.sql": "-- nothing\n\n"})
    assert f"{tmp_path / '001_empty.sql'}: empty file" in message
    assert f"{tmp_path / '002_comments.sql'}: empty file" in message
    assert message.startswith("2 invalid migration files; nothing was applied:")


def test_a_non_utf8_file_is_rejected_with_the_offending_byte(tmp_path):
    message = invalid(tmp_path, {"001_latin1.sql": b"-- caf\xe9\nSELECT 1;\n"})
    assert (f"{tmp_path / '001_latin1.sql'}:1: not valid UTF-8 (byte 0xe9 at byte offset 6); "
            "save the file as UTF-8") in message


def test_the_no_transaction_directive_is_read_from_the_header(tmp_path):
    (m,) = discover(tree(tmp_path, {"001_idx.sql": "-- migrate: no-transaction\n"
                                                   "CREATE INDEX CONCURRENTLY IF NOT EXISTS i "
                                                   "ON t (id);\n"}))
    assert m.transactional is False


def test_an_unknown_directive_value_is_rejected_not_ignored(tmp_path):
    message = invalid(tmp_path, {"001_a.sql": "-- migrate: no-transactions\nSELECT 1;\n"})
    assert (f"{tmp_path / '001_a.sql'}:1: unknown directive value 'no-transactions' "
            "(expected one of: transaction, no-transaction)") in message


def test_a_directive_after_the_first_statement_is_rejected(tmp_path):
    message = invalid(tmp_path, {"001_a.sql": "SELECT 1;\n-- migrate: no-transaction\n"})
    assert (f"{tmp_path / '001_a.sql'}:2: '-- migrate:' directives belong in the comments "
            "before the first statement") in message


def test_rollback_notes_are_collected(tmp_path):
    (m,) = discover(tree(tmp_path, {"001_a.sql": "-- ROLLBACK: DROP TABLE IF EXISTS a;\n"
                                                 "-- ROLLBACK: DROP TABLE IF EXISTS b;\n"
                                                 + SQL}))
    assert m.rollback == ("DROP TABLE IF EXISTS a;", "DROP TABLE IF EXISTS b;")


def test_a_missing_migrations_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        discover(tmp_path / "nope")
    assert str(info.value) == f"MIGRATIONS_DIR: {tmp_path / 'nope'} is not a directory"


def test_all_problems_are_reported_together(tmp_path):
    message = invalid(tmp_path, {"bad.sql": SQL, "001_e.sql": "", "002_a.sql": SQL,
                                 "02_b.sql": SQL})
    assert message.startswith("3 invalid migration files")


def _migrations(tmp_path, names):
    return discover(tree(tmp_path, {n: f"-- {n}\n" + SQL for n in names}))


def test_plan_splits_applied_pending_changed_missing_and_out_of_order(tmp_path):
    ms = _migrations(tmp_path, ["001_a.sql", "002_b.sql", "003_c.sql", "010_d.sql"])
    by = {m.filename: m for m in ms}
    history = [
        HistoryRow("001_a.sql", by["001_a.sql"].checksum),
        HistoryRow("002_b.sql", "0" * 64),
        HistoryRow("005_gone.sql", "1" * 64),
    ]
    plan = plan_migrations(ms, history)
    assert [m.filename for m, _ in plan.applied] == ["001_a.sql"]
    assert [m.filename for m, _ in plan.changed] == ["002_b.sql"]
    assert [r.filename for r in plan.missing] == ["005_gone.sql"]
    assert [m.filename for m in plan.pending] == ["003_c.sql", "010_d.sql"]
    assert [m.filename for m in plan.out_of_order] == ["003_c.sql"]
    assert plan.drift
    assert plan.last_applied_version == 5


def test_with_allow_ahead_rows_above_every_file_are_a_newer_releases_not_drift(tmp_path):
    ms = _migrations(tmp_path, ["001_a.sql", "003_c.sql"])
    by = {m.filename: m for m in ms}
    history = [HistoryRow(n, by[n].checksum) for n in ("001_a.sql", "003_c.sql")]
    history += [HistoryRow("002_gone.sql", "2" * 64), HistoryRow("004_new.sql", "4" * 64),
                HistoryRow("010_newer.sql", "5" * 64)]
    plan = plan_migrations(ms, history, allow_ahead=True)
    assert [r.filename for r in plan.ahead] == ["004_new.sql", "010_newer.sql"]
    assert [r.filename for r in plan.missing] == ["002_gone.sql"]  # below 003: deleted
    assert plan.drift
    plain = plan_migrations(ms, history)
    assert plain.ahead == [] and len(plain.missing) == 3
    only_newer = plan_migrations(ms, history[:2] + history[3:], allow_ahead=True)
    assert not only_newer.drift and only_newer.pending == []


def test_legacy_rows_without_checksum_count_as_applied_not_drift(tmp_path):
    ms = _migrations(tmp_path, ["005_a.sql", "006_b.sql"])
    plan = plan_migrations(ms, [HistoryRow("005_a.sql", None)])
    assert [m.filename for m, _ in plan.unrecorded] == ["005_a.sql"]
    assert [m.filename for m in plan.pending] == ["006_b.sql"]
    assert not plan.drift


def test_new_migration_takes_the_next_number_with_the_same_padding(tmp_path):
    ms = _migrations(tmp_path, ["005_a.sql", "022_ai_monitoring_system.sql"])
    assert new_migration_filename(ms, "user_roles_system") == "023_user_roles_system.sql"
    assert new_migration_filename([], "first") == "001_first.sql"
    with pytest.raises(ConfigError) as info:
        new_migration_filename(ms, "User Roles")
    assert str(info.value).startswith("NAME: 'User Roles' must be lower-case letters")


def test_the_template_is_idempotent_and_has_a_rollback_note(tmp_path):
    text = render_template("023_user_roles_system.sql", "user_roles_system")
    assert "CREATE TABLE IF NOT EXISTS user_roles_system" in text
    assert "-- ROLLBACK: DROP TABLE IF EXISTS user_roles_system;" in text
    m = parse_file(tmp_path / "023_user_roles_system.sql", text.encode())
    assert m.rollback == ("DROP TABLE IF EXISTS user_roles_system;",)


def test_a_deleted_file_whose_deletion_was_accepted_is_removed_not_drift(tmp_path):
    from datetime import UTC, datetime

    ms = _migrations(tmp_path, ["001_a.sql"])
    accepted = datetime(2026, 1, 2, tzinfo=UTC)
    history = [HistoryRow("001_a.sql", ms[0].checksum),
               HistoryRow("002_gone.sql", "1" * 64, missing_accepted_at=accepted),
               HistoryRow("003_gone_too.sql", "2" * 64)]
    plan = plan_migrations(ms, history)
    assert [r.filename for r in plan.removed] == ["002_gone.sql"]
    assert [r.filename for r in plan.missing] == ["003_gone_too.sql"]
    assert plan.drift  # 003 only
    del history[2]
    assert not plan_migrations(ms, history).drift


def test_status_rows_show_both_checksums_of_a_changed_file(tmp_path):
    ms = _migrations(tmp_path, ["001_a.sql", "002_b.sql"])
    history = [HistoryRow("001_a.sql", "0" * 64), HistoryRow("005_gone.sql", "1" * 64)]
    rows = {r["filename"]: r for r in status_rows(ms, plan_migrations(ms, history))}
    assert rows["001_a.sql"]["state"] == "changed"
    assert rows["001_a.sql"]["checksum"] == ms[0].checksum
    assert rows["001_a.sql"]["recorded_checksum"] == "0" * 64
    assert rows["002_b.sql"]["recorded_checksum"] is None  # pending: no row
    assert rows["005_gone.sql"]["state"] == "missing"
    assert (rows["005_gone.sql"]["checksum"], rows["005_gone.sql"]["recorded_checksum"]) == (
        None, "1" * 64)


def test_invalid_files_are_shown_relative_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "migrations").mkdir()
    message = invalid(tmp_path / "migrations", {"001_empty.sql": ""})
    assert "\nmigrations/001_empty.sql: empty file" in message
    with pytest.raises(ConfigError) as info:
        discover(tmp_path / "nope")
    assert str(info.value) == "MIGRATIONS_DIR: nope is not a directory"
