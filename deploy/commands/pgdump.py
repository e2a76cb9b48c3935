"""pg_dump / pg_restore as data: the argv of a backup and of a restore, inside the database
service's container or in a throwaway container for an external database; the file check
and the reading of their errors.

A password never enters an argv: in a service container the tools connect over the local
socket as the container's own POSTGRES_USER; in a throwaway container the password arrives
on stdin (the first line, which the constant script reads into PGPASSWORD) and the URL on
the command line has none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

from deploy.commands.compose import Compose, exec_

# What every custom-format archive starts with (pg_dump's "PGDMP" magic).
CUSTOM_MAGIC = "PGDMP"
# Where a throwaway container sees the backup directory.
MOUNT = "/backup"

# Restore semantics, one transaction: every object of the archive is dropped (if it exists)
# and recreated; any error rolls the whole of it back, so the database is as it was.
# --no-owner: objects belong to the restoring role, which need not be able to SET ROLE to
# the roles that owned them where the backup was made.
RESTORE_FLAGS = ("--clean", "--if-exists", "--single-transaction", "--no-owner")

# The scripts are constants; values arrive as positional parameters ($0, $1), never
# interpolated. umask 077: the dump is readable by its owner only from its first byte.
_SERVICE_USER = '-U "${POSTGRES_USER:-postgres}"'
_DUMP_IN_SERVICE = f'umask 077 && exec pg_dump --format=custom {_SERVICE_USER} -d "$1" -f "$0"'
# PGAPPNAME ($2) names the restore's session, so that an interrupted restore can be ended on
# the server (its transaction then rolls back): killing the client may not reach the tool.
# `pg_restore -l` first: the archive's table of contents on stdout (which tables it holds),
# and a damaged archive stops there, before the database is touched.
_LIST = 'pg_restore -l "$0" || exit; '
_RESTORE_IN_SERVICE = (_LIST + f'export PGAPPNAME="$2"; exec pg_restore '
                       f'{" ".join(RESTORE_FLAGS)} {_SERVICE_USER} -d "$1" "$0"')
# The first stdin line is the password ("" when the URL has none).
_READ_PASSWORD = 'IFS= read -r p; [ -z "$p" ] || export PGPASSWORD="$p"; unset p; '
_DUMP_EXTERNAL = _READ_PASSWORD + 'umask 077 && exec pg_dump --format=custom -d "$0" -f "$1"'
_RESTORE_EXTERNAL = _READ_PASSWORD + ('pg_restore -l "$1" || exit; export PGAPPNAME="$2"; '
                                      f'exec pg_restore {" ".join(RESTORE_FLAGS)} -d "$0" "$1"')
# Ends the sessions named :'app' (psql's own quoting); prints how many there were.
_TERMINATE_SQL = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                  "WHERE application_name = :'app' AND pid <> pg_backend_pid();")
_TERMINATE_IN_SERVICE = (f'printf "%s\\n" "{_TERMINATE_SQL}" | psql -X -At {_SERVICE_USER} '
                         '-d "$0" -v app="$1"')
_TERMINATE_EXTERNAL = _READ_PASSWORD + (f'printf "%s\\n" "{_TERMINATE_SQL}" | psql -X -At '
                                        '-d "$0" -v app="$1"')


def split_password(url: str) -> tuple[str, str]:
    """The URL without its password (safe on a command line), and the password ("")."""
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password is not None else ""
    if parts.password is None:
        return url, ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{hostport}")), password


def database_of(url: str) -> str:
    """The database a postgresql:// URL names (its path, or ?dbname=, or the user's)."""
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if not name:
        found = re.search(r"(?:^|&)dbname=([^&]*)", parts.query)
        name = unquote(found.group(1)) if found else unquote(parts.username or "")
    return name


def file_name(project: str, database: str, stamp: str) -> str:
    """`<project>-<database>-<UTC time>.dump`; characters a path cannot carry become _."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", database) or "_"
    return f"{project}-{safe}-{stamp}.dump"


def dump_in_service(c: Compose, service: str, database: str, inside: str) -> list[str]:
    """pg_dump -Fc of ``database`` in the service's container, to ``inside`` (its path)."""
    return exec_(c, service, ["sh", "-c", _DUMP_IN_SERVICE, inside, database])


def restore_in_service(c: Compose, service: str, database: str, inside: str,
                       app_name: str) -> list[str]:
    return exec_(c, service, ["sh", "-c", _RESTORE_IN_SERVICE, inside, database, app_name])


def terminate_in_service(c: Compose, service: str, database: str, app_name: str) -> list[str]:
    """End the restore's session (its transaction rolls back); prints how many ended."""
    return exec_(c, service, ["sh", "-c", _TERMINATE_IN_SERVICE, database, app_name])


def _throwaway(image: str, directory: str, user: str, read_only: bool,
               script: str, args: Sequence[str]) -> list[str]:
    # Host networking: the URL names the database as this machine (or host) reaches it.
    # --user: the file belongs to whoever runs the task, as one pg_dump here would make.
    mount = f"{directory}:{MOUNT}" + (":ro" if read_only else "")
    return ["docker", "run", "--rm", "-i", "--network", "host", "--user", user,
            "-v", mount, image, "sh", "-c", script, *args]


def dump_external(image: str, url: str, directory: str, name: str, user: str) -> list[str]:
    """pg_dump -Fc of the database at ``url`` (no password in it) into directory/name."""
    return _throwaway(image, directory, user, False, _DUMP_EXTERNAL,
                      [url, f"{MOUNT}/{name}"])


def restore_external(image: str, url: str, path: str, user: str,
                     app_name: str) -> list[str]:
    """pg_restore of the file at ``path`` into the database at ``url`` (no password)."""
    p = PurePosixPath(path)
    return _throwaway(image, str(p.parent), user, True, _RESTORE_EXTERNAL,
                      [url, f"{MOUNT}/{p.name}", app_name])


def terminate_external(image: str, url: str, app_name: str) -> list[str]:
    return ["docker", "run", "--rm", "-i", "--network", "host", image, "sh", "-c",
            _TERMINATE_EXTERNAL, url, app_name]


def head(path: str) -> list[str]:
    """The file's first bytes: is it readable, and is it a custom-format archive?"""
    return ["head", "-c", str(len(CUSTOM_MAGIC)), "--", path]


def archive_tables(toc: str) -> set[tuple[str, str]]:
    """(schema, table) of every TABLE entry in `pg_restore -l` output, e.g.
    `215; 1259 16390 TABLE public users app` (the last word is the owner)."""
    found = set()
    for line in toc.splitlines():
        head_, sep, rest = line.partition(" TABLE ")
        if not sep or rest.startswith("DATA ") or not re.fullmatch(r"\d+; \d+ \d+", head_):
            continue
        schema, _, tail = rest.partition(" ")
        name = tail.rsplit(" ", 1)[0] if " " in tail else tail
        if schema and name:
            found.add((schema, name))
    return found


# pg_dump/pg_restore errors that are the role's or the settings' to fix (exit 2).
_SETUP_ERRORS = ("permission denied", "must be owner", "password authentication failed",
                 "does not exist", "no password supplied")


def tool_error(output: str) -> tuple[str, bool]:
    """The one line that says why pg_dump/pg_restore failed, and whether it is a set-up
    problem (privileges, password, a missing role or database) rather than a failure."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    found = next((line for line in lines if re.match(r"pg_(dump|restore): error: ", line)),
                 lines[-1] if lines else "no output")
    message = re.sub(r"^pg_(dump|restore): error: ", "", found)
    # "could not execute query: ERROR:  x" / "query failed: ERROR:  x": the server's words.
    message = re.sub(r"^.*?\b(ERROR|FATAL):\s+", "", message)
    setup = any(key in message for key in _SETUP_ERRORS)
    return message, setup
