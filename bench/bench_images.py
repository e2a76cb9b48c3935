"""Shipping images to hosts that cannot pull: `docker save | ssh docker load` vs the
tunnelled registry (deploy/fleet/registry.py, deploy/fleet/shipping.py), for 1, 2 and 4 hosts.

    python bench/bench_images.py [--hosts 1,2,4]        # as root (network-namespace hosts)

One Markdown report on stdout (progress on stderr). For each host count N, a fresh rig of N
hosts (tests/support/netns.py: own network namespace, sshd and Docker engine, no registry
access), and on it, in the same run, both methods, each from hosts that hold no image:

- baseline, today's alternative: for each host in turn, `docker save IMAGES | ssh host
  docker load` (OpenSSH), which sends whole images every time;
- ours: the project's registry started here with a fresh volume, the images pushed once,
  then `shipping.ship` to each host in turn (reverse SSH tunnel, `docker pull`, rename,
  ID check); for the code-only change, a new deploy: registry started again on the kept
  volume, the new image pushed (only its new layers), shipped.

Two shipments, each timed as the wall time for all N hosts, with bytes sent to each host
counted on its veth (every packet to the host crosses it: SSH, TCP and IP included) and,
for ours, the bytes through the tunnel:

1. first ship: the backend image (deploy/stack/backend/Dockerfile on PYTHON_IMAGE) plus the
   stack's base images (POSTGRES_IMAGE, and PROXY_IMAGE when .ci/local-images.env has one);
2. code-only change: the backend rebuilt with one changed file (a comment appended to
   deploy/stack/backend/app.py); target: bytes ≤ 1.2× the compressed size of the layers
   that changed (read from the registry's manifests).

The images are built here once, before any timing (build times reported, not counted).
Between the methods every host's images are removed. Everything (rigs, registry
containers and volumes, built images) is removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import invoke  # noqa: E402

from deploy.fleet import (  # noqa: E402
    registry,  # noqa: E402
    shipping,
)
from tests.support import netns  # noqa: E402
from tests.support.shipping_rig import (  # noqa: E402
    connect,
    local_images,
    registry_image,
    run,
    settings_for,
)

TARGET = 1.2


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Shipment:
    seconds: float = 0.0  # wall time for all hosts (for ours: registry start + push + ships)
    wire: list[int] = field(default_factory=list)  # bytes sent to each host (veth)
    tunnel: list[int] = field(default_factory=list)  # ours: bytes through each tunnel
    push: float = 0.0  # ours: the push, once
    start: float = 0.0  # ours: registry start

    @property
    def per_host(self) -> float:
        return statistics.mean(self.wire)


def build_backend(context: Path, tag: str, python_image: str) -> tuple[str, float]:
    started = time.monotonic()
    done = run(["docker", "build", "--quiet", "--file", "deploy/stack/backend/Dockerfile",
                "--build-arg", f"PYTHON_IMAGE={python_image}", "--tag", tag, "."],
               cwd=context, env={**os.environ, "DOCKER_BUILDKIT": "0"},
               timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"docker build {tag} failed:\n{done.stderr}")
    return tag, time.monotonic() - started


def wipe(rig) -> None:
    """Every image off every host (their layers with them)."""
    for h in rig.hosts:
        ids = run(rig.docker_argv(h, "image", "ls", "-aq")).stdout.split()
        if ids:
            run(rig.docker_argv(h, "image", "rm", "--force", *sorted(set(ids))))
        left = run(rig.docker_argv(h, "image", "ls", "-aq")).stdout.split()
        if left:
            raise SystemExit(f"{h.name}: images left after wiping: {left}")


def save_load(rig, refs: list[str]) -> Shipment:
    shipment = Shipment()
    started = time.monotonic()
    for h in rig.hosts:
        before = rig.traffic(h)[0]
        save = subprocess.Popen(["docker", "save", *refs], stdout=subprocess.PIPE)
        load = subprocess.run(rig.ssh_argv(h, "docker load"), stdin=save.stdout,
                              capture_output=True, text=True)
        save.stdout.close()
        if save.wait() != 0 or load.returncode != 0:
            raise SystemExit(f"docker save | ssh {h.name} docker load failed: {load.stderr}")
        shipment.wire.append(rig.traffic(h)[0] - before)
    shipment.seconds = time.monotonic() - started
    return shipment


def tunnelled(rig, local, settings, refs: list[str], conns) -> tuple[Shipment, list]:
    shipment = Shipment()
    quiet = lambda _: None  # noqa: E731
    started = time.monotonic()
    with registry.open_registry(local, settings, out=quiet) as reg:
        shipment.start = time.monotonic() - started
        mark = time.monotonic()
        published = registry.publish(local, reg, refs, out=quiet)
        shipment.push = time.monotonic() - mark
        for h, c in zip(rig.hosts, conns, strict=True):
            before = rig.traffic(h)[0]
            report = shipping.ship(c, reg, published, out=quiet)
            shipment.wire.append(rig.traffic(h)[0] - before)
            shipment.tunnel.append(report.sent)
        manifests = [registry.manifest(reg.address, p.remote) for p in published]
    shipment.seconds = time.monotonic() - started
    return shipment, manifests


def changed_bytes(old: dict, new: dict) -> int:
    before = {layer["digest"] for layer in old["layers"]}
    return sum(layer["size"] for layer in new["layers"] if layer["digest"] not in before)


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", default="1,2,4", help="host counts (default 1,2,4)")
    args = parser.parse_args()
    try:
        counts = [int(n) for n in args.hosts.split(",")]
        if any(n < 1 for n in counts):
            raise ValueError
    except ValueError:
        print(f"--hosts: {args.hosts!r} is not a list of host counts, e.g. 1,2,4",
              file=sys.stderr)
        return 2
    env = local_images()
    reg_image = registry_image()
    python_image, postgres_image = env.get("PYTHON_IMAGE"), env.get("POSTGRES_IMAGE")
    if not (reg_image and python_image and postgres_image):
        print("REGISTRY_IMAGE, PYTHON_IMAGE and POSTGRES_IMAGE are needed in "
              ".ci/local-images.env: run bash .ci/build-images", file=sys.stderr)
        return 2
    bases = [postgres_image] + ([env["PROXY_IMAGE"]] if env.get("PROXY_IMAGE") else [])
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))

    total_started = time.monotonic()
    tag = "bench-images-" + uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="bench-images-"))
    built: list[str] = []
    projects: list[str] = []
    results = []
    local = invoke.Context()
    netns.cleanup_leftovers()
    try:
        for item in ("deploy", "migrations", ".dockerignore"):
            source = REPO / item
            (shutil.copytree if source.is_dir() else shutil.copy)(source, work / item)
        first, build1 = build_backend(work, f"{tag}/backend:r1", python_image)
        built.append(first)
        app = work / "deploy/stack/backend/app.py"
        app.write_text(app.read_text() + "# a code-only change\n")
        second, build2 = build_backend(work, f"{tag}/backend:r2", python_image)
        built.append(second)
        log(f"built {first} in {build1:.1f} s, {second} in {build2:.1f} s")
        size = {ref: int(run(["docker", "image", "inspect", "-f", "{{.Size}}", ref]).stdout)
                for ref in [first, second, *bases]}

        for index, count in enumerate(counts):
            rig = netns.NetnsHosts(count)
            try:
                rig.start()
                log(f"{count} host(s) up")
                row = {"hosts": count}
                order = ("save", "ours") if index % 2 == 0 else ("ours", "save")
                for method in order:
                    wipe(rig)
                    if method == "save":
                        row["save-first"] = save_load(rig, [first, *bases])
                        row["save-code"] = save_load(rig, [second])
                    else:
                        project = f"benchimg{uuid.uuid4().hex[:6]}"
                        projects.append(project)
                        settings = settings_for(rig, project, REGISTRY_IMAGE=reg_image)
                        conns = [connect(rig, h, settings) for h in rig.hosts]
                        try:
                            row["ours-first"], m1 = tunnelled(rig, local, settings,
                                                              [first, *bases], conns)
                            row["ours-code"], m2 = tunnelled(rig, local, settings, [second],
                                                             conns)
                        finally:
                            for c in conns:
                                c.close()
                        row["changed"] = changed_bytes(m1[0], m2[0])
                        row["compressed"] = sum({layer["digest"]: layer["size"] for m in m1
                                                 for layer in m["layers"]}.values())
                    log(f"{count} host(s): {method} done")
                results.append(row)
            finally:
                rig.stop()
    finally:
        for project in projects:
            run(["docker", "volume", "rm", "--force", registry.names(project)[1]])
        if built:
            run(["docker", "image", "rm", "--force", *built])
        shutil.rmtree(work, ignore_errors=True)

    print("# Shipping images to hosts without registry access\n")
    print(f"Backend `{first}` ({mb(size[first])} unpacked) on `{python_image}`; base images "
          + ", ".join(f"`{b}` ({mb(size[b])})" for b in bases)
          + f". Registry: `{reg_image}`. Hosts: network namespaces with their own dockerd "
          "and sshd, reached over their veth; bytes = what the veth carried to the host.\n")
    print("| hosts | shipment | method | wall time | bytes per host | × baseline (time) "
          "| × baseline (bytes) |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for row in results:
        for kind, label in (("first", "first ship (backend + base images)"),
                            ("code", "code-only change (backend)")):
            base, ours = row[f"save-{kind}"], row[f"ours-{kind}"]
            print(f"| {row['hosts']} | {label} | `docker save \\| ssh docker load` | "
                  f"{base.seconds:.1f} s | {mb(base.per_host)} | 1.00× | 1.00× |")
            print(f"| {row['hosts']} | {label} | tunnelled registry | {ours.seconds:.1f} s | "
                  f"{mb(ours.per_host)} | {ours.seconds / base.seconds:.2f}× | "
                  f"{ours.per_host / base.per_host:.3f}× |")
    print("\nOurs, in detail (registry start and push are paid once per deploy, whatever "
          "the number of hosts):\n")
    print("| hosts | shipment | registry start | push | ships (all hosts) | through the "
          "tunnel, per host | changed layers (compressed) | bytes / changed | target | "
          "result |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|---|")
    for row in results:
        for kind in ("first", "code"):
            ours = row[f"ours-{kind}"]
            ships = ours.seconds - ours.start - ours.push
            tunnel = statistics.mean(ours.tunnel)
            if kind == "code":
                ratio = max(ours.wire) / row["changed"]
                cells = (f"{mb(row['changed'])} | {ratio:.3f}× (wire, worst host) | "
                         f"≤ {TARGET}× | {'PASS' if ratio <= TARGET else 'FAIL'}")
            else:
                cells = (f"{mb(row['compressed'])} (all layers) | "
                         f"{max(ours.wire) / row['compressed']:.3f}× | — | —")
            print(f"| {row['hosts']} | {kind} | {ours.start:.1f} s | {ours.push:.1f} s | "
                  f"{ships:.1f} s | {mb(tunnel)} | {cells} |")
    print(f"\nBuilds (before timing, not counted): r1 {build1:.1f} s, r2 {build2:.1f} s. "
          f"Total benchmark time: {time.monotonic() - total_started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
