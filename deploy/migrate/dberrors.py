"""psycopg errors → the project's errors, in one place: one line, the documented exit code.

- a missing schema of MIGRATION_TABLE (3F000): exit 2, naming the setting and the schema;
- a privilege the role lacks (42501): exit 2, naming the privilege the command needs;
- the connection lost: exit 1, saying what is known about the work in flight;
- any other database error: exit 1, the server's message and SQLSTATE.

Errors of a migration file itself are reported with the file's line and column by the
runner (deploy/migrate/applying.py), which takes its exit code from exit_code_for().
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg

from deploy.errors import ConfigError, DeployError
from deploy.redaction import redact, redact_url

INSUFFICIENT_PRIVILEGE = "42501"
INVALID_SCHEMA_NAME = "3F000"

# What each command needs on the history table (and USAGE on its schema), for the message.
TABLE_PRIVILEGES = {
    "migrate": "SELECT, INSERT, UPDATE",
    "migrate-status": "SELECT",
    "redo-migration": "SELECT, INSERT, DELETE",
    "forget-migration": "SELECT, DELETE",
}
# ... and on the schemas it touches: migrate creates the history table on its first run.
SCHEMA_PRIVILEGES = {"migrate": "USAGE, CREATE", "redo-migration": "USAGE, CREATE"}
_DENIED = re.compile(r"permission denied for (table|schema|sequence|database|relation) (\S+)")


def exit_code_for(sqlstate: str | None) -> int:
    """Exit code of a failed statement: a missing privilege is configuration (2)."""
    return 2 if sqlstate == INSUFFICIENT_PRIVILEGE else 1


def _role(url: str) -> str:
    try:
        user = urlsplit(url).username
    except ValueError:
        user = None
    return f"role {user!r}" if user else "the role"


def _grant(command: str, kind: str, name: str, role: str) -> str:
    grantee = role.removeprefix("role ").strip("'") if role.startswith("role ") else "ROLE"
    if kind == "schema":
        what = SCHEMA_PRIVILEGES.get(command, "USAGE")
        return f"GRANT {what} ON SCHEMA {name} TO {grantee}"
    if kind == "sequence":
        return f"GRANT USAGE ON SEQUENCE {name} TO {grantee}"
    if kind == "database":
        return f"GRANT CONNECT ON DATABASE {name} TO {grantee}"
    return f"GRANT {TABLE_PRIVILEGES.get(command, 'SELECT')} ON {name} TO {grantee}"


def privilege_hint(command: str, message: str, url: str, table: str) -> str:
    """What the role needs, and the GRANT that gives it."""
    role = _role(url)
    needs = f"{TABLE_PRIVILEGES.get(command, 'SELECT')} on {table}"
    schema = table.split(".")[0] if "." in table else "public"
    schema_needs = SCHEMA_PRIVILEGES.get(command, "USAGE")
    if command not in TABLE_PRIVILEGES:  # check-tables: reads the catalog only
        needs = "CONNECT on the database and USAGE on the schema it lists"
    elif command in SCHEMA_PRIVILEGES:
        needs = (f"{schema_needs} on schema {schema} (CREATE to create {table} on a first run) "
                 f"and {needs}")
    else:
        needs = f"USAGE on schema {schema} and {needs}"
    found = _DENIED.search(message)
    grant = _grant(command, found.group(1), found.group(2), role) if found else None
    hint = f"{role} lacks a privilege: {command} needs {needs}"
    if command in ("migrate", "redo-migration"):
        hint += ", plus what the migration files do"
    hint += f"; grant it ({grant})" if grant else "; grant it"
    return hint + " or connect as a role that has it (e.g. the owner of the schema)"


def translate(exc: psycopg.Error, *, command: str, table: str, url: str) -> DeployError:
    """One error → one message with its exit code. Passwords are redacted."""
    diag = exc.diag
    message = (diag.message_primary if diag else None) or str(exc).strip()
    message = " ".join(message.split())
    sqlstate = exc.sqlstate
    password = None
    try:
        password = urlsplit(url).password
    except ValueError:
        pass
    message = redact(message, password, url)
    state = f" ({sqlstate})" if sqlstate else ""
    if sqlstate == INVALID_SCHEMA_NAME and "." in table:
        if f'"{table.split(".", 1)[0]}"' in message:
            return missing_schema(table)
    if sqlstate == INSUFFICIENT_PRIVILEGE:
        return ConfigError(f"{command}: {message}{state}: "
                           f"{privilege_hint(command, message, url, table)}")
    if isinstance(exc, psycopg.OperationalError) and (not sqlstate or sqlstate[:2] in ("08",
                                                                                      "57")):
        return DeployError(f"{command}: lost the database connection ({message}{state}) at "
                           f"{redact_url(url)}")
    return DeployError(f"{command}: database error: {message}{state}")


def missing_schema(table: str) -> ConfigError:
    schema = table.split(".", 1)[0]
    return ConfigError(
        f"MIGRATION_TABLE: schema {schema!r} of {table} does not exist in the database; "
        f"create it (CREATE SCHEMA {schema}) or set MIGRATION_TABLE to a table in an "
        "existing schema (the default is migration_history)")


@contextmanager
def translated(command: str, table: str, url: str) -> Iterator[None]:
    """Any psycopg error escaping the block becomes the project's error."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc, command=command, table=table, url=url) from None


def translates(command: str):
    """Decorator for a command taking Settings first: its psycopg errors are translated."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(settings, *args, **kwargs):
            try:
                return fn(settings, *args, **kwargs)
            except psycopg.Error as exc:
                raise translate(exc, command=command, table=settings.migration_table,
                                url=settings.database_url) from None

        return wrapper

    return decorate


def connect_refused(reason: str, url: str) -> ConfigError:
    """The role may not connect to the database (no CONNECT privilege): exit 2."""
    role = _role(url)
    try:
        database = urlsplit(url).path.lstrip("/") or "the database"
    except ValueError:
        database = "the database"
    grantee = role.removeprefix("role ").strip("'") if role.startswith("role ") else "ROLE"
    return ConfigError(
        f"database: cannot connect to {redact_url(url)}: {reason}; {role} needs CONNECT on "
        f"database {database} (GRANT CONNECT ON DATABASE {database} TO {grantee}) or use a "
        "role that has it")
