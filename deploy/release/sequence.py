"""A deploy nobody notices: the new backend starts beside the old, the proxy switches.

    prepare: docker → build → postgres + proxy up → migrate (the old release keeps serving)
             → tag live → start new → proxy: prepare (new slots checked, no traffic)
             → wait-healthy (new): Docker's healthcheck or the proxy's, whichever passes first
    finish:  SWITCH (the point of no return) → drain + stop old → check-tables --expected

Everything before the switch can be undone: a failure there (build, migration, a new
container that never becomes healthy) removes the new containers, moves `live` back and
leaves the old release serving. A remote deploy prepares every host before any host
switches (deploy/fleet/rollout.py). Written against ``Stack``, so the same code runs on this
machine and on a host's fabric Connection. The HAProxy side is deploy/commands/haproxy.py.

Release identity lives in Docker, not in state files: the backend image is built as
``BACKEND_IMAGE:<release>`` with the label ``deploy.release=<release>`` (containers show
their image's labels), and ``BACKEND_IMAGE:live`` is the tag Compose always runs.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

from deploy.commands import compose, docker
from deploy.commands import haproxy as proxy
from deploy.commands.compose import ContainerState
from deploy.errors import ConfigError, DeployError
from deploy.machine import health
from deploy.machine.builds import (
    LIVE,
    build_backend,
    build_proxy,
    image,
    image_id,
    image_ids,
    postgres_image,
    proxy_image,
)
from deploy.machine.stack import Stack, StepTimer
from deploy.release import revision
from deploy.settings import Settings

BACKEND = "backend"
BASE_SERVICES = ("postgres", proxy.SERVICE)
POINT_OF_NO_RETURN = "switch"
# The tables the team checks by hand after a deploy (`check-tables --prefix ai_`).
AI_PREFIX = "ai_"

Out = Callable[[str], None]


# --- postgres and the proxy --------------------------------------------------------------


def base_up(stack: Stack, build: bool, may_build: bool = True) -> None:
    """postgres and the proxy, never the backend. A running proxy is recreated only when
    its image changed (haproxy.cfg or PROXY_IMAGE): Compose v1 would otherwise recreate it
    whenever the release directory (its build context) moves, as it does on a host.

    ``may_build=False`` (a host: its images were shipped): a missing proxy image is an
    error, never a build."""
    ref = proxy_image(stack.settings)
    built = None if build else image_id(stack, ref)
    if built is None:
        if not (build or may_build):
            raise DeployError(f"proxy: no image {ref} on {stack.c.host}; the deploy ships it "
                              "(nothing is built on a host)")
        build_proxy(stack)
        built = image_id(stack, ref)
    running = [s for s in stack.states() if s.service == proxy.SERVICE and s.status == "running"]
    services = ["postgres"]
    if not running or any(s.image_id != built for s in running):
        services.append(proxy.SERVICE)
        if running:
            stack.out("   the proxy's image changed (haproxy.cfg or PROXY_IMAGE): recreating "
                      "it, which closes its open connections once")
    stack.run(compose.up(stack.compose, services, build=False, no_deps=True), hide=False,
              what="up")


# --- the proxy ---------------------------------------------------------------------------


@dataclass
class Proxy:
    """The proxy container of one stack, reached through its runtime API."""

    stack: Stack
    policy: proxy.DrainPolicy
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _container: str | None = field(default=None, init=False, repr=False)
    _up: bool = field(default=False, init=False, repr=False)  # the last answers() said yes

    def container(self) -> str:
        """The running proxy container, looked up once: a deploy never recreates it after
        this object exists (base_up comes first), and a restart keeps its ID."""
        if self._container is None:
            running = [s for s in self.stack.states()
                       if s.service == proxy.SERVICE and s.status == "running"]
            if not running:
                raise DeployError("proxy: the proxy service is not running (`invoke up` "
                                  "starts it)")
            self._container = running[0].id
        return self._container

    def remember(self, states: list[ContainerState]) -> None:
        """Take the proxy container from states just read (one query fewer)."""
        running = [s for s in states if s.service == proxy.SERVICE and s.status == "running"]
        if running and self._container is None:
            self._container = running[0].id

    def call(self, command: str, what: str, save: bool = False) -> str:
        """One runtime-API command line; ``save``: the routing saved right after it (what
        HAProxy loads when it starts), in the same `docker exec`."""
        result = self.stack.run(proxy.api(self.container(), command, save), check=False)
        if result.exited != 0:
            detail = (result.stderr or result.stdout or "").strip().splitlines()[-3:]
            raise DeployError(f"proxy: {what}: the runtime API did not answer (exit "
                              f"{result.exited})" + "".join(f"\n  {line}" for line in detail))
        return result.stdout

    def command(self, command: str, what: str, save: bool = False) -> None:
        proxy.check_answer(self.call(command, what, save), what)

    def servers(self) -> list[proxy.Server]:
        return proxy.parse_servers_state(self.call(proxy.show_servers_state(), "routing"))

    def sessions(self) -> dict[str, int]:
        return proxy.parse_stat(self.call(proxy.show_stat(), "sessions"))

    def prepare(self, plan: proxy.SwitchPlan) -> None:
        """``assign``, then wait until each new slot passed a check."""
        self.assign(plan)
        self.wait_up(plan)

    def assign(self, plan: proxy.SwitchPlan) -> None:
        """New slots get their addresses, weight 0 (stale ones maintenance), in one API
        call: HAProxy checks them from then on, every 0.1 s until they pass."""
        if plan.new or plan.stale:
            self.command(proxy.assign(plan.new, plan.stale), "prepare " + ", ".join(plan.new))
        self._up = False

    def answers(self, plan: proxy.SwitchPlan) -> bool:
        """Has every new slot passed HAProxy's check at its address (GET /health, 200)?"""
        self._up = proxy.new_slots_up(self.servers(), plan)[0]
        return self._up

    def wait_up(self, plan: proxy.SwitchPlan) -> None:
        """Until every new slot passed a check (at once when ``answers`` just said so)."""
        if self._up:
            return
        deadline = self.clock() + self.policy.up_timeout
        while True:
            ok, missing = proxy.new_slots_up(self.servers(), plan)
            if ok:
                return
            if self.clock() >= deadline:
                raise DeployError(
                    f"proxy: the new container(s) did not pass HAProxy's health check within "
                    f"{self.policy.up_timeout:g} s: {'; '.join(missing)}")
            self.sleep(self.policy.poll)

    def drain(self, slots: list[str], out: Out) -> float:
        """Wait until the slots' current sessions reach 0 (or the drain timeout); then
        maintenance. Returns the seconds waited."""
        started = self.clock()
        deadline = started + self.policy.drain_timeout
        busy = {}
        while slots:
            busy = {s: n for s, n in self.sessions().items() if s in slots and n}
            if not busy or self.clock() >= deadline:
                break
            self.sleep(self.policy.poll)
        if busy:
            out(f"   drain timeout ({self.policy.drain_timeout:g} s, DRAIN_TIMEOUT): "
                f"{sum(busy.values())} request(s) still in flight on "
                f"{', '.join(busy)}; the containers get {self.policy.stop_seconds} s more "
                "to finish them")
        if slots:
            self.command(proxy.set_state(slots, "maint"), "old slots to maintenance",
                         save=True)
        return self.clock() - started

    def sync(self, containers: list[ContainerState], out: Out) -> list[str]:
        """Route to exactly these containers (`invoke up`, or after a restart); returns
        the slots that route."""
        servers = self.servers()
        now = proxy.routed(servers)
        ips = [s.ip for s in containers if s.ip]
        if sorted(now) == sorted(ips) and all(s.ready for s in now.values()):
            return sorted(s.name for s in now.values())
        keep = {ip: s for ip, s in now.items() if ip in ips}
        plan = proxy.plan_switch([s for s in servers if s.name not in
                                  {k.name for k in keep.values()}],
                                 [ip for ip in ips if ip not in keep])
        self.prepare(plan)
        self.command(proxy.flip(plan.new, plan.old), "route", save=not plan.old)
        if plan.old:
            self.command(proxy.set_state(plan.old, "maint"), "clear old slots", save=True)
        return sorted([*plan.new, *(s.name for s in keep.values())])


def routes(stack: Stack, states: list[ContainerState]) -> dict[str, str]:
    """Container id -> how the proxy sees it: ``slot2 ready UP`` (routed), ``slot1 drain
    UP``, or ``not routed``; the proxy itself is ``routing API`` (or why it cannot answer);
    empty when there is no running proxy."""
    if not any(s.service == proxy.SERVICE and s.status == "running" for s in states):
        return {}
    try:
        servers = Proxy(stack, policy_for(stack.settings)).servers()
    except DeployError as exc:
        return {s.id: f"unknown ({str(exc).splitlines()[0]})" for s in backends(states)}
    by_ip = {s.addr: s for s in servers if s.is_slot and s.assigned and not s.maint}
    backup = next((s for s in servers if not s.is_slot), None)
    any_routed = any(s.routed for s in by_ip.values())
    out = {}
    for s in backends(states):
        slot = by_ip.get(s.ip)
        if slot is not None:
            out[s.id] = f"{slot.name} {slot.state}"
        elif not any_routed and backup is not None and backup.addr == s.ip and backup.up:
            out[s.id] = f"{backup.name} (backup, by service name)"
        else:
            out[s.id] = "not routed"
    return out


def resync(stack: Stack) -> list[str]:
    """`invoke up`: route to the running backend containers that are healthy (a restarted
    proxy may hold addresses of containers that are gone). Returns the routed slots."""
    states = stack.states()
    if not any(s.service == proxy.SERVICE and s.status == "running" for s in states):
        return []
    healthy = [s for s in backends(states) if health.is_ready(s) and s.ip]
    if not healthy:
        return []
    return Proxy(stack, policy_for(stack.settings)).sync(healthy, stack.out)


def policy_for(settings: Settings) -> proxy.DrainPolicy:
    return proxy.DrainPolicy(drain_timeout=settings.drain_timeout)


# --- containers ------------------------------------------------------------------------------


def backends(states: list[ContainerState]) -> list[ContainerState]:
    return [s for s in states if s.service == BACKEND and not s.one_off]


def classify(states: list[ContainerState], servers: list[proxy.Server]
             ) -> tuple[list[ContainerState], list[ContainerState]]:
    """(serving, leftovers) among the backend containers.

    Serving: the running ones a ready slot points at; when no slot points at one (a fresh
    stack, served through the backup server), every running one. Leftovers: all others
    (a killed deploy's new containers, stopped ones): removed before new ones start.
    """
    mine = backends(states)
    ready_ips = {s.addr for s in servers if s.is_slot and s.assigned and s.ready}
    running = [s for s in mine if s.status == "running"]
    serving = [s for s in running if s.ip in ready_ips] or running
    return serving, [s for s in mine if s not in serving]


def remove_containers(stack: Stack, ids: list[str], stop_seconds: int) -> None:
    if ids:
        stack.run(docker.stop(ids, stop_seconds), what="stop", check=False)
        stack.run(docker.remove(ids), what="remove")


def wait_new_healthy(stack: Stack, new_ids: set[str], timeout: float,
                     answers: Callable[[list[ContainerState]], bool] | None = None
                     ) -> list[ContainerState]:
    """wait-healthy for the new containers only, with each failing container's logs (and
    its last exit code, when its restart policy started it again). ``answers``: the
    proxy's check, which passes within ~0.1 s of the backend answering /health, where
    Docker's first probe comes a whole healthcheck interval after the start."""
    def probe():
        return [s for s in stack.states() if s.id in new_ids]

    def show(states):
        stack.out("   " + ", ".join(f"{s.name}: {health.summary(s)}" for s in states))

    try:
        return health.wait_until_healthy(probe, timeout=timeout, on_change=show,
                                         answers=answers, fresh=True)
    except (health.ServiceFailed, health.HealthTimeout) as exc:
        reports = []
        for s in exc.failing or exc.states:
            if s.restart_count and not s.exit_code:
                s = replace(s, exit_code=_last_exit_code(stack, s))
            result = stack.run(docker.logs(s.id, health.LOG_LINES), check=False,
                               merge_stderr=True)
            reports.append(health.describe_failure([s], {s.service: result.stdout.splitlines()}))
        raise type(exc)(f"{exc}\n" + "\n".join(reports), exc.states, exc.failing) from None


def _last_exit_code(stack: Stack, s: ContainerState) -> int:
    """How the container last stopped (its `die` events before its latest start); 0 when
    that is not known."""
    found = stack.run(docker.exit_codes(s.id, s.started_at or "0s"),
                      check=False).stdout.split()
    return int(found[-1]) if found and found[-1].lstrip("-").isdigit() else 0


# --- the sequence ----------------------------------------------------------------------------


def deploy(c, settings: Settings, *, build: bool = True, out: Out = print, stream=None,
           release: str | None = None, database=None, schema: bool = True,
           on_switch: Callable[[], None] | None = None, shipped: bool = False,
           base_unchanged: bool = False) -> dict:
    """The zero-downtime deploy of one stack (this machine, or a host through ``c``):
    ``prepare``, then ``finish``.

    ``database()`` gives a context manager yielding settings whose DATABASE_URL reaches the
    stack's database (a tunnel on a host). ``schema=False`` (a rollback) neither migrates
    nor checks tables. ``on_switch()`` runs right after the switch (a host's `current`).
    ``shipped=True`` (a host): the caller made sure the images are there (shipping.ship
    verifies them by ID, a rollback lists them); nothing is ever built.
    ``base_unchanged=True`` (a host whose compose file and .env are the current release's):
    postgres and the proxy are left alone when they run healthy on the right images, as a
    rollback leaves them."""
    return finish(prepare(c, settings, build=build, out=out, stream=stream, release=release,
                          database=database, schema=schema, shipped=shipped,
                          base_unchanged=base_unchanged), on_switch)


@dataclass
class Prepared:
    """A stack with the new release running beside the old one, healthy, its proxy slots
    checked and taking no traffic: everything before the point of no return. ``finish``
    switches to it; ``undo`` takes it back (the old release never stopped serving)."""

    stack: Stack
    timer: StepTimer
    switcher: Proxy
    plan: proxy.SwitchPlan
    serving: list[ContainerState]
    new: list[ContainerState]
    previous_live: str | None
    release: str
    target: str
    migrated: object  # the runner's result; None without schema
    database: Callable
    schema: bool
    started: float
    ready_at: float
    undoable: bool = True  # until the switch is sent (or it was undone)

    def undo(self) -> None:
        """Once; never after the switch was sent (the new release may be serving)."""
        if self.undoable:
            self.undoable = False
            _undo(self.stack, self.switcher, self.plan, {s.id for s in self.new},
                  self.previous_live, self.switcher.policy, self.stack.out)


# A release prepared longer ago than this is checked again (one API call) before the switch:
# a host of a rolling deploy waits for the hosts before it.
RECHECK_AFTER = 1.0


def prepare(c, settings: Settings, *, build: bool = True, out: Out = print, stream=None,
            release: str | None = None, database=None, schema: bool = True,
            shipped: bool = False, base_unchanged: bool = False) -> Prepared:
    """Everything before the point of no return (see ``deploy``); a failure takes back
    what it started and leaves the old release serving."""
    from deploy.migrate.runner import migrate

    started = time.perf_counter()
    stack = Stack(c, settings, out, stream)
    timer = StepTimer(out)
    policy = policy_for(settings)
    if not shipped:  # shipping (or a rollback's listing) has talked to the engine already
        timer.step("docker", stack.check_docker)
    release = release or revision.revision().tag
    target = image(settings, release)
    # A rollback, or a deploy that changes no setting, on a host whose base services are
    # fine touches the backend only.
    states = stack.states() if shipped and (not schema or base_unchanged) else None
    skip_base = states is not None and _base_ready(stack, states)
    if shipped:
        if skip_base:
            out("   postgres and the proxy are up and healthy: only the backend changes")
        else:
            timer.step("postgres + proxy up", base_up, stack, False, False)
    elif build:
        timer.step(f"build {target}, postgres + proxy up (at once)", _build_and_base_up,
                   stack, release)
    elif image_id(stack, target) is None:
        # Nothing built for this tree: deploy the live image's release again, if any.
        live = stack.run(docker.image_release(image(settings, LIVE)), check=False)
        if live.exited != 0 or not live.stdout.strip():
            raise ConfigError(f"--no-build: there is no image {target} (nor a live one); "
                              "deploy without --no-build to build it")
        release, target = live.stdout.strip(), image(settings, live.stdout.strip())
        out(f"   --no-build: no image for this tree; deploying the live release {release} "
            "again")
        timer.step("postgres + proxy up", base_up, stack, build)
    else:
        timer.step("postgres + proxy up", base_up, stack, build)
    if not skip_base:
        timer.step("wait-healthy (postgres, proxy)", stack.wait_healthy,
                   settings.health_timeout, BASE_SERVICES)
    db = database or (lambda: nullcontext(settings))
    result = None
    if schema:
        with db() as reachable:
            result = timer.step("migrate (the old release keeps serving)", migrate, reachable,
                                wait=30.0, out=out)

    switcher = Proxy(stack, policy)
    states = states if skip_base else stack.states()  # nothing changed since, if skipped
    switcher.remember(states)
    servers = switcher.servers()  # only this deploy changes them (it holds the deploy lock)
    serving, leftovers = classify(states, servers)
    if leftovers:
        out(f"   removing {len(leftovers)} backend container(s) of an unfinished deploy: "
            + ", ".join(s.name for s in leftovers))
        remove_containers(stack, [s.id for s in leftovers], policy.stop_seconds)
    previous_live = image_id(stack, image(settings, LIVE))
    count = max(1, len(serving))
    new_ids: set[str] = set()
    plan = None
    try:
        timer.step(f"tag {LIVE}", stack.run, docker.tag(target, image(settings, LIVE)),
                   what="tag")
        before = {s.id for s in serving}  # the leftovers are gone: only these remain
        timer.step(f"start new ({count} beside {len(serving)} old)", stack.run,
                   compose.scale_up(stack.compose, BACKEND, len(serving) + count),
                   hide=False, what="start new")
        fresh = [s for s in backends(stack.states()) if s.id not in before]
        new_ids = {s.id for s in fresh}
        if not new_ids:
            raise DeployError("start new: Compose started no new backend container")
        if all(s.ip for s in fresh):  # running, addressed: the proxy checks them already
            plan = proxy.plan_switch(servers, [s.ip for s in fresh])
            timer.step("proxy: prepare (new slots checked, no traffic yet)", switcher.assign,
                       plan)
        new = timer.step("wait-healthy (new)", wait_new_healthy, stack, new_ids,
                         settings.health_timeout,
                         (lambda _: switcher.answers(plan)) if plan else None)
        if plan is None or sorted(plan.new.values()) != sorted(s.ip for s in new):
            plan = proxy.plan_switch(servers, [s.ip for s in new])
            switcher.assign(plan)
        timer.step("proxy: new slots up", switcher.wait_up, plan)
    except BaseException:
        _undo(stack, switcher, plan, new_ids, previous_live, policy, out)
        raise

    return Prepared(stack, timer, switcher, plan, serving, new, previous_live, release,
                    target, result, db, schema, started, time.monotonic())


def finish(p: Prepared, on_switch: Callable[[], None] | None = None) -> dict:
    """The switch (the point of no return), then drain and stop the old containers, and
    check the tables. Returns the deploy's summary."""
    from deploy.migrate.tables import check_tables, format_report

    stack, timer, switcher, plan = p.stack, p.timer, p.switcher, p.plan
    out, release, target = stack.out, p.release, p.target
    if time.monotonic() - p.ready_at > RECHECK_AFTER:
        timer.step("proxy: new slots still up", _still_up, p)
    old_releases = sorted({s.release or "?" for s in p.serving})
    serving, policy, db, result = p.serving, switcher.policy, p.database, p.migrated
    out(f"   {POINT_OF_NO_RETURN}: the point of no return: traffic moves from "
        f"{', '.join(old_releases) or 'nothing'} to {release}")
    p.undoable = False
    timer.step(POINT_OF_NO_RETURN, _flip, switcher, plan)
    if on_switch is not None:
        on_switch()
    timer.step("drain + stop old", _retire, stack, switcher, plan, serving, policy, out)
    report = None
    if p.schema:
        with db() as reachable:
            report = timer.step("check-tables --expected", check_tables,
                                reachable.database_url, reachable.migrations_dir, prefix=None,
                                schema="public", expected=True)
        lines, failure = format_report(report)
        if failure:
            for line in lines:
                out("   " + line)
            raise failure
    total = time.perf_counter() - p.started
    out(f"deploy: done in {total:.1f} s; each step:")
    for line in textwrap.wrap(", ".join(f"{n} {t:.1f} s" for n, t in timer.timings), 88):
        out(f"   {line}")
    out(f"deploy: release {release} serving ({target}); "
        f"was {', '.join(old_releases) or 'none'}")
    return {"applied": list(result.applied) if result else [],
            "tables": len(report.expected or []) if report else 0,
            "ai_tables": sorted(e["table"] for e in ((report.expected or []) if report else [])
                                if e["table"].startswith(AI_PREFIX)),
            "total": result.total_applied if result else 0, "release": release}


def _base_ready(stack: Stack, states: list[ContainerState]) -> bool:
    """The shortcut of a rollback, and of a host deploy whose compose file and .env are the
    current release's: postgres and the proxy running and healthy, each on the image the
    host has under its name (what `up` would change otherwise)."""
    states = [s for s in states if s.service in BASE_SERVICES and not s.one_off]
    if not ({s.service for s in states} == set(BASE_SERVICES)
            and all(s.status == "running" and health.is_ready(s) for s in states)):
        return False
    wanted = dict(zip((proxy.SERVICE, "postgres"), image_ids(
        stack, [proxy_image(stack.settings), postgres_image(stack.settings)]), strict=True))
    return all(s.image_id == wanted[s.service] for s in states)


def _build_and_base_up(stack: Stack, release: str) -> None:
    """The backend's build (output shown only when it fails) while Compose brings up
    postgres and the proxy: neither needs the other, and each is mostly waiting."""
    from concurrent.futures import ThreadPoolExecutor

    stack.compose  # noqa: B018 - detect the Compose flavour once, before two threads use it
    with ThreadPoolExecutor(max_workers=1) as pool:
        building = pool.submit(build_backend, stack, release, True)
        try:
            base_up(stack, True)
        finally:
            building.result()
    stack.out(f"   built {image(stack.settings, release)}")


def _still_up(p: Prepared) -> None:
    """A release prepared a while ago (its host waited for its turn): its new slots must
    still pass HAProxy's check; if not, it is taken back, and the old release serves on."""
    try:
        ok, missing = proxy.new_slots_up(p.switcher.servers(), p.plan)
        if not ok:
            raise DeployError("proxy: the new container(s) stopped passing HAProxy's check "
                              "while waiting for the switch: " + "; ".join(missing))
    except BaseException:
        p.undo()
        raise


def _flip(switcher: Proxy, plan: proxy.SwitchPlan) -> None:
    switcher.command(proxy.flip(plan.new, plan.old), "switch", save=True)


def _retire(stack: Stack, switcher: Proxy, plan: proxy.SwitchPlan,
            old: list[ContainerState], policy: proxy.DrainPolicy, out: Out) -> None:
    waited = switcher.drain(plan.old, out)  # saves the routing when it changes it
    if plan.old:
        out(f"   old slots drained in {waited:.1f} s: {', '.join(plan.old)}")
    remove_containers(stack, [s.id for s in old], policy.stop_seconds)
    if old:
        out(f"   stopped and removed: {', '.join(s.name for s in old)}")


def _undo(stack: Stack, switcher: Proxy, plan: proxy.SwitchPlan | None, new_ids: set[str],
          previous_live: str | None, policy: proxy.DrainPolicy, out: Out) -> None:
    """Before the switch: the old release keeps serving; take back what this deploy did."""
    out("   the old release keeps serving; removing what this deploy started")
    try:
        if plan is not None and plan.new:
            switcher.command(proxy.set_state(plan.new, "maint"), "clear new slots")
        if new_ids:
            stack.run(docker.remove(sorted(new_ids)), what="remove new", check=False)
        settings = stack.settings
        if previous_live:
            stack.run(docker.tag(previous_live, image(settings, LIVE)), check=False)
        else:
            stack.run(docker.remove_tag(image(settings, LIVE)), check=False)
    except DeployError as exc:
        out(f"   could not undo everything: {str(exc).splitlines()[0]}")
