"""Plots of cross-validated performance models: measured points, held-out predictions, fitted curves."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.atomic import atomic_write
from servopt.performance._curves import fit_line
from servopt.performance.evaluate import PerformanceModels, TargetReport
from servopt.performance.features import TARGETS

__all__ = ["plot_report", "MAX_PANELS"]

#: configurations drawn per figure
MAX_PANELS = 24
_UNITS = {"latency": "latency (ms)", "warmup": "warm-up (ms)", "memory": "memory (MB)",
          "capacity": "capacity (RPS)"}


def plot_report(report: TargetReport, models: PerformanceModels, path: str | Path, title: str | None = None) -> Path:
    """One panel per configuration: measured points, the model fitted on all points (line), the straight-line
    baseline (dashed), and the held-out predictions of both (markers). Written atomically as PNG.

    Returns the path written. Raises :class:`ValidationError` for an unwritable path.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    target = TARGETS[report.target]
    fitted = models.targets[report.target]
    groups = report.groups[:MAX_PANELS]
    cols = min(4, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    log = report.target in ("latency", "warmup")
    for ax, group in zip(axes.flat, groups):
        lo, hi = float(group.x.min()), float(group.x.max())
        dense = np.geomspace(max(lo, 1e-9), hi * 1.25, 120) if log else np.linspace(lo, hi * 1.1, 120)
        query = pd.DataFrame([group.features] * len(dense))
        query[target.x] = dense
        curve = fitted.model.predict(query[fitted.features])
        line = fit_line(group.x, group.y)
        ax.plot(group.x, group.y, "ko", ms=4, label="measured")
        ax.plot(dense, curve, "-", color="tab:blue", lw=1.5, label=f"{report.model} (all points)")
        ax.plot(dense, line(dense), "--", color="tab:orange", lw=1, label=f"baseline: {report.baseline}")
        ax.plot(group.x, group.predicted, "x", color="tab:blue", ms=6, label="model, held out")
        ax.plot(group.x, group.baseline, "+", color="tab:orange", ms=7, label="baseline, held out")
        metrics = group.metrics()
        ax.set_title(f"{group.label}\nMAPE {_pct(metrics['mape'])} (baseline {_pct(metrics['baseline_mape'])})",
                     fontsize=8)
        if log:
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(target.x.replace("_", " "), fontsize=8)
        ax.set_ylabel(_UNITS[report.target], fontsize=8)
        ax.tick_params(labelsize=7)
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
    try:
        with atomic_write(path, suffix=".png") as handle:
            fig.savefig(handle, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"
