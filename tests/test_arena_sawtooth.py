"""benchmarks/arena_sawtooth.py: peak memory and latency per batch with ONNX Runtime's CPU arena on and off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from arena_sawtooth import summary  # noqa: E402


def test_summary_counts_drops_beyond_the_noise():
    rows = [{"batch_size": b, "arena": 1, "memory_mb": m, "latency_ms": float(b)}
            for b, m in enumerate([20, 40, 60, 80, 50, 70, 95, 97], start=1)]
    rows += [{"batch_size": b, "arena": 0, "memory_mb": m, "latency_ms": 1.5 * b}
             for b, m in enumerate([22, 41, 58, 80, 79, 99, 118, 140], start=1)]
    on, off = summary(rows)
    assert "largest drop from one batch to the next 38 %" in on and "2 of 7 batches" in on  # 50 and 70 < 0.9 x 80
    assert "largest drop from one batch to the next 1 %" in off and "0 of 7 batches" in off
    rows = [dict(r, batch_size=r["batch_size"] + 31) for r in rows]  # latency ratio over batches from 32 on
    assert summary(rows)[2] == "latency without / with the arena, batch 32 and up: median 1.50x"


def test_arena_sawtooth_measures_both_settings(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "arena_sawtooth.py"), "--graph", "tiny_cnn",
                           "--size", "32", "--top", "3", "--out-dir", str(tmp_path), "--img-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "arena_sawtooth.csv")
    assert sorted(frame.arena.unique()) == [0, 1] and list(frame[frame.arena == 1].batch_size) == [1, 2, 3]
    assert (frame.memory_mb >= 0).all() and (frame.latency_ms > 0).all()
    assert (tmp_path / "arena_sawtooth.png").stat().st_size > 0
    assert "arena on" in done.stdout and "arena off" in done.stdout
