"""The adaptation loop's stabilisation clock, superseded rollouts, per-interval rates and random streams.

Each test pins down one behaviour of ``servopt.serving.adapt`` that ``docs/replay.md`` states: the scale-down hold
counts only while forecasts stay below the planned load; a newer plan supersedes a rollout that is not live yet;
the last, partial interval's mean rate is over its own seconds; the routing draws do not repeat the arrival draws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import servopt
from servopt.serving.adapt import Adapter, FunctionForecaster, replay
from servopt.serving.simulate import deployment_from_plan, simulate_schedule


@pytest.fixture(scope="module")
def vs_problem(root: Path):
    return servopt.load_problem(root / "examples" / "variant_selection_infadapter_fit.yaml")


# ------------------------------------------------------------------------------------------ the scale-down clock
def test_scale_down_hold_restarts_when_a_forecast_reaches_the_plan(vs_problem) -> None:
    """A forecast at or above the planned load, even one kept by ``min_change``, restarts the hold: scale-down
    needs ``scale_down_delay_s`` of forecasts below the plan in a row."""
    a = Adapter(vs_problem, scale_down_delay_s=120, min_change=0.2)
    steps = [(0, 200), (30, 100), (60, 230), (90, 230), (120, 230), (150, 100), (180, 100), (240, 100),
             (270, 100)]
    actions = [a.decide(f, now=t).action for t, f in steps]
    assert actions == ["initial", "keep-scale-down-delay"] + ["keep-min-change"] * 3 + [
        "keep-scale-down-delay"] * 3 + ["replan"]
    assert a.decisions[-1].planned_rps == 100 and a.decisions[-1].changed
    # forecasts below the plan but within min_change of it are below the plan: the hold counts on through them
    b = Adapter(vs_problem, scale_down_delay_s=60, min_change=0.2)
    b.decide(200.0, now=0.0)
    assert b.decide(100.0, now=30.0).action == "keep-scale-down-delay"   # the clock starts at 30
    assert b.decide(190.0, now=60.0).action == "keep-min-change"          # still below: the clock runs on
    assert b.decide(100.0, now=90.0).action == "replan"                   # 60 s below the plan


# ------------------------------------------------------------------------------------------ superseded rollouts
def _decision_at(result, t: float):
    return next(d for d in result.decisions if d.time_s == t)


def test_a_faster_newer_rollout_supersedes_a_pending_one(vs_problem) -> None:
    """The reviewer's case: the t = 2 plan (ResNet-152 on 4 cores, 8.52 s to load) would go live at 10.52 s;
    the t = 3 plan (ResNet-18/50, 6.82 s) is ready at 9.82 s and replaces it, and what the simulator runs is
    what the adapter decided."""
    r = replay(vs_problem, [20, 20, 300, 40] + [40] * 56, interval_s=1, slo_ms=750, apply_delay="load")
    d2, d3 = _decision_at(r, 2.0), _decision_at(r, 3.0)
    assert d2.plan.loading_cost_s == pytest.approx(8.52) and d3.plan.loading_cost_s == pytest.approx(6.82)
    starts = [s for s, _ in r.schedule]
    assert starts[2] == pytest.approx(9.82) and 10.52 not in starts
    assert r.schedule[2][1] == deployment_from_plan(vs_problem, d3.plan, slo_ms=750)
    # every entry is a decided plan, live no earlier than each of its models could be loaded: one that no earlier
    # decided plan runs loads from its decision for the variant's load_time_s
    load_s = {v.name: float(v.load_time_s) for v in vs_problem.variants}

    def loaded_by(d, start: float) -> bool:
        earlier = {u for e in r.decisions if e.time_s < d.time_s for u in e.plan.deployment.items()}
        return all(u in earlier or start >= d.time_s + load_s[u[0]] - 1e-9 for u in d.plan.deployment.items())

    for start, dep in r.schedule[1:]:
        assert any(deployment_from_plan(vs_problem, d.plan, slo_ms=750) == dep and loaded_by(d, start)
                   for d in r.decisions if d.time_s <= start)


def test_a_plan_equal_to_a_pending_one_waits_for_its_models(vs_problem) -> None:
    """Forecasts chosen so that: t = 2 starts loading ResNet-152 x4 (until 10.52 s); t = 3 asks for ResNet-18/50
    (ready at 9.82 s: supersedes it); t = 4 returns to ResNet-152 x4 (ready at 12.52 s); from t = 5 the same
    deployment with other shares is decided again and again: it keeps the 12.52 s of its models instead of going
    live before they are loaded, and each newer one replaces the entry at 12.52 s."""
    table = {1: 20.0, 2: 9.0, 3: 300.0, 4: 9.0}
    fc = FunctionForecaster(lambda h: table.get(h.size, 10.0))
    r = replay(vs_problem, np.full(30, 20.0), interval_s=1, slo_ms=750, apply_delay="load", forecaster=fc)
    assert _decision_at(r, 4.0).plan.deployment == {"resnet152": 4}
    assert all(d.plan.deployment == {"resnet152": 4} and not d.changed for d in r.decisions[5:])
    starts = [s for s, _ in r.schedule]
    assert starts[:4] == pytest.approx([0.0, 1.0, 9.82, 12.52])
    assert starts[4:] == list(np.arange(13.0, 30.0))  # loaded: new shares apply at once
    assert r.schedule[2][1] == deployment_from_plan(vs_problem, _decision_at(r, 3.0).plan, slo_ms=750)
    assert r.schedule[3][1] == deployment_from_plan(vs_problem, _decision_at(r, 12.0).plan, slo_ms=750)


def test_a_plan_returning_to_the_live_deployment_is_not_charged_a_load(vs_problem) -> None:
    """The reviewer's case: L (ResNet-152 x8) is live from t = 1; t = 2 decides P (ResNet-18/50, loading until
    8.82 s); t = 3 decides N = ResNet-152 x8 again. Those models are loaded and serving, so N goes live at once
    and supersedes P, which never serves. It went live at 3 + 8.52 = 11.52 s, after P, as if ResNet-152 x8 had
    to be loaded afresh: only the latest decided plan's models counted as loaded."""
    fc = FunctionForecaster(lambda h: 300.0 if h.size == 2 else 20.0)
    r = replay(vs_problem, np.full(20, 20.0), interval_s=1, slo_ms=750, apply_delay="load", forecaster=fc)
    live, pending, back = _decision_at(r, 1.0), _decision_at(r, 2.0), _decision_at(r, 3.0)
    assert live.plan.deployment == back.plan.deployment == {"resnet152": 8}
    assert pending.plan.deployment == {"resnet18": 13, "resnet50": 7}
    starts = [s for s, _ in r.schedule]
    assert starts[:3] == [0.0, 1.0, 3.0] and 8.82 not in starts and 11.52 not in starts
    pending_dep = deployment_from_plan(vs_problem, pending.plan, slo_ms=750)
    assert all(dep != pending_dep for _, dep in r.schedule)
    assert r.schedule[2][1] == deployment_from_plan(vs_problem, back.plan, slo_ms=750)


# ------------------------------------------------------------------------------------------ per-interval series
def test_series_rate_of_a_partial_last_interval(vs_problem) -> None:
    """45 s of 100 RPS in 30 s intervals: the last interval has 15 s, and its mean rate is about 100 RPS."""
    r = replay(vs_problem, np.full(45, 100.0), interval_s=30, slo_ms=750)
    s = r.series()
    assert s["start_s"].tolist() == [0.0, 30.0]
    assert s["observed_rps"].tolist() == pytest.approx([s["requests"][0] / 30, s["requests"][1] / 15])
    assert s["observed_rps"][1] == pytest.approx(100, rel=0.1)


# ------------------------------------------------------------------------------------------ random streams
def test_replay_draws_routing_from_the_arrivals_stream(vs_problem) -> None:
    """A replay that keeps its first plan is the plain simulation of that plan with the same seed: arrivals, then
    routing, from one random stream (the routing draws are not a second copy of the arrival draws)."""
    rates = np.full(120, 200.0)
    r = replay(vs_problem, rates, policy="static", interval_s=30, slo_ms=750, seed=3)
    plan = r.decisions[0].plan
    assert len(plan.variants) > 1  # routing between variants matters
    direct = simulate_schedule(r.schedule, rates, slo_ms=750, seed=3)
    np.testing.assert_array_equal(direct.arrival_s, r.report.arrival_s)
    np.testing.assert_array_equal(direct.latency_s, r.report.latency_s)
    np.testing.assert_array_equal(direct.accuracy, r.report.accuracy)
