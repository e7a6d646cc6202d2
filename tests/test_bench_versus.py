"""benchmarks/bench_pipeline.py --versus-gurobi: servopt and Gurobi's MCKP solve the same instances alike."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_versus_gurobi_agrees_on_every_instance(tmp_path):
    pytest.importorskip("gurobipy")
    import bench_pipeline

    assert bench_pipeline.main(["--versus-gurobi", "3", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "pipeline_vs_gurobi.csv").open()))
    per_instance = [r for r in rows if r["instance"] != "all"]
    assert len(per_instance) == 2 * 3 * 3  # families x instances x methods
    assert all(r["agrees"] == "True" and r["status"] == "optimal" for r in per_instance)
    summary = [r for r in rows if r["instance"] == "all"]
    assert {(r["family"], r["method"]) for r in summary} == {
        (f, m) for f in ("ipa", "tight") for m in bench_pipeline.VERSUS_METHODS}
    assert (tmp_path / "pipeline_vs_gurobi.png").stat().st_size > 0


def test_the_tight_sla_binds():
    import bench_pipeline
    import servopt

    loose = bench_pipeline.ipa_instance(9, 9, seed=4)
    tight = bench_pipeline.tight_sla(loose)
    assert tight.sla_ms < loose.sla_ms
    a, b = servopt.solve(loose, "dp"), servopt.solve(tight, "dp")
    assert b.status.value == "optimal" and b.objective < a.objective  # the SLA changes the answer


def test_bench_overhead_cli_measures_the_solve_against_the_bare_interpreter(tmp_path):
    import bench_overhead

    assert bench_overhead.main(["--cli", "--cli-runs", "1", "--cli-size", "3", "3", "--out", str(tmp_path)]) == 0
    rows = {r["approach"]: r for r in csv.DictReader((tmp_path / "cli_overhead.csv").open())}
    assert set(rows) == {"python -c pass", "servopt solve --json", "beyond interpreter start"}
    beyond = rows["beyond interpreter start"]
    assert beyond["status"] == "optimal" and float(beyond["parse_ms"]) > 0 and float(beyond["solve_ms"]) > 0
    assert (tmp_path / "cli_overhead.png").stat().st_size > 0
