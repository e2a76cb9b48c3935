"""Deterministic, realistic migration files for the benchmarks, in each tool's format.

Modelled on the shipped example migrations (migrations/): every file creates a table with 5–10
columns (`CREATE TABLE IF NOT EXISTS`), 1–4 indexes, and carries its undo as a
`-- ROLLBACK:` note; about a third also add a column to an earlier table in a
`DO $$ … IF NOT EXISTS … ALTER TABLE … ADD COLUMN IF NOT EXISTS … END $$` block, about a
fifth seed rows (`INSERT … ON CONFLICT DO NOTHING`), some reference an earlier table, and
every tenth file whose table has `updated_at` defines a trigger function (PL/pgSQL with
its own `;` inside dollar quotes, which statement splitters must get right). The files
pass the project's own `invoke lint-migrations`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

DOMAINS = ("ai", "user", "grant", "application", "document", "compliance", "budget",
           "partner", "rag", "form", "analytics", "assistant")
NOUNS = ("cost_thresholds", "preferences", "usage_events", "alerts", "snapshots", "reviews",
         "assignments", "embeddings", "sessions", "audit_log", "scores", "limits",
         "requests", "feedback", "templates", "quotas", "metrics", "notes")
# (name, type) pools for the optional columns; id/organization_id/created_at are always there.
EXTRA_COLUMNS = (
    ("name", "VARCHAR(255) NOT NULL DEFAULT ''"),
    ("description", "TEXT"),
    ("status", "VARCHAR(50) NOT NULL DEFAULT 'active'"),
    ("limit_amount", "DECIMAL(10,4)"),
    ("is_active", "BOOLEAN DEFAULT true"),
    ("metadata", "JSONB NOT NULL DEFAULT '{}'::jsonb"),
    ("priority", "INTEGER NOT NULL DEFAULT 0"),
    ("score", "DOUBLE PRECISION"),
    ("external_ref", "VARCHAR(128)"),
    ("updated_at", "TIMESTAMP DEFAULT CURRENT_TIMESTAMP"),
    ("expires_at", "TIMESTAMP"),
    ("tags", "TEXT[] NOT NULL DEFAULT '{}'"),
)
ADDED_COLUMNS = (("archived_at", "TIMESTAMP"), ("notes", "TEXT"), ("version", "INTEGER DEFAULT 1"),
                 ("owner_id", "VARCHAR(255)"), ("source", "VARCHAR(64) DEFAULT 'api'"))


@dataclass(frozen=True)
class GeneratedMigration:
    number: int
    name: str          # lower_snake, without number or extension
    up: str            # the SQL, including the `-- ROLLBACK:` notes
    down: str          # the undo as SQL (for dbmate's down section and yoyo's rollback file)

    def filename(self, width: int) -> str:
        return f"{self.number:0{width}d}_{self.name}.sql"


def realistic(n: int, seed: int = 20240611) -> list[GeneratedMigration]:
    rng = random.Random(seed)
    tables: list[tuple[str, list[str]]] = []
    out = []
    for i in range(1, n + 1):
        table = f"{rng.choice(DOMAINS)}_{rng.choice(NOUNS)}_{i}"
        parent = rng.choice(tables)[0] if tables and rng.random() < 0.3 else None
        # id, organization_id, created_at, the parent's id if any, then 5..10 in all.
        extras = rng.sample(EXTRA_COLUMNS, rng.randint(2, 7 - (parent is not None)))
        columns = [("id", "VARCHAR(255) PRIMARY KEY"),
                   ("organization_id", "VARCHAR(255) NOT NULL")] + extras
        if parent:
            columns.append((f"{parent}_id",
                            f"VARCHAR(255) REFERENCES {parent}(id) ON DELETE CASCADE"))
        columns.append(("created_at", "TIMESTAMP DEFAULT CURRENT_TIMESTAMP"))
        names = [c for c, _ in columns]
        lines = [
            f"-- {table.replace('_', ' ').capitalize()}: generated for the migration benchmark.",
            f"-- ROLLBACK: DROP TABLE IF EXISTS {table} CASCADE;",
            "",
            f"CREATE TABLE IF NOT EXISTS {table} (",
            ",\n".join(f"    {c} {t}" for c, t in columns),
            ");",
            "",
        ]
        down = [f"DROP TABLE IF EXISTS {table} CASCADE;"]
        indexable = [c for c in names if c in ("status", "created_at", "priority",
                                                "external_ref", "is_active", "expires_at")]
        index_cols = ["organization_id"] + rng.sample(indexable,
                                                      k=min(len(indexable), rng.randint(0, 2)))
        for col in dict.fromkeys(index_cols):
            lines.append(f"CREATE INDEX IF NOT EXISTS idx_{table}_{col} ON {table}({col});")
        if "metadata" in names and rng.random() < 0.5:
            lines.append(f"CREATE INDEX IF NOT EXISTS idx_{table}_metadata ON {table} "
                         "USING GIN (metadata);")
        if tables and rng.random() < 0.33:
            target, target_cols = rng.choice(tables)
            col, typ = rng.choice([c for c in ADDED_COLUMNS if c[0] not in target_cols]
                                  or [(f"extra_{i}", "TEXT")])
            target_cols.append(col)
            lines += [
                "",
                f"-- ROLLBACK: ALTER TABLE {target} DROP COLUMN IF EXISTS {col};",
                "DO $$",
                "BEGIN",
                "    IF NOT EXISTS (",
                "        SELECT 1 FROM information_schema.columns",
                f"        WHERE table_name = '{target}' AND column_name = '{col}'",
                "    ) THEN",
                f"        ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {col} {typ};",
                "    END IF;",
                "END $$;",
            ]
            down.insert(0, f"ALTER TABLE {target} DROP COLUMN IF EXISTS {col};")
        if rng.random() < 0.25:
            rows = ",\n".join(f"    ('{table}-{k}', 'org-{rng.randint(1, 50)}')"
                              for k in range(1, rng.randint(2, 6)))
            lines += ["", f"INSERT INTO {table} (id, organization_id) VALUES", rows,
                      "ON CONFLICT (id) DO NOTHING;"]
        if i % 10 == 0 and "updated_at" in names:
            fn = f"set_{table}_updated_at"
            lines += [
                "",
                f"-- ROLLBACK: DROP FUNCTION IF EXISTS {fn}() CASCADE;",
                f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger AS $$",
                "BEGIN",
                "    NEW.updated_at = CURRENT_TIMESTAMP;",
                "    RETURN NEW;",
                "END;",
                "$$ LANGUAGE plpgsql;",
                f"DROP TRIGGER IF EXISTS trg_{table}_updated_at ON {table};",
                f"CREATE TRIGGER trg_{table}_updated_at BEFORE UPDATE ON {table}",
                f"    FOR EACH ROW EXECUTE FUNCTION {fn}();",
            ]
            down.insert(0, f"DROP FUNCTION IF EXISTS {fn}() CASCADE;")
        lines += ["", f"COMMENT ON TABLE {table} IS 'benchmark table {i}';", ""]
        tables.append((table, names))
        out.append(GeneratedMigration(i, table, "\n".join(lines), "\n".join(down) + "\n"))
    return out


def small(n: int) -> list[GeneratedMigration]:
    """Tiny files for the 5,000-file scale test: what is timed there is the no-op path."""
    out = []
    for i in range(1, n + 1):
        table = f"scale_t_{i}"
        up = (f"-- ROLLBACK: DROP TABLE IF EXISTS {table};\n"
              f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, note TEXT);\n")
        out.append(GeneratedMigration(i, table, up, f"DROP TABLE IF EXISTS {table};\n"))
    return out


def width_for(n: int) -> int:
    return max(3, len(str(n)))


def write_runner_dir(migrations: list[GeneratedMigration], directory: Path) -> None:
    """`NNN_name.sql`, as-is: read by `python -m deploy` and by minimal_loop.py."""
    directory.mkdir(parents=True, exist_ok=True)
    width = width_for(len(migrations))
    for m in migrations:
        (directory / m.filename(width)).write_text(m.up, encoding="utf-8")


def write_yoyo_dir(migrations: list[GeneratedMigration], directory: Path) -> None:
    """yoyo: the same `.sql` files plus its `NNN_name.rollback.sql` undo files."""
    directory.mkdir(parents=True, exist_ok=True)
    width = width_for(len(migrations))
    for m in migrations:
        name = m.filename(width)
        (directory / name).write_text(m.up, encoding="utf-8")
        (directory / name.replace(".sql", ".rollback.sql")).write_text(m.down, encoding="utf-8")


def write_dbmate_dir(migrations: list[GeneratedMigration], directory: Path) -> None:
    """dbmate: `db/migrations/<version>_name.sql` with `-- migrate:up` / `-- migrate:down`."""
    directory.mkdir(parents=True, exist_ok=True)
    width = width_for(len(migrations))
    for m in migrations:
        text = f"-- migrate:up\n{m.up}\n-- migrate:down\n{m.down}"
        (directory / m.filename(width)).write_text(text, encoding="utf-8")
