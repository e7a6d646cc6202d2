"""Issue 19: how servopt's performance models generalise, on held-out protocols over the shipped data.

    python benchmarks/bench_models.py            # a few minutes on 2 busy cores
    python benchmarks/bench_models.py --quick    # one H200 profile, a few seconds, into a temporary folder

Data: every shipped profile, ``profiles/*.csv``: NVIDIA's published tables (restated from ``data/published/``),
the two CPU profiles measured by servopt's profiler on a shared 2-vCPU machine, and the four H200 profiles measured
by ``servopt profile --runtime torch`` (``measured_H200_{resnet50,mobilenet_v3_large}_{fp32,fp16}.csv``, input sizes
224, 320, 448 x batch 1..256, plus the out-of-memory boundary under 8192 MiB, ``profiles/max_batch_H200.csv``).
Nothing here was used to choose a model parameter: the work model's rules (elasticity 1/2 beyond a floor-only
sweep, slopes carried by FP16 peak ratio) and the memory model's (rows above half the limit left out, the spread
of the calibration ratios held back once more) are fixed by reasoning (``servopt/performance/work_latency.py``,
``servopt/performance/memory.py``).

Latency protocols (MAPE on the held-out rows; every model and baseline sees the same training rows; only the
batch sizes profiled at every input size of a family, so the rows of an out-of-memory search stay out):

* ``lobo``: leave one batch size out of every profile (in-grid; the smallest and largest batch are edges);
* ``batch_x4``: per configuration, fit on batches <= 1/4 of its largest batch, predict the larger ones
  (up to 4x beyond the profiled range; on the H200 profiles: fit on <= 64, predict 128 and 256);
* ``size_interior``: hold out one interior input size (profiles with three or more sizes per family), fit on
  the others;
* ``size_top``: hold out the largest input size, fit on the others (H200: fit 224 and 320, predict 448, 1.4x
  beyond the range; CPU profiles: fit 64-320, predict 512, 1.6x);
* ``size_bottom``: hold out the smallest input size, fit on the others (H200: fit 320 and 448, predict 224).

``lobo_clean``: the ``lobo`` predictions scored only on the points whose measurement is not above a larger
batch's measurement of the same configuration (a point above one at a larger batch is noise by at least the
difference, which no model that is monotone in batch can follow: the noise floor of ``lobo``).

Models: ``work`` (:class:`~servopt.performance.WorkLatencyModel`, the default: in-grid curve chosen per
configuration by nested cross-validation), ``work_hinge`` (the same with ``in_grid="hinge"``: every configuration's
own soft hinge in-grid, the default before), ``hinge``
(:class:`~servopt.performance.LatencyModel`, before issue 19); baselines: ``line_batch`` (a least-squares line in
batch per configuration; for an unprofiled input size, per family) and ``line_bxp`` (a least-squares line in
batch x input_size^2 per family: model, variant, hardware, cores, labels).

Largest batch, ``max_batch_loso`` (H200): per model/dtype, leave one input size out: the memory model is fitted on
the other two sizes' rows and calibrated on their out-of-memory boundaries, and predicts the held-out size's
largest batch under 8192 MiB, compared with ``max_batch_H200.csv`` (12 cases). Methods: ``reserved +
calibration`` (``MaxBatchModel(structure="family", oom_limit_mb=8192)`` + ``calibrate``, servopt's default), the
same uncalibrated, the same fitted on allocated memory (``hw.torch/allocated_peak_mb``) uncalibrated, and the
model before issue 19 (``structure="line"``). ``max_batch_cap``: the 4096 MiB boundary measured by the command
line for resnet50 fp16 at 224 px (664; ``measured_H200_resnet50_fp16_cli_max_batch.csv``), predicted from the
8192 MiB fit (with 224 px held out, and with every size). 16384 MiB: no boundary was measured (every profiled row
stays below 8192 MiB), so no case. ``max_batch`` (CPU profiles): the bracketed protocol of the first issue-19
round (truth bracketed by the grid, memory fitted on batches <= 16).

Warm-up protocol ``warmup_cv``: 5-fold x 3 cross-validation on the measured CPU profiles (as
``benchmarks/warmup_features.py``), LightGBM on every feature vs the work model fitted on warm-up.

Writes ``bench_models.csv`` (one row per protocol, data set and method), ``bench_models_max_batch.csv`` and
``bench_models.png`` under ``--out-dir`` (default ``benchmarks/results/``) with a copy of the PNG in ``--img-dir``
(default ``docs/img/``), and prints the table for ``docs/performance-models.md``. ``--quick`` writes to a new
temporary folder (named on stderr) and makes no copy, unless ``--out-dir`` / ``--img-dir`` are given.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, image_dir, output_dir, pyplot, save_figure, write_csv  # noqa: E402

ID = ["model", "variant", "hardware", "input_size", "cores", "precision", "framework"]


def _load(path: str) -> pd.DataFrame:
    from servopt.profiles import load_profile

    frame = load_profile([path]).frame
    return frame[frame["latency_ms"].notna()].reset_index(drop=True)


def _grid(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose batch size was profiled at every input size of their family: the profiled grid, without the
    rows an out-of-memory search measured at one input size only."""
    if "input_size" not in frame:
        return frame
    family = _family(frame)
    sizes = frame.groupby(family)["input_size"].transform("nunique")
    shared = frame.groupby([family, frame["batch_size"]])["input_size"].transform("nunique")
    return frame[shared == sizes].reset_index(drop=True)


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
    for name, model in (("work", WorkLatencyModel()), ("work_hinge", WorkLatencyModel(in_grid="hinge")),
                        ("hinge", LatencyModel())):
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
        top = np.unique(sizes)[-1]
        return [(sizes < top, sizes == top)]
    if protocol == "size_bottom":
        bottom = np.unique(sizes)[0]
        return [(sizes > bottom, sizes == bottom)]
    raise ValueError(protocol)


METHODS = ("work", "work_hinge", "hinge", "line_batch", "line_bxp")


LATENCY_PROTOCOLS = ("lobo", "batch_x4", "size_interior", "size_top", "size_bottom")


def latency_rows(paths: list[str], protocols: tuple[str, ...] = LATENCY_PROTOCOLS) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        frame = _grid(_load(path))
        name = Path(path).stem
        clean_rows = _not_above_larger(frame)
        for protocol in protocols:
            ys, cleans, preds = [], [], {m: [] for m in METHODS}
            for train, test in _splits(frame, protocol):
                if not train.any() or not test.any():
                    continue
                got = _score(frame[train].reset_index(drop=True), frame[test].reset_index(drop=True))
                ys.append(frame["latency_ms"][test].to_numpy())
                cleans.append(clean_rows[test])
                for m in METHODS:
                    preds[m].append(got[m])
            if not ys:
                continue
            y = np.concatenate(ys)
            clean = np.concatenate(cleans)
            for m in METHODS:
                p = np.concatenate(preds[m])
                err = np.abs(p - y) / y
                scored = [(protocol, err)] + ([("lobo_clean", np.where(clean, err, np.nan))]
                                              if protocol == "lobo" else [])
                for label, e in scored:
                    rows.append({"protocol": label, "data": name, "method": m, "n": int(np.isfinite(e).sum()),
                                 "mape_pct": 100 * float(np.nanmean(e)), "max_ape_pct": 100 * float(np.nanmax(e))})
    return rows


def _not_above_larger(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose latency is not above the measurement at any larger batch of their configuration."""
    cfg = _config(frame).to_numpy()
    b = frame["batch_size"].to_numpy(dtype=float)
    y = frame["latency_ms"].to_numpy(dtype=float)
    out = np.ones(len(frame), dtype=bool)
    for i in range(len(frame)):
        later = (cfg == cfg[i]) & (b > b[i])
        out[i] = not later.any() or y[i] <= y[later].min()
    return out


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
            if not ratios.size:  # no cap falls inside this profile's grid
                continue
            out.append({"protocol": "max_batch", "data": Path(path).stem, "method": label, "n": len(ratios),
                        "too_large": int(above), "ratio_median": float(np.median(ratios)),
                        "ratio_min": float(ratios.min()), "ratio_max": float(ratios.max())})
    return out


H200_COLS = ["batch_size", "model", "variant", "hardware", "input_size"]
H200_LIMIT_MB = 8192.0
MAX_BATCH_METHODS = ("reserved + calibration", "reserved, uncalibrated", "allocated, uncalibrated", "line (old)")


def _memory_model(method: str, train: pd.DataFrame) -> Any:
    from servopt.performance import MaxBatchModel
    from servopt.performance.memory import boundaries_from_profile

    column = "hw.torch/allocated_peak_mb" if method.startswith("allocated") else "memory_mb"
    structure = "line" if method == "line (old)" else "family"
    limit = None if method == "line (old)" else H200_LIMIT_MB
    model = MaxBatchModel(structure=structure, oom_limit_mb=limit).fit(train[H200_COLS], train[column].to_numpy())
    if method == "reserved + calibration":
        model.calibrate(*boundaries_from_profile(train, H200_COLS))
    return model


def _summary(protocol: str, data: str, method: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    ratio = np.array([c["predicted"] / c["truth"] for c in cases])
    margins = [c["margin"] for c in cases if c.get("margin") is not None and not pd.isna(c["margin"])]
    return {"protocol": protocol, "data": data, "method": method, "n": len(cases),
            "too_large": int(np.sum(ratio > 1)), "ratio_median": float(np.median(ratio)),
            "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
            "margin_min": float(min(margins)) if margins else None,
            "margin_max": float(max(margins)) if margins else None}


def h200_max_batch_rows(paths: list[str], truth_path: Path, cli_path: Path | None = None,
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Leave one input size out on the H200 profiles (8192 MiB), and the 4096 MiB boundary of the command line.

    Returns the summary rows (per data set and method, and pooled) and one row per case."""
    truth = pd.read_csv(truth_path)
    cases: list[dict[str, Any]] = []
    for path in paths:
        frame = _load(path)
        name, dtype = str(frame["model"].iloc[0]), str(frame["precision"].iloc[0])
        limit_rows = truth[(truth.model == name) & (truth.dtype == dtype)].set_index("input_size")["max_batch"]
        for held_out in sorted(frame["input_size"].unique()):
            train = frame[frame.input_size != held_out]
            for method in MAX_BATCH_METHODS:
                model = _memory_model(method, train)
                got = model.max_batch(held_out, H200_LIMIT_MB, model=name, variant=f"{name}-{dtype}",
                                      hardware="H200")
                cases.append({"protocol": "max_batch_loso", "data": Path(path).stem, "method": method,
                              "input_size": int(held_out), "limit_mb": H200_LIMIT_MB, "predicted": got,
                              "truth": int(limit_rows[held_out]), "margin": model.oom_margin_})
        if cli_path is not None and cli_path.is_file() and (name, dtype) == ("resnet50", "fp16"):
            cli = _load(str(cli_path))
            size, limit = int(cli["input_size"].iloc[0]), 4096.0
            true_4096 = int(cli["oom_batch_size"].iloc[0]) - 1
            for label, train in (("224 px held out", frame[frame.input_size != size]), ("every size", frame)):
                model = _memory_model("reserved + calibration", train)
                got = model.max_batch(size, limit, model=name, variant=f"{name}-{dtype}", hardware="H200")
                cases.append({"protocol": "max_batch_cap", "data": f"{Path(path).stem} 4096 MiB",
                              "method": f"reserved + calibration ({label})", "input_size": size,
                              "limit_mb": limit, "predicted": got, "truth": true_4096, "margin": model.oom_margin_})
    rows = []
    table = pd.DataFrame(cases)
    for (protocol, data, method), part in table.groupby(["protocol", "data", "method"], sort=False):
        rows.append(_summary(protocol, data, method, part.to_dict("records")))
    loso = table[table.protocol == "max_batch_loso"]
    for method, part in loso.groupby("method", sort=False):
        rows.append(_summary("max_batch_loso", "H200, every case", method, part.to_dict("records")))
    return rows, cases


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
          "ratio_max", "margin_min", "margin_max", "seconds", "ratio"]


def _large_profile(seed: int = 0) -> pd.DataFrame:
    """A synthetic profile larger than any shipped one: 8 models x 2 GPUs x 4 input sizes x 12 batch sizes
    (64 configurations, 768 rows), a floor plus a roofline in batch x pixels with 5 % noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(8):
        for hw in ("A100", "H100"):
            floor, per_px = 1.0 + m, (1 + m) * (2e-6 if hw == "A100" else 1e-6)
            for size in (160, 224, 320, 448):
                for b in 2 ** np.arange(12):
                    lat = max(floor, 0.3 * floor + per_px * b * size * size) * np.exp(rng.normal(0, 0.05))
                    rows.append({"batch_size": float(b), "model": f"m{m}", "hardware": hw,
                                 "input_size": float(size), "latency_ms": float(lat)})
    return pd.DataFrame(rows)


@contextlib.contextmanager
def _in_grid_default(rule: str) -> Any:
    """``servopt fit``'s latency model (``make_model`` imports ``servopt.performance.WorkLatencyModel``) with
    ``in_grid=rule``, for the duration."""
    import servopt.performance as perf

    cls = perf.WorkLatencyModel
    perf.WorkLatencyModel = lambda *a, **k: cls(*a, **{"in_grid": rule, **k})
    try:
        yield
    finally:
        perf.WorkLatencyModel = cls


def fit_time_rows(repeats: int = 1) -> list[dict[str, Any]]:
    """Seconds of ``servopt fit``'s latency step (``fit_profile``: the final fit and leave one batch size out)
    with the in-grid choice (``select``) and without (``hinge``), side by side in this run (best of
    ``repeats``); and of one ``WorkLatencyModel.fit`` on a large synthetic profile."""
    import time

    from servopt.performance import WorkLatencyModel
    from servopt.performance.evaluate import fit_profile
    from servopt.profiles import load_profile

    prof = ROOT / "profiles"
    sets = {"issue profiles (2 NVIDIA files)": ["nvidia_efficientnet_pytorch.csv", "nvidia_resnet50_triton.csv"],
            "H200 profiles (4)": [f"measured_H200_{m}_{d}.csv" for m in ("resnet50", "mobilenet_v3_large")
                                  for d in ("fp32", "fp16")]}
    out = []
    for name, files in sets.items():
        frame = load_profile([str(prof / f) for f in files]).frame
        took = {}
        for rule in ("hinge", "select") * repeats:
            start = time.perf_counter()
            with _in_grid_default(rule):
                fit_profile(frame, targets=["latency"])
            took[rule] = min(took.get(rule, np.inf), time.perf_counter() - start)
        for rule in ("hinge", "select"):
            out.append({"protocol": "fit_time", "data": f"servopt fit, {name}", "method": rule,
                        "n": len(frame), "seconds": took[rule], "ratio": took[rule] / took["hinge"]})
    large = _large_profile()
    cols = ["batch_size", "model", "hardware", "input_size"]
    took = {}
    for rule in ("hinge", "select") * repeats:
        start = time.perf_counter()
        WorkLatencyModel(in_grid=rule).fit(large[cols], large["latency_ms"].to_numpy())
        took[rule] = min(took.get(rule, np.inf), time.perf_counter() - start)
    for rule in ("hinge", "select"):
        out.append({"protocol": "fit_time", "data": "WorkLatencyModel.fit, synthetic 768 rows / 64 configurations",
                    "method": rule, "n": len(large), "seconds": took[rule], "ratio": took[rule] / took["hinge"]})
    return out
CASE_FIELDS = ["protocol", "data", "method", "input_size", "limit_mb", "predicted", "truth", "margin"]


def plot(rows: list[dict[str, Any]], cases: list[dict[str, Any]], paths: list[Path]) -> None:
    plt = pyplot()
    lat = pd.DataFrame([r for r in rows if r["protocol"] in LATENCY_PROTOCOLS])
    protocols = list(dict.fromkeys(lat["protocol"])) if len(lat) else []
    panels = len(protocols) + bool(cases)
    fig, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 4.6), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        part = lat[lat.protocol == protocol].pivot(index="data", columns="method", values="mape_pct")
        part = part[[m for m in METHODS if m in part.columns]]
        part.index = [d.replace("measured_", "").replace("nvidia_", "nv ") for d in part.index]
        part.plot.bar(ax=ax, width=0.8)
        ax.axhline(10 if protocol != "lobo" else 5, color="k", lw=0.8, ls="--")
        ax.set_title(protocol)
        ax.set_ylabel("MAPE % (dashed: target)")
        ax.set_yscale("log")
        ax.tick_params(axis="x", labelsize=6, rotation=70)
        ax.legend(fontsize=7)
    if cases:
        ax = axes[0][-1]
        table = pd.DataFrame(cases)
        for i, (method, part) in enumerate(table.groupby("method", sort=False)):
            ax.scatter(part["truth"], part["predicted"] / part["truth"], s=18, label=method, color=f"C{i}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.9, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("measured largest batch (H200, held-out input size)")
        ax.set_ylabel("predicted / measured (above 1: out of memory)")
        ax.set_title("largest batch")
        ax.legend(fontsize=6)
    fig.tight_layout()
    for path in paths:
        save_figure(fig if path == paths[-1] else _copy(fig), path)


def _copy(fig: Any) -> Any:
    """The same figure again (``save_figure`` closes what it saves)."""
    import io
    import pickle

    buffer = io.BytesIO()
    pickle.dump(fig, buffer)
    buffer.seek(0)
    return pickle.load(buffer)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| protocol | data | work | work, in-grid hinge (before) | hinge (old) | line in batch | "
             "line in batch x pixels |", "|---|---|---|---|---|---|---|"]
    lat = pd.DataFrame([r for r in rows if r["protocol"] in LATENCY_PROTOCOLS + ("lobo_clean",)])
    for (protocol, data), part in (lat.groupby(["protocol", "data"], sort=False) if len(lat) else []):
        cell = {r.method: f"{r.mape_pct:.1f} (max {r.max_ape_pct:.0f})" for r in part.itertuples()}
        lines.append(f"| {protocol} | {data} | " + " | ".join(cell.get(m, "-") for m in METHODS) + " |")
    lines += ["", "| protocol | data | method | cases | above the truth | predicted / measured: median, min-max | "
              "oom_margin |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["protocol"].startswith("max_batch"):
            margin = "-" if r.get("margin_min") is None else \
                f"{r['margin_min']:+.3f} to {r['margin_max']:+.3f}"
            lines.append(f"| {r['protocol']} | {r['data']} | {r['method']} | {r['n']} | {r['too_large']} | "
                         f"{r['ratio_median']:.3f}, {r['ratio_min']:.3f}-{r['ratio_max']:.3f} | {margin} |")
    timing = [r for r in rows if r["protocol"] == "fit_time"]
    if timing:
        lines += ["", "| fit time | rows | in-grid hinge (s) | in-grid choice (s) | ratio |", "|---|---|---|---|---|"]
        for hinge, select in zip(timing[::2], timing[1::2]):
            lines.append(f"| {hinge['data']} | {hinge['n']} | {hinge['seconds']:.2f} | {select['seconds']:.2f} | "
                         f"{select['ratio']:.2f} |")
    return "\n".join(lines)


def _profiles(quick: bool) -> tuple[list[str], list[str], list[str]]:
    """Latency profiles, H200 memory profiles, CPU measured profiles."""
    prof = ROOT / "profiles"
    h200 = [str(prof / f"measured_H200_{m}_{d}.csv") for m in ("resnet50", "mobilenet_v3_large")
            for d in ("fp32", "fp16")]
    if quick:
        return h200[:1], h200[:1], []
    cpu = sorted(glob.glob(str(prof / "measured_*_like.csv")))
    return sorted(glob.glob(str(prof / "nvidia_*.csv"))) + cpu + h200, h200, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one H200 profile, lobo and size_top only (a test)")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for the CSV and PNG files (default "
                        "benchmarks/results; with --quick a new temporary folder)")
    parser.add_argument("--img-dir", type=Path, default=None,
                        help="folder for a copy of the PNG (default docs/img; none with --quick)")
    args = parser.parse_args(argv)
    args.out_dir = output_dir(args.out_dir, quick=args.quick, name="bench_models", flag="--out-dir")
    args.img_dir = image_dir(args.img_dir, quick=args.quick)
    latency, h200, cpu = _profiles(args.quick)
    protocols = ("lobo", "size_top") if args.quick else LATENCY_PROTOCOLS
    rows = latency_rows(latency, protocols)
    mb_rows, cases = h200_max_batch_rows(h200, ROOT / "profiles" / "max_batch_H200.csv",
                                         ROOT / "profiles" / "measured_H200_resnet50_fp16_cli_max_batch.csv")
    rows += mb_rows
    if cpu:
        rows += max_batch_rows(cpu) + warmup_rows(cpu)
    if not args.quick:
        rows += fit_time_rows()
    write_csv(rows, FIELDS, args.out_dir / "bench_models.csv")
    write_csv(cases, CASE_FIELDS, args.out_dir / "bench_models_max_batch.csv")
    images = [args.out_dir / "bench_models.png"] + ([] if args.img_dir is None else [args.img_dir / "bench_models.png"])
    plot(rows, cases, images)
    print(markdown(rows))
    for r in rows:
        if r["protocol"] in ("max_batch", "warmup_cv"):
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
    print(f"wrote bench_models.csv, bench_models_max_batch.csv and bench_models.png under {args.out_dir}"
          + ("" if args.img_dir is None else f" (copy of the PNG in {args.img_dir})"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
