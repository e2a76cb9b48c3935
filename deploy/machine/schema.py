"""The schema check a deploy and a reset end with: check-tables --expected, reported."""

from __future__ import annotations

from deploy.migrate.tables import TablesReport, check_tables, format_report
from deploy.output import Output
from deploy.settings import Settings


def verify_tables(reachable: Settings, out: Output) -> TablesReport:
    """Every table the migrations create exists (a timed step); otherwise the report's
    lines, then its CheckFailed. ``reachable``: settings whose DATABASE_URL reaches the
    stack's database (through a tunnel on a host)."""
    report = out.step("check-tables --expected", check_tables, reachable.database_url,
                      reachable.migrations_dir, prefix=None, schema="public", expected=True)
    lines, failure = format_report(report)
    if failure:
        for line in lines:
            out("   " + line)
        raise failure
    return report
