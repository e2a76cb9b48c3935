"""lint-migrations: every file's problems, errors before anything runs in production.

``lint_sql`` runs the rules of deploy/sqllint/idempotency.py (re-runnable files) and
deploy/sqllint/safety.py (deploy-safe changes, acknowledged per deploy/sqllint/acknowledge.py)
on the statements deploy/migrate/sql.py finds; ``lint_directory`` on every file.
"""

from __future__ import annotations

import json
from pathlib import Path

from deploy.errors import CheckFailed, ConfigError, InvalidMigrations
from deploy.migrate.files import FILENAME_RE, display_path, line_col, parse_file
from deploy.migrate.sql import SqlSyntaxError, created_tables, executed_statements, qualified
from deploy.sqllint.acknowledge import deploy_safety_findings
from deploy.sqllint.findings import Finding
from deploy.sqllint.idempotency import has_rollback_note, statement_findings


def lint_sql(filename: str, text: str, transactional: bool) -> list[Finding]:
    """Static checks of one migration file; ``transactional`` is False for no-transaction files.

    A syntax error stops the analysis: it is the only finding for that file. The
    idempotency checks skip statements inside ``DO`` blocks (the author's guarded code);
    the deploy-safety checks (deploy/sqllint/safety.py) look inside them too. Acknowledged
    findings come back with severity "info" and the reason in ``acknowledged``.
    """
    try:
        executed = list(executed_statements(text))
    except SqlSyntaxError as err:
        return [Finding(filename, err.line, err.col, "error", "syntax", err.message)]
    findings = []
    for ex in executed:
        if ex.inside_do:
            continue
        for where, code, message in statement_findings(ex.stmt, ex.at, transactional):
            line, col = line_col(text, where)
            findings.append(Finding(filename, line, col, "error", code, message))
    findings += deploy_safety_findings(filename, text, executed)
    findings.sort(key=lambda f: (f.line, f.col))
    if not has_rollback_note(text):
        tables = [qualified(s, n) for s, n in created_tables(text)]
        example = f"DROP TABLE IF EXISTS {', '.join(tables)};" if tables else "<sql>"
        message = f'no "-- ROLLBACK:" note: document the undo, e.g. "-- ROLLBACK: {example}"'
        findings.append(Finding(filename, 1, 1, "warning", "missing-rollback", message))
    return findings


def lint_directory(directory: Path) -> list[Finding]:
    if not directory.is_dir():
        raise ConfigError(f"MIGRATIONS_DIR: {directory} is not a directory")
    findings: list[Finding] = []
    numbers: dict[int, str] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql" or not path.is_file():
            continue
        shown = display_path(path)
        try:
            m = parse_file(path, path.read_bytes())
        except InvalidMigrations as exc:
            message = str(exc).split(": ", 1)[-1]
            findings.append(Finding(shown, 1, 1, "error", "invalid-file", message))
            continue
        if m.version in numbers:
            findings.append(Finding(shown, 1, 1, "error", "duplicate-number",
                                    f"number {m.version} is also used by {numbers[m.version]}"))
        numbers.setdefault(m.version, m.filename)
        findings.extend(lint_sql(shown, m.text, m.transactional))
    findings.sort(key=lambda f: (_order(f.file), f.line, f.col))
    return findings


def _order(file: str) -> tuple[int, str]:
    match = FILENAME_RE.match(Path(file).name)
    return (int(match.group(1)) if match else -1, file)


def format_findings(findings: list[Finding],
                    as_json: bool = False) -> tuple[list[str], CheckFailed | None]:
    """Text lines (or one JSON document) and the failure to raise when there are errors.

    Acknowledged findings (severity "info") appear in the JSON only.
    """
    errors = [f for f in findings if f.severity == "error"]
    warnings = [f for f in findings if f.severity == "warning"]
    if as_json:
        lines = [json.dumps([f.as_dict() for f in findings], indent=2)]
    else:
        lines = [str(f) for f in findings if f.severity != "info"]
        lines.append(f"lint: {len(errors)} error(s), {len(warnings)} warning(s)")
    failure = CheckFailed(f"lint-migrations: {len(errors)} error(s)") if errors else None
    return lines, failure
