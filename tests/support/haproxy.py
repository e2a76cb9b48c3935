"""Real HAProxy 2.6 answers, captured for the unit tests of the proxy switch.

tests/support/haproxy-captures/*.txt were captured from HAProxy 2.6.12 (Debian's package,
the image of .ci/build-images), through proxy.API_SCRIPT:

- two-*.txt: the config deploy/commands/proxyconf.py renders for two app services (web,
  admin) and the host's state backend; made again by `python3 -m tests.support.capture_haproxy`.
- the others: the sample's earlier hand-written config, whose one backend `app` had the same
  eight slots plus a non-slot server (`backend`, which resolved the service by name); kept
  for the single-backend parser cases.
"""

from __future__ import annotations

from pathlib import Path

CAPTURED = Path(__file__).parent / "haproxy-captures"


def captured(name: str) -> str:
    return (CAPTURED / name).read_text()
