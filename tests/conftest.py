"""Shared fixtures: the project root and the public reference data shipped in ``data/`` (origin in data/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# No test outcome may depend on how busy the machine is: hypothesis's per-example deadline and its "too slow"
# health check are wall-clock limits, so both are off everywhere; on CI (CI=true) examples are also derandomised,
# so every run draws the same examples.
_NO_CLOCK = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("servopt", **_NO_CLOCK)
settings.register_profile("servopt-ci", derandomize=True, **_NO_CLOCK)
settings.load_profile("servopt-ci" if os.environ.get("CI") else "servopt")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DATA = ROOT / "data"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """``data/``: public measurements and traces shipped with the project."""
    if not REFERENCE_DATA.is_dir():
        pytest.fail(f"reference data not found at {REFERENCE_DATA}; it ships with the project (git checkout data/)")
    return REFERENCE_DATA
