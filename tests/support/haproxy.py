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

from deploy.commands import proxyconf
from deploy.services import Publish
from tests.support.base import LOCAL_IMAGES_ENV, read_env_file

CAPTURED = Path(__file__).parent / "haproxy-captures"

# The tool's proxy for two app services, as the captures and the integration tests run it.
TWO = proxyconf.routes(["web", "admin"], {"web": 8000, "admin": 9000},
                       {"web": "/healthz", "admin": "/ping"},
                       {"web": Publish("0.0.0.0", 80), "admin": Publish("127.0.0.1", 9001)})
LB = "/.deploy/health"
# A stand-in app: HAProxy itself answering 200 to anything on :8000.
STUB_CFG = """global
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend app
    bind :8000
    http-request return status 200 content-type text/plain string up
"""


def proxy_image() -> str:
    """PROXY_IMAGE of .ci/local-images.env, else the official image the tool defaults to."""
    values = read_env_file(LOCAL_IMAGES_ENV) if LOCAL_IMAGES_ENV.exists() else {}
    return values.get("PROXY_IMAGE") or "haproxy:2.6"


def captured(name: str) -> str:
    return (CAPTURED / name).read_text()
