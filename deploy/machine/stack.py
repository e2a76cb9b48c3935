"""The Compose lifecycle on one machine: build, up, wait, logs, backup, reset, deploy.

Works on whatever context arrives (invoke.Context locally, fabric.Connection on a host);
commands come from compose.py as argv and go through shell.run only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from deploy import shell
from deploy.commands import compose, docker
from deploy.commands.compose import Compose, ContainerState
from deploy.errors import CheckFailed, ConfigError, DeployError, Refused
from deploy.machine import health
from deploy.settings import Settings

Out = Callable[[str], None]
_HOST_FLAVOURS: dict[tuple, tuple[tuple[str, ...], str]] = {}


class Stack:
    """One Compose project reached through one context."""

    def __init__(self, c, settings: Settings, out: Out = print, stream=None):
        self.c = c
        self.settings = settings
        self.out = out
        self.stream = stream  # where streamed command output goes (None: stdout)
        self._compose: Compose | None = None

    # --- plumbing --------------------------------------------------------------------

    def run(self, argv, **kwargs):
        if self.stream is not None:
            kwargs.setdefault("stream", self.stream)
        return shell.run(self.c, argv, **kwargs)

    def check_docker(self) -> None:
        """Docker missing or its daemon down is a set-up problem (exit 2), said plainly."""
        result = self.run(compose.docker_info(), check=False, merge_stderr=True)
        if result.exited == 127:
            raise ConfigError(
                "docker: not installed; install Docker Engine and Compose (e.g. "
                "`apt-get install docker.io docker-compose`, or Docker Desktop)")
        if result.exited != 0:
            reason = (result.stdout or "").strip().splitlines()
            raise ConfigError(
                "docker: the daemon is not reachable"
                + (f" ({reason[-1].strip()})" if reason else "")
                + "; start it (`sudo systemctl start docker`, or `dockerd &`) and check that "
                "this user may use it")

    @property
    def compose(self) -> Compose:
        if self._compose is None:
            def probe(argv):
                result = self.run(argv, check=False)
                return result.exited, result.stdout

            if hasattr(self.c, "forward_local"):  # a host: ask it, once per process
                key = (self.c.host, self.c.port, self.settings.compose_cmd)
                if key not in _HOST_FLAVOURS:
                    _HOST_FLAVOURS[key] = compose.detect_flavour(self.settings.compose_cmd,
                                                                 probe)
                base, flavour = _HOST_FLAVOURS[key]
            else:
                base, flavour = detect_flavour_cached(self.settings.compose_cmd, probe)
            # Asked through the context: on a host, the file is the host's.
            if self.run(["test", "-f", str(self.settings.compose_file)], check=False).exited:
                raise ConfigError(f"COMPOSE_FILE: {self.settings.compose_file} does not exist")
            env_file = self.settings.env_file
            # The backend always runs BACKEND_IMAGE:live (deploy/release/sequence.py): per-release
            # values never enter Compose's config, so a plain `up` recreates nothing.
            env = (f"BACKEND_IMAGE={self.settings.backend_image}", "BACKEND_TAG=live",
                   f"COMPOSE_PROJECT_NAME={self.settings.project_name}")
            self._compose = Compose(base, flavour, str(self.settings.compose_file),
                                    self.settings.project_name,
                                    str(env_file) if env_file else None, env)
        return self._compose

    # --- steps -------------------------------------------------------------------------

    def up(self, build: bool = False, first: tuple[str, ...] = ()) -> None:
        """`up -d`. ``first``: those services first, waited for (their own healthchecks run
        at once), then the rest with `--no-deps`: Compose itself would wait for Docker's
        first probe of a `service_healthy` dependency, a whole healthcheck interval."""
        if not first:
            self.run(compose.up(self.compose, build=build), hide=False, what="up")
            return
        self.run(compose.up(self.compose, first, build=build, no_deps=True), hide=False,
                 what="up")
        self.wait_healthy(self.settings.health_timeout, services=first)
        # Named: given every service, Compose v1 still waits for the dependencies among them.
        names = self.run(compose.services(self.compose), what="config").stdout.split()
        rest = [n for n in names if n not in first]
        if rest:
            self.run(compose.up(self.compose, rest, build=build, no_deps=True), hide=False,
                     what="up")

    def down(self, volumes: bool = False) -> None:
        self.run(compose.down(self.compose, volumes=volumes), hide=False, what="down")

    def states(self) -> list[ContainerState]:
        result = self.run(compose.project_states(self.settings.project_name), check=False)
        if result.exited != 0:
            # A container removed between `docker ps` and `inspect`: ask again next poll;
            # the engine itself unreachable: say so.
            if "Cannot connect to the Docker daemon" in (result.stderr or ""):
                raise DeployError(f"docker: {result.stderr.strip().splitlines()[-1]}")
            return []
        return compose.parse_inspect(result.stdout)

    def probe_now(self, s: ContainerState) -> bool:
        """Run the container's own healthcheck now; True when it passed (health.py)."""
        argv = docker.healthcheck(s.id, s.healthcheck)
        return argv is not None and self.run(argv, check=False).exited == 0

    def log_lines(self, services=(), tail=None, since=None, timestamps=False) -> list[str]:
        argv = compose.logs(self.compose, services, tail=tail, since=since,
                            timestamps=timestamps)
        return self.run(argv, merge_stderr=True, what="logs").stdout.splitlines()

    def wait_healthy(self, timeout: float, services: tuple[str, ...] = ()
                     ) -> list[ContainerState]:
        def probe():
            return [s for s in self.states() if not services or s.service in services]

        def show(states):
            self.out("   " + ", ".join(f"{s.label}: {health.summary(s)}" for s in states))

        try:
            return health.wait_until_healthy(probe, timeout=timeout, on_change=show,
                                             probe_now=self.probe_now)
        except (health.ServiceFailed, health.HealthTimeout) as exc:
            failing = exc.failing or exc.states
            logs = {}
            for s in failing:
                if s.service and s.service not in logs:
                    try:
                        logs[s.service] = self.log_lines([s.service], tail=health.LOG_LINES)
                    except DeployError as err:
                        logs[s.service] = [f"(could not read logs: {err})"]
            report = health.describe_failure(failing, logs)
            raise type(exc)(f"{exc}\n{report}", exc.states, exc.failing) from None

    def backup(self) -> Path:
        """pg_dump -Fc inside the postgres service, copied to BACKUP_DIR; returns the path."""
        states = [s for s in self.states() if s.service == "postgres" and s.status == "running"]
        if not states:
            raise DeployError("backup: the postgres service is not running; start the stack "
                              "(`invoke up`) or pass --no-backup to reset without a backup")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        inside = f"/tmp/deploy-backup-{stamp}.dump"
        # The script is a constant; the container's own POSTGRES_USER/DB name the database.
        dump = ["sh", "-c", 'pg_dump -Fc -U "${POSTGRES_USER:-postgres}" '
                '-d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" -f "$0"', inside]
        self.run(compose.exec_(self.compose, "postgres", dump), what="backup (pg_dump)")
        target_dir = Path(self.settings.backup_dir)
        target = target_dir / f"{self.settings.project_name}-{stamp}.dump"
        self.run(["mkdir", "-p", str(target_dir)], what="backup")
        try:
            self.run(["docker", "cp", f"{states[0].id}:{inside}", str(target)],
                     what="backup (docker cp)")
        finally:
            self.run(compose.exec_(self.compose, "postgres", ["rm", "-f", inside]), check=False)
        # The dump holds every row of the database: readable by its owner only.
        self.run(["chmod", "600", str(target)], what="backup")
        size = self.run(["stat", "-c", "%s", str(target)], what="backup").stdout.strip()
        if not size.isdigit() or int(size) == 0:
            raise DeployError(f"backup: {target} is empty; nothing was destroyed")
        self.out(f"   backup written: {target} ({int(size):,} bytes)")
        return target


_PLUGIN_DIRS = ("~/.docker/cli-plugins", "/usr/local/lib/docker/cli-plugins",
                "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
                "/usr/libexec/docker/cli-plugins")


def _binaries_key(compose_cmd: str | None) -> str:
    """What the detected flavour depends on: COMPOSE_CMD and the installed binaries."""
    import shutil

    parts = [compose_cmd or ""]
    paths = [shutil.which("docker"), shutil.which("docker-compose")]
    paths += [os.path.join(os.path.expanduser(d), "docker-compose") for d in _PLUGIN_DIRS]
    for path in paths:
        if path and os.path.exists(path):
            st = os.stat(path)
            parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def detect_flavour_cached(compose_cmd: str | None, probe) -> tuple[tuple[str, ...], str]:
    """compose.detect_flavour, remembered per machine until a Compose binary changes.

    Asking docker-compose v1 its version costs ~0.4 s (a slow-starting Python program),
    on every task that uses Compose (bench/bench_stack.py).
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deploy"
    path = cache / "compose-flavour.json"
    key = _binaries_key(compose_cmd)
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return tuple(saved["base"]), saved["flavour"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    base, flavour = compose.detect_flavour(compose_cmd, probe)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "base": list(base), "flavour": flavour}))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home only costs the probe next time
    return base, flavour


@dataclass
class StepTimer:
    out: Out
    timings: list[tuple[str, float]] = field(default_factory=list)

    def step(self, name: str, fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            # Inside the try: a signal that lands right after this line still gets its
            # closing line below.
            self.out(f"==> {name}")
            result = fn(*args, **kwargs)
        except (DeployError, KeyboardInterrupt) as exc:
            stopped = isinstance(exc, KeyboardInterrupt) or exc.exit_code in (130, 143)
            how = "INTERRUPTED" if stopped else "FAILED"
            self.out(f"<== {name} {how} after {time.perf_counter() - started:.1f} s")
            raise
        elapsed = time.perf_counter() - started
        self.timings.append((name, elapsed))
        self.out(f"<== {name} done in {elapsed:.1f} s")
        return result


def migrate_and_verify(settings: Settings, timer: StepTimer, out: Out,
                       since_seconds: float | None = None) -> dict:
    """The in-process runner, then check-tables --expected; returns a summary."""
    from deploy.migrate import db
    from deploy.migrate.runner import migrate
    from deploy.migrate.tables import check_tables, format_report

    result = timer.step("migrate", migrate, settings, wait=30.0, out=out)
    report = timer.step("check-tables --expected", check_tables, settings.database_url,
                        settings.migrations_dir, prefix=None, schema="public", expected=True)
    lines, failure = format_report(report)
    if failure:
        for line in lines:
            out("   " + line)
        raise failure
    applied = list(result.applied)
    if since_seconds is not None:
        # The backend applies migrations at start-up, before it reports healthy: ask
        # the history what this deploy applied, whoever ran it (server clock, no skew).
        with db.connect(settings.database_url) as conn:
            from psycopg import sql

            rows = conn.execute(sql.SQL(
                "SELECT filename, applied_by FROM {} WHERE executed_at >= "
                "now() - make_interval(secs => %s) ORDER BY executed_at, filename"
            ).format(sql.Identifier(*settings.migration_table.split("."))),
                (since_seconds,)).fetchall()
        applied = [f"{name} (by {who})" if who else name for name, who in rows]
    return {"applied": applied, "tables": len(report.expected or []),
            "total": result.total_applied}


def require_stack_settings(settings: Settings) -> None:
    """Settings the stack cannot start without, checked before anything is started."""
    try:
        text = Path(settings.compose_file).read_text(encoding="utf-8")
    except OSError:
        return  # a missing file is reported by the Compose step itself
    if "${POSTGRES_PASSWORD" in text and not settings.values.get("POSTGRES_PASSWORD"):
        raise ConfigError(
            "POSTGRES_PASSWORD: missing; the stack's database needs one. `bash .ci/quickstart` "
            "writes .env with a random one, or set it in .env (see .env.example)")


def deploy(c, settings: Settings, *, build: bool = True, out: Out = print) -> dict:
    """The zero-downtime sequence of deploy/release/sequence.py, then the summary."""
    from deploy.release.sequence import deploy as switch_deploy

    require_stack_settings(settings)
    summary = switch_deploy(c, settings, build=build, out=out)
    print_summary(summary, out)
    return summary


# Up to this many names are listed after a deploy; more are counted, with the command.
LIST_AT_MOST = 40


def print_summary(summary: dict, out: Out) -> None:
    """What the deploy did to the schema, one item per line: never a 700-character line."""
    applied = summary["applied"]
    if applied:
        out(f"deploy: migrations applied ({len(applied)}):")
        for name in applied:
            out(f"   {name}")
    else:
        out("deploy: migrations applied: none (schema already up to date)")
    out(f"deploy: {summary['tables']} expected table(s) verified")
    ai = summary.get("ai_tables") or []
    if len(ai) > LIST_AT_MOST:
        out(f"deploy: {len(ai)} ai_ tables exist; list them with "
            "`invoke check-tables --prefix ai_`")
    elif ai:
        import textwrap

        out(f"deploy: {len(ai)} ai_ table(s) exist:")
        for line in textwrap.wrap(", ".join(ai), width=88):
            out(f"   {line}")


def confirm_reset(settings: Settings, yes_destroy: str | None, production: bool,
                  interactive: bool, ask: Callable[[str], str] = input) -> None:
    """The guard: the project name typed or passed exactly, and --production in production."""
    project = settings.project_name
    if settings.deploy_env == "production" and not production:
        raise Refused(f"reset: DEPLOY_ENV=production; add --production to reset project "
                      f"{project!r} (nothing was touched)")
    if yes_destroy is not None:
        if yes_destroy != project:
            raise Refused(f"reset: --yes-destroy={yes_destroy!r} does not match the Compose "
                          f"project name {project!r}; nothing was touched")
        return
    if not interactive:
        raise Refused(f"reset: destroys the volumes of project {project!r}; not interactive, "
                      f"so pass --yes-destroy={project} (nothing was touched)")
    typed = ask(f"This destroys every volume of Compose project {project!r} "
                f"(a backup is taken first). Type the project name to confirm: ")
    if typed.strip() != project:
        raise Refused(f"reset: you typed {typed.strip()!r}, not {project!r}; nothing was touched")


def reset(stack: Stack, *, backup: bool = True, database=None) -> Path | None:
    """Backup → down --volumes → up → wait → migrate. `database()` gives a context manager
    yielding settings whose DATABASE_URL reaches the stack's database (a tunnel remotely)."""
    settings, out = stack.settings, stack.out
    if not hasattr(stack.c, "forward_local"):  # a host's release .env is checked at deploy
        require_stack_settings(settings)
    timer = StepTimer(out)
    timer.step("docker", stack.check_docker)
    path = timer.step("backup", stack.backup) if backup else None
    if not backup:
        out("   --no-backup: no backup taken")
    timer.step("down --volumes", stack.down, True)
    from deploy.release.sequence import BASE_SERVICES, resync

    timer.step("up", stack.up, False, BASE_SERVICES)
    timer.step("wait-healthy", stack.wait_healthy, settings.health_timeout)

    timer.step("proxy: route", resync, stack)
    with (database() if database else nullcontext(settings)) as reachable:
        migrate_and_verify(reachable, timer, out)
    out("reset: done" + (f"; backup at {path}" if path else ""))
    return path


def format_states(states: list[ContainerState], routes: dict[str, str] | None = None
                  ) -> list[str]:
    """One row per container; with ``routes`` (container id -> the proxy's view, see
    release_switch.routes), the release each one runs and whether the proxy routes to it."""
    head = ("SERVICE", "CONTAINER", "STATE", "HEALTH", "EXIT")
    extra = ("RELEASE", "PROXY") if routes is not None else ()
    rows = [(*head, *extra, "PORTS")]
    for s in sorted(states, key=lambda s: (s.service, s.name)):
        more = (s.release or "-", routes.get(s.id, "-")) if routes is not None else ()
        rows.append((s.service, s.name, s.status, s.health or "-", str(s.exit_code), *more,
                     ", ".join(s.ports) or "-"))
    n = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    return ["  ".join(f"{v:<{widths[i]}}" for i, v in enumerate(r[:n])) + "  " + r[n]
            for r in rows]


def state_dict(s: ContainerState, routes: dict[str, str] | None = None) -> dict:
    row = {"service": s.service, "container": s.name, "state": s.status, "health": s.health,
           "exit_code": s.exit_code, "restart_count": s.restart_count, "ports": list(s.ports)}
    if routes is not None:
        row.update(release=s.release or None, proxy=routes.get(s.id))
    return row


def no_match(pattern: str) -> CheckFailed:
    return CheckFailed(f"logs: no line matched {pattern!r}")
