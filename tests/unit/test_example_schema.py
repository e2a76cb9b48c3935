"""The shipped example schema in migrations/: lint-clean, and it creates the tables code expects."""

from __future__ import annotations

from pathlib import Path

import pytest
from pglast import ast, parser
from pglast.stream import RawStream

from deploy.migrate.files import parse_file
from deploy.migrate.sql import created_tables
from deploy.sqllint.lint import lint_sql

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
FILES = sorted(MIGRATIONS.glob("*.sql"))

EXPECTED_FILES = [
    "005_user_preferences_system.sql",
    "006_application_assistance_system.sql",
    "007_grant_monitoring_system.sql",
    "008_predictive_analytics_system.sql",
    "010_enhanced_grant_fields.sql",
    "011_demo_users_seed.sql",
    "012_ai_transparency_tracking.sql",
    "013_document_upload_analysis.sql",
    "014_progressive_form_system.sql",
    "015_compliance_system.sql",
    "016_budget_optimization_system.sql",
    "017_rag_knowledge_base_system.sql",
    "018_openai_assistants_system.sql",
    "019_partner_coordination_system.sql",
    "020_ai_cost_management_system.sql",
    "021_ai_load_balancer_system.sql",
    "022_ai_monitoring_system.sql",
    "023_hot_counters.sql",
]

EXPECTED_AI_TABLES = {
    "ai_application_suggestions",
    "ai_prediction_models",
    "ai_success_predictions",
    "ai_user_consents",
    "ai_transparency_logs",
    "ai_decision_explanations",
    "ai_document_analyses",
    "ai_budget_recommendations",
    "ai_knowledge_sources",
    "ai_knowledge_chunks",
    "ai_retrieval_logs",
    "ai_assistants",
    "ai_assistant_threads",
    "ai_assistant_messages",
    "ai_assistant_runs",
    "ai_cost_thresholds",
    "ai_model_pricing",
    "ai_cost_usage",
    "ai_cost_alerts",
    "ai_load_balancer_endpoints",
    "ai_load_balancer_health_checks",
    "ai_request_routing_logs",
    "ai_monitoring_metrics",
    "ai_monitoring_alert_rules",
    "ai_monitoring_incidents",
}


def migration(name: str):
    path = MIGRATIONS / name
    return parse_file(path, path.read_bytes())


def tables_by_file() -> dict[str, list[str]]:
    return {
        path.name: [name for _, name in created_tables(path.read_text("utf-8"))] for path in FILES
    }


def test_the_example_schema_has_the_teams_files_with_their_numbers_and_names():
    assert [path.name for path in FILES] == EXPECTED_FILES


@pytest.mark.parametrize("name", EXPECTED_FILES)
def test_every_example_migration_lints_clean(name):
    m = migration(name)

    findings = lint_sql(name, m.text, m.transactional)

    # Acknowledged deploy-safety findings (severity "info") are not warnings.
    assert [str(f) for f in findings if f.severity != "info"] == []


def test_the_examples_acknowledge_only_the_funding_range_check_with_its_reason():
    acknowledged = [
        (path.name, f.line, f.code, f.acknowledged)
        for path in FILES
        for f in lint_sql(path.name, migration(path.name).text, migration(path.name).transactional)
        if f.severity == "info"
    ]

    assert acknowledged == [
        (
            "010_enhanced_grant_fields.sql",
            26,
            "add-check-constraint",
            "both columns were just added NULL: every row passes",
        )
    ]


@pytest.mark.parametrize("name", EXPECTED_FILES)
def test_every_example_migration_documents_its_rollback(name):
    assert migration(name).rollback


def test_only_the_monitoring_migration_runs_outside_a_transaction_and_it_needs_to():
    no_transaction = [name for name in EXPECTED_FILES if not migration(name).transactional]
    m = migration("022_ai_monitoring_system.sql")

    assert no_transaction == ["022_ai_monitoring_system.sql"]
    assert {f.code for f in lint_sql(m.filename, m.text, True)} == {"concurrently-in-transaction"}


def test_the_example_schema_creates_the_expected_ai_tables():
    created = {name for names in tables_by_file().values() for name in names}

    assert {name for name in created if name.startswith("ai_")} == EXPECTED_AI_TABLES


def test_ai_cost_thresholds_is_created_by_020():
    tables = tables_by_file()

    assert "ai_cost_thresholds" in tables["020_ai_cost_management_system.sql"]
    assert "users" in tables["005_user_preferences_system.sql"]


def test_no_two_example_migrations_create_the_same_table():
    names = [name for names in tables_by_file().values() for name in names]

    assert len(names) == len(set(names))


def test_every_schema_migration_creates_between_two_and_five_tables():
    counts = {name: len(tables) for name, tables in tables_by_file().items()}
    # 011 only seeds rows into tables made earlier; 023 is the sample backend's one hot table.
    counts.pop("011_demo_users_seed.sql")
    counts.pop("023_hot_counters.sql")

    assert {name: n for name, n in counts.items() if not 2 <= n <= 5} == {}


def test_ai_cost_thresholds_has_the_columns_the_backend_expects():
    text = migration("020_ai_cost_management_system.sql").text
    [create] = [
        raw.stmt
        for raw in parser.parse_sql(text)
        if isinstance(raw.stmt, ast.CreateStmt)
        and raw.stmt.relation.relname == "ai_cost_thresholds"
    ]
    columns = {RawStream()(element) for element in create.tableElts}

    assert {
        "id varchar(255) PRIMARY KEY",
        "organization_id varchar(255) NOT NULL",
        "limit_amount numeric(10, 4) NOT NULL",
        "is_active boolean DEFAULT TRUE",
        "created_at timestamp DEFAULT CURRENT_TIMESTAMP",
    } <= columns


def test_the_example_schema_stays_small():
    assert sum(path.stat().st_size for path in FILES) < 40_000
