"""Lint rules for re-runnable migrations: IF [NOT] EXISTS, CONCURRENTLY outside a
transaction, no explicit transaction statements, a documented rollback. Errors, except
the missing rollback note (a warning). Pure: AST in, (offset, code, message) out.
"""

from __future__ import annotations

from pglast import ast, parser
from pglast.enums import AlterTableType, ObjectType, TransactionStmtKind

from deploy.migrate.sql import created_relation, qualified

_RERUN = "(migrations must be safe to re-run)"


_KIND_WORDS = {
    ObjectType.OBJECT_MATVIEW: "MATERIALIZED VIEW",
    ObjectType.OBJECT_FDW: "FOREIGN DATA WRAPPER",
    ObjectType.OBJECT_FOREIGN_SERVER: "SERVER",
    ObjectType.OBJECT_STATISTIC_EXT: "STATISTICS",
}

_TRANSACTION_WORDS = {
    TransactionStmtKind.TRANS_STMT_BEGIN: "BEGIN",
    TransactionStmtKind.TRANS_STMT_START: "START TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT: "COMMIT",
    TransactionStmtKind.TRANS_STMT_ROLLBACK: "ROLLBACK",
    TransactionStmtKind.TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED: "COMMIT PREPARED",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
}


def _object_name(obj: object, kind: ObjectType) -> str:
    if isinstance(obj, ast.String):
        return obj.sval
    if isinstance(obj, ast.ObjectWithArgs):
        return ".".join(n.sval for n in obj.objname)
    if isinstance(obj, ast.TypeName):
        return ".".join(n.sval for n in obj.names)
    parts = [n.sval for n in obj] if isinstance(obj, tuple | list) else []
    if kind in (ObjectType.OBJECT_TRIGGER, ObjectType.OBJECT_POLICY, ObjectType.OBJECT_RULE):
        # These live on a table: the parser lists the table's name first.
        return f"{parts[-1]} ON {'.'.join(parts[:-1])}"
    return ".".join(parts)


def _drop_description(stmt: ast.Node) -> str:
    if isinstance(stmt, ast.DropStmt):
        kind = stmt.removeType
        word = _KIND_WORDS.get(kind, kind.name.removeprefix("OBJECT_").replace("_", " "))
        names = ", ".join(_object_name(o, kind) for o in stmt.objects)
        return f"DROP {word} {names}"
    if isinstance(stmt, ast.DropdbStmt):
        return f"DROP DATABASE {stmt.dbname}"
    if isinstance(stmt, ast.DropRoleStmt):
        return "DROP ROLE " + ", ".join(r.rolename or "" for r in stmt.roles)
    # The remaining DROP statements are rare in migrations: name the kind only.
    return "DROP " + type(stmt).__name__.removeprefix("Drop").removesuffix("Stmt").upper()


_NEEDS_NO_TRANSACTION = (
    'cannot run inside a transaction: add "-- migrate: no-transaction" '
    "as the first line of the file"
)


Found = list[tuple[int, str, str]]  # (offset, code, message)


def statement_findings(stmt: ast.Node, at: int, transactional: bool) -> Found:
    """(offset, code, message) for one top-level statement."""
    created = created_relation(stmt, inside_do=False)
    if created is not None:
        return _create_table_findings(stmt, created, at)
    if isinstance(stmt, ast.IndexStmt):
        return _create_index_findings(stmt, at, transactional)
    if isinstance(stmt, ast.AlterTableStmt):
        return _alter_table_findings(stmt, at)
    if type(stmt).__name__.startswith("Drop"):
        return _drop_findings(stmt, at, transactional)
    if isinstance(stmt, ast.TransactionStmt) and stmt.kind in _TRANSACTION_WORDS:
        how = (
            "already runs each file in its own transaction"
            if transactional
            else "runs this file statement by statement in autocommit"
        )
        return [(at, "explicit-transaction",
                 f"{_TRANSACTION_WORDS[stmt.kind]}: the runner {how}; remove it")]
    return []


def _create_table_findings(stmt: ast.Node, created: ast.RangeVar, at: int) -> Found:
    name = qualified(created.schemaname, created.relname)
    if isinstance(stmt, ast.SelectStmt):
        return [(at, "create-table-not-idempotent",
                 f"SELECT … INTO {name} cannot be made idempotent: "
                 f"write CREATE TABLE IF NOT EXISTS {name} AS SELECT … {_RERUN}")]
    if not stmt.if_not_exists:
        return [(at, "create-table-not-idempotent",
                 f"CREATE TABLE {name}: add IF NOT EXISTS {_RERUN}")]
    return []


def _create_index_findings(stmt: ast.IndexStmt, at: int, transactional: bool) -> Found:
    found: Found = []
    if stmt.concurrent and transactional:
        found.append((at, "concurrently-in-transaction",
                      f"CREATE INDEX CONCURRENTLY {_NEEDS_NO_TRANSACTION}"))
    if not stmt.if_not_exists:
        table = qualified(stmt.relation.schemaname, stmt.relation.relname)
        fix = (
            f"{stmt.idxname}: add IF NOT EXISTS"
            if stmt.idxname
            else f"on {table}: name the index and add IF NOT EXISTS"
        )
        found.append((at, "create-index-not-idempotent", f"CREATE INDEX {fix} {_RERUN}"))
    return found


def _alter_table_findings(stmt: ast.AlterTableStmt, at: int) -> Found:
    found: Found = []
    table = qualified(stmt.relation.schemaname, stmt.relation.relname)
    for cmd in stmt.cmds:
        if cmd.missing_ok:
            continue
        if cmd.subtype == AlterTableType.AT_AddColumn:
            column = cmd.def_
            where = column.location if (column.location or 0) > 0 else at
            found.append((
                where, "add-column-not-idempotent",
                f"ALTER TABLE {table} ADD COLUMN {column.colname}: add IF NOT EXISTS {_RERUN}",
            ))
        elif cmd.subtype in (AlterTableType.AT_DropColumn, AlterTableType.AT_DropConstraint):
            what = "COLUMN" if cmd.subtype == AlterTableType.AT_DropColumn else "CONSTRAINT"
            found.append((at, "drop-not-idempotent",
                          f"ALTER TABLE {table} DROP {what} {cmd.name}: add IF EXISTS {_RERUN}"))
    return found


def _drop_findings(stmt: ast.Node, at: int, transactional: bool) -> Found:
    found: Found = []
    if isinstance(stmt, ast.DropStmt) and stmt.concurrent and transactional:
        found.append((at, "concurrently-in-transaction",
                      f"DROP INDEX CONCURRENTLY {_NEEDS_NO_TRANSACTION}"))
    if getattr(stmt, "missing_ok", None) is False:
        found.append((at, "drop-not-idempotent",
                      f"{_drop_description(stmt)}: add IF EXISTS {_RERUN}"))
    return found


def has_rollback_note(text: str) -> bool:
    # pglast's scanner, not a line search, so "-- ROLLBACK:" inside a string or a
    # dollar-quoted body does not count as the file's note.
    for comment in parser.comments(text):
        body = comment.str
        if body.startswith("--") and body[2:].lstrip().startswith("ROLLBACK:"):
            return True
    return False
