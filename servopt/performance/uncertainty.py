"""Prediction intervals from held-out residuals (split conformal) and where a prediction sits in the profiles.

Intervals: ``servopt fit`` cross-validates every target (leave one batch size out). The held-out log ratios
``log(y / prediction)`` are exchangeable with those of a new point of the same kind, so their empirical quantiles
at ``(1 - level) / 2`` and ``(1 + level) / 2``, with the split-conformal finite-sample correction (rank
``ceil((n + 1) q)``), bound a new point's ratio at the stated level. Points held out at the smallest or largest
batch of their configuration are extrapolations; they get their own quantiles (``edge``), used for queries that
extrapolate in batch, input size or hardware; the others (``interior``) for queries inside the profiled grid.
With fewer than ``ceil(1 / (1 - level)) - 1`` residuals of a kind the bound is the largest residual seen, which
is then *not* a guarantee at the level (``exact`` is False in the interval). With no residual at all (no batch size
could be held out with two rows left to fit: one configuration at two batch sizes) there is no bound: the factors
are None (``n`` 0), :func:`interval_factors` gives NaN and :data:`NO_RESIDUALS` says why.

Extrapolating further in batch: an edge residual was made ``d`` octaves (``log2`` of the batch ratio) from the
nearest batch the fit saw, one on a powers-of-two grid, while a query may sit further out. An error in the curve's
growth (its log-log slope) adds to the log error in proportion to the distance, so the edge residuals are also
scored per octave (``log(y / p) / d``, a normalised conformal score) and an extrapolation ``D`` octaves beyond
the configuration's profiled batch range gets the ``octave`` factors to the power ``D`` where that is wider than
the ``edge`` interval (:func:`interval_factors`). Measured on the fresh CPU graphs (``benchmarks/fresh_cpu.py``,
``docs/performance-models.md``): without it, 79 % of the 90 % intervals held the truth at batch x4.

An unprofiled input size (latency): ``servopt fit`` also holds out each profiled input size in turn
(:func:`~servopt.performance.evaluate._size_residuals`, queried without the graph's FLOPs) and keeps the
residuals apart: ``size`` from sizes held out between their family's other sizes, ``size_edge`` from those beyond
them (:func:`with_size_pools`); a query at an unprofiled size takes them where wider. Leave one batch out does
not measure that path of the model (the profiled sizes' latencies at the same work): on the fresh CPU graphs its
intervals held 72 % of the interior sizes and 84 % of the top ones at the 90 % level.

Coverage: for each query row, whether the batch size (x feature) and the input size were profiled for its
configuration, lie between profiled values (interpolated) or outside them (extrapolated), and whether the
hardware was profiled at all.

Planning on the upper bound (``latency_quantile: q`` in problem files):
:class:`~servopt.performance.upper_latency.UpperLatency` fits the
per-configuration latency curves (``LatencyModel``, the curve ``performance: fit`` plans on) on a whole profile,
cross-validated at level ``q``, and gives the upper end of each prediction's interval, the ``latency_ms_hi`` of
``servopt predict --intervals`` with models from ``servopt fit PROFILE --latency-model hinge --level q``;
:func:`margin_record` and :func:`margin_notes` say what margin a plan was made with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_LEVEL", "NO_RESIDUALS", "check_quantile", "conformal_interval", "coverage",
           "extrapolation_octaves", "interval_factors", "known", "margin_notes", "margin_record", "with_size_pools"]

#: the level of the intervals ``servopt fit`` stores
DEFAULT_LEVEL = 0.9
#: edge points held out nearer than this to the batches of their fit (octaves) are not scored per octave: their
#: residual is no extrapolation error, and dividing it by a tiny distance made one the whole per-octave factor (the
#: H200 resnet50 fp16 profile's out-of-memory search left batches 1343 and 1344, 0.001 octave apart: -205 per
#: octave, and a memory interval of 1.6e-85 to 1.03 times the prediction one octave beyond)
MIN_EDGE_OCTAVES = 0.25
#: why an interval without held-out residuals (``n`` 0: every pool) is unknown, for messages
NO_RESIDUALS = ("leaving each batch size out left fewer than two rows to fit on, so no held-out residual measures "
                "the model's error (a configuration needs 3 or more profiled batch sizes)")
#: a ``latency_quantile`` plans on an upper bound of the latency: the q-quantile of the held-out residuals, q above
#: the median
UPPER_QUANTILE_ABOVE = 0.5


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
                       level: float = DEFAULT_LEVEL, octaves: np.ndarray | None = None) -> dict[str, Any]:
    """Multiplicative interval factors from held-out values ``y`` and their predictions.

    Returns ``{"level", "interior": {"lo", "hi", "n", "exact"}, "edge": {...}}``; a prediction ``p`` gets the
    interval ``[p * lo, p * hi]``. A kind without residuals borrows the other's; the edge interval is widened to
    contain the interior one. With ``octaves`` (per point, how far an edge point lay from the nearest batch its fit
    saw, in octaves; > 0 where ``edge``) also ``"octave": {...}``, the factors per octave of extrapolation (the
    edge log ratios divided by their ``octaves``, of the points at least :data:`MIN_EDGE_OCTAVES` away), which
    :func:`interval_factors` raises to a query's distance.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.linspace(90, 110, 41); p = np.full(41, 100.0)
    >>> iv = conformal_interval(y, p, np.zeros(41, dtype=bool))
    >>> round(iv["interior"]["lo"], 3), round(iv["interior"]["hi"], 3)
    (0.905, 1.095)
    """
    ratio, edge, ok = _log_ratios(y, predicted, edge)
    # an extrapolation is never given a narrower interval than a point inside the profiles
    out: dict[str, Any] = {"level": float(level), **_pools(ratio, edge, level, "interior", "edge")}
    if octaves is not None:
        d = np.asarray(octaves, dtype=float)[ok]
        rows = edge & np.isfinite(d) & (d >= MIN_EDGE_OCTAVES)
        if rows.any():
            out["octave"] = _factors(ratio[rows] / d[rows], level)
    return out


def _log_ratios(y: np.ndarray, predicted: np.ndarray, edge: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``log(y / predicted)`` and ``edge`` of the rows with a positive measurement and prediction, and that mask."""
    ok = np.isfinite(predicted) & (predicted > 0) & (y > 0)
    return np.log(y[ok] / predicted[ok]), np.asarray(edge, dtype=bool)[ok], ok


def _pools(ratio: np.ndarray, edge: np.ndarray, level: float, inner: str, outer: str) -> dict[str, Any]:
    """The factors of the rows not at an ``edge`` (``inner``) and of those at one (``outer``): a kind without rows
    borrows the other's (then not ``exact``); none at all gives no bound (``lo`` and ``hi`` None, ``n`` 0: not a
    zero-width interval); ``outer`` is widened to contain ``inner``."""
    if ratio.size == 0:
        return {where: {"lo": None, "hi": None, "n": 0, "exact": False} for where in (inner, outer)}
    out: dict[str, Any] = {}
    for where, rows in ((inner, ~edge), (outer, edge)):
        r = ratio[rows] if rows.any() else ratio
        out[where] = _factors(r, level)
        out[where]["exact"] = out[where]["exact"] and bool(rows.any())
    out[outer]["lo"] = min(out[outer]["lo"], out[inner]["lo"])
    out[outer]["hi"] = max(out[outer]["hi"], out[inner]["hi"])
    return out


def known(factors: Mapping[str, Any] | None) -> bool:
    """Whether a pool of factors rests on at least one held-out residual (``n`` > 0; a models file saved before
    unknown intervals were told apart stored ``lo = hi = 1`` with ``n`` 0).

    >>> known({"lo": 0.9, "hi": 1.1, "n": 4}), known({"lo": 1.0, "hi": 1.0, "n": 0}), known(None)
    (True, False, False)
    """
    return factors is not None and factors.get("lo") is not None and int(factors.get("n", 1)) > 0


def _lo_hi(factors: Mapping[str, Any]) -> tuple[float, float]:
    return (float(factors["lo"]), float(factors["hi"])) if known(factors) else (math.nan, math.nan)


def _factors(r: np.ndarray, level: float) -> dict[str, Any]:
    """Split-conformal factors ``{"lo", "hi", "n", "exact"}`` of the log ratios ``r`` (at least one) at
    ``level``; ``lo <= 1 <= hi``."""
    lo, lo_exact = _bound(r, (1 - level) / 2)
    hi, hi_exact = _bound(r, (1 + level) / 2)
    return {"lo": float(np.exp(min(lo, 0.0))), "hi": float(np.exp(max(hi, 0.0))), "n": int(r.size),
            "exact": bool(lo_exact and hi_exact)}


def with_size_pools(interval: Mapping[str, Any], y: np.ndarray, predicted: np.ndarray, edge: np.ndarray,
                    level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """``interval`` with the factors of held-out input sizes: ``size`` from the rows of a size held out between
    its family's other sizes, ``size_edge`` from those beyond them (a kind without rows borrows the other's; each
    at least as wide as ``interior``, ``size_edge`` at least as wide as ``size``).

    Examples
    --------
    >>> import numpy as np
    >>> iv = {"level": 0.9, "interior": {"lo": 0.95, "hi": 1.05, "n": 40, "exact": True}}
    >>> y = np.linspace(80, 120, 41); p = np.full(41, 100.0)
    >>> out = with_size_pools(iv, y, p, np.zeros(41, dtype=bool))
    >>> round(out["size"]["hi"], 2), round(out["size_edge"]["hi"], 2)
    (1.19, 1.19)
    """
    ratio, edge, _ = _log_ratios(y, predicted, edge)
    if ratio.size == 0:
        return dict(interval)
    pools = _pools(ratio, edge, level, "size", "size_edge")
    if known(interval["interior"]):
        for factors in pools.values():  # (widening both keeps size_edge containing size)
            factors["lo"] = min(factors["lo"], interval["interior"]["lo"])
            factors["hi"] = max(factors["hi"], interval["interior"]["hi"])
    return {**interval, **pools}


def interval_factors(interval: Mapping[str, Any], outside: np.ndarray, octaves: np.ndarray | None = None,
                     sizes: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``(lo, hi)`` factor of each query row: ``interior`` inside the profiles, ``edge`` where a row
    extrapolates (``outside``), and, ``octaves`` beyond the profiled batch range (:func:`extrapolation_octaves`),
    the per-octave factors to that power where they are wider (intervals without ``"octave"``: ``edge``). With
    ``sizes`` (where each row's input size sits, :func:`coverage`'s ``input_size``), a row at an unprofiled size
    takes the ``size`` factors (``interpolated``) or the ``size_edge`` ones (``extrapolated``) where wider
    (intervals saved before these pools: unchanged). A pool without held-out residuals (:func:`known`) gives NaN:
    the interval is unknown there, not zero-width (:data:`NO_RESIDUALS`).

    Examples
    --------
    >>> iv = {"interior": {"lo": 0.9, "hi": 1.1}, "edge": {"lo": 0.8, "hi": 1.2}, "octave": {"lo": 0.8, "hi": 1.2}}
    >>> lo, hi = interval_factors(iv, np.array([False, True, True]), np.array([0.0, 1.0, 2.0]))
    >>> [round(float(h), 2) for h in hi]
    [1.1, 1.2, 1.44]
    """
    outside = np.asarray(outside, dtype=bool)
    (in_lo, in_hi), (out_lo, out_hi) = _lo_hi(interval["interior"]), _lo_hi(interval["edge"])
    lo = np.where(outside, out_lo, in_lo).astype(float)
    hi = np.where(outside, out_hi, in_hi).astype(float)
    per = interval.get("octave")
    if per is not None and octaves is not None:
        d = np.where(outside, np.asarray(octaves, dtype=float), 0.0)
        lo = np.minimum(lo, float(per["lo"]) ** d)
        hi = np.maximum(hi, float(per["hi"]) ** d)
    if sizes is not None:
        place = np.asarray(sizes, dtype=object)
        for where, pool in (("interpolated", "size"), ("extrapolated", "size_edge")):
            factors = interval.get(pool)
            if factors is not None:
                rows = place == where
                f_lo, f_hi = _lo_hi(factors)
                lo = np.where(rows, np.minimum(lo, f_lo), lo)
                hi = np.where(rows, np.maximum(hi, f_hi), hi)
    return lo, hi


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


def _ids(train: pd.DataFrame, x: str) -> list[str]:
    return [c for c in train.columns if c != x and not str(c).startswith("hw.") and c != "gflops"]  # work: no key


def _profiled_x(train: pd.DataFrame, query: pd.DataFrame, x: str) -> list[np.ndarray]:
    """Per query row, the profiled values of ``x`` of its configuration, else of its family (the configuration
    without its input size), else of the whole profile."""
    ids = _ids(train, x)
    family = [c for c in ids if c != "input_size"]
    config_x: dict[tuple, list[float]] = {}
    for key, part in zip(_keys(train, ids), train[x].to_numpy(dtype=float)):
        config_x.setdefault(key, []).append(part)
    family_x: dict[tuple, list[float]] = {}
    for key, part in zip(_keys(train, family), train[x].to_numpy(dtype=float)):
        family_x.setdefault(key, []).append(part)
    everywhere = np.unique(train[x].to_numpy(dtype=float))
    out = []
    for key, fam in zip(_keys(query, ids), _keys(query, family)):
        values = config_x.get(key, family_x.get(fam))
        out.append(np.unique(values) if values is not None else everywhere)
    return out


def extrapolation_octaves(train: pd.DataFrame, query: pd.DataFrame, x: str,
                          profiled: list[np.ndarray] | None = None) -> np.ndarray:
    """How far each query row's ``x`` lies outside the profiled range of its configuration (else family, else
    profile; as :func:`coverage`), in octaves (``log2`` of the ratio to the nearest end); 0 inside it.
    ``profiled``: those ranges per row if already looked up (``_profiled_x``).

    Examples
    --------
    >>> train = pd.DataFrame({"batch_size": [1.0, 2, 4, 8]})
    >>> extrapolation_octaves(train, pd.DataFrame({"batch_size": [4.0, 32, 0.5]}), "batch_size").tolist()
    [0.0, 2.0, 1.0]
    """
    out = np.zeros(len(query))
    ranges = profiled if profiled is not None else _profiled_x(train, query, x)
    for i, (value, values) in enumerate(zip(query[x].to_numpy(dtype=float), ranges)):
        if values.size == 0 or not value > 0:
            continue
        low, high = float(values.min()), float(values.max())
        if value > high > 0:
            out[i] = math.log2(value / high)
        elif value < low:
            out[i] = math.log2(low / value)
    return out


def coverage(train: pd.DataFrame, query: pd.DataFrame, x: str,
             profiled: list[np.ndarray] | None = None) -> pd.DataFrame:
    """Where each query row sits in the training features ``train`` (same columns, as fitted); ``profiled``: the
    profiled values of ``x`` per row if already looked up (``_profiled_x``).

    Columns: ``<x>`` and ``input_size`` (where a feature): ``profiled``, ``interpolated`` or ``extrapolated``
    (against the profiled values of the row's configuration, else of its family, else of the whole profile; for
    the input size, of its family, else of the whole profile); ``model``, ``variant`` and ``hardware`` (where
    features): ``profiled`` or ``unseen``. (Before, a row of unseen hardware or model at a profiled input size said
    its size was ``extrapolated``, and nothing said the model was unseen.)
    """
    family = [c for c in _ids(train, x) if c != "input_size"]
    ranges = profiled if profiled is not None else _profiled_x(train, query, x)
    out: dict[str, list[str]] = {x: [_place(value, values) for value, values in
                                     zip(query[x].to_numpy(dtype=float), ranges)]}
    q_family = _keys(query, family)
    if "input_size" in train.columns:
        sizes: dict[tuple, list[float]] = {}
        for key, s in zip(_keys(train, family), train["input_size"].to_numpy(dtype=float)):
            sizes.setdefault(key, []).append(s)
        everywhere = np.unique(train["input_size"].to_numpy(dtype=float))
        out["input_size"] = [_place(s, np.unique(sizes[k]) if k in sizes else everywhere)
                             for k, s in zip(q_family, query["input_size"].to_numpy(dtype=float))]
    for name in ("model", "variant", "hardware"):
        if name in train.columns and name in query.columns:
            seen = set(map(str, train[name]))
            out[name] = ["profiled" if str(v) in seen else "unseen" for v in query[name]]
    return pd.DataFrame(out)


def check_quantile(value: Any, source: str, key: str = "latency_quantile", above: float = 0.0) -> float:
    """``value`` as a level strictly between ``above`` and 1 (a float, e.g. 0.95); the error names ``source`` and
    ``key``. A ``latency_quantile`` is an upper bound, so it is above 0.5 (:data:`UPPER_QUANTILE_ABOVE`).

    Examples
    --------
    >>> check_quantile(0.95, "p.yaml")
    0.95
    >>> check_quantile(1, "p.yaml")
    Traceback (most recent call last):
    ...
    servopt.exceptions.ValidationError: p.yaml: key 'latency_quantile': expected a float strictly between 0 and 1 (e.g. 0.95), got 1
    >>> check_quantile(0.4, "p.yaml", above=UPPER_QUANTILE_ABOVE)
    Traceback (most recent call last):
    ...
    servopt.exceptions.ValidationError: p.yaml: key 'latency_quantile': expected a float strictly between 0.5 and 1 (e.g. 0.95), got 0.4
    """
    from servopt.exceptions import ValidationError

    if (isinstance(value, bool) or not isinstance(value, (float, np.floating)) or not math.isfinite(float(value))
            or not above < float(value) < 1.0):
        raise ValidationError(f"{source}: key {key!r}: expected a float strictly between {above:g} and 1 (e.g. 0.95), "
                              f"got {value!r}")
    return float(value)


def margin_record(quantile: float, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``latency_margin`` a problem carries into ``solve --json`` and ``servopt.json``: the level, one entry
    per model and hardware (:meth:`~servopt.performance.upper_latency.UpperLatency.upper`'s record plus ``model``
    and ``hardware``) and the notes
    (:func:`margin_notes`)."""
    out: dict[str, Any] = {"quantile": float(quantile), "latency_model": "hinge", "entries": entries}
    out["notes"] = margin_notes(out)
    return out


def margin_notes(margin: Mapping[str, Any] | None) -> list[str]:
    """One line per model and hardware: the factor applied and where the batch sizes sat in the profile.

    Examples
    --------
    >>> m = {"quantile": 0.95, "entries": [{"model": "r50", "hardware": "T4", "exact": True, "batches": [
    ...     {"batch_size": 1, "factor": 1.2, "batch": "profiled"}, {"batch_size": 4, "factor": 1.3,
    ...     "batch": "interpolated"}]}]}
    >>> margin_notes(m)[0]
    'r50 on T4: planned on the 95 % upper latency bound, x1.2-1.3 the fitted latency (1 profiled, 1 interpolated batch sizes)'
    """
    if not margin:
        return []
    lines = []
    q = 100 * float(margin["quantile"])
    for e in margin["entries"]:
        factors = [float(b["factor"]) for b in e["batches"]]
        places: dict[str, int] = {}
        for b in e["batches"]:
            worst = next((p for p in ("unseen", "extrapolated", "interpolated")
                          if p in (b.get("batch"), b.get("input_size"), b.get("hardware"))), "profiled")
            places[worst] = places.get(worst, 0) + 1
        span = (f"x{min(factors):.3g}" if math.isclose(min(factors), max(factors), rel_tol=1e-6)
                else f"x{min(factors):.3g}-{max(factors):.3g}")
        where = ", ".join(f"{n} {p}" for p, n in places.items())
        size = "batch size" if len(e["batches"]) == 1 else "batch sizes"
        line = (f"{e['model']} on {e['hardware']}: planned on the {q:g} % upper latency bound, {span} the fitted "
                f"latency ({where} {size})")
        if not e.get("exact", True):
            line += "; too few held-out residuals for the level: the bound is the largest residual seen"
        lines.append(line)
    return lines
