"""The best bound a fleet solve reports holds for the fleet problem, not only for the MILP's pattern set.

The MILP over the columns of a column generation cut short bounds only plans of those columns: its ``best_bound``
(14.21 on examples/fleet_shared.yaml, "relative gap 1.25e-16") was reported as the problem's while the plan said
"no lower bound". Every case here is deterministic: column generation is cut short by a pricing budget of 1 or a
stubbed pricing search, never by a clock.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

import servopt
from servopt.formulations.fleet import colgen, formulation
from servopt.formulations.fleet.colgen import Generated
from servopt.formulations.fleet.space import SearchBudget
from servopt.formulations.registry import load_problem, problem_from_mapping
from servopt.result import Result, Status

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fleet_shared.yaml"


def cut_short(problem):
    """``problem`` with column generation forced (enumeration budget 1) and its first exact pricing cut (budget 1):
    no lower bound is proven, whatever the clock says."""
    return dataclasses.replace(problem, enumeration_budget=1, pricing_budget=1)


@pytest.fixture(scope="module")
def shared():
    return load_problem(EXAMPLE)


@pytest.fixture(scope="module")
def unproven(shared):
    q = cut_short(shared)
    return q, servopt.solve(q)


def test_unproven_column_generation_reports_no_best_bound(unproven):
    q, sol = unproven
    assert q._generated.method == "column generation" and not q._generated.complete
    assert q._generated.lower_bound is None
    assert sol.status is Status.FEASIBLE and sol.plan.lower_bound is None and sol.plan.gap is None
    # the restricted MILP was solved to optimality: its bound is its own optimum, no bound on the fleet problem
    assert sol.result.best_bound is None
    assert "holds only over the columns generated so far" in sol.message
    assert any("no lower bound (column generation did not prove" in n for n in sol.plan.notes)


def test_cli_json_and_text_give_no_bound_without_one(monkeypatch, capsys):
    from servopt.cli import main

    real = formulation.generate
    monkeypatch.setattr(formulation, "generate", lambda problem: real(cut_short(problem)))
    assert main(["solve", str(EXAMPLE), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "feasible"
    assert "best_bound" not in out and "gap" not in out
    assert out["plan"]["lower_bound"] is None and out["plan"]["gap"] is None
    assert main(["solve", str(EXAMPLE)]) == 0
    err = capsys.readouterr().err
    assert "not proven optimal" in err and "best bound" not in err and "relative gap" not in err


def restricted_result(status: Status, best_bound: float | None, objective: float | None = None) -> Result:
    return Result(status=status, objective=objective, best_bound=best_bound, values=None, backend="stub",
                  build_seconds=0.0, solve_seconds=0.0,
                  message="stopped by the time limit: relative gap to the best bound 0.0116")


def test_time_limited_milp_over_unproven_columns_drops_its_bound(unproven):
    """The path where the MILP itself stops at the time limit (status feasible, its own bound): the problem's
    ``reported`` result has no bound and says why."""
    q, sol = unproven
    res = q.reported(sol.plan, restricted_result(Status.FEASIBLE, 14.0458, sol.objective))
    assert res.best_bound is None and res.status is Status.FEASIBLE
    assert "best bound 14.0458 holds only over the columns generated so far" in res.message
    assert q.reported(sol.plan, res) == res  # idempotent: refine and solve may both apply it


def test_a_proven_lp_bound_replaces_the_milp_bound(shared):
    """Column generation converged (LP bound proven) but the columns that could close the gap were not all listed:
    the bound reported is the LP bound, not the MILP's over the generated columns."""
    full = servopt.solve(shared)
    gen = Generated(shared._generated.patterns, "column generation", complete=False,
                    lower_bound=13.5, notes=["column generation: LP bound 13.5; ..."])
    q = dataclasses.replace(shared)
    object.__setattr__(q, "_generated", gen)
    plan = formulation._with_bound(q, full.plan, gen, restricted_result(Status.OPTIMAL, full.objective,
                                                                        full.objective))
    assert plan.lower_bound == pytest.approx(13.5) and not plan.proven_optimal
    _, res = q.refine(plan, restricted_result(Status.OPTIMAL, full.objective, full.objective), None)
    assert res.status is Status.FEASIBLE and res.best_bound == pytest.approx(13.5)
    assert plan.gap == pytest.approx((full.objective - 13.5) / full.objective)


def test_complete_pattern_set_keeps_the_solvers_bound(shared):
    """Full enumeration: the MILP is the problem, so a time-limited MILP's bound is the problem's."""
    sol = servopt.solve(shared)
    assert shared._generated.complete and sol.status is Status.OPTIMAL
    assert sol.result.best_bound == pytest.approx(sol.objective)
    gen = shared._generated
    plan = formulation._with_bound(shared, sol.plan, gen, restricted_result(Status.FEASIBLE, 12.0, sol.objective))
    res = shared.reported(plan, restricted_result(Status.FEASIBLE, 12.0, sol.objective))
    assert plan.lower_bound == pytest.approx(max(gen.lower_bound, 12.0))
    assert res.best_bound == plan.lower_bound and "holds only" not in res.message


TWO_ON_ONE = {
    "problem": "fleet", "objective": "cost",
    "gpu_types": [{"name": "L4", "count": 1, "memory_mb": 20000, "price_per_hour": 1.0}],
    "models": [{"name": n, "rate_rps": 10, "slo_ms": 100, "slo": "p99",
                "performance": {"L4": {"latency_ms": {1: 5.0}, "memory_mb": {"instance": 1000}}}}
               for n in ("a", "b")],
}


def test_no_plan_over_unproven_columns_is_not_called_infeasible(monkeypatch):
    """Two models fit one L4 only together; the one-model start columns cannot cover both, and a pricing search
    cut short proves nothing: the restricted MILP's 'infeasible' is no proof."""
    p = problem_from_mapping(copy.deepcopy(TWO_ON_ONE), "two.yaml")
    assert servopt.solve(p).status is Status.OPTIMAL

    def cut(*args, **kwargs):
        raise SearchBudget("stubbed budget")

    monkeypatch.setattr(colgen, "_price", cut)
    q = dataclasses.replace(p, enumeration_budget=1)
    sol = servopt.solve(q)
    assert not q._generated.complete and not q._generated.infeasible
    res = q.reported(None, restricted_result(Status.INFEASIBLE, 3.0))
    assert res.status is Status.ERROR and res.best_bound is None
    assert "not a proof that none exists" in res.message
    # servopt.solve applies it to every answer, with a plan or without
    assert sol.plan is None and sol.status is Status.ERROR
    assert "not a proof that none exists" in sol.message
