"""benchmarks/arena_sawtooth.py: peak memory and latency per batch with ONNX Runtime's CPU arena on and off, with
the arena but without the memory pattern, and with the arena shrunk after each run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from arena_sawtooth import SHRINKAGE, _runtime, summary  # noqa: E402


def test_summary_counts_drops_beyond_the_noise():
    rows = [{"batch_size": b, "arena": 1, "mem_pattern": 1, "memory_mb": m, "latency_ms": float(b)}
            for b, m in enumerate([20, 40, 60, 80, 50, 70, 95, 97], start=1)]
    rows += [{"batch_size": b, "arena": 0, "mem_pattern": 1, "memory_mb": m, "latency_ms": 1.5 * b}
             for b, m in enumerate([22, 41, 58, 80, 79, 99, 118, 140], start=1)]
    rows += [{"batch_size": b, "arena": 1, "mem_pattern": 0, "memory_mb": m, "latency_ms": 0.9 * b}
             for b, m in enumerate([15, 30, 45, 60, 75, 90, 105, 120], start=1)]
    on, off, no_pattern = summary(rows)
    assert on.startswith("arena + memory pattern (default)")
    assert "largest drop from one batch to the next 38 %" in on and "2 of 7 batches" in on  # 50 and 70 < 0.9 x 80
    assert "largest drop from one batch to the next 1 %" in off and "0 of 7 batches" in off
    assert no_pattern.startswith("arena, no memory pattern") and "0 of 7 batches" in no_pattern
    assert "against the default" not in off  # no batch from 32 on: no ratio
    rows = [dict(r, batch_size=r["batch_size"] + 31) for r in rows]  # ratios over batches from 32 on
    on, off, no_pattern = summary(rows)
    assert off.endswith("against the default: peak x1.17, latency x1.50 (medians)")  # median of 22/20 ... 140/97
    assert no_pattern.endswith("against the default: peak x0.93, latency x0.90 (medians)")
    rows += [dict(r, arena_shrinkage=1, latency_ms=2 * r["latency_ms"]) for r in rows if _key(r) == (1, 1)]
    *_, shrunk = summary(rows)  # the fourth setting once it has rows; rows written before it have no column
    assert shrunk.startswith("arena + memory pattern, shrunk after each run") and "2 of 7 batches" in shrunk
    assert shrunk.endswith("against the default: peak x1.00, latency x2.00 (medians)")


def test_summary_counts_the_steps_again_from_batch_17_on():
    """A drop among the small batches (the baseline's noise) does not hide that the larger ones are smooth."""
    peaks = [30, 20, 40, 42, 44, 46]  # batches 15-20: 33 % down at 16, smooth from 17 on
    rows = [{"batch_size": b, "arena": 1, "mem_pattern": 0, "memory_mb": m, "latency_ms": 1.0}
            for b, m in enumerate(peaks, start=15)]
    (line,) = summary(rows)
    assert "next 33 % of the peak; 1 of 5 batches" in line and line.endswith("(from batch 17 on: 0 %, 0 of 3)")
    (line,) = summary([r for r in rows if r["batch_size"] >= 17])  # nothing below 17: no second count
    assert "from batch" not in line


def _key(row):
    return row["arena"], row["mem_pattern"]


def test_shrinkage_is_a_run_option_entry_onnx_runtime_accepts():
    import numpy as np
    import onnxruntime as ort

    from servopt.measure.onnx_models import BUILDERS

    run = _runtime(True, True, True).RunOptions()
    assert run.get_run_config_entry(SHRINKAGE[0]) == "cpu:0" and SHRINKAGE == ("memory.enable_memory_arena_shrinkage",
                                                                               "cpu:0")
    with pytest.raises(RuntimeError):  # absent without the setting
        _runtime(True, True, False).RunOptions().get_run_config_entry(SHRINKAGE[0])
    session = ort.InferenceSession(BUILDERS["tiny_cnn"]().SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((2, 3, 32, 32), dtype=np.float32)
    assert session.run(None, {"input": x}, run)[0].shape[0] == 2  # a valid entry: the run is shrunk, not refused


def test_arena_sawtooth_measures_every_setting(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "arena_sawtooth.py"), "--graph", "tiny_cnn",
                           "--size", "32", "--top", "3", "--out-dir", str(tmp_path), "--img-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "arena_sawtooth.csv")
    settings = sorted(set(zip(frame.arena, frame.mem_pattern, frame.arena_shrinkage)))
    assert settings == [(0, 1, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1)]
    assert list(frame[frame.arena == 0].batch_size) == [1, 2, 3]
    assert (frame.memory_mb >= 0).all() and (frame.latency_ms > 0).all()
    assert (tmp_path / "arena_sawtooth.png").stat().st_size > 0
    assert all(label in done.stdout for label in ("(default):", "no arena:", "arena, no memory pattern:",
                                                  "shrunk after each run:"))


def test_first_runs_with_and_without_the_pattern(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "arena_sawtooth.py"), "--graph", "tiny_cnn",
                           "--size", "32", "--first-runs", "2", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "arena_first_runs.csv")
    assert list(frame.mem_pattern) == [1] * 5 + [0] * 5
    assert list(frame.after[:5]) == ["load", "run 1", "run 2", "run 3", "run 4"]
    assert (frame.batch_size == 2).all() and frame.rss_above_baseline_mb.notna().all()
    assert "memory pattern on : MiB above the baseline after load" in done.stdout
    assert "memory pattern off: MiB above the baseline after load" in done.stdout
