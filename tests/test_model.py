"""The neutral model: operators, validation (NaN/Inf named), the array export, and the LP writer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servopt import LinExpr, Model, ModelError, Sense, VarKind, quicksum, solve


# --------------------------------------------------------------------------------------------- operators
def test_operators_build_the_expected_terms() -> None:
    m = Model("ops")
    x, y, z = m.add_integer("x", ub=5), m.add_continuous("y"), m.add_binary("z")
    expr = 2 * x + y * 3 - z / 2 + 4 - (x - 1)
    assert isinstance(expr, LinExpr)
    assert expr.terms == {x.index: 1.0, y.index: 3.0, z.index: -0.5}
    assert expr.constant == 5.0
    assert (-x).terms == {x.index: -1.0}
    assert (+y).terms == {y.index: 1.0}
    assert (5 - x).terms == {x.index: -1.0} and (5 - x).constant == 5.0
    assert (np.float64(2.5) * x).terms == {x.index: 2.5}
    assert (np.int64(3) * x).terms == {x.index: 3.0}


def test_comparisons_give_constraints_with_sides() -> None:
    m = Model("cmp")
    x, y = m.add_continuous("x"), m.add_continuous("y")
    le = x + 2 * y <= 7
    ge = x + 1 >= y
    eq = x == 3
    assert (le.lb, le.ub) == (-math.inf, 7.0)
    assert dict(ge.terms) == {x.index: 1.0, y.index: -1.0} and (ge.lb, ge.ub) == (-1.0, math.inf)
    assert (eq.lb, eq.ub) == (3.0, 3.0)


def test_quicksum_matches_builtin_sum_and_merges_repeats() -> None:
    m = Model("sum")
    xs = [m.add_binary(f"x{i}") for i in range(5)]
    a = quicksum(xs + [xs[0], 2 * xs[1], 3])
    b = sum(xs) + xs[0] + 2 * xs[1] + 3
    assert a.terms == b.terms and a.constant == b.constant == 3.0
    assert a.terms[xs[0].index] == 2.0 and a.terms[xs[1].index] == 3.0
    assert quicksum([]).terms == {}


def test_iadd_is_in_place_and_linear() -> None:
    m = Model("iadd")
    x = m.add_continuous("x")
    expr = LinExpr()
    same = expr
    for _ in range(3):
        expr += x
    assert expr is same and expr.terms == {x.index: 3.0}


def test_expressions_have_no_truth_value() -> None:
    m = Model("bool")
    x = m.add_continuous("x")
    with pytest.raises(ModelError, match="no truth value"):
        bool(x + 1)
    with pytest.raises(ModelError, match="no truth value"):
        bool(x <= 1)


def test_nonlinear_and_cross_model_use_is_rejected() -> None:
    m, other = Model("a"), Model("b")
    x, y = m.add_continuous("x"), other.add_continuous("y")
    with pytest.raises(ModelError, match="linear"):
        _ = x * x  # type: ignore[operator]
    with pytest.raises(ModelError, match="two different models"):
        _ = x + y
    with pytest.raises(ModelError, match="non-zero"):
        _ = x / 0
    with pytest.raises(ModelError, match="comparison"):
        m.add_constraint(True)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="another model"):
        m.add_constraint(y <= 1, name="foreign")


# ------------------------------------------------------------------------------------- NaN / Inf named
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_inf_coefficient_names_the_variable_and_constraint(bad: float) -> None:
    m = Model("nan")
    m.add_continuous("a")
    m.add_continuous("load")
    with pytest.raises(ModelError, match=r"constraint 'cap'.*variable 'load'"):
        m.add_row([0, 1], [1.0, bad], ub=3, name="cap")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_factor_is_rejected_in_operators(bad: float) -> None:
    m = Model("nan")
    x = m.add_continuous("throughput")
    with pytest.raises(ModelError, match="finite"):
        _ = bad * x
    with pytest.raises(ModelError, match="finite"):
        _ = x + bad


def test_nan_objective_coefficient_names_the_variable() -> None:
    m = Model("obj")
    m.add_continuous("x")
    m.add_continuous("cores")
    with pytest.raises(ModelError, match="'cores'"):
        m.set_objective_arrays([0, 1], [1.0, math.nan], "min")


def test_bad_bounds_name_the_variable_or_constraint() -> None:
    m = Model("bounds")
    with pytest.raises(ModelError, match="'gpus'.*NaN"):
        m.add_var("gpus", lb=math.nan)
    with pytest.raises(ModelError, match="'gpus'.*lb=5.0 > ub=1.0"):
        m.add_var("gpus", lb=5, ub=1)
    with pytest.raises(ModelError, match="'never'"):
        m.add_var("never", lb=math.inf)
    m.add_continuous("x")
    with pytest.raises(ModelError, match="constraint 'sla'"):
        m.add_row([0], [1.0], lb=math.nan, name="sla")
    with pytest.raises(ModelError, match="constraint 'sla'.*exceeds"):
        m.add_row([0], [1.0], lb=3, ub=2, name="sla")
    with pytest.raises(ModelError, match="constraint 'sla'"):
        m.add_row([0], [1.0], lb=math.inf, name="sla")
    with pytest.raises(ModelError, match="outside"):
        m.add_row([0, 7], [1.0, 1.0], ub=1, name="idx")


# ------------------------------------------------------------------------------------------------ arrays
def test_arrays_export_matches_the_model() -> None:
    m = Model("arr")
    x = m.add_integer("x", lb=-2, ub=4)
    y = m.add_continuous("y", ub=2.5)
    z = m.add_binary("z")
    m.add_constraint(x + 2 * y - z <= 10, name="r0")
    m.add_constraint(x + x + y >= 1, name="r1")  # repeated variable summed
    m.add_row([2, 0], [3.0, 0.0], lb=1, ub=1, name="r2")  # explicit zero dropped
    m.maximize(3 * x - y + 7)
    a = m.arrays()
    assert (a.n_vars, a.n_rows) == (3, 3)
    np.testing.assert_array_equal(a.A.toarray(), [[1, 2, -1], [2, 1, 0], [0, 0, 3]])
    assert a.A.nnz == 6
    np.testing.assert_array_equal(a.row_lb, [-math.inf, 1, 1])
    np.testing.assert_array_equal(a.row_ub, [10, math.inf, 1])
    np.testing.assert_array_equal(a.lb, [-2, 0, 0])
    np.testing.assert_array_equal(a.ub, [4, 2.5, 1])
    np.testing.assert_array_equal(a.integrality, [True, False, True])
    np.testing.assert_array_equal(a.c, [3, -1, 0])
    assert a.obj_constant == 7 and a.sense is Sense.MAXIMIZE
    assert a.kinds == (VarKind.INTEGER, VarKind.CONTINUOUS, VarKind.BINARY)
    assert a.var_names == ("x", "y", "z") and a.row_names == ("r0", "r1", "r2")
    assert a.is_mip and a.has_continuous


def test_arrays_are_cached_until_the_model_changes() -> None:
    m = Model("cache")
    x = m.add_continuous("x")
    first = m.arrays()
    assert m.arrays() is first
    m.add_constraint(x <= 1)
    second = m.arrays()
    assert second is not first and second.n_rows == 1


def test_binary_bounds_are_clamped_and_variable_lookup_works() -> None:
    m = Model("bin")
    z = m.add_var("z", kind="binary", lb=-3, ub=7)
    assert (z.lb, z.ub, z.kind) == (0.0, 1.0, VarKind.BINARY)
    assert m.var("z").index == z.index
    with pytest.raises(ModelError, match="no variable 'w'"):
        m.var("w")


def test_result_reads_values_by_variable_and_expression() -> None:
    m = Model("read")
    x = m.add_integer("x", ub=3)
    y = m.add_integer("y", ub=2)
    m.maximize(x + 2 * y)
    r = solve(m, "highs")
    assert r[x] == 3 and r[y] == 2 and r.value(x + y + 1) == 6
    assert r.values is not None and not r.values.flags.writeable


# -------------------------------------------------------------------------------------------- LP writer
def _lp_model() -> Model:
    m = Model("lp round trip")
    x = m.add_integer("gpus[a100]", lb=0, ub=8)
    y = m.add_continuous("load rps", lb=-2, ub=40.5)
    z = m.add_binary("on")
    f = m.add_continuous("free", lb=-math.inf)
    m.add_constraint(3 * x + 0.5 * y - 4 * z <= 30, name="cap")
    m.add_constraint(x + y == 12.25, name="eq")
    m.add_row([0, 2], [1.0, 1.0], lb=1, ub=6, name="range")
    m.add_constraint(f >= x - 5, name="free_link")
    m.maximize(2 * x + y - f + 3 * z + 1.5)
    return m


def test_lp_writer_round_trips_through_highs(tmp_path) -> None:
    from highspy._core import _Highs

    m = _lp_model()
    path = m.write_lp(tmp_path / "model.lp")
    text = path.read_text()
    assert "Maximize" in text and "General" in text and "range_lo:" in text and "range_hi:" in text
    h = _Highs()
    h.setOptionValue("output_flag", False)
    assert h.readModel(str(path)).name == "kOk", text
    h.run()
    assert h.getModelStatus().name == "kOptimal"
    direct = solve(m, "highs")
    assert direct.status.value == "optimal"
    assert h.getInfo().objective_function_value == pytest.approx(direct.objective, abs=1e-9)
    lp = h.getLp()
    assert lp.num_col_ == m.num_vars + 1  # plus the fixed variable that carries the objective constant
    assert lp.num_row_ == m.num_constraints + 1  # the ranged row is written as two rows


def test_lp_writer_is_deterministic_and_sanitises_names() -> None:
    m = _lp_model()
    text = m.to_lp()
    assert text == _lp_model().to_lp()
    assert "gpus_a100_" in text and "load_rps" in text
    assert "[" not in text and "load rps" not in text
