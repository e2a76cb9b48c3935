"""Table inventory: tables by literal prefix, and the tables the migrations should have made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.defaults import TABLES_SCHEMA
from deploy.errors import CheckFailed, ConfigError, InvalidMigrations
from deploy.migrate import db
from deploy.migrate.dberrors import translated
from deploy.migrate.files import Migration, discover
from deploy.migrate.sql import SqlSyntaxError, created_tables


@dataclass(frozen=True)
class ExpectedTable:
    schema: str
    table: str
    filename: str


def expected_tables(migrations: list[Migration],
                    schema: str = TABLES_SCHEMA) -> list[ExpectedTable]:
    """Tables the migrations create (parsed with pglast), first creator wins."""
    seen: dict[tuple[str, str], ExpectedTable] = {}
    for m in migrations:
        try:
            created = created_tables(m.text)
        except SqlSyntaxError as exc:
            raise InvalidMigrations(f"{m.path}:{exc.line}:{exc.col}: {exc.message}") from None
        for table_schema, name in created:
            key = (table_schema or schema, name)
            seen.setdefault(key, ExpectedTable(key[0], name, m.filename))
    return list(seen.values())


def missing_expected_tables(conn, expected: list[ExpectedTable],
                            schema: str = TABLES_SCHEMA) -> list[tuple[str, str]]:
    """(table, file that creates it) for each expected table missing from the database.

    `expected` comes from expected_tables, parsed once by the caller: the backend's /health
    runs this on every check, on a connection it keeps, and its migrations never change.
    """
    missing = set(db.missing_tables(conn, [(e.schema, e.table) for e in expected]))
    return [(_qualified(e, schema), e.filename) for e in expected if (e.schema, e.table) in missing]


def _qualified(e: ExpectedTable, default_schema: str) -> str:
    return e.table if e.schema == default_schema else f"{e.schema}.{e.table}"


@dataclass
class TablesReport:
    schema: str
    prefix: str | None
    tables: list[str]
    expected: list[dict] | None = None

    @property
    def missing(self) -> list[dict]:
        return [e for e in self.expected or [] if not e["exists"]]

    def as_dict(self) -> dict:
        data = {"schema": self.schema, "prefix": self.prefix, "tables": self.tables}
        if self.expected is not None:
            data["expected"] = self.expected
            data["missing"] = [e["table"] for e in self.missing]
        return data


def check_tables(url: str, migrations_dir: Path, *, prefix: str | None, schema: str,
                 expected: bool, wait: float = 0.0) -> TablesReport:
    if not schema:
        raise ConfigError("--schema: must not be empty")
    wanted = expected_tables(discover(migrations_dir), schema) if expected else None
    with translated("check-tables", schema, url), \
            db.connect(url, application_name="deploy check-tables", wait=wait) as conn:
        if not db.schema_exists(conn, schema):
            raise ConfigError(f"--schema: schema {schema!r} does not exist in the database")
        tables = db.list_tables(conn, schema, prefix or "")
        report = TablesReport(schema, prefix, tables)
        if wanted is not None:
            if prefix:
                wanted = [e for e in wanted if e.table.startswith(prefix)]
            gone = set(db.missing_tables(conn, [(e.schema, e.table) for e in wanted]))
            report.expected = [
                {"table": _qualified(e, schema), "file": e.filename,
                 "exists": (e.schema, e.table) not in gone}
                for e in wanted
            ]
    return report


def format_report(report: TablesReport) -> tuple[list[str], CheckFailed | None]:
    """Lines to print, and the check failure (exit 3) if any."""
    lines: list[str] = []
    label = f"starting with {report.prefix!r}" if report.prefix else "in total"
    if report.expected is None:
        lines += report.tables
        lines.append(f"{len(report.tables)} table(s) in schema {report.schema} {label}")
        if not report.tables:
            return lines, CheckFailed(
                f"check-tables: no table in schema {report.schema} {label}")
        return lines, None
    for e in report.expected:
        mark = "ok     " if e["exists"] else "MISSING"
        lines.append(f"{mark} {e['table']}  (created by {e['file']})")
    missing = report.missing
    lines.append(f"{len(report.expected) - len(missing)} of {len(report.expected)} expected "
                 f"table(s) exist in schema {report.schema}")
    if missing:
        names = "\n".join(f"  {e['table']} (created by {e['file']})" for e in missing)
        return lines, CheckFailed(f"check-tables: {len(missing)} expected table(s) missing in "
                                  f"schema {report.schema}:\n{names}")
    return lines, None
