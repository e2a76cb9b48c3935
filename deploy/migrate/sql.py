"""Migration SQL as the server's parser sees it (pglast): statements, CONCURRENTLY, tables.

The engine splits no-transaction files into statements and finds CONCURRENTLY statements
with it; check-tables and the backend's /health find the tables the files create; the lint
rules of deploy/sqllint/ walk the statements it yields. Pure: text in, data out; no
database. Every offset here is a character offset into the file's text (pglast already
converts libpg_query's UTF-8 byte offsets to characters).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import pglast
from pglast import ast, parser
from pglast.enums import ObjectType

from deploy.migrate.files import line_col


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


@dataclass(frozen=True)
class Concurrent:
    """A CONCURRENTLY statement; for CREATE INDEX, the index it builds."""

    index: str | None = None
    schema: str | None = None
    table: str | None = None


def concurrent(text: str) -> Concurrent | None:
    """Parse one statement: is it CREATE/DROP/REINDEX … CONCURRENTLY or DETACH
    PARTITION … CONCURRENTLY?"""
    if "concurrently" not in text.lower():
        return None
    try:
        (raw,) = parser.parse_sql(text)
    except (parser.ParseError, ValueError):
        return None
    stmt = raw.stmt
    if isinstance(stmt, ast.IndexStmt) and stmt.concurrent:
        return Concurrent(stmt.idxname, stmt.relation.schemaname, stmt.relation.relname)
    if isinstance(stmt, ast.DropStmt) and stmt.concurrent:
        return Concurrent()
    if isinstance(stmt, ast.ReindexStmt) and any(
            p.defname == "concurrently" for p in stmt.params or ()):
        return Concurrent()
    if isinstance(stmt, ast.AlterTableStmt) and any(
            getattr(cmd.def_, "concurrent", False) for cmd in stmt.cmds or ()):
        return Concurrent()
    return None


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


def _plpgsql_queries(tree: object) -> Iterator[tuple[int, str]]:
    """(line in the body, SQL) of every plain SQL statement in a PL/pgSQL tree, in order.

    Only ``PLpgSQL_stmt_execsql`` runs SQL as written; ``EXECUTE '…'`` builds it at run
    time, so dynamic SQL is invisible to this analysis by nature.
    """
    if isinstance(tree, dict):
        execsql = tree.get("PLpgSQL_stmt_execsql")
        if execsql is not None:
            # PL/pgSQL strips "INTO var" from the text, so a SELECT INTO here is never
            # mistaken for the table-creating top-level form.
            yield execsql.get("lineno", 1), execsql["sqlstmt"]["PLpgSQL_expr"]["query"]
            return
        for value in tree.values():
            yield from _plpgsql_queries(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _plpgsql_queries(item)


class Executed(NamedTuple):
    """One statement the file runs: ``at`` is where it starts in the file's text.

    Node locations inside a top-level statement are offsets into the file; inside a
    ``DO`` block they are offsets into the statement's own text, which starts at ``at``
    when ``exact`` (found verbatim in the body) and is unknown otherwise.
    """

    at: int
    stmt: ast.Node
    inside_do: bool = False
    exact: bool = True

    def where(self, location: int | None) -> int:
        """File offset of a node location in this statement (its start when unknown)."""
        if location is None or location < 0 or not self.exact:
            return self.at
        return self.at + location if self.inside_do else location


def _body_offsets(text: str, where: int, length: int) -> Iterator[tuple[int, bool, str]]:
    """(offset, exact, SQL) for the plain SQL statements of the DO block at ``where``.

    libpg_query's PL/pgSQL parser gives each statement's line in the body (line 1 holds
    the opening quote) but no column: the statement is found verbatim from that line on
    (exact), else (a quote-doubled body) it is placed at the first token of that line.
    """
    body = text[where : where + length] if length else text[where:]
    tree = json.loads(parser.parse_plpgsql_json(body))
    quote = where + next((t.start for t in parser.scan(body) if t.name == "SCONST"), 0)
    first_line = text.count("\n", 0, quote)
    end = where + len(body)
    used: set[int] = set()
    for lineno, query in _plpgsql_queries(tree):
        line_start = max(quote, _line_start(text, first_line + lineno - 1))
        found = text.find(query, line_start, end)
        while found in used:
            found = text.find(query, found + 1, end)
        if found >= 0:
            used.add(found)
            yield found, True, query
        else:
            line = text[line_start:]
            yield line_start + len(line) - len(line.lstrip(" \t")), False, query


def _line_start(text: str, line_index: int) -> int:
    """Offset of the start of the 0-based line ``line_index`` (the end past the last line)."""
    start = 0
    for _ in range(line_index):
        start = text.find("\n", start) + 1
        if start == 0:
            return len(text)
    return start


def executed_statements(text: str) -> Iterator[Executed]:
    """Every statement the file runs, in order, ``DO`` block bodies included (PL/pgSQL)."""
    for raw in _parse(text):
        yield Executed(raw.stmt_location, raw.stmt)
        if not isinstance(raw.stmt, ast.DoStmt) or _do_language(raw.stmt) != "plpgsql":
            continue
        where = raw.stmt_location
        try:
            for at, exact, query in _body_offsets(text, where, raw.stmt_len):
                for inner in parser.parse_sql(query):
                    yield Executed(at, inner.stmt, True, exact)
        except parser.ParseError as err:
            # Neither position nor line of an error inside the body is reported.
            raise _syntax_error(text, err, at=where, prefix="in DO block: ") from None


def qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def created_relation(stmt: ast.Node, inside_do: bool) -> ast.RangeVar | None:
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


Name = tuple[str | None, str]  # (schema or None, name)


def _same_table(a: Name, b: Name) -> bool:
    # An unqualified name resolves through search_path, so it may be any schema.
    return a[1] == b[1] and (a[0] is None or b[0] is None or a[0] == b[0])


def name_of(names: tuple[ast.String, ...]) -> Name:
    parts = [n.sval for n in names]
    return (parts[-2] if len(parts) > 1 else None, parts[-1])


class Created:
    """The tables and named indexes a file has created so far, statement by statement.

    Follows DROP, ALTER … RENAME TO and ALTER TABLE … SET SCHEMA of what it created.
    """

    def __init__(self) -> None:
        self.tables: list[Name] = []
        self.indexes: list[Name] = []

    def has_table(self, name: Name) -> bool:
        return any(_same_table(t, name) for t in self.tables)

    def has_index(self, name: Name) -> bool:
        return any(_same_table(i, name) for i in self.indexes)

    @staticmethod
    def _replace(names: list[Name], old: Name, new: Name | None) -> None:
        for i, name in enumerate(names):
            if _same_table(name, old):
                if new is None:
                    del names[i]
                else:
                    names[i] = new
                return

    def apply(self, stmt: ast.Node, inside_do: bool) -> None:
        rel = created_relation(stmt, inside_do)
        if rel is not None:
            if not self.has_table((rel.schemaname, rel.relname)):
                self.tables.append((rel.schemaname, rel.relname))
        elif isinstance(stmt, ast.IndexStmt) and stmt.idxname:
            self.indexes.append((stmt.relation.schemaname, stmt.idxname))
        elif isinstance(stmt, ast.DropStmt) and stmt.removeType in _LISTS:
            for names in stmt.objects:
                self._replace(getattr(self, _LISTS[stmt.removeType]), name_of(names), None)
        elif isinstance(stmt, ast.RenameStmt) and stmt.renameType in _LISTS:
            rel = stmt.relation
            self._replace(getattr(self, _LISTS[stmt.renameType]),
                          (rel.schemaname, rel.relname), (rel.schemaname, stmt.newname))
        elif (
            isinstance(stmt, ast.AlterObjectSchemaStmt)
            and stmt.objectType == ObjectType.OBJECT_TABLE
        ):
            rel = stmt.relation
            self._replace(self.tables, (rel.schemaname, rel.relname),
                          (stmt.newschema, rel.relname))


_LISTS = {ObjectType.OBJECT_TABLE: "tables", ObjectType.OBJECT_INDEX: "indexes"}


def created_tables(text: str) -> list[Name]:
    """(schema or None, table) for each table the file leaves behind, in creation order.

    Follows DROP TABLE, ALTER TABLE … RENAME TO and … SET SCHEMA later in the file,
    and plain SQL inside ``DO`` blocks (not dynamic ``EXECUTE``).
    """
    created = Created()
    for ex in executed_statements(text):
        created.apply(ex.stmt, ex.inside_do)
    return created.tables
