"""What every task shares: settings for where `c` points, flag parsing, DeployError → Exit."""

from __future__ import annotations

import functools
from contextlib import contextmanager

from invoke import Exit

from deploy.errors import ConfigError, DeployError
from deploy.settings import Settings, load_settings
from deploy.shell import is_remote


def exits(fn):
    """Convert the project's errors into invoke.Exit(message, code) in one place; SIGTERM
    and Ctrl-C end the task with one line and 143/130 (deploy/cli.py)."""

    task = fn.__name__.replace("_", "-")

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        from deploy import cli

        with cli.terminate_unwinds():
            try:
                return fn(c, *args, **kwargs)
            except DeployError as exc:
                raise Exit(str(exc), code=exc.exit_code) from None
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (cli.Terminated)
                message, code = cli.interrupted_exit(task, exc)
                raise Exit(message, code=code) from None

    return wrapper


def settings_for(c) -> Settings:
    """The settings for where `c` points: local, or under `fab -H` the host's overlay
    (deploy/hosts/<host>.env) with its host key checked before anything is sent."""
    from deploy.fleet import hosts as remote  # stdlib only at import; Fabric is imported when used

    settings = load_settings()
    if not is_remote(c):
        return settings
    settings = remote.host_settings(settings, c.host)
    remote.secure(c, settings)
    remote.open_connection(c, settings)
    return settings


@contextmanager
def database(c, settings: Settings):
    """Settings whose DATABASE_URL reaches the database from here (a tunnel under fab)."""
    from deploy.fleet.hosts import database_url

    with database_url(c, settings) as url:
        yield settings.with_database_url(url)


def seconds(flag: str, value, default: float) -> float:
    """Parse a number-of-seconds flag; Invoke's own float parsing dies with a traceback."""
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{flag}: {value!r} is not a number of seconds") from None
    if number < 0:
        raise ConfigError(f"{flag}: must be 0 or more seconds (got {value})")
    return number


def print_lines(lines) -> None:
    for line in lines:
        print(line, flush=True)


def stack_for(c):
    """The stack where `c` points: the local one, or the host's live release under fab."""
    from deploy.fleet.hosts import release_paths
    from deploy.machine.stack import Stack
    from deploy.output import Output

    settings = settings_for(c)
    if is_remote(c):
        return Stack(c, release_paths(settings, "current"), Output(prefix=f"[{c.host}] "))
    return Stack(c, settings)


def services_list(value) -> list[str]:
    # Invoke has no variadic positionals: several services are given comma-separated.
    return [s for s in (value or "").split(",") if s]


def count(flag: str, value, default: int | None) -> int | None:
    """Parse a whole-number flag (--context, --parallel) with a message, not a traceback."""
    if value is None:
        return default
    text = str(value)
    if not text.isdigit():
        raise ConfigError(f"{flag}: expected a whole number, got {text!r}")
    return int(text)


