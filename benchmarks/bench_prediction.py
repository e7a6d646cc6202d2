"""Prediction error of servopt's performance models on held-out points of every shipped profile and reference data set.

Profiles:

* shipped, ``profiles/*.csv``: the published NVIDIA tables restated in servopt's schema (``nvidia_*``, from
  data/published) and the profiles measured by servopt's profiler (``measured_*``);
* reference data shipped in data/: IPA's CPU profiling fragments (data/ipa/profiles, ``read_ipa_profile``) and
  InfAdapter's capacity profiles at every SLA they hold (data/infadapter, ``read_infadapter_capacity``).
  The published batch tables are scored through their shipped restatements; MLPerf (one operating point per
  system) and Triton's per-concurrency table have no batch-size axis, so nothing can be held out there.

For each profile and every target it supports (latency, warm-up, memory, capacity vs cores),
:func:`servopt.performance.evaluate.fit_profile` leaves each batch size (cores, for capacity) out in turn, fits on
the rest and predicts it; a straight line per configuration fitted on the same points is the baseline. Reported:
MAPE and R² over all held-out points, the mean of the per-configuration MAPEs, and the baseline's. SPEC §3's goal
for latency is below 5 % MAPE on held-out batch sizes. Usage::

    python benchmarks/bench_prediction.py [--quick]

Writes ``prediction.csv`` (one row per profile and target, then one per configuration) and ``prediction.png``
under ``--out`` (default ``benchmarks/results/``; with ``--quick`` a new temporary folder, named on stderr).
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, output_dir, pyplot, save_figure, write_csv  # noqa: E402

SHARED = ROOT / "data"
FIELDS = ["profile", "origin", "target", "configuration", "n_points", "n_configurations", "mape", "r2",
          "mean_configuration_mape", "baseline_mape", "baseline_r2", "baseline_mean_configuration_mape", "model",
          "baseline", "fit_s", "note"]


def sources(quick: bool = False) -> list[tuple[str, str, Any]]:
    """(name, origin, loader) for every profile; ``loader()`` returns a :class:`servopt.profiles.ProfileTable`."""
    import csv

    from servopt.profiles import load_profile, read_infadapter_capacity, read_ipa_profile

    out: list[tuple[str, str, Any]] = []
    for path in sorted(glob.glob(str(ROOT / "profiles" / "*.csv"))):
        if Path(path).name.startswith("max_batch_"):  # a summary of OOM searches, not a profile
            continue
        out.append((f"profiles/{Path(path).name}", "shipped", lambda p=path: load_profile(p)))
    for path in sorted(glob.glob(str(SHARED / "ipa" / "profiles" / "*.csv"))):
        out.append((f"ipa/{Path(path).name}", "reference", lambda p=path: read_ipa_profile(p)))
    for path in sorted(glob.glob(str(SHARED / "infadapter" / "capacity_result_*.csv"))):
        with open(path, newline="") as fh:
            slas = sorted({float(r["SLA"]) for r in csv.DictReader(fh)})
        for sla in slas:
            out.append((f"infadapter/{Path(path).name} SLA {sla:g} ms", "reference",
                        lambda p=path, s=sla: read_infadapter_capacity(p, s)))
    if quick:  # one of each kind
        kinds: dict[str, tuple[str, str, Any]] = {}
        for item in out:
            kinds.setdefault(item[0].split("/")[0], item)
        out = list(kinds.values())
    return out


def evaluate(name: str, origin: str, loader: Any) -> list[dict[str, Any]]:
    from servopt.exceptions import ServoptError
    from servopt.performance.evaluate import fit_profile

    try:
        table = loader()
        t0 = time.perf_counter()
        _, reports = fit_profile(table.frame, source=name)
        fit_s = time.perf_counter() - t0
    except ServoptError as exc:
        return [{"profile": name, "origin": origin, "note": f"not scored: {str(exc)[:160]}"}]
    except Exception as exc:  # noqa: BLE001 - a fitting failure is a result of this benchmark, reported per profile
        return [{"profile": name, "origin": origin,
                 "note": f"not scored: fitting failed ({type(exc).__name__}: {str(exc)[:140]})"}]
    if not reports:
        return [{"profile": name, "origin": origin, "fit_s": fit_s,
                 "note": "not scored: no configuration was profiled at two or more batch sizes / core counts"}]
    rows = []
    for target, report in reports.items():
        d = report.to_dict(with_groups=False)
        rows.append({"profile": name, "origin": origin, "target": target, "configuration": "all",
                     "n_points": d["n_points"], "n_configurations": d["n_groups"], "mape": _num(d["mape"]),
                     "r2": _num(d["r2"]), "mean_configuration_mape": _num(d["mean_group_mape"]),
                     "baseline_mape": _num(d["baseline_mape"]), "baseline_r2": _num(d["baseline_r2"]),
                     "baseline_mean_configuration_mape": _num(d["baseline_mean_group_mape"]), "model": d["model"],
                     "baseline": d["baseline"], "fit_s": fit_s, "note": d["cv"]})
        for group in report.groups:
            m = group.metrics()
            rows.append({"profile": name, "origin": origin, "target": target, "configuration": group.label,
                         "n_points": m["n"], "n_configurations": 1, "mape": _num(m["mape"]), "r2": _num(m["r2"]),
                         "baseline_mape": _num(m["baseline_mape"]), "baseline_r2": _num(m["baseline_r2"])})
    return rows


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one profile of each kind (a smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the CSV and PNG (default "
                        "benchmarks/results; with --quick a new temporary folder)")
    args = parser.parse_args(argv)
    args.out = output_dir(args.out, quick=args.quick, name="bench_prediction")
    rows: list[dict[str, Any]] = []
    for name, origin, loader in sources(args.quick):
        got = evaluate(name, origin, loader)
        rows.extend(got)
        for r in got:
            if r.get("configuration") == "all":
                print(f"{name:58s} {r['target']:9s} n={r['n_points']:4d}  MAPE {100 * r['mape']:6.2f} %  "
                      f"R2 {r['r2']:7.3f}   baseline MAPE {100 * r['baseline_mape']:6.2f} %", flush=True)
            elif "configuration" not in r:
                print(f"{name:58s} {r['note']}", flush=True)
    summary = [r for r in rows if r.get("configuration", "all") == "all"]
    rest = [r for r in rows if r.get("configuration", "all") != "all"]
    write_csv(summary + rest, FIELDS, args.out / "prediction.csv")
    plot(summary, args.out / "prediction.png")
    print(f"wrote {args.out / 'prediction.csv'} and {args.out / 'prediction.png'}")
    return 0


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    scored = [r for r in rows if isinstance(r.get("mape"), float) and math.isfinite(r["mape"])]
    targets = list(dict.fromkeys(r["target"] for r in scored)) or ["latency"]
    counts = [max(1, sum(r["target"] == t for r in scored)) for t in targets]
    fig, axes = plt.subplots(len(targets), 1, figsize=(11, 1.2 * len(targets) + 0.34 * sum(counts)),
                             gridspec_kw={"height_ratios": [c + 1.5 for c in counts]}, squeeze=False)
    for ax, target in zip(axes[:, 0], targets):
        mine = [r for r in scored if r["target"] == target]
        y = list(range(len(mine)))
        ax.barh([i + 0.2 for i in y], [100 * r["mape"] for r in mine], height=0.4, color="C0",
                label=f"servopt {mine[0]['model'] if mine else ''}")
        ax.barh([i - 0.2 for i in y], [100 * r["baseline_mape"] if math.isfinite(r["baseline_mape"]) else 0
                                       for r in mine], height=0.4, color="C7", label="straight-line baseline")
        if target == "latency":
            ax.axvline(5.0, color="r", ls=":", lw=1, label="SPEC §3 goal: 5 %")
        ax.set_yticks(y)
        ax.set_yticklabels([f"{r['profile']} ({r['n_points']})" for r in mine], fontsize=7)
        ax.set_xscale("log")
        ax.set_xlim(1, 300)
        ax.set_title(f"{target}: MAPE on held-out points, % (points per profile in brackets)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
