"""``min_gpus`` / ``max_throughput`` with extreme numbers: latencies of 1e-6 to 1e-9 ms put 1e12 to 1e15 batches on
one GPU, beyond what float MILP solvers decide within their tolerances. What a user gets is never a wrong
``infeasible`` and never a raised solver error: such answers go to the problem's exact fallback (CP-SAT on
integer data), and the answer is checked against a brute-force count of GPUs.

Measured before the change (HiGHS 1.16, SCIP in OR-Tools, Gurobi 13.0.3, CP-SAT): on a 288-instance sweep
(latency 1e-6..1e-7 ms, 3..10 GPUs, both formulations) Gurobi said ``infeasible`` on 75 feasible per_gpu
instances, HiGHS ended ``error`` on 130 (cvxpy 135), and CP-SAT answered all 288 correctly; HiGHS raised
``SolverError`` when an image count exceeded 1e15 (its ``passModel`` refuses such matrix entries).
"""

from __future__ import annotations

import importlib
from fractions import Fraction
from itertools import product

import pytest

import servopt
from servopt import GPUType, MaxThroughput, MinGPUs, Status
from servopt.exceptions import SolverError
from servopt.result import Result
from tests._backends import require_backend

#: the module (``servopt.solve`` is the function of that name)
solve_module = importlib.import_module("servopt.solve")

DEADLINE_S = 3600


def _pool(latency_ms: float, count: int) -> list[GPUType]:
    """One GPU type: batch 1 at ``latency_ms``, batch 7 at three times that (7/3 the images per GPU)."""
    return [GPUType("A", max_count=count, batches={1: {"latency_ms": latency_ms},
                                                    7: {"latency_ms": 3 * latency_ms}})]


def _brute_force_gpus(problem: MinGPUs) -> int | None:
    """Fewest GPUs by enumerating every split of the pool between batch sizes (None: infeasible), in Fractions.

    A GPU of batch b runs 1 + floor((T - W) / L) batches within T (W = L here); computed from the decimals the
    numbers print as, independently of servopt's k_max.
    """
    (gpu,) = problem.gpus
    limit = Fraction(str(problem.deadline_s)) * 1000
    per_gpu = []
    for point in gpu.batches:
        latency, warmup = Fraction(repr(point.latency_ms)), Fraction(repr(point.warmup_ms))
        per_gpu.append(point.batch_size * (1 + (limit - warmup) // latency) if warmup <= limit else 0)
    best = None
    for counts in product(range(gpu.max_count + 1), repeat=len(per_gpu)):
        used = sum(counts)
        if used <= gpu.max_count and sum(n * c for n, c in zip(counts, per_gpu)) >= problem.images:
            best = used if best is None else min(best, used)
    return best


def _assert_exact(problem: MinGPUs, solution) -> None:
    assert solution.status is Status.OPTIMAL, solution.message
    assert problem.verify(solution.plan) == []
    assert solution.objective == _brute_force_gpus(problem)


@pytest.mark.gurobi
def test_gurobi_infeasible_claim_on_a_feasible_per_gpu_instance_is_re_solved_exactly():
    # the reported instance: Gurobi's presolve leaves rows with 3.6e12 coefficients and its root LP says
    # infeasible (Presolve=0 finds 3 GPUs); before, servopt returned 'infeasible' and a message saying the pool
    # can process 2.52e13 images, more than the 1.68e13 requested
    require_backend("gurobi")
    problem = MinGPUs(images=16_800_000_012_345, deadline_s=DEADLINE_S, gpus=_pool(1e-6, 3), formulation="per_gpu")
    solution = servopt.solve(problem, "gurobi")
    _assert_exact(problem, solution)
    assert solution.objective == 3
    if solution.backend == "cpsat":  # Gurobi said infeasible: the note names the contradiction and the re-solve
        assert "gurobi reported infeasible, but the 3 GPUs of largest capacity process" in solution.message
        assert "re-solved exactly with cpsat: the plan passes the exact check" in solution.message


@pytest.mark.parametrize(("formulation", "backend"), [("per_gpu", "highs"), ("aggregated", "highs"),
                                                      pytest.param("per_gpu", "cvxpy", marks=pytest.mark.slow)])
def test_a_backend_error_is_re_solved_exactly(formulation, backend):
    # HiGHS ended with model status kSolveError on both formulations (cvxpy, HiGHS behind it, failed too); before,
    # the answer was 'error' with no plan although 2 GPUs suffice
    require_backend(backend)
    problem = MinGPUs(images=8_400_000_000_003, deadline_s=DEADLINE_S, gpus=_pool(1e-6, 3), formulation=formulation)
    solution = servopt.solve(problem, backend)
    _assert_exact(problem, solution)
    assert solution.objective == 2


@pytest.mark.parametrize("formulation", ["per_gpu", "aggregated"])
def test_a_solver_error_raised_by_the_backend_is_re_solved_exactly(formulation):
    # 8.4e15 images per GPU: HiGHS's passModel refuses matrix entries above 1e15 and the backend raised
    # SolverError out of servopt.solve
    require_backend("highs")
    problem = MinGPUs(images=8_400_000_000_000_001, deadline_s=DEADLINE_S, gpus=_pool(1e-9, 3),
                      formulation=formulation)
    solution = servopt.solve(problem, "highs")
    _assert_exact(problem, solution)
    assert solution.objective == 2
    if solution.backend == "cpsat":
        assert solution.message.startswith("highs ended with an error (HiGHS rejected model")


@pytest.mark.parametrize(("latency_ms", "count", "images"), [(1e-6, 7, 16_800_000_012_345),
                                                             (1e-6, 10, 16_800_000_012_345),
                                                             (7e-7, 10, 24_000_000_012_335)])
def test_a_plan_that_fails_the_exact_check_is_replaced_by_the_exact_optimum(latency_ms, count, images):
    # SCIP's plan is 12,341 / 12,345 / 11,172 images short; before, SCIP with tightened tolerances repaired it and
    # called 7 / 10 / 10 GPUs optimal where 3 suffice: the exact fallback now comes first
    require_backend("scip")
    problem = MinGPUs(images=images, deadline_s=DEADLINE_S, gpus=_pool(latency_ms, count), formulation="per_gpu")
    solution = servopt.solve(problem, "scip")
    _assert_exact(problem, solution)
    assert solution.objective == 3


def _fake_backend(monkeypatch, status: Status, solve_seconds: float = 0.0) -> list[str]:
    """HiGHS answers ``status`` without solving; every backend actually run is recorded in the returned list."""
    real = solve_module._solve_model
    ran: list[str] = []

    def fake(model, backend, params, clock=None):
        ran.append(backend)
        if backend == "highs":
            return Result(status=status, objective=None, best_bound=None, values=None, backend="highs",
                          build_seconds=0.0, solve_seconds=solve_seconds, message="made up")
        return real(model, backend, params, clock)

    monkeypatch.setattr(solve_module, "_solve_model", fake)
    return ran


def test_an_infeasible_claim_is_refused_only_when_a_plan_passes_the_exact_check(monkeypatch):
    ran = _fake_backend(monkeypatch, Status.INFEASIBLE)
    feasible = MinGPUs(images=16_800_000_012_345, deadline_s=DEADLINE_S, gpus=_pool(1e-6, 3), objective="gpus",
                       formulation="per_gpu")
    solution = servopt.solve(feasible, "highs")
    _assert_exact(feasible, solution)
    assert ran == ["highs", "cpsat"] and solution.backend == "cpsat"
    assert solution.message.startswith("highs reported infeasible, but the 3 GPUs of largest capacity process "
                                       "25,200,000,000,000 images, at least the 16,800,000,012,345 requested")

    ran.clear()  # one image more than the pool processes: the claim stands and nothing else is solved
    beyond = MinGPUs(images=25_200_000_000_001, deadline_s=DEADLINE_S, gpus=_pool(1e-6, 3), formulation="per_gpu")
    assert _brute_force_gpus(beyond) is None
    solution = servopt.solve(beyond, "highs")
    assert solution.status is Status.INFEASIBLE and solution.plan is None and ran == ["highs"]
    assert solution.message.startswith("the whole pool processes at most")


def test_a_max_throughput_infeasible_claim_is_refused_when_one_gpu_is_within_the_budget(monkeypatch):
    ran = _fake_backend(monkeypatch, Status.INFEASIBLE)
    pool = [GPUType("A", max_count=3, cost_per_hour=2.5, batches={8: {"latency_ms": 1e-6}}),
            GPUType("B", max_count=2, cost_per_hour=1.25, batches={8: {"latency_ms": 3e-6}})]
    problem = MaxThroughput(deadline_s=DEADLINE_S, gpus=pool, budget_per_hour=3.75)
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.OPTIMAL and problem.verify(solution.plan) == []
    assert ran == ["highs", "cpsat"]
    assert solution.message.startswith("highs reported infeasible, but one B GPU at batch size 8 processes")
    # A + B (3.75 per hour) is the best within the budget: 8 x 3.6e12 + 8 x 1.2e12 images
    assert solution.plan.images == 8 * 3_600_000_000_000 + 8 * 1_200_000_000_000

    ran.clear()  # a budget below the cheapest GPU: no plan exists, the claim stands
    poor = MaxThroughput(deadline_s=DEADLINE_S, gpus=pool, budget_per_hour=1.24)
    solution = servopt.solve(poor, "highs")
    assert solution.status is Status.INFEASIBLE and ran == ["highs"]


def test_an_error_is_re_solved_unless_the_time_limit_ended_it(monkeypatch):
    problem = MinGPUs(images=8_400_000_000_003, deadline_s=DEADLINE_S, gpus=_pool(1e-6, 3), formulation="per_gpu")
    ran = _fake_backend(monkeypatch, Status.ERROR, solve_seconds=0.5)
    solution = servopt.solve(problem, "highs", time_limit_s=60)
    _assert_exact(problem, solution)
    assert ran == ["highs", "cpsat"]
    assert solution.message.startswith("highs ended with an error (made up); re-solved exactly with cpsat")

    ran = _fake_backend(monkeypatch, Status.ERROR, solve_seconds=60.0)  # stopped by the limit: a re-solve overruns it
    solution = servopt.solve(problem, "highs", time_limit_s=60)
    assert solution.status is Status.ERROR and solution.message == "made up" and ran == ["highs"]


def test_a_solver_error_without_an_exact_fallback_is_raised_as_before(monkeypatch):
    # prices with more than 9 decimals: no exact fallback (CP-SAT's scale would overflow), nothing to answer instead
    pool = [GPUType("A", max_count=2, cost_per_hour=1.0000000001, batches={8: {"latency_ms": 1.0}})]
    problem = MinGPUs(images=100, deadline_s=1, gpus=pool, objective="cost")
    assert problem.exact_fallbacks() == []

    def crash(model, backend, params, clock=None):
        raise solve_module._BackendFailure(backend, "made up crash")  # what _solve_model raises for a solver's crash

    monkeypatch.setattr(solve_module, "_solve_model", crash)
    with pytest.raises(SolverError, match="made up crash"):
        servopt.solve(problem, "highs")
    # with a fallback the same crash is an answer: the exact re-solve crashes too, so 'error' with both steps
    fine = MinGPUs(images=100, deadline_s=1, gpus=[GPUType("A", max_count=2, batches={8: {"latency_ms": 1.0}})])
    solution = servopt.solve(fine, "highs")
    assert solution.status is Status.ERROR and solution.plan is None
    assert solution.message.startswith("highs ended with an error (made up crash); re-solving exactly with cpsat "
                                       "was not possible (made up crash)")


def test_the_way_out_names_only_backends_not_tried(monkeypatch):
    # before: "no exactly feasible plan was found; try backend 'cpsat' or 'highs'" after HiGHS, HiGHS with tight
    # tolerances and CP-SAT had all been tried
    from servopt.backends import available

    a100 = GPUType("A100", max_count=4, batches={64: {"latency_ms": 20.0, "warmup_ms": 1500.0}})
    problem = MinGPUs(images=50_000, deadline_s=10, gpus=[a100])
    monkeypatch.setattr(MinGPUs, "verify", lambda self, plan: ["made up violation"])
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.ERROR and solution.plan is None
    way_out = solution.message.rsplit("no exactly feasible plan was found; ", 1)[1]
    left = [name for name in available() if name not in ("highs", "cpsat")]
    expected = ("try backend " + " or ".join(repr(name) for name in left) if left else
                "every installed backend was tried; please report this with the problem file")
    assert way_out == expected
    assert "'highs'" not in way_out and "'cpsat'" not in way_out


def test_a_solver_error_of_servopt_itself_is_never_hidden_behind_a_fallback(monkeypatch):
    # a decoder's or exact algorithm's SolverError is a bug to report: raised even where an exact fallback exists
    problem = MinGPUs(images=100, deadline_s=1, gpus=[GPUType("A", max_count=2, batches={8: {"latency_ms": 1.0}})])
    assert problem.exact_fallbacks()
    model, _ = problem.build()

    def broken_build():
        def decode(result):
            raise SolverError("decoder bug: please report")
        return model, decode

    monkeypatch.setattr(type(problem), "build", lambda self: broken_build())
    with pytest.raises(SolverError, match="decoder bug"):
        servopt.solve(problem, "highs")
