"""``servopt solve`` imports only what the problem needs: no solver backend, pandas or scikit-learn for a pipeline.

Each case runs the CLI in a fresh interpreter and asserts on the set of modules imported by the end (not on any
time), so the test does not depend on how busy the machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: packages a pipeline (or inline variant-selection) file must not pull in: solver backends, data frames,
#: regression, plotting, model formats and the Triton client
HEAVY = ("pandas", "sklearn", "scipy", "matplotlib", "onnx", "onnxruntime", "tritonclient", "ortools", "highspy",
         "gurobipy", "cvxpy", "pyscipopt", "torch", "servopt.backends", "servopt.profiles", "servopt.performance",
         "servopt.triton")

PROBE = """
import contextlib, io, json, sys
from servopt.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(["solve", sys.argv[1], "--json"])
print(json.dumps({"code": code, "answer": json.loads(out.getvalue()), "modules": sorted(sys.modules)}))
"""


def imported(problem_file: Path) -> tuple[dict, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(problem_file)], capture_output=True, text=True,
                          cwd=ROOT, check=True, timeout=300)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["code"] == 0, done.stderr
    return got["answer"], set(got["modules"])


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or any(m == h or m.startswith(h + ".")
                                                                       for h in HEAVY))


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "examples").glob("pipeline_*.yaml")))
def test_a_pipeline_file_imports_no_heavy_module(name):
    answer, modules = imported(ROOT / "examples" / name)
    assert answer["status"] == "optimal" and answer["backend"] == "dp"
    assert heavy(modules) == []
    assert "numpy" in modules  # the dynamic programme's arrays: the probe does see imports


def test_an_inline_variant_selection_file_imports_no_heavy_module():
    answer, modules = imported(ROOT / "examples" / "variant_selection_infadapter.yaml")
    assert answer["status"] == "optimal"
    assert heavy(modules) == []


def test_a_file_with_profiles_still_imports_what_it_needs():
    # the probe reports real imports: a file that reads profiles brings pandas (guards against a vacuous test)
    _, modules = imported(ROOT / "examples" / "variant_selection_infadapter_profile.yaml")
    assert "pandas" in modules and "servopt.profiles" in modules
