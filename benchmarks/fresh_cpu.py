"""Issue 19's latency protocols on data measured *after* the model was frozen: three graphs never profiled before.

    python benchmarks/fresh_cpu.py measure     # ~10-20 min on this 2-vCPU machine: profiles/measured_cpu_fresh.csv
    python benchmarks/fresh_cpu.py evaluate    # ~2 min: benchmarks/results/fresh_cpu.csv and .png
    python benchmarks/fresh_cpu.py --quick [--out-dir DIR]   # tiny grid, one round (a test): every file, the
                                                             # profile too, in DIR or a new temporary folder

Why: every other latency row of ``benchmarks/bench_models.py`` was looked at while the work model was built (the
docs say which), so none of them is a clean held-out measurement. These graphs were chosen, and this script
written, at commit 87f238d (``WorkLatencyModel`` as shipped there, in-grid choice by nested cross-validation);
the model is used as it is, with no parameter set after seeing these data.

Graphs (:mod:`servopt.measure.onnx_models`, random weights, seed 0), none of them profiled by the project before:

* ``vit_fresh``: ``vit_like(dim=96, depth=2, patch=8, num_classes=100)`` (attention: FLOPs grow faster than pixels);
* ``resnet_fresh``: ``resnet_like(width=24, blocks=(1, 2, 2, 1), num_classes=100)``;
* ``mobilenet_fresh``: ``mobilenet_like(width_mult=0.75, num_classes=100)``.

Measurement: :func:`servopt.measure.profiler.profile_model` (ONNX Runtime, CPU, 1 intra-op thread, a fresh session
per point) at input sizes 96, 128, 160, 224 x batch sizes 1-64 (powers of two); ``ROUNDS`` full passes over the
grid, graphs interleaved, and each point's latency, p99, warm-up and memory the median over the rounds (the
machine is shared: one pass alone is noisy). ``gflops``/``param_mb`` as the profiler records them. Every round's
rows go to ``benchmarks/results/fresh_cpu_rounds.csv``.

Protocols and baselines: those of ``bench_models.py`` (``lobo``, ``lobo_clean``, ``batch_x4``: fit <= 16, predict 32
and 64; ``size_interior``: 128 or 160 held out; ``size_top``: fit 96-160, predict 224, 1.4x; ``size_bottom``: fit
128-224, predict 96), on the same training rows: ``work`` = :class:`~servopt.performance.WorkLatencyModel` on the
features ``servopt fit`` gives it (``gflops`` included; a held-out input size's rows lose their ``gflops``, so its
FLOPs come from the polynomial in input size, :mod:`servopt.performance.work_poly`, as for a query without a graph);
``work_pixels``: the same without ``gflops`` (work = batch x pixels); ``work_hinge``, ``hinge``, ``line_batch``,
``line_bxp`` as in ``bench_models.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, output_dir, pyplot, save_figure, write_csv  # noqa: E402

SIZES = {1: (96, 128, 160, 224), 2: (112, 144, 176, 240), 3: (120, 152, 184, 248), 4: (104, 136, 168, 232),
         5: (88, 120, 160, 216), 6: (96, 136, 176, 240), 7: (104, 144, 184, 248),
         8: (92, 132, 172, 236), 9: (100, 140, 180, 244),
         10: (96, 132, 168, 228), 11: (108, 140, 172, 236),
         12: (100, 136, 176, 240), 13: (112, 152, 192, 264), 14: (96, 128, 168, 232),
         15: (104, 140, 180, 248), 16: (108, 148, 188, 260), 17: (92, 128, 164, 228), 18: (96, 124, 160, 220),
         19: (104, 132, 164, 228), 20: (100, 136, 172, 240), 21: (108, 140, 176, 244),
         22: (112, 144, 180, 252), 23: (104, 140, 176, 248), 24: (108, 136, 172, 240),
         25: (100, 128, 164, 236)}
#: set -> suffix of its names: graphs ``vit_fresh<suffix>``, profile ``measured_cpu_fresh<suffix>.csv``, results
#: ``fresh_cpu<suffix>*`` (set 1 has none)
SUFFIX = {n: "" if n == 1 else str(n) for n in SIZES}
PROFILES = {n: ROOT / "profiles" / f"measured_cpu_fresh{SUFFIX[n]}.csv" for n in SIZES}
STEMS = {n: f"fresh_cpu{SUFFIX[n]}" for n in SIZES}
#: set -> keyword arguments of ``vit_like``, ``resnet_like`` and ``mobilenet_like`` (random weights, seed 0 where
#: none is given)
GRAPHS = {
    1: (dict(dim=96, depth=2, patch=8, num_classes=100), dict(width=24, blocks=(1, 2, 2, 1), num_classes=100),
        dict(width_mult=0.75, num_classes=100)),
    2: (dict(dim=48, depth=3, patch=8, mlp_ratio=4, num_classes=1000),
        dict(width=16, blocks=(2, 2, 2, 2), num_classes=1000), dict(width_mult=1.0, num_classes=1000)),
    3: (dict(dim=64, depth=2, patch=8, mlp_ratio=3, num_classes=1000, seed=3),
        dict(width=32, blocks=(1, 1, 1, 1), num_classes=1000, seed=3), dict(width_mult=0.5, num_classes=1000, seed=3)),
    4: (dict(dim=80, depth=2, patch=8, mlp_ratio=2, num_classes=1000, seed=4),
        dict(width=20, blocks=(1, 2, 1, 1), num_classes=1000, seed=4), dict(width_mult=0.6, num_classes=1000, seed=4)),
    5: (dict(dim=112, depth=2, patch=8, mlp_ratio=2, num_classes=1000, seed=5),
        dict(width=28, blocks=(2, 1, 1, 1), num_classes=1000, seed=5),
        dict(width_mult=0.85, num_classes=1000, seed=5)),
    6: (dict(dim=72, depth=3, patch=8, mlp_ratio=2, num_classes=1000, seed=6),
        dict(width=24, blocks=(1, 1, 2, 1), num_classes=1000, seed=6), dict(width_mult=0.7, num_classes=1000, seed=6)),
    7: (dict(dim=88, depth=2, patch=8, mlp_ratio=3, num_classes=1000, seed=7),
        dict(width=20, blocks=(2, 2, 1, 1), num_classes=1000, seed=7),
        dict(width_mult=0.65, num_classes=1000, seed=7)),
    8: (dict(dim=104, depth=2, patch=8, mlp_ratio=3, num_classes=1000, seed=8),
        dict(width=24, blocks=(1, 1, 1, 2), num_classes=1000, seed=8),
        dict(width_mult=0.8, num_classes=1000, seed=8)),
    9: (dict(dim=96, depth=3, patch=8, mlp_ratio=2, num_classes=1000, seed=9),
        dict(width=28, blocks=(1, 2, 1, 1), num_classes=1000, seed=9),
        dict(width_mult=0.75, num_classes=1000, seed=9)),
    10: (dict(dim=80, depth=3, patch=8, mlp_ratio=3, num_classes=1000, seed=10),
         dict(width=20, blocks=(1, 1, 2, 2), num_classes=1000, seed=10),
         dict(width_mult=0.9, num_classes=1000, seed=10)),
    11: (dict(dim=64, depth=3, patch=8, mlp_ratio=4, num_classes=1000, seed=11),
         dict(width=24, blocks=(2, 1, 2, 1), num_classes=1000, seed=11),
         dict(width_mult=0.55, num_classes=1000, seed=11)),
    12: (dict(dim=56, depth=4, patch=8, mlp_ratio=3, num_classes=1000, seed=12),
         dict(width=26, blocks=(2, 2, 1, 2), num_classes=1000, seed=12),
         dict(width_mult=0.95, num_classes=1000, seed=12)),
    13: (dict(dim=88, depth=3, patch=8, mlp_ratio=4, num_classes=1000, seed=13),
         dict(width=22, blocks=(1, 2, 2, 2), num_classes=1000, seed=13),
         dict(width_mult=1.1, num_classes=1000, seed=13)),
    14: (dict(dim=72, depth=4, patch=8, mlp_ratio=2, num_classes=1000, seed=14),
         dict(width=30, blocks=(1, 1, 1, 2), num_classes=1000, seed=14),
         dict(width_mult=0.7, num_classes=1000, seed=14)),
    15: (dict(dim=64, depth=4, patch=8, mlp_ratio=3, num_classes=1000, seed=15),
         dict(width=26, blocks=(1, 2, 1, 2), num_classes=1000, seed=15),
         dict(width_mult=0.8, num_classes=1000, seed=15)),
    16: (dict(dim=80, depth=3, patch=8, mlp_ratio=2, num_classes=1000, seed=16),
         dict(width=22, blocks=(2, 1, 1, 2), num_classes=1000, seed=16),
         dict(width_mult=0.65, num_classes=1000, seed=16)),
    17: (dict(dim=56, depth=3, patch=8, mlp_ratio=4, num_classes=1000, seed=17),
         dict(width=20, blocks=(1, 2, 2, 1), num_classes=1000, seed=17),
         dict(width_mult=0.9, num_classes=1000, seed=17)),
    18: (dict(dim=72, depth=3, patch=8, mlp_ratio=3, num_classes=1000, seed=18),
         dict(width=24, blocks=(2, 1, 2, 1), num_classes=1000, seed=18),
         dict(width_mult=0.75, num_classes=1000, seed=18)),
    19: (dict(dim=64, depth=2, patch=8, mlp_ratio=4, num_classes=1000, seed=19),
         dict(width=28, blocks=(1, 1, 2, 1), num_classes=1000, seed=19),
         dict(width_mult=0.85, num_classes=1000, seed=19)),
    20: (dict(dim=96, depth=2, patch=8, mlp_ratio=2, num_classes=1000, seed=20),
         dict(width=24, blocks=(1, 2, 1, 2), num_classes=1000, seed=20),
         dict(width_mult=0.7, num_classes=1000, seed=20)),
    21: (dict(dim=88, depth=2, patch=8, mlp_ratio=3, num_classes=1000, seed=21),
         dict(width=22, blocks=(2, 1, 1, 1), num_classes=1000, seed=21),
         dict(width_mult=0.8, num_classes=1000, seed=21)),
    22: (dict(dim=80, depth=3, patch=8, mlp_ratio=2, num_classes=1000, seed=22),
         dict(width=20, blocks=(1, 1, 2, 1), num_classes=1000, seed=22),
         dict(width_mult=0.9, num_classes=1000, seed=22)),
    23: (dict(dim=72, depth=2, patch=8, mlp_ratio=3, num_classes=1000, seed=23),
         dict(width=26, blocks=(1, 2, 1, 1), num_classes=1000, seed=23),
         dict(width_mult=0.6, num_classes=1000, seed=23)),
    24: (dict(dim=88, depth=3, patch=8, mlp_ratio=2, num_classes=1000, seed=24),
         dict(width=24, blocks=(2, 2, 1, 1), num_classes=1000, seed=24),
         dict(width_mult=1.0, num_classes=1000, seed=24)),
    25: (dict(dim=64, depth=3, patch=8, mlp_ratio=3, num_classes=1000, seed=25),
         dict(width=22, blocks=(1, 1, 1, 2), num_classes=1000, seed=25),
         dict(width_mult=0.85, num_classes=1000, seed=25)),
}
BATCHES, ROUNDS = (1, 2, 4, 8, 16, 32, 64), 3
QUICK = dict(sizes=(32, 48, 64, 80), batches=(1, 2, 4, 8), rounds=1, budget=0.02, repeats=3)
FULL = dict(batches=BATCHES, rounds=ROUNDS, budget=0.4, repeats=30)
PROTOCOLS = ("lobo", "batch_x4", "size_interior", "size_top", "size_bottom")
METHODS = ("work", "work_pixels", "work_hinge", "hinge", "line_batch", "line_bxp")
KEYS = ["model", "variant", "hardware", "cores", "input_size", "batch_size"]
MEDIAN = ["latency_ms", "latency_p99_ms", "warmup_ms", "memory_mb", "load_time_s"]


def graphs(which: int = 1) -> dict[str, Any]:
    """The three graphs of set ``which``: name -> ONNX proto."""
    from servopt.measure.onnx_models import mobilenet_like, resnet_like, vit_like

    vit, resnet, mobilenet = GRAPHS[which]
    return {f"vit_fresh{SUFFIX[which]}": vit_like(**vit), f"resnet_fresh{SUFFIX[which]}": resnet_like(**resnet),
            f"mobilenet_fresh{SUFFIX[which]}": mobilenet_like(**mobilenet)}


def measure(settings: dict[str, Any], folder: Path, hardware: str, which: int = 1) -> tuple[pd.DataFrame,
                                                                                            pd.DataFrame]:
    """Every grid point of every graph, ``rounds`` times: (the profile of medians, every round's rows)."""
    from servopt.measure.onnx_models import save_model
    from servopt.measure.profiler import profile_model

    paths = {name: save_model(proto, folder / f"{name}.onnx") for name, proto in graphs(which).items()}
    frames = []
    for r in range(settings["rounds"]):
        for name, path in paths.items():
            print(f"  round {r + 1}/{settings['rounds']}: {name}", file=sys.stderr, flush=True)
            run = profile_model(path, settings["batches"], settings["sizes"], cores=[1],
                                repeats=settings["repeats"], min_repeats=3, time_budget_s=settings["budget"],
                                hardware=hardware, seed=r)
            frames.append(pd.DataFrame(run.rows).assign(round=r))
    rounds = pd.concat(frames, ignore_index=True)
    first = rounds.groupby(KEYS, as_index=False).agg(
        source=("source", "first"), gflops=("gflops", "first"), param_mb=("param_mb", "first"),
        repeats=("repeats", "sum"), **{c: (c, "median") for c in MEDIAN})
    first["throughput_rps"] = first["batch_size"] * 1000.0 / first["latency_ms"]
    first["source"] = first["source"].str.replace("servopt profile", f"servopt benchmarks/fresh_cpu.py, median of "
                                                  f"{settings['rounds']} rounds of servopt profile", regex=False)
    columns = ["model", "variant", "hardware", "cores", "input_size", "batch_size", "latency_ms", "latency_p99_ms",
               "throughput_rps", "warmup_ms", "memory_mb", "load_time_s", "gflops", "param_mb", "repeats", "source"]
    return first[columns], rounds


def round_spread(rounds: pd.DataFrame) -> float:
    """The median over grid points of ``max / min - 1`` of a point's latency across the rounds, in %: how noisy
    a run was (of several runs of a set, the one with the smallest spread is kept)."""
    by_point = rounds.groupby(["model", "input_size", "batch_size"])["latency_ms"]
    return float(100 * (by_point.max() / by_point.min() - 1).median())


def _score(train: pd.DataFrame, test: pd.DataFrame, size_held_out: bool) -> dict[str, np.ndarray]:
    from bench_models import _baselines, _features

    from servopt.performance import LatencyModel, WorkLatencyModel

    cols = _features(train)
    out = _baselines(train, test)
    query = test.assign(gflops=np.nan) if size_held_out else test  # an unprofiled size: FLOPs from the polynomial
    with_work = cols + ["gflops"]
    fits = (("work", WorkLatencyModel(), with_work), ("work_pixels", WorkLatencyModel(), cols),
            ("work_hinge", WorkLatencyModel(in_grid="hinge"), with_work), ("hinge", LatencyModel(), cols))
    for name, model, features in fits:
        model.fit(train[features], train["latency_ms"].to_numpy())
        out[name] = model.predict(query[features])
    return out


def evaluate(profile: pd.DataFrame) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """MAPE per graph, protocol and method (and every held-out prediction)."""
    from bench_models import _not_above_larger, _splits

    rows, points = [], []
    for model, frame in profile.groupby("model", sort=True):
        frame = frame.sort_values(["input_size", "batch_size"]).reset_index(drop=True)
        clean_rows = _not_above_larger(frame)
        for protocol in PROTOCOLS:
            for train, test in _splits(frame, protocol):
                got = _score(frame[train].reset_index(drop=True), frame[test].reset_index(drop=True),
                             protocol.startswith("size"))
                held = frame[test].reset_index(drop=True)
                for m in METHODS:
                    points.append(held[["model", "input_size", "batch_size", "latency_ms"]].assign(
                        protocol=protocol, method=m, predicted=got[m], clean=clean_rows[test]))
    pts = pd.concat(points, ignore_index=True)
    pts["ape_pct"] = 100 * (pts["predicted"] - pts["latency_ms"]).abs() / pts["latency_ms"]
    scored = [pts, pts[(pts.protocol == "lobo") & pts.clean].assign(protocol="lobo_clean")]
    for (protocol, data, method), g in pd.concat(scored).groupby(["protocol", "model", "method"], sort=False):
        rows.append({"protocol": protocol, "data": data, "method": method, "n": len(g),
                     "mape_pct": float(g["ape_pct"].mean()), "max_ape_pct": float(g["ape_pct"].max())})
    for (protocol, method), g in pd.concat(scored).groupby(["protocol", "method"], sort=False):
        rows.append({"protocol": protocol, "data": "all three", "method": method, "n": len(g),
                     "mape_pct": float(g["ape_pct"].mean()), "max_ape_pct": float(g["ape_pct"].max())})
    return rows, pts


def markdown(rows: list[dict[str, Any]]) -> str:
    """The docs table: one line per protocol and graph, MAPE (max) per method."""
    table = pd.DataFrame(rows)
    lines = ["| protocol | graph | " + " | ".join(METHODS) + " |", "|---|---|" + "---|" * len(METHODS)]
    for (protocol, data), g in table.groupby(["protocol", "data"], sort=False):
        cells = {r.method: f"{r.mape_pct:.1f} (max {r.max_ape_pct:.0f})" for r in g.itertuples()}
        lines.append(f"| {protocol} | {data} | " + " | ".join(cells.get(m, "-") for m in METHODS) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, which: int = 1) -> None:
    """MAPE per protocol (all three graphs) and method, bars."""
    plt = pyplot()
    table = pd.DataFrame(rows)
    table = table[table["data"] == "all three"]
    protocols = list(dict.fromkeys(table["protocol"]))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(METHODS)
    for k, m in enumerate(METHODS):
        values = [float(table[(table.protocol == p) & (table.method == m)]["mape_pct"].iloc[0]) for p in protocols]
        ax.bar(np.arange(len(protocols)) + k * width, values, width, label=m)
    ax.set_xticks(np.arange(len(protocols)) + 0.4 - width / 2, protocols)
    ax.set_ylabel("held-out MAPE %")
    ax.set_yscale("log")
    ax.set_title(f"Fresh CPU graphs, set {which} (measured after the model was frozen), 3 graphs")
    ax.legend(fontsize=8, ncol=3)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", nargs="?", choices=("measure", "evaluate", "all"), default="all")
    parser.add_argument("--set", type=int, choices=sorted(PROFILES), default=1, dest="which",
                        help="graph set: 1 (measured after commit 87f238d), 2 (after the negative intercept, "
                             "84150f1), 3 (after 78046f3, the model unchanged since set 2), 4 (after the "
                             "intervals' per-octave widening), 5 (after the anchor beyond the grid moved to "
                             "the measured largest batch), 6 (after the family curve below the grid), 7 (after "
                             "the throughput bound below the grid), 8 (after the trend of the residuals beyond "
                             "the grid), 9 (after the FLOPs polynomial's terms chosen by leave-one-size-out), 10 "
                             "(after the slope at the bottom of the grid below it) 11 (after the warm-up model "
                             "moved onto the work latency model with a ratio that follows the batch; the latency "
                             "model unchanged since set 10), 12 (after the warm-up's latency model took the "
                             "graph's FLOPs), 13 (after the in-grid choice stopped scoring its candidates on the "
                             "smallest batch), 14 (after the intervals of unprofiled input sizes took held-out "
                             "sizes' residuals), 15 (after an unprofiled input size was predicted from the "
                             "profiled sizes' latencies at the same work), 16 (after the FLOPs polynomial "
                             "learned to floor the size to a patch multiple), 17 (after the FLOPs below the "
                             "profiled sizes halved a constant term in logs) , 18 (after the largest batch of "
                             "an unprofiled size was calibrated with that size left out; also the held-out "
                             "graphs of benchmarks/max_batch_check.py --fresh-set 18), 19 (after the family "
                             "memory line in batch x FLOPs and the upward steps of the boundary search; "
                             "max_batch_check.py --fresh-set 19) or 20 (after the largest batch beyond the "
                             "profiled sizes held back the shortfall per octave of the edge sizes left out; "
                             "max_batch_check.py --fresh-set 20) or 21 (a second held-out set for the same "
                             "models, after the fleet's memory_mb: fit and the module splits; "
                             "max_batch_check.py --fresh-set 21) or 22 (defined after --mem-pattern off, before "
                             "any change to the memory model's work axis: held out for that change; "
                             "max_batch_check.py --fresh-set 22, with and without --mem-pattern off) or 23 "
                             "(defined after set 22 judged the act_peak axis; a fourth held-out set for the "
                             "memory model of 82930d1 and a second for the act_peak axis of 2886e1f; "
                             "max_batch_check.py --fresh-set 23, with and without --mem-pattern off) or 24 "
                             "(defined after the rows above half the limit stayed in the configurations' memory "
                             "lines where the limit is only observed, before any set-24 run: held out for that "
                             "change; max_batch_check.py --fresh-set 24, with and without --mem-pattern off)")
    parser.add_argument("--quick", action="store_true", help="tiny grid, one round, files in --out-dir (a test)")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for the CSV and PNG files (default "
                        "benchmarks/results; with --quick a new temporary folder)")
    parser.add_argument("--hardware", default="cpu-amd-epyc", help="hardware column of the profile")
    args = parser.parse_args(argv)
    args.out_dir = output_dir(args.out_dir, quick=args.quick, name="fresh_cpu", flag="--out-dir")
    settings = QUICK if args.quick else {**FULL, "sizes": SIZES[args.which]}
    stem = STEMS[args.which]
    profile_path = args.out_dir / f"{stem}_quick.csv" if args.quick else PROFILES[args.which]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.step in ("measure", "all"):
        from servopt.profiles import write_profile

        with tempfile.TemporaryDirectory() as tmp:
            profile, rounds = measure(settings, Path(tmp), args.hardware, args.which)
        write_profile(profile, profile_path)
        rounds.to_csv(args.out_dir / f"{stem}_rounds.csv", index=False)
        print(f"median round-to-round spread of a point: {round_spread(rounds):.1f} %", file=sys.stderr)
    if args.step in ("evaluate", "all"):
        from servopt.profiles import load_profile

        rows, points = evaluate(load_profile([str(profile_path)]).frame)
        write_csv(rows, ["protocol", "data", "method", "n", "mape_pct", "max_ape_pct"], args.out_dir / f"{stem}.csv")
        points.to_csv(args.out_dir / f"{stem}_points.csv", index=False)
        plot(rows, args.out_dir / f"{stem}.png", args.which)
        print(markdown(rows))
    print(f"results ({stem}*) under {args.out_dir}" + ("" if args.quick or args.step == "evaluate" else
          f"; profile {profile_path}"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
