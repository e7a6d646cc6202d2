"""min_gpus: k_max arithmetic, problem files, infeasibility messages, and every backend against brute force."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import servopt
from servopt.exceptions import CapabilityError, ValidationError
from servopt.testing.oracles import (
    brute_force_gpu,
    check_gpu_plan,
    exhaustive_gpu,
    gpu_runs,
    random_gpu_pool,
)
from servopt.formulations.gpu.types import GPUPlan, GPUType, max_batches_within
from servopt.formulations.gpu.min_gpus import MinGPUs
from servopt.formulations.registry import problem_from_mapping
from servopt.result import Status
from _backends import backend_params, require_backend
from _backends import solve_gpu as solve_on

N_INSTANCES = 300

SPEC_INLINE = """
problem: min_gpus              # or max_throughput (no `images`; optional `budget_per_hour`, `latency_slo_ms`)
images: 1000000
deadline_s: 60
objective: gpus                # or cost
gpus:
  - hardware: A100-80GB
    max_count: 8
    cost_per_hour: 4.1         # optional
    max_batches: 1000          # optional (M_g)
    batches:                   # batch size -> latency of one batch, warm-up (first batch)
      1:  {latency_ms: 9.3, warmup_ms: 1500}
      64: {latency_ms: 18.0, warmup_ms: 2100}
"""


# ----------------------------------------------------------------------------------------------- helpers
def capacity_by_enumeration(gpus, deadline_s, slo=None) -> int:
    probe = MinGPUs(images=1, deadline_s=deadline_s, gpus=gpus, latency_slo_ms=slo)
    best = [max((b * k for b, k in gpu_runs(probe, g)), default=0) for g in gpus]
    return sum(g.max_count * v for g, v in zip(gpus, best))


@functools.lru_cache(maxsize=None)
def instance(seed: int) -> tuple[MinGPUs, float | None]:
    """Random instance ``seed`` and its optimum by brute force (None: infeasible)."""
    gpus, deadline = random_gpu_pool(seed)
    rng = np.random.default_rng(100_000 + seed)
    slo = None
    if rng.random() < 0.25:
        slo = float(rng.choice([p.latency_ms for g in gpus for p in g.batches]))
    cap = capacity_by_enumeration(gpus, deadline, slo)
    images = max(1, int(cap * rng.uniform(0.05, 1.15))) if cap else int(rng.integers(1, 500))
    problem = MinGPUs(images=images, deadline_s=deadline, gpus=gpus, latency_slo_ms=slo,
                      objective="cost" if rng.random() < 0.4 else "gpus")
    return problem, brute_force_gpu(problem)


def check_against_reference(problem, expected, solution) -> list[str]:
    """Problems with one solved instance (empty list: it agrees with brute force and the checker)."""
    if expected is None:
        if solution.status is not Status.INFEASIBLE or solution.plan is not None:
            return [f"expected infeasible, got {solution.status.value} {solution.objective}"]
        if not solution.message:
            return ["infeasible without an explanation"]
        return []
    if solution.status is not Status.OPTIMAL:
        return [f"expected optimal {expected}, got {solution.status.value}: {solution.message}"]
    errors = []
    if not math.isclose(solution.objective, expected, rel_tol=1e-9, abs_tol=1e-6):
        errors.append(f"objective {solution.objective} != brute force {expected}")
    errors += check_gpu_plan(problem, solution.plan)
    if solution.to_dict()["plan"] != solution.plan.to_dict():
        errors.append("Solution.to_dict()['plan'] differs from plan.to_dict()")
    return errors


# ------------------------------------------------------------------------------------------------ k_max
def test_k_max_on_a_decimal_boundary():
    # 0.3 + 7 * 0.1 = 1.0000000000000002 in binary; the busy time equals the deadline in decimal
    assert max_batches_within(0.001, warmup_ms=0.3, latency_ms=0.1) == 8
    assert max_batches_within(1.0, warmup_ms=100.0, latency_ms=300.0) == 4
    assert max_batches_within(1.0, warmup_ms=100.0, latency_ms=300.0, cap=0) == 1
    assert max_batches_within(0.0999, warmup_ms=100.0, latency_ms=300.0) == 0


@settings(max_examples=200, deadline=None)
@given(
    warm=st.floats(0.01, 5_000, allow_nan=False),
    lat=st.floats(0.01, 2_000, allow_nan=False),
    deadline=st.floats(0.001, 3_600, allow_nan=False),
)
def test_k_max_is_the_largest_run_within_the_deadline(warm, lat, deadline):
    from fractions import Fraction

    k = max_batches_within(deadline, warm, lat)
    # exact, on the decimals the numbers print as (servopt.exact); no tolerance
    W, L, T = Fraction(repr(warm)), Fraction(repr(lat)), Fraction(repr(deadline)) * 1000
    if k == 0:
        assert W > T
    else:
        assert W + (k - 1) * L <= T
        assert W + k * L > T


# ------------------------------------------------------------------------------------------ problem files
def test_spec_inline_form_is_accepted_and_solved(tmp_path):
    problem = problem_from_mapping(yaml.safe_load(SPEC_INLINE), tmp_path / "p.yaml")
    assert isinstance(problem, MinGPUs)
    a100 = problem.gpus[0]
    assert (problem.images, problem.deadline_s, problem.objective) == (1_000_000, 60.0, "gpus")
    assert (a100.hardware, a100.max_count, a100.cost_per_hour, a100.max_batches) == ("A100-80GB", 8, 4.1, 1000)
    assert [(p.batch_size, p.latency_ms, p.warmup_ms) for p in a100.batches] == [(1, 9.3, 1500.0), (64, 18.0, 2100.0)]
    solution = servopt.solve(problem, "highs")
    # batch 64: 1 + floor((60000 - 2100) / 18) = 3217 batches, but max_batches caps k at 1001 -> 64,064 images
    # per GPU; ceil(1,000,000 / 64,064) = 16 > 8 GPUs: infeasible; without the cap 5 GPUs suffice
    assert solution.status is Status.INFEASIBLE
    assert "at most" in solution.message and "1 M requested" in solution.message
    uncapped = dataclasses.replace(problem, gpus=[dataclasses.replace(a100, max_batches=None)])
    solution = servopt.solve(uncapped, "highs")
    assert solution.objective == 5
    assert solution.plan.to_dict() == {
        "gpus": 5, "images": 5 * 64 * 3217, "cost_per_hour": 20.5,
        "groups": [{"hardware": "A100-80GB", "gpus": 5, "batch_size": 64, "batches_per_gpu": 3217,
                    "images": 5 * 64 * 3217}],
    }


def test_file_name_and_stem_default(tmp_path):
    path = tmp_path / "effnet_job.yaml"
    path.write_text(SPEC_INLINE)
    problem = servopt.load_problem(path)
    assert problem.name == "effnet_job" and problem.formulation == "aggregated" and problem.triton is None
    path.write_text(SPEC_INLINE + "model: efficientnet-b0\nformulation: per_gpu\ntriton: {max_queue_delay_us: 100}\n")
    problem = servopt.load_problem(path)
    assert problem.name == "efficientnet-b0" and problem.formulation == "per_gpu"
    assert problem.triton == {"max_queue_delay_us": 100}


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d.update(colour="red"), ["key 'colour'", "unknown key"]),
        (lambda d: d.pop("images"), ["key 'images'", "missing"]),
        (lambda d: d.update(images="1e7"), ["key 'images'", "integer", "'1e7'"]),
        (lambda d: d.update(deadline_s=-1), ["key 'deadline_s'", "> 0"]),
        (lambda d: d.update(objective="speed"), ["key 'objective'", "gpus, cost"]),
        (lambda d: d.update(formulation="magic"), ["key 'formulation'", "aggregated, per_gpu"]),
        (lambda d: d["gpus"][0].update(max_count=-3), ["key 'gpus[0].max_count'", ">= 0", "-3"]),
        (lambda d: d["gpus"][0].update(speed=1), ["key 'gpus[0].speed'", "unknown key"]),
        (lambda d: d["gpus"][0]["batches"].update(x={"latency_ms": 1}), ["gpus[0].batches", "'x'", "integer"]),
        (lambda d: d["gpus"][0]["batches"][1].update(latency_ms=0), ["gpus[0].batches.1.latency_ms", "> 0"]),
        (lambda d: d["gpus"][0]["batches"][1].update(warm=3), ["gpus[0].batches.1.warm", "unknown key"]),
        (lambda d: d["gpus"][0].pop("batches"), ["gpus[0].batches", "missing", "profiles"]),
        (lambda d: (d.update(objective="cost"), d["gpus"][0].pop("cost_per_hour")),
         ["objective 'cost' needs cost_per_hour", "A100-80GB"]),
        (lambda d: d["gpus"].append(dict(d["gpus"][0])), ["'A100-80GB' appears twice"]),
        (lambda d: d.update(performance="fit"), ["key 'performance'", "profiles"]),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, edit, words):
    data = yaml.safe_load(SPEC_INLINE)
    edit(data)
    with pytest.raises(ValidationError) as info:
        problem_from_mapping(data, tmp_path / "bad.yaml")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "bad.yaml")), message
    for word in words:
        assert word in message, (word, message)


def test_api_validation_messages():
    with pytest.raises(ValidationError, match="max_count=-1"):
        GPUType("T4", max_count=-1, batches={1: 5.0})
    with pytest.raises(ValidationError, match="batches is empty"):
        GPUType("T4", max_count=1, batches={})
    with pytest.raises(ValidationError, match="images=0"):
        MinGPUs(images=0, deadline_s=1, gpus=[GPUType("T4", max_count=1, batches={1: 5.0})])
    with pytest.raises(ValidationError, match="formulation='x'"):
        MinGPUs(images=1, deadline_s=1, gpus=[GPUType("T4", max_count=1, batches={1: 5.0})], formulation="x")


# ------------------------------------------------------------------------------------ infeasibility words
def _pool(**t4):
    a100 = GPUType("A100", max_count=2, cost_per_hour=4.0,
                   batches={1: {"latency_ms": 9.3, "warmup_ms": 1500.0}, 64: {"latency_ms": 18.0, "warmup_ms": 2100.0}})
    t4_batches = {1: {"latency_ms": 5.0, "warmup_ms": 1200.0}, 8: {"latency_ms": 21.0, "warmup_ms": 1300.0}}
    return [a100, GPUType("T4", max_count=4, cost_per_hour=0.5, batches=t4_batches, **t4)]


def test_deadline_below_every_first_batch_is_explained():
    solution = servopt.solve(MinGPUs(images=10, deadline_s=0.5, gpus=_pool()), "highs")
    assert solution.status is Status.INFEASIBLE and solution.plan is None
    assert solution.message == (
        "deadline 0.5 s is below the first-batch time of every GPU type (fastest: T4 at batch 1, 1.2 s); "
        "allow at least that long"
    )


def test_pool_capacity_shortfall_is_explained():
    problem = MinGPUs(images=1_000_000, deadline_s=60, gpus=_pool())
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.INFEASIBLE
    capacity = capacity_by_enumeration(problem.gpus, 60)
    assert capacity == problem.capacity() == 2 * 64 * 3217 + 4 * 8 * 2796
    assert solution.message.startswith(
        f"the whole pool processes at most {capacity / 1e3:.4g} k images within 60 s; 1 M requested")


def test_latency_slo_below_every_batch_is_explained():
    solution = servopt.solve(MinGPUs(images=10, deadline_s=60, gpus=_pool(), latency_slo_ms=4), "highs")
    assert solution.status is Status.INFEASIBLE
    assert "latency_slo_ms 4 is below the per-batch latency of every GPU type (fastest: T4 at batch 1, 5 ms)" \
        in solution.message


def test_slo_and_max_batch_size_restrict_the_options():
    gpus = _pool(max_batch_size=4)
    problem = MinGPUs(images=10, deadline_s=60, gpus=gpus, latency_slo_ms=10)
    assert {(o.hardware, o.batch_size) for o in problem.options()} == {("A100", 1), ("T4", 1)}


# ---------------------------------------------------------------------------------------- build, no solver
@pytest.mark.parametrize("formulation", ["aggregated", "per_gpu"])
def test_build_sizes_without_a_solver(formulation):
    problem = MinGPUs(images=1000, deadline_s=60, gpus=_pool(), formulation=formulation)
    model, decode = problem.build()
    options = problem.options()
    per_type = {"A100": 2, "T4": 4}
    if formulation == "aggregated":
        assert model.num_vars == len(options)
    else:
        assert model.num_vars == 2 * sum(per_type[o.hardware] for o in options)
    assert model.arrays().integrality.all()  # integer-only: CP-SAT can take it (objective gpus)


def test_cpsat_needs_scale_for_fractional_costs():
    require_backend("cpsat")
    gpus = [dataclasses.replace(g, cost_per_hour=1.25) for g in _pool()]
    problem = MinGPUs(images=100, deadline_s=60, gpus=gpus, objective="cost")
    with pytest.raises(CapabilityError, match="scale="):
        servopt.solve(problem, "cpsat")
    assert servopt.solve(problem, "cpsat", scale=100.0).objective == 1.25


# --------------------------------------------------------------------------- brute force, every backend
def test_brute_force_matches_full_per_gpu_enumeration():
    """The count-vector brute force agrees with enumerating every GPU's own (batch, batches) choice."""
    checked = 0
    for seed in range(400):
        gpus, deadline = random_gpu_pool(seed, max_types=2, max_count=2, max_sizes=2, deadline_runs=5)
        for objective in ("gpus", "cost"):
            cap = capacity_by_enumeration(gpus, deadline)
            problem = MinGPUs(images=max(1, int(cap * 0.6)), deadline_s=deadline, gpus=gpus, objective=objective)
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
    failures, solved, infeasible = [], 0, 0
    for seed in range(N_INSTANCES):
        problem, expected = instance(seed)
        problem = dataclasses.replace(problem, formulation=formulation)
        solution = solve_on(problem, backend)
        assert isinstance(solution.plan, (GPUPlan, type(None)))
        errors = check_against_reference(problem, expected, solution)
        if errors:
            failures.append((seed, errors))
        solved += 1
        infeasible += expected is None
    assert not failures, failures[:5]
    assert solved == N_INSTANCES and 0 < infeasible < N_INSTANCES // 2


def test_example_files_solve(root: Path):
    files = sorted((root / "examples").glob("min_gpus_*.yaml"))
    assert files, "examples/min_gpus_*.yaml missing"
    for path in files:
        problem = servopt.load_problem(path)
        solution = servopt.solve(problem)
        assert solution.status is Status.OPTIMAL, (path, solution.message)
        assert check_gpu_plan(problem, solution.plan) == []


# ------------------------------------------------------------------------------------------------ profiles
PROFILE = "measured_resnet_like.csv"


def profile_problem(tmp_path: Path, root: Path, **extra) -> Path:
    (tmp_path / "profiles").mkdir(exist_ok=True)
    link = tmp_path / "profiles" / PROFILE
    if not link.exists():
        link.symlink_to(root / "profiles" / PROFILE)
    data = {"problem": "min_gpus", "images": 20_000, "deadline_s": 60, "model": "resnet_like", "input_size": 224,
            "cores": 2, "profiles": [f"profiles/{PROFILE}"], "gpus": [{"hardware": "cpu-amd-epyc", "max_count": 8}]}
    data.update(extra)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_profiles_table_mode_uses_the_profiled_points(tmp_path, root):
    import pandas as pd

    problem = servopt.load_problem(profile_problem(tmp_path, root))
    frame = pd.read_csv(root / "profiles" / PROFILE)
    rows = frame[(frame.model == "resnet_like") & (frame.input_size == 224) & (frame.cores == 2)]
    expected = sorted(zip(rows.batch_size, rows.latency_ms, rows.warmup_ms))
    got = [(p.batch_size, p.latency_ms, p.warmup_ms) for p in problem.gpus[0].batches]
    assert len(got) == len(expected)
    for row, want in zip(got, expected):
        assert row == pytest.approx(want)
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.OPTIMAL and check_gpu_plan(problem, solution.plan) == []
    assert solution.objective == brute_force_gpu(problem)


def test_profiles_fit_mode_and_selection_errors(tmp_path, root):
    problem = servopt.load_problem(profile_problem(tmp_path, root, performance="fit"))
    sizes = [p.batch_size for p in problem.gpus[0].batches]
    lat = [p.latency_ms for p in problem.gpus[0].batches]
    assert sizes == sorted(sizes) and lat == sorted(lat)  # the fitted curve is non-decreasing in batch size
    with pytest.raises(ValidationError, match=r"key 'gpus\[0\]'.*cores.*selectors in the problem file"):
        servopt.load_problem(profile_problem(tmp_path, root, cores=3))
    with pytest.raises(ValidationError, match=r"key 'profiles': .*nope.csv does not exist"):
        servopt.load_problem(profile_problem(tmp_path, root, profiles=["nope.csv"]))


def test_gpu_type_from_a_loaded_profile_matches_the_file_path(tmp_path, root):
    problem = servopt.load_problem(profile_problem(tmp_path, root))
    profile = servopt.load_profile(root / "profiles" / PROFILE)
    gpu = GPUType.from_profile(profile, "cpu-amd-epyc", 8, model="resnet_like", input_size=224, cores=2)
    assert gpu == problem.gpus[0]
