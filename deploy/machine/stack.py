"""One Compose project reached through one context: `Stack`.

Works on whatever context arrives (invoke.Context locally, fabric.Connection on a host);
commands come from deploy/commands as argv and go through shell.run only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath

from deploy import shell
from deploy.commands import compose, docker, proxyconf
from deploy.commands.compose import Compose, ContainerState
from deploy.commands.docker import LIVE
from deploy.commands.project import PROXY_SERVICE, Project, parse_config, refusals
from deploy.errors import ConfigError, DeployError
from deploy.machine import health
from deploy.machine.flavour import flavour_for
from deploy.output import Output, as_output
from deploy.settings import Settings


class Stack:
    """One Compose project reached through one context; ``out`` gets its lines, and
    ``out.stream`` the output of the commands it shows."""

    def __init__(self, c, settings: Settings, out: Output | Callable[[str], object] | None = None):
        self.c = c
        self.settings = settings
        self.out = as_output(out)
        self.stream = self.out.stream  # where streamed command output goes (None: stdout)
        self._compose: Compose | None = None
        self._user_compose: Compose | None = None
        self._project: Project | None = None

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
    def user_compose(self) -> Compose:
        """Compose on the user's file alone (what `config` reads)."""
        if self._user_compose is None:
            def probe(argv):
                result = self.run(argv, check=False)
                return result.exited, result.stdout

            base, flavour = flavour_for(self.c, self.settings.compose_cmd, probe)
            # Asked through the context: on a host, the file is the host's.
            if self.run(["test", "-f", str(self.settings.compose_file)], check=False).exited:
                raise ConfigError(f"COMPOSE_FILE: {self.settings.compose_file} does not exist")
            env_file = self.settings.env_file
            # The sample's backend runs BACKEND_IMAGE:live: per-release values never enter
            # Compose's config, so a plain `up` recreates nothing.
            env = (f"BACKEND_IMAGE={self.settings.backend_image}", "BACKEND_TAG=live",
                   f"COMPOSE_PROJECT_NAME={self.settings.project_name}")
            self._user_compose = Compose(base, flavour, str(self.settings.compose_file),
                                         self.settings.project_name,
                                         str(env_file) if env_file else None, env)
        return self._user_compose

    @property
    def compose(self) -> Compose:
        """Compose on the user's file and the tool's override over it (the proxy service,
        the app and worker services on their `live` image), written where Compose runs."""
        if self._compose is None:
            images = self.live_images()
            # Only services the file has: `logs`, `ps` and the like work on a project whose
            # file lacks a service the settings name (a deploy refuses it: check_roles).
            routes = [r for r in self.routes() if r.service in self.project.services]
            if not (images or routes):
                # Nothing to add (a database host): no override at all. Compose v1 takes a
                # file with empty `services:` for the legacy format and refuses the pair.
                self._compose = self.user_compose
                return self._compose
            text = proxyconf.override(self.project, routes, images, self.proxy_image)
            path = self._override_path()
            shell.write_file(self.c, path, text)
            self._compose = replace(self.user_compose, overrides=(path,))
        return self._compose

    def _override_path(self) -> str:
        name = f"{self.settings.project_name}.override.yml"
        if shell.is_remote(self.c):  # beside the release's compose file: the tool's own dir
            return str(PurePosixPath(str(self.settings.compose_file)).parent / f".deploy-{name}")
        return str(Path(tempfile.gettempdir()) / f"compose-switch-{os.getuid()}" / name)

    @property
    def proxy_image(self) -> str:
        return f"{self.settings.project_name}-proxy:{LIVE}"

    def routes(self) -> list[proxyconf.Route]:
        s = self.settings
        return proxyconf.routes(s.app_services, s.app_ports, s.health_paths, s.proxy_publish)

    def image_name(self, service: str) -> str:
        """The image a deploy tags by release for an app or worker service."""
        return self.project.image_name(service)

    def live_images(self) -> dict[str, str]:
        s = self.settings
        return {name: f"{self.image_name(name)}:{LIVE}"
                for name in (*s.app_services, *s.worker_services)
                if name in self.project.services}

    @property
    def project(self) -> Project:
        """The compose file as Compose resolves it (read once; its text holds the
        environment's values, so it is never shown)."""
        if self._project is None:
            self._project = parse_config(self.config_text(), self.settings.project_name)
        return self._project

    def config_text(self) -> str:
        """`compose config` of the user's file: every variable resolved. It holds the
        environment's values: never shown."""
        result = self.run(compose.config(self.user_compose), check=False)
        if result.exited != 0:
            lines = (result.stderr or result.stdout or "").strip().splitlines()
            raise ConfigError(f"COMPOSE_FILE: {self.settings.compose_file}: Compose cannot "
                              f"read it ({lines[-1].strip() if lines else 'no output'})")
        return result.stdout

    def check_roles(self) -> None:
        """The services the settings name are in the compose file, and no app service
        publishes a fixed host port: checked before anything is started (exit 2)."""
        s = self.settings
        refusals(self.project, str(s.compose_file), s.app_services, s.worker_services,
                 s.db_service)

    # --- steps -------------------------------------------------------------------------

    def up(self, build: bool = False, first: tuple[str, ...] = (),
           only: tuple[str, ...] | None = None) -> None:
        """`up -d`. ``first``: those services first, waited for (their own healthchecks run
        at once), then the rest with `--no-deps`: Compose itself would wait for Docker's
        first probe of a `service_healthy` dependency, a whole healthcheck interval.
        ``only``: the services this host runs (deploy/services.host_services), none other,
        also not as a dependency."""
        if not first and only is None:
            self.run(compose.up(self.compose, build=build), hide=False, what="up")
            return
        first = tuple(s for s in first if only is None or s in only)
        if first:
            self.run(compose.up(self.compose, first, build=build, no_deps=True), hide=False,
                     what="up")
            self.wait_healthy(self.settings.health_timeout, services=first)
        # Named: given every service, Compose v1 still waits for the dependencies among them.
        names = self.run(compose.services(self.compose), what="config").stdout.split()
        rest = [n for n in names if n not in first and (only is None or n in only)]
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
        # The user's file names every service but the proxy: reading the project to render
        # the override would cost a `compose config` run (~1 s with v1) for nothing.
        own = bool(services) and PROXY_SERVICE not in services
        argv = compose.logs(self.user_compose if own else self.compose, services, tail=tail,
                            since=since, timestamps=timestamps)
        return self.run(argv, merge_stderr=True, what="logs").stdout.splitlines()

    def wait_healthy(self, timeout: float, services: tuple[str, ...] = (), *,
                     new: set[str] | None = None,
                     answers: Callable[[list[ContainerState]], bool] | None = None
                     ) -> list[ContainerState]:
        """Until every container (of ``services``, when given) is ready; on failure, the
        report of each failing one with its service's last log lines. Each container's
        own healthcheck is run at once rather than a whole interval after its start.

        ``new``: the IDs of a deploy's just-started containers, waited for alone: any
        restart counts, ``answers(states)`` (the proxy's check, which passes within ~0.1 s
        of the backend answering /health) is another way to be ready, and each failing
        one is reported with its own log and its last exit code."""
        def probe():
            if new is not None:
                return [s for s in self.states() if s.id in new]
            return [s for s in self.states() if not services or s.service in services]

        def show(states):
            self.out("   " + ", ".join(f"{s.name if new is not None else s.label}: "
                                       f"{health.summary(s)}" for s in states))

        try:
            return health.wait_until_healthy(
                probe, timeout=timeout, on_change=show, answers=answers,
                fresh=new is not None, probe_now=None if new is not None else self.probe_now)
        except (health.ServiceFailed, health.HealthTimeout) as exc:
            failing = exc.failing or exc.states
            report = (self._report_each(failing) if new is not None
                      else self._report_by_service(failing))
            raise type(exc)(f"{exc}\n{report}", exc.states, exc.failing) from None

    def _report_by_service(self, failing: list[ContainerState]) -> str:
        logs = {}
        for s in failing:
            if s.service and s.service not in logs:
                try:
                    logs[s.service] = self.log_lines([s.service], tail=health.LOG_LINES)
                except DeployError as err:
                    logs[s.service] = [f"(could not read logs: {err})"]
        return health.describe_failure(failing, logs)

    def _report_each(self, failing: list[ContainerState]) -> str:
        """Per container: its own log, and how it last stopped when its restart policy
        started it again (inspect then says exit code 0)."""
        reports = []
        for s in failing:
            if s.restart_count and not s.exit_code:
                s = replace(s, exit_code=last_exit_code(self, s))
            result = self.run(docker.logs(s.id, health.LOG_LINES), check=False,
                              merge_stderr=True)
            reports.append(health.describe_failure([s], {s.service: result.stdout.splitlines()}))
        return "\n".join(reports)


def last_exit_code(stack, s: ContainerState) -> int:
    """How the container last stopped (its `die` events before its latest start); 0 when
    that is not known. ``stack``: anything with Stack's ``run``."""
    found = stack.run(docker.exit_codes(s.id, s.started_at or "0s"),
                      check=False).stdout.split()
    return int(found[-1]) if found and found[-1].lstrip("-").isdigit() else 0


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
