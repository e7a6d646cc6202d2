"""FLOPs of one sample at an input size that was never profiled: a non-negative polynomial in the input size.

A profile that records ``gflops`` (FLOPs of one sample at the row's input size, see
:func:`servopt.performance.work.onnx_work`) knows the work only at the profiled input sizes. To predict another
size, servopt fits per model and variant (a latency *family* without its hardware: FLOPs do not depend on the
device) the work of one sample ``s`` pixels on a side as

    gflops(s) = c0 + c2 s^2 + c4 s^4,   c0, c2, c4 >= 0

by non-negative least squares on relative errors: convolutions and linear layers over tokens scale with the pixels
(``s^2``), attention with tokens squared (``s^4``), a classifier head is constant. One profiled size gives
``c2 s^2`` only, two give ``c2 s^2 + c4 s^4``; with three or more the terms are chosen by leave-one-size-out among
``s^2``, ``c0 + s^2``, ``s^2 + s^4`` and all three (those with fewer terms than sizes): strided layers round their
feature maps, so FLOPs per pixel jump between sizes, and a term that fits a jump extrapolates it. At a
profiled size the recorded value itself is returned, so a query at a profiled size sees exactly what was fitted.
A ViT's patch embedding floors the size to a multiple of its patch, so the polynomial may be one in the floored
size ``p * floor(s / p)``, ``p`` in :data:`QUANTA`: chosen with the terms, only where it explains the profiled
sizes exactly (leave-one-size-out error at most 0.1 %) and halves the error of the size itself. Where the chosen
terms have a constant, below the smallest profiled size the FLOPs are the geometric mean of that polynomial and the
best one without a constant (at the profiled sizes a constant cannot be told from a strided layer's rounding up,
and below them it takes over).

:class:`~servopt.performance.WorkLatencyModel` uses :func:`fit_work_polys` in ``fit`` and :func:`fill_work` in
``_work`` wherever a row's ``gflops`` is missing (0, NaN or the column absent from the query).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import nnls

__all__ = ["WorkColumnMixin", "WorkPoly", "fill_work", "fit_work_poly", "fit_work_polys", "poly_key_columns",
           "with_work_column"]


@dataclass(frozen=True)
class WorkPoly:
    """``gflops(s) = c0 + c2 s^2 + c4 s^4`` with the recorded value at each profiled size (``table``)."""

    c0: float
    c2: float
    c4: float
    table: dict[float, float] = field(default_factory=dict)
    #: the size the graph sees: ``s`` itself (``None``), or ``s`` rounded ``"down"`` to a multiple of ``quantum``
    #: (a patch embedding, :data:`QUANTA`)
    rounding: str | None = None
    quantum: float = 1.0
    #: ``(c2, c4)`` of the best fit without a constant, where the chosen one has a constant ``c0``: below the
    #: smallest profiled size the FLOPs are the geometric mean of both (None: the polynomial there too); see
    #: :func:`fit_work_poly`
    below: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("c0", "c2", "c4"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"WorkPoly.{name}: expected a finite number >= 0, got {value!r}")
        if self.below is not None and not (len(self.below) == 2 and all(np.isfinite(v) and v >= 0
                                                                         for v in self.below)):
            raise ValueError(f"WorkPoly.below: expected (c2, c4), finite numbers >= 0, got {self.below!r}")
        if self.rounding not in (None, "down") or not (np.isfinite(self.quantum) and self.quantum >= 1):
            raise ValueError(f"WorkPoly: rounding must be None or 'down' and quantum a number >= 1, got "
                             f"{self.rounding!r} and {self.quantum!r}")

    def polynomial(self, size: Any) -> np.ndarray:
        """The fitted polynomial at ``size`` (pixels per side), without the recorded values (below the smallest
        profiled size, where there is a ``below``: the geometric mean of it and the polynomial without a constant)."""
        raw = np.asarray(size, dtype=float)
        s = _rounded(raw, self.rounding, self.quantum)
        out = self.c0 + self.c2 * s ** 2 + self.c4 * s ** 4
        if self.below is not None and self.table:
            without = self.below[0] * s ** 2 + self.below[1] * s ** 4
            out = np.where(raw < min(self.table), np.sqrt(out * without), out)
        return out

    def __call__(self, size: Any) -> np.ndarray:
        s = np.atleast_1d(np.asarray(size, dtype=float))
        out = self.polynomial(s)
        for at, value in self.table.items():
            out = np.where(np.isclose(s, at), value, out)
        return out


def fit_work_poly(sizes: Any, gflops: Any, terms: tuple[int, ...] | None = None,
                  roundings: tuple[tuple[str | None, float], ...] | None = None, below: bool = True) -> WorkPoly:
    """Fit :class:`WorkPoly` to per-sample FLOPs ``gflops`` measured at input sizes ``sizes`` (> 0).

    Rows with a missing (NaN) or non-positive value are ignored; repeated sizes are reduced to their median.
    ``terms``: the powers of the input size to fit (a subset of ``(0, 2, 4)``, e.g. ``(0, 2, 4)`` for the rule
    before the choice; the size itself, not rounded); None: chosen as the module says. ``roundings``: the
    ``(rounding, quantum)`` candidates of that choice (default :data:`ROUNDINGS`; ``((None, 1.0),)``: the size
    itself, the rule before the rounded sizes). ``below``: where the chosen terms have a constant ``c0``, also fit
    the best terms without one (same choice); below the smallest profiled size the FLOPs are the geometric mean of
    both (False: the polynomial there too, the rule before). At the profiled sizes a constant cannot be told from a
    strided layer's rounding up (FLOPs per pixel up at a size off the stride, which does grow the share of work
    that does not shrink with the pixels), and below them it takes over: with it, fresh sets 6, 8 and 10 put a
    CNN's smallest size 21-35 % high; without it, sets 7, 9, 12 and 15 put it 10-13 % low.

    Examples
    --------
    >>> p = fit_work_poly([64, 128], [1.0 * 64 ** 2 + 1e-4 * 64 ** 4, 1.0 * 128 ** 2 + 1e-4 * 128 ** 4])
    >>> round(float(p.polynomial(96)[()]) / (96 ** 2 + 1e-4 * 96 ** 4), 6)
    1.0
    >>> fit_work_poly([224], [4.1]).c2 * 448 ** 2
    16.4
    """
    if terms is not None and (any(t not in (0, 2, 4) for t in terms) or not {2, 4} & set(terms)):
        raise ValueError(f"fit_work_poly: terms: expected powers among 0, 2 and 4, with 2 or 4, got {terms!r}")
    s = np.asarray(sizes, dtype=float).reshape(-1)
    g = np.asarray(gflops, dtype=float).reshape(-1)
    ok = np.isfinite(s) & np.isfinite(g) & (g > 0) & (s > 0)
    s, g = s[ok], g[ok]
    if s.size == 0:
        raise ValueError("fit_work_poly: no input size with a positive gflops value")
    at = np.unique(s)
    value = np.array([float(np.median(g[s == x])) for x in at])
    table = {float(x): float(v) for x, v in zip(at, value)}
    if at.size == 1:
        return WorkPoly(0.0, float(value[0] / at[0] ** 2), 0.0, table)
    rounding, quantum = None, 1.0
    if terms is not None:
        powers = tuple(sorted(set(terms)))
    elif at.size == 2:
        powers = (2, 4)
    else:
        powers, rounding, quantum = _chosen_terms(at, value, ROUNDINGS if roundings is None else roundings)
    u = _rounded(at, rounding, quantum)
    c = _fit_terms(u, value, powers)
    low_terms = None
    if below and terms is None and c.get(0, 0.0) > 0:
        low = _best_terms(u, value, TERMS_WITHOUT_CONSTANT)[1]
        cb = _fit_terms(u, value, low)
        low_terms = (cb.get(2, 0.0), cb.get(4, 0.0))
    return WorkPoly(c.get(0, 0.0), c.get(2, 0.0), c.get(4, 0.0), table, rounding, quantum, low_terms)


#: the sets of terms (powers of the input size) a polynomial may have, fewest first
TERMS = ((2,), (0, 2), (2, 4), (0, 2, 4))

#: the patch sizes a graph may floor its input size to before the work scales (a ViT's patch embedding: 224 and
#: 230 px give the same tokens with 16 px patches); tried after the size itself, chosen with the terms
QUANTA = (8.0, 14.0, 16.0, 32.0)
#: ``(rounding, quantum)`` candidates, the size itself first (a CNN rounds each stride's feature map up, at
#: several strides, which no single multiple follows: rounding up was tried and picked wrong multiples)
ROUNDINGS = ((None, 1.0),) + tuple(("down", q) for q in QUANTA)
#: a rounded size is chosen only where it explains the profiled sizes exactly (leave-one-size-out error at most
#: this: a patch embedding's FLOPs are a polynomial in the floored size, measured 0.02-0.09 % on the fresh ViT-like
#: graphs, while the rounded fits of CNNs, 0.05-2.8 %, are chance) and halves the best error so far
ROUNDING_EXACT = 1e-3
ROUNDING_MARGIN = 0.5
#: :data:`TERMS` without a constant: those a floored size may take (a patch embedding's tokens and tokens squared;
#: every floored fit of a ViT-like graph in ``benchmarks/flops_poly.py`` draws 1-5 and the fresh sets took
#: ``s^2 + s^4``, 160 of 160; 14 of the 15 CNNs a floor explained by chance took a constant, and the floor made them
#: worse: mean error 4.9 -> 7.1 %), and those of the polynomial beside a constant one below the profiled sizes
TERMS_WITHOUT_CONSTANT = tuple(t for t in TERMS if 0 not in t)


def _rounded(size: np.ndarray, rounding: str | None, quantum: float) -> np.ndarray:
    if rounding is None:
        return size
    return np.maximum(np.floor(size / quantum), 1.0) * quantum


def _fit_terms(at: np.ndarray, value: np.ndarray, powers: tuple[int, ...]) -> dict[int, float]:
    """Non-negative least squares on relative errors: power -> coefficient."""
    design = np.stack([at ** p for p in powers], axis=1) / value[:, None]  # relative error of each size
    scale = np.linalg.norm(design, axis=0)
    coef, _ = nnls(design / scale, np.ones(at.size))
    return dict(zip(powers, map(float, coef / scale)))


def _best_terms(u: np.ndarray, value: np.ndarray,
                candidates: tuple[tuple[int, ...], ...]) -> tuple[float, tuple[int, ...]]:
    """``(error, terms)``: of ``candidates`` with fewer terms than sizes, the one whose fit predicts each size ``u``
    from the others best (mean absolute relative error, leave-one-size-out; ties: the earlier); ``(inf, (2,))``
    with none."""
    best: tuple[float, tuple[int, ...]] = (np.inf, (2,))
    for powers in candidates:
        if len(powers) >= u.size:
            continue
        errors = []
        for i in range(u.size):
            keep = np.arange(u.size) != i
            c = _fit_terms(u[keep], value[keep], powers)
            errors.append(abs(sum(c[p] * u[i] ** p for p in powers) / value[i] - 1))
        error = float(np.mean(errors))
        if error < best[0]:
            best = (error, powers)
    return best


def _chosen_terms(at: np.ndarray, value: np.ndarray,
                  roundings: tuple[tuple[str | None, float], ...]) -> tuple[tuple[int, ...], str | None, float]:
    """The terms (:data:`TERMS` with fewer terms than sizes) whose fit predicts each profiled size from the others
    best (mean absolute relative error, leave-one-size-out; ties: fewer terms), and the size they are a polynomial
    in: the size itself, or a rounded one of ``roundings`` where its best terms (:data:`TERMS_WITHOUT_CONSTANT`)
    explain the sizes exactly (error at most :data:`ROUNDING_EXACT`) and at most half as far off
    (:data:`ROUNDING_MARGIN`) as the size itself (of several, the smallest multiple). A network
    with strides rounds its feature maps (``ceil(s / stride)``), so its FLOPs per pixel jump between sizes; three
    terms through three such sizes turn a jump into an ``s^4`` trend (a ResNet-like fitted at 92, 132 and 172 px
    predicted 236 px 9.9 % high; random graphs, 1.35x beyond the largest size: 7.0 % mean and 30.9 % worst error,
    3.1 and 9.5 % with the terms chosen, ``docs/performance-models.md``). A ViT's patch embedding floors the size
    to a multiple of its patch (fresh set 15, patches of 8 px at 104, 140 and 180 px: the polynomial in the size put
    248 px 12 % low, in the floored size 0.1 %)."""
    best: dict[tuple[str | None, float], tuple[float, tuple[int, ...]]] = {}
    for rounding, quantum in roundings:
        u = _rounded(at, rounding, quantum)
        if np.unique(u).size < at.size:  # two sizes rounded together: the choice could not be checked
            continue
        best[rounding, quantum] = _best_terms(u, value, TERMS if rounding is None else TERMS_WITHOUT_CONSTANT)
    plain = best.get((None, 1.0), (np.inf, (2,)))  # (fewer than two sizes: only s^2)
    # the finest rounding that explains the sizes (a coarser multiple of it floors them alike, or nearly: fresh
    # set 12, patches of 8 px at 100, 136 and 176 px, is exact with 32 px too, and put 240 px 24 % high)
    rounded = sorted((key[1], e, p, key) for key, (e, p) in best.items() if key[0] is not None
                     and e <= ROUNDING_EXACT and e < (1 - ROUNDING_MARGIN) * plain[0])
    if rounded:
        _, _, powers, (rounding, quantum) = rounded[0]
        return powers, rounding, quantum
    return plain[1], None, 1.0


def poly_key_columns(family_index: list[int], names: list[str]) -> list[int]:
    """The family columns that key a :class:`WorkPoly`: the family without ``hardware`` (FLOPs of a graph do not
    depend on the device the graph runs on)."""
    return [c for c in family_index if names[c] != "hardware"]


def fit_work_polys(X: np.ndarray, key_columns: list[int], size_index: int | None,
                   work_index: int) -> dict[tuple[float, ...], WorkPoly]:
    """One :class:`WorkPoly` per distinct ``X[:, key_columns]`` with any positive work (column ``work_index``);
    without a size feature the sizes are taken as 1 (the recorded value is the answer)."""
    from servopt.performance._base import group_index

    keys, inverse = group_index(X, key_columns)
    sizes = X[:, size_index] if size_index is not None else np.ones(len(X))
    sizes = np.where(sizes > 0, sizes, 1.0)
    work = X[:, work_index]
    out: dict[tuple[float, ...], WorkPoly] = {}
    for g, key in enumerate(keys):
        rows = (inverse == g) & np.isfinite(work) & (work > 0)
        if rows.any():
            out[key] = fit_work_poly(sizes[rows], work[rows])
    return out


def fill_work(X: np.ndarray, polys: dict[tuple[float, ...], WorkPoly], key_columns: list[int],
              size_index: int | None, work_index: int) -> np.ndarray:
    """Per-sample work of each row: column ``work_index`` where it is positive, else the row's polynomial at its
    input size; NaN where neither is known (the caller falls back to pixels)."""
    work = np.asarray(X[:, work_index], dtype=float).copy()
    missing = ~(np.isfinite(work) & (work > 0))
    work[missing] = np.nan
    if not missing.any() or not polys:
        return work
    from servopt.performance._base import group_index

    sizes = X[:, size_index] if size_index is not None else np.ones(len(X))
    sizes = np.where(sizes > 0, sizes, 1.0)
    rows = np.flatnonzero(missing)
    keys, inverse = group_index(np.asarray(X[rows], dtype=float), key_columns)
    for g, key in enumerate(keys):  # one call per configuration: a largest-batch query holds thousands of rows
        poly = polys.get(key)
        if poly is not None:
            at = rows[inverse == g]
            work[at] = poly(sizes[at])
    return work


def with_work_column(X: Any, names: list[str], work_name: str | None) -> Any:
    """A query DataFrame with the fitted work column present (absent: 0, meaning unknown) and its NaNs as 0, in
    the fitted column order; anything else unchanged (scikit-learn's validation reports other problems)."""
    import pandas as pd

    if work_name is None or not isinstance(X, pd.DataFrame):
        return X
    if work_name not in X.columns:
        if not all(n in X.columns for n in names if n != work_name):
            return X
        X = X.assign(**{work_name: 0.0})[names]
    elif X[work_name].isna().any():
        X = X.assign(**{work_name: X[work_name].fillna(0.0)})
    return X


class WorkColumnMixin:
    """For regressors with an optional per-sample work feature (``gflops``): in ``fit`` and in prediction a
    DataFrame's work column is completed by :func:`with_work_column` (absent or NaN: 0, unknown, which the model
    fills from its polynomial in the input size). Put it before the regressor base class."""

    def _work_column_name(self) -> Any:
        """The work feature's name (``gflops``; a subclass may let its caller choose)."""
        from servopt.performance.features import WORK_FEATURE

        return WORK_FEATURE

    def _with_work(self, X: Any, names: list[str]) -> Any:
        """``X`` with the work column completed where ``names`` (the columns fitted on) include it."""
        name = self._work_column_name()
        return with_work_column(X, names, name if isinstance(name, str) and name in names else None)

    def _check_predict(self, X: Any) -> np.ndarray:
        return super()._check_predict(  # type: ignore[misc]
            self._with_work(X, [str(n) for n in getattr(self, "feature_names_in_", [])]))
