"""Settings as a task would load them, from a directory of the test's own."""

from __future__ import annotations

from pathlib import Path

from deploy.settings import Settings, load_settings


def load(tmp_path: Path, env: dict, file_text: str | None = None) -> Settings:
    """load_settings with `env` as the whole environment and, given `file_text`, that .env
    in `tmp_path`, which is also the working directory."""
    if file_text is not None:
        (tmp_path / ".env").write_text(file_text)
    return load_settings(environ=env, cwd=tmp_path)
