"""Review round g1: out-of-memory columns validated where profiles are, no latency bound without held-out
residuals, the documented latency_quantile factor, the memory model's cap explained, perf_analyzer names that
conflict and its µs read exactly, and fit's --targets suggestions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import servopt
from servopt.cli import main
from servopt.exceptions import ValidationError
from servopt.profiles import load_profile, read_perf_analyzer

OOM = ("model,hardware,batch_size,latency_ms,memory_mb,oom_batch_size,oom_limit_mb\n"
       "m,T4,1,5,100,{b},{l}\nm,T4,2,6,150,{b},{l}\nm,T4,4,8,250,{b},{l}\nm,T4,8,12,450,{b},{l}\n")
TWO = "model,hardware,batch_size,latency_ms\nm,T4,1,5\nm,T4,2,6\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _min_gpus(tmp_path: Path, profile: Path, quantile: float = 0.95) -> Path:
    return _write(tmp_path / "q2.yaml", f"problem: min_gpus\nmodel: m\nprofiles: [{profile.name}]\nperformance: fit\n"
                  f"latency_quantile: {quantile}\nimages: 1000\ndeadline_s: 1\ngpus:\n"
                  "  - {hardware: T4, max_count: 8}\n")


# --- 1. oom_batch_size / oom_limit_mb are validated with the profile --------------------------------------------------

@pytest.mark.parametrize("batch,limit,column,value", [
    ("0", "1000", "oom_batch_size", "'0'"), ("-5", "1000", "oom_batch_size", "'-5'"),
    ("2.5", "1000", "oom_batch_size", "'2.5'"), ("16", "0", "oom_limit_mb", "'0'"),
    ("16", "-1", "oom_limit_mb", "'-1'"),
])
def test_bad_oom_columns_are_refused_naming_file_row_column_and_value(tmp_path, batch, limit, column, value):
    path = _write(tmp_path / "o.csv", OOM.format(b=batch, l=limit))
    with pytest.raises(ValidationError, match=rf"o\.csv: row 1 \(line 2\), column '{column}': expected .* got "
                                              rf"{re.escape(value)}"):
        load_profile(path)


def test_bad_oom_batch_size_fails_fit_and_import(tmp_path, capsys):
    from servopt.performance.evaluate import fit_profile

    path = _write(tmp_path / "o0.csv", OOM.format(b=0, l=1000))
    assert main(["fit", str(path), "-q"]) == 2
    assert "column 'oom_batch_size'" in capsys.readouterr().err
    assert main(["import", "profile", str(path)]) == 2
    assert "row 1 (line 2), column 'oom_batch_size'" in capsys.readouterr().err
    # a whole boundary is read and calibrated as before
    frame = load_profile(_write(tmp_path / "o16.csv", OOM.format(b=16, l=1000))).frame
    models, _ = fit_profile(frame, source="o16.csv", targets=["memory"], cross_validate=False)
    got = models.largest_batch(frame.iloc[[0]], 1000)
    assert got["max_batch_basis"].iloc[0] == "own boundary" and int(got["max_batch"].iloc[0]) == 15



# --- 2. no held-out residual: no interval, and latency_quantile refused -----------------------------------------------

def test_latency_quantile_without_held_out_residuals_is_refused(tmp_path):
    _write(tmp_path / "two.csv", TWO)
    problem = _min_gpus(tmp_path, tmp_path / "two.csv")
    with pytest.raises(ValidationError, match=r"q2\.yaml: key 'latency_quantile': 0\.95: no upper bound on latency_ms "
                                              r"from .*two\.csv.*3 or more profiled batch sizes.*at most 2 batch "
                                              r"sizes"):
        servopt.load_problem(problem)
    # one residual more (a third batch size): planned, with the note that the bound is the largest residual
    _write(tmp_path / "three.csv", TWO + "m,T4,4,8\n")
    entry = servopt.load_problem(_min_gpus(tmp_path, tmp_path / "three.csv")).latency_margin["entries"][0]
    assert entry["residuals"]["interior"] >= 1 and not entry["exact"]


def test_interval_without_residuals_is_unknown_not_zero_width(tmp_path):
    from servopt.performance.evaluate import fit_profile

    frame = load_profile(_write(tmp_path / "two.csv", TWO)).frame
    models, _ = fit_profile(frame, source="two.csv", targets=["latency"])
    query = pd.DataFrame({"model": ["m"], "variant": ["m"], "hardware": ["T4"], "batch_size": [64]})
    got = models.predict(query, intervals=True)
    assert np.isfinite(got["latency_ms"]).all()
    assert got[["latency_ms_lo", "latency_ms_hi"]].isna().all().all()


def test_saved_interval_with_no_residuals_reads_as_unknown():
    from servopt.performance.uncertainty import interval_factors

    old = {"level": 0.9, "interior": {"lo": 1.0, "hi": 1.0, "n": 0, "exact": False},
           "edge": {"lo": 1.0, "hi": 1.0, "n": 0, "exact": False}}
    lo, hi = interval_factors(old, np.array([False, True]))
    assert np.isnan(lo).all() and np.isnan(hi).all()


def test_predict_intervals_say_unknown(tmp_path, capsys):
    profile = _write(tmp_path / "two.csv", TWO)
    models = tmp_path / "two.joblib"
    assert main(["fit", str(profile), "-o", str(models), "-q"]) == 0
    assert "prediction interval: unknown" in capsys.readouterr().out
    query = _write(tmp_path / "q.csv", "model,hardware,batch_size\nm,T4,64\n")
    assert main(["predict", str(models), str(query), "--intervals", "--json"]) == 0
    out = capsys.readouterr()
    row = json.loads(out.out)["predictions"][0]
    assert row["latency_ms_lo"] is None and row["latency_ms_hi"] is None and row["latency_ms"] > 0
    assert "interval is unknown" in out.err and "3 or more profiled batch sizes" in out.err
    assert main(["predict", str(models), str(query), "--intervals"]) == 0
    assert " nan " in capsys.readouterr().out


# --- 3. the documented latency_quantile factor is the one a run gives -------------------------------------------------

def test_documented_quantile_factor_is_the_run(tmp_path, root):
    data = ("problem: min_gpus\ndeadline_s: 60\nmodel: resnet_like\ninput_size: 224\ncores: 2\n"
            f"profiles: [{root / 'profiles' / 'measured_resnet_like.csv'}]\nperformance: fit\nimages: 20000\n"
            "gpus:\n  - {hardware: cpu-amd-epyc, max_count: 8, cost_per_hour: 1.0}\nlatency_quantile: 0.95\n")
    problem = servopt.load_problem(_write(tmp_path / "r.yaml", data))
    entry = problem.latency_margin["entries"][0]
    gpus = servopt.solve(problem).plan.gpus
    docs = (root / "docs" / "formulations.md").read_text()
    stated = re.search(r"q = 0\.95 gives `factor_interior` ([0-9.]+) \(the \w+ smallest of (\d+) interior residuals.*?"
                       r"and (\d+) GPUs instead of", docs, re.S)
    assert stated, "docs/formulations.md no longer states the latency_quantile example"
    assert float(stated.group(1)) == round(entry["factor_interior"], 4)
    assert int(stated.group(2)) == entry["residuals"]["interior"] and int(stated.group(3)) == gpus


# --- 4. a largest batch at the memory model's cap says what is true --------------------------------------------------

def test_describe_ceiling_tells_a_growing_memory_from_a_flat_one():
    from servopt.performance.oom import describe_ceiling

    grows = describe_ceiling(4096, 105.0, 30912.0, 1e12)
    assert "below the limit of 1e+12 MiB" in grows and "does not grow" not in grows
    assert "does not grow" in describe_ceiling(4096, 100.0, 100.0, 1000)


def test_predict_at_a_huge_limit_says_the_cap_binds(tmp_path, root, capsys):
    profile = root / "profiles" / "measured_H200_resnet50_fp16.csv"
    models = tmp_path / "r50.joblib"
    assert main(["fit", str(profile), "--targets", "memory", "-o", str(models), "-q"]) == 0
    frame = load_profile(profile).frame
    row = frame[(frame["input_size"] == 224)].iloc[[0]]
    query = tmp_path / "q.csv"
    row.drop(columns=[c for c in row.columns if c.startswith("hw.")]).to_csv(query, index=False)
    capsys.readouterr()
    assert main(["predict", str(models), str(query), "--memory-limit-mb", "1e12"]) == 0
    err = capsys.readouterr().err
    assert "the largest batch the memory model considers" in err and "the cap binds, not the limit" in err
    assert "does not grow with the batch" not in err
    # servopt solve's note says the same (it said the memory does not grow)
    (tmp_path / "s.yaml").write_text(f"problem: min_gpus\nmodel: resnet50\nprofiles: [{profile}]\n"
                                     "where: {input_size: 224}\nimages: 1000000\ndeadline_s: 60\ngpus:\n"
                                     "  - {hardware: H200, max_count: 8, memory_limit_mb: 1e12}\n")
    assert main(["solve", str(tmp_path / "s.yaml")]) == 0
    out = capsys.readouterr().out
    assert "capped at 4096" in out and "the cap binds, not the limit" in out and "does not grow" not in out


# --- 5, 6. perf_analyzer: conflicting names, exact µs -> ms -----------------------------------------------------------

PA = ("Concurrency,Inferences/Second,Client Send,p50 latency,p99 latency,Avg latency,Avg GPU Utilization,"
      "Avg GPU Power Usage\n1,583.054,9,5419,7100,5419,GPU-a:0.07;,GPU-a:70.1;GPU-b:69.3;\n")


def test_perf_analyzer_name_with_two_batch_sizes_says_they_conflict(tmp_path):
    path = _write(tmp_path / "r50_b8_batch16.csv", PA)
    with pytest.raises(ValidationError, match=r"r50_b8_batch16\.csv: .*the file name gives 2 batch sizes that "
                                              r"conflict \(8, 16\)"):
        read_perf_analyzer(path, model="m", hardware="T4")
    with pytest.raises(ValidationError, match=r"results\.csv: .*the file name does not state it"):
        read_perf_analyzer(_write(tmp_path / "results.csv", PA), model="m", hardware="T4")


def test_perf_analyzer_microseconds_become_the_decimal_milliseconds(tmp_path):
    frame = read_perf_analyzer(_write(tmp_path / "r50_b8.csv", PA), model="m", hardware="T4").frame
    row = frame.iloc[0]
    got = {c: repr(float(row[c])) for c in ("latency_ms", "latency_p99_ms", "latency_p50_ms", "client_send_ms",
                                            "hw.gpu_utilization_pct", "hw.gpu_power_w")}
    assert got == {"latency_ms": "5.419", "latency_p99_ms": "7.1", "latency_p50_ms": "5.419",
                   "client_send_ms": "0.009", "hw.gpu_utilization_pct": "7.0", "hw.gpu_power_w": "139.4"}


def test_imported_csv_prints_the_decimals(tmp_path, capsys):
    path = _write(tmp_path / "r50_b8.csv", PA)
    assert main(["import", "perf-analyzer", str(path), "--model", "m", "--hardware", "T4"]) == 0
    out = capsys.readouterr().out
    assert "5.419," in out and "0000000" not in out and "9999999" not in out


# --- 7. fit suggests only targets the profile can fit -----------------------------------------------------------------

def test_fit_suggests_no_targets_the_file_cannot_fit(tmp_path, capsys):
    path = _write(tmp_path / "one.csv", "model,hardware,batch_size,latency_ms\nm,T4,1,5\n")
    assert main(["fit", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "has 1 profiled point" in err and "--targets" not in err and "no other target" in err


def test_fit_suggests_the_targets_the_file_can_fit(tmp_path, capsys):
    path = _write(tmp_path / "w.csv", "model,hardware,batch_size,latency_ms,memory_mb,warmup_ms\n"
                                      "m,T4,1,5,100,\nm,T4,2,6,150,3\n")
    assert main(["fit", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "target 'warmup'" in err and "--targets (here: latency, memory)" in err
