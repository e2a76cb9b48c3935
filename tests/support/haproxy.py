"""Real HAProxy 2.6 answers, captured for the unit tests of the proxy switch.

tests/support/haproxy-captures/*.txt were captured from HAProxy 2.6.12 (Debian's package,
the image of .ci/build-images) running deploy/stack/proxy/haproxy.cfg, through
proxy.API_SCRIPT.
"""

from __future__ import annotations

from pathlib import Path

CAPTURED = Path(__file__).parent / "haproxy-captures"


def captured(name: str) -> str:
    return (CAPTURED / name).read_text()
