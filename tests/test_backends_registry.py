"""Registry, ``servopt backends``, lazy imports, Gurobi's licence limit, limits and honest statuses."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from _solution_check import assert_bound_consistent, assert_feasible

from servopt import (
    CapabilityError,
    LicenseLimitError,
    Model,
    Result,
    SolveParams,
    Status,
    ValidationError,
    solve,
)
from servopt.backends import REGISTRY, available, backend_names, check_capabilities, describe, get_backend
from servopt.cli import main
from servopt.solve import choose_backend, model_class

SOLVER_MODULES = ("ortools", "highspy", "gurobipy", "cvxpy")


# ------------------------------------------------------------------------------------------------ registry
def test_registry_names_the_five_backends() -> None:
    assert backend_names() == ["cpsat", "highs", "scip", "gurobi", "cvxpy"]
    for name in REGISTRY:
        cls = get_backend(name)
        assert cls.name == name
        assert cls.installed()  # every solver is installed on the development machine and in CI
        assert cls.version()


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(ValidationError, match="unknown backend 'glpk'.*cpsat, highs, scip, gurobi, cvxpy"):
        get_backend("glpk")
    m = Model("x")
    m.add_binary("b")
    with pytest.raises(ValidationError, match="unknown backend"):
        solve(m, "glpk")


def test_describe_rows() -> None:
    rows = {r["name"]: r for r in describe()}
    assert set(rows) == set(REGISTRY)
    assert rows["cpsat"]["capabilities"].startswith("integer variables")
    assert "fractional data needs scale=" in rows["cpsat"]["capabilities"]
    assert rows["highs"]["capabilities"] == "continuous+integer variables"
    assert rows["gurobi"]["package"] == "gurobipy" and rows["cvxpy"]["package"] == "cvxpy"
    assert available() == list(REGISTRY)


def test_probing_imports_no_solver_and_import_servopt_neither() -> None:
    code = (
        "import sys, servopt; "
        "mods = " + repr(SOLVER_MODULES) + "; "
        "after_import = [m for m in mods if m in sys.modules]; "
        "from servopt.backends import describe, available; describe(); available(); "
        "after_probe = [m for m in mods if m in sys.modules]; "
        "print(after_import, after_probe)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []", out.stdout + out.stderr


def test_capability_check_runs_before_building_and_lists_alternatives() -> None:
    m = Model("mixed")
    m.add_continuous("rps")
    m.add_integer("replicas", ub=4)
    with pytest.raises(CapabilityError, match=r"'rps' is continuous; backends that can take it: highs, scip"):
        check_capabilities("cpsat", m.arrays(), SolveParams())
    for name in ("highs", "scip", "gurobi", "cvxpy"):
        check_capabilities(name, m.arrays(), SolveParams())


# --------------------------------------------------------------------------------------------------- CLI
def test_cli_table_shows_all_five_usable(capsys) -> None:
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["backend", "installed", "usable", "version"]
    body = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(body) == set(REGISTRY)
    for name, cells in body.items():
        assert cells[1] == "yes" and cells[2] == "yes", f"{name}: {cells}"
        assert cells[3] == get_backend(name).version()


def test_cli_json(capsys) -> None:
    assert main(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(REGISTRY)
    for r in rows:
        assert r["installed"] is True and r["usable"] is True, r
        assert r["version"] and r["capabilities"] and r["detail"] == "solved a test model"


def test_cli_no_check_probes_only(capsys) -> None:
    assert main(["backends", "--no-check", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["usable"] is None and "not checked" in r["detail"] for r in rows)


def test_cli_no_check_imports_no_solver() -> None:
    code = (
        "import sys, io, contextlib; from servopt.cli import main; "
        "buf = io.StringIO(); ctx = contextlib.redirect_stdout(buf); ctx.__enter__(); "
        "rc = main(['backends', '--no-check']); ctx.__exit__(None, None, None); "
        "print(rc, [m for m in " + repr(SOLVER_MODULES) + " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0 []", out.stdout + out.stderr


def test_solves_print_nothing_unless_verbose() -> None:
    """Autoscalers need silent solves: no banner, no log, on any backend, in a fresh process."""
    code = (
        "import servopt\n"
        "m = servopt.Model('quiet'); x = m.add_integer('x', ub=3); m.maximize(x)\n"
        "for b in " + repr(list(REGISTRY)) + ":\n"
        "    assert servopt.solve(m, b).objective == 3\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "" and out.stderr == ""


# ----------------------------------------------------------------------------------------------- Gurobi
@pytest.mark.gurobi
def test_gurobi_licence_limit_is_a_clear_error() -> None:
    m = Model("too big for the pip licence")
    n = 2500
    for j in range(n):
        m.add_binary(f"x{j}")
    m.add_row(np.arange(n), np.ones(n), ub=10, name="cap")
    m.set_objective_arrays(np.arange(n), np.arange(n) % 7 + 1.0, "max")
    with pytest.raises(LicenseLimitError) as info:
        solve(m, "gurobi")
    text = str(info.value)
    assert "2,000 variables and 2,000 linear constraints" in text
    assert "2,500 variables and 1 constraints" in text
    assert "'highs' or 'cpsat'" in text and "full licence" in text
    assert isinstance(info.value, RuntimeError)
    assert solve(m, "highs").status is Status.OPTIMAL  # the suggested alternative works


# -------------------------------------------------------------------------------- limits and statuses
def hard_knapsack(n: int = 400, k: int = 20, seed: int = 5) -> Model:
    """A multi-dimensional 0/1 knapsack that no backend closes in a fraction of a second."""
    rng = np.random.default_rng(seed)
    W = rng.integers(100, 1000, (k, n))
    m = Model("hard_mkp")
    for j in range(n):
        m.add_binary(f"x{j}")
    for i in range(k):
        m.add_row(np.arange(n), W[i], ub=int(W[i].sum() // 2), name=f"w{i}")
    m.set_objective_arrays(np.arange(n), rng.integers(100, 1000, n), "max")
    return m


#: a deterministic work limit per backend (nodes, or CP-SAT's deterministic time on one worker): unlike a wall-clock
#: limit, where it stops does not depend on how busy the machine is, so the outcome is the same on every run
DETERMINISTIC_LIMITS = {
    "highs": ({"mip_max_nodes": 5}, 1),
    "cvxpy": ({"mip_max_nodes": 5}, 1),
    "cpsat": ({"max_deterministic_time": 0.1, "num_workers": 1}, None),
    "scip": ({"limits/nodes": 5}, None),
    "gurobi": ({"NodeLimit": 5}, 1),
}


@pytest.mark.parametrize("backend", ["highs", "cpsat", "scip", "gurobi", "cvxpy"])
def test_work_limit_returns_feasible_with_incumbent_and_bound(backend: str) -> None:
    model = hard_knapsack()
    options, threads = DETERMINISTIC_LIMITS[backend]
    r = solve(model, backend, options=options, threads=threads)
    assert r.status is Status.FEASIBLE, r.message
    assert "limit" in r.message and "not proven optimal" in r.message
    assert_feasible(model.arrays(), r)
    assert_bound_consistent(model.arrays(), r)
    assert r.best_bound > r.objective  # the gap is open: that is why it is not "optimal"
    again = solve(model, backend, options=options, threads=threads)
    assert (again.status, again.objective) == (r.status, r.objective)  # deterministic


def test_time_limit_wording_names_the_time_limit() -> None:
    from servopt.backends._common import finish_with_solution

    arrays = hard_knapsack(n=3, k=1).arrays()
    answer = finish_with_solution(solver_optimal=False, objective=10.0, bound=12.0, values=np.zeros(3),
                                  params=SolveParams(time_limit_s=0.3), arrays=arrays, limit="the time limit")
    assert answer.status is Status.FEASIBLE and "stopped by the time limit" in answer.message


@pytest.mark.parametrize("backend", ["highs", "cpsat", "scip", "gurobi", "cvxpy"])
def test_gap_limit_status_is_honest(backend: str) -> None:
    model = hard_knapsack(n=120, k=8)
    r = solve(model, backend, mip_gap=0.2, threads=1)
    assert r.status in (Status.OPTIMAL, Status.FEASIBLE)
    assert_feasible(model.arrays(), r)
    assert_bound_consistent(model.arrays(), r)
    gap = abs(r.best_bound - r.objective) / abs(r.objective)
    assert gap <= 0.2 + 1e-9
    closed = gap <= 1e-6
    assert (r.status is Status.OPTIMAL) == closed, (r.status, gap, r.message)


def test_result_is_frozen_and_values_read_only() -> None:
    m = Model("frozen")
    x = m.add_integer("x", ub=2)
    m.maximize(x)
    r = solve(m, "highs")
    assert isinstance(r, Result)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.objective = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        r.values[0] = 5.0  # type: ignore[index]
    assert r.build_seconds >= 0 and r.solve_seconds >= 0


# ------------------------------------------------------------------------------------------------- auto
def _model(kind: str) -> Model:
    m = Model(kind)
    if kind == "lp":
        x = m.add_continuous("x", ub=4)
    elif kind == "integer":
        x = m.add_integer("x", ub=4)
    elif kind == "mixed":
        x = m.add_integer("x", ub=4)
        m.add_continuous("y", ub=1)
    else:  # integer with fractional data
        x = m.add_integer("x", ub=4)
        m.add_constraint(0.5 * x <= 1.2, name="frac")
    m.maximize(x)
    return m


@pytest.mark.parametrize(
    ("kind", "cls", "backend"),
    [("lp", "lp", "highs"), ("integer", "integer", "cpsat"), ("mixed", "mixed", "highs"),
     ("fractional", "integer-general", "scip")],
)
def test_auto_picks_by_model_class(kind: str, cls: str, backend: str) -> None:
    m = _model(kind)
    assert model_class(m.arrays()) == cls
    assert choose_backend(m.arrays()) == backend
    r = solve(m, "auto")
    assert r.backend == backend and r.status is Status.OPTIMAL


def test_infinite_bounds_keep_auto_off_cpsat() -> None:
    m = Model("unbounded var")
    x = m.add_integer("x")  # ub = inf
    m.add_constraint(x <= 7)
    m.maximize(x)
    assert model_class(m.arrays()) == "integer-general"
    assert solve(m).backend == "scip"
