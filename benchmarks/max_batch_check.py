"""The largest batch per input size under a memory limit, held out by input size, on every shipped profile with
memory rows and out-of-memory boundaries: the model ``servopt fit --oom-limit-mb`` uses beside the old ones.

    python benchmarks/max_batch_check.py          # H200 profiles + the CPU graphs measured under 3 limits
    python benchmarks/max_batch_check.py --quick  # no measuring: the CPU runs stored by the last full run,
                                                  # results into a new temporary folder

Methods (``benchmarks/_max_batch.py``): ``family + calibration`` (``MaxBatchModel(structure="family")`` +
``calibrate()`` on the out-of-memory boundaries of the training rows, as ``servopt fit --oom-limit-mb L``),
``family + calibration, act_peak axis`` (the same with ``work_axis="act_peak"``: the family line in batch x the
peak of live activations of one sample where a graph has no attention; the only method given ``act_peak_mb``,
counted from the graphs for runs stored before the profiler recorded it), ``family + calibration, pressure rows
dropped`` (the rows above half the limit out of the configurations' lines on CPU too, the rule before 450f24d),
``family, uncalibrated``, ``line (old)``
(``structure="line"``, before issue 19) and ``line + margin`` (its 95 % conformal margin). Each case holds one input
size out: the memory model is fitted on the other sizes' rows and calibrated on
their boundaries, and predicts the held-out size's largest batch, compared with the measured one.

* **H200, 8192 MiB** (exact truth, bisection): ``profiles/measured_H200_{resnet50,mobilenet_v3_large}_{fp32,fp16}
  .csv`` (input sizes 224, 320, 448; their rows carry ``oom_batch_size``), truth ``profiles/max_batch_H200.csv``;
  12 cases per method.
* **H200, 4096 MiB** (exact): resnet50 fp16 at 224 px, whose boundary under 4096 MiB the command line measured
  (``measured_H200_resnet50_fp16_cli_max_batch.csv``: 664); the model is fitted and calibrated on the 320 and 448
  px rows of the 8192 MiB profile (224 px held out), so the limit and the size are both new to it.
  No boundary was measured under any other limit on the H200.
* **CPU, 150 / 300 / 600 MiB** (exact truth, an ascending scan): the ONNX graphs of ``profiles/measured_*_like.csv``
  (rebuilt by :mod:`servopt.measure.onnx_models`), 2 cores. Under each limit each graph is profiled as a user would
  (``servopt profile --memory-limit-mb L --find-max-batch``: batch 1-64 in powers of two, one run per point, then
  the boundary of each input size, :mod:`servopt.measure.max_batch_search`). The model is fitted on
  that run's rows of the other sizes and calibrated on their boundaries, as ``servopt fit`` reads them
  (``oom_batch_size - 1``), and predicts the held-out size's largest batch. The truth is the largest batch
  below the first one, in ascending order, whose peak memory passes the limit: every batch 1, 2, 3, ... of the
  size is run in turn (one fresh session each, its warm-up and one run, as a trial of the search) until one
  does. ONNX Runtime's arena makes a batch's peak memory saw-toothed in the batch (up to a third more than a
  larger batch's), so the search's boundary can lie above that first failure; both are written
  (``bisection``: what ``--find-max-batch`` found, plain bisection in the runs of 23be80c (set 18), upward steps
  then bisection since 5764aa1; ``first_failure``). Held-out sizes that did not run out of memory up to batch
  :data:`CPU_CAP` are not cases. The runs' rows, boundaries and scans are stored in
  ``max_batch_check_cpu_rows.csv``, ``max_batch_check_boundaries.csv`` and ``max_batch_check_scan.csv``;
  ``--quick`` reuses them instead of measuring. ``--mem-pattern off`` profiles and scans with ONNX Runtime's
  memory pattern off (``servopt profile --mem-pattern off``; files ``..._nopattern*``).

Writes ``max_batch_check.csv`` (one row per case and method: predicted, truth, ratio, above the truth yes / no,
the margin the held-out size was predicted with and its basis, from ``largest_batch()``),
``max_batch_check_summary.csv`` and ``max_batch_check.png`` under ``--out-dir`` (default ``benchmarks/results/``),
with a copy of the PNG in ``--img-dir`` (default ``docs/img/``). ``--quick`` reads the stored runs from
``benchmarks/results/`` (or ``--stored-dir``) but writes to a new temporary folder (named on stderr) and makes no
copy, unless ``--out-dir`` / ``--img-dir`` are given.

**Another limit** (CPU, ``max_batch_check*_other_limit.csv``; summary rows ``CPU, another limit``): a profiled input
size under a limit the model was not calibrated under. Each method is fitted and calibrated on one limit's run (every
size) and predicts each size's largest batch under the other limits, against their scans' truth: what ``servopt
predict --memory-limit-mb`` gives for a limit the profile was not searched under.
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
from _util import RESULTS, ROOT, image_dir, output_dir, pyplot, save_figure, write_csv  # noqa: E402
from bench_models import H200_COLS, H200_LIMIT_MB, _load  # noqa: E402

CPU_MODELS = ("resnet_like", "mobilenet_like")
CPU_BATCHES = [1, 2, 4, 8, 16, 32, 64]
CPU_SIZES = [64, 128, 224, 320, 512]
CPU_LIMITS_MB = (150.0, 300.0, 600.0)
#: the limits of ``--fresh-set`` (the fresh graphs are smaller: 50-800 MiB at batch 64)
FRESH_LIMITS_MB = (100.0, 200.0, 400.0)
CPU_COLS = ["batch_size", "model", "input_size", "cores", "gflops", "act_peak_mb"]
CPU_CORES = 2
#: the largest batch the CPU searches and scans try
CPU_CAP = 256
ROW_FIELDS = ["model", "memory_limit_mb", "cores", "input_size", "batch_size", "memory_mb", "oom_batch_size", "gflops",
              "act_peak_mb"]
BOUNDARY_FIELDS = ["model", "memory_limit_mb", "input_size", "cores", "bisection", "bisection_trials",
                   "first_failure", "memory_at_bisection_mb"]
SCAN_FIELDS = ["model", "input_size", "cores", "batch_size", "memory_mb"]
CASE_FIELDS = ["data", "model", "memory_limit_mb", "input_size", "method", "predicted", "truth_lo", "truth_hi",
               "ratio_lo", "ratio_hi", "above_truth", "oom_margin", "usable_fraction", "basis", "calibrated_on",
               "bisection"]
SUMMARY_FIELDS = ["data", "method", "cases", "above_truth", "maybe_above", "within_10pct_not_above", "ratio_min",
                  "ratio_median", "ratio_max", "margin_min", "margin_max"]


def _case(data: str, model_name: str, limit: float, size: float, method: str, fitted: Any, features: dict[str, Any],
          lo: int, hi: int, bisection: float = np.nan) -> dict[str, Any]:
    """One held-out case: the model's largest batch at ``size`` under ``limit`` (the query ``features``) against
    the truth ``[lo, hi]``, with the margin that batch was predicted with (``MaxBatchModel.largest_batch``)."""
    row = {name: 1.0 if name == "batch_size" else size if name == "input_size" else features.get(name, 0.0)
           for name in fitted.feature_names_in_}
    got = fitted.largest_batch(pd.DataFrame([row]), limit)
    predicted = int(got["max_batch"][0])
    calibrated = fitted.oom_margin_ is not None
    return {"data": data, "model": model_name, "memory_limit_mb": limit, "input_size": int(size), "method": method,
            "predicted": predicted, "truth_lo": int(lo), "truth_hi": int(hi),
            "ratio_lo": predicted / hi if hi else np.nan, "ratio_hi": predicted / lo if lo else np.inf,
            "above_truth": verdict(predicted, lo, hi),
            # the margin and fraction the held-out (unprofiled) size was predicted with, and their basis
            "oom_margin": float(got["oom_margin"][0]) if calibrated else np.nan,
            "usable_fraction": float(got["usable_fraction"][0]) if calibrated else np.nan,
            "basis": str(got["basis"][0]),
            "calibrated_on": len(getattr(fitted, "calibration_", [])), "bisection": bisection}


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
                    cases.append(_case(data, f"{name} {dtype}", limit, held_out, method, fitted, features, true,
                                       true))
    return cases


def measure_cpu(limits: tuple[float, ...], graphs: dict[str, Any], sizes: list[int],
                mem_pattern: bool = True) -> tuple[pd.DataFrame, ...]:
    """Profile each CPU graph (name -> ONNX proto) at ``sizes`` under each limit with the boundary search
    (``--find-max-batch``), then scan each input size that ran out of memory batch by batch up to its first
    failure under the largest such limit.

    Returns ``(rows, boundaries, scan)`` (columns :data:`ROW_FIELDS`, :data:`BOUNDARY_FIELDS`,
    :data:`SCAN_FIELDS`)."""
    from servopt.measure.onnx_models import save_model
    from servopt.measure.profiler import profile_model

    rows, bounds, scan = [], [], []
    quick = dict(cores=[CPU_CORES], repeats=1, min_repeats=1, time_budget_s=0.01, mem_pattern=mem_pattern)
    with tempfile.TemporaryDirectory() as tmp:
        for model, proto in graphs.items():
            onnx_path = save_model(proto, Path(tmp) / f"{model}.onnx")
            found: dict[tuple[float, int], dict[str, Any]] = {}
            for limit in limits:
                run = profile_model(onnx_path, CPU_BATCHES, sizes, memory_limit_mb=limit, find_max_batch=True,
                                    max_batch_cap=CPU_CAP, model_name=model, **quick)
                rows += [{"memory_limit_mb": limit, **{k: r.get(k, np.nan) for k in ROW_FIELDS
                                                       if k != "memory_limit_mb"}} for r in run.rows]
                for entry in run.max_batch:
                    found[limit, entry["input_size"]] = entry
                print(f"{model} under {limit:g} MiB, search: " + ", ".join(
                    f"{e['input_size']}px {e['max_batch']}" + ("" if e["oom_batch"] else "+")
                    for e in run.max_batch), flush=True)
            for size in sizes:
                searched = [lim for lim in limits if found[lim, size]["oom_batch"] is not None]
                if not searched:
                    continue
                top = max(searched)  # one scan serves every limit: it stops where the largest is passed
                run = profile_model(onnx_path, list(range(1, CPU_CAP + 1)), [size], memory_limit_mb=top,
                                    model_name=model, **quick)
                memory = [(r["batch_size"], r["memory_mb"]) for r in run.rows]
                memory += [(o["batch_size"], o["memory_mb"]) for o in run.oom]
                scan += [{"model": model, "input_size": size, "cores": CPU_CORES, "batch_size": b, "memory_mb": m}
                         for b, m in memory]
                for limit in limits:
                    entry = found[limit, size]
                    first = next((b for b, m in sorted(memory) if m > limit), None) if limit in searched else None
                    at = [r["memory_mb"] for r in rows if (r["model"], r["memory_limit_mb"], r["input_size"],
                                                            r["batch_size"]) == (model, limit, size,
                                                                                 entry["max_batch"])]
                    bounds.append({"model": model, "memory_limit_mb": limit, "input_size": size, "cores": CPU_CORES,
                                   "bisection": entry["max_batch"] if entry["oom_batch"] else np.nan,
                                   "bisection_trials": len(entry["trials"]),
                                   "first_failure": first if first is not None else np.nan,
                                   "memory_at_bisection_mb": at[0] if at else np.nan})
                print(f"{model} {size}px scan: first failure " + ", ".join(
                    f"{b['first_failure']:.0f} under {b['memory_limit_mb']:g} MiB (search {b['bisection']:.0f})"
                    for b in bounds[-len(limits):] if b["first_failure"] == b["first_failure"]), flush=True)
    return (pd.DataFrame(rows, columns=ROW_FIELDS), pd.DataFrame(bounds, columns=BOUNDARY_FIELDS),
            pd.DataFrame(scan, columns=SCAN_FIELDS))


def with_act_peak(rows: pd.DataFrame, graphs: dict[str, Any]) -> pd.DataFrame:
    """``rows`` with ``act_peak_mb`` where it is missing (runs stored before the profiler recorded it), counted
    from the graphs as the profiler counts it (:func:`servopt.measure.work_columns.onnx_counter`: batch 1, the
    peak of live activations; NaN for a graph with attention)."""
    from servopt.measure.work_columns import onnx_counter

    rows = rows.copy()
    if "act_peak_mb" not in rows.columns:
        rows["act_peak_mb"] = np.nan
    counters = {m: onnx_counter(g) for m, g in graphs.items()}
    missing = rows["act_peak_mb"].isna() & rows["model"].isin(list(counters))
    peak = {(m, s): counters[m](int(s))[2] / 2 ** 20
            for m, s in set(zip(rows.loc[missing, "model"], rows.loc[missing, "input_size"]))}
    rows.loc[missing, "act_peak_mb"] = [peak[m, s] for m, s in zip(rows.loc[missing, "model"],
                                                                    rows.loc[missing, "input_size"])]
    return rows


def cpu_cases(rows: pd.DataFrame, boundaries: pd.DataFrame) -> list[dict[str, Any]]:
    """Held-out input sizes of the CPU graphs under each limit whose first failure the scan found."""
    cases = []
    for (model, limit), run in rows.groupby(["model", "memory_limit_mb"]):
        bounds = boundaries[(boundaries.model == model) & (boundaries.memory_limit_mb == limit)]
        for held_out in sorted(run["input_size"].unique()):
            measured = bounds[bounds.input_size == held_out]
            if measured.empty or measured["first_failure"].isna().all():
                continue  # no out of memory up to the cap: the truth is unbounded
            true = int(measured["first_failure"].iloc[0]) - 1
            train = run[run.input_size != held_out]
            for method in METHODS:
                fitted = fit_memory_model(method, train, CPU_COLS, float(limit))
                cases.append(_case(f"CPU {limit:g} MiB", model, float(limit), held_out, method, fitted,
                                   {"model": model, "cores": CPU_CORES}, true, true,
                                   float(measured["bisection"].iloc[0])))
    return cases


def other_limit_cases(rows: pd.DataFrame, boundaries: pd.DataFrame) -> list[dict[str, Any]]:
    """Profiled input sizes under a limit the model was not calibrated under: each method fitted (and calibrated)
    on one limit's run, every size, predicts each size's largest batch under each other limit whose scan found a
    first failure (data ``CPU, another limit``; ``calibrated_limit_mb`` is the run's limit)."""
    cases = []
    for (model, fit_limit), run in rows.groupby(["model", "memory_limit_mb"]):
        fitted = {method: fit_memory_model(method, run, CPU_COLS, float(fit_limit)) for method in METHODS}
        others = boundaries[(boundaries.model == model) & (boundaries.memory_limit_mb != fit_limit)
                            & boundaries["first_failure"].notna() & boundaries["input_size"].isin(run["input_size"])]
        for _, bound in others.sort_values(["memory_limit_mb", "input_size"]).iterrows():
            size = float(bound["input_size"])
            true = int(bound["first_failure"]) - 1
            for method, model_ in fitted.items():
                case = _case("CPU, another limit", model, float(bound["memory_limit_mb"]), size, method, model_,
                             {"model": model, "cores": CPU_CORES}, true, true, float(bound["bisection"]))
                cases.append({**case, "calibrated_limit_mb": float(fit_limit)})
    return cases


def plot(cases: pd.DataFrame, paths: list[Path]) -> None:
    plt = pyplot()
    cpu = cases["data"].str.startswith("CPU")
    limits = ", ".join(f"{v:g}" for v in sorted(cases.loc[cpu, "memory_limit_mb"].unique()))
    groups = [("H200 (8192 and 4096 MiB): exact boundary", cases["data"].str.startswith("H200")),
              (f"CPU ({limits} MiB): first failure of an ascending scan", cpu)]
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
        ax.set_title(title + "\nabove 1: out of memory; dashed: 10 % below", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    from servopt.atomic import atomic_write

    for path in paths[:-1]:  # save_figure closes the figure: it writes the last copy
        with atomic_write(path, make_parents=True, suffix=".png") as fh:
            fig.savefig(fh, dpi=110, format="png")
    save_figure(fig, paths[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="no measuring: reuse the stored CPU runs")
    parser.add_argument("--stored-dir", type=Path, default=None,
                        help="no measuring: reuse the CPU runs stored in this folder (max_batch_check_cpu_rows.csv, "
                        "_boundaries.csv; default with --quick: benchmarks/results)")
    parser.add_argument("--limits", default=",".join(f"{x:g}" for x in CPU_LIMITS_MB),
                        help="CPU limits to measure under, MiB, comma-separated")
    parser.add_argument("--fresh-set", type=int, default=None, metavar="N",
                        help="instead: the three graphs of benchmarks/fresh_cpu.py's set N at its input sizes (held "
                        "out: files max_batch_check_freshN*), under --fresh-limits")
    parser.add_argument("--fresh-limits", default=",".join(f"{x:g}" for x in FRESH_LIMITS_MB),
                        help="limits for --fresh-set, MiB, comma-separated")
    parser.add_argument("--mem-pattern", choices=("on", "off"), default="on",
                        help="ONNX Runtime's memory pattern in every CPU run (servopt profile --mem-pattern); off "
                        "adds _nopattern to the file names")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for the CSV and PNG files (default "
                        "benchmarks/results; with --quick a new temporary folder)")
    parser.add_argument("--img-dir", type=Path, default=None,
                        help="copy of the PNG (default docs/img; none with --quick)")
    args = parser.parse_args(argv)
    args.out_dir = output_dir(args.out_dir, quick=args.quick, name="max_batch_check", flag="--out-dir")
    args.img_dir = image_dir(args.img_dir, quick=args.quick)
    prof = ROOT / "profiles"
    h200 = [prof / f"measured_H200_{m}_{d}.csv" for m in ("resnet50", "mobilenet_v3_large") for d in ("fp32", "fp16")]
    stem = "max_batch_check" if args.fresh_set is None else f"max_batch_check_fresh{args.fresh_set}"
    stem += "_nopattern" if args.mem_pattern == "off" else ""
    start = time.perf_counter()
    stored = {name: (args.stored_dir or RESULTS) / f"{stem}_{name}.csv" for name in ("cpu_rows", "boundaries", "scan")}
    if args.fresh_set is None:
        from servopt.measure.onnx_models import BUILDERS

        graphs, sizes, limits = {m: BUILDERS[m]() for m in CPU_MODELS}, CPU_SIZES, args.limits
    else:
        from fresh_cpu import SIZES, graphs as fresh_graphs

        graphs, sizes, limits = fresh_graphs(args.fresh_set), list(SIZES[args.fresh_set]), args.fresh_limits
    if args.quick or args.stored_dir is not None:
        rows, boundaries = (pd.read_csv(stored[name]) if stored[name].is_file() else pd.DataFrame(columns=fields)
                            for name, fields in (("cpu_rows", ROW_FIELDS), ("boundaries", BOUNDARY_FIELDS)))
        rows = with_act_peak(rows, graphs)
    else:
        rows, boundaries, scan = measure_cpu(tuple(float(x) for x in limits.split(",")), graphs, sizes,
                                             mem_pattern=args.mem_pattern == "on")
        for name, frame, fields in (("cpu_rows", rows, ROW_FIELDS), ("boundaries", boundaries, BOUNDARY_FIELDS),
                                    ("scan", scan, SCAN_FIELDS)):
            write_csv(frame.to_dict("records"), fields, args.out_dir / f"{stem}_{name}.csv")
    measured_s = time.perf_counter() - start
    held = [] if args.fresh_set is not None else h200_cases(h200, prof / "max_batch_H200.csv",
                                                            prof / "measured_H200_resnet50_fp16_cli_max_batch.csv")
    cases = pd.DataFrame(held + cpu_cases(rows, boundaries))
    other = pd.DataFrame(other_limit_cases(rows, boundaries), columns=[*CASE_FIELDS, "calibrated_limit_mb"])
    summary = summarize(cases, ["data", "method"])
    pooled = summarize(cases.assign(data=cases["data"].str.split().str[0] + ", every limit"), ["data", "method"])
    summary = pd.concat([summary, pooled] + ([summarize(other, ["data", "method"])] if len(other) else []),
                        ignore_index=True)
    write_csv(cases.to_dict("records"), CASE_FIELDS, args.out_dir / f"{stem}.csv")
    write_csv(other.to_dict("records"), [*CASE_FIELDS, "calibrated_limit_mb"],
              args.out_dir / f"{stem}_other_limit.csv")
    write_csv(summary.to_dict("records"), SUMMARY_FIELDS, args.out_dir / f"{stem}_summary.csv")
    plot(cases, [args.out_dir / f"{stem}.png"] + ([] if args.img_dir is None else [args.img_dir / f"{stem}.png"]))
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(cases[CASE_FIELDS[:12]].to_string(index=False))
        print()
        print(summary.to_string(index=False))
    print(f"measuring the CPU runs took {measured_s:.0f} s; the whole check "
          f"{time.perf_counter() - start:.0f} s")
    print(f"wrote {stem}*.csv and {stem}.png under {args.out_dir}"
          + ("" if args.img_dir is None else f" (copy of the PNG in {args.img_dir})"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
