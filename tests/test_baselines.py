"""Baseline policies: brute force is exact, the others return feasible plans of the same type, never better than
the optimum, each honouring its restriction (FA2: variants fixed, RIM: replicas fixed, MS+: one variant)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import servopt
from servopt.exceptions import ValidationError
from servopt.policies import POLICIES, run_policy
from servopt.testing.oracles import (
    check_pipeline_plan,
    check_variant_selection_plan,
    exhaustive_pipeline,
    exhaustive_variant_selection,
    random_pipeline,
    random_variant_selection,
)
from servopt.formulations.pipeline.problem import PipelinePlan
from servopt.formulations.variant_selection.problem import VariantSelectionPlan
from servopt.formulations.registry import load_problem
from servopt.result import Status
from servopt.solve import Solution

N_INSTANCES = 120
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_registry_and_errors():
    assert set(POLICIES) == {"bruteforce", "greedy", "fa2", "rim", "ms+", "fleet_ffd", "fleet_one_per_gpu",
                             "fleet_cheapest_type"}
    vs = random_variant_selection(1)
    pl = random_pipeline(1)
    with pytest.raises(ValidationError, match="unknown policy 'best'.*bruteforce"):
        run_policy(vs, "best")
    with pytest.raises(ValidationError, match="policy 'fa2' applies to pipeline problems"):
        run_policy(vs, "fa2")
    with pytest.raises(ValidationError, match="policy 'ms\\+' applies to variant_selection"):
        run_policy(pl, "ms+")
    with pytest.raises(ValidationError, match="unknown option.*colour.*allowed: replicas, backend"):
        run_policy(pl, "rim", options={"colour": 1})


def test_bruteforce_refuses_huge_spaces():
    problem = load_problem(EXAMPLES / "pipeline_video.yaml")
    with pytest.raises(ValidationError, match="exceed max_combinations=10"):
        run_policy(problem, "bruteforce", options={"max_combinations": 10})


# ----------------------------------------------------------------------------------------- variant_selection
def test_variant_selection_policies_on_random_instances():
    optimal = worse = 0
    for seed in range(N_INSTANCES):
        problem = random_variant_selection(seed)
        best = exhaustive_variant_selection(problem)
        brute = run_policy(problem, "bruteforce")
        assert isinstance(brute, Solution) and brute.backend == "policy:bruteforce"
        if best is None:
            assert brute.status is Status.INFEASIBLE and "exceeds the largest load" in brute.message
            assert run_policy(problem, "greedy").plan is None
            assert run_policy(problem, "ms+").plan is None
            continue
        assert brute.status is Status.OPTIMAL and brute.objective == pytest.approx(best[0], abs=1e-9)
        if problem.prefer_stable:
            assert brute.plan.changes == best[1]
        for name in ("greedy", "ms+"):
            out = run_policy(problem, name)
            if out.plan is None:  # a heuristic may miss a feasible plan; ms+ needs one variant carrying all
                assert out.status is Status.INFEASIBLE
                continue
            assert out.status is Status.FEASIBLE and isinstance(out.plan, VariantSelectionPlan)
            assert check_variant_selection_plan(problem, out.plan) == [], (name, seed)
            assert out.objective <= best[0] + 1e-9
            if name == "ms+":
                assert len(out.plan.variants) == 1
                assert out.objective == pytest.approx(_best_single_variant(problem), abs=1e-12)
            else:
                optimal += out.objective >= best[0] - 1e-9
                worse += out.objective < best[0] - 1e-9
    assert optimal > 0 and worse > 0  # greedy is a heuristic: right on some instances, not all


def _best_single_variant(problem) -> float:
    scores = []
    for v in problem.variants:
        for k in v.allowed_cores(problem.core_budget):
            plan = problem.evaluate({v.name: k})
            if plan is not None:
                scores.append(plan.objective)
    return max(scores)


def test_greedy_downgrades_until_the_budget_fits():
    problem = load_problem(EXAMPLES / "variant_selection_infadapter.yaml")
    for lam in (10.0, 120.0, 300.0, 450.0):
        out = run_policy(problem.update(workload_rps=lam), "greedy")
        assert out.plan is not None and out.plan.cores <= 20
        assert check_variant_selection_plan(problem.update(workload_rps=lam), out.plan) == []
    assert run_policy(problem.update(workload_rps=480.0), "greedy").status is Status.INFEASIBLE


# ------------------------------------------------------------------------------------------------ pipeline
def test_pipeline_policies_on_random_instances():
    checked = 0
    for seed in range(N_INSTANCES):
        problem = random_pipeline(seed)
        best = exhaustive_pipeline(problem)
        brute = run_policy(problem, "bruteforce")
        if best is None:
            assert brute.status is Status.INFEASIBLE and brute.message
            assert run_policy(problem, "greedy").plan is None
            continue
        assert brute.status is Status.OPTIMAL and brute.objective == pytest.approx(best[0], abs=1e-9)
        if problem.prefer_stable and problem.current is not None:
            assert brute.plan.changes == best[1]
        greedy = run_policy(problem, "greedy")
        if greedy.plan is not None:
            assert greedy.status is Status.FEASIBLE and isinstance(greedy.plan, PipelinePlan)
            assert check_pipeline_plan(problem, greedy.plan) == [] and greedy.objective <= best[0] + 1e-9
        lowest = {s.name: min(s.variants, key=lambda v: v.accuracy).name for s in problem.stages}
        fa2 = run_policy(problem, "fa2", options={"variants": "lowest", "backend": "highs"})
        restricted = problem.restricted(variants=lowest)
        ref = exhaustive_pipeline(restricted)
        _same(fa2, ref, restricted, best)
        if fa2.plan is not None:
            assert {s.name: s.variant for s in fa2.plan.stages} == lowest
        rim = run_policy(problem, "rim", options={"replicas": 1, "backend": "highs"})
        restricted = problem.restricted(replicas=1)
        _same(rim, exhaustive_pipeline(restricted), restricted, best)
        if rim.plan is not None:
            assert all(s.replicas == 1 for s in rim.plan.stages)
        checked += 1
    assert checked >= 50


def _same(solution, ref, restricted, best):
    """A restricted policy equals the brute-force optimum of its restricted problem."""
    if ref is None:
        assert solution.status is Status.INFEASIBLE and solution.plan is None
        return
    assert solution.status is Status.FEASIBLE  # optimal only for the restricted problem
    assert check_pipeline_plan(restricted, solution.plan) == []
    assert solution.objective == pytest.approx(ref[0], abs=1e-9) and solution.objective <= best[0] + 1e-9


def test_fa2_and_rim_defaults_follow_the_running_deployment():
    problem = load_problem(EXAMPLES / "pipeline_video.yaml")  # current: yolov5n + resnet18, batch 1
    fa2 = run_policy(problem, "fa2")
    assert [s.variant for s in fa2.plan.stages] == ["yolov5n", "resnet18"]
    exact = servopt.solve(problem, "highs")
    first = exact.plan
    rim = run_policy(problem.update(current=first), "rim")
    assert [s.replicas for s in rim.plan.stages] == [s.replicas for s in first.stages]
    assert rim.objective == pytest.approx(exact.objective)  # the optimum itself keeps its replicas
    surge = run_policy(problem.update(workload_rps=80.0, current=first), "rim")
    assert surge.status is Status.INFEASIBLE and "replicas fixed to" in surge.message
    assert [s.replicas for s in run_policy(problem, "rim").plan.stages] == [3, 3]  # IPA's initial_replica
    high = run_policy(problem, "fa2", options={"variants": "highest"})
    assert [s.variant for s in high.plan.stages] == ["yolov5x", "resnet152"]
    assert high.objective <= exact.objective


# ------------------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("example, policy", [("variant_selection_infadapter.yaml", "ms+"),
                                             ("variant_selection_infadapter.yaml", "greedy"),
                                             ("pipeline_video.yaml", "fa2"), ("pipeline_nlp.yaml", "bruteforce")])
def test_cli_solve_with_a_policy(example, policy):
    out = subprocess.run([sys.executable, "-m", "servopt", "solve", str(EXAMPLES / example), "--policy", policy,
                          "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["backend"] == f"policy:{policy}" and data["plan"] is not None
    assert data["status"] == ("optimal" if policy == "bruteforce" else "feasible")


def test_cli_rejects_an_unknown_policy():
    out = subprocess.run([sys.executable, "-m", "servopt", "solve", str(EXAMPLES / "pipeline_nlp.yaml"),
                          "--policy", "nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown policy 'nope'" in out.stderr and "Traceback" not in out.stderr
