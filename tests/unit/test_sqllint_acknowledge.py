"""Acknowledging a deploy-safety finding with ``-- lint: allow RULE -- REASON``."""

from __future__ import annotations

import json

from deploy.sqllint.lint import format_findings, lint_directory, lint_sql
from deploy.sqllint.safety import RULES

ROLLBACK = "-- ROLLBACK: SELECT 1;\n"
DROP = "ALTER TABLE users DROP COLUMN IF EXISTS legacy;"


def findings(sql: str) -> list[tuple[str, int, int, str, str | None]]:
    """(severity, line, col, code, acknowledged reason) of every finding of ROLLBACK + sql."""
    return [
        (f.severity, f.line, f.col, f.code, f.acknowledged)
        for f in lint_sql("m.sql", ROLLBACK + sql, True)
    ]


def messages(sql: str) -> list[str]:
    return [str(f) for f in lint_sql("m.sql", ROLLBACK + sql, True) if f.severity != "info"]


def test_a_directive_above_the_statement_acknowledges_its_finding_with_the_reason():
    sql = f"-- lint: allow drop-column -- no release reads legacy since 4.2\n{DROP}"

    assert findings(sql) == [("info", 3, 1, "drop-column", "no release reads legacy since 4.2")]


def test_a_directive_trailing_the_statement_on_its_line_acknowledges_it():
    sql = f"{DROP}  -- lint: allow drop-column -- unused since 4.2\nDROP TABLE IF EXISTS t2;"

    assert findings(sql) == [
        ("info", 2, 1, "drop-column", "unused since 4.2"),
        ("warning", 3, 1, "drop-table", None),
    ]


def test_a_directive_inside_a_multi_line_statement_acknowledges_that_statement():
    sql = (
        "ALTER TABLE users\n"
        "    -- lint: allow set-not-null -- users has under 100 rows everywhere\n"
        "    ALTER COLUMN email SET NOT NULL;"
    )

    assert findings(sql) == [("info", 2, 1, "set-not-null", "users has under 100 rows everywhere")]


def test_one_directive_acknowledges_one_finding_and_two_acknowledge_two():
    one = "-- lint: allow drop-table -- both are empty\nDROP TABLE IF EXISTS a, b;"
    two = "-- lint: allow drop-table -- a is empty\n-- lint: allow drop-table -- b is empty\n" \
          "DROP TABLE IF EXISTS a, b;"

    assert findings(one) == [
        ("info", 3, 1, "drop-table", "both are empty"),
        ("warning", 3, 1, "drop-table", None),
    ]
    assert findings(two) == [
        ("info", 4, 1, "drop-table", "a is empty"),
        ("info", 4, 1, "drop-table", "b is empty"),
    ]


def test_a_directive_covers_only_its_own_statement_not_a_later_one():
    sql = (
        "-- lint: allow drop-column -- meant for the statement below\n"
        "SELECT 1;\n"
        f"{DROP}"
    )

    assert messages(sql) == [
        'm.sql:2:1: warning: "-- lint: allow drop-column" acknowledges nothing: the statement '
        "it covers (line 3) has no drop-column finding; remove it [stale-allow]",
        "m.sql:4:1: warning: ALTER TABLE users DROP COLUMN legacy: the release still serving "
        "during the deploy reads and writes legacy and fails once it is gone; contract in two "
        "releases: ship code that no longer uses legacy, then drop it in a later release's "
        "migration [drop-column]",
    ]


def test_a_directive_with_nothing_after_it_is_stale():
    assert messages("SELECT 1;\n-- lint: allow drop-table -- cleanup\n") == [
        'm.sql:3:1: warning: "-- lint: allow drop-table" acknowledges nothing: no statement '
        "follows it; remove it [stale-allow]"
    ]


def test_a_directive_without_a_reason_is_an_error_and_acknowledges_nothing():
    sql = f"-- lint: allow drop-column\n{DROP}"

    assert [m.split(": warning: ")[0] for m in messages(sql)][1:] == ["m.sql:3:1"]
    assert messages(sql)[0] == (
        'm.sql:2:1: error: "-- lint: allow drop-column" needs a reason: write '
        '"-- lint: allow drop-column -- <why it is safe here>" [lint-directive]'
    )


def test_an_empty_reason_after_the_dashes_is_missing_too():
    assert messages(f"-- lint: allow drop-column --   \n{DROP}")[0].endswith(
        '"-- lint: allow drop-column -- <why it is safe here>" [lint-directive]'
    )


def test_an_unknown_rule_is_an_error_naming_the_rules_that_can_be_acknowledged():
    known = (
        "drop-column, drop-table, rename-column, rename-table, add-column-not-null, "
        "add-column-volatile-default, change-column-type, set-not-null, "
        "create-index-not-concurrently, drop-index-not-concurrently, add-foreign-key, "
        "add-check-constraint, add-unique-constraint, add-primary-key"
    )

    assert ", ".join(RULES) == known
    assert messages(f"-- lint: allow drop-columns -- typo\n{DROP}")[0] == (
        f'm.sql:2:1: error: "-- lint: allow drop-columns": unknown rule; the rules a directive '
        f"can acknowledge are {known} [lint-directive]"
    )


def test_errors_and_the_rollback_warning_cannot_be_acknowledged():
    [error, _] = messages(f"-- lint: allow missing-rollback -- documented elsewhere\n{DROP}")

    assert error.startswith('m.sql:2:1: error: "-- lint: allow missing-rollback": unknown rule;')


def test_a_malformed_lint_comment_is_an_error_showing_the_syntax():
    assert messages(f"-- lint: ignore drop-column -- x\n{DROP}")[0] == (
        'm.sql:2:1: error: "-- lint: ignore drop-column -- x": write '
        '"-- lint: allow <rule> -- <reason>" [lint-directive]'
    )


def test_lint_text_in_a_string_is_not_a_directive():
    sql = f"INSERT INTO notes VALUES ('-- lint: allow drop-column -- no');\n{DROP}"

    assert [f[0] for f in findings(sql)] == ["warning"]


def test_a_directive_inside_a_do_body_acknowledges_the_next_finding_of_its_rule_in_the_block():
    sql = """DO $$
BEGIN
    ALTER TABLE grants ADD CONSTRAINT chk_a CHECK (a > 0);
    -- lint: allow add-check-constraint -- b was added NULL just before: every row passes
    ALTER TABLE grants ADD CONSTRAINT chk_b CHECK (b > 0);
END $$;
"""

    assert findings(sql) == [
        ("warning", 4, 28, "add-check-constraint", None),
        ("info", 6, 28, "add-check-constraint", "b was added NULL just before: every row passes"),
    ]


def test_a_directive_above_a_do_block_acknowledges_a_finding_inside_it():
    sql = (
        "-- lint: allow add-foreign-key -- applications is created empty by this release\n"
        "DO $$ BEGIN\n"
        "    ALTER TABLE applications ADD CONSTRAINT fk FOREIGN KEY (g) REFERENCES grants (id);\n"
        "END $$;"
    )

    assert findings(sql) == [
        ("info", 4, 34, "add-foreign-key", "applications is created empty by this release")
    ]


# --- lint-migrations output ---------------------------------------------------------------


def write(directory, name: str, sql: str) -> None:
    (directory / name).write_text(ROLLBACK + sql, encoding="utf-8")


def test_lint_output_hides_acknowledged_findings_and_json_lists_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    write(migrations, "001_a.sql", f"-- lint: allow drop-column -- unused since 4.2\n{DROP}")
    write(migrations, "002_b.sql", "DROP INDEX IF EXISTS idx_old;")

    found = lint_directory(migrations)
    text, failure = format_findings(found)
    [document], _ = format_findings(found, as_json=True)

    assert failure is None
    assert text == [
        "migrations/002_b.sql:2:1: warning: DROP INDEX idx_old without CONCURRENTLY: takes an "
        "ACCESS EXCLUSIVE lock on its table, so every read and write queues behind any running "
        "query; use DROP INDEX CONCURRENTLY IF EXISTS idx_old in a file whose first line is "
        '"-- migrate: no-transaction" [drop-index-not-concurrently]',
        "lint: 0 error(s), 1 warning(s)",
    ]
    assert [(f["file"], f["severity"], f["code"], f.get("acknowledged"))
            for f in json.loads(document)] == [
        ("migrations/001_a.sql", "info", "drop-column", "unused since 4.2"),
        ("migrations/002_b.sql", "warning", "drop-index-not-concurrently", None),
    ]


def test_a_bad_directive_fails_lint_migrations(tmp_path):
    write(tmp_path, "001_a.sql", f"-- lint: allow drop-column\n{DROP}")

    lines, failure = format_findings(lint_directory(tmp_path))

    assert str(failure) == "lint-migrations: 1 error(s)"
    assert lines[-1] == "lint: 1 error(s), 1 warning(s)"
