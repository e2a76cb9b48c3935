"""Pure migration logic: discover files, parse directives, order, checksum, plan.

Paths and text in, data out; no database. Everything here is tested without PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from deploy.errors import ConfigError, InvalidMigrations

FILENAME_RE = re.compile(r"^(\d+)_([a-z0-9_]+)\.sql$")
_DIRECTIVE_RE = re.compile(r"^--\s*migrate:\s*(.*?)\s*$")
_ROLLBACK_RE = re.compile(r"^\s*--\s*ROLLBACK:\s*(.+?)\s*$")
DIRECTIVE_VALUES = ("transaction", "no-transaction")


@dataclass(frozen=True)
class Migration:
    version: int
    filename: str
    path: Path
    text: str
    checksum: str  # sha256 of the file's bytes, hex
    transactional: bool = True
    rollback: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoryRow:
    filename: str
    checksum: str | None  # None: adopted from the legacy runner, not yet recorded
    executed_at: datetime | None = None
    execution_ms: int | None = None
    applied_by: str | None = None
    missing_accepted_at: datetime | None = None  # its file's deletion was accepted


@dataclass
class Plan:
    """What the history says versus what the files say."""

    applied: list[tuple[Migration, HistoryRow]] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)
    changed: list[tuple[Migration, HistoryRow]] = field(default_factory=list)
    missing: list[HistoryRow] = field(default_factory=list)
    # With allow_ahead: rows without a file numbered above every file here, applied by a
    # newer release (older code on a newer schema, as after a rollback). Not drift.
    ahead: list[HistoryRow] = field(default_factory=list)
    out_of_order: list[Migration] = field(default_factory=list)
    unrecorded: list[tuple[Migration, HistoryRow]] = field(default_factory=list)
    removed: list[HistoryRow] = field(default_factory=list)  # file gone, accepted: not drift
    last_applied_version: int | None = None

    @property
    def drift(self) -> bool:
        return bool(self.changed or self.missing or self.out_of_order)

    def drift_lines(self) -> list[str]:
        lines = [
            f"changed: {m.filename} was applied with checksum {row.checksum[:12]}, "
            f"the file now has {m.checksum[:12]}"
            for m, row in self.changed
        ]
        lines += [f"missing: {row.filename} is in the history but its file is gone"
                  for row in self.missing]
        last = self.last_applied_version
        lines += [f"out of order: {m.filename} is new but numbered below the last applied "
                  f"migration ({last})" for m in self.out_of_order]
        return lines


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a 0-based character offset, counting lines by ``\\n``."""
    offset = max(0, min(offset, len(text)))
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def display_path(path: Path) -> str:
    """A path as the user should see it in a message: relative to the cwd when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_file(path: Path, data: bytes) -> Migration:
    """One file's bytes → Migration; InvalidMigrations names the file and line."""
    name = path.name
    def shown() -> str:  # only on errors: resolving paths costs at 5,000 files
        return display_path(path)

    match = FILENAME_RE.match(name)
    if not match:
        raise InvalidMigrations(
            f"{shown()}: file name must look like NNN_lower_snake_name.sql "
            f"(digits, '_', then a-z, 0-9 and '_')"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidMigrations(
            f"{shown()}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at byte offset "
            f"{exc.start}); save the file as UTF-8"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not _has_sql(text):
        raise InvalidMigrations(f"{shown()}: empty file (no SQL, only blank lines or comments)")
    transactional = True
    in_header = True
    rollback = []
    lines = text.splitlines() if ("migrate:" in text or "ROLLBACK:" in text) else ()
    for lineno, line in enumerate(lines, 1):
        stripped = line.strip()
        directive = _DIRECTIVE_RE.match(stripped)
        if directive:
            value = directive.group(1)
            if not in_header:
                raise InvalidMigrations(
                    f"{shown()}:{lineno}: '-- migrate:' directives belong in the comments "
                    "before the first statement"
                )
            if value not in DIRECTIVE_VALUES:
                raise InvalidMigrations(
                    f"{shown()}:{lineno}: unknown directive value {value!r} "
                    f"(expected one of: {', '.join(DIRECTIVE_VALUES)})"
                )
            transactional = value == "transaction"
        elif stripped and not stripped.startswith("--"):
            in_header = False
        note = _ROLLBACK_RE.match(line)
        if note:
            rollback.append(note.group(1))
    return Migration(
        version=int(match.group(1)),
        filename=name,
        path=path,
        text=text,
        checksum=checksum(data),
        transactional=transactional,
        rollback=tuple(rollback),
    )


def _has_sql(text: str) -> bool:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            return True
    return False


def discover(directory: Path) -> list[Migration]:
    """Every migration in directory, ordered by integer prefix; all problems at once."""
    if not directory.is_dir():
        raise ConfigError(f"MIGRATIONS_DIR: {display_path(directory)} is not a directory")
    problems: list[str] = []
    migrations: list[Migration] = []
    # scandir and plain open(): fewer system calls and objects per file than
    # Path.iterdir/is_file/read_bytes, which shows in a directory of thousands of files.
    with os.scandir(directory) as entries:
        names = sorted(e.name for e in entries if e.name.endswith(".sql") and e.is_file())
    for name in names:
        path = directory / name
        with open(os.path.join(directory, name), "rb") as fh:
            data = fh.read()
        try:
            migrations.append(parse_file(path, data))
        except InvalidMigrations as exc:
            problems.append(str(exc))
    by_version: dict[int, list[Migration]] = {}
    for m in migrations:
        by_version.setdefault(m.version, []).append(m)
    for version, group in sorted(by_version.items()):
        if len(group) > 1:
            names = ", ".join(m.filename for m in group)
            problems.append(f"{display_path(directory)}: number {version} is used by more than "
                            f"one file: {names}")
    if problems:
        count = f"{len(problems)} invalid migration file{'s' if len(problems) > 1 else ''}"
        raise InvalidMigrations(f"{count}; nothing was applied:\n" + "\n".join(problems))
    migrations.sort(key=lambda m: m.version)
    return migrations


def plan_migrations(migrations: list[Migration], history: list[HistoryRow],
                    allow_ahead: bool = False) -> Plan:
    """``allow_ahead``: a history row whose file is gone and whose number is above every
    file here counts as applied by a newer release (``Plan.ahead``), not as drift."""
    plan = Plan()
    by_name = {row.filename: row for row in history}
    on_disk = {m.filename for m in migrations}
    # Every history row counts, including those whose file is gone.
    versions = [int(match.group(1)) for row in history
                if (match := FILENAME_RE.match(row.filename))]
    last = plan.last_applied_version = max(versions) if versions else None
    for m in migrations:
        row = by_name.get(m.filename)
        if row is None:
            continue
        if row.checksum is None:
            plan.unrecorded.append((m, row))
        elif row.checksum != m.checksum:
            plan.changed.append((m, row))
        else:
            plan.applied.append((m, row))
    for m in migrations:
        if m.filename not in by_name:
            plan.pending.append(m)
            if last is not None and m.version < last:
                plan.out_of_order.append(m)
    newest = max((m.version for m in migrations), default=None)

    def newer(row: HistoryRow) -> bool:
        match = FILENAME_RE.match(row.filename)
        return bool(match) and (newest is None or int(match.group(1)) > newest)

    for row in history:
        if row.filename not in on_disk:
            if row.missing_accepted_at:
                plan.removed.append(row)
            elif allow_ahead and newer(row):
                plan.ahead.append(row)
            else:
                plan.missing.append(row)
    return plan


def status_rows(migrations: list[Migration], plan: Plan) -> list[dict]:
    """One row per file (in order), then one per history row without a file.

    checksum is the file's now, recorded_checksum the history's: both differ for "changed";
    "missing" rows (file gone: drift) and "removed" ones (gone, accepted) have no file."""
    rows_by_name = {m.filename: (m, "applied", row) for m, row in plan.applied}
    rows_by_name |= {m.filename: (m, "applied", row) for m, row in plan.unrecorded}
    rows_by_name |= {m.filename: (m, "changed", row) for m, row in plan.changed}
    out_of_order = {m.filename for m in plan.out_of_order}
    rows = []
    for m in migrations:
        _, state, row = rows_by_name.get(m.filename, (m, "pending", None))
        if m.filename in out_of_order:
            state = "out-of-order"
        rows.append({
            "filename": m.filename,
            "state": state,
            "executed_at": row.executed_at.isoformat() if row and row.executed_at else None,
            "execution_ms": row.execution_ms if row else None,
            "applied_by": row.applied_by if row else None,
            "checksum": m.checksum,
            "recorded_checksum": row.checksum if row else None,
        })
    gone = [(row, "missing") for row in plan.missing] + [(row, "removed") for row in plan.removed]
    for row, state in sorted(gone, key=lambda item: _version(item[0].filename)):
        rows.append({
            "filename": row.filename,
            "state": state,
            "executed_at": row.executed_at.isoformat() if row.executed_at else None,
            "execution_ms": row.execution_ms,
            "applied_by": row.applied_by,
            "checksum": None,
            "recorded_checksum": row.checksum,
        })
    return rows


def _version(filename: str) -> tuple[int, str]:
    match = FILENAME_RE.match(filename)
    return (int(match.group(1)) if match else -1, filename)


NAME_RE = re.compile(r"^[a-z0-9_]+$")

TEMPLATE = """\
-- {filename}
-- Written to be idempotent: re-running it must be harmless.
-- ROLLBACK: DROP TABLE IF EXISTS {table};

CREATE TABLE IF NOT EXISTS {table} (
    id VARCHAR(255) PRIMARY KEY,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
"""


def new_migration_filename(migrations: list[Migration], name: str) -> str:
    """The next file name after the highest number, keeping the team's zero padding."""
    if not NAME_RE.match(name):
        raise ConfigError(
            f"NAME: {name!r} must be lower-case letters, digits and '_' (e.g. user_roles_system)"
        )
    if not migrations:
        return f"001_{name}.sql"
    last = migrations[-1]
    width = len(last.filename.split("_", 1)[0])
    return f"{last.version + 1:0{width}d}_{name}.sql"


def render_template(filename: str, name: str) -> str:
    return TEMPLATE.format(filename=filename, table=name)
