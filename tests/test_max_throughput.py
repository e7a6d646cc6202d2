"""max_throughput: problem files, budget/SLO semantics, infeasibility messages, every backend against brute force."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import servopt
from servopt.exceptions import ValidationError
from servopt.testing.oracles import brute_force_gpu, check_gpu_plan, exhaustive_gpu, random_gpu_pool
from servopt.formulations.gpu.types import GPUPlan, GPUType
from servopt.formulations.gpu.max_throughput import MaxThroughput
from servopt.formulations.registry import problem_from_mapping
from servopt.result import Status
from _backends import backend_params, require_backend
from _backends import solve_gpu as solve_on

N_INSTANCES = 300

INLINE = """
problem: max_throughput
deadline_s: 60
budget_per_hour: 6.0
latency_slo_ms: 40
gpus:
  - hardware: A100-80GB
    max_count: 2
    cost_per_hour: 4.0
    batches:
      1:  {latency_ms: 9.3, warmup_ms: 1500}
      64: {latency_ms: 18.0, warmup_ms: 2100}
  - hardware: T4
    max_count: 4
    cost_per_hour: 0.5
    batches:
      8:  {latency_ms: 21.0}
      64: {latency_ms: 57.4}
"""


@functools.lru_cache(maxsize=None)
def instance(seed: int) -> tuple[MaxThroughput, float | None]:
    gpus, deadline = random_gpu_pool(50_000 + seed)
    rng = np.random.default_rng(200_000 + seed)
    slo = float(rng.choice([p.latency_ms for g in gpus for p in g.batches])) if rng.random() < 0.25 else None
    budget = None
    if rng.random() < 0.7:
        total = sum(g.max_count * g.cost_per_hour for g in gpus)
        budget = round(float(rng.uniform(0.0, 0.8)) * total, 2)
    problem = MaxThroughput(deadline_s=deadline, gpus=gpus, latency_slo_ms=slo, budget_per_hour=budget)
    return problem, brute_force_gpu(problem)


# ------------------------------------------------------------------------------------------ problem files
def test_inline_file_with_budget_and_slo(tmp_path):
    problem = problem_from_mapping(yaml.safe_load(INLINE), tmp_path / "mt.yaml")
    assert isinstance(problem, MaxThroughput)
    assert (problem.budget_per_hour, problem.latency_slo_ms, problem.objective) == (6.0, 40.0, "images")
    # the SLO removes T4 batch 64 (57.4 ms); budget 6: one A100 (4.0) + four T4 (2.0)
    assert {(o.hardware, o.batch_size) for o in problem.options()} == {("A100-80GB", 1), ("A100-80GB", 64), ("T4", 8)}
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.OPTIMAL
    a100 = 64 * (1 + (60_000 - 2100) // 18)   # 3217 batches of 64
    t4 = 8 * (60_000 // 21)                    # W = L: 2857 batches of 8
    assert solution.objective == a100 + 4 * t4
    assert [(g["hardware"], g["gpus"], g["batch_size"]) for g in solution.plan.to_dict()["groups"]] == [
        ("A100-80GB", 1, 64), ("T4", 4, 8)]
    assert check_gpu_plan(problem, solution.plan) == []
    assert solution.plan.cost_per_hour == 6.0


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d.update(images=10), ["key 'images'", "unknown key"]),
        (lambda d: d.update(objective="gpus"), ["key 'objective'", "unknown key"]),
        (lambda d: d.update(budget_per_hour=-1), ["key 'budget_per_hour'", ">= 0"]),
        (lambda d: d.update(latency_slo_ms=0), ["key 'latency_slo_ms'", "> 0"]),
        (lambda d: d["gpus"][1].pop("cost_per_hour"), ["budget_per_hour needs cost_per_hour", "T4"]),
        (lambda d: d.pop("gpus"), ["key 'gpus'", "missing"]),
        (lambda d: d.update(gpus=[]), ["key 'gpus'", "non-empty"]),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, edit, words):
    data = yaml.safe_load(INLINE)
    edit(data)
    with pytest.raises(ValidationError) as info:
        problem_from_mapping(data, tmp_path / "bad.yaml")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "bad.yaml")), message
    for word in words:
        assert word in message, (word, message)


def test_without_budget_every_gpu_runs_its_best_batch():
    problem = dataclasses.replace(problem_from_mapping(yaml.safe_load(INLINE), "x.yaml"), budget_per_hour=None)
    plan = servopt.solve(problem, "highs").plan
    assert plan.gpus == 6 and plan.cost_per_hour == 10.0


# ------------------------------------------------------------------------------------ infeasibility words
def test_budget_below_the_cheapest_gpu_is_explained():
    problem = dataclasses.replace(problem_from_mapping(yaml.safe_load(INLINE), "x.yaml"), budget_per_hour=0.25)
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.INFEASIBLE and solution.plan is None
    assert solution.message == (
        "budget_per_hour 0.25 buys no GPU that fits the deadline (cheapest: T4 at 0.5 per hour); raise the budget")


def test_deadline_below_every_first_batch_is_explained():
    problem = dataclasses.replace(problem_from_mapping(yaml.safe_load(INLINE), "x.yaml"), deadline_s=0.01)
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.INFEASIBLE
    assert solution.message.startswith("deadline 0.01 s is below the first-batch time of every GPU type "
                                       "(fastest: T4 at batch 8, 0.021 s); allow at least that long")


def test_python_api_plan_is_the_json_plan():
    gpus = [GPUType("V100", max_count=3, cost_per_hour=3.0, batches={32: {"latency_ms": 16.5, "warmup_ms": 900}})]
    solution = servopt.solve(MaxThroughput(deadline_s=10, gpus=gpus, budget_per_hour=7), "highs")
    assert isinstance(solution.plan, GPUPlan)
    assert solution.to_dict()["plan"] == solution.plan.to_dict()
    assert solution.plan.gpus == 2 and solution.objective == 2 * 32 * (1 + (10_000 - 900) // 16.5)
    assert "V100" in solution.plan.to_table()


# --------------------------------------------------------------------------- brute force, every backend
def test_brute_force_matches_full_per_gpu_enumeration():
    checked = 0
    for seed in range(400):
        gpus, deadline = random_gpu_pool(seed, max_types=2, max_count=2, max_sizes=2, deadline_runs=5)
        budget = sum(g.max_count * g.cost_per_hour for g in gpus) / 2
        for b in (None, budget):
            problem = MaxThroughput(deadline_s=deadline, gpus=gpus, budget_per_hour=b)
            try:
                full = exhaustive_gpu(problem, limit=20_000)
            except ValueError:
                continue
            assert brute_force_gpu(problem) == full, seed
            checked += 1
    assert checked >= 100


@pytest.mark.parametrize("formulation", ["aggregated", "per_gpu"])
@pytest.mark.parametrize("backend", backend_params())
def test_backends_match_brute_force(backend, formulation):
    require_backend(backend)
    failures, infeasible = [], 0
    for seed in range(N_INSTANCES):
        problem, expected = instance(seed)
        problem = dataclasses.replace(problem, formulation=formulation)
        solution = solve_on(problem, backend)
        if expected is None:
            infeasible += 1
            if solution.status is not Status.INFEASIBLE or not solution.message:
                failures.append((seed, f"expected infeasible, got {solution.status.value}"))
            continue
        errors = []
        if solution.status is not Status.OPTIMAL:
            errors.append(f"expected optimal {expected}, got {solution.status.value}: {solution.message}")
        else:
            if not math.isclose(solution.objective, expected, rel_tol=1e-9, abs_tol=1e-6):
                errors.append(f"objective {solution.objective} != brute force {expected}")
            errors += check_gpu_plan(problem, solution.plan)
        if errors:
            failures.append((seed, errors))
    assert not failures, failures[:5]
    assert 0 < infeasible < N_INSTANCES // 2


def test_example_files_solve(root: Path):
    files = sorted((root / "examples").glob("max_throughput_*.yaml"))
    assert files, "examples/max_throughput_*.yaml missing"
    for path in files:
        problem = servopt.load_problem(path)
        solution = servopt.solve(problem)
        assert solution.status is Status.OPTIMAL, (path, solution.message)
        assert check_gpu_plan(problem, solution.plan) == []
