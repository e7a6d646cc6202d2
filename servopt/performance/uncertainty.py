"""Prediction intervals from held-out residuals (split conformal) and where a prediction sits in the profiles.

Intervals: ``servopt fit`` cross-validates every target (leave one batch size out). The held-out log ratios
``log(y / prediction)`` are exchangeable with those of a new point of the same kind, so their empirical quantiles
at ``(1 - level) / 2`` and ``(1 + level) / 2``, with the split-conformal finite-sample correction (rank
``ceil((n + 1) q)``), bound a new point's ratio at the stated level. Points held out at the smallest or largest
batch of their configuration are extrapolations; they get their own quantiles (``edge``), used for queries that
extrapolate in batch, input size or hardware; the others (``interior``) for queries inside the profiled grid.
With fewer than ``ceil(1 / (1 - level)) - 1`` residuals of a kind the bound is the largest residual seen, which
is then *not* a guarantee at the level (``exact`` is False in the interval).

Coverage: for each query row, whether the batch size (x feature) and the input size were profiled for its
configuration, lie between profiled values (interpolated) or outside them (extrapolated), and whether the
hardware was profiled at all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_LEVEL", "conformal_interval", "coverage"]

#: the level of the intervals ``servopt fit`` stores
DEFAULT_LEVEL = 0.9


def _bound(r: np.ndarray, q: float) -> tuple[float, bool]:
    n = r.size
    rank = math.ceil((n + 1) * q)
    if q < 0.5:
        rank = math.floor((n + 1) * q)
        if rank < 1:
            return float(r.min()), False
        return float(np.sort(r)[rank - 1]), True
    if rank > n:
        return float(r.max()), False
    return float(np.sort(r)[rank - 1]), True


def conformal_interval(y: np.ndarray, predicted: np.ndarray, edge: np.ndarray,
                       level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """Multiplicative interval factors from held-out values ``y`` and their predictions.

    Returns ``{"level", "interior": {"lo", "hi", "n", "exact"}, "edge": {...}}``; a prediction ``p`` gets the
    interval ``[p * lo, p * hi]``. A kind without residuals borrows the other's; the edge interval is widened to
    contain the interior one.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.linspace(90, 110, 41); p = np.full(41, 100.0)
    >>> iv = conformal_interval(y, p, np.zeros(41, dtype=bool))
    >>> round(iv["interior"]["lo"], 3), round(iv["interior"]["hi"], 3)
    (0.905, 1.095)
    """
    ok = np.isfinite(predicted) & (predicted > 0) & (y > 0)
    ratio = np.log(y[ok] / predicted[ok])
    edge = np.asarray(edge, dtype=bool)[ok]
    out: dict[str, Any] = {"level": float(level)}
    for where, rows in (("interior", ~edge), ("edge", edge)):
        r = ratio[rows] if rows.any() else ratio
        if r.size == 0:
            out[where] = {"lo": 1.0, "hi": 1.0, "n": 0, "exact": False}
            continue
        lo, lo_exact = _bound(r, (1 - level) / 2)
        hi, hi_exact = _bound(r, (1 + level) / 2)
        out[where] = {"lo": float(np.exp(min(lo, 0.0))), "hi": float(np.exp(max(hi, 0.0))), "n": int(r.size),
                     "exact": bool(lo_exact and hi_exact and rows.any())}
    # an extrapolation is never given a narrower interval than a point inside the profiles
    out["edge"]["lo"] = min(out["edge"]["lo"], out["interior"]["lo"])
    out["edge"]["hi"] = max(out["edge"]["hi"], out["interior"]["hi"])
    return out


def _keys(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    if not columns:
        return [()] * len(frame)
    return [tuple(map(str, row)) for row in frame[columns].astype(object).itertuples(index=False)]


def _place(value: float, profiled: np.ndarray | None) -> str:
    if profiled is None or profiled.size == 0:
        return "extrapolated"
    if np.any(np.isclose(profiled, value)):
        return "profiled"
    return "interpolated" if profiled.min() < value < profiled.max() else "extrapolated"


def coverage(train: pd.DataFrame, query: pd.DataFrame, x: str) -> pd.DataFrame:
    """Where each query row sits in the training features ``train`` (same columns, as fitted).

    Columns: ``<x>`` and ``input_size`` (where a feature): ``profiled``, ``interpolated`` or ``extrapolated``
    (against the profiled values of the row's configuration, else of its family, else of the whole profile; for
    the input size, of its family); ``hardware``
    (where a feature): ``profiled`` or ``unseen``.
    """
    ids = [c for c in train.columns if c != x and not str(c).startswith("hw.")]
    family = [c for c in ids if c != "input_size"]
    out: dict[str, list[str]] = {}
    config_x: dict[tuple, np.ndarray] = {}
    for key, part in zip(_keys(train, ids), train[x].to_numpy(dtype=float)):
        config_x.setdefault(key, []).append(part)  # type: ignore[arg-type]
    config_x = {k: np.unique(v) for k, v in config_x.items()}
    family_x: dict[tuple, list[float]] = {}
    for key, part in zip(_keys(train, family), train[x].to_numpy(dtype=float)):
        family_x.setdefault(key, []).append(part)
    everywhere = np.unique(train[x].to_numpy(dtype=float))
    out[x] = []
    q_ids, q_family = _keys(query, ids), _keys(query, family)
    for i, value in enumerate(query[x].to_numpy(dtype=float)):
        profiled = config_x.get(q_ids[i])
        if profiled is None:
            profiled = np.unique(family_x[q_family[i]]) if q_family[i] in family_x else everywhere
        out[x].append(_place(value, profiled))
    if "input_size" in train.columns:
        sizes: dict[tuple, list[float]] = {}
        for key, s in zip(_keys(train, family), train["input_size"].to_numpy(dtype=float)):
            sizes.setdefault(key, []).append(s)
        out["input_size"] = [_place(s, np.unique(sizes[k]) if k in sizes else None)
                             for k, s in zip(q_family, query["input_size"].to_numpy(dtype=float))]
    if "hardware" in train.columns:
        seen = set(map(str, train["hardware"]))
        out["hardware"] = ["profiled" if str(h) in seen else "unseen" for h in query["hardware"]]
    return pd.DataFrame(out)
