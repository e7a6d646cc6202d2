"""Issue 19: do ``servopt fit``'s prediction intervals hold the held-out truth as often as they say?

    python benchmarks/interval_coverage.py              # ~10 min on 2 cores: every set below
    python benchmarks/interval_coverage.py --sets fresh # the fresh CPU graphs only (~2 min)
    python benchmarks/interval_coverage.py --quick [--out-dir DIR]   # one graph, two protocols (a test), into
                                                                     # DIR or a new temporary folder

For each profile and each held-out protocol of ``bench_models.py`` (``lobo``, ``batch_x4``, ``size_interior``,
``size_top``, ``size_bottom``), :func:`servopt.performance.evaluate.fit_profile` (what ``servopt fit`` runs: the
work latency model, its leave-one-batch-out cross-validation and split-conformal interval at level 0.9) is fitted on
the training rows only, and ``PerformanceModels.predict(..., intervals=True)`` (what ``servopt predict --intervals``
prints) bounds the held-out rows. Reported per profile and protocol: how many held-out rows, the share inside their
interval (``coverage``; 0.9 is the level), the share not above its upper end (``under_hi``: what planning on the
upper bound needs), and the median interval width (``hi / lo``). Two ways of widening for extrapolation, side by
side from the same fits:

* ``per_octave`` (servopt's): beyond the profiled batch range, the edge residuals' factors per octave raised to
  the distance (:func:`servopt.performance.uncertainty.interval_factors`);
* ``edge_only`` (before): every extrapolating row the edge factors, however far out.

Sets: ``fresh``: the fresh CPU graphs (``profiles/measured_cpu_fresh*.csv``, ``benchmarks/fresh_cpu.py``);
``gpu``: the H200 profiles and NVIDIA's published tables. Held-out input sizes lose their ``gflops`` (FLOPs from
the polynomial in input size, as for a query without a graph). Results under ``--out-dir`` (default
``benchmarks/results/``; with ``--quick`` a new temporary folder, named on stderr): ``interval_coverage.csv`` (per
profile and protocol), ``interval_coverage_points.csv``, ``interval_coverage.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, output_dir, pyplot, save_figure, write_csv  # noqa: E402

LEVEL = 0.9
PROTOCOLS = ("lobo", "batch_x4", "size_interior", "size_top", "size_bottom")
METHODS = ("per_octave", "edge_only")
FIELDS = ["set", "data", "protocol", "method", "n", "coverage", "under_hi", "median_width"]


def sets(names: list[str]) -> dict[str, list[Path]]:
    prof = ROOT / "profiles"
    known = {"fresh": sorted(prof.glob("measured_cpu_fresh*.csv")),
             "gpu": sorted(prof.glob("measured_H200_*_fp[13][26].csv")) + sorted(prof.glob("nvidia_*.csv"))}
    return {n: known[n] for n in names}


def held_out(path: Path, protocols: tuple[str, ...], graphs: list[str] | None = None) -> pd.DataFrame:
    """Every held-out row of ``path`` under ``protocols``: truth, prediction and both intervals."""
    from bench_models import _grid, _splits

    from servopt.performance.evaluate import fit_profile
    from servopt.performance.uncertainty import interval_factors
    from servopt.profiles import load_profile

    frame = _grid(load_profile([str(path)]).frame)
    frame = frame[frame["latency_ms"].notna()].reset_index(drop=True)
    if graphs:
        frame = frame[frame["model"].isin(graphs)].reset_index(drop=True)
    out = []
    for protocol in protocols:
        for train, test in _splits(frame, protocol):
            if not train.any() or not test.any():
                continue
            tr, te = frame[train].reset_index(drop=True), frame[test].reset_index(drop=True)
            models, _ = fit_profile(tr, source=str(path), targets=["latency"], level=LEVEL)
            query = te.drop(columns=["latency_ms"])
            if protocol.startswith("size") and "gflops" in query:
                query = query.assign(gflops=np.nan)
            fitted = models.targets["latency"]
            X = fitted.frame(query, str(path))
            point = fitted.model.predict(X)
            outside, octaves, sizes = models._outside(fitted, X)
            bounds = {"per_octave": interval_factors(fitted.interval, outside, octaves, sizes),
                      "edge_only": interval_factors(fitted.interval, outside, sizes=sizes)}
            for method, (lo, hi) in bounds.items():
                out.append(pd.DataFrame({
                    "data": path.stem, "protocol": protocol, "method": method, "model": te["model"],
                    "input_size": te.get("input_size", np.nan), "batch_size": te["batch_size"],
                    "latency_ms": te["latency_ms"], "predicted": point, "lo": point * lo, "hi": point * hi,
                    "octaves": octaves}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def summarise(points: pd.DataFrame, set_name: str) -> list[dict[str, Any]]:
    rows = []
    points = points.assign(inside=(points.latency_ms >= points.lo) & (points.latency_ms <= points.hi),
                           under=points.latency_ms <= points.hi, width=points.hi / points.lo)
    groups = [(k, g) for k, g in points.groupby(["data", "protocol", "method"], sort=False)]
    groups += [((f"all {set_name}", p, m), g) for (p, m), g in points.groupby(["protocol", "method"], sort=False)]
    for (data, protocol, method), g in groups:
        rows.append({"set": set_name, "data": data, "protocol": protocol, "method": method, "n": len(g),
                     "coverage": float(g.inside.mean()), "under_hi": float(g.under.mean()),
                     "median_width": float(g.width.median())})
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    table = pd.DataFrame(rows)
    table = table[table["data"].str.startswith("all ")]
    labels = [f"{d.removeprefix('all ')}\n{p}" for d, p in dict.fromkeys(zip(table["data"], table["protocol"]))]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels)), 4))
    width = 0.38
    for k, m in enumerate(METHODS):
        part = table[table.method == m]
        ax.bar(np.arange(len(part)) + k * width, part["coverage"], width, label=m)
    ax.axhline(LEVEL, color="k", lw=1, ls="--", label=f"level {LEVEL:g}")
    ax.set_xticks(np.arange(len(labels)) + width / 2, labels, fontsize=8)
    ax.set_ylim(0.5, 1.02)
    ax.set_ylabel("share of held-out rows inside the interval")
    ax.set_title("servopt fit's 90 % latency intervals on held-out rows")
    ax.legend(fontsize=8, loc="lower left")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="fresh,gpu", help="comma-separated: fresh, gpu (default both)")
    parser.add_argument("--quick", action="store_true", help="one fresh graph, lobo and batch_x4 (a test)")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for the CSV and PNG files (default "
                        "benchmarks/results; with --quick a new temporary folder)")
    args = parser.parse_args(argv)
    args.out_dir = output_dir(args.out_dir, quick=args.quick, name="interval_coverage", flag="--out-dir")
    names = ["fresh"] if args.quick else [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [n for n in names if n not in ("fresh", "gpu")]
    if unknown:
        parser.error(f"--sets: unknown set(s) {', '.join(unknown)} (expected fresh, gpu)")
    rows, points = [], []
    for name, paths in sets(names).items():
        if args.quick:
            paths = paths[:1]
        protocols = ("lobo", "batch_x4") if args.quick else PROTOCOLS
        got = [held_out(p, protocols, ["resnet_fresh"] if args.quick else None) for p in paths]
        part = pd.concat([g for g in got if len(g)], ignore_index=True)
        rows += summarise(part, name)
        points.append(part.assign(set=name))
        print(f"{name}: {len(part) // len(METHODS)} held-out rows", file=sys.stderr, flush=True)
    write_csv(rows, FIELDS, args.out_dir / "interval_coverage.csv")
    pd.concat(points, ignore_index=True).to_csv(args.out_dir / "interval_coverage_points.csv", index=False)
    plot(rows, args.out_dir / "interval_coverage.png")
    table = pd.DataFrame(rows)
    print(table[table.data.str.startswith("all ")].round(3).to_string(index=False))
    print(f"wrote interval_coverage.csv, interval_coverage_points.csv and interval_coverage.png under "
          f"{args.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
