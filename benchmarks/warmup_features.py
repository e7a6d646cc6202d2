"""Warm-up models on servopt's measured profiles: LightGBM on every feature against the model structured by runtime.

    python benchmarks/warmup_features.py            # reads profiles/measured_*.csv (H200 torch + CPU ONNX Runtime)
    python benchmarks/warmup_features.py --quick    # 2-fold x 1, for the test

Writes under ``benchmarks/results/``: ``warmup_cv.csv`` (cross-validated error of each model, overall and per
runtime), ``warmup_repeats.csv`` (how far apart two warm-ups of the same point are: the noise of one run),
``warmup_top15.csv`` (LightGBM's 15 most important features) and ``warmup_features.png`` (also ``docs/img/``).

Method
------
- rows: every profile row with a ``warmup_ms`` (284 in the shipped files: 144 torch on an H200, 140 ONNX Runtime
  on a shared 2-vCPU machine);
- models: :class:`servopt.performance.WarmupModel` (LightGBM on log warm-up) on every feature ``servopt fit`` gives
  warm-up (design: batch, model, variant, hardware, input size, cores; and every ``hw.*`` column), the same on the
  design features only, and :class:`servopt.performance.RuntimeWarmupModel` (the runtime structure on an in-fold
  latency model; it gets the training rows' profile, and the held-out rows' ``framework``/``source``/
  ``oom_batch_size`` labels, never their latency or warm-up);
- reference (not a model): the same structure on the held-out point's own *measured* latency instead of the
  latency model (an oracle: what knowing the point's steady state would give);
- error: out-of-fold predictions of 5-fold cross-validation repeated 3 times (shuffled, seeds 0-2); MAPE on the
  millisecond scale, per runtime and overall (mean over the repeats, with their standard deviation);
- noise of one run (``warmup_repeats.csv``): points measured twice or more in separate processes: the shipped
  resnet50 fp16 H200 grid run against the command-line run (batch 1, 8, 64 at 224 px), and CPU repeats in
  ``benchmarks/results/warmup_repeats/*.csv`` (the same command run three times, see ``--repeats-dir``); the
  error of predicting one run by another run of the same point (mean over ordered pairs), by the median of the
  other runs (mean and median APE), and by the run's own latency x the other runs' warm-up/latency ratio (what
  a perfect latency model and a per-point ratio would give).

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
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_rows(paths: list[str]) -> Any:
    """Every profile row with a warm-up, the file order kept (the runtime structure reads it)."""
    import pandas as pd

    from servopt.profiles import load_profile

    frames = []
    for path in paths:
        frames.append(load_profile(path).frame)
    data = pd.concat(frames, ignore_index=True)
    return data[data["warmup_ms"].notna() & (data["warmup_ms"] > 0)].reset_index(drop=True)


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


def cross_validate(name: str, fit_predict: Any, y: np.ndarray, runtime: np.ndarray, folds: int,
                   repeats: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Rows of warmup_cv.csv for one model (all, then per runtime) and its out-of-fold predictions (mean)."""
    from sklearn.model_selection import KFold

    oofs = []
    for rep in range(repeats):
        oof = np.zeros(len(y))
        for train, test in KFold(folds, shuffle=True, random_state=rep).split(y):
            oof[test] = fit_predict(train, test)
        oofs.append(oof)
    rows = []
    for subset in ["all", *sorted(set(runtime))]:
        at = np.ones(len(y), dtype=bool) if subset == "all" else runtime == subset
        mapes = [100 * float(np.mean(np.abs(o[at] - y[at]) / y[at])) for o in oofs]
        rows.append({"model": name, "runtime": subset, "n_rows": int(at.sum()), "cv": f"{folds}-fold x {repeats}",
                     "mape_pct": round(float(np.mean(mapes)), 2), "mape_std_pct": round(float(np.std(mapes)), 2)})
    return rows, np.mean(oofs, axis=0)


def repeat_noise(data: Any, repeats_dir: Path) -> Any:
    """How well one warm-up run predicts another of the same point (``warmup_repeats.csv``)."""
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


def plot(top: Any, y: np.ndarray, runtime: np.ndarray, oof: dict[str, np.ndarray], title: str,
         paths: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.2, 1]})
    names = [n.removeprefix("hw.") for n in top.index][::-1]
    colors = ["tab:orange" if n.startswith("hw.") else "tab:blue" for n in top.index][::-1]
    ax1.barh(names, top.values[::-1] * 100, color=colors)
    ax1.set_xlabel("share of total gain (%)")
    ax1.set_title("LightGBM on every feature: 15 most important\n(blue: design, orange: hardware monitor)")
    ax1.tick_params(axis="y", labelsize=8)
    for (name, pred), marker in zip(oof.items(), ("o", "s")):
        for rt, color in zip(sorted(set(runtime)), ("tab:green", "tab:red")):
            at = runtime == rt
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="+", default=sorted(glob.glob(str(ROOT / "profiles/measured_*.csv"))))
    parser.add_argument("--repeats-dir", type=Path, default=ROOT / "benchmarks/results/warmup_repeats")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks/results")
    parser.add_argument("--img-dir", type=Path, default=ROOT / "docs/img")
    parser.add_argument("--quick", action="store_true", help="2-fold x 1 repeat, no plot (for tests)")
    args = parser.parse_args(argv)
    if not args.profiles:
        print("no profiles/measured_*.csv found", file=sys.stderr)
        return 2
    import pandas as pd

    from servopt.performance import RuntimeWarmupModel, WarmupModel
    from servopt.performance.warmup_runtime import runtime_context, with_run_flags

    warnings.filterwarnings("ignore", category=UserWarning)
    folds, repeats = (2, 1) if args.quick else (5, 3)
    data = load_rows(args.profiles)
    y = data["warmup_ms"].to_numpy(dtype=float)
    latency = data["latency_ms"].to_numpy(dtype=float)
    data = with_run_flags(data)  # the run's first point, from each file's order (not a fold's)
    labels = data[[c for c in LABELS if c in data.columns]]
    runtime = runtime_context(labels)["runtime"].to_numpy()
    X_all, X_design = features(data, True), features(data, False)

    def lightgbm(X: Any) -> Any:
        def run(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            model = WarmupModel().fit(X.iloc[train].reset_index(drop=True), y[train])
            return model.predict(X.iloc[test].reset_index(drop=True))
        return run

    def structured(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        profile = data.iloc[train].reset_index(drop=True)
        model = RuntimeWarmupModel().fit(X_all.iloc[train].reset_index(drop=True), y[train], profile=profile)
        return model.predict(X_all.iloc[test].reset_index(drop=True), profile=labels.iloc[test].reset_index(drop=True))

    class _Measured:  # stands in for the latency model: the held-out points' own measured latency
        def __init__(self, values: np.ndarray) -> None:
            self.values = values

        def predict(self, X: Any) -> np.ndarray:
            return self.values

    def measured_latency(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        profile = data.iloc[train].reset_index(drop=True)
        model = RuntimeWarmupModel().fit(X_all.iloc[train].reset_index(drop=True), y[train], profile=profile)
        model.latency_ = _Measured(latency[test])
        return model.predict(X_all.iloc[test].reset_index(drop=True), profile=labels.iloc[test].reset_index(drop=True))

    rows, oof = [], {}
    for name, fn in (("LightGBM on every feature (servopt fit's warm-up features: design + hw.*)", lightgbm(X_all)),
                     ("LightGBM on the design features", lightgbm(X_design)),
                     ("RuntimeWarmupModel (structured by runtime, in-fold latency model)", structured),
                     ("reference: RuntimeWarmupModel on the point's own measured latency (an oracle)",
                      measured_latency)):
        part, pred = cross_validate(name, fn, y, runtime, folds, repeats)
        rows += part
        if name.startswith(("LightGBM on every", "RuntimeWarmupModel")):
            oof[name.split(" (")[0]] = pred
    cv = pd.DataFrame(rows)
    noise = repeat_noise(data, args.repeats_dir)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    cv.to_csv(args.out_dir / f"warmup_cv{suffix}.csv", index=False)
    noise.to_csv(args.out_dir / f"warmup_repeats{suffix}.csv", index=False)
    print(f"{len(y)} rows from {', '.join(Path(p).name for p in args.profiles)}")
    print(cv.to_string(index=False))
    print(noise.to_string(index=False))
    if args.quick:
        return 0
    full = WarmupModel().fit(X_all, y)
    share = pd.Series(full.feature_importances_, index=list(X_all.columns)).sort_values(ascending=False,
                                                                                      kind="stable")
    top = share.head(15)
    pd.DataFrame({"rank": range(1, len(top) + 1), "feature": top.index, "importance_share": top.values.round(4),
                  "kind": ["hardware" if n.startswith("hw.") else "design" for n in top.index]}).to_csv(
        args.out_dir / "warmup_top15.csv", index=False)
    pick = {r["model"].split(" (")[0]: r["mape_pct"] for r in rows if r["runtime"] == "all"}
    title = (f"{len(y)} points, {folds}-fold x {repeats} CV, MAPE:\n" +
             "\n".join(f"{k} {v:.1f} %" for k, v in pick.items() if not k.startswith("reference")))
    plot(top, y, runtime, oof, title, [args.out_dir / "warmup_features.png", args.img_dir / "warmup_features.png"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
