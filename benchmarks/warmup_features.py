"""Warm-up models on servopt's measured profiles: LightGBM on every feature against the model structured by runtime.

    python benchmarks/warmup_features.py            # reads profiles/measured_*.csv, ~6 min
    python benchmarks/warmup_features.py --quick    # 2-fold x 1, no plot, into a new temporary folder (a test)

Writes under ``--out-dir`` (default ``benchmarks/results/``): ``warmup_cv.csv`` (cross-validated error of each
model, overall and per data group), ``warmup_offgrid.csv`` (warm-up off the profiled grid on the fresh CPU graphs),
``warmup_repeats.csv`` (how far apart two warm-ups of the same point are: the noise of one run),
``warmup_top15.csv`` (LightGBM's 15 most important features) and ``warmup_features.png`` (also ``--img-dir``,
default ``docs/img/``). ``--quick`` writes only ``warmup_cv_quick.csv``, ``warmup_repeats_quick.csv`` and
``warmup_offgrid_quick.csv``, to a new temporary folder (named on stderr) unless ``--out-dir`` is given.

Method
------
- rows: every profile row with a ``warmup_ms`` (in the shipped files: 144 torch on an H200; 140 ONNX Runtime
  on a shared 2-vCPU machine, ``measured_resnet_like.csv`` and ``measured_mobilenet_like.csv``; the ONNX Runtime
  rows of ``benchmarks/fresh_cpu.py``'s sets of fresh graphs (84 per set), each point's warm-up the median of three
  rounds, measured when the machine was quieter);
- data groups: ``torch``, ``onnxruntime`` (by the runtime of the file) and ``fresh CPU graphs``
  (``measured_cpu_fresh*.csv``); each group is cross-validated on its own, on its own features (the fresh profiles
  have ``gflops`` but no ``hw.*`` columns), and ``all`` pools the groups' out-of-fold predictions;
- models: :class:`servopt.performance.WarmupModel` (LightGBM on log warm-up) on every feature ``servopt fit`` gives
  warm-up (design: batch, model, variant, hardware, input size, cores; and every gap-free ``hw.*`` column), the
  same on the design features only, :class:`servopt.performance.RuntimeWarmupModel` as ``servopt fit`` uses it
  (the runtime structure on an in-fold work latency model, an ONNX Runtime ratio that is a line in log batch) and as
  it was before 60e186b (``latency_model="hinge", ratio="constant"``) and before 5b0c4a3 (fitted without the
  ``gflops`` column: the work latency model's FLOPs from its polynomial in input size); it gets the training rows'
  profile, and the held-out rows' ``framework``/``source``/``oom_batch_size`` labels, never their latency or
  warm-up;
- reference (not a model): the same structure on the held-out point's own *measured* latency instead of the
  latency model (an oracle: what knowing the point's steady state would give);
- error: out-of-fold predictions of 5-fold cross-validation repeated 3 times (shuffled, seeds 0-2); MAPE on the
  millisecond scale, per data group and overall (mean over the repeats, with their standard deviation);
- off the grid (``warmup_offgrid.csv``), on each fresh profile, ``fresh_cpu.py``'s protocols: ``batch_x4`` (fit
  batches <= 16, predict 32 and 64), ``size_interior`` (each interior input size held out in turn, pooled),
  ``size_top`` (the largest size, 1.36-1.4x, held out; a held-out size's rows are queried without ``gflops``, as
  a size with no graph); LightGBM and RuntimeWarmupModel now and before; MAPE and the worst APE of the held-out
  rows;
- noise of one run (``warmup_repeats.csv``): points measured twice or more: the shipped resnet50 fp16 H200 grid run
  against the command-line run (batch 1, 8, 64 at 224 px), CPU repeats in
  ``benchmarks/results/warmup_repeats/*.csv`` (the same command run three times in separate processes, see
  ``--repeats-dir``), and the three rounds of every point of the fresh graphs (``--rounds``, the kept runs'
  ``fresh_cpu<set>_rounds.csv``: fresh sessions in one process per round); the error of predicting one run by
  another run of the same point (mean over ordered pairs), by the median of the other runs (mean and median APE),
  and by the run's own latency x the other runs' warm-up/latency ratio (what a perfect latency model and a
  per-point ratio would give).

The CPU repeats were measured on 2026-12-05 on the shipped profiles' machine (2 vCPUs shared with other jobs),
three times in a row, from graphs built by ``python -m servopt.measure.onnx_models NAME NAME.onnx``::

    for r in 1 2 3; do for m in resnet_like mobilenet_like; do
      servopt profile $m.onnx --batch-sizes 1,4,16 --input-sizes 128,224,320 --cores 1,2 --repeats 20 \
        --time-budget 0.5 --hardware cpu-amd-epyc -q -o benchmarks/results/warmup_repeats/${m}_r$r.csv --force
    done; done
"""

from __future__ import annotations

import argparse
import glob
import itertools
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, image_dir, output_dir  # noqa: E402


def load_rows(paths: list[str]) -> tuple[Any, np.ndarray]:
    """Every profile row with a warm-up, the file order kept (the runtime structure reads it), and the data group
    of each row (:func:`data_group` of its file)."""
    import pandas as pd

    from servopt.profiles import load_profile

    frames = []
    for path in paths:
        frame = load_profile(path).frame
        frames.append(frame.assign(_group=data_group(path, frame)))
    data = pd.concat(frames, ignore_index=True)
    data = data[data["warmup_ms"].notna() & (data["warmup_ms"] > 0)].reset_index(drop=True)
    return data.drop(columns="_group"), data["_group"].to_numpy(dtype=object)


def data_group(path: str, frame: Any) -> str:
    """``fresh CPU graphs`` for ``benchmarks/fresh_cpu.py``'s profiles (``measured_cpu_fresh*.csv``: each point's
    warm-up the median of three rounds, measured when the machine was quieter), else the runtime of the file's
    first row (``torch``, ``onnxruntime``)."""
    from servopt.performance.warmup_runtime import runtime_of

    if Path(path).name.startswith("measured_cpu_fresh"):
        return FRESH
    framework = frame["framework"].iloc[0] if "framework" in frame.columns and len(frame) else None
    return runtime_of(framework)


def features(data: Any, with_hw: bool) -> Any:
    """The warm-up features of ``servopt fit`` (``feature_columns``), optionally without the ``hw.*`` ones."""
    import pandas as pd

    from servopt.performance.features import TARGETS, feature_columns, feature_frame

    columns = feature_columns(data, TARGETS["warmup"])
    if not with_hw:
        columns = [c for c in columns if not c.startswith("hw.")]
    text = [c for c in columns if not pd.api.types.is_numeric_dtype(data[c])]
    return feature_frame(data, columns, text, "profiles")


LABELS = ("framework", "source", "oom_batch_size", "model", "variant", "hardware", "cores", "input_size",
          "batch_size", "first_in_run", "seen_shape")


def out_of_fold(fit_predict: Any, n: int, folds: int, repeats: int) -> list[np.ndarray]:
    """Out-of-fold predictions of ``fit_predict(train, test)`` on ``n`` rows, one array per shuffled repeat."""
    from sklearn.model_selection import KFold

    oofs = []
    for rep in range(repeats):
        oof = np.zeros(n)
        for train, test in KFold(folds, shuffle=True, random_state=rep).split(np.arange(n)):
            oof[test] = fit_predict(train, test)
        oofs.append(oof)
    return oofs


def cv_rows(name: str, oofs: list[np.ndarray], y: np.ndarray, group: np.ndarray, folds: int,
            repeats: int) -> list[dict[str, Any]]:
    """Rows of warmup_cv.csv for one model: all rows, then per data group (mean MAPE over the repeats)."""
    rows = []
    for subset in ["all", *sorted(set(group))]:
        at = np.ones(len(y), dtype=bool) if subset == "all" else group == subset
        mapes = [100 * float(np.mean(np.abs(o[at] - y[at]) / y[at])) for o in oofs]
        rows.append({"model": name, "data": subset, "n_rows": int(at.sum()), "cv": f"{folds}-fold x {repeats}",
                     "mape_pct": round(float(np.mean(mapes)), 2), "mape_std_pct": round(float(np.std(mapes)), 2)})
    return rows


def repeat_noise(data: Any, repeats_dir: Path, rounds: list[str] | tuple[str, ...] = ()) -> Any:
    """How well one warm-up run predicts another of the same point (``warmup_repeats.csv``); ``rounds``: the
    every-round files of ``benchmarks/fresh_cpu.py`` (``fresh_cpu*_rounds.csv``, a ``round`` column)."""
    import pandas as pd

    from servopt.profiles import load_profile

    key = ["model", "variant", "hardware", "cores", "input_size", "batch_size"]
    sets = []
    gpu = data[(data["model"] == "resnet50") & (data.get("precision", pd.Series(dtype=str)) == "fp16")]
    if len(gpu):
        sets.append(("H200 torch resnet50 fp16: grid run vs command-line run", gpu))
    files = sorted(glob.glob(str(repeats_dir / "*.csv")))
    if files:
        cpu = pd.concat([load_profile(f).frame.assign(file=Path(f).name) for f in files], ignore_index=True)
        sets.append(("cpu-amd-epyc onnxruntime: the same command run 3 times", cpu))
    if rounds:
        fresh = pd.concat([pd.read_csv(f) for f in rounds], ignore_index=True)
        sets.append((f"cpu-amd-epyc onnxruntime, fresh CPU graphs: 3 rounds of each point "
                     f"(the kept run{'s' if len(rounds) > 1 else ''} of benchmarks/fresh_cpu.py, {len(rounds)} set"
                     f"{'s' if len(rounds) > 1 else ''})", fresh))
    rows = []
    for label, frame in sets:
        frame = frame.copy()
        frame["cores"] = frame["cores"].fillna(0)
        pair_err, median_err, ratio_err, points, runs = [], [], [], 0, []
        for _, group in frame.groupby(key, dropna=False):
            w = group["warmup_ms"].to_numpy(dtype=float)
            ratio = w / group["latency_ms"].to_numpy(dtype=float)
            if len(w) < 2:
                continue
            points += 1
            runs.append(len(w))
            pair_err += [abs(a - b) / b for a, b in itertools.permutations(w, 2)]
            median_err += [abs(np.median(np.delete(w, i)) - w[i]) / w[i] for i in range(len(w))]
            ratio_err += [abs(np.median(np.delete(ratio, i)) * w[i] / ratio[i] - w[i]) / w[i] for i in range(len(w))]
        if points:
            rows.append({"data": label, "points": points, "runs_per_point": int(np.median(runs)),
                         "one_run_predicts_another_mape_pct": round(100 * float(np.mean(pair_err)), 2),
                         "median_of_others_mape_pct": round(100 * float(np.mean(median_err)), 2),
                         "median_of_others_median_ape_pct": round(100 * float(np.median(median_err)), 2),
                         "own_latency_x_others_ratio_mape_pct": round(100 * float(np.mean(ratio_err)), 2)})
    return pd.DataFrame(rows)


def plot(top: Any, y: np.ndarray, group: np.ndarray, oof: dict[str, np.ndarray], title: str,
         paths: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.2, 1]})
    names = [n.removeprefix("hw.") for n in top.index][::-1]
    colors = ["tab:orange" if n.startswith("hw.") else "tab:blue" for n in top.index][::-1]
    ax1.barh(names, top.values[::-1] * 100, color=colors)
    ax1.set_xlabel("share of total gain (%)")
    ax1.set_title("LightGBM on every feature, profiles with a hardware monitor: 15 most important\n"
                  "(blue: design, orange: hardware monitor)", fontsize=10)
    ax1.tick_params(axis="y", labelsize=8)
    for (name, pred), marker in zip(oof.items(), ("o", "s")):
        for rt, color in zip(sorted(set(group)), ("tab:purple", "tab:green", "tab:red")):
            at = group == rt
            ax2.loglog(y[at], pred[at], marker, ms=4, alpha=0.6, color=color if marker == "o" else "none",
                       markeredgecolor=color, label=f"{name}, {rt}")
    lo, hi = y.min() * 0.7, y.max() * 1.4
    ax2.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax2.set_xlabel("measured warm-up (ms)")
    ax2.set_ylabel("out-of-fold prediction (ms)")
    ax2.legend(fontsize=7)
    ax2.set_title(title, fontsize=9)
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    plt.close(fig)


def fresh_rounds() -> list[str]:
    """The every-round files of the runs of ``benchmarks/fresh_cpu.py`` that made the shipped profiles (not the
    ``_run<k>_rounds.csv`` files of a set measured more than once)."""
    return sorted(p for p in glob.glob(str(ROOT / "benchmarks/results/fresh_cpu*_rounds.csv"))
                  if re.fullmatch(r"fresh_cpu\d*_rounds\.csv", Path(p).name))


#: the data group of ``benchmarks/fresh_cpu.py``'s profiles
FRESH = "fresh CPU graphs"
#: (name, what it is): "lightgbm" / "lightgbm design" (WarmupModel on every / the design features), a dict
#: (RuntimeWarmupModel's parameters), "no flops" (RuntimeWarmupModel fitted without the ``gflops`` column, as
#: before commit 5b0c4a3) or "oracle" (RuntimeWarmupModel on the held-out point's measured latency)
MODELS: tuple[tuple[str, Any], ...] = (
    ("LightGBM on every feature (servopt fit's warm-up features: design + gap-free hw.*)", "lightgbm"),
    ("LightGBM on the design features", "lightgbm design"),
    ("RuntimeWarmupModel (what servopt fit uses: work latency model, ratio a line in log batch)", {}),
    ("RuntimeWarmupModel before (hinge latency model, one ratio per configuration)",
     {"latency_model": "hinge", "ratio": "constant"}),
    ("RuntimeWarmupModel before 5b0c4a3 (work latency model without the graph's FLOPs)", "no flops"),
    ("reference: RuntimeWarmupModel on the point's own measured latency (an oracle)", "oracle"),
)


class _Measured:
    """Stands in for the latency model: the held-out points' own measured latency."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def predict(self, X: Any) -> np.ndarray:
        return self.values


class Group:
    """The rows of one data group with their features, labels and run flags: ``fit_predict(spec)`` gives the
    ``(train, test) -> predictions`` function of a model of :data:`MODELS`."""

    def __init__(self, data: Any) -> None:
        from servopt.performance.warmup_runtime import with_run_flags

        self.y = data["warmup_ms"].to_numpy(dtype=float)
        self.latency = data["latency_ms"].to_numpy(dtype=float)
        self.data = with_run_flags(data)  # the run's first point, from each file's order (not a fold's)
        self.labels = self.data[[c for c in LABELS if c in self.data.columns]]
        self.X_all, self.X_design = features(self.data, True), features(self.data, False)

    def fit_predict(self, spec: Any, hide_work: bool = False) -> Any:
        """``hide_work``: the held-out rows lose their ``gflops`` (an unprofiled input size queried without a graph:
        the FLOPs come from the polynomial in input size, as in ``fresh_cpu.py``)."""
        from servopt.performance import RuntimeWarmupModel, WarmupModel

        def query(X: Any, test: np.ndarray) -> Any:
            rows = X.iloc[test].reset_index(drop=True)
            return rows.assign(gflops=np.nan) if hide_work and "gflops" in rows.columns else rows

        def run(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            if spec in ("lightgbm", "lightgbm design"):
                X = self.X_all if spec == "lightgbm" else self.X_design
                if hide_work:  # LightGBM takes no missing FLOPs: fitted without them
                    X = X.drop(columns="gflops", errors="ignore")
                model = WarmupModel().fit(X.iloc[train].reset_index(drop=True), self.y[train])
                return model.predict(query(X, test))
            params = spec if isinstance(spec, dict) else {}
            X = self.X_all.drop(columns="gflops", errors="ignore") if spec == "no flops" else self.X_all
            model = RuntimeWarmupModel(**params).fit(X.iloc[train].reset_index(drop=True), self.y[train],
                                                     profile=self.data.iloc[train].reset_index(drop=True))
            if spec == "oracle":
                model.latency_ = _Measured(self.latency[test])
            return model.predict(query(X, test), profile=self.labels.iloc[test].reset_index(drop=True))
        return run


def offgrid_splits(frame: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(protocol, train, test)`` of ``benchmarks/fresh_cpu.py``'s off-grid protocols on one profile: ``batch_x4``
    (fit up to a quarter of the largest batch, predict the larger ones), ``size_interior`` (each interior input
    size held out in turn), ``size_top`` (the largest input size held out)."""
    b = frame["batch_size"].to_numpy(dtype=float)
    sizes = frame["input_size"].to_numpy(dtype=float)
    out = [("batch_x4", b <= b.max() / 4, b > b.max() / 4)]
    distinct = np.unique(sizes)
    if distinct.size >= 3:
        out += [("size_interior", sizes != v, sizes == v) for v in distinct[1:-1]]
        out.append(("size_top", sizes < distinct[-1], sizes == distinct[-1]))
    return out


def offgrid_rows(data: Any, group: np.ndarray, paths: list[str]) -> Any:
    """Warm-up off the grid on each fresh CPU profile (``warmup_offgrid.csv``): per profile, protocol and model
    (LightGBM on the features, RuntimeWarmupModel now and before), MAPE and worst APE over the held-out rows."""
    import pandas as pd

    rows = []
    for path in paths:
        if not Path(path).name.startswith("measured_cpu_fresh"):
            continue
        frame, _ = load_rows([path])
        part = Group(frame)
        for protocol, train, test in offgrid_splits(frame):
            train, test = np.flatnonzero(train), np.flatnonzero(test)
            for name, spec in MODELS:
                if spec in ("lightgbm design", "oracle"):
                    continue
                predict = part.fit_predict(spec, hide_work=protocol.startswith("size"))
                err = np.abs(predict(train, test) / part.y[test] - 1)
                rows.append({"profile": Path(path).name, "protocol": protocol, "model": name.split(" (")[0],
                             "n": len(test), "mape_pct": 100 * float(err.mean()),
                             "max_ape_pct": 100 * float(err.max())})
    table = pd.DataFrame(rows, columns=["profile", "protocol", "model", "n", "mape_pct", "max_ape_pct"])
    if len(table):  # the interior sizes of one profile pooled into one row, as in fresh_cpu.py
        table["sq"] = table["mape_pct"] * table["n"]
        table = table.groupby(["profile", "protocol", "model"], sort=False, as_index=False).agg(
            n=("n", "sum"), sq=("sq", "sum"), max_ape_pct=("max_ape_pct", "max"))
        table.insert(4, "mape_pct", (table.pop("sq") / table["n"]).round(2))
        table["max_ape_pct"] = table["max_ape_pct"].round(2)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="+", default=sorted(glob.glob(str(ROOT / "profiles/measured_*.csv"))))
    parser.add_argument("--repeats-dir", type=Path, default=ROOT / "benchmarks/results/warmup_repeats")
    parser.add_argument("--rounds", nargs="*", default=fresh_rounds(),
                        help="the kept runs' every-round files of benchmarks/fresh_cpu.py (default: "
                        "benchmarks/results/fresh_cpu<set>_rounds.csv)")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for the CSVs and the PNG (default "
                        "benchmarks/results; with --quick a new temporary folder)")
    parser.add_argument("--img-dir", type=Path, default=None, help="folder for a copy of the PNG (default docs/img)")
    parser.add_argument("--quick", action="store_true", help="2-fold x 1 repeat, no plot (for tests)")
    args = parser.parse_args(argv)
    args.out_dir = output_dir(args.out_dir, quick=args.quick, name="warmup_features", flag="--out-dir")
    args.img_dir = image_dir(args.img_dir, quick=args.quick)
    if not args.profiles:
        print("no profiles/measured_*.csv found", file=sys.stderr)
        return 2
    import pandas as pd

    from servopt.performance import WarmupModel

    warnings.filterwarnings("ignore", category=UserWarning)
    folds, repeats = (2, 1) if args.quick else (5, 3)
    data, group = load_rows(args.profiles)
    y = data["warmup_ms"].to_numpy(dtype=float)
    oofs: dict[str, list[np.ndarray]] = {name: [np.zeros(len(y)) for _ in range(repeats)] for name, _ in MODELS}
    for value in sorted(set(group)):  # each data group cross-validated on its own features (gflops, hw.*)
        at = np.flatnonzero(group == value)
        part = Group(data.iloc[at].reset_index(drop=True))
        for name, spec in MODELS:
            for rep, oof in enumerate(out_of_fold(part.fit_predict(spec), len(at), folds, repeats)):
                oofs[name][rep][at] = oof
    rows = [r for name, _ in MODELS for r in cv_rows(name, oofs[name], y, group, folds, repeats)]
    cv = pd.DataFrame(rows)
    offgrid = offgrid_rows(data, group, args.profiles)
    noise = repeat_noise(data, args.repeats_dir, args.rounds)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    cv.to_csv(args.out_dir / f"warmup_cv{suffix}.csv", index=False)
    noise.to_csv(args.out_dir / f"warmup_repeats{suffix}.csv", index=False)
    offgrid.to_csv(args.out_dir / f"warmup_offgrid{suffix}.csv", index=False)
    print(f"{len(y)} rows from {', '.join(Path(p).name for p in args.profiles)}")
    print(cv.to_string(index=False))
    print(noise.to_string(index=False))
    if len(offgrid):
        print("off the grid, fresh CPU graphs (MAPE %, mean over the profiles):")
        print(offgrid.pivot_table(index="model", columns="protocol", values="mape_pct", aggfunc="mean",
                                  sort=False).round(1).to_string())
    print(f"wrote warmup_cv{suffix}.csv, warmup_repeats{suffix}.csv and warmup_offgrid{suffix}.csv under "
          f"{args.out_dir}", file=sys.stderr)
    if args.quick:
        return 0
    # importances where the hardware monitor was recorded (the fresh graphs' profiles keep no hw.* columns)
    monitored = group != FRESH if (group != FRESH).any() else np.ones(len(y), dtype=bool)
    X_hw = features(data[monitored].reset_index(drop=True), True)
    full = WarmupModel().fit(X_hw, y[monitored])
    share = pd.Series(full.feature_importances_, index=list(X_hw.columns)).sort_values(ascending=False,
                                                                                     kind="stable")
    top = share.head(15)
    pd.DataFrame({"rank": range(1, len(top) + 1), "feature": top.index, "importance_share": top.values.round(4),
                  "kind": ["hardware" if n.startswith("hw.") else "design" for n in top.index]}).to_csv(
        args.out_dir / "warmup_top15.csv", index=False)
    pick = {r["model"].split(" (")[0]: r["mape_pct"] for r in rows if r["data"] == "all"}
    title = (f"{len(y)} points, {folds}-fold x {repeats} CV, MAPE:\n" +
             "\n".join(f"{k} {v:.1f} %" for k, v in pick.items() if not k.startswith("reference")))
    shown = {name.split(" (")[0]: np.mean(oofs[name], axis=0) for name, _ in (MODELS[0], MODELS[2])}
    plot(top, y, group, shown, title, [args.out_dir / "warmup_features.png"]
         + ([] if args.img_dir is None else [args.img_dir / "warmup_features.png"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
