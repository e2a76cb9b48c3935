"""Capture the two-* answers of tests/support/haproxy-captures from a real HAProxy running
the config deploy/commands/proxyconf.py renders for two app services (web on 8000, admin on
9000): `python3 -m tests.support.capture_haproxy [DIR]`, with Docker and PROXY_IMAGE.

Two stub app containers (172.22.0.2, then .3) answer 200 on :8000 only, so the admin slots
fail their check as a container not listening on APP_PORT does. Sequence: fresh; the first
release routed in slot1 of each backend; the second prepared in slot2; the host draining;
the flip; a command naming a backend that does not exist.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from deploy.commands import haproxy as proxy
from deploy.commands import proxyconf
from tests.support.haproxy import CAPTURED, LB, STUB_CFG, TWO, proxy_image


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True,
                          check=True).stdout


def _api(container: str, command: str) -> str:
    for _ in range(100):  # the runtime API is up within a second of the start
        done = subprocess.run(proxy.api(container, command), capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout
        time.sleep(0.1)
    raise SystemExit(f"runtime API: {done.stderr}")


def _plans(slot: str, old: list[str]) -> list[proxy.SwitchPlan]:
    ip = "172.22.0.2" if slot == "slot1" else "172.22.0.3"
    return [proxy.SwitchPlan(r.service, r.port, new={slot: ip}, old=old) for r in TWO]


def capture(out: Path, tmp: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    name = f"deploy-capture-{uuid.uuid4().hex[:6]}"
    (tmp / "proxy").mkdir()
    (tmp / "proxy" / "Dockerfile").write_text(proxyconf.dockerfile())
    (tmp / "proxy" / "haproxy.cfg").write_text(proxyconf.haproxy_cfg(TWO, LB))
    stub = tmp / "stub.cfg"
    stub.write_text(STUB_CFG)
    stub.chmod(0o644)
    undo = []
    try:
        _docker("build", "-q", "--build-arg", f"PROXY_IMAGE={proxy_image()}", "-t", f"{name}:t",
                str(tmp / "proxy"))
        undo.append(["image", "rm", "-f", f"{name}:t"])
        _docker("network", "create", "--subnet", "172.22.0.0/16", name)
        undo.append(["network", "rm", name])
        _docker("run", "-d", "--name", f"{name}-proxy", "--network", name, "--ip",
                "172.22.0.9", f"{name}:t")
        undo.append(["rm", "-f", f"{name}-proxy"])
        for ip in ("172.22.0.2", "172.22.0.3"):
            _docker("run", "-d", "--name", f"{name}-{ip}", "--network", name, "--ip", ip,
                    "-v", f"{stub}:{proxyconf.CONFIG_PATH}:ro", proxy_image())
            undo.append(["rm", "-f", f"{name}-{ip}"])
        c = f"{name}-proxy"
        time.sleep(1)
        (out / "two-state-fresh.txt").write_text(_api(c, proxy.show_servers_state()))
        first = _plans("slot1", [])
        _api(c, proxy.assign(first))
        time.sleep(1.5)  # checked
        _api(c, proxy.flip(first))
        second = _plans("slot2", ["slot1"])
        (out / "two-answer-prepare.txt").write_text(_api(c, proxy.assign(second)))
        time.sleep(1.5)
        (out / "two-state-prepared.txt").write_text(_api(c, proxy.show_servers_state()))
        (out / "two-answer-draining.txt").write_text(_api(c, proxy.host_state(False)))
        (out / "two-answer-flip.txt").write_text(_api(c, proxy.flip(second)))
        (out / "two-state-flipped-draining.txt").write_text(
            _api(c, proxy.show_servers_state()))
        (out / "two-stat-flipped.txt").write_text(_api(c, proxy.show_stat()))
        (out / "two-answer-no-such-backend.txt").write_text(
            _api(c, "set server shop/slot1 state ready"))
        print(_docker("exec", c, "haproxy", "-v").splitlines()[0])
    finally:
        for args in reversed(undo):
            subprocess.run(["docker", *args], capture_output=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        capture(Path(sys.argv[1]) if len(sys.argv) > 1 else CAPTURED, Path(tmp))
