"""Deploying to 1, 2 and 4 hosts: building on each host (today's path until this change)
against building once here and shipping the image (`invoke deploy --hosts`), in one run.

    python bench/bench_fleet.py [--hosts 1,2,4]        # as root (network-namespace hosts)

One Markdown report on stdout (progress on stderr). For each host count N, a fresh rig of N
hosts (tests/support/netns.py: own network namespace, sshd and Docker engine, no registry
access), with the stack's base images (PYTHON_IMAGE, POSTGRES_IMAGE, PROXY_IMAGE) loaded
into every host beforehand, untimed: the build-on-host path cannot work without them.
On it, both paths, in an order that alternates with N, each with its own Compose project,
from a throwaway git copy of this project (tests/support/release_tree.py):

- **build on each host** (reproduced here from the pieces: the code before this change):
  per host in turn, lock, upload the build context (deploy/, migrations/, .dockerignore,
  the release .env), then the zero-downtime sequence with `docker build` of the backend
  and the proxy on the host; rollback = the same switch back, Compose bringing postgres
  and the proxy up first, as it did;
- **build once, ship** (deploy/fleet/rollout.py, as `invoke deploy --hosts` runs it, in this
  process): build here, the project's registry here, push; then every host staged and
  prepared at once (lock, upload the release directory, ship the images through an SSH
  tunnel, checked by image ID; migrate, the new containers started beside the old ones,
  healthy, their proxy slots checked, no traffic), then each host's switch in turn,
  nothing built on any host; rollback = releases.rollback_host.

Three operations per path, each timed as wall time for all N hosts (rolling): the first
deploy (cold builds on both paths: `--no-cache` here, fresh engines there), a code-only
change (one comment appended to deploy/stack/backend/app.py, committed; warm builds), then
a rollback of every host, one after the other. Bytes sent to each host are counted on its
veth (every packet to the host crosses it). For the shipping path, the bytes on the veth
while the images were shipped, what went through the tunnel, and the compressed size of
the layers that changed (the registry's manifests) are reported too.

Targets: a code-only change ships ≤ 1.2× the changed layers (veth bytes during
the image transfer, worst host); N hosts rolling ≤ one build + N × (transfer + switch),
with "one build" everything done once before the first host (build, registry, push),
"transfer" the upload and the image shipping of one host and "switch" the rest of one
host's deploy (releases.prepare_host + releases.switch_host), all three taken from the
smallest N of the same run;
rollback ≤ 5 s per host (worst host).

Everything (rigs, registry containers and volumes, images built here, the work tree) is
removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import invoke  # noqa: E402

from deploy import shell  # noqa: E402
from deploy.commands import docker  # noqa: E402
from deploy.defaults import DEPLOY_LOCK_WAIT  # noqa: E402
from deploy.fleet import (  # noqa: E402
    hostlock,
    registry,  # noqa: E402
    releases,  # noqa: E402
    shipping,  # noqa: E402
    trust,
)
from deploy.fleet import hosts as remote  # noqa: E402
from deploy.fleet import rollout as fleet  # noqa: E402
from deploy.machine import builds  # noqa: E402
from deploy.machine.stack import Stack  # noqa: E402
from deploy.output import Output  # noqa: E402
from deploy.release import sequence  # noqa: E402
from deploy.release.revision import revision  # noqa: E402
from deploy.settings import load_settings  # noqa: E402
from tests.support import netns  # noqa: E402
from tests.support.release_tree import ReleaseTree  # noqa: E402
from tests.support.shipping_rig import local_images, run  # noqa: E402

CODE_TARGET = 1.2
ROLLBACK_TARGET = 5.0
DONE = re.compile(r"^<== (.+) done in ([\d.]+) s$")
LOAD: list[str] = []  # the load average when the benchmark started


def log(message: str) -> None:
    print(f"[bench_fleet {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class HostRun:
    seconds: float = 0.0  # the host's whole deploy (connect to done)
    wire: int = 0  # bytes sent to the host on its veth, whole deploy
    sessions: int = 0  # SSH sessions the host's sshd started (commands, SFTP, the lock)
    upload: float = 0.0
    ship: float = 0.0  # shipping: the image transfer
    ship_wire: int = 0  # shipping: veth bytes while the images were shipped
    tunnel: int = 0  # shipping: bytes through the tunnel to the host
    build: float = 0.0  # build on host: the build step (with postgres + proxy up)
    prepare_seconds: float = 0.0  # shipping: releases.prepare_host (every host at once)
    switch_seconds: float = 0.0  # shipping: prepare_host + switch_host (the host's turn)
    steps: dict[str, float] = field(default_factory=dict)  # shipping: the deploy's steps

    @property
    def transfer(self) -> float:
        return self.upload + self.ship

    @property
    def switch(self) -> float:
        return self.seconds - self.transfer


@dataclass
class Run:
    wall: float = 0.0
    before_hosts: float = 0.0  # shipping: build, registry, push (once)
    stage_wall: float = 0.0  # shipping: every host staged and prepared, until the first switch
    hosts: list[HostRun] = field(default_factory=list)

    @property
    def worst_wire(self) -> int:
        return max(h.wire for h in self.hosts)


@dataclass
class PathResult:
    first: Run
    code: Run
    rollback: list[float]
    changed: int = 0  # shipping: compressed bytes of the changed layers
    total: int = 0  # shipping: compressed bytes of the backend image


def sessions(rig, host) -> int:
    """Sessions the host's sshd has started so far (its log, LogLevel VERBOSE)."""
    log = rig.host(host).sshd.log
    return log.read_text(errors="replace").count("Starting session: ") if log.exists() else 0


def steps(lines: list[str]) -> dict[str, float]:
    found = {}
    for line in lines:
        m = DONE.match(line.strip())
        if m:
            found[m.group(1)] = float(m.group(2))
    return found


def settings_for(rig, project: str, env: dict[str, str], tree: Path):
    return load_settings(environ={
        **env, "COMPOSE_PROJECT_NAME": project, "POSTGRES_PASSWORD": secrets.token_hex(12),
        "SSH_KEY_FILE": str(rig.key_file), "SSH_KNOWN_HOSTS": str(rig.known_hosts),
        "DEPLOY_USER": rig.user, "HEALTH_TIMEOUT": "120"}, read_file=False, cwd=tree)


def connection(rig, host, settings):
    c = trust.connection(remote.parse_hosts(rig.spec(host))[0], settings)
    trust.open_connection(c, settings)
    return c


# --- build on each host: the code before this change, from its pieces ----------------------


def build_context_bundle(settings, tree: Path) -> bytes:
    """What a release held when hosts built: deploy/ (package, stack, Dockerfiles),
    migrations/ and .dockerignore."""
    def skip(info: tarfile.TarInfo):
        if PurePosixPath(info.name).parts[:2] == ("deploy", "hosts"):
            return None
        return releases.tar_member(info)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        tar.add(tree / "deploy", arcname="deploy", filter=skip)
        tar.add(settings.migrations_dir, arcname="migrations", filter=skip)
        tar.add(tree / ".dockerignore", arcname=".dockerignore", filter=skip)
    return buf.getvalue()


def upload_build_context(c, settings, release: str, tree: Path) -> None:
    target = PurePosixPath(settings.deploy_path) / "releases" / release
    sftp = c.sftp()
    sftp.mkdir(str(target), mode=0o755)
    with sftp.open(str(target / "bundle.tar.gz"), "wb") as fh:
        fh.write(build_context_bundle(settings, tree))
    env_path = str(target / ".env")
    with sftp.open(env_path, "w") as fh:
        sftp.chmod(env_path, 0o600)
        fh.write(releases.render_env(settings))
    shell.run(c, ["sh", "-c", releases._UNPACK, "sh", str(target)], what="upload")


def deploy_building_on_hosts(rig, settings, tag: str, tree: Path) -> Run:
    result = Run()
    started = time.monotonic()
    for h in rig.hosts:
        host = HostRun()
        sent, opened = rig.traffic(h)[0], sessions(rig, h)
        mark = time.monotonic()
        lines: list[str] = []
        c = connection(rig, h, settings)
        try:
            release = releases.release_name(tag=tag)
            with hostlock.host_lock(c, settings, wait=DEPLOY_LOCK_WAIT, release=release,
                                    out=lines.append):
                up = time.monotonic()
                upload_build_context(c, settings, release, tree)
                host.upload = time.monotonic() - up
                # The local deploy's steps, building on the host from the uploaded context.
                sequence.run_steps(sequence.Deploy(
                    Stack(c, remote.release_paths(settings, release), lines.append), tag,
                    database=lambda c=c: releases._database(c, settings),
                    on_switch=lambda c=c, r=release: releases.switch_current(c, settings, r)),
                    sequence.LOCAL_BUILD)
        finally:
            c.close()
        host.seconds = time.monotonic() - mark
        host.wire = rig.traffic(h)[0] - sent
        host.sessions = sessions(rig, h) - opened
        host.build = next(t for name, t in steps(lines).items() if name.startswith("build "))
        result.hosts.append(host)
    result.wall = time.monotonic() - started
    return result


# The rollback before images were shipped: the local deploy's steps without the schema's.
ROLLBACK_BUILDING_ON_HOSTS = (
    sequence.check_docker, sequence.base_up_built_before, sequence.wait_base,
    *sequence.BESIDE_OLD, sequence.recheck, sequence.switch, sequence.drain_old,
    sequence.report)


def rollback_building_on_hosts(rig, settings) -> list[float]:
    """The rollback before this change: the same switch back, Compose bringing postgres and
    the proxy up first (the previous image is on the host, so nothing is built)."""
    times = []
    for h in rig.hosts:
        mark = time.monotonic()
        c = connection(rig, h, settings)
        try:
            with hostlock.host_lock(c, settings, wait=DEPLOY_LOCK_WAIT, release="rollback",
                                    out=lambda _: None):
                state = releases.list_releases(c, settings)
                target = state.previous
                sequence.run_steps(sequence.Deploy(
                    Stack(c, remote.release_paths(settings, target), lambda _: None),
                    releases.image_tag(target), database=contextlib.nullcontext,
                    on_switch=lambda c=c, t=target: releases.switch_current(c, settings, t)),
                    ROLLBACK_BUILDING_ON_HOSTS)
        finally:
            c.close()
        times.append(time.monotonic() - mark)
    return times


# --- build once here, ship ----------------------------------------------------------------


class ShipMeter:
    """Wraps shipping.ship (which releases.staged calls) to read the veth around it."""

    def __init__(self, rig):
        self.rig = rig
        self.real = shipping.ship
        self.seen: dict[str, tuple[int, int]] = {}

    def __call__(self, c, reg, published, *, out=print):
        host = self.rig.host(c.host)
        before = self.rig.traffic(host)[0]
        report = self.real(c, reg, published, out=out)
        self.seen[c.host] = (self.rig.traffic(host)[0] - before, report.sent)
        return report


class SwitchMeter:
    """Wraps releases.staged, releases.prepare_host and releases.switch_host (what
    fleet.stage_then_switch calls) to time each host's staging, its switch (prepare, done
    while every host is staged, plus the switch itself, done in turn), and the SSH
    sessions and bytes around them."""

    def __init__(self, rig):
        self.rig = rig
        self.real = releases.staged, releases.prepare_host, releases.switch_host
        self.hosts: dict[str, HostRun] = {}
        self.marks: dict[str, tuple[float, int, int]] = {}
        self.first_switch: float | None = None

    def staged(self, c, settings, rollout, **kwargs):
        h = self.rig.host(c.host)
        self.marks[c.host] = (time.monotonic(), self.rig.traffic(h)[0], sessions(self.rig, h))
        return self.real[0](c, settings, rollout, **kwargs)

    def prepare_host(self, state, **kwargs):
        mark = time.monotonic()
        try:
            return self.real[1](state, **kwargs)
        finally:
            host = self.hosts.setdefault(state.c.host, HostRun())
            host.prepare_seconds = time.monotonic() - mark

    def switch_host(self, state, **kwargs):
        mark = time.monotonic()
        self.first_switch = self.first_switch or mark
        try:
            return self.real[2](state, **kwargs)
        finally:
            h = self.rig.host(state.c.host)
            staged_at, sent, opened = self.marks[state.c.host]
            host = self.hosts.setdefault(state.c.host, HostRun())
            host.switch_seconds = host.prepare_seconds + time.monotonic() - mark
            host.wire = self.rig.traffic(h)[0] - sent
            host.sessions = sessions(self.rig, h) - opened

    def __enter__(self):
        releases.staged, releases.prepare_host, releases.switch_host = (
            self.staged, self.prepare_host, self.switch_host)
        return self

    def __exit__(self, *exc):
        releases.staged, releases.prepare_host, releases.switch_host = self.real


def deploy_shipping(rig, settings, tree: Path, cold: bool) -> Run:
    """`invoke deploy --hosts` (deploy/tasks/hosts.py) as it runs: the Rollout here, then
    fleet.stage_then_switch (every host staged and prepared at once, then the switches,
    rolling)."""
    result = Run()
    local = invoke.Context()
    quiet = lambda _: None  # noqa: E731
    meter = ShipMeter(rig)
    shipping.ship = meter
    lines: dict[str, list[str]] = {h.address: [] for h in rig.hosts}

    def by_host(line: str) -> None:  # "[host] text" -> lines[host]
        name, _, text = line.removeprefix("[").partition("] ")
        lines[name].append(text)

    targets = remote.parse_hosts(",".join(rig.spec(h) for h in rig.hosts))
    try:
        started = time.monotonic()
        rev = revision(tree)
        if cold:  # the first deploy's build, as cold as the hosts' first builds
            stack = Stack(local, settings, quiet)
            builds.build_release(stack, rev.tag, True, no_cache=True)
            builds.build_proxy(stack)
        with fleet.Rollout(local, settings, build=not cold, rev=rev, out=quiet) as rollout, \
                SwitchMeter(rig) as switches:
            rollout.prepare([settings])
            rollout.images_for(settings)
            result.before_hosts = time.monotonic() - started
            staging = time.monotonic()
            with contextlib.redirect_stdout(sys.stderr):  # Compose's and the plan's lines
                fleet.stage_then_switch(
                    targets, {t.name: settings for t in targets}, rollout,
                    out=Output(by_host))
            result.wall = time.monotonic() - started
        result.stage_wall = switches.first_switch - staging
        for h in rig.hosts:
            host = switches.hosts[h.address]
            done = steps(lines[h.address])
            host.steps = {re.sub(r"^upload \S+", "upload <release>", n): t
                          for n, t in done.items()}
            host.upload = next(t for n, t in done.items() if n.startswith("upload "))
            host.ship = done["ship images"]
            host.ship_wire, host.tunnel = meter.seen[h.address]
            host.seconds = host.transfer + host.switch_seconds
            result.hosts.append(host)
    finally:
        shipping.ship = meter.real
    return result


def rollback_shipping(rig, settings) -> list[float]:
    times = []
    for h in rig.hosts:
        mark = time.monotonic()
        c = trust.connection(remote.parse_hosts(rig.spec(h))[0], settings)
        try:
            releases.rollback_host(c, settings, out=lambda _: None)
        finally:
            c.close()
        times.append(time.monotonic() - mark)
    return times


def changed_layers(settings, old_tag: str, new_tag: str) -> tuple[int, int]:
    """(compressed bytes of the layers new_tag has and old_tag lacks, of all its layers)."""
    with registry.open_registry(invoke.Context(), settings, out=lambda _: None) as reg:
        old, new = (registry.manifest(reg.address, docker.parse_ref(
            f"{settings.backend_image}:{tag}").in_registry(reg.address))
            for tag in (old_tag, new_tag))
    known = {layer["digest"] for layer in old["layers"]}
    return (sum(layer["size"] for layer in new["layers"] if layer["digest"] not in known),
            sum(layer["size"] for layer in new["layers"]))


# --- the run ------------------------------------------------------------------------------


def preload(rig, tarball: Path) -> None:
    def load(h):
        with open(tarball, "rb") as fh:
            done = subprocess.run(rig.docker_argv(h, "load", "--quiet"), stdin=fh,
                                  capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"{h.name}: docker load failed: {done.stderr}")

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(load, rig.hosts))


def clear_stacks(rig, project: str) -> None:
    """The path's stack off every host, so the other path does not share the CPU with it."""
    for h in rig.hosts:
        ids = run(rig.docker_argv(h, "ps", "-aq", "--filter",
                                  f"label=com.docker.compose.project={project}")).stdout.split()
        if ids:
            run(rig.docker_argv(h, "rm", "-f", "-v", *ids))


def measure(path: str, rig, env: dict[str, str], tree: ReleaseTree, projects: list[str]
            ) -> PathResult:
    project = f"bf{path}{uuid.uuid4().hex[:6]}"
    projects.append(project)
    settings = settings_for(rig, project, env, tree.path)
    first_tag = tree.change()
    if path == "host":
        first = deploy_building_on_hosts(rig, settings, first_tag, tree.path)
    else:
        first = deploy_shipping(rig, settings, tree.path, cold=True)
    log(f"  {path}: first deploy {first.wall:.1f} s")
    code_tag = tree.change()
    if path == "host":
        code = deploy_building_on_hosts(rig, settings, code_tag, tree.path)
        back = rollback_building_on_hosts(rig, settings)
        result = PathResult(first, code, back)
    else:
        code = deploy_shipping(rig, settings, tree.path, cold=False)
        back = rollback_shipping(rig, settings)
        result = PathResult(first, code, back, *changed_layers(settings, first_tag, code_tag))
    log(f"  {path}: code-only {code.wall:.1f} s, rollback {max(back):.1f} s (worst host)")
    clear_stacks(rig, project)
    return result


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def span(values) -> str:
    """`12` or `12–14`: the range of a per-host count."""
    low, high = min(values := list(values)), max(values)
    return str(low) if low == high else f"{low}–{high}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(rows: list[tuple[int, dict[str, PathResult]]], env: dict[str, str],
           started: float, sizes: dict[str, int]) -> None:
    print("# Deploying to hosts: build on each host vs build once here and ship\n")
    print(f"Hosts: network namespaces with their own dockerd and sshd, no registry access, "
          f"`{env['PYTHON_IMAGE']}` ({mb(sizes['PYTHON_IMAGE'])}), `{env['POSTGRES_IMAGE']}` "
          f"and `{env['PROXY_IMAGE']}` loaded beforehand (untimed). Registry: "
          f"`{env['REGISTRY_IMAGE']}`. Build on each host: each host in turn. Build once, "
          "ship (`invoke deploy --hosts`): every host staged and prepared at once (lock, "
          "upload, ship; migrate, the new containers healthy beside the old ones, no "
          "traffic), then the switches, one host at a time. Bytes = what the host's veth "
          "carried to it during the deploy (whole deploy, worst host).\n")
    print("| hosts | path | first deploy | bytes per host | code-only change | bytes per host "
          "| rollback per host (worst) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n, by_path in rows:
        for path, label in (("host", "build on each host"), ("ship", "build once, ship")):
            r = by_path[path]
            print(f"| {n} | {label} | {r.first.wall:.1f} s | {mb(r.first.worst_wire)} | "
                  f"{r.code.wall:.1f} s | {mb(r.code.worst_wire)} | {max(r.rollback):.1f} s |")
        h, s = by_path["host"], by_path["ship"]
        print(f"| {n} | ship ÷ host | {s.first.wall / h.first.wall:.2f}× | "
              f"{s.first.worst_wire / h.first.worst_wire:.0f}× | "
              f"{s.code.wall / h.code.wall:.2f}× | {s.code.worst_wire / h.code.worst_wire:.2f}× "
              f"| {max(s.rollback) / max(h.rollback):.2f}× |")

    base_n, base = rows[0][0], rows[0][1]["ship"]
    print("\nBuild once, ship, in detail (per host: averages; \"before hosts\" = build, "
          "registry start and push, once per deploy):\n")
    print("| hosts | deploy | before hosts | staging + prepare, all hosts at once | "
          "transfer per host (upload + ship) | switch per host (prepare + switch) | "
          "SSH sessions per host | images through the tunnel | veth while shipping (worst) | "
          "changed layers | ratio |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, by_path in rows:
        r = by_path["ship"]
        for kind, run_ in (("first", r.first), ("code-only", r.code)):
            k = len(run_.hosts)
            transfer = sum(h.transfer for h in run_.hosts) / k
            switch = sum(h.switch for h in run_.hosts) / k
            tunnel = max(h.tunnel for h in run_.hosts)
            ship_wire = max(h.ship_wire for h in run_.hosts)
            cells = (f"{mb(r.changed)} | {ship_wire / r.changed:.3f}×" if kind == "code-only"
                     else f"all ({mb(r.total)} backend) | —")
            print(f"| {n} | {kind} | {run_.before_hosts:.1f} s | {run_.stage_wall:.1f} s | "
                  f"{transfer:.1f} s | "
                  f"{switch:.1f} s | {span(h.sessions for h in run_.hosts)} | "
                  f"{mb(tunnel)} | {mb(ship_wire)} | {cells} |")
    print("\nBuild once, ship: each host's steps, code-only change (averages over the hosts, "
          "seconds):\n")
    names: list[str] = []
    for _, by_path in rows:
        for h in by_path["ship"].code.hosts:
            names += [n for n in h.steps if n not in names]
    print("| step | " + " | ".join(f"{n} host(s)" for n, _ in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for name in names:
        cells = []
        for _, by_path in rows:
            values = [h.steps[name] for h in by_path["ship"].code.hosts if name in h.steps]
            cells.append(f"{sum(values) / len(values):.2f}" if values else "—")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nBuild on each host, in detail (per host: averages):\n")
    print("| hosts | deploy | upload | build + postgres/proxy up (on the host) | the rest | "
          "SSH sessions per host |")
    print("|---:|---|---:|---:|---:|---:|")
    for n, by_path in rows:
        r = by_path["host"]
        for kind, run_ in (("first", r.first), ("code-only", r.code)):
            k = len(run_.hosts)
            up = sum(h.upload for h in run_.hosts) / k
            build = sum(h.build for h in run_.hosts) / k
            rest = sum(h.seconds for h in run_.hosts) / k - up - build
            print(f"| {n} | {kind} | {up:.1f} s | {build:.1f} s | {rest:.1f} s | "
                  f"{span(h.sessions for h in run_.hosts)} |")

    print("\n## Targets\n")
    print("| target | measured | result |")
    print("|---|---|---|")
    for n, by_path in rows:
        r = by_path["ship"]
        ratio = max(h.ship_wire for h in r.code.hosts) / r.changed
        print(f"| {n} host(s): code-only change ships ≤ {CODE_TARGET}× the changed layers | "
              f"{mb(max(h.ship_wire for h in r.code.hosts))} for {mb(r.changed)}: "
              f"{ratio:.3f}× | {verdict(ratio <= CODE_TARGET)} |")
    for kind, pick in (("first", lambda p: p.first), ("code-only", lambda p: p.code)):
        b = pick(base)
        k = len(b.hosts)
        transfer = sum(h.transfer for h in b.hosts) / k
        switch = sum(h.switch for h in b.hosts) / k
        for n, by_path in rows[1:]:
            wall = pick(by_path["ship"]).wall
            bound = b.before_hosts + n * (transfer + switch)
            print(f"| {n} hosts rolling, {kind} deploy ≤ one build + {n} × (transfer + switch) "
                  f"| {wall:.1f} s ≤ {b.before_hosts:.1f} + {n} × ({transfer:.1f} + "
                  f"{switch:.1f}) = {bound:.1f} s (from {base_n} host) | "
                  f"{verdict(wall <= bound)} |")
    worst = max(t for _, by_path in rows for t in by_path["ship"].rollback)
    print(f"| rollback ≤ {ROLLBACK_TARGET:g} s per host | worst host {worst:.1f} s | "
          f"{verdict(worst <= ROLLBACK_TARGET)} |")
    print(f"\nLoad average (1/5/15 min) at the start: {LOAD[0]}; at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}. "
          f"Total benchmark time: {time.monotonic() - started:.0f} s.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", default="1,2,4", help="host counts (default 1,2,4)")
    args = parser.parse_args()
    try:
        counts = [int(n) for n in args.hosts.split(",")]
        if not counts or any(n < 1 for n in counts):
            raise ValueError
    except ValueError:
        print(f"--hosts: {args.hosts!r} is not a list of host counts, e.g. 1,2,4",
              file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench_fleet: run as root (network namespaces, dockerd)", file=sys.stderr)
        return 2
    env = local_images()
    needed = ("PYTHON_IMAGE", "POSTGRES_IMAGE", "PROXY_IMAGE", "REGISTRY_IMAGE")
    if any(not env.get(k) for k in needed):
        print(f"{', '.join(needed)} are needed in .ci/local-images.env: run bash "
              ".ci/build-images", file=sys.stderr)
        return 2
    env = {k: env[k] for k in needed}
    # The deploys run in this process: Compose, which resolves the compose file's
    # ${PYTHON_IMAGE:-…} (the build's base) for them, reads it from this environment, as it
    # reads a project's .env for `invoke deploy`.
    os.environ.update(env)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))

    started = time.monotonic()
    LOAD.append(" ".join(f"{x:.2f}" for x in os.getloadavg()))
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    projects: list[str] = []
    rows = []
    cwd = Path.cwd()
    netns.cleanup_leftovers()
    try:
        bases = work / "bases.tar"
        with open(bases, "wb") as fh:
            subprocess.run(["docker", "save", env["PYTHON_IMAGE"], env["POSTGRES_IMAGE"],
                            env["PROXY_IMAGE"]], stdout=fh, check=True)
        sizes = {k: int(run(["docker", "image", "inspect", "-f", "{{.Size}}", env[k]]).stdout)
                 for k in ("PYTHON_IMAGE",)}
        (work / "src").mkdir()
        tree = ReleaseTree(work / "src")
        os.chdir(tree.path)  # deploys name and bundle what they ship from the project root
        for index, count in enumerate(counts):
            rig = netns.NetnsHosts(count)
            try:
                rig.start()
                preload(rig, bases)
                log(f"{count} host(s) up, base images loaded")
                order = ("host", "ship") if index % 2 == 0 else ("ship", "host")
                rows.append((count, {path: measure(path, rig, env, tree, projects)
                                     for path in order}))
            finally:
                rig.stop()
    finally:
        os.chdir(cwd)
        for project in projects:
            run(["docker", "volume", "rm", "--force", registry.names(project)[1]])
            tags = run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                        f"{project}-backend"]).stdout.split()
            run(["docker", "image", "rm", "--force", *tags, f"{project}-proxy:live"])
        shutil.rmtree(work, ignore_errors=True)
    report(rows, env, started, sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
