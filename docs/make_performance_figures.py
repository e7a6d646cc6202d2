"""Regenerate the figures and numbers of docs/performance-models.md.

Run from the project root (reads InfAdapter's profile from data/)::

    python docs/make_performance_figures.py

Writes docs/img/*.png and prints the markdown tables quoted in the document. The capacity section's numbers and
figure come from ``benchmarks/bench_capacity.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
PROFILES = ROOT / "profiles"
SHARED = ROOT / "data"

SETS = {
    "selection": ["nvidia_efficientnet_pytorch.csv", "nvidia_resnet50_triton.csv"],
    "held-out": ["nvidia_efficientnet_widese_pytorch.csv", "nvidia_resnet50_pytorch.csv"],
    "sparse": ["nvidia_efficientnet_tf2.csv"],
}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def per_table(names: list[str], plot: str | None) -> list[dict]:
    from servopt.performance.evaluate import fit_profile
    from servopt.performance.plot import plot_report
    from servopt.profiles import load_profile

    table = load_profile([PROFILES / n for n in names])
    models, reports = fit_profile(table.frame, source=table.source, targets=["latency"])
    if plot:
        plot_report(reports["latency"], models, IMG / plot)
    return [dict(g.metrics(), label=g.label) for g in reports["latency"].groups]


# --- alternatives to the soft hinge, each fitted per table on the training batch sizes --------------------------------

def _line(b, y, q):
    c = np.polyfit(b, y, 1)
    return np.polyval(c, q)


def _hard_hinge(b, y, q):
    best = None
    for k in range(1, len(b)):
        floor = np.mean(y[:k])
        c = np.polyfit(b[k:], y[k:], 1) if len(b) - k >= 2 else (0.0, y[k])
        x0 = [floor, c[1], max(c[0], 1e-6)]
        fit = least_squares(lambda p: (np.maximum(p[0], p[1] + p[2] * b) - y) / y, x0,
                            bounds=([1e-9, -np.inf, 0], [np.inf, np.inf, np.inf]))
        if best is None or fit.cost < best.cost:
            best = fit
    p = best.x
    return np.maximum(p[0], p[1] + p[2] * q)


def _interp(b, y, q, log):
    top = np.maximum.accumulate(y)
    tb, ty, tq = (np.log(b), np.log(top), np.log(q)) if log else (b, top, q)
    if tq < tb[0]:
        out = ty[0]
    elif tq > tb[-1]:
        out = ty[-1] + (ty[-1] - ty[-2]) / (tb[-1] - tb[-2]) * (tq - tb[-1])
    else:
        out = np.interp(tq, tb, ty)
    return float(np.exp(out) if log else out)


def _soft_ls(b, y, q):
    def f(p, x):
        return np.exp(p[0] + np.logaddexp(0, p[2] * (np.log(x) - p[1])) / p[2])
    best = None
    for p0 in (1.0, 4.0):
        fit = least_squares(lambda p: (f(p, b) - y) / y, [np.log(y.min()), np.median(np.log(b)), p0],
                            bounds=([-np.inf, -np.inf, 0.3], [np.inf, np.inf, 20]))
        if best is None or fit.cost < best.cost:
            best = fit
    return f(best.x, q)


def _servopt(b, y, q):
    from servopt.performance import fit_curve

    return fit_curve(b, y)(q)


ALTERNATIVES = {
    "straight line (baseline)": _line,
    "max(floor, a + s*b), fitted": _hard_hinge,
    "monotone linear interpolation": lambda b, y, q: _interp(b, y, q, False),
    "log-log interpolation": lambda b, y, q: _interp(b, y, q, True),
    "soft hinge, least squares on relative error": _soft_ls,
    "soft hinge, soft-L1 on log (servopt)": _servopt,
}


def alternatives() -> pd.DataFrame:
    from servopt.profiles import load_profile

    rows = []
    for set_name, names in SETS.items():
        frame = load_profile([PROFILES / n for n in names]).frame
        for _, group in frame.groupby(["variant", "hardware"]):
            group = group.sort_values("batch_size")
            b, y = group["batch_size"].to_numpy(float), group["latency_ms"].to_numpy(float)
            for name, fn in ALTERNATIVES.items():
                errors = [abs(float(fn(b[np.arange(len(b)) != i], y[np.arange(len(b)) != i], np.array(b[i]))) - y[i])
                          / y[i] for i in range(len(b))]
                rows.append({"set": set_name, "method": name, "mape": float(np.mean(errors))})
    return pd.DataFrame(rows)


def main() -> int:
    IMG.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for set_name, plot in (("selection", "latency_nvidia.png"), ("held-out", "latency_nvidia_heldout.png"),
                           ("sparse", None)):
        groups = per_table(SETS[set_name], plot)
        print(f"\n### {set_name} tables\n\n| table | points | servopt MAPE % | line MAPE % | ratio | servopt R2 |")
        print("|---|---|---|---|---|---|")
        for g in groups:
            print(f"| {g['label']} | {g['n']} | {_pct(g['mape'])} | {_pct(g['baseline_mape'])} | "
                  f"{g['mape'] / g['baseline_mape']:.2f} | {g['r2']:.3f} |")
        mean = np.mean([g["mape"] for g in groups])
        base = np.mean([g["baseline_mape"] for g in groups])
        print(f"| **mean of {len(groups)} tables** | | **{_pct(mean)}** | **{_pct(base)}** | {mean / base:.2f} | |")
    table = alternatives().groupby(["method", "set"])["mape"].mean().unstack("set") * 100
    print("\n### alternatives (mean per-table MAPE %)\n")
    print("| method | " + " | ".join(f"{s} tables" for s in SETS) + " |")
    print("|---|" + "---|" * len(SETS))
    for method in ALTERNATIVES:
        print(f"| {method} | " + " | ".join(f"{table.loc[method, s]:.2f}" for s in SETS) + " |")
    print(f"\n(done in {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
