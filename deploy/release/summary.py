"""What a deploy says when it is done: its steps' timings, the release that serves, what
it did to the schema, and the tables whose names start with SUMMARY_TABLE_PREFIX."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from deploy.output import Output

# Up to this many names are listed after a deploy; more are counted, with the command.
LIST_AT_MOST = 40
WIDTH = 88


def print_timings(out: Output, total: float, timings: Sequence[tuple[str, float]]) -> None:
    out(f"deploy: done in {total:.1f} s; each step:")
    for line in textwrap.wrap(", ".join(f"{n} {t:.1f} s" for n, t in timings), WIDTH):
        out(f"   {line}")


def summarize(migrated, report, release: str, prefix: str) -> dict:
    """The deploy's summary from the runner's result and the tables report (either None
    when the deploy did not migrate, as a rollback)."""
    expected = (report.expected or []) if report else []
    return {"applied": list(migrated.applied) if migrated else [],
            "tables": len(expected),
            "table_prefix": prefix,
            "prefixed_tables": sorted(e["table"] for e in expected
                                      if prefix and e["table"].startswith(prefix)),
            "total": migrated.total_applied if migrated else 0, "release": release}


def print_summary(summary: dict, out: Output) -> None:
    """What the deploy did to the schema, one item per line: never a 700-character line.
    The tables of ``table_prefix`` are listed only when it is set."""
    applied = summary["applied"]
    if applied:
        out(f"deploy: migrations applied ({len(applied)}):")
        for name in applied:
            out(f"   {name}")
    else:
        out("deploy: migrations applied: none (schema already up to date)")
    out(f"deploy: {summary['tables']} expected table(s) verified")
    prefix = summary.get("table_prefix") or ""
    tables = summary.get("prefixed_tables") or []
    if not prefix:
        return
    if len(tables) > LIST_AT_MOST:
        out(f"deploy: {len(tables)} {prefix} tables exist; list them with "
            f"`invoke check-tables --prefix {prefix}`")
    elif tables:
        out(f"deploy: {len(tables)} {prefix} table(s) exist:")
        for line in textwrap.wrap(", ".join(tables), width=WIDTH):
            out(f"   {line}")
