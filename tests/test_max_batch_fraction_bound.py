"""benchmarks/max_batch_fraction_bound.py: the fraction windows, the oracle and the rules on fresh set 24's stored
runs, checked against max_batch_check.py's committed cases of the same runs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import max_batch_fraction_bound as bound  # noqa: E402


def test_set_24_windows_rules_and_oracle(tmp_path, capsys):
    assert bound.main(["--sets", "24", "--out-dir", str(tmp_path)]) == 0
    cases = pd.read_csv(tmp_path / "max_batch_fraction_bound_cases.csv")
    summary = pd.read_csv(tmp_path / "max_batch_fraction_bound.csv").set_index(["pattern", "rule"])
    # a prediction is within 10 % and not above exactly when the fraction it used lies in the case's window
    inside = (cases.fraction >= cases.window_lo) & (cases.fraction < cases.window_hi)
    within = (cases.predicted <= cases.truth) & (cases.predicted >= np.ceil(0.9 * cases.truth - 1e-9))
    assert (inside == within).all() and (cases.window_lo < cases.window_hi).all()
    assert (cases.spread >= 1).all()
    for pattern, stem in (("on", "max_batch_check_fresh24"), ("off", "max_batch_check_fresh24_nopattern")):
        committed = pd.read_csv(ROOT / "benchmarks" / "results" / f"{stem}.csv")
        committed = committed[committed.method == "family + calibration"]
        shipped = summary.loc[(pattern, "smallest (shipped)")]
        assert shipped["cases"] == len(committed) == (cases.pattern == pattern).sum()
        assert shipped["within_10pct"] == int(((committed.ratio_lo >= 0.9) & (committed.above_truth == "no")).sum())
        assert shipped["above"] == int((committed.above_truth == "yes").sum())
        oracle = summary.loc[(pattern, "oracle: one fraction per graph and limit, knowing the truth")]
        assert oracle["above"] == 0 and shipped["within_10pct"] < oracle["within_10pct"] <= oracle["cases"]
    assert set(summary.index.get_level_values("rule")) >= set(bound.RULES)
