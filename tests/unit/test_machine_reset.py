"""The reset guard: the project name, typed or passed, and --production in production."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import Refused
from deploy.machine.reset import confirm_reset
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
