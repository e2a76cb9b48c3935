"""The reset guard, the Compose flavour cache, the deploy summary and timed steps, without
Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import Refused
from deploy.machine.stack import (
    LIST_AT_MOST,
    StepTimer,
    confirm_reset,
    detect_flavour_cached,
    print_summary,
)
from deploy.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _settings(**values):
    return load_settings(environ={"DATABASE_URL": "postgresql://h/d",
                                  "COMPOSE_PROJECT_NAME": "shop", **values},
                         read_file=False, cwd=ROOT)


def test_reset_without_its_guard_is_refused_when_not_interactive():
    with pytest.raises(Refused) as info:
        confirm_reset(_settings(), None, False, interactive=False)
    assert info.value.exit_code == 5
    assert str(info.value) == ("reset: destroys the volumes of project 'shop'; not "
                               "interactive, so pass --yes-destroy=shop (nothing was touched)")


def test_reset_needs_the_exact_project_name():
    with pytest.raises(Refused) as info:
        confirm_reset(_settings(), "Shop", False, interactive=False)
    assert "--yes-destroy='Shop' does not match the Compose project name 'shop'" in str(
        info.value)
    confirm_reset(_settings(), "shop", False, interactive=False)


def test_reset_asks_for_the_name_when_interactive():
    asked = []
    confirm_reset(_settings(), None, False, interactive=True,
                  ask=lambda prompt: asked.append(prompt) or "shop\n")
    assert "Type the project name to confirm" in asked[0]
    with pytest.raises(Refused) as info:
        confirm_reset(_settings(), None, False, interactive=True, ask=lambda _: "yes")
    assert str(info.value) == "reset: you typed 'yes', not 'shop'; nothing was touched"


def test_reset_in_production_also_needs_production():
    prod = _settings(DEPLOY_ENV="production")
    with pytest.raises(Refused) as info:
        confirm_reset(prod, "shop", False, interactive=False)
    assert "DEPLOY_ENV=production; add --production" in str(info.value)
    confirm_reset(prod, "shop", True, interactive=False)


def test_the_compose_flavour_is_probed_once_until_the_binaries_change(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def probe(argv):
        calls.append(argv)
        if argv[0] == "docker-compose":
            return 0, "1.29.2\n"
        return 1, ""

    assert detect_flavour_cached(None, probe) == (("docker-compose",), "v1")
    probes = len(calls)
    assert probes >= 2
    assert detect_flavour_cached(None, probe) == (("docker-compose",), "v1")
    assert len(calls) == probes
    assert detect_flavour_cached("docker-compose", probe) == (("docker-compose",), "v1")
    assert len(calls) == probes + 1  # another COMPOSE_CMD is another key


def test_the_deploy_summary_lists_one_item_per_line_and_counts_long_lists():
    said = []
    names = [f"ai_table_{i:02d}" for i in range(12)]
    print_summary({"applied": ["005_a.sql", "006_b.sql"], "tables": 40, "ai_tables": names},
                  said.append)
    assert said[:3] == ["deploy: migrations applied (2):", "   005_a.sql", "   006_b.sql"]
    assert said[3:5] == ["deploy: 40 expected table(s) verified", "deploy: 12 ai_ table(s) exist:"]
    assert " ".join(said[5:]).replace(",", " ").split() == names
    assert max(len(line) for line in said) <= 92

    said.clear()
    many = [f"ai_{i}" for i in range(LIST_AT_MOST + 1)]
    print_summary({"applied": [], "tables": 40, "ai_tables": many}, said.append)
    assert said == ["deploy: migrations applied: none (schema already up to date)",
                    "deploy: 40 expected table(s) verified",
                    f"deploy: {LIST_AT_MOST + 1} ai_ tables exist; list them with "
                    "`invoke check-tables --prefix ai_`"]


def test_a_step_stopped_by_a_signal_is_reported_as_interrupted():
    said = []
    timer = StepTimer(said.append)

    def stopped():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        timer.step("wait-healthy (new)", stopped)
    assert said[0] == "==> wait-healthy (new)"
    assert said[1].startswith("<== wait-healthy (new) INTERRUPTED after ")
