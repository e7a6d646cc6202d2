"""Plans at the exact boundary of a constraint (within a solver's or the models' float tolerance, but outside
exactly): every path repairs them or reports infeasibility; none crashes or returns "optimal" without a plan.

The expected answers come from brute force over the docs' formulas (docs/formulations.md) in exact fractions.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

import servopt
from servopt.backends import available
from servopt.exact import dec
from servopt.exceptions import ValidationError
from servopt.formulations.pipeline.problem import BatchProfile, Pipeline, Stage, StageDeployment, StageVariant
from servopt.formulations.variant_selection.types import Variant
from servopt.policies import run_policy
from servopt.result import Status

MILP = [b for b in ("highs", "scip", "cvxpy", "gurobi") if b in available()]


# ------------------------------------------------------------------------------------------ brute force
def _bf_pipeline(p: Pipeline) -> Fraction | None:
    """Best objective over every (variant, batch, replicas 1..max_replicas), decided exactly (sum, no rank)."""
    lam, best = dec(p.workload_rps), None
    per_stage = []
    for st in p.stages:
        per_stage.append([(v, b, n) for v in st.variants for b in v.batches
                          for n in range(1, p.max_replicas + 1)
                          if n * 1000 * dec(b.batch_size) / dec(b.latency_ms) >= lam])
    for combo in itertools.product(*per_stage):
        latency = sum((dec(b.latency_ms) + Fraction(1000 * (b.batch_size - 1)) / lam for _, b, _ in combo),
                      Fraction(0))
        if latency > dec(p.sla_ms):
            continue
        value = (dec(p.alpha) * sum((dec(v.accuracy) for v, _, _ in combo), Fraction(0))
                 - dec(p.beta) * sum(dec(v.cores) * n for v, _, n in combo)
                 - dec(p.delta) * sum(b.batch_size for _, b, _ in combo))
        best = value if best is None or value > best else best
    return best


def _bf_variants(p: servopt.VariantSelection) -> Fraction | None:
    """Best §4.3 objective over every core vector (gamma 0), exact greedy split."""
    lam, best = dec(p.workload_rps), None
    choices = [[0] + v.allowed_cores(p.core_budget) for v in p.variants]
    for counts in itertools.product(*choices):
        if sum(counts) > p.core_budget:
            continue
        caps = [dec(v.capacity[c]) if c else Fraction(0) for v, c in zip(p.variants, counts)]
        if sum(caps, Fraction(0)) < lam:
            continue
        left, acc = lam, Fraction(0)
        for i in sorted(range(len(caps)), key=lambda j: -p.variants[j].accuracy):
            take = min(caps[i], left)
            acc += take * dec(p.variants[i].accuracy)
            left -= take
        value = dec(p.alpha) * acc / lam - dec(p.beta) * sum(counts) / p.core_budget
        best = value if best is None or value > best else best
    return best


# ------------------------------------------------------------------------------------------- problems
def _sla_from_plan() -> Pipeline:
    """SLA = the printed latency of 'big' b2 (1300/3 ms exactly), 3e-14 below it: only 'small' b1 fits."""
    stage = Stage("s", [StageVariant("big", 0.9, 1, [BatchProfile(2, 100.0)]),
                        StageVariant("small", 0.5, 1, [BatchProfile(1, 50.0)])])
    return Pipeline(3, 433.3333333333333, [stage], alpha=1, beta=0, delta=0, normalize="none")


def _vs_border(workload: float = 100) -> servopt.VariantSelection:
    """a + b serve 99.999999 RPS (1e-6 short of 100, within a solver's tolerance); c alone serves 100."""
    return servopt.VariantSelection(workload, 4, [
        Variant("a", 0.9, {2: 60}, min_cores=2), Variant("b", 0.8, {2: 39.999999}, min_cores=2),
        Variant("c", 0.1, {4: 100})], gamma=0)


# -------------------------------------------------------------------------------------- 1. repair
@pytest.mark.parametrize("backend", ["auto", "dp", *MILP])
def test_pipeline_sla_border_is_repaired(backend):
    p = _sla_from_plan()
    s = servopt.solve(p, backend)
    assert s.status is Status.OPTIMAL
    assert [(x.variant, x.batch_size) for x in s.plan.stages] == [("small", 1)]
    assert dec(s.objective) == _bf_pipeline(p) == Fraction(1, 2)
    assert not p.verify(s.plan)


@pytest.mark.parametrize("backend", ["auto", "frontier", *MILP])
@pytest.mark.parametrize("workload", [100, 1e-6])
def test_variant_selection_capacity_border_is_repaired(backend, workload):
    p = _vs_border(workload)
    s = servopt.solve(p, backend)
    assert s.status is Status.OPTIMAL, s.message
    assert not p.verify(s.plan)
    assert abs(Fraction(s.objective) - _bf_variants(p)) < Fraction(1, 10**12)
    if workload == 100:
        assert s.plan.deployment == {"c": 4}


# -------------------------------------------------------------------------------------- 2. policies
@pytest.mark.parametrize("policy", ["bruteforce", "greedy"])
def test_policies_filter_with_the_exact_check(policy):
    for p, want in ((_sla_from_plan(), Fraction(1, 2)), (_vs_border(), None)):
        s = run_policy(p, policy)
        assert s.plan is not None and s.objective is not None, (policy, s)
        assert not p.verify(s.plan)
        if policy == "bruteforce":
            expected = want if want is not None else _bf_variants(p)
            assert abs(Fraction(s.objective) - expected) < Fraction(1, 10**12)


# ---------------------------------------------------------------------- 3. one exact rule for the load
@pytest.mark.parametrize("backend", ["auto", "dp", "frontier", *MILP])
def test_variant_selection_load_above_exact_capacity_is_infeasible(backend):
    p = servopt.VariantSelection(0.1 + 0.2, 2, [Variant("a", 0.8, {1: 0.1}), Variant("b", 0.7, {1: 0.2})])
    assert _bf_variants(p) is None
    s = servopt.solve(p, backend)
    assert s.status is Status.INFEASIBLE and s.plan is None
    assert "workload_rps 0.30000000000000004 exceeds the largest load" in s.message
    assert "0.3 RPS" in s.message


@pytest.mark.parametrize("policy", ["bruteforce", "greedy"])
def test_policies_load_above_exact_capacity(policy):
    p = servopt.VariantSelection(0.1 + 0.2, 2, [Variant("a", 0.8, {1: 0.1}), Variant("b", 0.7, {1: 0.2})])
    s = run_policy(p, policy)
    assert s.status is Status.INFEASIBLE and s.plan is None


# ------------------------------------------------------------------------------------------- 4. rim
def test_rim_default_replicas_from_the_current_deployment_are_explained():
    stage = Stage("detect", [StageVariant("small", 0.5, 1, [BatchProfile(1, 100.0)]),
                             StageVariant("big", 0.7, 2, [BatchProfile(1, 200.0)])])
    p = Pipeline(10, 2000, [stage], max_replicas=3, current={"detect": StageDeployment("small", 1, 5)})
    with pytest.raises(ValidationError, match=r"current deployment.*'detect' runs 5 replicas.*max_replicas 3"):
        run_policy(p, "rim")
    s = run_policy(p, "rim", options={"replicas": 3})
    assert s.plan is not None and not p.verify(s.plan)
