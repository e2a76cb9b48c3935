"""What a deploy says when it is done: the schema's changes one per line, the tables of
SUMMARY_TABLE_PREFIX (none without it)."""

from __future__ import annotations

from types import SimpleNamespace

from deploy.output import Output
from deploy.release.summary import LIST_AT_MOST, print_summary, summarize


def test_the_deploy_summary_lists_one_item_per_line_and_counts_long_lists():
    said = []
    names = [f"ai_table_{i:02d}" for i in range(12)]
    print_summary({"applied": ["005_a.sql", "006_b.sql"], "tables": 40, "table_prefix": "ai_",
                   "prefixed_tables": names}, Output(said.append))
    assert said[:3] == ["deploy: migrations applied (2):", "   005_a.sql", "   006_b.sql"]
    assert said[3:5] == ["deploy: 40 expected table(s) verified", "deploy: 12 ai_ table(s) exist:"]
    assert " ".join(said[5:]).replace(",", " ").split() == names
    assert max(len(line) for line in said) <= 92

    said.clear()
    many = [f"ai_{i}" for i in range(LIST_AT_MOST + 1)]
    print_summary({"applied": [], "tables": 40, "table_prefix": "ai_",
                   "prefixed_tables": many}, Output(said.append))
    assert said == ["deploy: migrations applied: none (schema already up to date)",
                    "deploy: 40 expected table(s) verified",
                    f"deploy: {LIST_AT_MOST + 1} ai_ tables exist; list them with "
                    "`invoke check-tables --prefix ai_`"]


def test_the_deploy_summary_lists_no_tables_by_prefix_when_no_prefix_is_set():
    said = []
    print_summary({"applied": [], "tables": 3, "table_prefix": "",
                   "prefixed_tables": []}, Output(said.append))
    assert said == ["deploy: migrations applied: none (schema already up to date)",
                    "deploy: 3 expected table(s) verified"]


def test_the_summary_keeps_the_tables_of_the_prefix_setting_only():
    report = SimpleNamespace(expected=[{"table": "ai_b"}, {"table": "users"},
                                       {"table": "ai_a"}])
    migrated = SimpleNamespace(applied=["001_a.sql"], total_applied=5)
    assert summarize(migrated, report, "r1", "ai_") == {
        "applied": ["001_a.sql"], "tables": 3, "table_prefix": "ai_",
        "prefixed_tables": ["ai_a", "ai_b"], "total": 5, "release": "r1"}
    assert summarize(None, None, "r1", "")["prefixed_tables"] == []
