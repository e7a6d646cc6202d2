"""benchmarks/max_batch_check.py (the largest batch held out by input size) and what ``servopt fit --oom-limit-mb``
says about its margin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servopt.cli import main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _max_batch import METHODS, fit_memory_model, summarize, verdict  # noqa: E402


def test_verdict_on_exact_and_bracketed_truths():
    assert verdict(10, 10, 10) == "no"
    assert verdict(11, 10, 10) == "yes"
    assert verdict(9, 10, 10) == "no"
    assert verdict(40, 32, 63) == "unknown"
    assert verdict(64, 32, 63) == "yes"
    assert verdict(32, 32, 63) == "no"


def test_summarize_counts_above_and_within_ten_percent():
    cases = pd.DataFrame({
        "data": ["d"] * 4, "method": ["m"] * 4, "predicted": [100, 89, 101, 40],
        "truth_lo": [100, 100, 100, 32], "truth_hi": [100, 100, 100, 63], "oom_margin": [0.01, 0.02, None, None]})
    cases["ratio_lo"] = cases.predicted / cases.truth_hi
    cases["ratio_hi"] = cases.predicted / cases.truth_lo
    cases["above_truth"] = [verdict(p, lo, hi) for p, lo, hi in zip(cases.predicted, cases.truth_lo, cases.truth_hi)]
    row = summarize(cases, ["data", "method"]).iloc[0]
    assert (row.cases, row.above_truth, row.maybe_above, row.within_10pct_not_above) == (4, 1, 1, 1)
    # the bracket 32-63: 40 is between 0.63x and 1.25x the truth
    assert row.ratio_min == pytest.approx(40 / 63) and row.ratio_max == pytest.approx(40 / 32)
    assert (row.margin_min, row.margin_max) == (0.01, 0.02)


def _synthetic(usable: float = 0.9, limit: float = 4096.0) -> pd.DataFrame:
    rows = []
    for s in (128, 192, 256):
        true = int(np.floor((usable * limit - 120) / (2.5e-4 * s * s)))
        for b in (1, 2, 4, 8, 16, 32, 64):
            rows.append({"model": "net", "input_size": s, "batch_size": b, "memory_mb": 120 + 2.5e-4 * b * s * s,
                         "oom_batch_size": true + 1})
    return pd.DataFrame(rows)


def test_fit_memory_model_calibrates_only_the_calibrated_method():
    frame = _synthetic()
    cols = ["batch_size", "model", "input_size"]
    train = frame[frame.input_size != 192]
    true = int(frame[frame.input_size == 192]["oom_batch_size"].iloc[0]) - 1
    got = {}
    for method in METHODS:
        model = fit_memory_model(method, train, cols, 4096.0)
        assert (model.oom_margin_ is not None) == method.startswith("family + calibration")
        got[method] = model.max_batch(192, 4096.0, model="net")
    # the runtime fits only 90 % of the limit: uncalibrated, the family model is too large; calibrated, it is not
    assert got["family, uncalibrated"] > true >= got["family + calibration"] >= 0.95 * true
    # calibrating on other boundaries (here: the bottom of a grid bracket) changes the answer
    low = fit_memory_model("family + calibration", train, cols, 4096.0,
                           boundaries=train.assign(oom_batch_size=train["oom_batch_size"] // 2))
    assert low.max_batch(192, 4096.0, model="net") < got["family + calibration"]
    with pytest.raises(ValueError, match="expected one of"):
        fit_memory_model("nope", train, cols, 4096.0)


def test_max_batch_check_quick(tmp_path):
    """--quick: every H200 case under 8192 and 4096 MiB, and the CPU cases from the stored boundaries."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "max_batch_check.py"), "--quick", "--out-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cases = pd.read_csv(tmp_path / "max_batch_check.csv")
    h200 = cases[cases.data.str.startswith("H200")]
    assert set(h200.method) == set(METHODS)
    per_method = h200.groupby("method").size()
    assert (per_method == 13).all()  # 4 profiles x 3 held-out sizes under 8192 MiB + the 4096 MiB boundary
    assert set(h200.data) == {"H200 8192 MiB", "H200 4096 MiB"}
    exact = h200[h200.truth_lo == h200.truth_hi]
    assert len(exact) == len(h200)
    calibrated = h200[h200.method == "family + calibration"]
    # issue 19's target on the held-out H200 sizes: never above the truth and within 10 %
    assert (calibrated.above_truth == "no").all()
    assert (calibrated.predicted >= 0.9 * calibrated.truth_hi).all()
    with_margin = h200.method.str.startswith("family + calibration")
    assert h200[with_margin].oom_margin.notna().all() and h200[~with_margin].oom_margin.isna().all()
    # the torch profiles record no act_peak_mb: both calibrated methods take the FLOPs axis there, alike
    peak = h200[h200.method == "family + calibration, act_peak axis"]
    assert list(peak.predicted) == list(calibrated.predicted)
    summary = pd.read_csv(tmp_path / "max_batch_check_summary.csv")
    assert {"H200 8192 MiB", "H200 4096 MiB", "H200, every limit"} <= set(summary.data)
    # the CPU cases of the stored runs: exact truths (the first failure of a scan), every method on each
    cpu = cases[cases.data.str.startswith("CPU")]
    assert len(cpu) > 0 and (cpu.truth_lo == cpu.truth_hi).all() and set(cpu.above_truth) <= {"yes", "no"}
    assert (cpu.groupby("method").size() == len(cpu) // len(METHODS)).all()
    # each case's truth is its boundaries row's first failure minus one
    boundaries = pd.read_csv(ROOT / "benchmarks" / "results" / "max_batch_check_boundaries.csv")
    truth = cpu.merge(boundaries, on=["model", "memory_limit_mb", "input_size"], suffixes=("", "_b"))
    assert len(truth) == len(cpu) and (truth.truth_hi == truth.first_failure - 1).all()
    assert (tmp_path / "max_batch_check.png").stat().st_size > 10_000


def test_fit_says_the_margin_is_uncalibrated_without_a_boundary(capsys):
    path = ROOT / "profiles" / "measured_H200_resnet18_torchscript_fp32_cli.csv"  # no oom_batch_size anywhere
    assert main(["fit", str(path), "--targets", "memory", "--oom-limit-mb", "8192"]) == 0
    out = capsys.readouterr().out
    assert "out-of-memory margin is UNCALIBRATED (limit 8192 MiB)" in out
    assert "No margin is held back" in out and "calibrated on" not in out
    assert main(["fit", str(path), "--targets", "memory", "--oom-limit-mb", "8192", "--json"]) == 0
    oom = json.loads(capsys.readouterr().out)["memory"]["oom_calibration"]
    assert oom["calibrated"] is False and oom["boundaries"] == 0 and oom["oom_margin"] is None
    calibrated = ROOT / "profiles" / "measured_H200_resnet50_fp32.csv"
    assert main(["fit", str(calibrated), "--targets", "memory", "--oom-limit-mb", "8192", "--json"]) == 0
    oom = json.loads(capsys.readouterr().out)["memory"]["oom_calibration"]
    assert oom["calibrated"] is True and oom["boundaries"] == 3


def test_fit_names_the_families_no_boundary_calibrated(capsys):
    calibrated = ROOT / "profiles" / "measured_H200_resnet50_fp16.csv"
    bare = ROOT / "profiles" / "measured_H200_resnet18_torchscript_fp32_cli.csv"
    for memory_model in ("family", "line"):
        args = ["fit", str(calibrated), str(bare), "--targets", "memory", "--oom-limit-mb", "8192",
                "--memory-model", memory_model]
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "calibrated on 3 out-of-memory boundaries" in out
        assert "1 other family without a boundary: margin UNCALIBRATED; it uses the usable fraction 1.0000" in out
        assert main(args + ["--json"]) == 0
        oom = json.loads(capsys.readouterr().out)["memory"]["oom_calibration"]
        assert oom["calibrated"] is True and oom["uncalibrated_families"] == 1
    assert main(["fit", str(calibrated), "--targets", "memory", "--oom-limit-mb", "8192"]) == 0
    assert "without a boundary" not in capsys.readouterr().out


def test_max_batch_check_quick_on_a_fresh_set(tmp_path):
    """--fresh-set N --quick: the stored runs of a fresh set's graphs, CPU cases only, each with its scan's truth."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "max_batch_check.py"), "--quick", "--fresh-set",
                           "19", "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cases = pd.read_csv(tmp_path / "max_batch_check_fresh19.csv")
    assert len(cases) and cases.data.str.startswith("CPU").all() and set(cases.method) == set(METHODS)
    assert {"vit_fresh19", "resnet_fresh19", "mobilenet_fresh19"} == set(cases.model)
    boundaries = pd.read_csv(ROOT / "benchmarks" / "results" / "max_batch_check_fresh19_boundaries.csv")
    truth = cases.merge(boundaries, on=["model", "memory_limit_mb", "input_size"], suffixes=("", "_b"))
    assert len(truth) == len(cases) and (truth.truth_hi == truth.first_failure - 1).all()
    rows = pd.read_csv(ROOT / "benchmarks" / "results" / "max_batch_check_fresh19_cpu_rows.csv")
    assert (rows.gflops > 0).all()  # the memory model's family line takes the FLOPs the profiler records
    # another limit: fitted under one limit, every profiled size predicted under the others, against their scans
    other = pd.read_csv(tmp_path / "max_batch_check_fresh19_other_limit.csv")
    assert len(other) and (other.data == "CPU, another limit").all() and set(other.method) == set(METHODS)
    assert (other.calibrated_limit_mb != other.memory_limit_mb).all()
    truth = other.merge(boundaries, on=["model", "memory_limit_mb", "input_size"], suffixes=("", "_b"))
    assert len(truth) == len(other) and (truth.truth_hi == truth.first_failure - 1).all()
    fitted_on = rows.groupby(["model", "memory_limit_mb"]).input_size.apply(set)
    assert all(size in fitted_on[(m, lim)] for m, lim, size in
               zip(other.model, other.calibrated_limit_mb, other.input_size))  # a profiled size of the fit
    summary = pd.read_csv(tmp_path / "max_batch_check_fresh19_summary.csv")
    calibrated = summary[(summary.data == "CPU, another limit") & (summary.method == "family + calibration")]
    assert int(calibrated.cases.iloc[0]) == len(other) // len(METHODS)


@pytest.mark.parametrize("stem,limit", [("max_batch_check_fresh24", 100), ("max_batch_check_fresh24_nopattern", 400)])
def test_held_out_set_24_reproduces_from_its_stored_runs(stem, limit):
    """Fresh set 24 (held out for the rows near the limit kept on CPU, 450f24d): the held-out sizes under a limit
    where the two rules differ, fitted again from the stored runs, give the committed predictions of both, and the
    rule servopt fit uses puts none above the scan's truth."""
    import max_batch_check

    results = ROOT / "benchmarks" / "results"
    rows = pd.read_csv(results / f"{stem}_cpu_rows.csv")
    boundaries = pd.read_csv(results / f"{stem}_boundaries.csv")
    rows, boundaries = rows[rows.memory_limit_mb == limit], boundaries[boundaries.memory_limit_mb == limit]
    methods = ["family + calibration", "family + calibration, pressure rows dropped"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(max_batch_check, "METHODS", methods)
        got = pd.DataFrame(max_batch_check.cpu_cases(rows, boundaries))
    stored = pd.read_csv(results / f"{stem}.csv")
    stored = stored[(stored.memory_limit_mb == limit) & stored.method.isin(methods)]
    key = ["model", "input_size", "method"]
    both = got.merge(stored, on=key, suffixes=("", "_stored"))
    assert len(both) == len(got) == len(stored) > 0
    assert (both.predicted == both.predicted_stored).all() and (both.truth_hi == both.truth_hi_stored).all()
    kept = both[both.method == "family + calibration"]
    assert (kept.above_truth == "no").all() and (kept.predicted >= 0.75 * kept.truth_hi).all()
    dropped = both[both.method != "family + calibration"]
    assert not np.array_equal(kept.sort_values(key).predicted, dropped.sort_values(key).predicted)


def test_held_out_set_25_reproduces_from_its_stored_runs():
    """Fresh set 25 (measured last, defined in 9bd9190 before its run): under 200 MiB with the memory pattern, the
    held-out sizes fitted again from the stored runs give the committed predictions of servopt fit's rule (none
    above the scan, 1 of 11 within 10 %) and of the activation-peak axis (9 of 11 within)."""
    import max_batch_check

    results = ROOT / "benchmarks" / "results"
    rows = pd.read_csv(results / "max_batch_check_fresh25_cpu_rows.csv")
    boundaries = pd.read_csv(results / "max_batch_check_fresh25_boundaries.csv")
    rows, boundaries = rows[rows.memory_limit_mb == 200], boundaries[boundaries.memory_limit_mb == 200]
    methods = ["family + calibration", "family + calibration, act_peak axis"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(max_batch_check, "METHODS", methods)
        got = pd.DataFrame(max_batch_check.cpu_cases(rows, boundaries))
    stored = pd.read_csv(results / "max_batch_check_fresh25.csv")
    stored = stored[(stored.memory_limit_mb == 200) & stored.method.isin(methods)]
    both = got.merge(stored, on=["model", "input_size", "method"], suffixes=("", "_stored"))
    assert len(both) == len(got) == len(stored) == 22
    assert (both.predicted == both.predicted_stored).all() and (both.truth_hi == both.truth_hi_stored).all()
    within = (both.above_truth == "no") & (both.predicted >= 0.9 * both.truth_hi)
    assert (both.above_truth == "no").all()
    assert within.groupby(both.method).sum().to_dict() == {methods[0]: 1, methods[1]: 9}
