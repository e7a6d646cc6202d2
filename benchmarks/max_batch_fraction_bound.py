"""How close any usable fraction could bring the CPU largest batch of an unprofiled input size, and why the
shipped one (the smallest left-out ratio) stays below: an analysis of the stored fresh CPU runs, no measuring.

    python benchmarks/max_batch_fraction_bound.py [--sets 20,21,22,23,24] [--out-dir benchmarks/results]

For every held-out case of ``max_batch_check.py --fresh-set N`` (``--quick`` reads the same stored runs: each
input size of a graph held out under each limit, the memory model fitted and calibrated on the other sizes as
``servopt fit`` does), the prediction is ``max b: need(b) <= f x limit``, with ``need`` the family line at the
held-out size and ``f`` the usable fraction. This script computes:

* **the window**: the fractions ``f`` that would give a prediction within 10 % of the scan's truth and not above
  it, ``[need(ceil(0.9 truth)), need(truth + 1)) / limit``;
* **the spread** the calibration sees: the left-out ratios of the training sizes' boundaries (``unprofiled_ratio``
  of :meth:`servopt.performance.MaxBatchModel.calibrate`: each training size's boundary under the family line
  fitted without that size), largest / smallest;
* **an oracle bound**: one fraction per graph and limit, chosen knowing every held-out truth, that puts the most
  of its held-out sizes in their windows (no rule from the training data can do better with one fraction);
* **the spread signal**: the shipped rule's cases split by whether their training sizes' left-out ratios spread
  more than :data:`WINDOW_SPREAD` (``unprofiled_spread`` of ``MaxBatchModel.margins()``; ``servopt fit`` warned
  about it for one commit, until fresh set 25 showed it does not tell the short cases apart);
* **rules from the training boundaries**: the fraction an unprofiled size gets set to the smallest left-out ratio
  (shipped: ``unprofiled_fraction_``), the smallest plus half the way to the median, the median, the mean, the
  second smallest, or the smallest of the boundaries left out between other sizes, each with the shortfall
  beyond the profiled sizes applied as shipped (``MaxBatchModel._beyond``).

Writes ``max_batch_fraction_bound_cases.csv`` (one row per case: window, spread, the shipped fraction) and
``max_batch_fraction_bound.csv`` (per pattern setting and rule: cases, within 10 %, above), prints both tables.
The runs are the ones the docs' tables come from (``benchmarks/results/max_batch_check_fresh*_cpu_rows.csv``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _max_batch import fit_memory_model  # noqa: E402
from _util import RESULTS, write_csv  # noqa: E402

METHOD = "family + calibration"
RULES = ("smallest (shipped)", "smallest + half to median", "median", "mean", "second smallest",
         "smallest between other sizes")
WITHIN = 0.9
#: how far apart (largest / smallest) the fractions that put an unprofiled size's largest batch within 10 % of the
#: one that fits, and not above it, lie: the median over the fresh CPU sets 20-24 (1.11x; 90th percentile
#: 1.13-1.16x); :func:`spread_rows` splits the cases by whether the training sizes' left-out ratios spread wider
WINDOW_SPREAD = 1.11
CASE_FIELDS = ["set", "pattern", "model", "memory_limit_mb", "input_size", "truth", "predicted", "fraction",
               "window_lo", "window_hi", "spread"]
FIELDS = ["pattern", "rule", "cases", "within_10pct", "above"]


def _rule(name: str, records: list[dict[str, Any]]) -> float:
    u = np.array([r["unprofiled_ratio"] for r in records], dtype=float)
    if name == "smallest (shipped)":
        return float(u.min())
    if name == "smallest + half to median":
        return float(u.min() + 0.5 * (np.median(u) - u.min()))
    if name == "median":
        return float(np.median(u))
    if name == "mean":
        return float(u.mean())
    if name == "second smallest":
        return float(np.sort(u)[1]) if len(u) > 1 else float(u.min())
    if name == "smallest between other sizes":
        inside = np.array([r["left_out_beyond"] is None for r in records])
        return float(u[inside].min()) if inside.any() else float(u.min())
    raise ValueError(name)


def _within(frame: pd.DataFrame) -> pd.Series:
    """Whether each row's ``predicted`` is within 10 % of its ``truth`` and not above it."""
    return (frame.predicted <= frame.truth) & (frame.predicted >= np.ceil(WITHIN * frame.truth - 1e-9))


def _query(model: Any, name: str, size: float, batches: np.ndarray) -> pd.DataFrame:
    from max_batch_check import CPU_CORES

    row = {n: name if n == "model" else size if n == "input_size" else float(CPU_CORES) if n == "cores" else 0.0
           for n in model.feature_names_in_}
    return pd.DataFrame([row] * len(batches)).assign(batch_size=batches.astype(float))


def cases_of(stem: str, which: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The cases of one stored run (``max_batch_check_fresh<which>[_nopattern]``) and each rule's prediction."""
    from fresh_cpu import graphs
    from max_batch_check import CPU_CAP, CPU_COLS, with_act_peak

    rows = with_act_peak(pd.read_csv(RESULTS / f"{stem}_cpu_rows.csv"), graphs(which))
    bounds = pd.read_csv(RESULTS / f"{stem}_boundaries.csv")
    pattern = "off" if stem.endswith("_nopattern") else "on"
    cases, predictions = [], []
    for (name, limit), run in rows.groupby(["model", "memory_limit_mb"]):
        found = bounds[(bounds.model == name) & (bounds.memory_limit_mb == limit)]
        for held in sorted(run["input_size"].unique()):
            measured = found[found.input_size == held]
            if measured.empty or measured["first_failure"].isna().all():
                continue
            truth = int(measured["first_failure"].iloc[0]) - 1
            model = fit_memory_model(METHOD, run[run.input_size != held], CPU_COLS, float(limit))
            batches = np.arange(1, 4 * CPU_CAP + 1)
            need = model._rounded_need(model._predict(model._check_predict(_query(model, name, held, batches))))
            query = _query(model, name, held, batches[:1])
            got = model.largest_batch(query, float(limit))
            (family_margins,) = model.margins()  # one graph: one family
            cases.append({"set": which, "pattern": pattern, "model": name, "memory_limit_mb": float(limit),
                          "input_size": int(held), "truth": truth, "predicted": int(got["max_batch"][0]),
                          "fraction": float(got["usable_fraction"][0]),
                          "window_lo": float(need[int(np.ceil(WITHIN * truth - 1e-9)) - 1] / limit),
                          "window_hi": float(need[truth] / limit) if truth < len(need) else np.inf,
                          # one boundary to train on (None): nothing spreads
                          "spread": float(family_margins["unprofiled_spread"] or 1.0)})
            family = next(iter(model.unprofiled_fraction_))
            for rule in RULES:
                model.unprofiled_fraction_[family] = _rule(rule, model.calibration_)
                predicted = int(model.largest_batch(query, float(limit))["max_batch"][0])
                predictions.append({"pattern": pattern, "rule": rule, "truth": truth, "predicted": predicted})
    return cases, predictions


def oracle(cases: pd.DataFrame) -> pd.Series:
    """Per pattern setting: the most cases one fraction per (set, graph, limit) can put in their windows."""
    def best(part: pd.DataFrame) -> int:
        candidates = np.r_[part["window_lo"].to_numpy(), np.nextafter(part["window_hi"].to_numpy(), 0)]
        return max(int(((f >= part["window_lo"]) & (f < part["window_hi"])).sum()) for f in candidates)

    return cases.groupby(["pattern", "set", "model", "memory_limit_mb"]).apply(best, include_groups=False) \
        .groupby("pattern").sum()


def spread_rows(cases: pd.DataFrame) -> pd.DataFrame:
    """The shipped rule's cases split by the spread of their training sizes' left-out ratios (above
    :data:`WINDOW_SPREAD` or not), per pattern setting and pooled."""
    within = _within(cases)
    rows = []
    for pattern in [*sorted(cases.pattern.unique()), "both"]:
        part = cases.pattern == pattern if pattern != "both" else np.ones(len(cases), dtype=bool)
        for wide in (False, True):
            at = part & ((cases.spread > WINDOW_SPREAD) == wide)
            rows.append({"pattern": pattern, "rule": f"smallest (shipped), training spread "
                         f"{'>' if wide else '<='} {WINDOW_SPREAD:g}x", "cases": int(at.sum()),
                         "within_10pct": int((within & at).sum()), "above": int((at & (cases.predicted >
                                                                                     cases.truth)).sum())})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--sets", default="20,21,22,23,24", help="fresh sets whose stored runs to read")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--stem", default="max_batch_fraction_bound",
                        help="output names: STEM.csv, STEM_cases.csv (default max_batch_fraction_bound)")
    args = parser.parse_args(argv)
    cases, predictions = [], []
    for which in (int(s) for s in args.sets.split(",")):
        for stem in (f"max_batch_check_fresh{which}", f"max_batch_check_fresh{which}_nopattern"):
            if (RESULTS / f"{stem}_cpu_rows.csv").is_file():
                got = cases_of(stem, which)
                cases += got[0]
                predictions += got[1]
    table, rules = pd.DataFrame(cases), pd.DataFrame(predictions)
    rules["within"] = _within(rules)
    rules["above"] = rules.predicted > rules.truth
    summary = rules.groupby(["pattern", "rule"], sort=False).agg(
        cases=("within", "size"), within_10pct=("within", "sum"), above=("above", "sum")).reset_index()
    bound = oracle(table)
    summary = pd.concat([summary, pd.DataFrame({"pattern": bound.index, "rule": "oracle: one fraction per graph "
                                                "and limit, knowing the truth", "cases":
                                                table.groupby("pattern").size().loc[bound.index].to_numpy(),
                                                "within_10pct": bound.to_numpy(), "above": 0})], ignore_index=True)
    summary = pd.concat([summary, spread_rows(table)], ignore_index=True)
    write_csv(table.to_dict("records"), CASE_FIELDS, args.out_dir / f"{args.stem}_cases.csv")
    write_csv(summary.to_dict("records"), FIELDS, args.out_dir / f"{args.stem}.csv")
    width = table.assign(window=table.window_hi / table.window_lo,
                         shipped_in_window=(table.fraction >= table.window_lo) & (table.fraction < table.window_hi))
    print(summary.to_string(index=False))
    print()
    print(width.groupby("pattern")[["window", "spread"]].describe(percentiles=[0.5, 0.9]).T.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
