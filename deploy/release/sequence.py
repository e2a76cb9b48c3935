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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

from deploy.commands import compose, docker
from deploy.commands import haproxy as proxy
from deploy.commands.docker import LIVE
from deploy.defaults import DATABASE_WAIT
from deploy.errors import ConfigError, DeployError
from deploy.machine.builds import build_release, image_id, service_image
from deploy.machine.containers import (
    base_ready,
    base_services,
    base_up,
    classify,
    of_service,
    remove_containers,
)
from deploy.machine.schema import verify_tables
from deploy.machine.stack import Stack, require_stack_settings
from deploy.migrate.runner import migrate
from deploy.output import Output
from deploy.release import revision
from deploy.release.deploy import Deploy, Step, host_serving_again, run_steps
from deploy.release.summary import print_summary, print_timings, summarize
from deploy.settings import Settings

__all__ = ["Deploy", "Step", "run_steps"]  # the deploy's state lives in release/deploy.py

POINT_OF_NO_RETURN = "switch"
# A release prepared longer ago than this is checked again (one API call) before the switch:
# a host of a rolling deploy waits for the hosts before it.
RECHECK_AFTER = 1.0


# --- before the switch -----------------------------------------------------------------


def check_docker(d: Deploy) -> None:
    d.out.step("docker", d.stack.check_docker)


def check_roles(d: Deploy) -> None:
    """This machine's compose file has the services the settings name, each app service
    can be built and run beside itself (before any change)."""
    d.stack.check_roles()


def _base_names(d: Deploy) -> str:
    return " + ".join(base_services(d.stack.settings)) or "base services"


def build_and_base_up(d: Deploy) -> None:
    d.out.step(f"build {d.target}, {_base_names(d)} up (at once)", _build_and_base_up,
               d.stack, d.release)


def _build_and_base_up(stack: Stack, release: str) -> None:
    """The images' build (output shown only when it fails) while Compose brings up the
    base services: neither needs the other, and each is mostly waiting."""
    stack.project  # noqa: B018 - read the project once, before two threads use it
    stack.compose  # noqa: B018
    with ThreadPoolExecutor(max_workers=1) as pool:
        building = pool.submit(build_release, stack, release, True)
        try:
            base_up(stack, True)
        finally:
            built = building.result()
    stack.out(f"   built {', '.join(built)}")


def base_up_built_before(d: Deploy) -> None:
    """--no-build: the images built before for this tree; without them, the live
    images' release again."""
    first = d.services[0] if d.services else None
    if first and image_id(d.stack.c, service_image(d.stack, first, d.release)) is None:
        live = d.stack.run(docker.image_release(service_image(d.stack, first, LIVE)),
                           check=False)
        if live.exited != 0 or not live.stdout.strip():
            raise ConfigError(f"--no-build: there is no image {d.target} (nor a live one); "
                              "deploy without --no-build to build it")
        d.release = live.stdout.strip()
        d.out(f"   --no-build: no image for this tree; deploying the live release "
              f"{d.release} again")
    d.out.step(f"{_base_names(d)} up", base_up, d.stack, False)


def base_up_shipped(d: Deploy) -> None:
    """A host: its images were shipped, so a missing one is an error, never a build."""
    d.out.step(f"{_base_names(d)} up", base_up, d.stack, False, False)


def base_up_unless_ready(d: Deploy) -> None:
    """A rollback, or a host deploy whose compose file and .env are the current release's:
    the base services are left alone when they run healthy on the right images."""
    d.states = d.stack.states()
    d.base_skipped = base_ready(d.stack, d.states)
    if d.base_skipped:
        d.out(f"   {_base_names(d)}: up and healthy; only the app and workers change")
    else:
        base_up_shipped(d)


def wait_base(d: Deploy) -> None:
    base = base_services(d.stack.settings)
    if not d.base_skipped and base:
        d.out.step(f"wait-healthy ({', '.join(base)})", d.stack.wait_healthy,
                   d.stack.settings.health_timeout, base)


def migrate_schema(d: Deploy) -> None:
    with d.database() as reachable:
        d.migrated = d.out.step("migrate (the old release keeps serving)", migrate, reachable,
                                wait=DATABASE_WAIT, out=d.out)


def clear_leftovers(d: Deploy) -> None:
    """Read what serves now; remove the containers of an unfinished deploy."""
    states = d.states if d.base_skipped else d.stack.states()  # unchanged since, if skipped
    leftovers = []
    if d.apps:
        d.proxy.remember(states)
        d.servers = d.proxy.servers()  # only this deploy changes them (it holds the lock)
    for service in d.services:
        d.serving[service], rest = classify(states, d.servers, service, service in d.apps)
        leftovers += rest
    if leftovers:
        d.out(f"   removing {len(leftovers)} container(s) of an unfinished deploy: "
              + ", ".join(s.name for s in leftovers))
        apps = [s.id for s in leftovers if s.service in d.apps]
        remove_containers(d.stack, apps, d.proxy.policy.stop_seconds)
        remove_containers(d.stack, [s.id for s in leftovers if s.id not in apps], None)


def tag_live(d: Deploy) -> None:
    refs = {service_image(d.stack, s, d.release): service_image(d.stack, s, LIVE)
            for s in d.services}
    for live in refs.values():
        d.previous_live[live] = image_id(d.stack.c, live)
    d.undoable = True
    d.out.step(f"tag {LIVE}", _tag_all, d.stack, refs)


def _tag_all(stack: Stack, refs: dict[str, str]) -> None:
    for target, live in refs.items():
        stack.run(docker.tag(target, live), what="tag")


def start_new(d: Deploy) -> None:
    """As many new containers of each app and worker service as run now (at least one),
    beside them; the proxy starts checking the new app containers at once."""
    before = {s.id for c in d.serving.values() for s in c}  # the leftovers are gone
    counts = {s: len(d.serving[s]) + max(1, len(d.serving[s])) for s in d.services}
    shown = ", ".join(f"{s} {n - len(d.serving[s])} beside {len(d.serving[s])}"
                      for s, n in counts.items())
    d.out.step(f"start new ({shown})", d.stack.run, compose.scale_up(d.stack.compose, counts),
               hide=False, what="start new")
    states = d.stack.states()
    for service in d.services:
        fresh = [s for s in of_service(states, service) if s.id not in before]
        if not fresh:
            raise DeployError(f"start new: Compose started no new {service} container")
        d.new_ids[service] = {s.id for s in fresh}
        d.new[service] = fresh
    if d.apps and all(s.ip for a in d.apps for s in d.new[a]):  # addressed: check them now
        d.plans = _plans(d)
        d.out.step("proxy: prepare (new slots checked, no traffic yet)", d.proxy.assign,
                   d.plans)


def _plans(d: Deploy) -> list[proxy.SwitchPlan]:
    ports = d.stack.settings.app_ports
    return [proxy.plan_switch(d.servers, [s.ip for s in d.new[a]], a, ports[a])
            for a in d.apps]


def wait_new(d: Deploy) -> None:
    """Docker's healthcheck or the proxy's, whichever passes first; then every new slot
    up. Workers: healthy, or running when they have no healthcheck."""
    timeout = d.stack.settings.health_timeout
    plans = d.plans
    for group, answers in ((d.apps, (lambda _: d.proxy.answers(plans)) if plans else None),
                           (d.stack.settings.worker_services, None)):
        ids = {i for s in group for i in d.new_ids[s]}
        if ids:
            what = "new" if group == d.apps else f"new {', '.join(group)}"
            ready = d.out.step(f"wait-healthy ({what})", d.stack.wait_healthy, timeout,
                               new=ids, answers=answers)
            for s in group:
                d.new[s] = [c for c in ready if c.service == s]
    if d.apps:
        wanted = {a: sorted(s.ip for s in d.new[a]) for a in d.apps}
        if [sorted(p.new.values()) for p in d.plans] != [wanted[a] for a in d.apps]:
            d.plans = _plans(d)
            d.proxy.assign(d.plans)
        d.out.step("proxy: new slots up", d.proxy.wait_up, d.plans)
    d.ready_at = time.monotonic()


def recheck(d: Deploy) -> None:
    """A release prepared a while ago (its host waited for its turn): its new slots must
    still pass HAProxy's check, or it is taken back and the old release serves on."""
    if d.plans and time.monotonic() - d.ready_at > RECHECK_AFTER:
        d.out.step("proxy: new slots still up", _still_up, d)


def _still_up(d: Deploy) -> None:
    missing = d.proxy.missing(d.plans, passed=False)
    if missing:
        raise DeployError("proxy: the new container(s) stopped passing HAProxy's check "
                          "while waiting for the switch: " + "; ".join(missing))


# --- the switch and after ------------------------------------------------------------------


def host_draining(d: Deploy) -> None:
    """A host of a rolling deploy: its load balancer's check answers 503 from now until
    its old containers are drained (the proxy itself keeps serving throughout)."""
    if d.apps:
        d.out.step("proxy: host draining (load balancer check 503)", d.proxy.set_serving,
                   False)
        d.host_draining = True


def host_serving(d: Deploy) -> None:
    if d.host_draining:
        d.out.step("proxy: host serving (load balancer check 200)", host_serving_again, d)


def switch(d: Deploy) -> None:
    """The point of no return: all new traffic to the new slots at once (every app
    service in one API call), the old ones drain. Nothing is undone once it is sent."""
    d.out(f"   {POINT_OF_NO_RETURN}: the point of no return: traffic moves from "
          f"{', '.join(d.old_releases) or 'nothing'} to {d.release}")
    d.undoable = False
    if d.plans:
        d.out.step(POINT_OF_NO_RETURN, d.proxy.command, proxy.flip(d.plans), "switch",
                   save=True)
    if d.on_switch is not None:
        d.on_switch()


def drain_old(d: Deploy) -> None:
    d.out.step("drain + stop old", _retire, d)


def _retire(d: Deploy) -> None:
    if d.plans:
        waited = d.proxy.drain(d.plans)  # saves the routing when it changes it
        old = [f"{p.backend}/{slot}" for p in d.plans for slot in p.old]
        if old:
            d.out(f"   old slots drained in {waited:.1f} s: {', '.join(old)}")
    apps = [s for a in d.apps for s in d.serving.get(a, [])]
    workers = [s for w in d.stack.settings.worker_services for s in d.serving.get(w, [])]
    remove_containers(d.stack, [s.id for s in apps], d.proxy.policy.stop_seconds)
    remove_containers(d.stack, [s.id for s in workers], None)  # their own signal and grace
    if apps or workers:
        d.out(f"   stopped and removed: {', '.join(s.name for s in apps + workers)}")


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
HOST_SWITCH: tuple[Step, ...] = (recheck, host_draining, switch, drain_old, host_serving,
                                 check_tables, report)
HOST_ROLLBACK: tuple[Step, ...] = (base_up_unless_ready, wait_base, *BESIDE_OLD, recheck,
                                   host_draining, switch, drain_old, host_serving, report)


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
