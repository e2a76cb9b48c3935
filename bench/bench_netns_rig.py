"""What the network-namespace test hosts cost (tests/support/netns.py).

    python bench/bench_netns_rig.py [--runs 3] [--hosts 2] [--image IMAGE]

One Markdown report on stdout (progress on stderr):

1. bring-up of N hosts (namespaces, veths, dockerd answering, sshd answering with its
   banner) and teardown (sshd, dockerd by pid file, namespaces, cgroups, data dirs), each
   the wall time of `NetnsHosts.start()` / `.stop()`, over --runs rigs;
2. shipping an image to one host the naive way, `docker save IMAGE | docker -H unix://<host
   socket> load`, against the baseline of the same run, `docker save IMAGE > /dev/null`
   (what reading the image costs here, without the host).

IMAGE defaults to PYTHON_IMAGE of .ci/local-images.env (bash .ci/build-images). Needs
root, like the rig. Everything is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support import netns  # noqa: E402
from tests.support.base import LOCAL_IMAGES_ENV, read_env_file  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed_shell_pipe(first: list[str], second: list[str] | None) -> float:
    """Wall time of `first | second` (or `first > /dev/null`); raises on failure."""
    start = time.monotonic()
    with open("/dev/null", "wb") as devnull:
        producer = subprocess.Popen(first, stdout=subprocess.PIPE if second else devnull)
        consumer = None
        if second:
            consumer = subprocess.Popen(second, stdin=producer.stdout,
                                        stdout=subprocess.DEVNULL)
            producer.stdout.close()
        codes = [producer.wait(), consumer.wait() if consumer else 0]
    elapsed = time.monotonic() - start
    if any(codes):
        raise SystemExit(f"{' '.join(first)} | {' '.join(second or [])} failed: {codes}")
    return elapsed


def image_size(image: str) -> int:
    done = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--image", default=None)
    args = parser.parse_args()
    image = args.image or read_env_file(LOCAL_IMAGES_ENV).get("PYTHON_IMAGE")
    if not image:
        print(f"no --image and no PYTHON_IMAGE in {LOCAL_IMAGES_ENV}: run bash "
              ".ci/build-images", file=sys.stderr)
        return 2
    netns.cleanup_leftovers()
    ups, downs = [], []
    load = save = None
    for run in range(args.runs):
        rig = netns.NetnsHosts(args.hosts)
        try:
            start = time.monotonic()
            rig.start()
            ups.append(time.monotonic() - start)
            log(f"run {run + 1}: {args.hosts} hosts up in {ups[-1]:.2f} s")
            if run == 0:
                save = timed_shell_pipe(["docker", "save", image], None)
                load = timed_shell_pipe(["docker", "save", image],
                                        rig.docker_argv(rig.hosts[0], "load"))
                log(f"save {save:.1f} s, save | load {load:.1f} s")
        finally:
            start = time.monotonic()
            rig.stop()
            downs.append(time.monotonic() - start)
            log(f"run {run + 1}: torn down in {downs[-1]:.2f} s")
    size = image_size(image) / 1e6
    print(f"# Network-namespace test hosts ({args.runs} runs, {args.hosts} hosts)\n")
    print("| measurement | median | min | max |\n|---|---|---|---|")
    for name, values in ((f"bring-up of {args.hosts} hosts", ups), ("teardown", downs)):
        print(f"| {name} | {statistics.median(values):.2f} s | {min(values):.2f} s "
              f"| {max(values):.2f} s |")
    print(f"\nImage `{image}` ({size:.0f} MB unpacked):\n")
    print("| measurement | time | ratio |\n|---|---|---|")
    print(f"| baseline: `docker save > /dev/null` | {save:.1f} s | 1.00× |")
    print(f"| `docker save \\| docker -H <host> load` | {load:.1f} s | {load / save:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
