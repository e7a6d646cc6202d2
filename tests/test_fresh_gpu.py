"""benchmarks/fresh_gpu.py, the judge of a fresh GPU set, run on a shipped H200 profile standing in for one."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fresh_gpu  # noqa: E402


def test_judges_a_folder_of_measured_profiles(tmp_path, capsys):
    folder = tmp_path / "measured"
    folder.mkdir()
    shutil.copy(ROOT / "profiles" / "measured_H200_resnet50_fp16.csv", folder)
    assert fresh_gpu.main([str(folder), "--out-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    cases = pd.read_csv(tmp_path / "out" / "fresh_gpu1_max_batch.csv")
    # the truth is each size's bisection, read from the profile's own rows: the same as the separate summary file
    truth = pd.read_csv(ROOT / "profiles" / "max_batch_H200.csv")
    truth = truth[(truth.model == "resnet50") & (truth.dtype == "fp16")].set_index("input_size")["max_batch"]
    assert sorted(cases["input_size"]) == [224, 320, 448]
    assert cases.set_index("input_size")["truth"].to_dict() == truth.to_dict()
    assert (cases["basis"] == "unprofiled size").all()  # the held-out size was not in the fit
    assert not cases["above"].any() and (cases["ratio"] >= 0.98).all()  # shipped numbers (docs: worst 0.985)
    rows = pd.read_csv(tmp_path / "out" / "fresh_gpu1.csv")
    pooled = rows[rows.data == "every file"]
    assert set(pooled.protocol) == {"lobo", "lobo_clean", "batch_x4", "size_interior", "size_top", "max_batch_loso"}
    one = rows[(rows.data == "measured_H200_resnet50_fp16") & (rows.protocol == "size_top")].set_index("method")
    assert one.loc["work", "mape_pct"] == pytest.approx(pooled.set_index(["protocol", "method"]).loc[
        ("size_top", "work"), "mape_pct"])  # one file: the pooled row is that file's
    verdicts = [line for line in out.splitlines() if line.startswith(("met:", "NOT MET:"))]
    assert len(verdicts) == 5 and any("max_batch_loso: 0 of 3 above, 3 within 10 %" in v for v in verdicts)
    assert (tmp_path / "out" / "fresh_gpu1.png").stat().st_size > 0


def test_a_folder_without_profiles_is_named(tmp_path):
    with pytest.raises(SystemExit, match=f"{tmp_path}: no measured_"):
        fresh_gpu.main([str(tmp_path)])


def test_the_set_is_fixed_before_it_is_measured():
    """Set 1 must stay what was committed before its measurement: models servopt was never fitted on, the issue's
    sizes, the 16 GiB limit."""
    shipped = {p.name.split("_", 2)[2].rsplit("_", 1)[0] for p in (ROOT / "profiles").glob("measured_H200_*.csv")}
    one = fresh_gpu.SETS[1]
    assert not set(one["models"]) & shipped
    assert one["sizes"] == (224, 320, 448) and one["memory_limit_mb"] == 16384.0
    command = fresh_gpu.__doc__.split("python3 scripts/gpu_profile_check.py", 1)[1].split("\n\n")[0]
    assert f"--models {','.join(one['models'])}" in command and "--memory-limit-mb 16384" in command
    # the command leaves sizes, batches and precisions to the measuring script's defaults: they must be the set's
    sys.path.insert(0, str(ROOT / "scripts"))
    import gpu_profile_check

    assert (gpu_profile_check.SIZES, gpu_profile_check.BATCHES, gpu_profile_check.DTYPES) == \
        (one["sizes"], one["batches"], one["dtypes"])
