"""Migration SQL through pglast (deploy/migrate/sql.py) and the lint findings built on it."""

from __future__ import annotations

import pytest

from deploy.migrate.files import line_col
from deploy.migrate.sql import SqlSyntaxError, Statement, created_tables, split_statements
from deploy.sqllint.findings import Finding
from deploy.sqllint.lint import lint_sql
from deploy.sqllint.safety import RULES

ROLLBACK = "-- ROLLBACK: DROP TABLE IF EXISTS t;\n"
RERUN = "(migrations must be safe to re-run)"
NO_TX_FIX = 'add "-- migrate: no-transaction" as the first line of the file'


def lint(text: str, transactional: bool = True) -> list[str]:
    return [str(f) for f in lint_sql("m.sql", text, transactional)]


def lint_idempotency(text: str, transactional: bool = True) -> list[str]:
    """Findings without the deploy-safety warnings (those are tested in test_sqllint_safety.py)."""
    return [str(f) for f in lint_sql("m.sql", text, transactional) if f.code not in RULES]


# --- statements and positions -------------------------------------------------------


def test_split_statements_offsets_are_characters_after_non_ascii_comments():
    text = "-- é commentaire\nSELECT 1;\n/* ééé */ SELECT 'ü';\nCREATE TABLE x (a int);\n"

    statements = split_statements(text)

    assert statements == [
        Statement(17, 25, "SELECT 1"),
        Statement(37, 47, "SELECT 'ü'"),
        Statement(49, 71, "CREATE TABLE x (a int)"),
    ]
    assert all(text[s.start : s.end] == s.text for s in statements)


def test_split_statements_keeps_a_do_block_with_inner_semicolons_as_one_statement():
    text = "DO $$ BEGIN PERFORM 1; PERFORM 2; END $$;\nSELECT 3;"

    texts = [s.text for s in split_statements(text)]

    assert texts == ["DO $$ BEGIN PERFORM 1; PERFORM 2; END $$", "SELECT 3"]


def test_split_statements_of_a_comment_only_file_is_empty():
    assert split_statements("-- nothing here\n/* nor here */\n") == []


def test_split_statements_raises_a_syntax_error_with_the_failing_token_position():
    with pytest.raises(SqlSyntaxError) as caught:
        split_statements("SELECT 1;\nSELEC 2;")

    assert (caught.value.line, caught.value.col) == (2, 1)
    assert caught.value.message == 'syntax error at or near "SELEC"'


def test_line_col_is_one_based_and_counts_characters():
    text = "ab\né€x\n"

    assert line_col(text, 0) == (1, 1)
    assert line_col(text, 3) == (2, 1)
    assert line_col(text, 5) == (2, 3)
    assert line_col(text, len(text)) == (3, 1)


def test_syntax_error_on_line_3_column_5_reports_3_and_5():
    text = "-- migration: é, ü, 漢字\nSELECT 1;\n    CREAT TABLE x (a int);\n"

    with pytest.raises(SqlSyntaxError) as caught:
        created_tables(text)

    err = caught.value
    assert (err.line, err.col) == (3, 5)
    assert err.message == 'syntax error at or near "CREAT"'
    assert str(err) == '3:5: syntax error at or near "CREAT"'


def test_syntax_error_column_counts_characters_not_utf8_bytes_on_the_same_line():
    # "SELECT 'ééé' frm x": x is the 18th character but the 21st byte.
    with pytest.raises(SqlSyntaxError) as caught:
        split_statements("SELECT 'ééé' frm x;")

    assert (caught.value.line, caught.value.col) == (1, 18)
    assert caught.value.message == 'syntax error at or near "x"'


def test_syntax_error_at_end_of_input_points_just_after_the_last_token():
    with pytest.raises(SqlSyntaxError) as caught:
        created_tables("SELECT 1;\nCREATE TABLE\n\n")

    assert (caught.value.line, caught.value.col) == (2, 13)
    assert caught.value.message == "syntax error at end of input"


def test_unterminated_string_reports_where_the_string_starts():
    with pytest.raises(SqlSyntaxError) as caught:
        created_tables("-- é\nINSERT INTO t VALUES ('oops);\n")

    assert (caught.value.line, caught.value.col) == (2, 23)
    assert caught.value.message == 'unterminated quoted string at or near "\'oops);\n"'


# --- created tables -----------------------------------------------------------------


def test_created_tables_lists_every_form_of_create_table_in_file_order():
    text = """
        CREATE TABLE IF NOT EXISTS users (id VARCHAR(255) PRIMARY KEY);
        CREATE TABLE billing.invoices (id int);
        CREATE UNLOGGED TABLE cache_entries (k text);
        CREATE TABLE IF NOT EXISTS report AS SELECT 1 AS n;
        SELECT 1 AS n INTO snapshot;
        CREATE TABLE "MixedCase" (a int);
    """

    assert created_tables(text) == [
        (None, "users"),
        ("billing", "invoices"),
        (None, "cache_entries"),
        (None, "report"),
        (None, "snapshot"),
        (None, "MixedCase"),
    ]


def test_created_tables_ignores_temporary_tables_views_and_materialized_views():
    text = """
        CREATE TEMP TABLE scratch (a int);
        CREATE VIEW v AS SELECT 1;
        CREATE MATERIALIZED VIEW mv AS SELECT 1;
        CREATE TABLE kept (a int);
    """

    assert created_tables(text) == [(None, "kept")]


def test_created_tables_includes_tables_created_inside_do_blocks():
    text = """
        DO $$
        DECLARE v int;
        BEGIN
            SELECT 1 INTO v;
            IF NOT EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'guarded') THEN
                CREATE TABLE guarded (a int);
            END IF;
            FOR i IN 1..2 LOOP
                BEGIN
                    CREATE TABLE in_loop (a int);
                EXCEPTION WHEN duplicate_table THEN NULL;
                END;
            END LOOP;
            EXECUTE 'CREATE TABLE dynamic_sql_is_invisible (a int)';
        END $$;
    """

    assert created_tables(text) == [(None, "guarded"), (None, "in_loop")]


def test_created_tables_skips_do_blocks_in_other_languages():
    text = "DO $$ CREATE TABLE t (a int) $$ LANGUAGE sql_like_thing;"

    assert created_tables(text) == []


def test_created_tables_forgets_tables_the_file_drops_later():
    text = """
        CREATE TABLE IF NOT EXISTS keep (a int);
        CREATE TABLE IF NOT EXISTS scratch (a int);
        CREATE TABLE IF NOT EXISTS app.tmp (a int);
        DROP TABLE IF EXISTS scratch, app.tmp;
    """

    assert created_tables(text) == [(None, "keep")]


def test_created_tables_follows_renames_and_schema_moves():
    text = """
        CREATE TABLE IF NOT EXISTS draft (a int);
        ALTER TABLE draft RENAME TO final;
        CREATE TABLE IF NOT EXISTS moving (a int);
        ALTER TABLE moving SET SCHEMA archive;
    """

    assert created_tables(text) == [(None, "final"), ("archive", "moving")]


def test_created_tables_lists_a_table_created_twice_once():
    text = "CREATE TABLE IF NOT EXISTS t (a int);\nCREATE TABLE IF NOT EXISTS t (a int);"

    assert created_tables(text) == [(None, "t")]


def test_created_tables_reports_a_broken_do_body_at_the_do_statement():
    text = "-- é\nSELECT 1;\n  DO $$ BEGIN ALTER TABLE t ADD COLUM x int; END $$;\n"

    with pytest.raises(SqlSyntaxError) as caught:
        created_tables(text)

    assert (caught.value.line, caught.value.col) == (3, 3)
    assert caught.value.message == 'in DO block: syntax error at or near "int"'


# --- findings -----------------------------------------------------------------------


def test_finding_renders_as_file_line_col_severity_message_and_code():
    finding = Finding("migrations/020_x.sql", 14, 5, "error", "syntax", "bad")

    assert str(finding) == "migrations/020_x.sql:14:5: error: bad [syntax]"
    assert finding.as_dict() == {
        "file": "migrations/020_x.sql",
        "line": 14,
        "col": 5,
        "severity": "error",
        "code": "syntax",
        "message": "bad",
    }


def test_an_idempotent_file_with_a_rollback_note_has_no_findings():
    text = """-- ROLLBACK: DROP TABLE IF EXISTS t;
CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY);
CREATE INDEX IF NOT EXISTS idx_t_id ON t (id);
ALTER TABLE t ADD COLUMN IF NOT EXISTS note text, DROP COLUMN IF EXISTS old;
DROP INDEX IF EXISTS idx_t_id;
INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING;
"""

    assert lint(text) == []


def test_lint_reports_a_syntax_error_as_the_only_finding_with_its_position():
    text = "-- é ü\nCREATE TABLE t (a int);\n    CREATE TABL u (a int);\n"

    assert lint(text) == ['m.sql:3:12: error: syntax error at or near "TABL" [syntax]']


def test_create_table_without_if_not_exists_is_an_error_at_the_statement():
    text = ROLLBACK + "-- é\n  CREATE TABLE app.t (a int);\nCREATE TABLE u AS SELECT 1;\n"

    assert lint(text) == [
        f"m.sql:3:3: error: CREATE TABLE app.t: add IF NOT EXISTS {RERUN} "
        "[create-table-not-idempotent]",
        f"m.sql:4:1: error: CREATE TABLE u: add IF NOT EXISTS {RERUN} "
        "[create-table-not-idempotent]",
    ]


def test_select_into_is_reported_as_a_create_table_that_cannot_be_idempotent():
    assert lint(ROLLBACK + "SELECT 1 AS n INTO snapshot;") == [
        "m.sql:2:1: error: SELECT … INTO snapshot cannot be made idempotent: "
        f"write CREATE TABLE IF NOT EXISTS snapshot AS SELECT … {RERUN} "
        "[create-table-not-idempotent]"
    ]


def test_temporary_tables_need_no_if_not_exists():
    assert lint(ROLLBACK + "CREATE TEMP TABLE scratch (a int);") == []


def test_create_index_without_if_not_exists_is_an_error_and_unnamed_ones_say_to_name_them():
    text = ROLLBACK + "CREATE INDEX idx_t_a ON t (a);\nCREATE UNIQUE INDEX ON t (b);\n"

    assert lint_idempotency(text) == [
        f"m.sql:2:1: error: CREATE INDEX idx_t_a: add IF NOT EXISTS {RERUN} "
        "[create-index-not-idempotent]",
        f"m.sql:3:1: error: CREATE INDEX on t: name the index and add IF NOT EXISTS {RERUN} "
        "[create-index-not-idempotent]",
    ]


def test_add_column_without_if_not_exists_points_at_the_column():
    text = ROLLBACK + (
        "ALTER TABLE grants\n    ADD COLUMN IF NOT EXISTS a int,\n    ADD COLUMN é_b text;"
    )

    assert lint(text) == [
        f"m.sql:4:16: error: ALTER TABLE grants ADD COLUMN é_b: add IF NOT EXISTS {RERUN} "
        "[add-column-not-idempotent]"
    ]


def test_drops_without_if_exists_are_errors_naming_what_is_dropped():
    text = ROLLBACK + (
        "DROP TABLE old_a, app.old_b;\n"
        "DROP INDEX idx_x;\n"
        "DROP VIEW v;\n"
        "DROP MATERIALIZED VIEW mv;\n"
        "DROP FUNCTION f(int);\n"
        "DROP TRIGGER trg ON t;\n"
        "ALTER TABLE t DROP COLUMN c, DROP CONSTRAINT k;\n"
        "DROP TABLE IF EXISTS fine;\n"
    )

    assert lint_idempotency(text) == [
        f"m.sql:2:1: error: DROP TABLE old_a, app.old_b: add IF EXISTS {RERUN} "
        "[drop-not-idempotent]",
        f"m.sql:3:1: error: DROP INDEX idx_x: add IF EXISTS {RERUN} [drop-not-idempotent]",
        f"m.sql:4:1: error: DROP VIEW v: add IF EXISTS {RERUN} [drop-not-idempotent]",
        f"m.sql:5:1: error: DROP MATERIALIZED VIEW mv: add IF EXISTS {RERUN} [drop-not-idempotent]",
        f"m.sql:6:1: error: DROP FUNCTION f: add IF EXISTS {RERUN} [drop-not-idempotent]",
        f"m.sql:7:1: error: DROP TRIGGER trg ON t: add IF EXISTS {RERUN} [drop-not-idempotent]",
        f"m.sql:8:1: error: ALTER TABLE t DROP COLUMN c: add IF EXISTS {RERUN} "
        "[drop-not-idempotent]",
        f"m.sql:8:1: error: ALTER TABLE t DROP CONSTRAINT k: add IF EXISTS {RERUN} "
        "[drop-not-idempotent]",
    ]


def test_statements_inside_the_teams_do_block_idiom_are_not_flagged_as_not_idempotent():
    text = (
        ROLLBACK
        + """DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_name = 'grants' AND column_name = 'deadline'
    ) THEN
        ALTER TABLE grants ADD COLUMN deadline TIMESTAMP;
        CREATE INDEX idx_grants_deadline ON grants (deadline);
    END IF;
END $$;
"""
    )

    assert lint_idempotency(text) == []


def test_create_index_concurrently_in_a_transactional_file_says_to_add_the_directive():
    text = ROLLBACK + "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_t_a ON t (a);"

    assert lint(text) == [
        "m.sql:2:1: error: CREATE INDEX CONCURRENTLY cannot run inside a transaction: "
        f"{NO_TX_FIX} [concurrently-in-transaction]"
    ]


def test_concurrent_index_changes_are_fine_in_a_no_transaction_file():
    text = (
        "-- migrate: no-transaction\n"
        + ROLLBACK
        + "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_t_a ON t (a);\n"
        + "DROP INDEX CONCURRENTLY IF EXISTS idx_t_old;\n"
    )

    assert lint(text, transactional=False) == []


def test_drop_index_concurrently_in_a_transactional_file_is_an_error():
    text = ROLLBACK + "DROP INDEX CONCURRENTLY IF EXISTS idx_t_a;"

    assert lint(text) == [
        "m.sql:2:1: error: DROP INDEX CONCURRENTLY cannot run inside a transaction: "
        f"{NO_TX_FIX} [concurrently-in-transaction]"
    ]


def test_explicit_transaction_statements_are_errors_because_the_runner_wraps_each_file():
    text = ROLLBACK + "BEGIN;\nCREATE TABLE IF NOT EXISTS t (a int);\nCOMMIT;\nROLLBACK;\n"

    assert lint(text) == [
        "m.sql:2:1: error: BEGIN: the runner already runs each file in its own transaction; "
        "remove it [explicit-transaction]",
        "m.sql:4:1: error: COMMIT: the runner already runs each file in its own transaction; "
        "remove it [explicit-transaction]",
        "m.sql:5:1: error: ROLLBACK: the runner already runs each file in its own transaction; "
        "remove it [explicit-transaction]",
    ]


def test_explicit_transaction_in_a_no_transaction_file_explains_autocommit():
    assert lint(ROLLBACK + "START TRANSACTION;", transactional=False) == [
        "m.sql:2:1: error: START TRANSACTION: the runner runs this file statement by "
        "statement in autocommit; remove it [explicit-transaction]"
    ]


def test_savepoints_are_not_explicit_transactions():
    assert lint(ROLLBACK + "SAVEPOINT s;\nRELEASE SAVEPOINT s;") == []


def test_a_file_without_a_rollback_note_gets_a_warning_suggesting_one():
    text = "CREATE TABLE IF NOT EXISTS a (x int);\nCREATE TABLE IF NOT EXISTS b (x int);\n"

    assert lint(text) == [
        'm.sql:1:1: warning: no "-- ROLLBACK:" note: document the undo, '
        'e.g. "-- ROLLBACK: DROP TABLE IF EXISTS a, b;" [missing-rollback]'
    ]


def test_rollback_text_inside_a_string_or_do_body_is_not_a_rollback_note():
    text = (
        "INSERT INTO notes (body) VALUES ('-- ROLLBACK: not a comment');\n"
        "DO $$ BEGIN -- ROLLBACK: inside the body\n PERFORM 1; END $$;\n"
    )

    assert [f.code for f in lint_sql("m.sql", text, True)] == ["missing-rollback"]


def test_a_rollback_note_anywhere_in_the_file_counts():
    text = "CREATE TABLE IF NOT EXISTS a (x int);\n\n--ROLLBACK: DROP TABLE IF EXISTS a;\n"

    assert lint(text) == []


def test_findings_carry_the_file_name_given_by_the_caller():
    [finding] = lint_sql("migrations/020_ai_cost_management_system.sql", "SELECT 1 frm x;", True)

    assert finding == Finding(
        "migrations/020_ai_cost_management_system.sql",
        1,
        14,
        "error",
        "syntax",
        'syntax error at or near "x"',
    )
