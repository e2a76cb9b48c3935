"""Static analysis of migration SQL with pglast: statements, created tables, lint findings.

Pure: text in, data out; no database. Every offset here is a character offset into the
file's text (pglast already converts libpg_query's UTF-8 byte offsets to characters).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import pglast
from pglast import ast, parser
from pglast.enums import AlterTableType, ObjectType, TransactionStmtKind

from deploy.migrations import line_col  # noqa: F401 - part of this module's API too

_RERUN = "(migrations must be safe to re-run)"


@dataclass(frozen=True)
class Statement:
    """One top-level statement: ``text == file_text[start:end]``, without the ``;``."""

    start: int
    end: int
    text: str


class SqlSyntaxError(Exception):
    """Unparsable SQL; ``str(err)`` is ``LINE:COL: message`` so callers prefix the file."""

    def __init__(self, message: str, line: int, col: int, offset: int):
        super().__init__(f"{line}:{col}: {message}")
        self.message = message
        self.line = line
        self.col = col
        self.offset = offset


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    col: int
    severity: str  # "error" | "warning"
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message} [{self.code}]"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _syntax_error(
    text: str, err: parser.ParseError, at: int | None = None, prefix: str = ""
) -> SqlSyntaxError:
    message, location = err.args[0], err.args[1] if len(err.args) > 1 else None
    if at is None:
        # "at end of input" comes without a location: point just past the last token,
        # where psql's caret would be.
        at = location if location is not None else len(text.rstrip())
    line, col = line_col(text, at)
    return SqlSyntaxError(prefix + message, line, col, at)


def split_statements(text: str) -> list[Statement]:
    """The file's top-level statements as the server's parser splits them."""
    try:
        slices = pglast.split(text, with_parser=True, only_slices=True)
    except parser.ParseError as err:
        raise _syntax_error(text, err) from None
    return [Statement(s.start, s.stop, text[s]) for s in slices]


def _parse(text: str) -> tuple[ast.RawStmt, ...]:
    try:
        return parser.parse_sql(text)
    except parser.ParseError as err:
        raise _syntax_error(text, err) from None


def _do_language(stmt: ast.DoStmt) -> str:
    for arg in stmt.args or ():
        if arg.defname == "language":
            return arg.arg.sval.lower()
    return "plpgsql"


def _plpgsql_queries(tree: object) -> Iterator[str]:
    """SQL of every plain SQL statement in a PL/pgSQL tree, in source order.

    Only ``PLpgSQL_stmt_execsql`` runs SQL as written; ``EXECUTE '…'`` builds it at run
    time, so dynamic SQL is invisible to this analysis by nature.
    """
    if isinstance(tree, dict):
        execsql = tree.get("PLpgSQL_stmt_execsql")
        if execsql is not None:
            # PL/pgSQL strips "INTO var" from the text, so a SELECT INTO here is never
            # mistaken for the table-creating top-level form.
            yield execsql["sqlstmt"]["PLpgSQL_expr"]["query"]
            return
        for value in tree.values():
            yield from _plpgsql_queries(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _plpgsql_queries(item)


def _executed(text: str) -> Iterator[tuple[int, ast.Node, bool]]:
    """(offset, statement, inside_do) for every statement the file runs, in order.

    Statements inside a ``DO`` block carry the DO's offset: libpg_query's PL/pgSQL
    parser reports neither positions nor error locations inside the body.
    """
    for raw in _parse(text):
        yield raw.stmt_location, raw.stmt, False
        if not isinstance(raw.stmt, ast.DoStmt) or _do_language(raw.stmt) != "plpgsql":
            continue
        where = raw.stmt_location
        body = text[where : where + raw.stmt_len]
        try:
            tree = json.loads(parser.parse_plpgsql_json(body))
            for query in _plpgsql_queries(tree):
                for inner in parser.parse_sql(query):
                    yield where, inner.stmt, True
        except parser.ParseError as err:
            raise _syntax_error(text, err, at=where, prefix="in DO block: ") from None


def _qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def _created_relation(stmt: ast.Node, inside_do: bool) -> ast.RangeVar | None:
    """The table a statement creates, if it creates a persistent one."""
    if isinstance(stmt, ast.CreateStmt):
        rel = stmt.relation
    elif isinstance(stmt, ast.CreateTableAsStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        rel = stmt.into.rel
    elif isinstance(stmt, ast.SelectStmt) and stmt.intoClause is not None and not inside_do:
        rel = stmt.intoClause.rel
    else:
        return None
    # Temporary tables vanish with the session, so nobody can expect them to exist.
    return None if rel.relpersistence == "t" else rel


def _same_table(a: tuple[str | None, str], b: tuple[str | None, str]) -> bool:
    # An unqualified name resolves through search_path, so it may be any schema.
    return a[1] == b[1] and (a[0] is None or b[0] is None or a[0] == b[0])


def created_tables(text: str) -> list[tuple[str | None, str]]:
    """(schema or None, table) for each table the file leaves behind, in creation order.

    Follows DROP TABLE, ALTER TABLE … RENAME TO and … SET SCHEMA later in the file,
    and plain SQL inside ``DO`` blocks (not dynamic ``EXECUTE``).
    """
    tables: list[tuple[str | None, str]] = []

    def replace(old: tuple[str | None, str], new: tuple[str | None, str] | None) -> None:
        for i, table in enumerate(tables):
            if _same_table(table, old):
                if new is None:
                    del tables[i]
                else:
                    tables[i] = new
                return

    for _, stmt, inside_do in _executed(text):
        rel = _created_relation(stmt, inside_do)
        if rel is not None:
            table = (rel.schemaname, rel.relname)
            if not any(_same_table(t, table) for t in tables):
                tables.append(table)
        elif isinstance(stmt, ast.DropStmt) and stmt.removeType == ObjectType.OBJECT_TABLE:
            for names in stmt.objects:
                parts = [n.sval for n in names]
                replace((parts[-2] if len(parts) > 1 else None, parts[-1]), None)
        elif isinstance(stmt, ast.RenameStmt) and stmt.renameType == ObjectType.OBJECT_TABLE:
            rel = stmt.relation
            replace((rel.schemaname, rel.relname), (rel.schemaname, stmt.newname))
        elif (
            isinstance(stmt, ast.AlterObjectSchemaStmt)
            and stmt.objectType == ObjectType.OBJECT_TABLE
        ):
            rel = stmt.relation
            replace((rel.schemaname, rel.relname), (stmt.newschema, rel.relname))
    return tables


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


def _statement_findings(stmt: ast.Node, at: int, transactional: bool) -> list[tuple]:
    """(offset, code, message) for one top-level statement."""
    found: list[tuple[int, str, str]] = []

    def add(code: str, message: str, where: int = at) -> None:
        found.append((where, code, message))

    created = _created_relation(stmt, inside_do=False)
    if created is not None:
        name = _qualified(created.schemaname, created.relname)
        if isinstance(stmt, ast.SelectStmt):
            add(
                "create-table-not-idempotent",
                f"SELECT … INTO {name} cannot be made idempotent: "
                f"write CREATE TABLE IF NOT EXISTS {name} AS SELECT … {_RERUN}",
            )
        elif not stmt.if_not_exists:
            add("create-table-not-idempotent", f"CREATE TABLE {name}: add IF NOT EXISTS {_RERUN}")
    elif isinstance(stmt, ast.IndexStmt):
        if stmt.concurrent and transactional:
            add("concurrently-in-transaction", f"CREATE INDEX CONCURRENTLY {_NEEDS_NO_TRANSACTION}")
        if not stmt.if_not_exists:
            table = _qualified(stmt.relation.schemaname, stmt.relation.relname)
            fix = (
                f"{stmt.idxname}: add IF NOT EXISTS"
                if stmt.idxname
                else f"on {table}: name the index and add IF NOT EXISTS"
            )
            add("create-index-not-idempotent", f"CREATE INDEX {fix} {_RERUN}")
    elif isinstance(stmt, ast.AlterTableStmt):
        table = _qualified(stmt.relation.schemaname, stmt.relation.relname)
        for cmd in stmt.cmds:
            if cmd.missing_ok:
                continue
            if cmd.subtype == AlterTableType.AT_AddColumn:
                column = cmd.def_
                where = column.location if (column.location or 0) > 0 else at
                add(
                    "add-column-not-idempotent",
                    f"ALTER TABLE {table} ADD COLUMN {column.colname}: add IF NOT EXISTS {_RERUN}",
                    where,
                )
            elif cmd.subtype in (AlterTableType.AT_DropColumn, AlterTableType.AT_DropConstraint):
                what = "COLUMN" if cmd.subtype == AlterTableType.AT_DropColumn else "CONSTRAINT"
                add(
                    "drop-not-idempotent",
                    f"ALTER TABLE {table} DROP {what} {cmd.name}: add IF EXISTS {_RERUN}",
                )
    elif type(stmt).__name__.startswith("Drop"):
        if isinstance(stmt, ast.DropStmt) and stmt.concurrent and transactional:
            add("concurrently-in-transaction", f"DROP INDEX CONCURRENTLY {_NEEDS_NO_TRANSACTION}")
        if getattr(stmt, "missing_ok", None) is False:
            add("drop-not-idempotent", f"{_drop_description(stmt)}: add IF EXISTS {_RERUN}")
    elif isinstance(stmt, ast.TransactionStmt) and stmt.kind in _TRANSACTION_WORDS:
        how = (
            "already runs each file in its own transaction"
            if transactional
            else "runs this file statement by statement in autocommit"
        )
        add("explicit-transaction", f"{_TRANSACTION_WORDS[stmt.kind]}: the runner {how}; remove it")
    return found


def _has_rollback_note(text: str) -> bool:
    # pglast's scanner, not a line search, so "-- ROLLBACK:" inside a string or a
    # dollar-quoted body does not count as the file's note.
    for comment in parser.comments(text):
        body = comment.str
        if body.startswith("--") and body[2:].lstrip().startswith("ROLLBACK:"):
            return True
    return False


def lint_sql(filename: str, text: str, transactional: bool) -> list[Finding]:
    """Static checks of one migration file; ``transactional`` is False for no-transaction files.

    A syntax error stops the analysis: it is the only finding for that file. Statements
    inside ``DO`` blocks are the author's guarded code and are not checked.
    """
    try:
        executed = list(_executed(text))
    except SqlSyntaxError as err:
        return [Finding(filename, err.line, err.col, "error", "syntax", err.message)]
    findings = []
    for at, stmt, inside_do in executed:
        if inside_do:
            continue
        for where, code, message in _statement_findings(stmt, at, transactional):
            line, col = line_col(text, where)
            findings.append(Finding(filename, line, col, "error", code, message))
    if not _has_rollback_note(text):
        tables = [_qualified(s, n) for s, n in created_tables(text)]
        example = f"DROP TABLE IF EXISTS {', '.join(tables)};" if tables else "<sql>"
        message = f'no "-- ROLLBACK:" note: document the undo, e.g. "-- ROLLBACK: {example}"'
        findings.append(Finding(filename, 1, 1, "warning", "missing-rollback", message))
    return findings
