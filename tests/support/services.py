"""A service a test needs (Docker, root, a tool) is missing: a failure in CI, where
.ci/provision must have set it up, and a loud skip elsewhere."""

from __future__ import annotations

import os

import pytest


def missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provision it: bash .ci/provision)", pytrace=False)
    pytest.skip(reason)
