"""The restore guard, the database a backup acts on, and where FILE is looked for."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from deploy.errors import ConfigError, Refused
from deploy.machine.backup import backup_file, confirm_restore, database_name, where
from deploy.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _settings(**values):
    return load_settings(environ={"DATABASE_URL": "postgresql://u:secret@db.example:6432/shop",
                                  "COMPOSE_PROJECT_NAME": "app", "BACKUP_DIR": "/srv/b",
                                  **values}, read_file=False, cwd=ROOT)


def test_the_database_is_the_one_database_url_names_said_without_its_password():
    s = _settings()
    assert database_name(s) == "shop"
    assert where(s) == "database 'shop' in service postgres"
    assert where(_settings(DB_SERVICE="")) == "database 'shop' at db.example:6432"
    built = load_settings(environ={"POSTGRES_USER": "ann", "POSTGRES_PASSWORD": "x"},
                          read_file=False, cwd=ROOT)
    assert database_name(built) == "ann"


def test_restore_without_its_guard_is_refused_naming_the_database():
    with pytest.raises(Refused) as info:
        confirm_restore(_settings(), None, False, interactive=False)
    assert info.value.exit_code == 5
    assert str(info.value) == ("restore: replaces the contents of database 'shop'; not "
                               "interactive, so pass --yes-destroy=shop (nothing was touched)")
    with pytest.raises(Refused) as info:
        confirm_restore(_settings(), "app", False, interactive=False)
    assert str(info.value) == ("restore: --yes-destroy='app' does not match the database name "
                               "'shop'; nothing was touched")
    confirm_restore(_settings(), "shop", False, interactive=False)


def test_restore_asks_on_a_terminal_and_production_also_needs_production():
    asked = []
    confirm_restore(_settings(), None, False, interactive=True,
                    ask=lambda prompt: asked.append(prompt) or "shop\n")
    assert asked == ["This replaces the contents of database 'shop' with the backup. Type "
                     "the database name to confirm: "]
    with pytest.raises(Refused) as info:
        confirm_restore(_settings(DEPLOY_ENV="production"), "shop", False, interactive=False)
    assert str(info.value) == ("restore: DEPLOY_ENV=production; add --production to restore "
                               "database 'shop' (nothing was touched)")
    confirm_restore(_settings(DEPLOY_ENV="production"), "shop", True, interactive=False)


def test_a_bare_file_name_is_in_backup_dir_and_a_hosts_path_must_be_absolute(tmp_path):
    s = _settings()
    assert backup_file(s, "x.dump", remote=False) == PurePosixPath("/srv/b/x.dump")
    assert backup_file(s, "x.dump", remote=True) == PurePosixPath("/srv/b/x.dump")
    assert backup_file(s, "/tmp/y.dump", remote=True) == PurePosixPath("/tmp/y.dump")
    assert backup_file(s, "./y.dump", remote=False) == PurePosixPath(
        str(Path("y.dump").resolve()))
    with pytest.raises(ConfigError) as info:
        backup_file(s, "old/y.dump", remote=True)
    assert str(info.value) == ("restore: old/y.dump: on a host, give a file name in its "
                               "BACKUP_DIR or an absolute path; nothing was touched")
