"""Deploy-safety lint: changes that break the release still serving during a deploy.

Each rule fires on the risky form (with its expand/contract advice) and stays silent on
the safe form. Pure: SQL text in, findings out.
"""

from __future__ import annotations

from pathlib import Path

from deploy.sqllint.lint import lint_sql
from deploy.sqllint.safety import RULES

ROLLBACK = "-- ROLLBACK: SELECT 1;\n"  # line 1 of every file below
NO_TX = "-- migrate: no-transaction\n"
OLD = "the release still serving during the deploy"
LATER = "in a later migration (its own transaction; reads and writes continue)"
BLOCKS = "under an ACCESS EXCLUSIVE lock, blocking every read and write of"
NO_TX_FILE = 'in a file whose first line is "-- migrate: no-transaction"'


def lint(sql: str, transactional: bool = True, header: str = "") -> list[str]:
    """Every finding of the file ``header + ROLLBACK + sql`` as printed."""
    return [str(f) for f in lint_sql("m.sql", header + ROLLBACK + sql, transactional)]


def risky(sql: str, transactional: bool = True, header: str = "") -> list[str]:
    """``line:col rule: message`` of each deploy-safety warning."""
    return [
        f"{f.line}:{f.col} {f.code}: {f.message}"
        for f in lint_sql("m.sql", header + ROLLBACK + sql, transactional)
        if f.severity == "warning" and f.code in RULES
    ]


# --- one test per rule: the risky form warns, the safe form is silent -------------------


def test_dropping_a_column_of_an_existing_table_warns_to_stop_using_it_first():
    assert lint("ALTER TABLE users DROP COLUMN IF EXISTS legacy;") == [
        f"m.sql:2:1: warning: ALTER TABLE users DROP COLUMN legacy: {OLD} reads and writes "
        "legacy and fails once it is gone; contract in two releases: ship code that no longer "
        "uses legacy, then drop it in a later release's migration [drop-column]"
    ]


def test_dropping_a_column_of_a_table_the_file_created_is_silent():
    sql = "CREATE TABLE IF NOT EXISTS t (a int, b int);\nALTER TABLE t DROP COLUMN IF EXISTS b;"

    assert lint(sql) == []


def test_dropping_existing_tables_warns_once_per_table():
    assert risky("DROP TABLE IF EXISTS old_a, app.old_b;") == [
        f"2:1 drop-table: DROP TABLE old_a: {OLD} may query old_a and fails once it is gone; "
        "contract in two releases: ship code that no longer uses old_a, then drop it in a "
        "later release's migration",
        f"2:1 drop-table: DROP TABLE app.old_b: {OLD} may query app.old_b and fails once it "
        "is gone; contract in two releases: ship code that no longer uses app.old_b, then "
        "drop it in a later release's migration",
    ]


def test_dropping_a_table_created_earlier_in_the_file_is_silent_but_not_one_created_later():
    created_first = "CREATE TABLE IF NOT EXISTS scratch (a int);\nDROP TABLE IF EXISTS scratch;"
    created_after = "DROP TABLE IF EXISTS scratch;\nCREATE TABLE IF NOT EXISTS scratch (a int);"

    assert lint(created_first) == []
    assert [line.split(" ")[0:2] for line in risky(created_after)] == [["2:1", "drop-table:"]]


def test_renaming_a_column_warns_with_the_expand_contract_steps():
    assert risky("ALTER TABLE grants RENAME COLUMN funder TO funder_name;") == [
        f"2:1 rename-column: ALTER TABLE grants RENAME COLUMN funder TO funder_name: {OLD} "
        "uses funder and fails as soon as it is renamed; expand/contract: add funder_name, "
        "write both (in code or with a trigger), backfill funder_name in batches, switch reads "
        "to funder_name, then drop funder in a later release"
    ]


def test_renaming_a_column_of_a_table_the_file_created_is_silent():
    sql = "CREATE TABLE IF NOT EXISTS t (a int);\nALTER TABLE t RENAME COLUMN a TO b;"

    assert lint(sql) == []


def test_renaming_or_moving_a_table_warns_to_leave_a_view_behind():
    sql = "ALTER TABLE grants RENAME TO funding_calls;\nALTER TABLE app.logs SET SCHEMA archive;"

    assert risky(sql) == [
        f"2:1 rename-table: ALTER TABLE grants RENAME TO funding_calls: {OLD} queries grants "
        "and fails as soon as it moves; keep the old name working: in the same migration "
        "CREATE VIEW grants AS SELECT * FROM funding_calls (a simple view is updatable), and "
        "drop the view in a later release once no code uses grants",
        f"3:1 rename-table: ALTER TABLE app.logs SET SCHEMA archive: {OLD} queries app.logs "
        "and fails as soon as it moves; keep the old name working: in the same migration "
        "CREATE VIEW app.logs AS SELECT * FROM archive.logs (a simple view is updatable), and "
        "drop the view in a later release once no code uses app.logs",
    ]


def test_renaming_a_table_the_file_created_is_silent():
    sql = "CREATE TABLE IF NOT EXISTS draft (a int);\nALTER TABLE draft RENAME TO final;"

    assert lint(sql) == []


def test_a_not_null_column_without_default_warns_at_the_column():
    sql = "ALTER TABLE users\n    ADD COLUMN IF NOT EXISTS tier int NOT NULL;"

    assert risky(sql) == [
        "3:30 add-column-not-null: ALTER TABLE users ADD COLUMN tier NOT NULL without a "
        f"DEFAULT: fails on a table with rows, and {OLD} inserts rows without tier; add it "
        "with a constant DEFAULT (instant since PostgreSQL 11), or add it nullable, backfill "
        "in batches, then in a later release add CHECK (tier IS NOT NULL) NOT VALID, "
        "VALIDATE it and SET NOT NULL"
    ]


def test_default_null_is_no_default_for_a_not_null_column():
    sql = "ALTER TABLE users ADD COLUMN IF NOT EXISTS tier int DEFAULT NULL NOT NULL;"

    assert [line.split(": ")[0] for line in risky(sql)] == ["2:44 add-column-not-null"]


def test_nullable_or_constant_default_or_new_table_columns_are_silent():
    sql = (
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS nickname text;\n"
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS tier int NOT NULL DEFAULT 0;\n"
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS seen timestamptz NOT NULL DEFAULT now();\n"
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS tags jsonb NOT NULL DEFAULT '{}'::jsonb;\n"
        "CREATE TABLE IF NOT EXISTS t (a int);\n"
        "ALTER TABLE t ADD COLUMN IF NOT EXISTS b int NOT NULL;\n"
    )

    assert lint(sql) == []


def test_a_volatile_default_serial_identity_or_stored_generated_column_warns_of_a_rewrite():
    sql = (
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS token text DEFAULT gen_random_uuid()::text;\n"
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS n bigserial;\n"
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS i int GENERATED ALWAYS AS IDENTITY;\n"
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS g int GENERATED ALWAYS AS (id * 2) STORED;\n"
    )
    advice = (
        f"so the whole table is rewritten {BLOCKS} users; add the column without a default "
        "(or with a constant one), set the default with ALTER COLUMN {} SET DEFAULT …, then "
        "backfill existing rows in batches"
    )

    assert risky(sql) == [
        "2:44 add-column-volatile-default: ALTER TABLE users ADD COLUMN token: the default "
        "calls gen_random_uuid(), which is volatile, " + advice.format("token"),
        "3:44 add-column-volatile-default: ALTER TABLE users ADD COLUMN n: bigserial fills "
        "every row from a sequence (nextval() is volatile), " + advice.format("n"),
        "4:44 add-column-volatile-default: ALTER TABLE users ADD COLUMN i: GENERATED … AS "
        "IDENTITY fills every row from a sequence, " + advice.format("i"),
        "5:44 add-column-volatile-default: ALTER TABLE users ADD COLUMN g: GENERATED ALWAYS "
        "AS (…) STORED computes every row, " + advice.format("g"),
    ]


def test_changing_a_column_type_warns_at_the_new_type():
    sql = "ALTER TABLE grants ALTER COLUMN amount TYPE numeric(18, 2);"

    assert risky(sql) == [
        "2:45 change-column-type: ALTER TABLE grants ALTER COLUMN amount TYPE numeric(18, 2): "
        f"rewrites the table and its indexes {BLOCKS} grants (unless the change is "
        f"binary-compatible, such as widening a varchar), and {OLD} expects the old type; "
        "expand/contract: add a column of type numeric(18, 2), write both (in code or with a "
        "trigger), backfill it in batches, switch reads to it, drop the old column in a later "
        "release"
    ]


def test_changing_a_column_type_of_a_table_the_file_created_is_silent():
    sql = "CREATE TABLE IF NOT EXISTS t (a int);\nALTER TABLE t ALTER COLUMN a TYPE bigint;"

    assert lint(sql) == []


def test_set_not_null_on_an_existing_table_warns_of_the_full_scan():
    assert risky("ALTER TABLE users ALTER COLUMN email SET NOT NULL;") == [
        "2:1 set-not-null: ALTER TABLE users ALTER COLUMN email SET NOT NULL: scans the whole "
        f"table {BLOCKS} users; instead ADD CONSTRAINT … CHECK (email IS NOT NULL) NOT VALID, "
        f"VALIDATE it {LATER}, then SET NOT NULL (PostgreSQL 12+ trusts the validated check "
        f"and skips the scan) and drop the check; {OLD} must already write email"
    ]


def test_the_not_valid_check_way_to_not_null_and_a_new_tables_set_not_null_are_silent():
    sql = (
        "ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) "
        "NOT VALID;\n"
        "ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;\n"
        "CREATE TABLE IF NOT EXISTS t (a int);\n"
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL;\n"
    )

    assert lint(sql) == []


def test_create_index_on_an_existing_table_without_concurrently_warns():
    sql = (
        "CREATE INDEX IF NOT EXISTS idx_users_email ON users (email);\n"
        "CREATE UNIQUE INDEX IF NOT EXISTS uq_users_email ON app.users (email);\n"
    )

    assert risky(sql) == [
        "2:1 create-index-not-concurrently: CREATE INDEX idx_users_email ON users without "
        "CONCURRENTLY: blocks every write to users for the whole build; use CREATE INDEX "
        f"CONCURRENTLY IF NOT EXISTS … {NO_TX_FILE}",
        "3:1 create-index-not-concurrently: CREATE UNIQUE INDEX uq_users_email ON app.users "
        "without CONCURRENTLY: blocks every write to app.users for the whole build; use "
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS … {NO_TX_FILE}",
    ]


def test_create_index_concurrently_or_on_a_table_the_file_created_is_silent():
    concurrent = "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_email ON users (email);"
    new_table = (
        "CREATE TABLE IF NOT EXISTS t (a int);\n"
        "CREATE INDEX IF NOT EXISTS idx_t_a ON t (a);"
    )

    assert lint(concurrent, transactional=False, header=NO_TX) == []
    assert lint(new_table) == []


def test_drop_index_without_concurrently_warns():
    assert risky("DROP INDEX IF EXISTS idx_users_email;") == [
        "2:1 drop-index-not-concurrently: DROP INDEX idx_users_email without CONCURRENTLY: "
        "takes an ACCESS EXCLUSIVE lock on its table, so every read and write queues behind "
        "any running query; use DROP INDEX CONCURRENTLY IF EXISTS idx_users_email "
        f"{NO_TX_FILE}"
    ]


def test_drop_index_concurrently_or_of_an_index_the_file_created_is_silent():
    concurrent = "DROP INDEX CONCURRENTLY IF EXISTS idx_users_email;"
    own_index = (
        "CREATE TABLE IF NOT EXISTS t (a int);\n"
        "CREATE INDEX IF NOT EXISTS idx_t_a ON t (a);\n"
        "DROP INDEX IF EXISTS idx_t_a;\n"
    )

    assert lint(concurrent, transactional=False, header=NO_TX) == []
    assert lint(own_index) == []


def test_a_validated_foreign_key_warns_at_the_constraint_with_the_not_valid_way():
    sql = (
        "ALTER TABLE applications ADD CONSTRAINT fk_app_grant\n"
        "    FOREIGN KEY (grant_id) REFERENCES grants (id);"
    )

    assert risky(sql) == [
        "2:30 add-foreign-key: ALTER TABLE applications ADD CONSTRAINT fk_app_grant FOREIGN "
        "KEY: checks every existing row while holding a SHARE ROW EXCLUSIVE lock on "
        "applications and grants, blocking writes to both; add the constraint with NOT VALID "
        "(new and updated rows are checked at once), then ALTER TABLE applications VALIDATE "
        f"CONSTRAINT fk_app_grant {LATER}"
    ]


def test_an_inline_references_on_a_new_column_of_an_existing_table_warns_too():
    sql = "ALTER TABLE users ADD COLUMN IF NOT EXISTS org_id text REFERENCES orgs (id);"

    assert risky(sql) == [
        "2:56 add-foreign-key: ALTER TABLE users ADD COLUMN org_id … REFERENCES orgs: checks "
        "every existing row while holding a SHARE ROW EXCLUSIVE lock on users and orgs, "
        "blocking writes to both; add the column org_id without it, then add the constraint "
        "with NOT VALID (new and updated rows are checked at once), then ALTER TABLE users "
        f"VALIDATE CONSTRAINT <name> {LATER}"
    ]


def test_a_not_valid_foreign_key_and_its_later_validation_are_silent():
    sql = (
        "ALTER TABLE applications ADD CONSTRAINT fk_app_grant FOREIGN KEY (grant_id) "
        "REFERENCES grants (id) NOT VALID;\n"
        "ALTER TABLE applications VALIDATE CONSTRAINT fk_app_grant;\n"
    )

    assert lint(sql) == []


def test_a_validated_check_constraint_warns():
    sql = "ALTER TABLE grants ADD CHECK (amount >= 0);"

    assert risky(sql) == [
        "2:24 add-check-constraint: ALTER TABLE grants ADD CHECK: checks every existing row "
        f"{BLOCKS} grants; add the constraint with NOT VALID (new and updated rows are "
        "checked at once), then ALTER TABLE grants VALIDATE CONSTRAINT <name> "
        f"{LATER}"
    ]


def test_a_not_valid_check_constraint_or_one_on_a_new_table_is_silent():
    sql = (
        "ALTER TABLE grants ADD CONSTRAINT chk_amount CHECK (amount >= 0) NOT VALID;\n"
        "CREATE TABLE IF NOT EXISTS t (a int);\n"
        "ALTER TABLE t ADD CONSTRAINT chk_a CHECK (a > 0);\n"
    )

    assert lint(sql) == []


def test_a_unique_constraint_without_using_index_warns_with_the_concurrent_index_way():
    sql = "ALTER TABLE users ADD CONSTRAINT uq_users_email UNIQUE (email);"

    assert risky(sql) == [
        "2:23 add-unique-constraint: ALTER TABLE users ADD CONSTRAINT uq_users_email UNIQUE: "
        f"builds its unique index {BLOCKS} users for the whole build; CREATE UNIQUE INDEX "
        f"CONCURRENTLY idx_users_email ON users (email) {NO_TX_FILE}, then ALTER TABLE users "
        "ADD CONSTRAINT uq_users_email UNIQUE USING INDEX idx_users_email"
    ]


def test_a_primary_key_without_using_index_warns_and_says_its_columns_must_be_not_null():
    sql = "ALTER TABLE events ADD PRIMARY KEY (id, at);"

    assert risky(sql) == [
        "2:24 add-primary-key: ALTER TABLE events ADD PRIMARY KEY: builds its unique index "
        f"{BLOCKS} events for the whole build; CREATE UNIQUE INDEX CONCURRENTLY "
        f"idx_events_id_at ON events (id, at) {NO_TX_FILE}, then ALTER TABLE events ADD "
        "CONSTRAINT <name> PRIMARY KEY USING INDEX idx_events_id_at (its columns must "
        "already be NOT NULL)"
    ]


def test_unique_and_primary_key_using_an_index_built_concurrently_are_silent():
    sql = (
        "ALTER TABLE users ADD CONSTRAINT uq_users_email UNIQUE USING INDEX idx_users_email;\n"
        "ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX idx_events_id;\n"
    )

    assert lint(sql) == []


def test_every_rule_id_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")

    assert [rule for rule in RULES if f"`{rule}`" not in readme] == []


# --- DO blocks ----------------------------------------------------------------------------


def test_guarded_statements_inside_a_do_block_count_and_point_at_their_own_line():
    sql = """DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_name = 'grants' AND column_name = 'deadline'
    ) THEN
        ALTER TABLE grants ADD COLUMN deadline TIMESTAMP NOT NULL;
        CREATE INDEX idx_grants_deadline ON grants (deadline);
    END IF;
    ALTER TABLE grants DROP COLUMN legacy; ALTER TABLE grants RENAME COLUMN a TO b;
END $$;
"""

    assert [line.split(": ")[0] for line in risky(sql)] == [
        "8:39 add-column-not-null",
        "9:9 create-index-not-concurrently",
        "11:5 drop-column",
        "11:44 rename-column",
    ]


def test_a_do_block_working_on_a_table_the_file_created_is_silent():
    sql = """CREATE TABLE IF NOT EXISTS t (a int);
DO $$
BEGIN
    ALTER TABLE t ADD COLUMN b int NOT NULL;
    CREATE INDEX idx_t_b ON t (b);
END $$;
"""

    assert risky(sql) == []


def test_a_quote_doubled_do_body_reports_at_the_first_token_of_the_statements_line():
    # '' in the body differs from the statement text PL/pgSQL hands back: no verbatim
    # match, so the finding goes to the first token of its line, not to the constraint.
    sql = "DO '\nBEGIN\n  ALTER TABLE t ADD CONSTRAINT c CHECK (s <> '''');\nEND';\n"

    assert [line.split(": ")[0] for line in risky(sql)] == ["4:3 add-check-constraint"]


def test_dynamic_sql_in_execute_is_not_analysed():
    sql = "DO $$ BEGIN EXECUTE 'ALTER TABLE t DROP COLUMN c'; END $$;"

    assert risky(sql) == []


def test_positions_count_characters_after_non_ascii_text():
    sql = (
        "-- é ü 漢字\n"
        "INSERT INTO notes VALUES ('ééé'); ALTER TABLE users DROP COLUMN IF EXISTS x;"
    )

    assert [line.split(": ")[0] for line in risky(sql)] == ["3:35 drop-column"]
