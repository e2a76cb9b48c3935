"""A deploy nobody notices: the new release starts beside the old, the proxy switches.

    beside the old:  docker → build → postgres + proxy up → migrate (the old release keeps
                     serving) → tag live → start new → proxy: prepare (new slots checked,
                     no traffic) → wait-healthy (new) → proxy: new slots up
    SWITCH           the point of no return
    after:           drain + stop old → check-tables --expected → the summary

Each step is a function of the one ``Deploy`` it advances; the step lists below are the
order, and each caller has a short entry point that runs its list: ``deploy_here`` (this
machine), ``prepare_on_host`` then ``switch_on_host`` (a host: deploy/fleet/rollout.py
prepares every host before any host switches), ``rollback_on_host``. Everything before the
switch can be undone: a failure or a signal there removes the new containers, moves
``live`` back and leaves the old release serving; once the switch command is sent, nothing
is undone and the old release only drains. Written against ``Stack``, so the same steps
run on this machine and on a host's fabric Connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from deploy.commands import compose, docker
from deploy.commands import haproxy as proxy
from deploy.commands.compose import ContainerState
from deploy.commands.docker import LIVE
from deploy.defaults import DATABASE_WAIT
from deploy.errors import ConfigError, DeployError
from deploy.machine.builds import build_release, image, image_id
from deploy.machine.containers import (
    BACKEND,
    backends,
    base_ready,
    base_services,
    base_up,
    classify,
    remove_containers,
)
from deploy.machine.proxy import Proxy, policy_for
from deploy.machine.schema import verify_tables
from deploy.machine.stack import Stack, require_stack_settings
from deploy.migrate.runner import migrate
from deploy.output import Output
from deploy.release import revision
from deploy.release.summary import print_summary, print_timings, summarize
from deploy.settings import Settings

POINT_OF_NO_RETURN = "switch"
# A release prepared longer ago than this is checked again (one API call) before the switch:
# a host of a rolling deploy waits for the hosts before it.
RECHECK_AFTER = 1.0


@dataclass
class Deploy:
    """One deploy of one stack, as its steps advance it. ``undo`` takes back what it
    started, at most once, and never once the switch command was sent."""

    stack: Stack
    release: str
    database: Callable[[], AbstractContextManager[Settings]]
    on_switch: Callable[[], None] | None = None
    proxy: Proxy = field(init=False)
    target: str = field(init=False)  # BACKEND_IMAGE:<release>
    started: float = field(default_factory=time.perf_counter)
    first_timing: int = 0  # out.timings before this deploy's steps
    states: list[ContainerState] | None = None  # read by a step that may skip the base
    base_skipped: bool = False
    servers: list[proxy.Server] = field(default_factory=list)
    serving: list[ContainerState] = field(default_factory=list)
    previous_live: str | None = None
    new_ids: set[str] = field(default_factory=set)
    new: list[ContainerState] = field(default_factory=list)
    plan: proxy.SwitchPlan | None = None
    migrated: object = None  # the runner's result; None without a migrate step
    tables: object = None  # the check-tables report; None without that step
    ready_at: float = 0.0
    undoable: bool = False  # from `tag live` until the switch is sent (or it was undone)
    summary: dict | None = None

    def __post_init__(self) -> None:
        self.proxy = Proxy(self.stack, policy_for(self.stack.settings))
        self.target = image(self.stack.settings, self.release)
        self.first_timing = len(self.out.timings)

    @property
    def out(self) -> Output:
        return self.stack.out

    @property
    def old_releases(self) -> list[str]:
        return sorted({s.release or "?" for s in self.serving})

    def undo(self) -> None:
        """Before the switch: the old release keeps serving; take back what was started."""
        if not self.undoable:
            return
        self.undoable = False
        self.out("   the old release keeps serving; removing what this deploy started")
        try:
            if self.plan is not None and self.plan.new:
                self.proxy.command(proxy.set_state(self.plan.new, "maint"), "clear new slots")
            if self.new_ids:
                self.stack.run(docker.remove(sorted(self.new_ids)), what="remove new",
                               check=False)
            live = image(self.stack.settings, LIVE)
            if self.previous_live:
                self.stack.run(docker.tag(self.previous_live, live), check=False)
            else:
                self.stack.run(docker.untag(live), check=False)
        except DeployError as exc:
            self.out(f"   could not undo everything: {str(exc).splitlines()[0]}")


Step = Callable[[Deploy], None]


def run_steps(d: Deploy, steps: Sequence[Step]) -> Deploy:
    """The steps in order; a failure or a signal in any of them undoes the deploy (which
    does nothing once the switch was sent) and goes on."""
    try:
        for step in steps:
            step(d)
    except BaseException:
        d.undo()
        raise
    return d


# --- before the switch -----------------------------------------------------------------


def check_docker(d: Deploy) -> None:
    d.out.step("docker", d.stack.check_docker)


def check_roles(d: Deploy) -> None:
    """This machine's compose file has the services the settings name, and the switch can
    serve them (before any change)."""
    d.stack.check_roles()
    switchable(d.stack.settings)


def switchable(settings: Settings) -> None:
    """The switch routes one app service, `backend` on 8080 checked at /health, through
    the proxy service of the compose file; other roles are refused before anything is
    built or migrated, rather than failing after the migrations."""
    s = settings
    if s.app_services != (BACKEND,):
        raise ConfigError(f"APP_SERVICES: a deploy switches the service {BACKEND!r} only "
                          f"(got {', '.join(s.app_services) or 'none'})")
    if s.app_ports[BACKEND] != proxy.BACKEND_PORT or s.health_paths[BACKEND] != "/health":
        raise ConfigError(f"APP_PORT, HEALTH_PATH: a deploy's proxy checks {BACKEND} at "
                          f"{proxy.BACKEND_PORT} /health only")
    if s.worker_services:
        raise ConfigError("WORKER_SERVICES: a deploy does not replace workers yet; leave it "
                          "empty")


def build_and_base_up(d: Deploy) -> None:
    d.out.step(f"build {d.target}, postgres + proxy up (at once)", _build_and_base_up,
               d.stack, d.release)


def _build_and_base_up(stack: Stack, release: str) -> None:
    """The backend's build (output shown only when it fails) while Compose brings up
    postgres and the proxy: neither needs the other, and each is mostly waiting."""
    stack.compose  # noqa: B018 - detect the Compose flavour once, before two threads use it
    with ThreadPoolExecutor(max_workers=1) as pool:
        building = pool.submit(build_release, stack, release, True)
        try:
            base_up(stack, True)
        finally:
            building.result()
    stack.out(f"   built {image(stack.settings, release)}")


def base_up_built_before(d: Deploy) -> None:
    """--no-build: the image built before for this tree; without one, the live image's
    release again."""
    if image_id(d.stack.c, d.target) is None:
        live = d.stack.run(docker.image_release(image(d.stack.settings, LIVE)), check=False)
        if live.exited != 0 or not live.stdout.strip():
            raise ConfigError(f"--no-build: there is no image {d.target} (nor a live one); "
                              "deploy without --no-build to build it")
        d.release = live.stdout.strip()
        d.target = image(d.stack.settings, d.release)
        d.out(f"   --no-build: no image for this tree; deploying the live release "
              f"{d.release} again")
    d.out.step("postgres + proxy up", base_up, d.stack, False)


def base_up_shipped(d: Deploy) -> None:
    """A host: its images were shipped, so a missing one is an error, never a build."""
    d.out.step("postgres + proxy up", base_up, d.stack, False, False)


def base_up_unless_ready(d: Deploy) -> None:
    """A rollback, or a host deploy whose compose file and .env are the current release's:
    postgres and the proxy are left alone when they run healthy on the right images."""
    d.states = d.stack.states()
    d.base_skipped = base_ready(d.stack, d.states)
    if d.base_skipped:
        d.out("   postgres and the proxy are up and healthy: only the backend changes")
    else:
        base_up_shipped(d)


def wait_base(d: Deploy) -> None:
    if not d.base_skipped:
        base = base_services(d.stack.settings)
        d.out.step(f"wait-healthy ({', '.join(base)})", d.stack.wait_healthy,
                   d.stack.settings.health_timeout, base)


def migrate_schema(d: Deploy) -> None:
    with d.database() as reachable:
        d.migrated = d.out.step("migrate (the old release keeps serving)", migrate, reachable,
                                wait=DATABASE_WAIT, out=d.out)


def clear_leftovers(d: Deploy) -> None:
    """Read what serves now; remove the backend containers of an unfinished deploy."""
    states = d.states if d.base_skipped else d.stack.states()  # unchanged since, if skipped
    d.proxy.remember(states)
    d.servers = d.proxy.servers()  # only this deploy changes them (it holds the deploy lock)
    d.serving, leftovers = classify(states, d.servers)
    if leftovers:
        d.out(f"   removing {len(leftovers)} backend container(s) of an unfinished deploy: "
              + ", ".join(s.name for s in leftovers))
        remove_containers(d.stack, [s.id for s in leftovers], d.proxy.policy.stop_seconds)


def tag_live(d: Deploy) -> None:
    live = image(d.stack.settings, LIVE)
    d.previous_live = image_id(d.stack.c, live)
    d.undoable = True
    d.out.step(f"tag {LIVE}", d.stack.run, docker.tag(d.target, live), what="tag")


def start_new(d: Deploy) -> None:
    """As many new backend containers as serve now (at least one), beside them; the proxy
    starts checking them at once when they have their addresses."""
    before = {s.id for s in d.serving}  # the leftovers are gone: only these remain
    count = max(1, len(d.serving))
    d.out.step(f"start new ({count} beside {len(d.serving)} old)", d.stack.run,
               compose.scale_up(d.stack.compose, BACKEND, len(d.serving) + count),
               hide=False, what="start new")
    fresh = [s for s in backends(d.stack.states()) if s.id not in before]
    d.new_ids = {s.id for s in fresh}
    if not d.new_ids:
        raise DeployError("start new: Compose started no new backend container")
    if all(s.ip for s in fresh):  # running, addressed: the proxy checks them already
        d.plan = proxy.plan_switch(d.servers, [s.ip for s in fresh])
        d.out.step("proxy: prepare (new slots checked, no traffic yet)", d.proxy.assign,
                   d.plan)


def wait_new(d: Deploy) -> None:
    """Docker's healthcheck or the proxy's, whichever passes first; then every new slot up."""
    plan = d.plan
    d.new = d.out.step("wait-healthy (new)", d.stack.wait_healthy,
                       d.stack.settings.health_timeout, new=d.new_ids,
                       answers=(lambda _: d.proxy.answers(plan)) if plan else None)
    if plan is None or sorted(plan.new.values()) != sorted(s.ip for s in d.new):
        d.plan = proxy.plan_switch(d.servers, [s.ip for s in d.new])
        d.proxy.assign(d.plan)
    d.out.step("proxy: new slots up", d.proxy.wait_up, d.plan)
    d.ready_at = time.monotonic()


def recheck(d: Deploy) -> None:
    """A release prepared a while ago (its host waited for its turn): its new slots must
    still pass HAProxy's check, or it is taken back and the old release serves on."""
    if time.monotonic() - d.ready_at > RECHECK_AFTER:
        d.out.step("proxy: new slots still up", _still_up, d)


def _still_up(d: Deploy) -> None:
    ok, missing = proxy.new_slots_up(d.proxy.servers(), d.plan)
    if not ok:
        raise DeployError("proxy: the new container(s) stopped passing HAProxy's check "
                          "while waiting for the switch: " + "; ".join(missing))


# --- the switch and after ------------------------------------------------------------------


def switch(d: Deploy) -> None:
    """The point of no return: all new traffic to the new slots at once, the old ones
    drain. Nothing is undone from the moment the command is sent."""
    d.out(f"   {POINT_OF_NO_RETURN}: the point of no return: traffic moves from "
          f"{', '.join(d.old_releases) or 'nothing'} to {d.release}")
    d.undoable = False
    d.out.step(POINT_OF_NO_RETURN, d.proxy.command, proxy.flip(d.plan.new, d.plan.old),
               "switch", save=True)
    if d.on_switch is not None:
        d.on_switch()


def drain_old(d: Deploy) -> None:
    d.out.step("drain + stop old", _retire, d)


def _retire(d: Deploy) -> None:
    waited = d.proxy.drain(d.plan.old)  # saves the routing when it changes it
    if d.plan.old:
        d.out(f"   old slots drained in {waited:.1f} s: {', '.join(d.plan.old)}")
    remove_containers(d.stack, [s.id for s in d.serving], d.proxy.policy.stop_seconds)
    if d.serving:
        d.out(f"   stopped and removed: {', '.join(s.name for s in d.serving)}")


def check_tables(d: Deploy) -> None:
    with d.database() as reachable:
        d.tables = verify_tables(reachable, d.out)


def report(d: Deploy) -> None:
    print_timings(d.out, time.perf_counter() - d.started, d.out.timings[d.first_timing:])
    d.out(f"deploy: release {d.release} serving ({d.target}); "
          f"was {', '.join(d.old_releases) or 'none'}")
    d.summary = summarize(d.migrated, d.tables, d.release,
                          d.stack.settings.summary_table_prefix)


# --- the order, and an entry point per caller ----------------------------------------------

BESIDE_OLD: tuple[Step, ...] = (clear_leftovers, tag_live, start_new, wait_new)
AFTER_SWITCH: tuple[Step, ...] = (drain_old, check_tables, report)
LOCAL_BUILD: tuple[Step, ...] = (check_docker, check_roles, build_and_base_up, wait_base,
                                 migrate_schema, *BESIDE_OLD, recheck, switch, *AFTER_SWITCH)
LOCAL_NO_BUILD: tuple[Step, ...] = (check_docker, check_roles, base_up_built_before, wait_base,
                                    migrate_schema, *BESIDE_OLD, recheck, switch,
                                    *AFTER_SWITCH)
HOST_PREPARE: tuple[Step, ...] = (base_up_shipped, wait_base, migrate_schema, *BESIDE_OLD)
HOST_PREPARE_SAME_BASE: tuple[Step, ...] = (base_up_unless_ready, *HOST_PREPARE[1:])
HOST_SWITCH: tuple[Step, ...] = (recheck, switch, *AFTER_SWITCH)
HOST_ROLLBACK: tuple[Step, ...] = (base_up_unless_ready, wait_base, *BESIDE_OLD, recheck,
                                   switch, drain_old, report)


def deploy_here(c, settings: Settings, *, build: bool = True, out: Output | None = None
                ) -> dict:
    """`invoke deploy` on this machine: build (or take the image built before), migrate,
    the new release beside the old, the switch; then the summary."""
    require_stack_settings(settings)
    d = Deploy(Stack(c, settings, out), revision.revision().tag,
               database=lambda: nullcontext(settings))
    run_steps(d, LOCAL_BUILD if build else LOCAL_NO_BUILD)
    print_summary(d.summary, d.out)
    return d.summary


def prepare_on_host(c, settings: Settings, release: str, *, database, base_unchanged: bool,
                    out: Output, migrate: bool = True) -> Deploy:
    """A host up to the point of no return, nothing built there (its images were shipped
    and verified): migrate through ``database()`` (a tunnel), the new containers healthy
    beside the old ones, their proxy slots checked, taking no traffic. ``base_unchanged``:
    the release's compose file and .env are the current one's. ``migrate=False``: the
    host's database is shared and was migrated once for every host (deploy/fleet)."""
    steps = HOST_PREPARE_SAME_BASE if base_unchanged else HOST_PREPARE
    if not migrate:
        steps = tuple(step for step in steps if step is not migrate_schema)
    return run_steps(Deploy(Stack(c, settings, out), release, database), steps)


def switch_on_host(d: Deploy, on_switch: Callable[[], None]) -> dict:
    """A prepared host: the switch (``on_switch`` right after it: the host's `current`),
    drain, check the tables. Returns the summary."""
    d.on_switch = on_switch
    return run_steps(d, HOST_SWITCH).summary


def rollback_on_host(c, settings: Settings, release: str, *, on_switch: Callable[[], None],
                     out: Output) -> dict:
    """Back to a release whose image is on the host: the same switch as a deploy, without
    migrating or checking tables (migrations stay applied)."""
    d = Deploy(Stack(c, settings, out), release, lambda: nullcontext(settings), on_switch)
    return run_steps(d, HOST_ROLLBACK).summary
