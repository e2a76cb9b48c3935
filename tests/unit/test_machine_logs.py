"""Log filtering in Python: patterns are data, output is `service | message`."""

import os
import re

import pytest

from deploy.errors import ConfigError
from deploy.machine.logs import compile_pattern, filter_lines, parse_line, service_of

# Real `docker-compose logs --no-color` (1.29.2): names padded to one width, `_1` suffix,
# and an "Attaching to" line without a prefix.
V1_LOGS = """\
Attaching to app_postgres_1, app_backend_1
backend_1   | waiting for database
postgres_1  | LOG:  database system is ready to accept connections
backend_1   | Applying migration 005_user_preferences_system.sql
backend_1   | Applying MIGRATION 020_ai_cost_management_system.sql
postgres_1  | ERROR:  relation "ai_cost_thresholds" does not exist
backend_1   | listening on :8080
"""

# `docker compose logs --no-color --timestamps` (v2): `-1` suffix, timestamp after prefix.
V2_LOGS = """\
backend-1   | 2026-11-26T07:50:23.958959933Z waiting for database
postgres-1  | 2026-11-26T07:50:23.960000000Z LOG:  database system is ready
backend-1   | 2026-11-26T07:50:24.100000000Z Applying migration 005_user_preferences_system.sql
"""


def grep(text, pattern, context=0, case_sensitive=False):
    return list(filter_lines(text.splitlines(), compile_pattern(pattern, case_sensitive), context))


def test_v1_and_v2_prefixes_give_the_service_name_and_message():
    assert parse_line("backend_1   | waiting for database") == ("backend", "waiting for database")
    assert parse_line("backend-1  | waiting | for db\n") == ("backend", "waiting | for db")
    assert parse_line("ai-worker-12 | x") == ("ai-worker", "x")
    assert parse_line("postgres    | no replica number") == ("postgres", "no replica number")


def test_lines_without_a_prefix_have_no_service():
    assert parse_line("Attaching to app_postgres_1, app_backend_1") == (
        "", "Attaching to app_postgres_1, app_backend_1",
    )  # fmt: skip
    assert parse_line("a line | with a bar") == ("", "a line | with a bar")


def test_the_replica_number_is_dropped_but_names_ending_in_digits_survive():
    assert service_of("backend_1") == "backend"
    assert service_of("backend-2") == "backend"
    assert service_of("postgres16") == "postgres16"
    assert service_of("web-2-1") == "web-2"
    assert service_of("_1") == "_1"


def test_matching_is_case_insensitive_by_default():
    assert grep(V1_LOGS, "migration") == [
        "backend | Applying migration 005_user_preferences_system.sql",
        "backend | Applying MIGRATION 020_ai_cost_management_system.sql",
    ]


def test_case_sensitive_matching_when_asked():
    assert grep(V1_LOGS, "MIGRATION", case_sensitive=True) == [
        "backend | Applying MIGRATION 020_ai_cost_management_system.sql",
    ]


def test_a_str_pattern_is_compiled_case_insensitively():
    assert list(filter_lines(V1_LOGS.splitlines(), "ERROR")) == [
        'postgres | ERROR:  relation "ai_cost_thresholds" does not exist',
    ]


def test_the_service_prefix_is_not_searched():
    # Only the unprefixed "Attaching to" line names the backend in its text.
    assert grep(V1_LOGS, "backend") == ["Attaching to app_postgres_1, app_backend_1"]
    assert grep(V1_LOGS, "^Applying") == [
        "backend | Applying migration 005_user_preferences_system.sql",
        "backend | Applying MIGRATION 020_ai_cost_management_system.sql",
    ]


def test_v2_lines_with_timestamps_keep_the_timestamp_in_the_message():
    assert grep(V2_LOGS, r"ready") == [
        "postgres | 2026-11-26T07:50:23.960000000Z LOG:  database system is ready",
    ]


def test_lines_without_a_prefix_are_printed_as_they_are():
    assert grep(V1_LOGS, "attaching") == ["Attaching to app_postgres_1, app_backend_1"]


def test_a_captured_stdout_string_is_split_into_lines():
    assert list(filter_lines(V1_LOGS, "listening")) == ["backend | listening on :8080"]


def test_lines_with_newlines_as_read_from_a_stream_are_handled():
    lines = V1_LOGS.splitlines(keepends=True)
    assert list(filter_lines(lines, compile_pattern("listening"))) == [
        "backend | listening on :8080",
    ]
    assert list(filter_lines(lines, compile_pattern("8080$"))) == ["backend | listening on :8080"]


def test_non_ascii_lines_match_exactly_as_the_regex_says():
    # re.IGNORECASE matches 'ſ' (long s) to 's', 'ı' (dotless i) to 'i' and the Kelvin
    # sign to 'k': the ASCII literal shortcut must not skip such lines.
    lines = ["backend-1 | Mıgration ſtarted", "backend-1 | \u212a-9 (Kelvin sign)"]
    assert list(filter_lines(lines, compile_pattern("started"))) == ["backend | Mıgration ſtarted"]
    assert list(filter_lines(lines, compile_pattern("migration"))) == [
        "backend | Mıgration ſtarted",
    ]
    assert list(filter_lines(lines, compile_pattern("k-9"))) == ["backend | \u212a-9 (Kelvin sign)"]


def test_an_invalid_regex_is_a_config_error_naming_the_pattern():
    with pytest.raises(ConfigError) as err:
        compile_pattern("migration(")
    assert str(err.value) == (
        "--grep: invalid regular expression 'migration(': "
        "missing ), unterminated subpattern at position 9"
    )
    assert err.value.exit_code == 2


def test_a_shell_command_substitution_is_just_a_pattern(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = ["backend-1 | user typed $(touch pwned) in a form", "backend-1 | nothing"]
    pattern = compile_pattern(re.escape("$(touch pwned)"))
    assert list(filter_lines(lines, pattern)) == ["backend | user typed $(touch pwned) in a form"]
    # Unescaped it is a regex: `$` anchors, so it matches nothing, and runs nothing.
    assert list(filter_lines(lines, compile_pattern("$(touch pwned)"))) == []
    assert not os.path.exists(tmp_path / "pwned")


CONTEXT_LOGS = [
    "backend-1 | b1",
    "postgres-1 | p1",
    "backend-1 | b2",
    "backend-1 | b3 MATCH",
    "postgres-1 | p2",
    "backend-1 | b4",
    "backend-1 | b5",
    "backend-1 | b6",
    "backend-1 | b7",
    "backend-1 | b8 match",
    "backend-1 | b9",
]


def test_context_lines_come_from_the_same_service_with_separators_between_groups():
    assert list(filter_lines(CONTEXT_LOGS, compile_pattern("match"), context=1)) == [
        "backend | b2",
        "backend | b3 MATCH",
        "backend | b4",
        "--",
        "backend | b7",
        "backend | b8 match",
        "backend | b9",
    ]


def test_adjacent_context_groups_merge_without_a_separator():
    assert list(filter_lines(CONTEXT_LOGS, compile_pattern("match"), context=2)) == [
        "backend | b1",
        "backend | b2",
        "backend | b3 MATCH",
        "backend | b4",
        "backend | b5",
        "backend | b6",
        "backend | b7",
        "backend | b8 match",
        "backend | b9",
    ]


def test_nothing_matched_yields_nothing_so_the_caller_can_exit_3():
    assert grep(V1_LOGS, "no such thing") == []
    assert grep(V1_LOGS, "no such thing", context=3) == []


def test_negative_context_is_refused():
    with pytest.raises(ConfigError, match="--context: must be 0 or more, got -1"):
        list(filter_lines([], "x", context=-1))


def test_a_hundred_thousand_lines_filter_in_well_under_a_second():
    import time

    lines = [
        f"{'backend-1' if i % 2 else 'postgres-1':<11}| GET /api/items/{i} 200 in 3ms"
        + (" Migration applied" if i % 1000 == 0 else "")
        for i in range(100_000)
    ]
    start = time.perf_counter()
    found = list(filter_lines(lines, compile_pattern("migration")))
    assert len(found) == 100
    assert time.perf_counter() - start < 1.0
