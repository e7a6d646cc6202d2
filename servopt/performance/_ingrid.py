"""In-grid latency of a profiled configuration, chosen per configuration by nested (inner) cross-validation.

Up to its largest profiled batch, a configuration of :class:`~servopt.performance.WorkLatencyModel` can be
predicted by four defensible curves, none of which wins on every profile:

* ``hinge``: the configuration's own soft hinge in batch (:func:`~servopt.performance._curves.fit_curve`; three
  parameters on one batch sweep: little bias where the sweep is smooth, but it follows the noise of that sweep);
* ``family``: the floor-plus-roofline of its family, pooled over input sizes
  (:func:`~servopt.performance.work_latency.fit_roofline`), times the configuration's size correction (the mean
  log residual of its rows; several sweeps share four parameters: less variance, bias where a size does not
  scale with its pixels);
* ``mean``: the geometric mean of the two (a hedge between them);
* ``interp``: linear interpolation in batch of the latencies (on the monotone envelope when the model uses it),
  flat below the smallest batch (no bias at the profiled batches, the variance of one point between them).

**The rule** (``in_grid="select"``; written down and fixed before the benchmark was run with it). For each
configuration with at least ``MIN_INNER_FOLDS + 2`` and at most ``MAX_INNER_BATCHES`` distinct training batch
sizes, leave each of its batch sizes except the smallest and the largest out in turn (either would be an
extrapolation, which another path serves: beyond the grid the growth from the largest batch, below it
``WorkLatencyModel._below_grid`` from the smallest; the smallest was left out too until the fresh CPU set 12, see
:func:`_folds`), refit every candidate on the remaining rows of the training data (the configuration's envelope
recomputed without the left-out batch; the family's roofline refitted without that row; both refits
warm-started from the full fits: one start instead of two, and solved to their optimum, all folds of all
configurations together, by :mod:`servopt.performance._lsq`) and score its prediction of the
left-out batch by the absolute log error against the fitted target (the envelope value). The candidate with the
smallest mean error serves the configuration; ties go to the earlier of ``hinge``, ``family``, ``mean``,
``interp`` (the model before comes first). Other configurations keep ``hinge``.

Why this rule: which candidate is better is a question of the noise of one sweep against the structure shared
by the sweeps of a family, which differs between profiles (on the H200 profiles the family curve in-grid was
better than the hinge on three of four and worse on the fourth). Leave-one-batch-out inside the training rows
estimates exactly the error of the prediction being made (a batch inside the profiled range that was not
profiled) and uses nothing but the training rows: a held-out row cannot change the choice. The absolute log
error is symmetric and equals the relative error for small errors. Selection rather than weights: the inner
estimate rests on a handful of points, and the ``mean`` candidate already offers the averaged curve where the
two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servopt.exceptions import ValidationError
from servopt.performance._curves import Curve, fit_curves

__all__ = ["CANDIDATES", "Config", "IN_GRID_RULES", "InGrid", "MAX_INNER_BATCHES", "MIN_INNER_FOLDS",
           "check_rule", "choose_in_grids", "envelope_1d"]

#: the in-grid candidates, in tie-break order
CANDIDATES = ("hinge", "family", "mean", "interp")
#: ``in_grid`` values: the nested cross-validation, or one candidate for every configuration
IN_GRID_RULES = ("select",) + CANDIDATES
#: inner folds (left-out batch sizes) a configuration needs for the choice; fewer: ``hinge``
MIN_INNER_FOLDS = 3
#: configurations with more distinct batch sizes keep ``hinge`` (bounds the cost of the inner refits)
MAX_INNER_BATCHES = 32


def check_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`IN_GRID_RULES`, else a :class:`ValidationError` naming it."""
    if rule not in IN_GRID_RULES:
        raise ValidationError(f"in_grid={rule!r}: expected one of {', '.join(IN_GRID_RULES)}")
    return rule


@dataclass(frozen=True)
class InGrid:
    """The in-grid latency of one configuration; call it with batch sizes and their works.

    Attributes
    ----------
    kind : str
        The candidate used (one of :data:`CANDIDATES`).
    hinge : Curve
        The configuration's soft hinge.
    roof : callable or None
        The family's floor-plus-roofline in work (``None``: ``family`` and ``mean`` fall back to ``hinge``).
    shift : float
        The configuration's size correction (log), applied to ``roof``.
    batches, levels : ndarray
        Distinct training batch sizes and the (non-decreasing) latency at each, for ``interp``.
    errors : tuple of (str, float)
        Inner mean absolute log error per candidate (empty where no inner cross-validation ran).
    """

    kind: str
    hinge: Curve
    roof: object | None
    shift: float
    batches: np.ndarray
    levels: np.ndarray
    errors: tuple[tuple[str, float], ...] = ()

    def __call__(self, b: np.ndarray, w: np.ndarray) -> np.ndarray:
        return evaluate(self.kind, self.hinge, self.roof, self.shift, self.batches, self.levels, b, w)


def evaluate(kind: str, hinge: Curve, roof: object | None, shift: float, batches: np.ndarray, levels: np.ndarray,
             b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Candidate ``kind`` at batch sizes ``b`` with works ``w`` (non-decreasing in ``b`` for a fixed per-sample
    work)."""
    b = np.asarray(b, dtype=float)
    if kind == "interp":
        return np.interp(b, batches, levels)
    own = hinge(b)
    if kind == "hinge" or roof is None:
        return own
    family = roof(np.asarray(w, dtype=float)) * np.exp(shift)
    if kind == "family":
        return family
    return np.sqrt(own * family)


def envelope_1d(b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each value clipped to the smallest value at a larger batch (one configuration's monotone envelope)."""
    order = np.argsort(b, kind="stable")
    bs, ys = b[order], y[order]
    out = ys.copy()
    later_min = np.inf
    i = len(bs) - 1
    while i >= 0:  # walk down by distinct batch: every row of a batch sees the minimum over larger batches
        j = i
        while j > 0 and bs[j - 1] == bs[i]:
            j -= 1
        out[j:i + 1] = np.minimum(ys[j:i + 1], later_min)
        later_min = min(later_min, float(ys[j:i + 1].min()))
        i = j - 1
    result = np.empty_like(out)
    result[order] = out
    return result


def _levels(b: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct batch sizes and the running maximum of the median value at each (most batches have one row)."""
    batches, inverse, counts = np.unique(b, return_inverse=True, return_counts=True)
    levels = np.empty(batches.size)
    levels[inverse] = y
    for i in np.flatnonzero(counts > 1):
        levels[i] = float(np.median(y[inverse == i]))
    return batches, np.maximum.accumulate(levels)


@dataclass(frozen=True)
class Config:
    """One configuration's training rows and full fits, as :func:`choose_in_grids` takes them.

    Attributes
    ----------
    b, w, raw, target : ndarray
        Batch sizes, works, measured latencies and fitted targets (the envelope of ``raw`` when the model uses
        it) of its training rows.
    fam_w, fam_y : ndarray
        Works and fitted targets of every training row of its family; ``mine`` marks the configuration's rows
        among them (in the order of ``b``).
    roof, shift, hinge
        The full fits: the family's roofline, the configuration's size correction and its soft hinge.
    """

    b: np.ndarray
    w: np.ndarray
    raw: np.ndarray
    target: np.ndarray
    fam_w: np.ndarray
    fam_y: np.ndarray
    mine: np.ndarray
    roof: object
    shift: float
    hinge: Curve


@dataclass(frozen=True)
class _Folds:
    """The inner folds of one configuration: rows left out, targets kept, the family's rows kept."""

    outs: list[np.ndarray]
    y_keeps: list[np.ndarray]
    fam_ws: list[np.ndarray]
    fam_ys: list[np.ndarray]


def choose_in_grids(rule: str, configs: list[Config], *, envelope: bool, refit_roof, robust_scale: float,
                    min_free_points: int) -> list[InGrid]:
    """The in-grid predictor of each configuration under ``rule`` (see the module docstring); the refits of every
    inner fold of every configuration are solved together.

    Parameters
    ----------
    rule : str
        One of :data:`IN_GRID_RULES`.
    configs : list of Config
        The configurations of one model.
    envelope : bool
        The targets are the monotone envelope of the measurements (recomputed without each left-out batch).
    refit_roof : callable
        ``refit_roof(works, latencies, starts)``: the family roofline refitted on each data set of the lists
        ``works`` and ``latencies``, warm-started at the matching roofline of ``starts``.
    """
    kind = check_rule(rule)
    levels = [_levels(c.b, c.target) for c in configs]
    inner = [rule == "select" and MIN_INNER_FOLDS + 2 <= lv[0].size <= MAX_INNER_BATCHES for lv in levels]
    folds = {i: _folds(c, envelope) for i, c in enumerate(configs) if inner[i]}
    data = [(i, j) for i, f in folds.items() for j in range(len(f.outs))]
    hinges = fit_curves([configs[i].b[~folds[i].outs[j]] for i, j in data], [folds[i].y_keeps[j] for i, j in data],
                        robust_scale=robust_scale, min_free_points=min_free_points,
                        start=[configs[i].hinge for i, _ in data])
    roofs = refit_roof([folds[i].fam_ws[j] for i, j in data], [folds[i].fam_ys[j] for i, j in data],
                       [configs[i].roof for i, _ in data])
    refits: dict[int, list[tuple[Curve, object]]] = {i: [] for i in folds}
    for (i, _), hinge, roof in zip(data, hinges, roofs):
        refits[i].append((hinge, roof))
    out = []
    for i, c in enumerate(configs):
        errors: tuple[tuple[str, float], ...] = ()
        chosen = "hinge" if rule == "select" else kind
        if i in folds:
            scores = _scores(c, folds[i], refits[i])
            chosen = min(CANDIDATES, key=lambda k: (scores[k], CANDIDATES.index(k)))
            errors = tuple((k, float(scores[k])) for k in CANDIDATES)
        out.append(InGrid(chosen, c.hinge, c.roof, float(c.shift), levels[i][0], levels[i][1], errors))
    return out


def _folds(c: Config, envelope: bool) -> _Folds:
    """Leave each batch size of ``c`` but the smallest and the largest out in turn: the targets kept (the envelope
    recomputed without the left-out batch) and the family's rows kept, with the configuration's targets replaced.

    (Until the fresh CPU set 12 the smallest batch was left out too: the candidates were then scored on a
    prediction below the grid that the model never makes with them, and ``interp``, flat there, lost by about
    ``log 2`` on that fold wherever latency grows with the batch from the start, so it was almost never chosen:
    leave-one-batch-out on the twelve fresh CPU sets 4.0 % against 2.8 % with that fold dropped. On the GPU
    profiles, where a flat start is the floor, interpolation is chosen more often now and is not better there:
    NVIDIA's tables 4.81 -> 4.94 %, ``docs/performance-models.md``.)"""
    own_in_family = np.flatnonzero(c.mine)
    outs = [c.b == v for v in np.unique(c.b)[1:-1]]
    y_keeps = [envelope_1d(c.b[~out], c.raw[~out]) if envelope else c.raw[~out] for out in outs]
    fam_ws, fam_ys = [], []
    for out, y_keep in zip(outs, y_keeps):
        fam_keep = np.ones(len(c.fam_w), dtype=bool)
        fam_keep[own_in_family[out]] = False
        y_fam = c.fam_y.copy()
        y_fam[own_in_family[~out]] = y_keep
        fam_ws.append(c.fam_w[fam_keep])
        fam_ys.append(y_fam[fam_keep])
    return _Folds(outs, y_keeps, fam_ws, fam_ys)


def _scores(c: Config, folds: _Folds, refits: list[tuple[Curve, object]]) -> dict[str, float]:
    """Mean absolute log error of each candidate over the inner folds, from the refits of each fold (the hinge
    and the family roofline, warm-started at the full fits)."""
    errs: dict[str, list[np.ndarray]] = {k: [] for k in CANDIDATES}
    for out, y_keep, (hinge, inner_roof) in zip(folds.outs, folds.y_keeps, refits):
        keep = ~out
        shift = float(np.mean(np.log(y_keep) - np.log(inner_roof(c.w[keep]))))
        batches, levels = _levels(c.b[keep], y_keep)
        truth = np.log(c.target[out])
        for k in CANDIDATES:
            got = evaluate(k, hinge, inner_roof, shift, batches, levels, c.b[out], c.w[out])
            errs[k].append(np.abs(np.log(got) - truth))
    return {k: float(np.mean(np.concatenate(errs[k]))) for k in CANDIDATES}
