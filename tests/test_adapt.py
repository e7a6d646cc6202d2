"""Forecasters and the Adapter: stabilisation rules, infeasible forecasts, timing statistics."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from servopt.serving.adapt import (
    EWMA,
    MIN_RPS,
    Adapter,
    FunctionForecaster,
    LastValue,
    WindowMax,
    make_forecaster,
)
from servopt.exceptions import ValidationError


# ------------------------------------------------------------------------------------------ problems
def infadapter_problem(reference_data: Path, workload: float = 60.0):
    """InfAdapter's setting from its data: th(n) = floor(0.8 (a n + b)), accuracies, load times, B = 20."""
    from servopt.formulations.variant_selection.problem import Variant, VariantSelection

    base = reference_data / "infadapter"
    const = json.loads((base / "variant_constants.json").read_text())
    variants = []
    with open(base / "capacity_regression_sla750.csv") as fh:
        for row in csv.DictReader(fh):
            arch = row["arch"]
            variants.append(Variant(
                name=f"resnet{arch}", accuracy=const["baseline_accuracies_top1"][arch],
                capacity={n: float(row[f"th_{n}"]) for n in range(1, 21)}, load_time_s=const["load_times_s"][arch],
                current_cores=20 if arch == "152" else 0, min_cores=2, max_cores=20,
            ))
    return VariantSelection(workload, 20, variants)


def small_pipeline(workload: float = 10.0):
    from servopt.formulations.pipeline.problem import BatchProfile, Pipeline, Stage, StageVariant

    def variant(name, acc, lat1, lat4):
        return StageVariant(name, acc, 1.0, [BatchProfile(1, lat1), BatchProfile(4, lat4)])

    return Pipeline(workload, 1000.0, [
        Stage("detect", [variant("small", 0.45, 60.0, 180.0), variant("large", 0.56, 150.0, 450.0)]),
        Stage("classify", [variant("r18", 0.70, 40.0, 120.0), variant("r50", 0.76, 90.0, 270.0)]),
    ])


@pytest.fixture(scope="module")
def vs_problem(reference_data: Path):
    return infadapter_problem(reference_data)


def _check_variant_plan(problem, plan, load: float) -> None:
    """Independent feasibility check: the plan's cores serve the load within the budget."""
    cap = {v.name: v.capacity for v in problem.variants}
    d = plan.to_dict()
    cores = sum(v["cores"] for v in d["variants"])
    assert cores <= problem.core_budget
    served = sum(cap[v["name"]][v["cores"]] for v in d["variants"] if v["cores"] > 0)
    assert served >= load - 1e-6
    assert sum(v["rps"] for v in d["variants"]) == pytest.approx(load)


# ------------------------------------------------------------------------------------------ forecasters
def test_last_value_and_margin() -> None:
    assert LastValue()([3.0, 7.0]) == 7.0
    assert LastValue(margin=0.1)([3.0, 10.0]) == pytest.approx(11.0)


@pytest.mark.parametrize("span", [2.0, 10.0, 30.0])
def test_ewma_matches_pandas(span: float) -> None:
    import pandas as pd

    h = np.random.default_rng(int(span)).random(200) * 100
    assert EWMA(span=span)(h) == pytest.approx(pd.Series(h).ewm(span=span).mean().iloc[-1])


def test_ewma_over_bucket_maxima_is_infadapters_per_minute_ewm() -> None:
    import pandas as pd

    h = np.random.default_rng(0).poisson(50, size=600).astype(float)
    minute_max = h.reshape(10, 60).max(axis=1)
    expected = pd.Series(minute_max).ewm(span=10).mean().iloc[-1] * 1.1
    assert EWMA(span=10, bucket_s=60, margin=0.1)(h) == pytest.approx(expected)
    # a partial last bucket counts as a bucket of its own
    assert EWMA(span=1, bucket_s=60)(np.append(h, [500.0])) == 500.0


def test_window_max() -> None:
    h = np.array([100.0] + [10.0] * 120)
    assert WindowMax(window_s=120)(h) == 10.0
    assert WindowMax(window_s=121)(h) == 100.0


def test_user_callable_is_checked() -> None:
    f = make_forecaster(lambda h: float(np.median(h)), margin=0.5)
    assert isinstance(f, FunctionForecaster)
    assert f([1.0, 2.0, 9.0]) == pytest.approx(3.0)
    with pytest.raises(ValidationError, match="expected a finite number >= 0"):
        make_forecaster(lambda h: -1.0)([1.0])
    with pytest.raises(ValidationError, match="expected a number"):
        make_forecaster(lambda h: "lots")([1.0])


@pytest.mark.parametrize("bad, match", [
    (lambda: make_forecaster("lstm"), "unknown forecaster 'lstm'"),
    (lambda: make_forecaster(3), "must be last, ewma, max or a callable"),
    (lambda: LastValue()([]), "non-empty"),
    (lambda: EWMA(span=0.5)([1.0]), "span"),
    (lambda: WindowMax(window_s=0)([1.0]), "window_s"),
    (lambda: LastValue(margin=-2)([1.0]), "margin"),
])
def test_bad_forecasters_are_rejected(bad, match) -> None:
    with pytest.raises(ValidationError, match=match):
        bad()


# ------------------------------------------------------------------------------------------ adapter
def test_initial_plan_then_scale_up_is_immediate(vs_problem) -> None:
    a = Adapter(vs_problem)
    first = a.decide(60.0, now=0.0)
    assert first.action == "initial" and first.changed and first.solves == 1
    _check_variant_plan(vs_problem, first.plan, 60.0)
    up = a.decide(250.0, now=30.0)
    assert up.action == "replan" and up.changed and up.planned_rps == 250.0
    _check_variant_plan(vs_problem, up.plan, 250.0)
    assert up.plan.cores > first.plan.cores


def test_scale_down_waits_for_the_delay(vs_problem) -> None:
    a = Adapter(vs_problem, scale_down_delay_s=120)
    a.decide(250.0, now=0.0)
    held = [a.decide(60.0, now=t) for t in (30.0, 60.0, 120.0)]
    assert [d.action for d in held] == ["keep-scale-down-delay"] * 3
    assert all(d.plan is held[0].plan and d.planned_rps == 250.0 and d.solves == 0 for d in held)
    down = a.decide(60.0, now=150.0)  # 120 s after the first lower forecast
    assert down.action == "replan" and down.changed and down.planned_rps == 60.0
    # a scale-up in between resets the clock
    b = Adapter(vs_problem, scale_down_delay_s=60)
    b.decide(100.0, now=0.0)
    b.decide(50.0, now=30.0)
    b.decide(150.0, now=60.0)
    assert b.decide(50.0, now=100.0).action == "keep-scale-down-delay"


def test_min_change_keeps_the_plan(vs_problem) -> None:
    a = Adapter(vs_problem, min_change=0.1)
    a.decide(100.0, now=0.0)
    assert a.decide(108.0, now=30.0).action == "keep-min-change"
    assert a.decide(93.0, now=60.0).action == "keep-min-change"
    assert a.decide(115.0, now=90.0).action == "replan"


def test_same_load_replans_without_change(vs_problem) -> None:
    a = Adapter(vs_problem)
    a.decide(100.0, now=0.0)
    again = a.decide(100.0, now=30.0)
    assert again.action == "replan" and not again.changed


def test_infeasible_forecast_plans_for_the_largest_servable_load(vs_problem) -> None:
    top, _ = vs_problem.max_servable()
    a = Adapter(vs_problem)
    d = a.decide(10 * top, now=0.0)
    assert d.plan is not None and d.solves >= 2
    assert d.planned_rps == pytest.approx(top, rel=1e-6)
    assert "largest servable load" in d.message
    _check_variant_plan(vs_problem, d.plan, d.planned_rps)


def test_tiny_forecast_plans_for_min_rps(vs_problem) -> None:
    d = Adapter(vs_problem).decide(0.0, now=0.0)
    assert d.planned_rps == MIN_RPS and d.plan is not None


def test_static_policy_never_changes(vs_problem) -> None:
    a = Adapter(vs_problem, policy="static")
    first = a.decide(200.0, now=0.0)
    for t, load in ((30.0, 20.0), (60.0, 300.0)):
        d = a.decide(load, now=t)
        assert d.action == "keep-static" and d.plan is first.plan


def test_step_uses_the_forecaster_and_stats_count(vs_problem) -> None:
    a = Adapter(vs_problem, forecaster=WindowMax(window_s=5))
    assert a.step([], now=0.0).action == "keep-no-forecast"
    d = a.step([10.0, 80.0, 30.0], now=1.0)
    assert d.forecast_rps == 80.0 and d.planned_rps == 80.0
    a.step([10.0, 80.0, 30.0, 200.0], now=2.0)
    s = a.stats()
    assert s["decisions"] == 3 and s["solves"] == 2 and s["reconfigurations"] == 1
    assert 0 < s["p50_ms"] <= s["max_ms"] and math.isfinite(s["mean_ms"])


def test_current_deployment_is_the_starting_point(vs_problem) -> None:
    import servopt

    plan = servopt.solve(vs_problem.update(workload_rps=100.0)).plan
    a = Adapter(vs_problem, current=plan, current_rps=100.0, min_change=0.2)
    assert a.decide(110.0, now=0.0).action == "keep-min-change"
    with pytest.raises(ValidationError, match="together"):
        Adapter(vs_problem, current=plan)


def test_pipeline_adapter_scales_replicas() -> None:
    p = small_pipeline()
    a = Adapter(p)
    low = a.decide(5.0, now=0.0).plan
    high = a.decide(80.0, now=10.0)
    assert high.changed
    assert sum(s.replicas for s in high.plan.stages) > sum(s.replicas for s in low.stages)
    for s in high.plan.stages:  # independent check of the capacity constraint n * h >= lambda
        assert s.replicas * s.throughput_rps >= 80.0 - 1e-9


def test_adapter_rejects_bad_input(vs_problem, reference_data: Path) -> None:
    with pytest.raises(ValidationError, match="unknown policy"):
        Adapter(vs_problem, policy="lstm")
    with pytest.raises(ValidationError, match="min_change"):
        Adapter(vs_problem, min_change=1.5)
    with pytest.raises(ValidationError, match="scale_down_delay_s"):
        Adapter(vs_problem, scale_down_delay_s=-1)
    with pytest.raises(ValidationError, match="re-plans variant_selection or pipeline"):
        Adapter(object())
    with pytest.raises(ValidationError, match="forecast_rps"):
        Adapter(vs_problem).decide(float("nan"))
