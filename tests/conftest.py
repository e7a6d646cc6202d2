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


@pytest.fixture
def profiler_session(monkeypatch: pytest.MonkeyPatch):
    """``use(cls)``: the ONNX Runtime profiler (``servopt.measure.profiler``) creates its sessions as ``cls`` (a
    subclass of ``onnxruntime.InferenceSession``), everything else from onnxruntime as it is."""
    import types

    import onnxruntime as ort

    import servopt.measure.profiler as profiler

    def use(cls: type) -> None:
        fake = types.SimpleNamespace(**{k: getattr(ort, k) for k in dir(ort) if not k.startswith("__")})
        fake.InferenceSession, fake.__version__ = cls, ort.__version__
        monkeypatch.setattr(profiler, "_import_ort", lambda: fake)

    return use
