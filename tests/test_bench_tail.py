"""benchmarks/bench_tail.py: the quick mode writes its CSVs and PNG, and its instances solve to proven optima."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import servopt
from servopt.result import Status
from servopt.testing.oracles import check_pipeline_plan

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_tail.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_tail", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_rows_and_the_tail_summary(tmp_path):
    assert load().main(["--quick", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "tail.csv").open()))
    summary = list(csv.DictReader((tmp_path / "tail_summary.csv").open()))
    assert len(rows) == 12 and {r["status"] for r in rows} <= {"optimal", "infeasible"}
    assert len(summary) == 4 and all(float(r["p99_s"]) <= float(r["max_s"]) for r in summary)
    assert (tmp_path / "tail.png").stat().st_size > 0


def test_adversarial_instances_put_every_variant_on_the_front():
    bench = load()
    problem = bench.adversarial_instance(7, 4, 5, 3, "product")
    for stage in problem.stages:
        accs = [v.accuracy for v in stage.variants]
        lats = [v.batches[0].latency_ms for v in stage.variants]
        assert accs == sorted(accs) and len(set(accs)) == len(accs) and lats == sorted(lats)
    solution = servopt.solve(problem, "dp")
    milp = servopt.solve(problem, "highs")
    assert solution.status is milp.status
    if milp.status is Status.OPTIMAL:
        assert abs(solution.objective - milp.objective) <= 1e-7 * max(1.0, abs(milp.objective))
        assert check_pipeline_plan(problem, solution.plan) == []


def test_stable_quick_run_has_current_deployments(tmp_path):
    assert load().main(["--quick", "--stable", "--accuracy", "product", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "tail_stable.csv").open()))
    assert len(rows) == 6 and {r["accuracy"] for r in rows} == {"product+stable"}
    assert {r["status"] for r in rows} <= {"optimal", "infeasible"} and (tmp_path / "tail_stable.png").exists()
