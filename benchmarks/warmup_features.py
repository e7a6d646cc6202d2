"""Warm-up model on servopt's measured profiles: first-batch time from batch size, input size, cores and the
hardware-monitoring features, its cross-validated error, and the 15 most important features (as the seed study
ranked the features that most determine warm-up time).

    python benchmarks/warmup_features.py            # reads profiles/measured_*.csv

Writes ``benchmarks/results/warmup_cv.csv`` (cross-validated error, with and without the hardware features),
``benchmarks/results/warmup_top15.csv`` (the ranking) and ``warmup_features.png`` (ranking + out-of-fold
predictions) under ``benchmarks/results/`` and ``docs/img/``.

Method
------
- rows: every non-OOM row with a ``warmup_ms``; target ``log(warmup_ms)`` (warm-up spans four decades);
- features: ``batch_size``, ``input_size``, ``cores``, ``batch_pixels = batch_size * input_size**2`` (the work
  of one batch up to a constant), one indicator per model, and every ``hw.*`` column that
  varies, except the counters that count since the monitor started (:data:`servopt.measure.hwmon.CUMULATIVE_KEYS`),
  which only encode how far into the run a point was measured;
- estimator: :class:`servopt.performance.WarmupModel` when that module provides it, else LightGBM
  (``LGBMRegressor``, small-data settings) directly; the script says which it used;
- error: out-of-fold predictions of 5-fold cross-validation repeated 3 times (shuffled), MAPE and R2 on the
  millisecond scale; importance: the estimator's ``feature_importances_`` (LightGBM: total gain) after a fit on
  all rows, as a share of the total.
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ["batch_size", "input_size", "cores"]


def load_rows(paths: list[str]) -> Any:
    import pandas as pd

    frames = []
    for path in paths:
        try:
            from servopt.profiles import load_profile

            table = load_profile(path)
            frame = getattr(table, "frame", table)
            frame = frame if isinstance(frame, pd.DataFrame) else pd.read_csv(path)
        except ImportError:
            frame = pd.read_csv(path)
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    if "oom" in data:
        data = data[data["oom"].fillna(0).astype(float) == 0]
    return data[data["warmup_ms"].notna() & (data["warmup_ms"] > 0)].reset_index(drop=True)


def feature_frame(data: Any, with_hw: bool = True) -> Any:
    from servopt.measure.hwmon import CUMULATIVE_KEYS

    X = data[DESIGN].astype(float).copy()
    X["batch_pixels"] = X["batch_size"] * X["input_size"] ** 2  # the work of one batch, up to a constant
    for model in sorted(data["model"].unique()):
        X[f"model={model}"] = (data["model"] == model).astype(float)
    if with_hw:
        for col in sorted(c for c in data.columns if c.startswith("hw.")):
            if col[3:] in CUMULATIVE_KEYS:
                continue
            values = data[col].astype(float)
            if values.notna().all() and values.nunique() > 1:
                X[col] = values
    return X


def make_estimator() -> tuple[Any, str]:
    """servopt.performance.WarmupModel if present, else a LightGBM regressor on log(warm-up)."""
    try:
        from servopt.performance import WarmupModel

        return WarmupModel(), "servopt.performance.WarmupModel (LightGBM on log warm-up, gain importances)"
    except ImportError:
        pass
    import numpy as np
    from lightgbm import LGBMRegressor
    from sklearn.compose import TransformedTargetRegressor

    lgbm = LGBMRegressor(n_estimators=400, learning_rate=0.03, num_leaves=15, min_child_samples=5,
                         subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=0, verbose=-1)
    return (TransformedTargetRegressor(regressor=lgbm, func=np.log, inverse_func=np.exp),
            "lightgbm.LGBMRegressor on log(warmup_ms) (servopt.performance.WarmupModel not available)")


def importances(estimator: Any, columns: list[str]) -> Any:
    import pandas as pd

    if hasattr(estimator, "top_features"):  # servopt.performance.WarmupModel: shares of total gain
        names = list(getattr(estimator, "feature_names_in_", columns))
        share = pd.Series(estimator.feature_importances_, index=names, dtype=float)
        return share.sort_values(ascending=False, kind="stable")
    inner = getattr(estimator, "regressor_", estimator)
    values = getattr(inner, "feature_importances_", None)
    names = list(getattr(inner, "feature_names_in_", columns))
    if values is None:
        raise SystemExit(f"{type(inner).__name__} exposes no feature_importances_")
    if hasattr(inner, "booster_"):  # LightGBM: rank by total gain, not split counts
        values = inner.booster_.feature_importance(importance_type="gain")
        names = inner.booster_.feature_name()
        names = [columns[int(n.split("_")[1])] if n.startswith("Column_") else n for n in names]
    share = pd.Series(values, index=names, dtype=float)
    return (share / share.sum()).sort_values(ascending=False)


def cross_validate(X: Any, y: Any, repeats: int = 3, folds: int = 5) -> tuple[dict[str, float], Any]:
    import numpy as np
    from sklearn.base import clone
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold

    base, _ = make_estimator()
    mapes, r2_ms, r2_log, oof_all = [], [], [], np.zeros((repeats, len(y)))
    for rep in range(repeats):
        oof = np.zeros(len(y))
        for train, test in KFold(folds, shuffle=True, random_state=rep).split(X):
            est = clone(base).fit(X.iloc[train], y.iloc[train])
            oof[test] = est.predict(X.iloc[test])
        oof_all[rep] = oof
        mapes.append(float(np.mean(np.abs(oof - y) / y)) * 100)
        r2_ms.append(float(r2_score(y, oof)))
        r2_log.append(float(r2_score(np.log(y), np.log(np.maximum(oof, 1e-9)))))
    metrics = {"mape_pct": float(np.mean(mapes)), "mape_std_pct": float(np.std(mapes)),
               "r2": float(np.mean(r2_ms)), "r2_log": float(np.mean(r2_log))}
    return metrics, oof_all.mean(axis=0)


def latency_reference(data: Any, y: Any, repeats: int = 3, folds: int = 5) -> dict[str, float]:
    """Error of ``warm-up = r * latency_ms`` of the same point, ``r`` the in-fold median ratio: how predictable a
    single warm-up run is even when the point's own steady-state latency is known (a noise floor, not a model)."""
    import numpy as np
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold

    lat = data["latency_ms"].to_numpy(float)
    target = y.to_numpy(float)
    mapes, r2s = [], []
    for rep in range(repeats):
        pred = np.zeros(len(target))
        for train, test in KFold(folds, shuffle=True, random_state=rep).split(target):
            pred[test] = np.median(target[train] / lat[train]) * lat[test]
        mapes.append(float(np.mean(np.abs(pred - target) / target)) * 100)
        r2s.append(float(r2_score(target, pred)))
    return {"mape_pct": float(np.mean(mapes)), "mape_std_pct": float(np.std(mapes)), "r2": float(np.mean(r2s)),
            "r2_log": float("nan")}


def plot(top: Any, y: Any, oof: Any, png_paths: list[Path], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.5, 1]})
    names = [n.removeprefix("hw.") for n in top.index][::-1]
    colors = ["tab:orange" if n.startswith("hw.") else "tab:blue" for n in top.index][::-1]
    ax1.barh(names, top.values[::-1] * 100, color=colors)
    ax1.set_xlabel("share of total gain (%)")
    ax1.set_title("15 most important features for warm-up time\n(blue: design, orange: hardware monitor)")
    ax1.tick_params(axis="y", labelsize=8)
    ax2.loglog(y, oof, "o", ms=4, alpha=0.7)
    lo, hi = min(y.min(), oof.min()), max(y.max(), oof.max())
    ax2.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax2.set_xlabel("measured warm-up (ms)")
    ax2.set_ylabel("out-of-fold prediction (ms)")
    ax2.set_title(title, fontsize=9)
    fig.tight_layout()
    for path in png_paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="+", default=sorted(glob.glob(str(ROOT / "profiles/measured_*.csv"))))
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks/results")
    parser.add_argument("--img-dir", type=Path, default=ROOT / "docs/img")
    args = parser.parse_args(argv)
    if not args.profiles:
        print("no profiles/measured_*.csv found; run the commands in profiles/README.md first", file=sys.stderr)
        return 2
    import pandas as pd

    data = load_rows(args.profiles)
    y = data["warmup_ms"].astype(float)
    _, estimator_name = make_estimator()
    rows, oof_full = [], None
    for label, with_hw in (("design + hardware features", True), ("design only (batch, input size, cores, model)",
                                                                    False)):
        X = feature_frame(data, with_hw)
        metrics, oof = cross_validate(X, y)
        rows.append({"features": label, "n_rows": len(X), "n_features": X.shape[1], "estimator": estimator_name,
                     "cv": "5-fold x 3 repeats", **{k: round(v, 4) for k, v in metrics.items()}})
        if with_hw:
            oof_full, X_full = oof, X
    rows.append({"features": "reference: the point's own steady-state latency x in-fold median ratio",
                 "n_rows": len(y), "n_features": 1, "estimator": "ratio", "cv": "5-fold x 3 repeats",
                 **{k: round(v, 4) for k, v in latency_reference(data, y).items()}})
    cv = pd.DataFrame(rows)
    est, _ = make_estimator()
    est.fit(X_full, y)
    ranking = importances(est, list(X_full.columns))
    top = ranking.head(15)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    cv.to_csv(args.out_dir / "warmup_cv.csv", index=False)
    top_table = pd.DataFrame({"rank": range(1, len(top) + 1), "feature": top.index,
                              "importance_share": top.values.round(4),
                              "kind": ["hardware" if n.startswith("hw.") else "design" for n in top.index]})
    top_table.to_csv(args.out_dir / "warmup_top15.csv", index=False)
    m = rows[0]
    title = (f"{estimator_name.split(' (')[0]}, {len(y)} points\n{m['cv']} CV: MAPE {m['mape_pct']:.1f} %, "
             f"R2 {m['r2']:.2f}\ndesign only: MAPE {rows[1]['mape_pct']:.1f} %, R2 {rows[1]['r2']:.2f}; "
             f"own latency x ratio: {rows[2]['mape_pct']:.1f} %")
    plot(top, y.to_numpy(), oof_full, [args.out_dir / "warmup_features.png", args.img_dir / "warmup_features.png"],
         title)
    print(f"estimator: {estimator_name}; rows: {len(y)} from {', '.join(Path(p).name for p in args.profiles)}")
    print(cv.drop(columns=["estimator"]).to_string(index=False))
    print("\n15 most important features (share of total gain):")
    print(top_table.to_string(index=False))
    if not math.isfinite(m["mape_pct"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
