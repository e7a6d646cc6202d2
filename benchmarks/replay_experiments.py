"""Replay InfAdapter's and IPA's workloads against servopt and the baseline policies.

    python benchmarks/replay_experiments.py              # both settings, seeds 0, 1, 2
    python benchmarks/replay_experiments.py --seeds 1    # one seed (quicker)

InfAdapter's setting: ``examples/variant_selection_infadapter_fit.yaml`` (ResNet-18..152, th(n) = floor(0.8 (a n +
b)), 20 cores), the 21-minute Twitter window
``data/infadapter/twitter_window_day15_min82-103_per_second.txt``, a decision every 30 s, SLO 750 ms,
new cores serving after the model's load time (make-before-break). Two forecasters: ``ewma`` (InfAdapter's own
before its LSTM has 10 minutes of history: EWM of per-minute peaks, span 10, +10 %, scale-down held for 4
decisions = 120 s) and ``max60`` (peak of the last 60 s, +10 %, the same
scale-down hold). Policies: servopt, ms+, greedy, static (planned once for the window's peak).

IPA's setting: ``examples/pipeline_video.yaml`` (YOLOv5 -> ResNet, SLA 2 s, alpha 2 / beta 1 / delta 1e-6, sum of
rank-normalised accuracies), the four windows ``data/ipa/traces/twitter_slice_*_damping8.csv``, a
decision every 10 s, forecast = peak of the last 120 s (IPA's ``max`` predictor). Policies: servopt (IPA's
exact formulation), fa2 (FA2-low: YOLOv5n + ResNet18 fixed), fa2-high (YOLOv5x + ResNet152 fixed), rim (3
replicas per stage fixed), greedy, static.

Writes under ``benchmarks/results/``: ``replay_infadapter.csv`` and ``replay_ipa.csv`` (one row per setting and
policy: means over seeds, and the spread of the SLO-violation rate), ``replay_*_series.csv`` (per decision
interval, seed 0), and ``replay_infadapter.png`` / ``replay_ipa.png`` (also under ``docs/img/``).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "data"

import servopt  # noqa: E402
from servopt.serving.adapt import EWMA, WindowMax, replay  # noqa: E402

INF_TRACE = DATA / "infadapter" / "twitter_window_day15_min82-103_per_second.txt"
IPA_WINDOWS = ("bursty", "steady_low", "steady_high", "fluctuating")
METRICS = ("slo_violation_rate", "dropped", "p99_ms", "mean_ms", "average_accuracy", "mean_cores", "core_seconds",
           "mean_objective", "reconfigurations", "decision_mean_ms", "decision_max_ms", "requests")


def infadapter_runs() -> list[tuple[dict[str, str], dict[str, Any]]]:
    forecasters = {
        "ewma": EWMA(span=10, bucket_s=60, margin=0.1),
        "max60": WindowMax(window_s=60, margin=0.1),
    }
    runs = []
    for fname, fc in forecasters.items():
        for policy in ("servopt", "ms+", "greedy", "static"):
            runs.append(({"forecaster": fname, "policy": policy}, dict(
                policy=policy, interval_s=30, forecaster=fc, slo_ms=750, scale_down_delay_s=120,
                apply_delay="load")))
    return runs


def ipa_runs() -> list[tuple[dict[str, str], dict[str, Any]]]:
    policies = {"servopt": ("servopt", None), "fa2": ("fa2", None), "fa2-high": ("fa2", {"variants": "highest"}),
                "rim": ("rim", None), "greedy": ("greedy", None), "static": ("static", None)}
    runs = []
    for window in IPA_WINDOWS:
        for label, (policy, options) in policies.items():
            runs.append(({"window": window, "policy": label}, dict(
                policy=policy, policy_options=options, label=label, interval_s=10, forecaster=WindowMax(120),
                trace=DATA / "ipa" / "traces" / f"twitter_slice_{window}_damping8.csv")))
    return runs


def run_setting(problem: Any, runs: list[tuple[dict[str, str], dict[str, Any]]], trace: Path | None,
                seeds: list[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    summary, series_rows, series_by_key = [], [], {}
    for key, kw in runs:
        kw = dict(kw)
        tr = kw.pop("trace", trace)
        results = []
        for seed in seeds:
            t0 = time.perf_counter()
            results.append(replay(problem, tr, seed=seed, **kw))
            print(f"  {key} seed {seed}: {time.perf_counter() - t0:.1f} s", flush=True)
        rows = [r.summary() for r in results]
        out: dict[str, Any] = dict(key)
        for m in METRICS:
            vals = [float(r[m]) for r in rows if r[m] is not None and not math.isnan(float(r[m]))]
            out[m] = statistics.fmean(vals) if vals else math.nan
        viol = [float(r["slo_violation_rate"]) for r in rows]
        out["slo_violation_rate_min"] = min(viol)
        out["slo_violation_rate_max"] = max(viol)
        out["seeds"] = len(seeds)
        summary.append(out)
        series = results[0].series()
        series_by_key[tuple(key.values())] = series
        for i in range(series["start_s"].size):
            series_rows.append({**key, **{k: _num(series[k][i]) for k in (
                "start_s", "observed_rps", "forecast_rps", "cores", "violations", "p99_ms", "accuracy")}})
        print(f"{key}: violations {100 * out['slo_violation_rate']:.2f} %, accuracy {out['average_accuracy']:.4f}, "
              f"cores {out['mean_cores']:.2f}, reconfigurations {out['reconfigurations']:.1f}", flush=True)
    return summary, series_rows, series_by_key


def _num(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float):
        return "" if math.isnan(v) else round(v, 6)
    return v


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for row in rows:
            w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)


def _save(fig: Any, name: str) -> None:
    for d in (ROOT / "benchmarks" / "results", ROOT / "docs" / "img"):
        d.mkdir(parents=True, exist_ok=True)
        fig.savefig(d / name, dpi=110)


def plot_infadapter(summary: list[dict[str, Any]], series: dict[Any, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = ("servopt", "ms+", "greedy", "static")
    colors = dict(zip(policies, ("tab:blue", "tab:orange", "tab:green", "tab:gray")))
    styles = dict(zip(policies, ({"lw": 3.0, "alpha": 0.6}, {"ls": "--"}, {"ls": ":", "lw": 2.0}, {"ls": "-."})))
    fig, axes = plt.subplots(2, 4, figsize=(18, 7.5))
    for row, fname in enumerate(("ewma", "max60")):
        load_ax, cores_ax, viol_ax, acc_ax = axes[row]
        s0 = series[(fname, "servopt")]
        t = s0["start_s"] / 60
        load_ax.step(t, s0["observed_rps"], where="post", color="k", label="observed (mean per 30 s)")
        load_ax.step(t, s0["forecast_rps"], where="post", color="tab:blue", label="forecast (same for every policy)")
        load_ax.set_title(f"load, forecaster {fname}")
        load_ax.set_ylabel("RPS")
        load_ax.legend(fontsize=8)
        for p in policies:
            s = series[(fname, p)]
            cores_ax.step(t, s["cores"], where="post", color=colors[p], label=p, **styles[p])
            viol_ax.step(t, 100 * s["violations"], where="post", color=colors[p], label=p, **styles[p])
            acc_ax.step(t, s["accuracy"], where="post", color=colors[p], label=p, **styles[p])
        cores_ax.set_title("cores")
        viol_ax.set_title("SLO violations per interval (%)")
        acc_ax.set_title("average accuracy")
        cores_ax.legend(fontsize=8)
        for ax in axes[row]:
            ax.set_xlabel("minute")
    fig.suptitle("InfAdapter's setting: 21-minute Twitter window, decisions every 30 s, SLO 750 ms, 20 cores")
    fig.tight_layout()
    _save(fig, "replay_infadapter.png")
    plt.close(fig)


def plot_ipa(summary: list[dict[str, Any]], series: dict[Any, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    policies = ("servopt", "fa2", "fa2-high", "rim", "greedy", "static")
    colors = dict(zip(policies, ("tab:blue", "tab:orange", "tab:red", "tab:purple", "tab:green", "tab:gray")))
    styles = dict(zip(policies, ({"lw": 3.0, "alpha": 0.6}, {"ls": "--"}, {"lw": 3.0, "alpha": 0.6}, {},
                                 {"ls": ":", "lw": 2.0}, {"ls": "-."})))
    fig, axes = plt.subplots(2, 4, figsize=(18, 7.5))
    metrics = (("slo_violation_rate", "SLO violations (%)", 100), ("average_accuracy", "accuracy (sum of ranks)", 1),
               ("mean_cores", "mean cores", 1), ("reconfigurations", "reconfigurations", 1))
    x = np.arange(len(IPA_WINDOWS))
    width = 0.8 / len(policies)
    for ax, (m, title, scale) in zip(axes[0], metrics):
        for i, p in enumerate(policies):
            vals = [scale * next(r[m] for r in summary if r["window"] == w and r["policy"] == p) for w in IPA_WINDOWS]
            ax.bar(x + (i - len(policies) / 2 + 0.5) * width, vals, width, color=colors[p], label=p)
        ax.set_xticks(x, [w.replace("_", " ") for w in IPA_WINDOWS])
        ax.set_title(title)
        if m == "mean_cores":
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    s0 = series[("bursty", "servopt")]
    t = s0["start_s"] / 60
    axes[1][0].step(t, s0["observed_rps"], where="post", color="k", label="observed (mean per 10 s)")
    axes[1][0].step(t, s0["forecast_rps"], where="post", color="tab:blue", label="forecast (max of 120 s)")
    axes[1][0].set_title("bursty window: load")
    axes[1][0].legend(fontsize=8)
    for p in policies:
        s = series[("bursty", p)]
        axes[1][1].step(t, s["cores"], where="post", color=colors[p], label=p, **styles[p])
        axes[1][2].step(t, 100 * s["violations"], where="post", color=colors[p], label=p, **styles[p])
        axes[1][3].step(t, s["accuracy"], where="post", color=colors[p], label=p, **styles[p])
    axes[1][1].set_yscale("log")
    axes[1][1].legend(fontsize=8)
    axes[1][1].set_title("bursty: cores")
    axes[1][2].set_title("bursty: SLO violations per interval (%)")
    axes[1][3].set_title("bursty: accuracy")
    for ax in axes[1]:
        ax.set_xlabel("minute")
    fig.suptitle("IPA's setting: video pipeline (YOLOv5 -> ResNet), four Twitter windows, decisions every 10 s, "
                 "SLA 2 s")
    fig.tight_layout()
    _save(fig, "replay_ipa.png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    parser.add_argument("--only", choices=("infadapter", "ipa"), default=None)
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    out = ROOT / "benchmarks" / "results"
    if args.only in (None, "infadapter"):
        problem = servopt.load_problem(ROOT / "examples" / "variant_selection_infadapter_fit.yaml")
        summary, rows, series = run_setting(problem, infadapter_runs(), INF_TRACE, seeds)
        write_csv(out / "replay_infadapter.csv", summary)
        write_csv(out / "replay_infadapter_series.csv", rows)
        plot_infadapter(summary, series)
    if args.only in (None, "ipa"):
        problem = servopt.load_problem(ROOT / "examples" / "pipeline_video.yaml")
        summary, rows, series = run_setting(problem, ipa_runs(), None, seeds)
        write_csv(out / "replay_ipa.csv", summary)
        write_csv(out / "replay_ipa_series.csv", rows)
        plot_ipa(summary, series)
    print(f"wrote replay_*.csv under {out} and replay_*.png under docs/img/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
