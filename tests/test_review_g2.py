"""Review fixes: YAML 1.2 core-schema scalars, budget-independent variant_selection tables, the top-level name as
a model name, and errors that name the problem file and key."""

from __future__ import annotations

import dataclasses
import itertools
import tracemalloc
from pathlib import Path

import pytest

import servopt
from servopt.documents import parse_yaml
from servopt.exceptions import ValidationError
from servopt.formulations.registry import load_problem
from servopt.formulations.variant_selection import problem as vs_problem
from servopt.formulations.variant_selection.dp import solve_dp
from servopt.formulations.variant_selection.frontier import solve_frontier
from servopt.formulations.variant_selection.problem import Variant, VariantSelection
from servopt.result import Status
from servopt.testing.oracles import (check_variant_selection_plan, exhaustive_variant_selection,
                                     random_variant_selection)

VARIANT = "variants:\n  - {name: a, accuracy: 0.7, capacity: {1: 20, 2: 44, 3: 68}}\n"


# ------------------------------------------------------------------------------------------- 1. YAML 1.2 numbers
@pytest.mark.parametrize("text, value", [
    ("010", 10), ("0o17", 15), ("0x1F", 31), (".5e2", 50.0), ("+7", 7), ("1_000", 1000), ("1e3", 1000.0),
    ("12:30", "12:30"), ("yes", "yes"), ("on", "on"), ("No", "No"), ("0b101", "0b101"),
    ("2024-01-02", "2024-01-02"), ("true", True), ("FALSE", False), ("~", None),
])
def test_scalars_follow_the_yaml_1_2_core_schema(text, value):
    for doc in (f"a: {text}\n", f"a: [{text}]\n", f"a: {{b: {text}}}\n", f"a: &x {text}\n"):  # subset and PyYAML
        got = parse_yaml(doc, "p.yaml")["a"]
        got = got[0] if isinstance(got, list) else got["b"] if isinstance(got, dict) else got
        assert got == value and type(got) is type(value), (doc, got)


def test_a_leading_zero_budget_is_decimal(tmp_path):
    path = tmp_path / "oct.yaml"
    path.write_text(f"problem: variant_selection\nworkload_rps: 50\ncore_budget: 010\n{VARIANT}")
    assert load_problem(path).core_budget == 10


@pytest.mark.parametrize("value", ["12:30", "yes", "on"])
def test_yaml_1_1_forms_are_refused_as_numbers(tmp_path, value):
    path = tmp_path / "p.yaml"
    path.write_text(f"problem: variant_selection\nworkload_rps: 50\ncore_budget: {value}\n{VARIANT}")
    with pytest.raises(ValidationError, match=f"key 'core_budget': expected an integer, got str '{value}'"):
        load_problem(path)


# ------------------------------------------------------------------------------ 2. budget-independent tables
def brute_servable(problem):
    """The largest load within the budget, by enumeration."""
    choices = [[0] + [k for k in v.allowed_cores(problem.core_budget)] for v in problem.variants]
    best = 0.0
    for counts in itertools.product(*choices):
        if sum(counts) <= problem.core_budget:
            best = max(best, sum(v.capacity[c] for v, c in zip(problem.variants, counts) if c))
    return best


def unstable(problem):
    return dataclasses.replace(problem, prefer_stable=False)


@pytest.mark.parametrize("seed", range(60))
def test_servable_load_dense_and_front_equal_brute_force(seed, monkeypatch):
    problem = random_variant_selection(seed, max_variants=4, max_budget=10)
    expected = brute_servable(problem)
    top, alloc = problem.max_servable()
    assert top == pytest.approx(expected)
    monkeypatch.setattr(vs_problem, "_DENSE_CELLS", 0)  # the Pareto front, as for a large usable_cores
    fresh = dataclasses.replace(problem)
    front_top, front_alloc = fresh.max_servable()
    assert front_top == pytest.approx(expected)
    assert sum(front_alloc.values()) <= problem.core_budget
    assert sum(problem.variants[[v.name for v in problem.variants].index(n)].capacity[c]
               for n, c in front_alloc.items()) == pytest.approx(expected)
    assert sum(front_alloc.values()) == sum(alloc.values())  # fewest cores among the best, as the dense table


@pytest.mark.parametrize("seed", range(40))
def test_a_budget_that_cannot_bind_gives_the_brute_force_optimum(seed):
    base = unstable(random_variant_selection(seed, max_variants=4, max_budget=10))
    problem = dataclasses.replace(base, core_budget=10**12,
                                  variants=[dataclasses.replace(v, max_cores=None) for v in base.variants])
    assert problem.usable_cores == sum(max(v.allowed_cores(10**12), default=0) for v in problem.variants)
    expected = exhaustive_variant_selection(problem)
    for solver in (solve_dp, solve_frontier):
        status, plan, _ = solver(problem)
        if expected is None:
            assert status is Status.INFEASIBLE
            continue
        assert status is Status.OPTIMAL and check_variant_selection_plan(problem, plan) == []
        assert plan.objective == pytest.approx(expected[0], rel=1e-9, abs=1e-12)
    if expected is not None:
        assert servopt.solve(problem, "highs").objective == pytest.approx(expected[0], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("backend", ["auto", "highs"])
def test_a_huge_budget_needs_little_memory(backend):
    problem = VariantSelection(50, 10**7, [Variant("a", 0.7, {1: 20, 2: 44, 3: 68})])
    tracemalloc.start()
    try:
        solution = servopt.solve(problem, backend)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert solution.status is Status.OPTIMAL and solution.plan.deployment == {"a": 3}
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB"  # before: 8 x 10^7 bytes per table row


def test_the_largest_documented_budget_and_huge_core_counts():
    problem = VariantSelection(3500, 2**53, [Variant("a", 0.7, {1: 20, 10**8: 3000}),
                                             Variant("b", 0.8, {2: 30, 3 * 10**8: 1000})])
    assert problem.max_servable() == (4000.0, {"a": 10**8, "b": 3 * 10**8})  # the Pareto front, not 3 x 10^8 rows
    assert servopt.solve(problem, "highs").plan.deployment == {"a": 10**8, "b": 3 * 10**8}


# ----------------------------------------------------------------------------------- 3. the name as a model name
def _write_and_solve(tmp_path, text, *extra):
    from servopt.cli import main

    path = tmp_path / "p.yaml"
    path.write_text(text)
    return main(["solve", str(path), "--out", str(tmp_path / "repo"), "-q", *extra])


@pytest.mark.parametrize("name", ["a b/c", "."])
def test_an_invalid_name_is_refused_like_triton_name(tmp_path, capsys, name):
    code = _write_and_solve(tmp_path, f"problem: variant_selection\nname: '{name}'\nworkload_rps: 50\n"
                                      f"core_budget: 8\n{VARIANT}")
    err = capsys.readouterr().err
    assert code == 2 and f"p.yaml: key 'name': {name!r} is not a valid model name" in err
    assert not (tmp_path / "repo").exists()


def test_a_name_from_the_file_stem_is_made_valid(tmp_path):
    path = tmp_path / "my problem.yaml"
    path.write_text(f"problem: variant_selection\nworkload_rps: 50\ncore_budget: 8\n{VARIANT}")
    problem = load_problem(path)
    from servopt.triton import build_repository

    deployment, _, _ = build_repository(problem, servopt.solve(problem), source=path)
    assert deployment.name == "my_problem"


# --------------------------------------------------------------------------- 4. errors name the file and key
def test_template_errors_name_the_problem_file_and_key(tmp_path, capsys):
    (tmp_path / "two.pbtxt").write_text("instance_group [ { count: 1 kind: KIND_CPU }, { count: 1 kind: KIND_CPU } ]\n")
    code = _write_and_solve(tmp_path, f"problem: variant_selection\nworkload_rps: 50\ncore_budget: 8\n"
                                      f"triton: {{template: two.pbtxt}}\n{VARIANT}")
    err = capsys.readouterr().err
    assert code == 2 and "p.yaml: key 'triton.template': " in err and "2 instance_group entries" in err


def test_triton_rule_errors_name_the_problem_file_and_key(tmp_path, capsys):
    (tmp_path / "prio.pbtxt").write_text("dynamic_batching { default_priority_level: 5 priority_levels: 2 }\n")
    code = _write_and_solve(tmp_path, f"problem: variant_selection\nworkload_rps: 50\ncore_budget: 8\n"
                                      f"triton: {{models: {{a: {{template: prio.pbtxt}}}}}}\n{VARIANT}")
    err = capsys.readouterr().err
    assert code == 2 and "p.yaml: key 'triton.models.a.template': " in err
    assert "Triton would refuse to load model 'a': default priority level" in err


def test_a_fixed_batch_axis_names_the_problem_file_and_key(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (tmp_path / "models").mkdir()
    onnx.save(model, str(tmp_path / "models" / "fixed.onnx"))
    code = _write_and_solve(tmp_path, "problem: variant_selection\nworkload_rps: 50\ncore_budget: 8\nvariants:\n"
                                      "  - {name: b, accuracy: 0.9, capacity: {1: 1}}\n"
                                      "  - {name: a, accuracy: 0.7, capacity: {1: 20, 2: 44, 3: 68}, "
                                      "model_file: models/fixed.onnx}\n")
    err = capsys.readouterr().err
    assert code == 2 and "p.yaml: key 'variants[1].model_file': " in err and "has a fixed first axis 4" in err


def test_a_kserve_name_clash_names_the_problem_file(tmp_path, capsys):
    code = _write_and_solve(tmp_path, "problem: variant_selection\nworkload_rps: 120\ncore_budget: 10\nvariants:\n"
                                      "  - {name: resnet_50, accuracy: 0.7, capacity: {1: 20, 2: 44, 3: 68}}\n"
                                      "  - {name: resnet-50, accuracy: 0.8, capacity: {1: 20, 2: 44, 3: 68}}\n",
                            "--kserve", "--storage-uri", "s3://b/x")
    err = capsys.readouterr().err
    assert code == 2 and "p.yaml: variant 'resnet_50' and variant 'resnet-50' both become" in err
    assert not (tmp_path / "repo").exists()
