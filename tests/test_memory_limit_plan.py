"""A GPU entry's ``memory_limit_mb``: the plan's batch sizes capped at the largest batch the profiles' memory model
predicts to fit, and the margin reported (``servopt solve``, ``--json``, ``servopt.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servopt.cli import main

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "measured_H200_resnet50_fp16.csv"


def problem(tmp_path: Path, gpu: str, kind: str = "min_gpus", profile: Path = PROFILE,
            extra: str = "images: 200000\n") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"problem: {kind}\nmodel: resnet50\nvariant: resnet50-fp16\ninput_size: 224\n"
                    f"profiles: [{profile}]\nperformance: fit\ndeadline_s: 60\nlatency_slo_ms: 500\n{extra}"
                    f"gpus:\n  - hardware: H200\n    max_count: 8\n{gpu}")
    return path


def solve_json(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> dict:
    assert main(["solve", str(path), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_memory_limit_caps_the_batch_and_reports_the_margin(capsys, tmp_path):
    free = solve_json(capsys, problem(tmp_path, ""))
    assert "memory_margin" not in free and free["plan"]["groups"][0]["batch_size"] > 1024
    capped = solve_json(capsys, problem(tmp_path, "    memory_limit_mb: 1024\n"))
    entry = capped["memory_margin"]["entries"][0]
    # the memory model of servopt fit on the profile (calibrated on its 8192 MiB boundaries), at 224 px
    from servopt.performance.evaluate import fit_profile
    from servopt.profiles import load_profile

    frame = load_profile(PROFILE).frame
    models, _ = fit_profile(frame, targets=["memory"], cross_validate=False)
    expected = models.largest_batch(frame[frame.input_size == 224].iloc[[0]].reset_index(drop=True), 1024)
    assert entry["max_batch"] == int(expected["max_batch"].iloc[0]) and 100 < entry["max_batch"] < 1024
    assert entry["basis"] == "profiled size" and entry["memory_limit_mb"] == 1024
    assert entry["oom_margin"] == pytest.approx(1 - entry["usable_fraction"])
    assert capped["plan"]["groups"][0]["batch_size"] <= entry["max_batch"]
    both = solve_json(capsys, problem(tmp_path, "    memory_limit_mb: 1024\n    max_batch_size: 64\n"))
    assert both["plan"]["groups"][0]["batch_size"] <= 64  # the smaller of the two caps
    assert main(["solve", str(problem(tmp_path, "    memory_limit_mb: 1024\n"))]) == 0
    text = capsys.readouterr().out
    assert f"note: resnet50 on H200: batch sizes capped at {entry['max_batch']}" in text and "1024 MiB" in text
    assert "servopt profile --memory-limit-mb 1024 --find-max-batch at this configuration" in text  # not its own
    # the profile's boundaries were searched under 8192 MiB: the plan says none was measured under 1024
    assert entry["boundary_limits_mb"] == [8192.0]
    assert "warning: no out-of-memory boundary was measured under 1024 MiB (only under 8192 MiB)" in text
    at_8192 = solve_json(capsys, problem(tmp_path, "    memory_limit_mb: 8192\n"))["memory_margin"]
    assert at_8192["entries"][0]["boundary_limits_mb"] == [8192.0] and "warning" not in at_8192["notes"][0]
    out = tmp_path / "repo"
    assert main(["solve", str(problem(tmp_path, "    memory_limit_mb: 1024\n")), "--out", str(out)]) == 0
    capsys.readouterr()
    assert json.loads((out / "servopt.json").read_text())["memory_margin"]["entries"][0]["max_batch"] == \
        entry["max_batch"]


def test_max_throughput_takes_the_memory_limit_too(capsys, tmp_path):
    got = solve_json(capsys, problem(tmp_path, "    memory_limit_mb: 512\n    cost_per_hour: 10\n",
                                     kind="max_throughput", extra="budget_per_hour: 100\n"))
    cap = got["memory_margin"]["entries"][0]["max_batch"]
    assert 0 < cap < 128 and all(g["batch_size"] <= cap for g in got["plan"]["groups"])


@pytest.mark.parametrize("gpu,profile,words", [
    ("    memory_limit_mb: 1024\n    batches: {1: {latency_ms: 5}}\n", PROFILE, "inline batches: table"),
    ("    memory_limit_mb: 1\n", PROFILE, "not even batch 1 fits"),
    ("    memory_limit_mb: 0\n", PROFILE, "memory_limit_mb"),
])
def test_memory_limit_errors_name_the_key(capsys, tmp_path, gpu, profile, words):
    assert main(["solve", str(problem(tmp_path, gpu, profile=profile))]) == 2
    err = capsys.readouterr().err
    assert "gpus[0].memory_limit_mb" in err and words in err


def test_profiles_without_memory_cannot_cap(capsys, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("problem: min_gpus\nmodel: efficientnet-b0\nvariant: efficientnet-b0-amp\ninput_size: 224\n"
                    f"profiles: "
                    f"[{ROOT / 'profiles' / 'nvidia_efficientnet_pytorch.csv'}]\nimages: 1000\ndeadline_s: 60\n"
                    "gpus:\n  - hardware: A100-80GB\n    max_count: 2\n    memory_limit_mb: 4096\n")
    assert main(["solve", str(path)]) == 2
    err = capsys.readouterr().err
    assert "gpus[0].memory_limit_mb" in err and "no memory_mb" in err


def test_an_uncalibrated_memory_model_says_the_batch_may_not_fit(capsys, tmp_path):
    """A profile without out-of-memory boundaries (the fresh CPU graphs, measured without a limit): the cap is the
    uncalibrated prediction, and the note says nothing was held back."""
    path = tmp_path / "p.yaml"
    path.write_text(f"problem: min_gpus\nmodel: resnet_fresh20\ninput_size: 172\ncores: 1\nprofiles: "
                    f"[{ROOT / 'profiles' / 'measured_cpu_fresh20.csv'}]\nimages: 2000\ndeadline_s: 60\n"
                    "gpus:\n  - hardware: cpu-amd-epyc\n    max_count: 4\n    memory_limit_mb: 100\n")
    got = solve_json(capsys, path)
    entry = got["memory_margin"]["entries"][0]
    assert entry["basis"] == "uncalibrated" and entry["oom_margin"] == 0.0 and entry["max_batch"] >= 1
    assert "nothing is held back" in got["memory_margin"]["notes"][0]
