"""A backend-neutral mixed-integer linear program.

Formulations build a :class:`Model` once; every backend consumes its :class:`ModelArrays` export (sparse
constraint matrix, bounds, integrality), so no backend ever sees a formulation and no formulation ever imports a
solver.

Two ways to state constraints:

* operators, for readability::

      m = Model("knapsack")
      x = [m.add_var(f"x{i}", kind="binary") for i in range(3)]
      m.add_constraint(4 * x[0] + 3 * x[1] + 2 * x[2] <= 6, name="capacity")
      m.maximize(5 * x[0] + 4 * x[1] + 3 * x[2])

* a vectorised fast path, for formulations that build thousands of rows::

      m.add_row([0, 1, 2], [4.0, 3.0, 2.0], ub=6.0, name="capacity")

NaN and infinite coefficients are rejected when they are added, naming the variable or constraint.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Union

import numpy as np

from servopt.exceptions import ModelError

__all__ = ["VarKind", "Sense", "Var", "LinExpr", "Constraint", "Model", "ModelArrays", "quicksum"]

INF = math.inf


class VarKind(str, enum.Enum):
    """Kind of a decision variable."""

    CONTINUOUS = "continuous"
    INTEGER = "integer"
    BINARY = "binary"


class Sense(str, enum.Enum):
    """Direction of the objective."""

    MINIMIZE = "min"
    MAXIMIZE = "max"


Number = Union[int, float, np.integer, np.floating]
ExprLike = Union["Var", "LinExpr", Number]


def _is_number(value: object) -> bool:
    kind = type(value)
    if kind is float or kind is int:  # fast path for the common case (bool is not int here)
        return True
    return isinstance(value, (Real, np.integer, np.floating)) and not isinstance(value, bool)


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ModelError(f"{what} is {value}; coefficients and right-hand sides must be finite numbers")
    return value


class _Arith:
    """Operator mix-in shared by :class:`Var` and :class:`LinExpr`."""

    __slots__ = ()

    def _expr(self) -> LinExpr:  # pragma: no cover - overridden
        raise NotImplementedError

    def __add__(self, other: ExprLike) -> LinExpr:
        return self._expr()._add(other, 1.0)

    def __radd__(self, other: ExprLike) -> LinExpr:
        return self._expr()._add(other, 1.0)

    def __sub__(self, other: ExprLike) -> LinExpr:
        return self._expr()._add(other, -1.0)

    def __rsub__(self, other: ExprLike) -> LinExpr:
        return (-self._expr())._add(other, 1.0)

    def __mul__(self, other: Number) -> LinExpr:
        if not _is_number(other):
            raise ModelError(
                f"cannot multiply {self!r} by {other!r}: the model is linear, so expressions can only be "
                "multiplied by numbers"
            )
        factor = float(other)
        if not math.isfinite(factor):
            raise ModelError(f"cannot multiply {self!r} by {factor}: coefficients must be finite")
        expr = self._expr()
        return LinExpr({k: v * factor for k, v in expr.terms.items()}, expr.constant * factor, expr.model)

    __rmul__ = __mul__

    def __truediv__(self, other: Number) -> LinExpr:
        if not _is_number(other) or float(other) == 0.0:
            raise ModelError(f"cannot divide {self!r} by {other!r}: only division by a non-zero number")
        return self * (1.0 / float(other))

    def __neg__(self) -> LinExpr:
        return self * -1.0

    def __pos__(self) -> LinExpr:
        return self._expr()

    def __le__(self, other: ExprLike) -> Constraint:
        return Constraint._compare(self._expr(), other, "<=")

    def __ge__(self, other: ExprLike) -> Constraint:
        return Constraint._compare(self._expr(), other, ">=")

    def __eq__(self, other: object) -> Constraint:  # type: ignore[override]
        return Constraint._compare(self._expr(), other, "==")  # type: ignore[arg-type]

    def __bool__(self) -> bool:
        raise ModelError(
            "a servopt expression has no truth value; did you mean to build a constraint with <=, >= or ==?"
        )


class Var(_Arith):
    """A decision variable of a :class:`Model` (created by :meth:`Model.add_var`)."""

    __slots__ = ("model", "index")

    def __init__(self, model: Model, index: int) -> None:
        self.model = model
        self.index = index

    def _expr(self) -> LinExpr:
        return LinExpr({self.index: 1.0}, 0.0, self.model)

    def __mul__(self, other: Number) -> LinExpr:
        # fast path of _Arith.__mul__ for ``coef * var`` with a plain finite number
        kind = type(other)
        if kind is int or kind is float:
            factor = float(other)
            if factor - factor == 0.0:  # finite (inf - inf and nan - nan are nan)
                return LinExpr({self.index: factor}, 0.0, self.model)
        return _Arith.__mul__(self, other)

    __rmul__ = __mul__

    @property
    def name(self) -> str:
        return self.model._var_names[self.index]

    @property
    def kind(self) -> VarKind:
        return self.model._var_kinds[self.index]

    @property
    def lb(self) -> float:
        return self.model._var_lb[self.index]

    @property
    def ub(self) -> float:
        return self.model._var_ub[self.index]

    def __hash__(self) -> int:
        return hash((id(self.model), self.index))

    def __repr__(self) -> str:
        return f"Var({self.name!r})"


class LinExpr(_Arith):
    """A linear expression ``sum(coef * var) + constant``; variables are kept by index."""

    __slots__ = ("terms", "constant", "model")

    def __init__(
        self, terms: dict[int, float] | None = None, constant: float = 0.0, model: Model | None = None
    ) -> None:
        self.terms: dict[int, float] = terms if terms is not None else {}
        self.constant = float(constant)
        self.model = model

    def _expr(self) -> LinExpr:
        return self

    def copy(self) -> LinExpr:
        return LinExpr(dict(self.terms), self.constant, self.model)

    def _add(self, other: ExprLike, sign: float) -> LinExpr:
        out = self.copy()
        if isinstance(other, Var):
            out._check_model(other.model)
            out.terms[other.index] = out.terms.get(other.index, 0.0) + sign
        elif isinstance(other, LinExpr):
            out._check_model(other.model)
            for k, v in other.terms.items():
                out.terms[k] = out.terms.get(k, 0.0) + sign * v
            out.constant += sign * other.constant
        elif _is_number(other):
            value = float(other)
            if not math.isfinite(value):
                raise ModelError(f"cannot add {value} to an expression: constants must be finite")
            out.constant += sign * value
        else:
            raise ModelError(f"cannot add {type(other).__name__} {other!r} to a linear expression")
        return out

    def _check_model(self, model: Model | None) -> None:
        if model is None:
            return
        if self.model is None:
            self.model = model
        elif self.model is not model:
            raise ModelError("cannot combine variables of two different models in one expression")

    def __iadd__(self, other: ExprLike) -> LinExpr:
        """In-place addition so that ``expr += x`` in a loop stays linear-time."""
        if isinstance(other, Var):
            self._check_model(other.model)
            self.terms[other.index] = self.terms.get(other.index, 0.0) + 1.0
            return self
        if isinstance(other, LinExpr):
            self._check_model(other.model)
            for k, v in other.terms.items():
                self.terms[k] = self.terms.get(k, 0.0) + v
            self.constant += other.constant
            return self
        return self._add(other, 1.0)

    def __repr__(self) -> str:
        names = self.model._var_names if self.model is not None else None
        parts = [f"{v:+g}*{names[k] if names else f'x{k}'}" for k, v in self.terms.items()]
        if self.constant or not parts:
            parts.append(f"{self.constant:+g}")
        return "LinExpr(" + " ".join(parts) + ")"

    def value(self, values: np.ndarray) -> float:
        """Evaluate the expression at a vector of variable values."""
        return self.constant + sum(v * float(values[k]) for k, v in self.terms.items())


def quicksum(items: Iterable[ExprLike]) -> LinExpr:
    """Sum expressions in linear time (the builtin ``sum`` copies at every step)."""
    out = LinExpr()
    terms = out.terms
    for item in items:
        if type(item) is Var:  # fast path: a bare variable
            if out.model is not item.model:
                out._check_model(item.model)
            index = item.index
            terms[index] = terms.get(index, 0.0) + 1.0
        elif type(item) is LinExpr and (item.model is out.model or item.model is None):
            for k, v in item.terms.items():
                terms[k] = terms.get(k, 0.0) + v
            out.constant += item.constant
        else:
            out += item
    return out


@dataclass(frozen=True)
class Constraint:
    """``lb <= expr <= ub`` over variables, produced by comparing expressions (``x + y <= 3``)."""

    terms: Mapping[int, float]
    lb: float
    ub: float
    model: Model | None

    @staticmethod
    def _compare(lhs: LinExpr, rhs: ExprLike, op: str) -> Constraint:
        diff = lhs._add(rhs, -1.0)  # lhs - rhs (op) 0
        bound = -diff.constant
        if op == "<=":
            lb, ub = -INF, bound
        elif op == ">=":
            lb, ub = bound, INF
        else:
            lb = ub = bound
        return Constraint(diff.terms, lb, ub, diff.model)

    def __bool__(self) -> bool:
        raise ModelError("a constraint has no truth value; pass it to Model.add_constraint")


@dataclass(frozen=True, eq=False)
class ModelArrays:
    """The sparse array form of a :class:`Model`, built once and checked once.

    Rows are ``row_lb <= A @ x <= row_ub`` (``-inf`` / ``inf`` for a one-sided row); the objective is
    ``c @ x + obj_constant``, minimised or maximised according to ``sense``.
    """

    name: str
    c: np.ndarray
    obj_constant: float
    sense: Sense
    A: object  # scipy.sparse.csr_matrix, shape (n_rows, n_vars)
    row_lb: np.ndarray
    row_ub: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    integrality: np.ndarray  # bool: True for integer and binary variables
    kinds: tuple[VarKind, ...]
    var_names: tuple[str, ...]
    row_names: tuple[str, ...]

    @property
    def n_vars(self) -> int:
        return len(self.c)

    @property
    def n_rows(self) -> int:
        return len(self.row_lb)

    @property
    def is_mip(self) -> bool:
        return bool(self.integrality.any())

    @property
    def has_continuous(self) -> bool:
        return bool((~self.integrality).any())


class Model:
    """A backend-neutral MILP.

    Parameters
    ----------
    name : str
        Used in logs, LP files and error messages.

    Examples
    --------
    >>> m = Model("toy")
    >>> x = m.add_var("x", kind="integer", ub=10)
    >>> y = m.add_var("y", ub=4.5)
    >>> _ = m.add_constraint(x + 2 * y <= 12, name="cap")
    >>> m.maximize(3 * x + y)
    >>> m.num_vars, m.num_constraints
    (2, 1)
    """

    def __init__(self, name: str = "servopt") -> None:
        self.name = name
        self._var_names: list[str] = []
        self._var_kinds: list[VarKind] = []
        self._var_lb: list[float] = []
        self._var_ub: list[float] = []
        self._row_names: list[str] = []
        self._row_lb: list[float] = []
        self._row_ub: list[float] = []
        self._row_cols: list[np.ndarray] = []
        self._row_vals: list[np.ndarray] = []
        self._objective = LinExpr(model=self)
        self._sense = Sense.MINIMIZE
        self._arrays: ModelArrays | None = None

    # ------------------------------------------------------------------ variables
    def add_var(
        self,
        name: str | None = None,
        *,
        kind: VarKind | str = VarKind.CONTINUOUS,
        lb: float = 0.0,
        ub: float = INF,
    ) -> Var:
        """Add one variable. Binary variables get bounds [0, 1]; integer bounds must be whole or infinite."""
        kind = VarKind(kind)
        index = len(self._var_names)
        name = name if name is not None else f"x{index}"
        if kind is VarKind.BINARY:
            lb, ub = max(0.0, float(lb)), min(1.0, float(ub))
        lb, ub = float(lb), float(ub)
        if math.isnan(lb) or math.isnan(ub):
            raise ModelError(f"variable {name!r} has a NaN bound (lb={lb}, ub={ub}); bounds must be numbers")
        if lb > ub:
            raise ModelError(f"variable {name!r} has lb={lb} > ub={ub}; give lb <= ub")
        if lb == INF or ub == -INF:
            raise ModelError(f"variable {name!r} has bounds [{lb}, {ub}] that no finite value satisfies")
        self._var_names.append(name)
        self._var_kinds.append(kind)
        self._var_lb.append(lb)
        self._var_ub.append(ub)
        self._arrays = None
        return Var(self, index)

    def add_binary(self, name: str | None = None) -> Var:
        return self.add_var(name, kind=VarKind.BINARY)

    def add_integer(self, name: str | None = None, lb: float = 0.0, ub: float = INF) -> Var:
        return self.add_var(name, kind=VarKind.INTEGER, lb=lb, ub=ub)

    def add_continuous(self, name: str | None = None, lb: float = 0.0, ub: float = INF) -> Var:
        return self.add_var(name, kind=VarKind.CONTINUOUS, lb=lb, ub=ub)

    @property
    def variables(self) -> list[Var]:
        return [Var(self, i) for i in range(len(self._var_names))]

    @property
    def num_vars(self) -> int:
        return len(self._var_names)

    @property
    def num_constraints(self) -> int:
        return len(self._row_lb)

    def var(self, name: str) -> Var:
        """The variable called ``name``."""
        try:
            return Var(self, self._var_names.index(name))
        except ValueError:
            raise ModelError(f"model {self.name!r} has no variable {name!r}") from None

    # ---------------------------------------------------------------- constraints
    def add_constraint(self, constraint: Constraint, name: str | None = None) -> int:
        """Add a constraint built with ``<=``, ``>=`` or ``==``; returns its row index."""
        if not isinstance(constraint, Constraint):
            raise ModelError(
                f"add_constraint takes a comparison such as `x + y <= 3`, got {type(constraint).__name__}"
                f" {constraint!r} (a Python bool means both sides were plain numbers)"
            )
        if constraint.model is not None and constraint.model is not self:
            raise ModelError(f"constraint {name!r} uses variables of another model")
        cols = np.fromiter(constraint.terms.keys(), dtype=np.int64, count=len(constraint.terms))
        vals = np.fromiter(constraint.terms.values(), dtype=np.float64, count=len(constraint.terms))
        return self._append_row(cols, vals, constraint.lb, constraint.ub, name)

    def add_row(
        self,
        cols: Sequence[int] | np.ndarray,
        coefs: Sequence[float] | np.ndarray,
        lb: float = -INF,
        ub: float = INF,
        name: str | None = None,
    ) -> int:
        """Fast path: add ``lb <= sum(coefs[k] * x[cols[k]]) <= ub``; repeated columns are summed."""
        cols_arr = np.asarray(cols, dtype=np.int64)
        vals_arr = np.asarray(coefs, dtype=np.float64)
        if cols_arr.shape != vals_arr.shape or cols_arr.ndim != 1:
            raise ModelError(
                f"row {name!r}: cols and coefs must be 1-D of equal length, got {cols_arr.shape} and "
                f"{vals_arr.shape}"
            )
        if cols_arr.size and (cols_arr.min() < 0 or cols_arr.max() >= self.num_vars):
            raise ModelError(f"row {name!r} refers to a variable index outside 0..{self.num_vars - 1}")
        return self._append_row(cols_arr, vals_arr, float(lb), float(ub), name)

    def _append_row(self, cols: np.ndarray, vals: np.ndarray, lb: float, ub: float, name: str | None) -> int:
        index = len(self._row_lb)
        label = name if name is not None else f"c{index}"
        bad = ~np.isfinite(vals)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ModelError(
                f"constraint {label!r}: coefficient of variable {self._var_names[int(cols[k])]!r} is "
                f"{vals[k]}; coefficients must be finite"
            )
        if math.isnan(lb) or math.isnan(ub) or lb == INF or ub == -INF:
            raise ModelError(f"constraint {label!r}: bounds [{lb}, {ub}] are not usable; give finite numbers")
        if lb > ub:
            raise ModelError(f"constraint {label!r}: lower bound {lb} exceeds upper bound {ub}")
        self._row_names.append(label)
        self._row_lb.append(lb)
        self._row_ub.append(ub)
        self._row_cols.append(cols)
        self._row_vals.append(vals)
        self._arrays = None
        return index

    # ------------------------------------------------------------------ objective
    def set_objective(self, expr: ExprLike, sense: Sense | str = Sense.MINIMIZE) -> None:
        sense = Sense(sense)
        if isinstance(expr, Var):
            expr = expr._expr()
        elif _is_number(expr):
            expr = LinExpr({}, _finite(float(expr), "objective constant"), self)  # type: ignore[arg-type]
        if not isinstance(expr, LinExpr):
            raise ModelError(f"the objective must be a linear expression, got {type(expr).__name__}")
        if expr.model is not None and expr.model is not self:
            raise ModelError("the objective uses variables of another model")
        for k, v in expr.terms.items():
            _finite(v, f"objective coefficient of {self._var_names[k]!r}")
        self._objective = expr.copy()
        self._sense = sense
        self._arrays = None

    def minimize(self, expr: ExprLike) -> None:
        self.set_objective(expr, Sense.MINIMIZE)

    def maximize(self, expr: ExprLike) -> None:
        self.set_objective(expr, Sense.MAXIMIZE)

    def set_objective_arrays(
        self, cols: Sequence[int] | np.ndarray, coefs: Sequence[float] | np.ndarray, sense: Sense | str,
        constant: float = 0.0,
    ) -> None:
        """Fast path for :meth:`set_objective` from index and coefficient arrays."""
        terms: dict[int, float] = {}
        for k, v in zip(np.asarray(cols, dtype=np.int64).tolist(), np.asarray(coefs, dtype=float).tolist()):
            terms[k] = terms.get(k, 0.0) + v
        self.set_objective(LinExpr(terms, constant, self), sense)

    @property
    def objective(self) -> LinExpr:
        return self._objective.copy()

    @property
    def sense(self) -> Sense:
        return self._sense

    # --------------------------------------------------------------------- export
    def arrays(self) -> ModelArrays:
        """The sparse array form, built once and cached until the model changes."""
        if self._arrays is None:
            self._arrays = self._build_arrays()
        return self._arrays

    def _build_arrays(self) -> ModelArrays:
        import scipy.sparse as sp

        n = self.num_vars
        c = np.zeros(n)
        for k, v in self._objective.terms.items():
            c[k] += v
        lengths = np.fromiter((len(r) for r in self._row_cols), dtype=np.int64, count=len(self._row_cols))
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.concatenate(self._row_cols) if self._row_cols else np.zeros(0, dtype=np.int64)
        data = np.concatenate(self._row_vals) if self._row_vals else np.zeros(0)
        A = sp.csr_matrix((data, indices, indptr), shape=(len(lengths), n))
        A.sum_duplicates()
        A.eliminate_zeros()
        kinds = tuple(self._var_kinds)
        integrality = np.fromiter((k is not VarKind.CONTINUOUS for k in kinds), dtype=bool, count=n)
        return ModelArrays(
            name=self.name,
            c=c,
            obj_constant=self._objective.constant,
            sense=self._sense,
            A=A,
            row_lb=np.asarray(self._row_lb, dtype=float),
            row_ub=np.asarray(self._row_ub, dtype=float),
            lb=np.asarray(self._var_lb, dtype=float),
            ub=np.asarray(self._var_ub, dtype=float),
            integrality=integrality,
            kinds=kinds,
            var_names=tuple(self._var_names),
            row_names=tuple(self._row_names),
        )

    def to_lp(self) -> str:
        """The model in CPLEX LP format, for debugging (names are sanitised for the format)."""
        from servopt.lp_format import write_lp

        return write_lp(self.arrays())

    def write_lp(self, path: str | Path) -> Path:
        """Write :meth:`to_lp` to ``path``."""
        path = Path(path)
        path.write_text(self.to_lp())
        return path

    def __repr__(self) -> str:
        return f"Model({self.name!r}, vars={self.num_vars}, constraints={self.num_constraints})"
