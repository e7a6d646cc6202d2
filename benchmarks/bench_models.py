"""Issue 19: how servopt's performance models generalise, on held-out protocols over the shipped public data.

    python benchmarks/bench_models.py            # about a minute on 2 busy cores

Data: every shipped profile, ``profiles/*.csv`` (NVIDIA's published tables restated from ``data/published/``,
and the two profiles measured by servopt's profiler on a shared 2-vCPU machine). Nothing here was used to choose
a model parameter: the work model's rules (elasticity 1/2 beyond a floor-only sweep, slopes carried by FP16 peak
ratio) are fixed a priori (``servopt/performance/work_latency.py``).

Latency protocols (MAPE on the held-out rows; every model and baseline sees the same training rows):

* ``lobo``: leave one batch size out of every profile (in-grid; the smallest and largest batch are edges);
* ``batch_x4``: per configuration, fit on batches <= 1/4 of its largest batch, predict the larger ones
  (up to 4x beyond the profiled range);
* ``size_interior``: hold out one interior input size (profiles with three or more sizes per family), fit on
  the others;
* ``size_top``: fit on the input sizes <= 320 px, predict 512 px (1.6x beyond the range).

Models: ``work`` (:class:`~servopt.performance.WorkLatencyModel`, the default), ``hinge``
(:class:`~servopt.performance.LatencyModel`, before issue 19); baselines: ``line_batch`` (a least-squares line in
batch per configuration; for an unprofiled input size, per family) and ``line_bxp`` (a least-squares line in
batch x input_size^2 per family: model, variant, hardware, cores, labels).

Memory protocol ``max_batch``: on the measured profiles, per configuration and memory cap, the true largest
batch is bracketed by the profiled grid (the largest profiled batch that fits, the next one does not);
:meth:`~servopt.performance.MaxBatchModel.max_batch` fitted on batches <= 16 predicts it. Counted: predictions at
or above the first batch that does not fit (too large), and the ratio to the largest profiled batch that fits.

Warm-up protocol ``warmup_cv``: 5-fold x 3 cross-validation on the measured profiles (as
``benchmarks/warmup_features.py``), LightGBM on every feature vs the work model fitted on warm-up.

Writes ``benchmarks/results/bench_models.csv`` (one row per protocol, data set and method) and
``bench_models.png``, and prints the table for ``docs/performance-models.md``.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import RESULTS, ROOT, pyplot, save_figure, write_csv  # noqa: E402

ID = ["model", "variant", "hardware", "input_size", "cores", "precision", "framework"]


def _load(path: str) -> pd.DataFrame:
    from servopt.profiles import load_profile

    frame = load_profile([path]).frame
    return frame[frame["latency_ms"].notna()].reset_index(drop=True)


def _features(frame: pd.DataFrame) -> list[str]:
    return ["batch_size"] + [c for c in ("model", "variant", "hardware", "input_size", "cores")
                            if c in frame and frame[c].notna().all()]


def _family(frame: pd.DataFrame) -> pd.Series:
    cols = [c for c in ID if c in frame.columns and c != "input_size"]
    return frame[cols].apply(lambda r: "|".join(map(str, r)), axis=1)


def _config(frame: pd.DataFrame) -> pd.Series:
    cols = [c for c in ID if c in frame.columns]
    return frame[cols].apply(lambda r: "|".join(map(str, r)), axis=1)


def _baselines(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, np.ndarray]:
    from servopt.performance._curves import fit_line

    out = {"line_batch": np.full(len(test), np.nan), "line_bxp": np.full(len(test), np.nan)}
    size = lambda f: f["input_size"].where(f["input_size"] > 0, 1.0) if "input_size" in f else 1.0  # noqa: E731
    bxp_train = train["batch_size"] * size(train) ** 2
    bxp_test = test["batch_size"] * size(test) ** 2
    cfg_tr, cfg_te, fam_tr, fam_te = _config(train), _config(test), _family(train), _family(test)
    for i in range(len(test)):
        same = (cfg_tr == cfg_te.iloc[i]).to_numpy()
        fam = (fam_tr == fam_te.iloc[i]).to_numpy()
        rows = same if same.any() else fam
        if rows.any():
            line = fit_line(train["batch_size"][rows], train["latency_ms"][rows])
            out["line_batch"][i] = float(line(test["batch_size"].iloc[i]))
        if fam.any():
            line = fit_line(bxp_train[fam], train["latency_ms"][fam])
            out["line_bxp"][i] = float(line(bxp_test.iloc[i]))
    return out


def _score(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, np.ndarray]:
    from servopt.performance import LatencyModel, WorkLatencyModel

    cols = _features(train)
    out = _baselines(train, test)
    for name, model in (("work", WorkLatencyModel()), ("hinge", LatencyModel())):
        model.fit(train[cols], train["latency_ms"].to_numpy())
        out[name] = model.predict(test[cols])
    return out


def _splits(frame: pd.DataFrame, protocol: str) -> list[tuple[np.ndarray, np.ndarray]]:
    b = frame["batch_size"].to_numpy(dtype=float)
    if protocol == "lobo":
        return [(b != v, b == v) for v in np.unique(b)]
    if protocol == "batch_x4":
        top = frame.groupby(_config(frame))["batch_size"].transform("max").to_numpy(dtype=float)
        train = b <= top / 4
        distinct = frame[train].groupby(_config(frame[train]))["batch_size"].nunique()
        ok = _config(frame).map(distinct).fillna(0).to_numpy() >= 2
        return [(train & ok, ~train & ok)]
    sizes = frame["input_size"].to_numpy(dtype=float) if "input_size" in frame else np.zeros(len(frame))
    per_family = frame.assign(_f=_family(frame)).groupby("_f")["input_size"].nunique().min() \
        if "input_size" in frame else 1
    if per_family < 3:
        return []
    if protocol == "size_interior":
        distinct = np.unique(sizes)
        return [(sizes != s, sizes == s) for s in distinct[1:-1]]
    if protocol == "size_top":
        return [(sizes <= 320, sizes == 512)] if (sizes == 512).any() else []
    raise ValueError(protocol)


METHODS = ("work", "hinge", "line_batch", "line_bxp")


def latency_rows(paths: list[str]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        frame = _load(path)
        name = Path(path).stem
        for protocol in ("lobo", "batch_x4", "size_interior", "size_top"):
            ys, preds = [], {m: [] for m in METHODS}
            for train, test in _splits(frame, protocol):
                if not train.any() or not test.any():
                    continue
                got = _score(frame[train].reset_index(drop=True), frame[test].reset_index(drop=True))
                ys.append(frame["latency_ms"][test].to_numpy())
                for m in METHODS:
                    preds[m].append(got[m])
            if not ys:
                continue
            y = np.concatenate(ys)
            for m in METHODS:
                p = np.concatenate(preds[m])
                err = np.abs(p - y) / y
                rows.append({"protocol": protocol, "data": name, "method": m, "n": int(np.isfinite(err).sum()),
                             "mape_pct": 100 * float(np.nanmean(err)), "max_ape_pct": 100 * float(np.nanmax(err))})
    return rows


def max_batch_rows(paths: list[str], caps=(64, 128, 256, 512, 1024)) -> list[dict[str, Any]]:
    from servopt.performance import MaxBatchModel

    out = []
    for path in paths:
        frame = _load(path)
        frame = frame[frame["memory_mb"].notna()].reset_index(drop=True)
        cols = [c for c in ("batch_size", "input_size", "cores") if c in frame and frame[c].notna().all()]
        for label, model in (("line", MaxBatchModel()), ("line + margin", MaxBatchModel(upper_quantile=0.95))):
            train = frame[frame.batch_size <= 16]
            model.fit(train[cols], train["memory_mb"].to_numpy())
            ratios, above = [], 0
            for (size, cores), part in frame.groupby(["input_size", "cores"]):
                part = part.sort_values("batch_size")
                for cap in caps:
                    fits = part["memory_mb"].to_numpy() <= cap
                    if not fits[0] or fits.all():
                        continue
                    first_bad = int(np.argmin(fits))
                    lo, hi = int(part["batch_size"].iloc[first_bad - 1]), int(part["batch_size"].iloc[first_bad])
                    if not fits[:first_bad].all():
                        continue
                    pred = model.max_batch(size, cap, cores=cores)
                    above += pred >= hi
                    ratios.append(pred / lo)
            ratios = np.array(ratios)
            out.append({"protocol": "max_batch", "data": Path(path).stem, "method": label, "n": len(ratios),
                        "too_large": int(above), "ratio_median": float(np.median(ratios)),
                        "ratio_min": float(ratios.min()), "ratio_max": float(ratios.max())})
    return out


def warmup_rows(paths: list[str]) -> list[dict[str, Any]]:
    from sklearn.model_selection import KFold

    from servopt.performance import WarmupModel, WorkLatencyModel

    frame = pd.concat([_load(p) for p in paths], ignore_index=True)
    frame = frame[frame["warmup_ms"].notna()].reset_index(drop=True)
    hw = [c for c in frame.columns if c.startswith("hw.") and frame[c].notna().all()]
    y = frame["warmup_ms"].to_numpy()
    out = []
    for label, make, cols in (("lightgbm, all features", WarmupModel, ["batch_size", "input_size", "cores", "model"] + hw),
                              ("work model on warm-up", WorkLatencyModel, ["batch_size", "model", "input_size", "cores"])):
        errs = []
        for rep in range(3):
            for train, test in KFold(5, shuffle=True, random_state=rep).split(frame):
                model = make().fit(frame.iloc[train][cols].reset_index(drop=True), y[train])
                p = model.predict(frame.iloc[test][cols].reset_index(drop=True))
                errs.append(np.abs(p - y[test]) / y[test])
        err = np.concatenate(errs)
        out.append({"protocol": "warmup_cv", "data": "measured (both)", "method": label, "n": len(y),
                    "mape_pct": 100 * float(err.mean()), "max_ape_pct": 100 * float(err.max())})
    # structure by runtime: warm-up = (first run of a fresh session) = ratio per model x the latency of the point;
    # "predicted": the latency from the work model fitted in-fold; "oracle": the point's own measured latency
    lat = frame["latency_ms"].to_numpy()
    cols = ["batch_size", "model", "input_size", "cores"]
    for label in ("ratio x predicted latency", "ratio x measured latency (oracle)"):
        errs = []
        for rep in range(3):
            for train, test in KFold(5, shuffle=True, random_state=rep).split(frame):
                ratio = pd.Series(y[train] / lat[train]).groupby(frame["model"].to_numpy()[train]).median()
                r = frame["model"].iloc[test].map(ratio).to_numpy()
                if label.startswith("ratio x predicted"):
                    base = WorkLatencyModel().fit(frame.iloc[train][cols].reset_index(drop=True), lat[train])
                    base = base.predict(frame.iloc[test][cols].reset_index(drop=True))
                else:
                    base = lat[test]
                errs.append(np.abs(r * base - y[test]) / y[test])
        err = np.concatenate(errs)
        out.append({"protocol": "warmup_cv", "data": "measured (both)", "method": label, "n": len(y),
                    "mape_pct": 100 * float(err.mean()), "max_ape_pct": 100 * float(err.max())})
    # the noise of one measurement: two runs of the same point a few ms apart (median vs p99 of steady state)
    spread = frame["latency_p99_ms"] / frame["latency_ms"] if "latency_p99_ms" in frame else pd.Series([np.nan])
    out.append({"protocol": "warmup_cv", "data": "measured (both)", "method": "steady-state p99 / median - 1",
                "n": len(frame), "mape_pct": 100 * float((spread - 1).median()),
                "max_ape_pct": 100 * float((spread - 1).max())})
    return out


FIELDS = ["protocol", "data", "method", "n", "mape_pct", "max_ape_pct", "too_large", "ratio_median", "ratio_min",
          "ratio_max"]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    lat = pd.DataFrame([r for r in rows if r["protocol"] in ("lobo", "batch_x4", "size_interior", "size_top")])
    protocols = list(dict.fromkeys(lat["protocol"]))
    fig, axes = plt.subplots(1, len(protocols), figsize=(4.2 * len(protocols), 4.2), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        part = lat[lat.protocol == protocol].pivot(index="data", columns="method", values="mape_pct")
        part = part[[m for m in METHODS if m in part.columns]]
        part.plot.bar(ax=ax, width=0.8)
        ax.set_title(protocol)
        ax.set_ylabel("MAPE %")
        ax.set_yscale("log")
        ax.tick_params(axis="x", labelsize=7, rotation=60)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| protocol | data | work | hinge (old) | line in batch | line in batch x pixels |", "|---|---|---|---|---|---|"]
    lat = pd.DataFrame([r for r in rows if "mape_pct" in r and r["protocol"] != "warmup_cv"])
    for (protocol, data), part in lat.groupby(["protocol", "data"], sort=False):
        cell = {r.method: f"{r.mape_pct:.1f} (max {r.max_ape_pct:.0f})" for r in part.itertuples()}
        lines.append(f"| {protocol} | {data} | " + " | ".join(cell.get(m, "-") for m in METHODS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="*", default=sorted(glob.glob(str(ROOT / "profiles" / "*.csv"))))
    args = parser.parse_args(argv)
    measured = [p for p in args.profiles if Path(p).stem.startswith("measured_")]
    rows = latency_rows(args.profiles) + max_batch_rows(measured) + warmup_rows(measured)
    write_csv(rows, FIELDS, RESULTS / "bench_models.csv")
    plot(rows, RESULTS / "bench_models.png")
    print(markdown(rows))
    for r in rows:
        if r["protocol"] in ("max_batch", "warmup_cv"):
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
