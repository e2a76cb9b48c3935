"""Settings: environment over file, defaults, and every bad value named in its message."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import ConfigError
from deploy.redaction import redact, redact_url
from deploy.settings import load_settings
from tests.support.settings import load


def error_of(tmp_path, env: dict, file_text: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, env, file_text).database_url  # noqa: B018 - checked when used
    assert info.value.exit_code == 2
    return str(info.value)


def test_defaults_are_safe_and_paths_resolve_against_the_project(tmp_path):
    s = load(tmp_path, {"DATABASE_URL": "postgresql://u@db/app"})
    assert s.migrations_dir == tmp_path / "migrations"
    assert s.migration_table == "migration_history"
    assert s.deploy_env == "development"
    assert s.project_name == "app"
    assert s.health_timeout == 120.0
    assert s.backup_dir == tmp_path / "backups"
    assert s.env_file is None


def test_the_summary_names_no_table_prefix_unless_summary_table_prefix_is_set(tmp_path):
    assert load(tmp_path, {}).summary_table_prefix == ""
    assert load(tmp_path, {"SUMMARY_TABLE_PREFIX": "ai_"}).summary_table_prefix == "ai_"


def test_the_sample_env_file_sets_the_sample_schemas_table_prefix(tmp_path):
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    assert load(tmp_path, {}, example).summary_table_prefix == "ai_"


def test_the_first_invalid_setting_is_the_one_reported(tmp_path):
    bad = {"MIGRATION_TABLE": "Bad-Name", "DEPLOY_ENV": "prod", "COMPOSE_PROJECT_NAME": "App"}
    with pytest.raises(ConfigError, match="^MIGRATION_TABLE: "):
        load(tmp_path, bad)
    with pytest.raises(ConfigError, match="^DEPLOY_ENV: "):
        load(tmp_path, {**bad, "MIGRATION_TABLE": "ok"})
    with pytest.raises(ConfigError, match="^COMPOSE_PROJECT_NAME: "):
        load(tmp_path, {**bad, "MIGRATION_TABLE": "ok", "DEPLOY_ENV": "staging"})


def test_the_process_environment_wins_over_the_env_file(tmp_path):
    s = load(tmp_path, {"DEPLOY_ENV": "staging"},
             "DATABASE_URL=postgresql://u@db/app\nDEPLOY_ENV=production\n")
    assert s.deploy_env == "staging"
    assert s.database_url == "postgresql://u@db/app"
    assert s.env_file == tmp_path / ".env"


def test_deploy_hosts_is_read_from_the_env_file_as_a_list_and_empty_means_none(tmp_path):
    s = load(tmp_path, {}, "DEPLOY_HOSTS= web1 ,deploy@web2:2222,,\n")
    assert s.deploy_hosts == ("web1", "deploy@web2:2222")
    assert load(tmp_path, {"DEPLOY_HOSTS": ""}).deploy_hosts == ()


def test_env_file_names_another_file(tmp_path):
    (tmp_path / "ci.env").write_text("DATABASE_URL=postgresql://ci@db/ci\n")
    s = load_settings(environ={"ENV_FILE": "ci.env"}, cwd=tmp_path)
    assert s.database_url == "postgresql://ci@db/ci"


def test_postgres_parts_build_the_url_and_quote_the_password(tmp_path):
    s = load(tmp_path, {"POSTGRES_HOST": "db", "POSTGRES_PORT": "6543", "POSTGRES_USER": "app",
                        "POSTGRES_PASSWORD": "p@ss:w/rd", "POSTGRES_DB": "grants"})
    assert s.database_url == "postgresql://app:p%40ss%3Aw%2Frd@db:6543/grants"
    assert s.password == "p%40ss%3Aw%2Frd"
    assert redact_url(s.database_url) == "postgresql://app:***@db:6543/grants"


def test_redaction_hides_passwords_in_urls_and_free_text():
    assert redact_url("postgresql://u:secret@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"
    assert redact("failed for p@ss and p%40ss", "p@ss") == "failed for *** and ***"


BAD = [
    ({}, None, "DATABASE_URL: missing; set POSTGRES_PASSWORD (and POSTGRES_USER/POSTGRES_DB) "
     "or DATABASE_URL in .env or the environment"),
    ({"DATABASE_URL": "mysql://u@h/d"}, None,
     "DATABASE_URL: scheme must be postgresql:// (got mysql://) (set in the environment)"),
    ({"DATABASE_URL": "localhost:5432"}, None,
     "DATABASE_URL: scheme must be postgresql:// (got localhost://) (set in the environment)"),
    ({"DATABASE_URL": "postgresql://u:pw@h:port/d"}, None,
     "DATABASE_URL: not a valid URL ("),
    ({"DATABASE_URL": "postgresql:///d"}, None,
     "DATABASE_URL: no host in postgresql:///d (set in the environment)"),
    ({}, "DATABASE_URL=ftp://x/y\n",
     "DATABASE_URL: scheme must be postgresql:// (got ftp://) (set in {env})"),
    ({"POSTGRES_HOST": "db", "POSTGRES_PORT": "54x2"}, None,
     "POSTGRES_PORT: '54x2' is not a port number (1-65535) (set in the environment)"),
    ({"POSTGRES_HOST": "db", "POSTGRES_PORT": "70000"}, None,
     "POSTGRES_PORT: '70000' is not a port number (1-65535) (set in the environment)"),
    ({"DATABASE_URL": "postgresql://h/d", "DEPLOY_ENV": "prod"}, None,
     "DEPLOY_ENV: 'prod' is not one of development, staging, production (set in the environment)"),
    ({"DATABASE_URL": "postgresql://h/d"}, "DEPLOY_ENV=live\n",
     "DEPLOY_ENV: 'live' is not one of development, staging, production (set in {env})"),
    ({"DATABASE_URL": "postgresql://h/d", "MIGRATION_TABLE": "history; drop table x"}, None,
     "MIGRATION_TABLE: 'history; drop table x' is not a valid table name"),
    ({"DATABASE_URL": "postgresql://h/d", "MIGRATION_TABLE": "Mixed"}, None,
     "MIGRATION_TABLE: 'Mixed' is not a valid table name"),
    ({"DATABASE_URL": "postgresql://h/d", "COMPOSE_PROJECT_NAME": "My App"}, None,
     "COMPOSE_PROJECT_NAME: 'My App' is not a valid Compose project name"),
    ({"DATABASE_URL": "postgresql://h/d", "HEALTH_TIMEOUT": "soon"}, None,
     "HEALTH_TIMEOUT: 'soon' is not a number of seconds (set in the environment)"),
    ({"DATABASE_URL": "postgresql://h/d", "HEALTH_TIMEOUT": "-5"}, None,
     "HEALTH_TIMEOUT: must be greater than 0 (got -5) (set in the environment)"),
    ({"DATABASE_URL": "postgresql://h/d", "ENV_FILE": "nope.env"}, None,
     "ENV_FILE: nope.env does not exist"),
]


@pytest.mark.parametrize(("env", "file_text", "expected"), BAD,
                         ids=[b[2].split(":")[0] + str(i) for i, b in enumerate(BAD)])
def test_a_bad_setting_is_named_with_where_it_was_set(tmp_path, env, file_text, expected):
    message = error_of(tmp_path, env, file_text)
    assert message.startswith(expected.replace("{env}", str(tmp_path / ".env")))


def test_an_env_file_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / ".env").write_bytes(b"DATABASE_URL=postgresql://h/\xff\n")
    message = error_of(tmp_path, {})
    assert message.startswith(f"ENV_FILE: {tmp_path / '.env'} is not valid UTF-8")


def test_a_bad_url_never_echoes_its_password(tmp_path):
    message = error_of(tmp_path, {"DATABASE_URL": "postgresql://u:hunter2@h:port/d"})
    assert "hunter2" not in message


def test_the_database_url_is_required_only_by_what_uses_it(tmp_path):
    s = load(tmp_path, {"COMPOSE_PROJECT_NAME": "shop"})
    assert s.project_name == "shop"  # ps, logs, build … load settings without a database
    with pytest.raises(ConfigError, match="^DATABASE_URL: missing; set POSTGRES_PASSWORD"):
        s.database_url  # noqa: B018


def test_a_bad_database_url_does_not_stop_tasks_that_need_no_database(tmp_path):
    s = load(tmp_path, {"DATABASE_URL": "mysql://u@h/d"})
    assert s.compose_file == tmp_path / "deploy/stack/docker-compose.yml"
    with pytest.raises(ConfigError, match="scheme must be postgresql://"):
        s.database_url  # noqa: B018


def test_the_password_is_stated_once_the_url_follows_the_stack_settings(tmp_path):
    s = load(tmp_path, {}, "POSTGRES_USER=app\nPOSTGRES_PASSWORD=s3cret\nPOSTGRES_DB=app\n"
                           "POSTGRES_PUBLISHED_PORT=15432\n")
    assert s.database_url == "postgresql://app:s3cret@127.0.0.1:15432/app"
    changed = load(tmp_path, {"POSTGRES_PASSWORD": "from-a-ci-secret"})
    assert changed.database_url == "postgresql://app:from-a-ci-secret@127.0.0.1:15432/app"


def test_the_stack_user_is_the_default_user(tmp_path):
    s = load(tmp_path, {"POSTGRES_PASSWORD": "pw"})
    assert s.database_url == "postgresql://app:pw@127.0.0.1:5432/app"


def test_an_explicit_database_url_wins_over_postgres_parts(tmp_path):
    s = load(tmp_path, {"DATABASE_URL": "postgresql://u:p@db:5433/x", "POSTGRES_PASSWORD": "q"})
    assert s.database_url == "postgresql://u:p@db:5433/x"


def test_an_env_line_dotenv_cannot_parse_names_the_file_and_line_not_the_value(tmp_path):
    message = error_of(tmp_path, {}, 'POSTGRES_USER=app\nPOSTGRES_PASSWORD="hunter2\n')
    assert message.startswith(f"{tmp_path / '.env'}:2: cannot parse this line (the value of "
                              "POSTGRES_PASSWORD); write KEY=value")
    assert "hunter2" not in message


@pytest.mark.parametrize("present", [
    [], ["docker-compose.yml"], ["docker-compose.yml", "compose.yaml"],
    ["docker-compose.yaml", "compose.yml"]])
def test_without_compose_file_the_one_compose_would_pick_is_used(tmp_path, present):
    # A project that installed the tool has no deploy/stack/: its own compose file counts,
    # in Compose's order; a checkout of this repository keeps its sample stack.
    for name in present:
        (tmp_path / name).write_text("services: {}\n")
    expected = min(present, key=["compose.yaml", "compose.yml", "docker-compose.yaml",
                                 "docker-compose.yml"].index) if present \
        else "deploy/stack/docker-compose.yml"
    assert load(tmp_path, {}).compose_file == tmp_path / expected
    assert load(tmp_path, {"COMPOSE_FILE": "ops/stack.yml"}).compose_file \
        == tmp_path / "ops/stack.yml"


def test_relative_paths_resolve_against_the_working_directory_not_the_env_file(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "prod.env").write_text(
        "MIGRATIONS_DIR=db/migrations\nCOMPOSE_FILE=compose.yaml\nBACKUP_DIR=/var/backups\n"
        "DEPLOY_HOSTS_DIR=hosts\n")
    s = load_settings(environ={"ENV_FILE": "config/prod.env"}, cwd=tmp_path)
    assert s.env_file == tmp_path / "config" / "prod.env"
    assert (s.migrations_dir, s.compose_file, s.hosts_dir) == (
        tmp_path / "db/migrations", tmp_path / "compose.yaml", tmp_path / "hosts")
    assert s.backup_dir == Path("/var/backups")


def test_the_missing_database_hint_names_the_quickstart_only_in_a_checkout_that_has_it(tmp_path):
    message = "DATABASE_URL: missing; set POSTGRES_PASSWORD (and POSTGRES_USER/POSTGRES_DB) " \
              "or DATABASE_URL in .env or the environment"
    assert error_of(tmp_path, {}) == message  # a project that installed the tool
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "quickstart").write_text("#!/bin/sh\n")
    assert error_of(tmp_path, {}) == message + \
        "; `bash .ci/quickstart` writes a .env (see .env.example)"


def test_db_service_is_postgres_unless_set_and_set_to_empty_means_an_external_database(
        tmp_path):
    assert load(tmp_path, {}).db_service == "postgres"
    assert load(tmp_path, {"DB_SERVICE": "db"}).db_service == "db"
    assert load(tmp_path, {"DB_SERVICE": ""}).db_service == ""
    assert load(tmp_path, {}, "DB_SERVICE=\n").db_service == ""
    assert load(tmp_path, {"DB_SERVICE": "db"}, "DB_SERVICE=\n").db_service == "db"
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"DB_SERVICE": "My DB"})
    assert str(info.value) == ("DB_SERVICE: 'My DB' is not a Compose service name (letters, "
                               "digits, '.', '_' and '-'; empty: no database service) (set in "
                               "the environment)")
