"""A real tritonserver loads what servopt writes (marker ``triton``; runs in CI by .ci/run).

One server (tritonserver 2.51 from the ``nvidia-pytriton`` wheel, CPU only, Python backend, 127.0.0.1 ports)
loads, side by side (``--model-namespacing``):

* the repository of every plan type and layout in tests/_triton_cases.py (the golden cases),
* the repository of every problem in examples/ that has a plan, with its real model files (examples/models/*.onnx)
  served by the Python backend through the ``model.py`` servopt writes (``--triton-backend python``: ONNX Runtime),
* a repository of models that each break one Triton rule: each must be refused, and Triton's message must be the
  one servopt reports for it (so servopt's wording is proven against the server, not just copied).

Every other model must be READY, and one request (inputs built from the declared tensors) goes through every model
and every ensemble, its output shapes checked against the config. The separate virtualenv (.triton-venv:
nvidia-pytriton, numpy<2, onnxruntime) is created on first use; if that fails the test
FAILS with pip's output, it is never skipped. The server log is printed when anything fails.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
from _triton_cases import CASES, write_broken_repository

from servopt.testing.triton_env import TritonSetupError, ensure_env
from servopt.testing.triton_server import TritonCheckError, check_repositories, find_repositories
from servopt.triton import write_repository

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.triton

#: most instances per instance group on the test server: each Python-backend instance is a process and the
#: examples ask for up to 12 replicas (77 processes in all, ~80 s to load on 2 busy cores); 2 keeps multi-instance
#: loading (and warm-up on every instance) checked at about half the time
MAX_INSTANCES = 2


@pytest.fixture(scope="session")
def triton_env(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("triton-env") / "setup.log"
    started = time.monotonic()
    try:
        env = ensure_env(log=log)
    except TritonSetupError as exc:
        pytest.fail(f"could not set up the tritonserver environment (nvidia-pytriton, numpy<2):\n{exc}",
                    pytrace=False)
    print(f"\ntriton env ready in {time.monotonic() - started:.1f} s at {env.venv}")
    return env


def _entries(out: Path) -> set[str]:
    """The ensembles (entry models) a written folder declares in its servopt.json."""
    import json

    summary = json.loads((out / "servopt.json").read_text())
    return {r["entry"] for r in summary["repositories"] if r["entry"]}


def _example_repositories(out: Path) -> tuple[list[Path], list[str]]:
    import json

    import servopt

    repos, no_plan = [], []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        problem = servopt.load_problem(path)
        solution = servopt.solve(problem, time_limit_s=60)
        if solution.plan is None:  # an example that demonstrates infeasibility has nothing to deploy
            no_plan.append(path.name)
            continue
        written = write_repository(problem, solution, out / path.stem, source=path, triton_backend="python")
        summary = json.loads((written / "servopt.json").read_text())
        assert not summary["config_only"], (path.name, summary["missing"])  # every example deploys a real model
        repos.extend(find_repositories(written))
    return repos, no_plan


def test_real_server_loads_and_serves_everything(triton_env, tmp_path: Path) -> None:
    repos: list[Path] = []
    for case, (problem, solution, kwargs) in sorted(CASES.items()):
        repos.extend(find_repositories(write_repository(problem, solution, tmp_path / "cases" / case, **kwargs)))
    example_repos, no_plan = _example_repositories(tmp_path / "examples")
    repos.extend(example_repos)
    broken = tmp_path / "broken"
    expected_failures = write_broken_repository(broken)
    repos.append(broken)

    try:
        report = check_repositories(repos, env=triton_env, workdir=tmp_path / "server",
                                    expect_failures=expected_failures, max_instances=MAX_INSTANCES,
                                    unique_names=True)
    except TritonCheckError as exc:
        print(exc.log, file=sys.stderr)  # the whole server log
        pytest.fail(str(exc), pytrace=False)
    print(f"\ntriton: {report.repositories} repositories ({len(example_repos)} from examples/, examples without a "
          f"plan: {no_plan or 'none'}), {report.models} models READY={report.ready}, "
          f"{report.rejected} broken models refused with servopt's message, {len(report.inferences)} inferences; "
          f"server up after {report.startup_s:.1f} s, {report.total_s:.1f} s in all")
    assert report.ready == report.models
    assert report.rejected == len(expected_failures) == 16
    ensembles = set().union(*(_entries(p.parent) for p in tmp_path.glob("*/*/servopt.json")))
    assert {"video", "video_tmpl", "pipeline_nlp", "pipeline_video"} <= ensembles
    inferred = [re.sub(r"^r\d+_", "", name) for name in report.inferences]
    assert ensembles <= set(inferred)  # one request went through every ensemble
    assert len(report.inferences) == report.models  # ... and through every model
