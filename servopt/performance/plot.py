"""Plots of cross-validated performance models: measured points, held-out predictions, fitted curves."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.atomic import atomic_write
from servopt.performance._curves import fit_line
from servopt.performance.evaluate import GroupResult, PerformanceModels, TargetReport
from servopt.performance.features import TARGETS

__all__ = ["plot_report", "report_figure", "curve_query", "MAX_PANELS"]

#: configurations drawn per figure
MAX_PANELS = 24
_UNITS = {"latency": "latency (ms)", "warmup": "warm-up (ms)", "memory": "memory (MiB)",
          "capacity": "capacity (RPS)"}
#: targets drawn log-log
_LOG_TARGETS = ("latency", "warmup")
#: points of a fitted curve (fewer where the x feature is a batch size: whole batches only)
_CURVE_POINTS = 120


def plot_report(report: TargetReport, models: PerformanceModels, path: str | Path, title: str | None = None) -> Path:
    """Write :func:`report_figure` atomically as PNG.

    Returns the path written. Raises :class:`ValidationError` for an unwritable path.
    """
    path = Path(path)
    fig = report_figure(report, models, title)
    import matplotlib.pyplot as plt

    try:
        with atomic_write(path, suffix=".png") as handle:
            fig.savefig(handle, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path


def report_figure(report: TargetReport, models: PerformanceModels, title: str | None = None) -> Any:
    """One panel per configuration (the first :data:`MAX_PANELS`): measured points, the model fitted on all
    points (line), the straight-line baseline (dashed), and the held-out predictions of both (markers).

    The line is what :meth:`PerformanceModels.predict` returns for the rows of :func:`curve_query`, the numbers
    ``servopt predict`` gives for the configuration. Latency and warm-up panels are log-log, every axis labels at
    least two values (also a panel spanning less than a decade) and batch sizes are whole numbers. Returns the
    matplotlib ``Figure`` (the caller closes it).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    target = TARGETS[report.target]
    fitted = models.targets[report.target]
    groups = report.groups[:MAX_PANELS]
    cols = min(4, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    log = report.target in _LOG_TARGETS
    for ax, group in zip(axes.flat, groups):
        query = curve_query(report, models, group)
        curve = models.predict(query, source=f"the {report.target} curve of {group.label}",
                               targets=[report.target])[fitted.output].to_numpy(dtype=float)
        dense = query[target.x].to_numpy(dtype=float)
        line = fit_line(group.x, group.y)
        ax.plot(group.x, group.y, "ko", ms=4, label="measured")
        ax.plot(dense, curve, "-", color="tab:blue", lw=1.5, label=f"{report.model} (all points)")
        ax.plot(dense, line(dense), "--", color="tab:orange", lw=1, label=f"baseline: {report.baseline}")
        ax.plot(group.x, group.predicted, "x", color="tab:blue", ms=6, label="model, held out")
        ax.plot(group.x, group.baseline, "+", color="tab:orange", ms=7, label="baseline, held out")
        metrics = group.metrics()
        ax.set_title(f"{group.label}\nMAPE {_pct(metrics['mape'])} (baseline {_pct(metrics['baseline_mape'])})",
                     fontsize=8)
        _set_ticks(ax, log, whole_x=target.x == "batch_size")
        ax.set_xlabel(target.x.replace("_", " "), fontsize=8)
        ax.set_ylabel(_UNITS[report.target], fontsize=8)
        ax.tick_params(which="both", labelsize=7)
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    summary = report.to_dict(with_groups=False)
    more = f" (first {MAX_PANELS} of {len(report.groups)} configurations)" if len(report.groups) > MAX_PANELS else ""
    fig.suptitle(title or f"{report.target}: held-out MAPE {_pct(summary['mape'])} vs baseline "
                          f"{_pct(summary['baseline_mape'])}, {summary['cv']}{more}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    return fig


def curve_query(report: TargetReport, models: PerformanceModels, group: GroupResult) -> pd.DataFrame:
    """The query rows whose :meth:`PerformanceModels.predict` is the fitted curve of a configuration.

    The configuration's feature row with the x feature running from its smallest profiled value to 1.25 times its
    largest (latency and warm-up: spaced evenly in log; else linearly, to 1.1 times), whole numbers where x is the
    batch size (the models refuse others). The ``hw.*`` readings of the warm-up model, which vary within a
    configuration, are left out, as a query leaves them out: they take the profile's medians
    (:meth:`FittedTarget.frame <servopt.performance.evaluate.FittedTarget.frame>`); the static ``hw.*`` features of
    the other targets keep the configuration's values.
    """
    target = TARGETS[report.target]
    fitted = models.targets[report.target]
    lo, hi = float(group.x.min()), float(group.x.max())
    x = (np.geomspace(max(lo, 1e-9), hi * 1.25, _CURVE_POINTS) if report.target in _LOG_TARGETS
         else np.linspace(lo, hi * 1.1, _CURVE_POINTS))
    if target.x == "batch_size":
        x = np.unique(np.maximum(np.round(x), 1.0))
    row = {c: group.features[c] for c in fitted.features
           if c in group.features and not (target.hw == "all" and c.startswith("hw."))}
    query = pd.DataFrame([row] * len(x))
    query[target.x] = x
    return query


def _set_ticks(ax: Any, log: bool, whole_x: bool) -> None:
    """Log axes (base 2 in x, 10 in y) with plain-number labels, at least two labelled ticks per axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if not log:
        if whole_x:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=2))
        return
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlim(*ax.get_xlim())  # the limits the data gave, fixed: the ticks are chosen for them
    ax.set_ylim(*ax.get_ylim())
    decades = [LogLocator(base=10, subs=subs) for subs in ((1.0,), (1.0, 2.0, 5.0), np.arange(1.0, 10.0))]
    for axis, lim, locators in ((ax.xaxis, ax.get_xlim(), [LogLocator(base=2, subs=(1.0,))]),
                                (ax.yaxis, ax.get_ylim(), decades)):
        even = MaxNLocator(nbins=4, min_n_ticks=2, integer=whole_x and axis is ax.xaxis)
        axis.set_major_locator(_at_least_two(lim, locators, even))
        axis.set_major_formatter(FuncFormatter(_tick_label))
        axis.set_minor_formatter(NullFormatter())


def _at_least_two(lim: tuple[float, float], locators: list[Any], fallback: Any) -> Any:
    """The first locator with two or more ticks inside ``lim`` (a panel spanning less than a decade has no
    power of ten inside it, maybe no 2 or 5 x one either), else ``fallback`` (evenly spaced plain values)."""
    lo, hi = min(lim), max(lim)
    for locator in locators:
        ticks = np.asarray(locator.tick_values(lo, hi))
        if int(((ticks >= lo) & (ticks <= hi)).sum()) >= 2:
            return locator
    return fallback


def _tick_label(value: float, _pos: Any = None) -> str:
    """A tick value as a plain number: ``1``, ``256``, ``0.5``, ``62.5``."""
    return f"{value:.6g}"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"
