"""One exception hierarchy; each class carries the exit code docs/design.md documents."""


class DeployError(Exception):
    """A failure the user can act on; ``str(err)`` is the whole message."""

    exit_code = 1


class ConfigError(DeployError):
    """Bad configuration or arguments: the message names the setting."""

    exit_code = 2


class MigrationError(DeployError):
    """A migration failed to apply."""

    exit_code = 1


class CheckFailed(DeployError):
    """Drift, invalid migration files, missing tables, nothing matched."""

    exit_code = 3


class InvalidMigrations(CheckFailed):
    """One or more migration files cannot be used; nothing was applied."""


class DriftError(CheckFailed):
    """History and files disagree."""


class DeployTimeout(DeployError):
    """Database, health or lock wait timed out."""

    exit_code = 4


class Refused(DeployError):
    """A guarded action without its confirmation."""

    exit_code = 5
