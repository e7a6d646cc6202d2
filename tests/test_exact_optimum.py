"""The exact optimum of ``min_gpus`` (objective gpus) and ``max_throughput`` (no budget), computed without a solver,
and what ``servopt.solve`` does with it: an ``optimal`` claim whose objective differs is re-solved exactly.

The hook must never refuse a true optimum: it is checked against brute-force enumeration
(``servopt.testing.oracles``) on random small pools, and every solve of those pools must pass unchanged. The
per-GPU model's exact cut of a pool too large for it (``per_gpu_blocks``) is checked the same way: the cut pool
has the same optimum as the whole one.
"""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys

import numpy as np
import pytest

import servopt
from servopt import GPUType, MaxThroughput, MinGPUs, Status
from servopt.exceptions import ValidationError
from servopt.formulations.gpu.greedy import Certificate
from servopt.formulations.gpu.plan import plan_from_counts
from servopt.formulations.gpu.types import PER_GPU_LIMIT
from servopt.result import Result
from servopt.testing.oracles import brute_force_gpu, exhaustive_gpu, random_gpu_pool
from tests._backends import require_backend

solve_module = importlib.import_module("servopt.solve")

A100 = GPUType("A100", max_count=4, batches={64: {"latency_ms": 20.0, "warmup_ms": 1500.0}})
T4 = GPUType("T4", max_count=8, batches={64: {"latency_ms": 60.0, "warmup_ms": 900.0}})


def _random_min(seed: int, **kw) -> MinGPUs:
    """A small random pool with an SLO, instances per GPU and max_batch_size now and then, and N near the border of
    what k GPUs process (where a wrong bound shows)."""
    gpus, deadline = random_gpu_pool(seed, **kw)
    rng = np.random.default_rng(seed)
    gpus = [dataclasses.replace(g, instances_per_gpu=int(rng.integers(1, 3))) for g in gpus]
    slo = None if rng.random() < 0.7 else float(round(rng.uniform(1, 60), 1))
    probe = MinGPUs(images=1, deadline_s=deadline, gpus=gpus, latency_slo_ms=slo)
    capacity = probe.capacity()
    caps = sorted((o.images for o in probe.options()), reverse=True) or [1]
    near = [capacity, capacity + 1, caps[0], caps[0] + 1, int(rng.integers(1, max(2, capacity + 2)))]
    images = max(1, int(near[int(rng.integers(len(near)))]))
    formulation = "per_gpu" if rng.random() < 0.5 else "aggregated"
    return MinGPUs(images=images, deadline_s=deadline, gpus=gpus, latency_slo_ms=slo, formulation=formulation)


def _random_max(seed: int, **kw) -> MaxThroughput:
    p = _random_min(seed, **kw)
    return MaxThroughput(deadline_s=p.deadline_s, gpus=p.gpus, latency_slo_ms=p.latency_slo_ms,
                         formulation=p.formulation)


# ------------------------------------------------------------------------------- the hook against brute force
@pytest.mark.parametrize("make", [_random_min, _random_max], ids=["min_gpus", "max_throughput"])
@pytest.mark.parametrize("seed", range(0, 400, 4))
def test_exact_optimum_equals_brute_force(make, seed):
    for s in range(seed, seed + 4):
        problem = make(s, max_types=3, max_count=4, max_sizes=4, deadline_runs=12)
        expected = brute_force_gpu(problem)
        known = problem.exact_optimum()
        assert (known[0] if known else None) == expected, (s, known, expected)


@pytest.mark.parametrize("seed", range(40))
def test_brute_force_agrees_with_every_gpu_choice_on_tiny_pools(seed):
    # the oracle's own argument (each GPU at its best run) checked by enumerating every GPU's own choice
    for problem in (_random_min(5000 + seed, max_types=2, max_count=2, max_sizes=2, deadline_runs=4),
                    _random_max(5000 + seed, max_types=2, max_count=2, max_sizes=2, deadline_runs=4)):
        known = problem.exact_optimum()
        assert (known[0] if known else None) == exhaustive_gpu(problem)


def test_no_exact_optimum_where_the_argument_does_not_hold():
    priced = [dataclasses.replace(A100, cost_per_hour=4.1), dataclasses.replace(T4, cost_per_hour=0.35)]
    assert MinGPUs(images=50_000, deadline_s=10, gpus=priced, objective="cost").exact_optimum() is None
    assert MaxThroughput(deadline_s=10, gpus=priced, budget_per_hour=5.0).exact_optimum() is None
    assert MinGPUs(images=10**9, deadline_s=10, gpus=[A100]).exact_optimum() is None  # beyond the pool
    assert MaxThroughput(deadline_s=1, gpus=[A100]).exact_optimum() is None  # no GPU fits the deadline


# ------------------------------------------------------------------------- solves pass the check unchanged
@pytest.mark.parametrize("backend", ["highs", "cpsat", "scip"])
def test_true_optima_are_never_refused(backend):
    require_backend(backend)
    for seed in range(60):
        for problem in (_random_min(seed, max_count=5), _random_max(seed, max_count=5)):
            solution = servopt.solve(problem, backend)
            expected = brute_force_gpu(problem)
            if expected is None:
                assert solution.status is Status.INFEASIBLE
                continue
            assert solution.status is Status.OPTIMAL and solution.objective == expected, (seed, solution.message)
            if "the exact optimum is" in solution.message:  # only a claim that was in fact wrong is re-solved
                claimed = solution.message.split(" called a plan with objective ", 1)[1].split(" ", 1)[0]
                assert float(claimed.replace(",", "")) != expected, (seed, solution.message)
            else:
                assert solution.backend == backend


def test_the_check_costs_nothing_measurable():
    # O(types) integer arithmetic on arrays built with the problem: 100 GPU types, 10,000 GPUs
    gpus = [GPUType(f"G{i}", max_count=100, batches={8: {"latency_ms": 1.0 + i / 10}}) for i in range(100)]
    problem = MinGPUs(images=10**6, deadline_s=60, gpus=gpus)
    import time

    problem.exact_optimum()
    t0 = time.perf_counter()
    for _ in range(100):
        problem.exact_optimum()
    assert (time.perf_counter() - t0) / 100 < 1e-3  # measured: about 20 us


# -------------------------------------------------------------------- a worse "optimal" is re-solved exactly
def _a100_plan(problem, gpus):
    """A feasible min_gpus plan of ``gpus`` A100s at every A100 option (more GPUs than the optimum)."""
    return plan_from_counts(problem, [(o, gpus, o.batches) for o in problem.options() if o.hardware == "A100"],
                            "gpus", "aggregated")


def _fake_worse(monkeypatch, problem, worse_plan, faked=("highs",)):
    """``faked`` backends answer ``worse_plan`` (feasible, worse than optimal) and call it optimal."""
    real_solve = solve_module._run_problem
    ran: list[str] = []

    def run(p, backend, params, clock=None):
        ran.append(backend)
        if backend in faked:
            return Status.OPTIMAL, worse_plan, None, backend, ""
        return real_solve(p, backend, params, clock)

    monkeypatch.setattr(solve_module, "_run_problem", run)
    return ran


def test_a_worse_optimal_plan_is_re_solved_exactly(monkeypatch):
    problem = MinGPUs(images=50_000, deadline_s=10, gpus=[A100, T4])
    worse = _a100_plan(problem, 4)
    assert problem.verify(worse) == [] and worse.gpus == 4
    ran = _fake_worse(monkeypatch, problem, worse)
    solution = servopt.solve(problem, "highs")
    assert ran == ["highs", "cpsat"] and solution.backend == "cpsat"
    assert solution.status is Status.OPTIMAL and solution.objective == 2 and problem.verify(solution.plan) == []
    assert solution.message == (
        "highs called a plan with objective 4 optimal, but the exact optimum is 2 GPUs: the 2 GPUs of largest "
        "capacity process 54,528 images, at least the 50,000 requested, and the largest per-GPU capacity processes "
        "22,736 images fewer than requested, so 2 GPUs are needed; re-solved exactly with cpsat: the exact optimum, 2")


def test_a_worse_optimal_that_the_exact_fallback_repeats_is_an_error(monkeypatch):
    problem = MinGPUs(images=50_000, deadline_s=10, gpus=[A100, T4])
    worse = _a100_plan(problem, 3)
    ran = _fake_worse(monkeypatch, problem, worse, faked=("highs", "cpsat"))
    solution = servopt.solve(problem, "highs")
    assert ran == ["highs", "cpsat"]
    assert solution.status is Status.ERROR and solution.plan is None and solution.objective is None
    assert solution.message.startswith("highs called a plan with objective 3 optimal, but the exact optimum is 2 GPUs")
    assert "; re-solved exactly with cpsat: objective 3, not the exact optimum; no exact re-solve reached the exact " \
           "optimum; " in solution.message


def test_a_max_throughput_plan_below_the_pool_is_re_solved_exactly(monkeypatch):
    problem = MaxThroughput(deadline_s=10, gpus=[A100, T4], formulation="per_gpu")
    fewer = plan_from_counts(problem, [(o, 1, o.batches) for o in problem.options()], "images", "per_gpu")
    assert problem.verify(fewer) == []
    ran = _fake_worse(monkeypatch, problem, fewer, faked=("scip",))
    solution = servopt.solve(problem, "scip")
    assert ran == ["scip", "cpsat"] and solution.status is Status.OPTIMAL
    assert solution.plan.images == problem.capacity() == 4 * 27_264 + 8 * 9_728
    assert solution.message.startswith(f"scip called a plan with objective {fewer.images:,} optimal, but the exact "
                                       "optimum is 186,880 images: what the whole pool (12 GPUs) processes with each "
                                       "GPU at its best batch size")


def test_a_feasible_answer_is_not_checked(monkeypatch):
    # a time limit's 'feasible' makes no claim of optimality: returned as it is
    problem = MinGPUs(images=50_000, deadline_s=10, gpus=[A100, T4])
    worse = _a100_plan(problem, 4)

    def run(p, backend, params, clock=None):
        return Status.FEASIBLE, worse, None, backend, "time limit"

    monkeypatch.setattr(solve_module, "_run_problem", run)
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.FEASIBLE and solution.objective == 4 and solution.message == "time limit"


# -------------------------------------------------------------------------------------- messages (task 4)
def test_certificate_words_for_one_and_two_gpus():
    assert Certificate(1, 6_000).describe() == "optimal by the capacity bound: every plan needs at least 1 GPU"
    assert Certificate(2, 1).describe() == ("optimal by the capacity bound: the largest per-GPU capacity processes "
                                            "1 image fewer than requested, so 2 GPUs are needed")
    assert Certificate(3, 5).describe() == ("optimal by the capacity bound: the 2 largest per-GPU capacities "
                                            "together process 5 images fewer than requested, so 3 GPUs are needed")
    # before: "the 0 largest per-GPU capacities process 6,000 images fewer than requested, so 1 GPUs are needed"
    solution = servopt.solve(MinGPUs(images=6_000, deadline_s=30, gpus=[A100]))
    assert solution.objective == 1
    assert solution.message == "optimal by the capacity bound: every plan needs at least 1 GPU"
    plan, how = MinGPUs(images=6_000, deadline_s=30, gpus=[A100]).feasible_plan()
    assert how.startswith("the GPU of largest capacity processes ")


# ------------------------------------------------------------------------------ per_gpu on huge pools (task 5)
def test_per_gpu_min_gpus_on_a_huge_pool_keeps_only_the_gpus_an_optimum_uses():
    # before: MemoryError (a traceback) building 1e8 GPUs' variables
    huge = dataclasses.replace(A100, max_count=100_000_000)
    problem = MinGPUs(images=50_000, deadline_s=10, gpus=[huge, T4], formulation="per_gpu")
    assert problem.per_gpu_blocks() == (2, 2)  # min(max_count, ceil(N / capacity), the optimum 2)
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.OPTIMAL and solution.objective == 2 and problem.verify(solution.plan) == []
    small = MinGPUs(images=50_000, deadline_s=10, gpus=[A100, T4], formulation="per_gpu")
    assert small.per_gpu_blocks() == (4, 8)  # below the limit: the documented model, one block per GPU


def test_per_gpu_too_large_even_when_cut_is_refused_naming_file_and_key(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("problem: max_throughput\ndeadline_s: 10\nformulation: per_gpu\ngpus:\n"
                    "  - hardware: A100\n    max_count: 100000000\n"
                    "    batches: {64: {latency_ms: 20.0, warmup_ms: 1500.0}}\n")
    with pytest.raises(ValidationError) as info:
        servopt.load_problem(path)
    assert str(info.value) == (
        f"{path}: key 'gpus[0].max_count': 100,000,000 A100 GPUs with formulation 'per_gpu' need a model of about "
        "200,000,000 variables and 400,000,000 rows (per GPU and batch size a binary, an integer and two rows), "
        f"above the per-GPU model's limit of {PER_GPU_LIMIT:,} GPUs; use formulation: aggregated (one integer per "
        "GPU type and batch size, the same optimum) or lower max_count")
    path.write_text(path.read_text().replace("per_gpu", "aggregated"))
    assert servopt.solve(servopt.load_problem(path)).plan.gpus == 100_000_000


@pytest.mark.parametrize("seed", range(80))
def test_the_per_gpu_cut_keeps_the_optimum(seed):
    # each bound of _gpu_bounds applied to the pool leaves brute force's optimum unchanged
    rng = np.random.default_rng(seed)
    base = _random_min(7000 + seed, max_types=3, max_count=4, max_sizes=3, deadline_runs=8)
    gpus = [dataclasses.replace(g, cost_per_hour=float(rng.integers(0, 9)) / 4) for g in base.gpus]
    problems = [dataclasses.replace(base, gpus=gpus, objective=objective) for objective in ("gpus", "cost")]
    problems.append(MaxThroughput(deadline_s=base.deadline_s, gpus=gpus, latency_slo_ms=base.latency_slo_ms,
                                  budget_per_hour=float(rng.integers(0, 12)) / 4))
    for problem in problems:
        bounds = problem._gpu_bounds()
        cut = dataclasses.replace(problem, gpus=[dataclasses.replace(g, max_count=min(g.max_count, bounds[i]))
                                                 if i in bounds else g for i, g in enumerate(problem.gpus)])
        assert brute_force_gpu(cut) == brute_force_gpu(problem), (seed, problem, bounds)


# ------------------------------------------------------------------------------------- imports (task 3)
def test_an_inline_file_is_read_without_the_profile_readers(tmp_path):
    path = tmp_path / "inline.yaml"
    path.write_text("problem: min_gpus\nimages: 1000000\ndeadline_s: 60\nobjective: cost\ngpus:\n"
                    "  - hardware: A100-80GB\n    max_count: 8\n    cost_per_hour: 4.1\n    batches:\n"
                    "      1:  {latency_ms: 9.3, warmup_ms: 1500}\n      64: {latency_ms: 18.0, warmup_ms: 2100}\n")
    code = ("import sys, servopt; servopt.load_problem(sys.argv[1]); "
            "print(sorted(m for m in ('pandas', 'servopt.profiles') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_solve_imports_its_family_modules_before_the_clock():
    # before: pipeline.dp and its knapsack modules were imported inside solve_seconds (9-19 ms of a cold CLI run)
    code = ("import sys, importlib, servopt\n"
            "solve = importlib.import_module('servopt.solve')\n"
            "p = servopt.load_problem('examples/pipeline_video.yaml')\n"
            "solve._preload_family(p)\n"
            "before = set(sys.modules)\n"
            "solve._preload_family(p)\n"
            "assert set(sys.modules) == before\n"
            "s = servopt.solve(p)\n"
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('servopt')), "
            "'servopt.formulations.pipeline.dp' in before)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True"
