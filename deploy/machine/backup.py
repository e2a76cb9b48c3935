"""`invoke backup` and `invoke restore`: a pg_dump custom-format file in BACKUP_DIR, and
that file restored into the database, on whatever machine the context reaches.

Where the tools run follows DB_SERVICE: inside that service's container (over its local
socket, as its own POSTGRES_USER) or, with no database service, in a throwaway container of
POSTGRES_IMAGE on the host network (the password on its stdin). The container rather than
this machine's pg_dump: a host needs only Docker, which it has, and the client is the
version the team chose, since pg_dump refuses a server newer than itself.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from deploy import cli
from deploy.commands import pgdump
from deploy.errors import ConfigError, DeployError
from deploy.machine.builds import postgres_image
from deploy.machine.guard import confirm, guard_for
from deploy.machine.schema import verify_tables
from deploy.machine.stack import Stack
from deploy.migrate.db import connect
from deploy.migrate.interrupt import Interrupted
from deploy.redaction import redact
from deploy.settings import STACK_USER, Settings
from deploy.shell import is_remote


def database_name(settings: Settings) -> str:
    """The database backups and restores act on: the one DATABASE_URL names."""
    if settings.db_url is not None:
        return pgdump.database_of(settings.db_url)
    values = settings.values
    return values.get("POSTGRES_DB") or values.get("POSTGRES_USER") or STACK_USER


def where(settings: Settings) -> str:
    """The database, said without a password: `database 'app' in service postgres`."""
    name = database_name(settings)
    if settings.db_service:
        return f"database {name!r} in service {settings.db_service}"
    parts = urlsplit(settings.database_url)
    return f"database {name!r} at {parts.hostname}:{parts.port or 5432}"


def confirm_restore(settings: Settings, yes_destroy: str | None, production: bool,
                    interactive: bool, ask: Callable[[str], str] = input) -> None:
    """The guard: the database's name typed or passed exactly, --production in production."""
    confirm(guard_for("restore", database_name(settings)), settings.deploy_env, yes_destroy,
            production, interactive, ask)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _running_container(stack: Stack, task: str, hint: str = "") -> str:
    service = stack.settings.db_service
    found = [s.id for s in stack.states() if s.service == service and s.status == "running"]
    if not found:
        raise DeployError(f"{task}: the {service} service (DB_SERVICE) is not running; start "
                          f"the stack (`invoke up`){hint}")
    return found[0]


def _failed(task: str, result, secret: str, after: str) -> DeployError:
    """pg_dump's or pg_restore's own reason, one line; a role's or a setting's problem
    (privileges, password, a missing role or database) is exit 2."""
    message, setup = pgdump.tool_error((result.stderr or "") + "\n" + (result.stdout or ""))
    text = redact(f"{task}: {message}; {after}", secret)
    return ConfigError(text) if setup else DeployError(text)


def _caller(stack: Stack) -> str:
    """uid:gid of whoever runs the task here or on the host: the owner of the files."""
    uid = stack.run(["id", "-u"], what="id").stdout.strip()
    gid = stack.run(["id", "-g"], what="id").stdout.strip()
    return f"{uid}:{gid}"


# --- backup ---------------------------------------------------------------------------


def backup(stack: Stack, hint: str = "") -> PurePosixPath:
    """pg_dump -Fc of the database into BACKUP_DIR (mode 600); returns the path. ``hint``
    ends the line saying the database service is not running (reset: --no-backup)."""
    settings = stack.settings
    name = pgdump.file_name(settings.project_name, database_name(settings), _stamp())
    directory = PurePosixPath(str(settings.backup_dir))
    stack.run(["mkdir", "-p", str(directory)], what="backup")
    target = directory / name
    if settings.db_service:
        _dump_in_service(stack, target, hint)
    else:
        _dump_external(stack, target)
    # Both ways write it 600 already (umask 077, or docker cp of a 600 file): said again.
    stack.run(["chmod", "600", str(target)], what="backup")
    size = stack.run(["stat", "-c", "%s", str(target)], what="backup").stdout.strip()
    if not size.isdigit() or int(size) == 0:
        raise DeployError(f"backup: {target} is empty; the backup failed")
    stack.out(f"   backup written: {target} ({int(size):,} bytes)")
    return target


def _dump_in_service(stack: Stack, target: PurePosixPath, hint: str) -> None:
    settings = stack.settings
    container = _running_container(stack, "backup", hint)
    inside = f"/tmp/deploy-{target.name}"
    argv = pgdump.dump_in_service(stack.compose, settings.db_service,
                                  database_name(settings), inside)
    try:
        result = stack.run(argv, check=False)
        if result.exited != 0:
            raise _failed("backup", result, "", "no backup written")
        stack.run(["docker", "cp", f"{container}:{inside}", str(target)],
                  what="backup (docker cp)")
    finally:
        stack.run(["docker", "exec", container, "rm", "-f", inside], check=False)


def _dump_external(stack: Stack, target: PurePosixPath) -> None:
    url, password = pgdump.split_password(stack.settings.database_url)
    argv = pgdump.dump_external(postgres_image(stack.settings), url, str(target.parent),
                                target.name, _caller(stack))
    result = stack.run(argv, check=False, input=password + "\n")
    if result.exited != 0:
        stack.run(["rm", "-f", str(target)], check=False)
        raise _failed("backup", result, password, "no backup written")


# --- restore --------------------------------------------------------------------------


def backup_file(settings: Settings, file: str, remote: bool) -> PurePosixPath:
    """FILE as a path: a bare name is the one in BACKUP_DIR; on a host a path must be
    absolute (the host's), here a relative one is from the working directory."""
    if "/" not in file:
        return PurePosixPath(str(settings.backup_dir)) / file
    if remote:
        if not file.startswith("/"):
            raise ConfigError(f"restore: {file}: on a host, give a file name in its "
                              "BACKUP_DIR or an absolute path; nothing was touched")
        return PurePosixPath(file)
    return PurePosixPath(str(Path(file).resolve()))


def check_file(stack: Stack, path: PurePosixPath) -> int:
    """Readable and a custom-format archive, or ConfigError naming it; returns its size."""
    result = stack.run(pgdump.head(str(path)), check=False)
    if result.exited != 0:
        lines = (result.stderr or "").strip().splitlines() or ["cannot be read"]
        reason = lines[-1].rsplit(": ", 1)[-1]
        raise ConfigError(f"restore: {path}: {reason}; nothing was touched")
    if result.stdout != pgdump.CUSTOM_MAGIC:
        raise ConfigError(f"restore: {path} is not a pg_dump custom-format file (one that "
                          "`invoke backup` or `pg_dump -Fc` writes); nothing was touched")
    size = stack.run(["stat", "-c", "%s", str(path)], what="restore").stdout.strip()
    return int(size) if size.isdigit() else 0


def restore(stack: Stack, file: str, database=None) -> None:
    """FILE checked, then restored in one transaction (all of it, or the database as it
    was), then check-tables --expected. ``database()``: a context manager yielding settings
    whose DATABASE_URL reaches the database from here (a tunnel for a host)."""
    settings, out = stack.settings, stack.out
    path = backup_file(settings, file, is_remote(stack.c))
    out.step("docker", stack.check_docker)
    size = out.step("check the file (readable, custom format)", check_file, stack, path)
    out(f"   restore: {path} ({size:,} bytes) into {where(settings)}")
    run = _restore_in_service if settings.db_service else _restore_external
    archive = out.step("restore (pg_restore, one transaction)", run, stack, path)
    with (database() if database else nullcontext(settings)) as reachable:
        left = sorted(_tables(reachable.database_url) - archive)
        if left:
            out("   not in the backup, so left as they are: "
                + ", ".join(f"{schema}.{table}" for schema, table in left))
        verify_tables(reachable, out)
    out(f"restore: done; {where(settings)} is as in {path}")


def _tables(url: str) -> set[tuple[str, str]]:
    """(schema, table) of every table outside PostgreSQL's own schemas."""
    with connect(url, application_name="deploy-restore-check") as conn:
        rows = conn.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname "
                            "NOT IN ('pg_catalog', 'information_schema')").fetchall()
    return {(schema, table) for schema, table in rows}


ROLLED_BACK = "nothing was changed (one transaction, rolled back)"


def _restore_in_service(stack: Stack, path: PurePosixPath) -> set[tuple[str, str]]:
    settings, compose = stack.settings, stack.compose
    container = _running_container(stack, "restore")
    app_name = f"deploy-restore-{_stamp()}"
    inside = f"/tmp/{app_name}.dump"
    db, service = database_name(settings), settings.db_service
    stack.run(["docker", "cp", str(path), f"{container}:{inside}"], what="restore (docker cp)")
    try:
        argv = pgdump.restore_in_service(compose, service, db, inside, app_name)
        return _run_restore(stack, argv,
                            pgdump.terminate_in_service(compose, service, db, app_name), "")
    finally:
        stack.run(["docker", "exec", container, "rm", "-f", inside], check=False)


def _restore_external(stack: Stack, path: PurePosixPath) -> set[tuple[str, str]]:
    url, password = pgdump.split_password(stack.settings.database_url)
    image, app_name = postgres_image(stack.settings), f"deploy-restore-{_stamp()}"
    argv = pgdump.restore_external(image, url, str(path), _caller(stack), app_name)
    return _run_restore(stack, argv, pgdump.terminate_external(image, url, app_name), password)


def _run_restore(stack: Stack, argv: list[str], terminate: list[str],
                 password: str) -> set[tuple[str, str]]:
    """pg_restore in one transaction; returns the archive's tables. When it did not finish,
    its session is ended on the server first (a client that died, or a Ctrl-C that stopped
    `compose exec`, need not stop a tool inside a container), so that the message is true."""
    try:
        result = stack.run(argv, check=False, input=password + "\n")
    except KeyboardInterrupt as exc:
        signum = signal.SIGTERM if isinstance(exc, cli.Terminated) else signal.SIGINT
        ended = _end_session(stack, terminate, password)
        raise Interrupted(f"restore: interrupted ({signal.Signals(signum).name}); "
                          f"{_state(stack, ended)}", signum) from None
    if result.exited != 0:
        output = (result.stderr or "") + (result.stdout or "")
        # pg_restore said why and ended: its transaction ended with it, rolled back.
        after = ROLLED_BACK if "pg_restore: error: " in output else \
            _state(stack, _end_session(stack, terminate, password))
        raise _failed("restore", result, password, after)
    return pgdump.archive_tables(result.stdout or "")


def _end_session(stack: Stack, terminate: list[str], password: str) -> int | None:
    """How many restore sessions were ended on the server; None when that is not known."""
    result = stack.run(terminate, check=False, input=password + "\n")
    ended = (result.stdout or "").strip()
    return int(ended) if result.exited == 0 and ended.isdigit() else None


def _state(stack: Stack, ended: int | None) -> str:
    name = where(stack.settings)
    if ended:
        return f"the restore's transaction was ended on the server: {name} is as it was"
    if ended == 0:
        return (f"no restore session is left on the server: pg_restore stopped and its "
                f"transaction rolled back ({name} is as it was), unless it had just committed "
                "(then it is as in the backup); `invoke check-tables --expected` and the data "
                "tell which")
    return (f"its session could not be checked: {name} is as it was or, if pg_restore "
            "still runs, will be as in the backup (one transaction: all or nothing)")
