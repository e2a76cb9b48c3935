"""lint-migrations: every file's problems, errors before anything runs in production."""

from __future__ import annotations

import json
from pathlib import Path

from deploy.errors import CheckFailed, ConfigError, InvalidMigrations
from deploy.migrate.files import FILENAME_RE, display_path, parse_file


def lint_directory(directory: Path) -> list:
    from deploy.sqllint.parse import Finding, lint_sql

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


def format_findings(findings: list, as_json: bool = False) -> tuple[list[str], CheckFailed | None]:
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
