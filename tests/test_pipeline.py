"""pipeline: problem files, the IPA examples, queueing, product accuracy, re-planning, every backend vs brute force."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import servopt
from servopt.exceptions import CapabilityError, ValidationError
from servopt.testing.oracles import check_pipeline_plan, exhaustive_pipeline, random_pipeline
from servopt.formulations.pipeline.problem import (
    BatchProfile,
    StageDeployment,
    Pipeline,
    PipelinePlan,
    Stage,
    StageVariant,
    rank_normalize,
)
from servopt.formulations.registry import load_problem, problem_from_mapping
from servopt.result import Status
from _backends import backend_params, require_backend
from _backends import solve_decimal as solve_on

N_INSTANCES = 300
N_PRODUCT = 100
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

SPEC_INLINE = """
problem: pipeline
workload_rps: 20
sla_ms: 2000
alpha: 2.0
beta: 1.0
delta: 0.000001
accuracy: sum                  # sum | average | product
normalize: rank                # rank | none
max_replicas: 100
stages:
  - name: detect
    variants:
      - name: yolov5n
        accuracy: 0.457
        cores: 1               # per replica
        batches:
          1: {latency_ms: 59.0, throughput_rps: 16.9}   # throughput optional: default b / latency
          8: {latency_ms: 328.0}
"""


# ----------------------------------------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=None)
def instance(seed: int, accuracy: str | None = None):
    kw = {"max_stages": 4} if accuracy == "product" else {}
    problem = random_pipeline(seed, accuracy=accuracy, **kw)
    return problem, exhaustive_pipeline(problem)


def variant(name, acc, cores, **lat):
    return StageVariant(name, acc, cores, [BatchProfile(int(b[1:]), ms) for b, ms in lat.items()])


def two_stage(**kw) -> Pipeline:
    detect = Stage("detect", [variant("n", 0.45, 1, b1=50.0, b8=300.0), variant("x", 0.69, 4, b1=120.0, b8=700.0)])
    classify = Stage("classify", [variant("r18", 0.70, 1, b1=30.0, b8=150.0),
                                  variant("r50", 0.76, 2, b1=60.0, b8=280.0)])
    args = dict(workload_rps=20.0, sla_ms=2000.0, stages=[detect, classify])
    args.update(kw)
    return Pipeline(**args)


# ------------------------------------------------------------------------------------------- problem file
def test_spec_inline_form_is_accepted_exactly(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(SPEC_INLINE)
    problem = load_problem(path)
    assert isinstance(problem, Pipeline) and problem.kind == "pipeline" and problem.name == "p"
    v = problem.stages[0].variants[0]
    assert [(b.batch_size, b.latency_ms, b.throughput_rps) for b in v.batches] == [
        (1, 59.0, 16.9), (8, 328.0, pytest.approx(8000 / 328.0))]
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.OPTIMAL
    stage = solution.plan.to_dict()["stages"][0]
    # b1: 2 replicas (2 x 16.9 >= 20), 2 cores; b8: 1 replica (24.4 RPS), 1 core, queue 7/20 s = 350 ms
    assert stage == {"name": "detect", "variant": "yolov5n", "batch_size": 8, "replicas": 1, "latency_ms": 328.0,
                     "queue_ms": 350.0}
    assert solution.plan.latency_ms == 678.0 and solution.plan.cores == 1.0
    assert solution.objective == pytest.approx(2.0 * 1.0 - 1.0 - 8e-6)


@pytest.mark.parametrize(
    "patch, key, words",
    [
        ({"accuracy": "max"}, "accuracy", "sum, average, product"),
        ({"normalize": "minmax"}, "normalize", "rank, none"),
        ({"max_replicas": 0}, "max_replicas", ">= 1"),
        ({"sla_ms": 0}, "sla_ms", "> 0"),
        ({"speed": 1}, "speed", "unknown key"),
        ({"stages": [{"name": "s", "variants": [{"name": "v", "accuracy": 0.5, "cores": 1, "batches": {0: {
            "latency_ms": 3}}}]}]}, "stages[0].variants[0].batches[0]", ">= 1"),
        ({"stages": [{"name": "s", "variants": [{"name": "v", "accuracy": 0.5, "cores": 1, "batches": {1: {
            "latency_ms": -3}}}]}]}, "stages[0].variants[0].batches[1].latency_ms", "> 0"),
        ({"stages": [{"name": "s", "variants": [{"name": "v", "accuracy": 0.5, "batches": {1: {
            "latency_ms": 3}}}]}]}, "stages[0].variants[0].cores", "missing"),
        ({"stages": [{"name": "s", "current": {"variant": "v"}, "variants": [{"name": "v", "accuracy": 0.5,
          "cores": 1, "batches": {1: {"latency_ms": 3}}}]}]}, "stages[0].current.batch_size", "missing"),
    ],
)
def test_bad_problem_files_name_file_key_and_value(patch, key, words):
    data = yaml.safe_load(SPEC_INLINE)
    data.update(patch)
    with pytest.raises(ValidationError) as err:
        problem_from_mapping(data, "bad.yaml")
    text = str(err.value)
    assert text.startswith("bad.yaml") and f"'{key}'" in text and words in text, text


def test_product_with_rank_is_rejected_and_defaults_to_raw_accuracies():
    data = yaml.safe_load(SPEC_INLINE)
    data["accuracy"] = "product"
    with pytest.raises(ValidationError, match="zeroes the whole product.*normalize: none"):
        problem_from_mapping(data, "p.yaml")
    del data["normalize"]
    assert problem_from_mapping(data, "p.yaml").normalize == "none"
    data["accuracy"] = "sum"
    assert problem_from_mapping(data, "p.yaml").normalize == "rank"
    with pytest.raises(ValidationError, match="accuracies >= 0"):
        two_stage(accuracy="product").update(stages=[Stage("s", [variant("neg", -0.4, 1, b1=10.0)])])


def test_rank_normalisation_is_even_over_distinct_accuracies():
    assert rank_normalize([0.457, 0.568, 0.641, 0.673, 0.689]) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert rank_normalize([0.3, 0.3, 0.9]) == [0.0, 0.0, 1.0]
    assert rank_normalize([0.5]) == [1.0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-1.0, max_value=1.0, allow_nan=False), min_size=1, max_size=12))
def test_rank_normalisation_properties(accs):
    ranks = rank_normalize(accs)
    levels = sorted(set(accs))
    assert len(ranks) == len(accs) and all(0.0 <= r <= 1.0 for r in ranks)
    for a, r in zip(accs, ranks):  # order-preserving, ties share a rank, evenly spaced
        assert r == (1.0 if len(levels) == 1 else levels.index(a) / (len(levels) - 1))
    if len(levels) > 1:
        assert min(ranks) == 0.0 and max(ranks) == 1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10**6))
def test_yaml_round_trip_of_random_pipelines(seed):
    problem = random_pipeline(seed)
    data = {"problem": "pipeline", "workload_rps": problem.workload_rps, "sla_ms": problem.sla_ms,
            "alpha": problem.alpha, "beta": problem.beta, "delta": problem.delta, "accuracy": problem.accuracy,
            "normalize": problem.normalize, "max_replicas": problem.max_replicas,
            "prefer_stable": problem.prefer_stable, "stages": []}
    for s in problem.stages:
        entry = {"name": s.name, "variants": [
            {"name": v.name, "accuracy": v.accuracy, "cores": v.cores,
             "batches": {p.batch_size: {"latency_ms": p.latency_ms, "throughput_rps": p.throughput_rps}
                         for p in v.batches}} for v in s.variants]}
        if problem.current and s.name in problem.current:
            dep = problem.current[s.name]
            entry["current"] = {"variant": dep.variant, "batch_size": dep.batch_size}
        data["stages"].append(entry)
    again = problem_from_mapping(yaml.safe_load(yaml.safe_dump(data)), "round.yaml")
    assert again.stages == problem.stages and again.current == problem.current
    assert again.options().value.tolist() == problem.options().value.tolist()


# ------------------------------------------------------------------------------------------ formulation
def test_queueing_delay_uses_the_batch_size_not_an_indicator():
    # b8 alone fits the SLA (300 + 150 = 450 ms) but not with its queue 7/10 s = 700 ms; IPA's code drops the queue
    problem = two_stage(workload_rps=10.0, sla_ms=1000.0, beta=1.0, delta=0.0)
    plan = servopt.solve(problem, "highs").plan
    assert check_pipeline_plan(problem, plan) == []
    assert all(s.queue_ms == pytest.approx(1000.0 * (s.batch_size - 1) / 10.0) for s in plan.stages)
    assert plan.latency_ms <= 1000.0
    batch8 = problem.evaluate([("n", 8), ("r18", 8)])
    assert batch8 is None  # 300 + 700 + 150 + 700 ms > 1000 ms
    assert problem.update(sla_ms=1850.0).evaluate([("n", 8), ("r18", 8)]) is not None


def test_replicas_are_ceil_of_load_over_throughput_and_capped():
    problem = two_stage(workload_rps=100.0)
    opts = problem.options()
    h = opts.throughput_rps
    assert np.array_equal(opts.replicas, np.ceil(100.0 / h).astype(int))
    plan = servopt.solve(problem, "highs").plan
    for s in plan.stages:
        assert s.replicas * s.throughput_rps >= 100.0 and (s.replicas - 1) * s.throughput_rps < 100.0
    capped = problem.update(max_replicas=2)
    out = servopt.solve(capped, "highs")
    assert out.status is Status.INFEASIBLE
    assert "stage 'detect' cannot serve 100 RPS" in out.message and "max_replicas 2" in out.message


def test_infeasible_sla_explains_the_fastest_choice():
    out = servopt.solve(two_stage(sla_ms=50.0), "highs")
    assert out.status is Status.INFEASIBLE
    assert "fastest choices take 80 ms" in out.message and "above sla_ms 50" in out.message


def test_options_expose_the_data_for_other_exact_algorithms():
    problem = two_stage(accuracy="average")
    opts = problem.options()
    assert [sl.stop - sl.start for sl in opts.stage_slices] == [4, 4]
    assert opts.batch_size.tolist() == [1, 8, 1, 8, 1, 8, 1, 8]
    assert opts.accuracy.tolist() == [0.0, 0.0, 1.0, 1.0] * 2  # rank-normalised per stage
    value = 2.0 * opts.accuracy / 2 - 1.0 * opts.cores - 1e-6 * opts.batch_size
    assert np.allclose(opts.value, value)
    assert problem.stages[1].variants[1].batches[1].latency_ms == 280.0


@pytest.mark.parametrize("method", ["sum", "average", "product"])
def test_plan_objective_is_recomputed_and_consistent(method):
    problem = two_stage(accuracy=method, normalize="none" if method == "product" else "rank")
    solution = servopt.solve(problem, "highs")
    plan = solution.plan
    assert check_pipeline_plan(problem, plan) == []
    batches = sum(s.batch_size for s in plan.stages)
    assert plan.objective == pytest.approx(problem.alpha * plan.accuracy - problem.beta * plan.cores
                                           - problem.delta * batches, abs=1e-12)
    if method == "product":
        assert plan.accuracy == pytest.approx(math.prod(s.accuracy for s in plan.stages))


def test_product_is_exact_where_the_sum_surrogate_is_not():
    # accuracies chosen so that maximising the sum and maximising the product disagree
    a = Stage("a", [variant("lo", 0.2, 1, b1=10.0), variant("hi", 0.9, 3, b1=10.0)])
    b = Stage("b", [variant("lo", 0.1, 1, b1=10.0), variant("hi", 0.5, 3, b1=10.0)])
    # product: lo,lo 0.02 - 0.3 = -0.28 beats hi,hi 0.45 - 0.9; sum: each upgrade gains 0.7 / 0.4 > 0.3 in cores
    problem = Pipeline(1.0, 100.0, [a, b], alpha=1.0, beta=0.15, delta=0.0, accuracy="product")
    plan = servopt.solve(problem, "highs").plan
    best = exhaustive_pipeline(problem)
    assert plan.objective == pytest.approx(best[0]) == pytest.approx(0.02 - 0.3)
    assert [s.variant for s in plan.stages] == ["lo", "lo"]
    summed = servopt.solve(problem.update(accuracy="sum", normalize="none"), "highs").plan
    assert [s.variant for s in summed.stages] == ["hi", "hi"]


# ------------------------------------------------------------------------------------------ re-planning
def test_update_takes_the_previous_plan_and_shares_the_option_arrays():
    problem = two_stage()
    first = servopt.solve(problem, "highs").plan
    nxt = problem.update(workload_rps=35.0, current=first, prefer_stable=True)
    assert nxt.current == {s.name: StageDeployment(s.variant, s.batch_size, s.replicas) for s in first.stages}
    assert nxt._shared is problem._shared and nxt.prefer_stable
    assert nxt.update(workload_rps=10.0).current == nxt.current and nxt.update(current={}).current is None
    assert problem.update(accuracy="average")._shared is not problem._shared
    with pytest.raises(ValidationError, match="no variant 'yolo'"):
        problem.update(current={"detect": ("yolo", 1)})


def test_prefer_stable_picks_the_fewest_variant_and_batch_changes():
    # two variants identical in everything but the name: both optimal; the running one must be kept
    twin = Stage("s", [variant("a", 0.8, 1, b1=10.0, b2=15.0), variant("b", 0.8, 1, b1=10.0, b2=15.0)])
    problem = Pipeline(10.0, 500.0, [twin], beta=1.0, delta=0.0, normalize="none",
                       current={"s": ("b", 2)}, prefer_stable=True)
    for backend in ("highs", "scip"):
        plan = servopt.solve(problem, backend).plan
        assert (plan.stages[0].variant, plan.stages[0].batch_size, plan.changes) == ("b", 2, 0)
    plain = servopt.solve(problem.update(prefer_stable=False), "highs").plan
    assert plain.objective == pytest.approx(servopt.solve(problem, "highs").objective)


# ------------------------------------------------------------------------------------------ IPA examples
def test_examples_are_built_from_the_reference_data(reference_data):
    assert (reference_data / "ipa" / "accuracies.yaml").is_file()
    out = subprocess.run([sys.executable, str(EXAMPLES / "build_ipa_examples.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", ["pipeline_video.yaml", "pipeline_video_product.yaml", "pipeline_nlp.yaml"])
def test_ipa_examples_solve_and_agree_with_brute_force(name):
    from servopt.policies import run_policy

    problem = load_problem(EXAMPLES / name)
    for lam in (5.0, 20.0, 60.0):
        p = problem.update(workload_rps=lam)
        exact = servopt.solve(p, "highs")
        assert exact.status is Status.OPTIMAL and check_pipeline_plan(p, exact.plan) == []
        brute = run_policy(p, "bruteforce")
        assert exact.objective == pytest.approx(brute.objective, abs=1e-9)


def test_video_example_variants_and_batches():
    problem = load_problem(EXAMPLES / "pipeline_video.yaml")
    assert [v.name for v in problem.stages[0].variants] == ["yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x"]
    assert [v.name for v in problem.stages[1].variants] == ["resnet18", "resnet34", "resnet50", "resnet101",
                                                             "resnet152"]
    assert {p.batch_size for s in problem.stages for v in s.variants for p in v.batches} == {1, 2, 8}
    assert problem.current["detect"] == StageDeployment("yolov5n", 1)


# ------------------------------------------------------------------------------ every backend, brute force
@pytest.mark.parametrize("backend", backend_params())
def test_agrees_with_brute_force_on_random_instances(backend):
    require_backend(backend)
    solved = infeasible = refused = 0
    for seed in range(N_INSTANCES):
        problem, best = instance(seed)
        if backend == "cpsat" and problem.build()[0].arrays().has_continuous:  # product over >= 2 stages
            assert problem.accuracy == "product"
            # a backend named explicitly is checked even when the load is refused before solving
            with pytest.raises(CapabilityError, match="continuous"):
                servopt.solve(problem, backend, scale=1.0)
            refused += 1
            continue
        _check(problem, best, solve_on(problem, backend), seed)
        solved += best is not None
        infeasible += best is None
    assert solved >= 100 and infeasible >= 20
    if backend == "cpsat":
        assert 50 <= refused < sum(instance(s)[0].accuracy == "product" for s in range(N_INSTANCES))


@pytest.mark.parametrize("backend", [b for b in backend_params() if b.id != "cpsat"])
def test_product_accuracy_agrees_with_brute_force(backend):
    require_backend(backend)
    stages = 0
    for seed in range(N_PRODUCT):
        problem, best = instance(seed, "product")
        _check(problem, best, servopt.solve(problem, backend), seed)
        stages = max(stages, len(problem.stages))
    assert stages == 4


def _check(problem, best, solution, seed):
    if best is None:
        assert solution.status is Status.INFEASIBLE, (seed, solution.status)
        assert solution.message
        return
    assert solution.status is Status.OPTIMAL, (seed, solution.status, solution.message)
    plan = solution.plan
    assert isinstance(plan, PipelinePlan)
    assert check_pipeline_plan(problem, plan) == [], seed
    assert plan.objective == pytest.approx(best[0], abs=1e-9), seed
    if problem.prefer_stable and problem.current is not None:
        assert plan.changes == best[1], seed


def test_random_instances_cover_every_setting():
    problems = [instance(s)[0] for s in range(N_INSTANCES)]
    assert {p.accuracy for p in problems} == {"sum", "average", "product"}
    assert {p.normalize for p in problems} == {"rank", "none"}
    stable = [p for p in problems if p.prefer_stable and p.current is not None and instance_best(p)]
    assert len(stable) >= 50
    assert any(any(b.batch_size > 1 for s in p.stages for v in s.variants for b in v.batches) for p in problems)


def instance_best(problem):
    return exhaustive_pipeline(problem)


def test_to_table_and_json_shape():
    plan = servopt.solve(two_stage(current={"detect": ("x", 1)}), "highs").plan
    data = plan.to_dict()
    assert set(data) == {"accuracy", "cores", "latency_ms", "stages"}
    assert all(set(s) == {"name", "variant", "batch_size", "replicas", "latency_ms", "queue_ms"}
               for s in data["stages"])
    text = plan.to_table()
    assert "detect" in text and "x b1" in text and "objective" in text
