"""The largest batch per input size under a memory limit, held out by input size, on every shipped profile with
memory rows and out-of-memory boundaries: the model ``servopt fit --oom-limit-mb`` uses beside the old ones.

    python benchmarks/max_batch_check.py          # H200 profiles + the CPU profiles measured again under 3 limits
    python benchmarks/max_batch_check.py --quick  # no measuring: the CPU boundaries stored by the last full run

Methods (``benchmarks/_max_batch.py``): ``family + calibration`` (``MaxBatchModel(structure="family")`` +
``calibrate()`` on the out-of-memory boundaries of the training rows, as ``servopt fit --oom-limit-mb L``), the same
uncalibrated, ``line (old)`` (``structure="line"``, before issue 19) and ``line + margin`` (its 95 % conformal
margin). Each case holds one input size out: the memory model is fitted on the other sizes' rows and calibrated on
their boundaries, and predicts the held-out size's largest batch, compared with the measured one.

* **H200, 8192 MiB** (exact truth, bisection): ``profiles/measured_H200_{resnet50,mobilenet_v3_large}_{fp32,fp16}
  .csv`` (input sizes 224, 320, 448; their rows carry ``oom_batch_size``), truth ``profiles/max_batch_H200.csv``;
  12 cases per method.
* **H200, 4096 MiB** (exact): resnet50 fp16 at 224 px, whose boundary under 4096 MiB the command line measured
  (``measured_H200_resnet50_fp16_cli_max_batch.csv``: 664); the model is fitted and calibrated on the 320 and 448
  px rows of the 8192 MiB profile (224 px held out), so the limit and the size are both new to it.
  No boundary was measured under any other limit on the H200.
* **CPU, 150 / 300 / 600 MiB** (truth bracketed by the grid): the ONNX graphs of ``profiles/measured_*_like.csv``
  (rebuilt by :mod:`servopt.measure.onnx_models`) profiled again under each limit (batch 1-64 in powers of two, 2
  cores, one run per point): an input size's largest batch lies between the last grid batch that ran and the
  first that ran out of memory minus one. The model is fitted on the shipped profile's rows of the other sizes
  (both cores settings) and calibrated on the other sizes' boundaries of the run under the limit, read as
  ``servopt fit`` reads them (``oom_batch_size - 1``, the top of the bracket); a fifth method,
  ``family + calibration (last batch that ran)``, calibrates on the bottom of the bracket instead. Held-out sizes
  that never ran out of memory (truth unbounded) are not cases. The boundaries are stored in
  ``max_batch_check_boundaries.csv``; ``--quick`` / ``--boundaries FILE`` reuse them instead of measuring.

Writes ``benchmarks/results/max_batch_check.csv`` (one row per case and method: predicted, truth or its bracket,
ratio, above the truth yes / no / unknown, the margin ``calibrate()`` used), ``max_batch_check_summary.csv`` and
``max_batch_check.png`` (also ``docs/img/``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _max_batch import METHODS, fit_memory_model, summarize, verdict  # noqa: E402
from _util import RESULTS, ROOT, pyplot, save_figure, write_csv  # noqa: E402
from bench_models import H200_COLS, H200_LIMIT_MB, _load  # noqa: E402

CPU_MODELS = ("resnet_like", "mobilenet_like")
CPU_BATCHES = [1, 2, 4, 8, 16, 32, 64]
CPU_SIZES = [64, 128, 224, 320, 512]
CPU_LIMITS_MB = (150.0, 300.0, 600.0)
CPU_COLS = ["batch_size", "model", "input_size", "cores"]
CPU_CORES = 2
LAST_RAN = "family + calibration (last batch that ran)"
BOUNDARY_FIELDS = ["model", "memory_limit_mb", "input_size", "cores", "last_ran", "oom_batch_size",
                   "memory_at_last_mb", "memory_at_oom_mb"]
CASE_FIELDS = ["data", "model", "memory_limit_mb", "input_size", "method", "predicted", "truth_lo", "truth_hi",
               "ratio_lo", "ratio_hi", "above_truth", "oom_margin", "usable_fraction", "calibrated_on"]
SUMMARY_FIELDS = ["data", "method", "cases", "above_truth", "maybe_above", "within_10pct_not_above", "ratio_min",
                  "ratio_median", "ratio_max", "margin_min", "margin_max"]


def _case(data: str, model_name: str, limit: float, size: float, method: str, fitted: Any, predicted: int,
          lo: int, hi: int) -> dict[str, Any]:
    margins = fitted.margins() if fitted.oom_margin_ is not None else []
    return {"data": data, "model": model_name, "memory_limit_mb": limit, "input_size": int(size), "method": method,
            "predicted": int(predicted), "truth_lo": int(lo), "truth_hi": int(hi),
            "ratio_lo": predicted / hi if hi else np.nan, "ratio_hi": predicted / lo if lo else np.inf,
            "above_truth": verdict(predicted, lo, hi), "oom_margin": fitted.oom_margin_,
            "usable_fraction": margins[0]["usable_fraction"] if len(margins) == 1 else np.nan,
            "calibrated_on": len(getattr(fitted, "calibration_", []))}


def h200_cases(profiles: list[Path], truth_path: Path, cli_path: Path | None) -> list[dict[str, Any]]:
    """Held-out input sizes of the H200 profiles under 8192 MiB, and the 4096 MiB boundary of the command line."""
    truth = pd.read_csv(truth_path)
    cases = []
    for path in profiles:
        frame = _load(str(path))
        frame = frame[frame["memory_mb"].notna()]
        name, dtype = str(frame["model"].iloc[0]), str(frame["precision"].iloc[0])
        features = {"model": name, "variant": f"{name}-{dtype}", "hardware": "H200"}
        exact = truth[(truth.model == name) & (truth.dtype == dtype)].set_index("input_size")["max_batch"]
        cli = _load(str(cli_path)) if cli_path is not None and cli_path.is_file() else None
        for held_out in sorted(frame["input_size"].unique()):
            train = frame[frame.input_size != held_out]
            targets = [("H200 8192 MiB", H200_LIMIT_MB, int(exact[held_out]))]
            if cli is not None and (name, dtype) == (str(cli["model"].iloc[0]), str(cli["precision"].iloc[0])) \
                    and held_out == int(cli["input_size"].iloc[0]):
                targets.append(("H200 4096 MiB", 4096.0, int(cli["oom_batch_size"].iloc[0]) - 1))
            for method in METHODS:
                fitted = fit_memory_model(method, train, H200_COLS, H200_LIMIT_MB)
                for data, limit, true in targets:
                    got = fitted.max_batch(held_out, limit, **features)
                    cases.append(_case(data, f"{name} {dtype}", limit, held_out, method, fitted, got, true, true))
    return cases


def measure_cpu_boundaries(limits: tuple[float, ...], models: tuple[str, ...]) -> pd.DataFrame:
    """Profile each CPU graph under each limit; per input size the last grid batch that ran and the first that
    ran out of memory (empty when none did)."""
    from servopt.measure.onnx_models import BUILDERS, save_model
    from servopt.measure.profiler import profile_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            onnx_path = save_model(BUILDERS[model](), Path(tmp) / f"{model}.onnx")
            for limit in limits:
                run = profile_model(onnx_path, CPU_BATCHES, CPU_SIZES, cores=[CPU_CORES], repeats=1, min_repeats=1,
                                    time_budget_s=0.01, memory_limit_mb=limit, model_name=model)
                for size in CPU_SIZES:
                    ran = sorted((r for r in run.rows if r["input_size"] == size), key=lambda r: r["batch_size"])
                    oom = [o for o in run.oom if o["input_size"] == size]
                    rows.append({"model": model, "memory_limit_mb": limit, "input_size": size, "cores": CPU_CORES,
                                 "last_ran": ran[-1]["batch_size"] if ran else 0,
                                 "oom_batch_size": oom[0]["batch_size"] if oom else np.nan,
                                 "memory_at_last_mb": ran[-1]["memory_mb"] if ran else np.nan,
                                 "memory_at_oom_mb": oom[0]["memory_mb"] if oom else np.nan})
                print(f"{model} under {limit:g} MiB: " + ", ".join(
                    f"{r['input_size']}px {r['last_ran']}-{r['oom_batch_size']}" for r in rows[-len(CPU_SIZES):]),
                    flush=True)
    return pd.DataFrame(rows)


def cpu_cases(profiles: dict[str, Path], boundaries: pd.DataFrame) -> list[dict[str, Any]]:
    """Held-out input sizes of the CPU profiles under each limit whose boundary the run under it bracketed."""
    cases = []
    for model, path in profiles.items():
        frame = _load(str(path))
        frame = frame[frame["memory_mb"].notna()]
        for limit, bounds in boundaries[boundaries.model == model].groupby("memory_limit_mb"):
            for held_out in sorted(frame["input_size"].unique()):
                measured = bounds[bounds.input_size == held_out]
                if measured.empty or measured["oom_batch_size"].isna().all():
                    continue  # never ran out of memory: the truth is unbounded
                lo, hi = int(measured["last_ran"].iloc[0]), int(measured["oom_batch_size"].iloc[0]) - 1
                train = frame[frame.input_size != held_out]
                others = bounds[(bounds.input_size != held_out) & bounds["oom_batch_size"].notna()]
                for method in (*METHODS, LAST_RAN):
                    calib = others.assign(oom_batch_size=others["last_ran"] + 1) if method == LAST_RAN else others
                    calib = calib.assign(batch_size=calib["oom_batch_size"])
                    fitted = fit_memory_model(METHODS[0] if method == LAST_RAN else method, train, CPU_COLS,
                                              float(limit), boundaries=calib)
                    got = fitted.max_batch(held_out, float(limit), model=model, cores=CPU_CORES)
                    cases.append(_case(f"CPU {limit:g} MiB", model, float(limit), held_out, method, fitted, got,
                                       lo, hi))
    return cases


def plot(cases: pd.DataFrame, paths: list[Path]) -> None:
    plt = pyplot()
    groups = [("H200 (8192 and 4096 MiB): exact boundary", cases["data"].str.startswith("H200")),
              ("CPU (150, 300, 600 MiB): boundary bracketed by the grid", cases["data"].str.startswith("CPU"))]
    groups = [(title, mask) for title, mask in groups if mask.any()]
    fig, axes = plt.subplots(1, len(groups), figsize=(7.5 * len(groups), 5), squeeze=False)
    methods = list(dict.fromkeys(cases["method"]))
    for ax, (title, mask) in zip(axes[0], groups):
        part = cases[mask]
        for i, method in enumerate(methods):
            sub = part[part.method == method]
            if sub.empty:
                continue
            x = np.sqrt(sub["truth_lo"].clip(lower=1) * sub["truth_hi"]) * (1 + 0.04 * (i - len(methods) / 2))
            mid = np.sqrt(sub["ratio_lo"] * sub["ratio_hi"].clip(upper=1e3))
            err = np.vstack([mid - sub["ratio_lo"], sub["ratio_hi"].clip(upper=1e3) - mid])
            ax.errorbar(x, mid, yerr=err, fmt="o", ms=4, color=f"C{i}", lw=1, capsize=2, label=method)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.9, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured largest batch (held-out input size)")
        ax.set_ylabel("predicted / measured largest batch")
        ax.set_title(title + "\nabove 1: out of memory; dashed: 10 % below; bars: the grid's bracket", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    from servopt.atomic import atomic_write

    for path in paths[:-1]:  # save_figure closes the figure: it writes the last copy
        with atomic_write(path, make_parents=True, suffix=".png") as fh:
            fig.savefig(fh, dpi=110, format="png")
    save_figure(fig, paths[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="no measuring: reuse the stored CPU boundaries")
    parser.add_argument("--boundaries", type=Path, help="CPU boundaries to reuse (a max_batch_check_boundaries.csv)")
    parser.add_argument("--limits", default=",".join(f"{x:g}" for x in CPU_LIMITS_MB),
                        help="CPU limits to measure under, MiB, comma-separated")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img",
                        help="copy of the PNG (not with --quick)")
    args = parser.parse_args(argv)
    prof = ROOT / "profiles"
    h200 = [prof / f"measured_H200_{m}_{d}.csv" for m in ("resnet50", "mobilenet_v3_large") for d in ("fp32", "fp16")]
    cpu = {m: prof / f"measured_{m}.csv" for m in CPU_MODELS if (prof / f"measured_{m}.csv").is_file()}
    start = time.perf_counter()
    stored = args.boundaries or (RESULTS / "max_batch_check_boundaries.csv" if args.quick else None)
    if stored is not None:
        boundaries = pd.read_csv(stored) if stored.is_file() else pd.DataFrame(columns=BOUNDARY_FIELDS)
    else:
        limits = tuple(float(x) for x in args.limits.split(","))
        boundaries = measure_cpu_boundaries(limits, tuple(cpu))
        write_csv(boundaries.to_dict("records"), BOUNDARY_FIELDS, args.out_dir / "max_batch_check_boundaries.csv")
    measured_s = time.perf_counter() - start
    cases = pd.DataFrame(h200_cases(h200, prof / "max_batch_H200.csv",
                                    prof / "measured_H200_resnet50_fp16_cli_max_batch.csv")
                         + cpu_cases(cpu, boundaries))
    summary = summarize(cases, ["data", "method"])
    pooled = summarize(cases.assign(data=cases["data"].str.split().str[0] + ", every limit"), ["data", "method"])
    summary = pd.concat([summary, pooled], ignore_index=True)
    write_csv(cases.to_dict("records"), CASE_FIELDS, args.out_dir / "max_batch_check.csv")
    write_csv(summary.to_dict("records"), SUMMARY_FIELDS, args.out_dir / "max_batch_check_summary.csv")
    plot(cases, [args.out_dir / "max_batch_check.png"] + ([] if args.quick else [args.img_dir / "max_batch_check.png"]))
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(cases[CASE_FIELDS[:12]].to_string(index=False))
        print()
        print(summary.to_string(index=False))
    print(f"measuring the CPU boundaries took {measured_s:.0f} s; the whole check "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
