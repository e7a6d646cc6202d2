"""Issue 19's targets judged on a fresh GPU set: profiles measured after the models were fixed, never seen by them.

Usage (here, after the measurement came back from a GPU machine):

    python benchmarks/fresh_gpu.py FOLDER [--out-dir benchmarks/results/fresh_gpu1] [--set 1]

``FOLDER`` holds the ``measured_<gpu>_<model>_<dtype>.csv`` files that ``scripts/gpu_profile_check.py`` writes
(servopt's profile schema; each input size's out-of-memory boundary is in its rows' ``oom_batch_size`` and
``oom_limit_mb``). Every file is one model in one precision at three or more input sizes.

The set is fixed here before it is measured (:data:`SETS`); the measurement is one call on a GPU machine, from
the repository root (``PYTHONPATH=.``, no install; torch and torchvision are the machine's):

    PYTHONPATH=. PYTHONUNBUFFERED=1 python3 scripts/gpu_profile_check.py $OUT/fresh_gpu1 \\
        --models efficientnet_b0,convnext_tiny --memory-limit-mb 16384 --budget-s 420

What is scored, per file and pooled, against the issue's targets (the same protocols as
``benchmarks/bench_models.py``, always beside the line in batch and the line in batch x pixels):

* ``lobo``: leave one batch size out; target MAPE < 5 %.
* ``batch_x4``: fit on batch <= 1/4 of the largest, predict the rest; target MAPE < 10 %.
* ``size_top`` (fit 224 and 320 px, predict 448: 1.4x the profiled range) and ``size_interior`` (320 from 224 and
  448): target MAPE < 10 % and at least 30 % below the batch x pixels line (``work`` <= 0.7 x ``line_bxp``).
* ``max_batch_loso``: each input size's largest batch under the searched limit, predicted by ``servopt fit``'s
  memory model (:func:`servopt.performance.evaluate.fit_profile`, the calibration on the other sizes'
  boundaries) through :meth:`~servopt.performance.evaluate.PerformanceModels.largest_batch`, against the
  bisection's boundary at that size; target: every case within 10 % and none above.

Writes ``fresh_gpu<set>.csv`` (one row per protocol, data and method), ``fresh_gpu<set>_max_batch.csv`` (one row
per case), ``fresh_gpu<set>.png`` and prints a markdown table and the verdict per target. The verdict reads the
``work`` method (``WorkLatencyModel``, the default of ``servopt fit``) and the memory model as shipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import RESULTS, pyplot, save_figure, write_csv  # noqa: E402

#: fresh GPU sets, fixed before they are measured: torchvision models servopt's models have never been fitted or
#: judged on (the shipped H200 profiles are resnet50 and mobilenet_v3_large), both precisions, the issue's
#: sizes and batches, and the 16 GiB limit no boundary was measured under before
SETS: dict[int, dict[str, Any]] = {
    1: {"models": ("efficientnet_b0", "convnext_tiny"), "dtypes": ("fp32", "fp16"), "sizes": (224, 320, 448),
        "batches": tuple(2**i for i in range(9)), "memory_limit_mb": 16384.0},
}

LATENCY_PROTOCOLS = ("lobo", "batch_x4", "size_interior", "size_top")
LATENCY_TARGET = {"lobo": 5.0, "batch_x4": 10.0, "size_interior": 10.0, "size_top": 10.0}
#: an unprofiled input size must also be this far below the batch x pixels line (``work <= 0.7 x line_bxp``)
BXP_FACTOR = 0.7
WITHIN = 0.9
FIELDS = ["protocol", "data", "method", "n", "mape_pct", "max_ape_pct", "too_large", "within_10pct",
          "ratio_median", "ratio_min", "ratio_max"]
CASE_FIELDS = ["data", "model", "precision", "input_size", "limit_mb", "predicted", "truth", "ratio", "above",
               "usable_fraction", "oom_margin", "basis"]


def measured_files(folder: Path) -> list[Path]:
    """The ``measured_*.csv`` profiles in ``folder`` (an error names the folder when there is none)."""
    paths = sorted(folder.glob("measured_*.csv"))
    if not paths:
        raise SystemExit(f"{folder}: no measured_*.csv profile (scripts/gpu_profile_check.py writes them)")
    return paths


def max_batch_cases(path: Path) -> list[dict[str, Any]]:
    """Leave one input size out: ``servopt fit``'s memory model on the other sizes, the held-out size's largest
    batch under the limit its search ran under, against that search's boundary."""
    from servopt.performance.evaluate import fit_profile
    from servopt.profiles import load_profile

    frame = load_profile(path).frame
    if "oom_batch_size" not in frame.columns:
        return []
    found = frame[pd.to_numeric(frame["oom_batch_size"], errors="coerce") > 1]
    boundaries = found.drop_duplicates(["input_size", "oom_limit_mb"])
    cases = []
    for row in boundaries.itertuples(index=False):
        size, limit, truth = int(row.input_size), float(row.oom_limit_mb), int(row.oom_batch_size) - 1
        train = frame[frame["input_size"] != size].reset_index(drop=True)
        if not pd.to_numeric(train.get("oom_batch_size"), errors="coerce").gt(1).any():
            continue  # no other size's boundary to calibrate on
        models, _ = fit_profile(train, source=path.name, targets=["memory"], cross_validate=False)
        # the held-out size's FLOPs come from the family's polynomial in the input size, as in bench_models
        query = frame[frame["input_size"] == size].head(1).reset_index(drop=True)
        query = query.assign(**{c: float("nan") for c in ("gflops", "act_peak_mb") if c in query.columns})
        got = models.largest_batch(query, limit, source=path.name).iloc[0]
        predicted = int(got["max_batch"])
        cases.append({"data": path.stem, "model": str(row.model), "precision": str(getattr(row, "precision", "")),
                      "input_size": size, "limit_mb": limit, "predicted": predicted, "truth": truth,
                      "ratio": predicted / truth, "above": predicted > truth,
                      "usable_fraction": float(got["max_batch_usable_fraction"]),
                      "oom_margin": float(got["max_batch_oom_margin"]), "basis": str(got["max_batch_basis"])})
    return cases


def _max_batch_summary(data: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    ratio = np.array([c["ratio"] for c in cases])
    return {"protocol": "max_batch_loso", "data": data, "method": "servopt fit (memory)", "n": len(cases),
            "too_large": int(np.sum(ratio > 1)), "within_10pct": int(np.sum((ratio >= WITHIN) & (ratio <= 1))),
            "ratio_median": float(np.median(ratio)), "ratio_min": float(ratio.min()),
            "ratio_max": float(ratio.max())}


def pooled_latency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per protocol and method, the mean over every file's points (each file's MAPE weighted by its points)."""
    table = pd.DataFrame(rows)
    out = []
    for (protocol, method), part in table.groupby(["protocol", "method"], sort=False):
        n = part["n"].to_numpy(dtype=float)
        out.append({"protocol": protocol, "data": "every file", "method": method, "n": int(n.sum()),
                    "mape_pct": float(np.sum(part["mape_pct"] * n) / n.sum()),
                    "max_ape_pct": float(part["max_ape_pct"].max())})
    return out


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """One line per target: met / not met, with the numbers it was judged on."""
    pooled = {(r["protocol"], r["method"]): r for r in rows if r["data"] == "every file"}
    lines = []
    for protocol, target in LATENCY_TARGET.items():
        work = pooled.get((protocol, "work"))
        if work is None:
            lines.append(f"{protocol}: no case")
            continue
        ok = work["mape_pct"] < target
        text = f"{protocol}: work {work['mape_pct']:.1f} % (target < {target:g} %)"
        if protocol.startswith("size_"):
            bxp = pooled[(protocol, "line_bxp")]["mape_pct"]
            ok = ok and work["mape_pct"] <= BXP_FACTOR * bxp
            text += f", batch x pixels line {bxp:.1f} % (target work <= {BXP_FACTOR:g} x)"
        lines.append(f"{'met' if ok else 'NOT MET'}: {text}")
    mb = pooled.get(("max_batch_loso", "servopt fit (memory)"))
    if mb is None:
        lines.append("max_batch_loso: no case (no boundary in the profiles)")
    else:
        ok = mb["too_large"] == 0 and mb["within_10pct"] == mb["n"]
        lines.append(f"{'met' if ok else 'NOT MET'}: max_batch_loso: {mb['too_large']} of {mb['n']} above, "
                     f"{mb['within_10pct']} within 10 % (median {mb['ratio_median']:.3f}, worst "
                     f"{mb['ratio_min']:.3f}-{mb['ratio_max']:.3f})")
    return lines


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| protocol | data | method | n | MAPE % | worst % | above | within 10 % | ratio median, range |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mape = f"{r['mape_pct']:.1f}" if r.get("mape_pct") is not None else "-"
        worst = f"{r['max_ape_pct']:.1f}" if r.get("max_ape_pct") is not None else "-"
        ratio = (f"{r['ratio_median']:.3f}, {r['ratio_min']:.3f}-{r['ratio_max']:.3f}"
                 if r.get("ratio_median") is not None else "-")
        lines.append(f"| {r['protocol']} | {r['data']} | {r['method']} | {r['n']} | {mape} | {worst} | "
                     f"{r.get('too_large', '-')} | {r.get('within_10pct', '-')} | {ratio} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], cases: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    pooled = [r for r in rows if r["data"] == "every file" and r["protocol"] in LATENCY_TARGET]
    methods = ["work", "hinge", "line_batch", "line_bxp"]
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        values = [next((r["mape_pct"] for r in pooled if r["protocol"] == p and r["method"] == method), np.nan)
                  for p in LATENCY_TARGET]
        ax1.bar(np.arange(len(LATENCY_TARGET)) + k * width, values, width, label=method)
    ax1.scatter(np.arange(len(LATENCY_TARGET)) + 0.4 - width / 2, list(LATENCY_TARGET.values()), marker="_",
                s=400, color="k", label="target", zorder=3)
    ax1.set_xticks(np.arange(len(LATENCY_TARGET)) + 0.4 - width / 2, list(LATENCY_TARGET))
    ax1.set_yscale("log")
    ax1.set_ylabel("latency MAPE % (every file's points)")
    ax1.legend(fontsize=8)
    if cases:
        truth = np.array([c["truth"] for c in cases], dtype=float)
        ax2.scatter(truth, [c["predicted"] for c in cases], c=["C3" if c["above"] else "C0" for c in cases])
        span = np.array([truth.min() * 0.8, truth.max() * 1.2])
        ax2.plot(span, span, "k-", lw=0.8, label="measured")
        ax2.plot(span, WITHIN * span, "k:", lw=0.8, label="10 % below")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.legend(fontsize=8)
    ax2.set_xlabel("largest batch, bisection (held-out input size)")
    ax2.set_ylabel("predicted by servopt fit's memory model")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1].split("What is scored")[0].rstrip())
    parser.add_argument("folder", type=Path, help="the measured_*.csv files of one fresh GPU set")
    parser.add_argument("--set", type=int, default=1, choices=sorted(SETS), help="which set (names the outputs)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="folder for the CSV and PNG files")
    args = parser.parse_args(argv)
    from bench_models import latency_rows

    paths = measured_files(args.folder)
    rows = latency_rows([str(p) for p in paths], LATENCY_PROTOCOLS)
    rows += pooled_latency(rows)
    cases = [c for p in paths for c in max_batch_cases(p)]
    for data in dict.fromkeys(c["data"] for c in cases):
        rows.append(_max_batch_summary(data, [c for c in cases if c["data"] == data]))
    if cases:
        rows.append(_max_batch_summary("every file", cases))
    stem = f"fresh_gpu{args.set}"
    write_csv(rows, FIELDS, args.out_dir / f"{stem}.csv")
    write_csv(cases, CASE_FIELDS, args.out_dir / f"{stem}_max_batch.csv")
    plot(rows, cases, args.out_dir / f"{stem}.png")
    print(markdown(rows))
    print()
    print("\n".join(verdict(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
