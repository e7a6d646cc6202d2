"""Pipeline and variant_selection plans carry their predictions (issue 18, deliverable 4).

``PipelinePlan.predictions()`` / ``VariantSelectionPlan.predictions()``: per served model the planned batch,
batch latency, capacity, queue delay (as the Triton writer sets it), expected load and the ``perf_analyzer``
command reproducing that load; ``servopt solve --json`` and ``servopt.json`` carry them like GPU plans'.
Values are checked against the plan's own fields and the written ``config.pbtxt``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import servopt
from servopt.cli import main
from servopt.formulations.perf_command import format_rate, rate_command
from servopt.formulations.registry import load_problem
from servopt.serving import verify

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PIPELINE = EXAMPLES / "pipeline_video.yaml"
VARIANTS = EXAMPLES / "variant_selection_infadapter.yaml"


def _rate(command: str) -> float:
    match = re.fullmatch(r"perf_analyzer -m MODEL -i grpc -u 127\.0\.0\.1:8001 -b 1 "
                         r"--request-rate-range ([0-9.]+):([0-9.]+)", command)
    assert match is not None, command
    assert match.group(1) == match.group(2)
    return float(match.group(1))


def _check_pipeline(plan: servopt.PipelinePlan, pred: dict) -> None:
    assert pred["workload_rps"] == plan.workload_rps and pred["sla_ms"] == plan.sla_ms
    assert pred["latency_ms"] == pytest.approx(plan.latency_ms)
    assert [m["stage"] for m in pred["models"]] == [s.name for s in plan.stages]
    for s, m in zip(plan.stages, pred["models"]):
        assert (m["variant"], m["batch_size"], m["model_instances"]) == (s.variant, s.batch_size, s.replicas)
        assert m["batch_latency_ms"] == s.latency_ms and m["queue_delay_ms"] == s.queue_ms
        assert m["throughput_rps"] == pytest.approx(s.throughput_rps * s.replicas)
        assert m["throughput_rps"] >= plan.workload_rps * (1 - 1e-9)  # capacity covers the stage's load
        assert m["latency_ms"] == pytest.approx(s.latency_ms + s.queue_ms)
        assert m["load_rps"] == plan.workload_rps == m["load"]["request_rate"]  # every stage sees the workload
        assert m["max_queue_delay_us"] == (round(1000 * s.queue_ms) if s.batch_size > 1 else 0)
        assert _rate(m["perf_analyzer"]) == pytest.approx(plan.workload_rps, abs=1e-3)
    assert sum(m["latency_ms"] for m in pred["models"]) == pytest.approx(plan.latency_ms)


def _check_variants(plan: servopt.VariantSelectionPlan, pred: dict) -> None:
    loaded = [v for v in plan.variants if v.cores > 0]
    assert [m["variant"] for m in pred["models"]] == [v.name for v in loaded]
    assert pred["workload_rps"] == plan.workload_rps
    assert sum(m["share"] for m in pred["models"]) == pytest.approx(1.0)
    for v, m in zip(loaded, pred["models"]):
        assert (m["cores"], m["batch_size"], m["max_queue_delay_us"]) == (v.cores, 1, 0)
        assert m["throughput_rps"] == v.capacity_rps
        assert m["batch_latency_ms"] == pytest.approx(1000.0 / v.capacity_rps)
        assert m["load_rps"] == pytest.approx(plan.workload_rps * v.rps / plan.workload_rps)
        assert m["load_rps"] == pytest.approx(v.rps) and m["load_rps"] <= m["throughput_rps"] * (1 + 1e-9)
        assert _rate(m["perf_analyzer"]) == pytest.approx(m["load_rps"], abs=1e-3)
    assert pred["throughput_rps"] == pytest.approx(sum(v.capacity_rps for v in loaded))


def test_pipeline_plan_predictions_match_its_fields() -> None:
    plan = servopt.solve(load_problem(PIPELINE)).plan
    pred = plan.predictions()
    _check_pipeline(plan, pred)
    assert any(m["batch_size"] > 1 and m["max_queue_delay_us"] > 0 for m in pred["models"])  # a batching stage
    json.dumps(pred, allow_nan=False)


@pytest.mark.parametrize("workload", [None, 250.0])
def test_variant_selection_plan_predictions_match_its_fields(workload: float | None) -> None:
    problem = load_problem(VARIANTS)
    if workload is not None:  # 250 RPS on 20 cores: two variants share the load
        problem = problem.update(workload_rps=workload)
    plan = servopt.solve(problem).plan
    pred = plan.predictions()
    _check_variants(plan, pred)
    if workload is not None:
        assert len(pred["models"]) == 2 and all(0 < m["share"] < 1 for m in pred["models"])
    json.dumps(pred, allow_nan=False)


def _solve_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["solve", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_solve_json_and_servopt_json_carry_pipeline_predictions(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    data = _solve_json(capsys, str(PIPELINE), "--out", str(out))
    plan = servopt.solve(load_problem(PIPELINE)).plan
    assert data["plan"] == json.loads(json.dumps(plan.to_dict()))
    _check_pipeline(plan, data["predictions"])
    summary = json.loads((out / "servopt.json").read_text())
    assert summary["predictions"] == data["predictions"]
    # the queue delay predicted is the one the writer put in each stage's config
    models = {m["stage"]: m for m in summary["repositories"][0]["models"] if "stage" in m}
    for m in data["predictions"]["models"]:
        assert models[m["stage"]]["queue_delay_us"] == m["max_queue_delay_us"]
        config = (out / models[m["stage"]]["name"] / "config.pbtxt").read_text()
        if m["batch_size"] > 1:
            assert f"max_queue_delay_microseconds: {m['max_queue_delay_us']}" in config
    # verify drives a pipeline's predictions (tests/test_verify_pipeline.py); no server there: exit 2, said so
    assert verify.load_summary(out)["predictions"] == data["predictions"]
    capsys.readouterr()
    assert main(["verify", str(out), "--server", "127.0.0.1:1", "--duration", "0.2", "--warmup", "0"]) == 2
    assert "is a Triton server serving this repository there?" in capsys.readouterr().err


def test_solve_json_and_servopt_json_carry_variant_predictions(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    data = _solve_json(capsys, str(VARIANTS), "--out", str(out))
    plan = servopt.solve(load_problem(VARIANTS)).plan
    _check_variants(plan, data["predictions"])
    summary = json.loads((out / "servopt.json").read_text())
    assert summary["predictions"] == data["predictions"]
    routes = {r["variant"]: r for r in json.loads((out / "routing.json").read_text())["routes"]}
    for m in data["predictions"]["models"]:  # the router's weight is the predicted share
        assert routes[m["variant"]]["weight"] == pytest.approx(m["share"], abs=1e-6)
        assert routes[m["variant"]]["rps"] == pytest.approx(m["load_rps"])


def test_rate_command_format() -> None:
    assert format_rate(12.3456) == "12.346" and format_rate(1e7) == "10000000" and format_rate(0) == "0"
    assert rate_command(87.5) == ("perf_analyzer -m MODEL -i grpc -u 127.0.0.1:8001 -b 1 "
                                  "--request-rate-range 87.5:87.5")
