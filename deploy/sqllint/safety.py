"""Deploy safety: changes that break the release still serving while migrations run.

During a deploy the old release keeps serving until the migrations are done, so every
migration must work with the old code (no column or table it uses disappears or changes)
and must not hold a long lock on a table the old code uses. Each finding is a warning with
a stable rule id (``RULES``) and names the expand/contract way to make the change.

"Existing table" means a table the file did not create in an earlier statement: a file
cannot know what the database holds, so anything it did not create may have rows and
readers. Statements inside ``DO`` blocks count (plain SQL, not dynamic ``EXECUTE``),
guarded or not: an ``IF NOT EXISTS … THEN ALTER TABLE …`` still runs on the live table.

A file acknowledges a finding with a directive comment: deploy/sqllint/acknowledge.py.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType
from pglast.stream import RawStream
from pglast.visitors import Visitor

from deploy.migrate.sql import Created, Executed, name_of, qualified

# Rule id -> what it finds. The ids are stable: directives and CI annotations name them.
RULES = {
    "drop-column": "drops a column of an existing table",
    "drop-table": "drops an existing table",
    "rename-column": "renames a column of an existing table",
    "rename-table": "renames an existing table or moves it to another schema",
    "add-column-not-null": "adds a NOT NULL column without a DEFAULT to an existing table",
    "add-column-volatile-default": "adds a column whose default rewrites an existing table",
    "change-column-type": "changes a column's type (ALTER COLUMN … TYPE)",
    "set-not-null": "SET NOT NULL on a column of an existing table",
    "create-index-not-concurrently": "CREATE INDEX on an existing table without CONCURRENTLY",
    "drop-index-not-concurrently": "DROP INDEX without CONCURRENTLY",
    "add-foreign-key": "a FOREIGN KEY on an existing table without NOT VALID",
    "add-check-constraint": "a CHECK constraint on an existing table without NOT VALID",
    "add-unique-constraint": "a UNIQUE constraint on an existing table without USING INDEX",
    "add-primary-key": "a PRIMARY KEY on an existing table without USING INDEX",
}

# Functions whose value differs per row: as a new column's default they rewrite the table.
VOLATILE_FUNCTIONS = frozenset({
    "random", "random_normal", "gen_random_uuid", "uuidv4", "uuidv7", "uuid_generate_v1",
    "uuid_generate_v1mc", "uuid_generate_v4", "clock_timestamp", "timeofday", "nextval",
})
SERIAL_TYPES = frozenset({"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"})

_NO_TX = 'in a file whose first line is "-- migrate: no-transaction"'
_LATER = "in a later migration (its own transaction; reads and writes continue)"
_OLD_CODE = "the release still serving during the deploy"
_BLOCKS_ALL = "under an ACCESS EXCLUSIVE lock, blocking every read and write of"


def _names_used(node: ast.Node) -> list[str]:
    class Calls(Visitor):
        def visit_FuncCall(self, ancestors, call):  # noqa: N802 - pglast's visitor naming
            found.append(call.funcname[-1].sval.lower())

    found: list[str] = []
    Calls()(node)
    return found


def _has_default(column: ast.ColumnDef) -> bool:
    return any(
        c.contype == ConstrType.CONSTR_DEFAULT
        and not (isinstance(c.raw_expr, ast.A_Const) and c.raw_expr.isnull)
        for c in column.constraints or ()
    )


def _rewrite_reason(column: ast.ColumnDef) -> str | None:
    """Why adding this column rewrites the table, if it does."""
    type_name = column.typeName.names[-1].sval if column.typeName else ""
    if type_name in SERIAL_TYPES:
        return f"{type_name} fills every row from a sequence (nextval() is volatile)"
    for c in column.constraints or ():
        if c.contype == ConstrType.CONSTR_IDENTITY:
            return "GENERATED … AS IDENTITY fills every row from a sequence"
        if c.contype == ConstrType.CONSTR_GENERATED:
            return "GENERATED ALWAYS AS (…) STORED computes every row"
        if c.contype == ConstrType.CONSTR_DEFAULT and c.raw_expr is not None:
            volatile = [f for f in _names_used(c.raw_expr) if f in VOLATILE_FUNCTIONS]
            if volatile:
                return f"the default calls {volatile[0]}(), which is volatile"
    return None


_KIND = {
    ConstrType.CONSTR_FOREIGN: "FOREIGN KEY",
    ConstrType.CONSTR_CHECK: "CHECK",
    ConstrType.CONSTR_UNIQUE: "UNIQUE",
    ConstrType.CONSTR_PRIMARY: "PRIMARY KEY",
    ConstrType.CONSTR_NOTNULL: "NOT NULL",
}
# The kinds NOT VALID applies to; UNIQUE and PRIMARY KEY build an index instead.
_VALIDATED = (ConstrType.CONSTR_FOREIGN, ConstrType.CONSTR_CHECK, ConstrType.CONSTR_NOTNULL)


def _constraint(
    table: str, con: ast.Constraint, column: str | None = None
) -> tuple[str, str] | None:
    """(rule, message) for a constraint added to an existing table (inline on a new
    ``column``, or table-level), if it is risky."""
    kind = _KIND.get(con.contype)
    if kind is None or (con.skip_validation and con.contype in _VALIDATED) or con.indexname:
        return None  # NOT VALID checks new rows only; USING INDEX reuses a built index
    foreign = con.contype == ConstrType.CONSTR_FOREIGN
    ref = qualified(con.pktable.schemaname, con.pktable.relname) if foreign else ""
    if column:
        inline = f"REFERENCES {ref}" if foreign else kind
        what = f"ALTER TABLE {table} ADD COLUMN {column} … {inline}"
        first = f"add the column {column} without it, then "
    else:
        named = f"CONSTRAINT {con.conname} " if con.conname else ""
        what, first = f"ALTER TABLE {table} ADD {named}{kind}", ""
    name = con.conname or "<name>"
    columns = ", ".join(k.sval for k in con.keys or ()) or column or "…"
    if foreign or con.contype == ConstrType.CONSTR_CHECK:
        rule, lock = (
            ("add-foreign-key", f"while holding a SHARE ROW EXCLUSIVE lock on {table} and "
                                f"{ref}, blocking writes to both")
            if foreign
            else ("add-check-constraint", f"{_BLOCKS_ALL} {table}")
        )
        return rule, (
            f"{what}: checks every existing row {lock}; {first}add the constraint with "
            f"NOT VALID (new and updated rows are checked at once), then ALTER TABLE {table} "
            f"VALIDATE CONSTRAINT {name} {_LATER}"
        )
    if con.contype == ConstrType.CONSTR_NOTNULL:
        return "set-not-null", (
            f"{what}: scans the whole table {_BLOCKS_ALL} {table}; {_set_not_null_advice(columns)}"
        )
    rule = "add-unique-constraint" if con.contype == ConstrType.CONSTR_UNIQUE else "add-primary-key"
    index = f"idx_{table.rsplit('.', 1)[-1]}_{columns.replace(', ', '_')}"
    nulls = " (its columns must already be NOT NULL)" if rule == "add-primary-key" else ""
    return rule, (
        f"{what}: builds its unique index {_BLOCKS_ALL} {table} for the whole build; "
        f"{first}CREATE UNIQUE INDEX CONCURRENTLY {index} ON {table} ({columns}) {_NO_TX}, "
        f"then ALTER TABLE {table} ADD CONSTRAINT {name} {kind} USING INDEX {index}{nulls}"
    )


def _set_not_null_advice(column: str) -> str:
    return (
        f"instead ADD CONSTRAINT … CHECK ({column} IS NOT NULL) NOT VALID, VALIDATE it "
        f"{_LATER}, then SET NOT NULL (PostgreSQL 12+ trusts the validated check and skips "
        f"the scan) and drop the check; {_OLD_CODE} must already write {column}"
    )


def _add_column(ex: Executed, table: str, column: ast.ColumnDef) -> Iterator[tuple]:
    at = ex.where(column.location)
    name = column.colname
    rewrite = _rewrite_reason(column)
    if rewrite:
        yield at, "add-column-volatile-default", (
            f"ALTER TABLE {table} ADD COLUMN {name}: {rewrite}, so the whole table is "
            f"rewritten {_BLOCKS_ALL} {table}; add the column without a default (or with a "
            f"constant one), set the default with ALTER COLUMN {name} SET DEFAULT …, then "
            "backfill existing rows in batches"
        )
    constraints = column.constraints or ()
    not_null = any(c.contype in (ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY)
                   for c in constraints)
    if not_null and not rewrite and not _has_default(column):
        yield at, "add-column-not-null", (
            f"ALTER TABLE {table} ADD COLUMN {name} NOT NULL without a DEFAULT: fails on a "
            f"table with rows, and {_OLD_CODE} inserts rows without {name}; add it with a "
            "constant DEFAULT (instant since PostgreSQL 11), or add it nullable, backfill in "
            f"batches, then in a later release add CHECK ({name} IS NOT NULL) NOT VALID, "
            "VALIDATE it and SET NOT NULL"
        )
    for con in constraints:
        if con.contype == ConstrType.CONSTR_NOTNULL:
            continue  # a new column's NOT NULL is the rule above
        risky = _constraint(table, con, column=name)
        if risky:
            yield ex.where(con.location), *risky


def _alter_table(ex: Executed, table: str, cmd: ast.AlterTableCmd) -> Iterator[tuple]:
    subtype = cmd.subtype
    if subtype == AlterTableType.AT_DropColumn:
        yield ex.at, "drop-column", (
            f"ALTER TABLE {table} DROP COLUMN {cmd.name}: {_OLD_CODE} reads and writes "
            f"{cmd.name} and fails once it is gone; contract in two releases: ship code that "
            f"no longer uses {cmd.name}, then drop it in a later release's migration"
        )
    elif subtype == AlterTableType.AT_AlterColumnType:
        new_type = RawStream()(cmd.def_.typeName)
        yield ex.where(cmd.def_.typeName.location), "change-column-type", (
            f"ALTER TABLE {table} ALTER COLUMN {cmd.name} TYPE {new_type}: rewrites the table "
            f"and its indexes {_BLOCKS_ALL} {table} (unless the change is binary-compatible, "
            f"such as widening a varchar), and {_OLD_CODE} expects the old type; "
            f"expand/contract: add a column of type {new_type}, write both (in code or with a "
            "trigger), backfill it in batches, switch reads to it, drop the old column in a "
            "later release"
        )
    elif subtype == AlterTableType.AT_SetNotNull:
        yield ex.at, "set-not-null", (
            f"ALTER TABLE {table} ALTER COLUMN {cmd.name} SET NOT NULL: scans the whole table "
            f"{_BLOCKS_ALL} {table}; {_set_not_null_advice(cmd.name)}"
        )
    elif subtype == AlterTableType.AT_AddColumn:
        yield from _add_column(ex, table, cmd.def_)
    elif subtype == AlterTableType.AT_AddConstraint:
        risky = _constraint(table, cmd.def_)
        if risky:
            yield ex.where(cmd.def_.location), *risky


def _rename(ex: Executed, table: str, change: str, new_table: str) -> tuple:
    return ex.at, "rename-table", (
        f"ALTER TABLE {table} {change}: {_OLD_CODE} queries {table} and fails as soon "
        f"as it moves; keep the old name working: in the same migration CREATE VIEW {table} "
        f"AS SELECT * FROM {new_table} (a simple view is updatable), and drop the view in a "
        f"later release once no code uses {table}"
    )


def _statement(ex: Executed, created: Created) -> Iterator[tuple]:
    """(offset, rule, message) for each risky change one statement makes."""
    stmt = ex.stmt
    if isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        rel = stmt.relation
        if not created.has_table((rel.schemaname, rel.relname)):
            for cmd in stmt.cmds:
                yield from _alter_table(ex, qualified(rel.schemaname, rel.relname), cmd)
    elif isinstance(stmt, ast.IndexStmt) and not stmt.concurrent:
        rel = stmt.relation
        if not created.has_table((rel.schemaname, rel.relname)):
            table = qualified(rel.schemaname, rel.relname)
            yield ex.at, "create-index-not-concurrently", (
                f"CREATE {'UNIQUE ' if stmt.unique else ''}INDEX "
                f"{stmt.idxname + ' ' if stmt.idxname else ''}ON {table} "
                f"without CONCURRENTLY: blocks every write to {table} for the whole build; "
                f"use CREATE INDEX CONCURRENTLY IF NOT EXISTS … {_NO_TX}"
            )
    elif isinstance(stmt, ast.DropStmt) and stmt.removeType == ObjectType.OBJECT_TABLE:
        for names in stmt.objects:
            if not created.has_table(name_of(names)):
                table = qualified(*name_of(names))
                yield ex.at, "drop-table", (
                    f"DROP TABLE {table}: {_OLD_CODE} may query {table} and fails once "
                    f"it is gone; contract in two releases: ship code that no longer uses "
                    f"{table}, then drop it in a later release's migration"
                )
    elif (isinstance(stmt, ast.DropStmt) and stmt.removeType == ObjectType.OBJECT_INDEX
          and not stmt.concurrent):
        for names in stmt.objects:
            if not created.has_index(name_of(names)):
                index = qualified(*name_of(names))
                yield ex.at, "drop-index-not-concurrently", (
                    f"DROP INDEX {index} without CONCURRENTLY: takes an ACCESS EXCLUSIVE lock "
                    "on its table, so every read and write queues behind any running query; "
                    f"use DROP INDEX CONCURRENTLY IF EXISTS {index} {_NO_TX}"
                )
    elif isinstance(stmt, ast.RenameStmt) and stmt.relation is not None:
        rel = stmt.relation
        if created.has_table((rel.schemaname, rel.relname)):
            return
        table = qualified(rel.schemaname, rel.relname)
        if stmt.renameType == ObjectType.OBJECT_TABLE:
            yield _rename(ex, table, f"RENAME TO {stmt.newname}",
                          qualified(rel.schemaname, stmt.newname))
        elif (stmt.renameType == ObjectType.OBJECT_COLUMN
              and stmt.relationType == ObjectType.OBJECT_TABLE):
            old, new = stmt.subname, stmt.newname
            yield ex.at, "rename-column", (
                f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}: {_OLD_CODE} uses "
                f"{old} and fails as soon as it is renamed; expand/contract: add {new}, write "
                f"both (in code or with a trigger), backfill {new} in batches, switch reads to "
                f"{new}, then drop {old} in a later release"
            )
    elif (isinstance(stmt, ast.AlterObjectSchemaStmt)
          and stmt.objectType == ObjectType.OBJECT_TABLE):
        rel = stmt.relation
        if not created.has_table((rel.schemaname, rel.relname)):
            yield _rename(ex, qualified(rel.schemaname, rel.relname),
                          f"SET SCHEMA {stmt.newschema}", qualified(stmt.newschema, rel.relname))


def risky_changes(executed: list[Executed]) -> list[tuple[int, str, str]]:
    """(offset, rule, message) for every risky change, in the order the file makes them."""
    created = Created()
    found = []
    for ex in executed:
        found.extend(_statement(ex, created))
        created.apply(ex.stmt, ex.inside_do)
    return found
