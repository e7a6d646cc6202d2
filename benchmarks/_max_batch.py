"""The largest-batch methods the benchmarks compare, fitted one way for every profile (shared helper).

``benchmarks/max_batch_check.py`` evaluates them on every shipped profile with out-of-memory boundaries;
``benchmarks/bench_models.py`` has its own H200-only copy of the first two (``_memory_model``) and could call
:func:`fit_memory_model` instead.

Methods (``METHODS``):

* ``family + calibration``: what ``servopt fit --oom-limit-mb L`` fits:
  ``MaxBatchModel(structure="family", oom_limit_mb=L, pressure_rows=pressure_rows_for(rows))`` on the memory rows
  (the rows above half the limit leave the configurations' lines only where the limit was the caching
  allocator's: the H200 torch profiles, not the CPU runs), then
  :meth:`~servopt.performance.MaxBatchModel.calibrate` on the boundaries of the training rows
  (:func:`servopt.performance.memory.boundaries_from_profile`: each configuration's ``oom_batch_size - 1``);
* ``family + calibration, act_peak axis``: the same with ``work_axis="act_peak"``: the family lines in batch x
  ``act_peak_mb`` (the peak of live activations of one sample) where a graph has no attention, else in batch x
  ``gflops`` (not the default: it put 3 of 35 held-out cases of fresh set 22 above the truth);
* ``family + calibration, pressure rows dropped``: the first with ``pressure_rows="drop"`` everywhere (servopt
  fit's rule before the limit's kind decided it: the rows above half the limit leave the configurations' lines
  on CPU too; the same as the first on the H200);
* ``family, uncalibrated``: the same model as the first without the calibration;
* ``line (old)``: ``MaxBatchModel(structure="line")``, the model before issue 19 (a line in batch per profiled
  configuration; an unprofiled input size goes to a least-squares regressor on the features and batch x size²);
* ``line + margin``: the same with ``upper_quantile=0.95`` (the conformal margin on the memory of held-out batches).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

METHODS = ("family + calibration", "family + calibration, act_peak axis",
           "family + calibration, pressure rows dropped", "family, uncalibrated", "line (old)", "line + margin")


def fit_memory_model(method: str, train: pd.DataFrame, cols: list[str], limit_mb: float, *,
                     boundaries: pd.DataFrame | None = None, column: str = "memory_mb") -> Any:
    """One of :data:`METHODS` fitted on ``train[cols]`` -> ``train[column]``.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    train : DataFrame
        Memory rows (``batch_size`` among ``cols``).
    cols : list of str
        The model's features.
    limit_mb : float
        The limit of the out-of-memory search (``oom_limit_mb`` of the family model and of the calibration).
    boundaries : DataFrame, optional
        Rows with ``cols`` and ``oom_batch_size`` to calibrate on (default: ``train``'s own), read by
        :func:`~servopt.performance.memory.boundaries_from_profile` as ``servopt fit`` reads a profile.
    column : str, default "memory_mb"
        The memory column.

    Returns
    -------
    MaxBatchModel
        Fitted (and calibrated for ``family + calibration``; ``oom_margin_`` is None otherwise).
    """
    from servopt.performance import MaxBatchModel
    from servopt.performance.memory import boundaries_from_profile, pressure_rows_for

    if method not in METHODS:
        raise ValueError(f"fit_memory_model: method {method!r}: expected one of {', '.join(METHODS)}")
    y = train[column].to_numpy(dtype=float)
    axis = "act_peak" if method.endswith("act_peak axis") else "flops"
    if axis != "act_peak":  # the other methods never see the column (as servopt fit's do not)
        cols = [c for c in cols if c != "act_peak_mb"]
    if method.startswith("family"):
        model = MaxBatchModel(structure="family", oom_limit_mb=limit_mb, work_axis=axis,
                              pressure_rows="drop" if method.endswith("pressure rows dropped") else
                              pressure_rows_for(train)).fit(train[cols], y)
    else:
        model = MaxBatchModel(structure="line", upper_quantile=0.95 if method == "line + margin" else None)
        model.fit(train[cols], y)
    if method.startswith("family + calibration"):
        bounds, largest = boundaries_from_profile(train if boundaries is None else boundaries, cols)
        if len(largest):
            model.calibrate(bounds, largest, limit_mb)
    return model


def verdict(predicted: int, truth_lo: int, truth_hi: int) -> str:
    """Whether ``predicted`` is above the true largest batch, known to lie in ``[truth_lo, truth_hi]``:
    ``"no"``, ``"yes"`` or ``"unknown"`` (inside the bracket)."""
    if predicted <= truth_lo:
        return "no"
    if predicted > truth_hi:
        return "yes"
    return "unknown"


def summarize(cases: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of ``by``: cases, above the truth (sure / possible), within 10 % and not above (sure), and the
    ratio predicted / truth (``ratio_lo`` = predicted / upper end of the bracket, ``ratio_hi`` = predicted /
    lower end; equal where the truth is exact)."""
    rows = []
    for key, part in cases.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        ok = (part["above_truth"] == "no") & (part["predicted"] >= 0.9 * part["truth_hi"])
        rows.append({**dict(zip(by, key)), "cases": len(part),
                     "above_truth": int((part["above_truth"] == "yes").sum()),
                     "maybe_above": int((part["above_truth"] == "unknown").sum()),
                     "within_10pct_not_above": int(ok.sum()),
                     "ratio_min": float(part["ratio_lo"].min()), "ratio_median": float(
                         np.median(np.sqrt(part["ratio_lo"] * part["ratio_hi"]))),
                     "ratio_max": float(part["ratio_hi"].max()),
                     "margin_min": _nan_min(part["oom_margin"]), "margin_max": _nan_max(part["oom_margin"])})
    return pd.DataFrame(rows)


def _nan_min(values: pd.Series) -> float:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.min()) if len(values) else float("nan")


def _nan_max(values: pd.Series) -> float:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.max()) if len(values) else float("nan")
