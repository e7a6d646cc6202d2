"""Max batch per input size under a memory limit: predicted from memory measurements, checked against the
out-of-memory boundary that ``servopt profile --memory-limit-mb`` actually hits.

    python benchmarks/max_batch_check.py            # reads profiles/measured_*.csv, measures under 3 limits

1. **Predict.** For each model, two memory models are fitted on the shipped profiles
   (``profiles/measured_*.csv``, measured without a limit, both cores settings pooled):
   :class:`servopt.performance.MaxBatchModel` (linear in batch, input size and batch x input size squared; its
   ``max_batch(input_size, memory_limit_mb)``), and a least-squares line ``memory_mb = a_s + c_s * batch`` per
   input size ``s`` (largest batch ``floor((L - a_s) / c_s)``). The prediction on the profiled grid is the largest
   grid batch size not above the predicted one.
2. **Measure.** The same ONNX graph (rebuilt with :mod:`servopt.measure.onnx_models`, same seed) is profiled again with
   ``memory_limit_mb = L`` (one steady-state run per point, 2 cores): each input size's sweep stops at the first
   batch whose peak memory passes ``L``, so the measured max batch is the last batch before the OOM row (64 when
   no point passed the limit, 0 when even batch 1 did).
3. **Compare** per (model, limit, input size): exact match on the grid, or how many grid steps apart.

Writes ``benchmarks/results/max_batch_check.csv`` (one row per model, limit, input size and memory model),
``max_batch_check_summary.csv`` and ``max_batch_check.png`` (also ``docs/img/``).
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GRID_BATCHES = [1, 2, 4, 8, 16, 32, 64]
GRID_SIZES = [64, 128, 224, 320, 512]
LIMITS_MB = [150.0, 300.0, 600.0]


class LineMemoryModel:
    """``memory_mb = a_s + c_s * batch`` fitted per input size; the fallback when servopt.performance lacks one."""

    def fit(self, frame: Any) -> LineMemoryModel:
        import numpy as np

        self.lines_: dict[int, tuple[float, float]] = {}
        for size, group in frame.groupby("input_size"):
            b = group["batch_size"].to_numpy(float)
            m = group["memory_mb"].to_numpy(float)
            slope, intercept = np.polyfit(b, m, 1)
            self.lines_[int(size)] = (float(intercept), float(slope))
        return self

    def max_batch(self, input_size: int, memory_limit_mb: float) -> int:
        a, c = self.lines_[int(input_size)]
        if c <= 0:
            return 10**9
        return max(int(math.floor((memory_limit_mb - a) / c)), 0)


def memory_models(frame: Any) -> dict[str, Any]:
    """The memory models compared: servopt.performance.MaxBatchModel (when present) and the per-size line."""
    models: dict[str, Any] = {}
    try:
        from servopt.performance import MaxBatchModel
    except ImportError:
        print("servopt.performance.MaxBatchModel not available; using the per-size line only", file=sys.stderr)
    else:
        models["MaxBatchModel"] = MaxBatchModel().fit(frame[["batch_size", "input_size"]], frame["memory_mb"])
    models["line_per_size"] = LineMemoryModel().fit(frame)
    return models


def on_grid(batch: int, grid: list[int]) -> int:
    """Largest grid batch size <= batch (0 when none)."""
    return max([b for b in grid if b <= batch], default=0)


def measured_boundaries(onnx_path: Path, limit: float, out_csv: Path) -> dict[int, dict[str, Any]]:
    """Profile under ``limit``; per input size the largest batch that ran, where it ran out of memory, and the
    memory at both."""
    from servopt.measure.profiler import profile_model

    run = profile_model(onnx_path, GRID_BATCHES, GRID_SIZES, cores=[2], repeats=1, min_repeats=1,
                        time_budget_s=0.01, memory_limit_mb=limit, output=out_csv)
    result = {}
    for size in GRID_SIZES:
        rows = sorted((r for r in run.rows if r["input_size"] == size), key=lambda r: r["batch_size"])
        oom = [o for o in run.oom if o["input_size"] == size]
        result[size] = {
            "measured_max_batch": rows[-1]["batch_size"] if rows else 0,
            "memory_at_max_mb": round(rows[-1]["memory_mb"], 1) if rows else None,
            "oom_batch_size": oom[0]["batch_size"] if oom else None,
            "memory_at_oom_mb": round(oom[0]["memory_mb"], 1) if oom else None,
        }
    return result


def load_profiles(paths: list[str]) -> Any:
    import pandas as pd

    data = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    if "oom" in data:
        data = data[data["oom"].fillna(0) == 0]
    return data[data["memory_mb"].notna()]


def plot(table: Any, paths: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted(table["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        sub = table[table["model"] == model]
        styles = {"MaxBatchModel": "--", "line_per_size": ":"}
        for i, (limit, g) in enumerate(sub.groupby("memory_limit_mb")):
            color = f"C{i}"
            for how, gh in g.groupby("memory_model", sort=False):
                ax.plot(gh["input_size"], gh["predicted_grid"].clip(lower=0.5), styles.get(how, "-."),
                        color=color, lw=1.5, label=f"{limit:g} MiB predicted ({how})")
            meas = g.drop_duplicates("input_size")
            ax.plot(meas["input_size"], meas["measured_max_batch"].clip(lower=0.5), "o", color=color, ms=9,
                    mfc="none", label=f"{limit:g} MiB measured OOM boundary")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(GRID_SIZES, [str(s) for s in GRID_SIZES])
        ax.set_yticks([0.5] + GRID_BATCHES, ["0"] + [str(b) for b in GRID_BATCHES])
        ax.set_xlabel("input size (px)")
        ax.set_ylabel("largest batch that fits")
        ax.set_title(model)
        ax.legend(fontsize=7)
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="+", default=sorted(glob.glob(str(ROOT / "profiles/measured_*.csv"))))
    parser.add_argument("--limits", default=",".join(f"{x:g}" for x in LIMITS_MB), help="MiB, comma-separated")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks/results")
    parser.add_argument("--img-dir", type=Path, default=ROOT / "docs/img")
    args = parser.parse_args(argv)
    if not args.profiles:
        print("no profiles/measured_*.csv found; run the commands in profiles/README.md first", file=sys.stderr)
        return 2
    import pandas as pd

    from servopt.measure.onnx_models import BUILDERS, save_model

    limits = [float(x) for x in args.limits.split(",")]
    data = load_profiles(args.profiles)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for model in sorted(data["model"].unique()):
            if model not in BUILDERS:
                print(f"skipping {model}: not a graph servopt.measure.onnx_models builds", file=sys.stderr)
                continue
            fitted = memory_models(data[data["model"] == model])
            onnx_path = save_model(BUILDERS[model](), Path(tmp) / f"{model}.onnx")
            for limit in limits:
                measured = measured_boundaries(onnx_path, limit, Path(tmp) / f"{model}_{limit:g}.csv")
                for size in GRID_SIZES:
                    for how, memory_model in fitted.items():
                        predicted = int(memory_model.max_batch(size, limit))
                        grid_pred = on_grid(predicted, GRID_BATCHES)
                        meas = measured[size]["measured_max_batch"]
                        ladder = [0] + GRID_BATCHES
                        steps = ladder.index(grid_pred) - ladder.index(meas)  # > 0: predicted too large (unsafe)
                        rows.append({"model": model, "memory_limit_mb": limit, "input_size": size,
                                     "memory_model": how, "predicted_max_batch": predicted,
                                     "predicted_grid": grid_pred, "measured_max_batch": meas,
                                     "match": grid_pred == meas, "grid_steps_apart": steps,
                                     **{k: v for k, v in measured[size].items() if k != "measured_max_batch"}})
                print(f"{model} limit {limit:g} MiB: measured {measured}", flush=True)
    table = pd.DataFrame(rows)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out_dir / "max_batch_check.csv", index=False)
    plot(table, [args.out_dir / "max_batch_check.png", args.img_dir / "max_batch_check.png"])
    print(table.to_string(index=False))
    summary = []
    for how, g in table.groupby("memory_model", sort=False):
        summary.append({"memory_model": how, "cases": len(g), "exact": int(g["match"].sum()),
                        "within_one_step": int((g["grid_steps_apart"].abs() <= 1).sum()),
                        "predicted_too_large": int((g["grid_steps_apart"] > 0).sum()),
                        "predicted_too_small": int((g["grid_steps_apart"] < 0).sum())})
    summary_frame = pd.DataFrame(summary)
    summary_frame.to_csv(args.out_dir / "max_batch_check_summary.csv", index=False)
    print()
    print(summary_frame.to_string(index=False))
    print(f"measuring under the limits took {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
