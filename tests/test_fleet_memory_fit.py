"""``memory_mb: fit`` in a fleet problem: the memory of an instance from the profile's memory model, over its usable
fraction of the GPU's or slice's memory and never below the measurement, and ``MaxBatchModel.planned_memory``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servopt.cli import main
from servopt.exceptions import ValidationError
from servopt.formulations.fleet.verify import violations
from servopt.performance import MaxBatchModel
from servopt.performance.evaluate import fit_profile
from servopt.performance.memory import boundaries_from_profile
from servopt.formulations.registry import load_problem
from servopt.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
#: resnet50 fp16 on the H200 at 224 px, its out-of-memory boundary searched under 4096 MiB (665 fails, 664 ran)
PROFILE = ROOT / "profiles" / "measured_H200_resnet50_fp16_cli_max_batch.csv"
COLS = ["batch_size", "model", "input_size"]


def fleet(tmp_path: Path, memory: str = "fit", gpu_mb: int = 4096, slice_entry: bool = True,
          rate: float = 20000, extra: str = "") -> Path:
    shutil.copy(PROFILE, tmp_path / "p.csv")
    entry = f"      profile: p.csv\n      where: {{model: resnet50}}\n      memory_mb: {memory}\n{extra}"
    text = (f"problem: fleet\nname: t\ngpu_types:\n- name: H200\n  count: 3\n  memory_mb: {gpu_mb}\n"
            "  price_per_hour: 4.0\n  mig:\n  - {profile: 1g.1gb, compute: 1, memory_mb: 1024}\n"
            f"models:\n- name: resnet50\n  rate_rps: {rate}\n  slo_ms: 400\n  performance:\n    H200:\n{entry}")
    if slice_entry:
        text += f"    H200/1g.1gb:\n{entry}"
    path = tmp_path / "f.yaml"
    path.write_text(text)
    return path


def expected_table(limit: float) -> dict[int, float]:
    """What the fleet should count per profiled batch, computed here from servopt fit's memory model."""
    frame = load_profile(PROFILE).frame
    models, _ = fit_profile(frame, targets=["memory"], cross_validate=False)
    got = models.planned_memory(frame.reset_index(drop=True), limit)
    return {int(b): max(float(p), float(m)) for b, p, m in
            zip(frame.batch_size, got["planned_memory_mb"], frame.memory_mb)}


def test_memory_fit_counts_the_model_over_its_fraction_and_never_below_the_measurement(tmp_path):
    problem = load_problem(fleet(tmp_path))
    perf = problem.models[0].performance["H200"]
    table = expected_table(4096)
    assert dict(perf.memory_table) == pytest.approx(table)
    frame = load_profile(PROFILE).frame
    for b, measured in zip(frame.batch_size, frame.memory_mb):
        assert perf.memory(int(b)) >= measured and perf.memory(int(b), 3) == pytest.approx(3 * table[int(b)])
    # under the limit its boundary was searched at, the largest profiled batch that fits alone is that boundary
    assert max(b for b in perf.latency_ms if perf.memory(b) <= 4096) == 664
    entry = problem.memory_margin["entries"][0]
    assert entry["basis"] == "own boundary" and entry["max_batch"] == 664
    # the 1 GiB slice: the family's fraction of 1024 MiB, its own entry
    small = problem.models[0].performance["H200/1g.1gb"]
    assert dict(small.memory_table) == pytest.approx(expected_table(1024))
    fits = [b for b in small.latency_ms if small.memory(b) <= 1024]
    assert fits == [1, 8, 64] and problem.memory_margin["entries"][1]["basis"] == "profiled size"
    own, other = problem.memory_margin["notes"]  # only the slice, not measured at its limit, says how to measure it
    assert "--find-max-batch" not in own and "--memory-limit-mb 1024 --find-max-batch" in other
    # and warns that no boundary was measured under its limit at all (the profile's search ran under 4096 MiB)
    assert [e["boundary_limits_mb"] for e in problem.memory_margin["entries"]] == [[4096.0], [4096.0]]
    assert "warning" not in own
    assert "warning: no out-of-memory boundary was measured under 1024 MiB (only under 4096 MiB)" in other


def test_a_slice_without_its_own_entry_takes_the_whole_gpus_table(tmp_path):
    problem = load_problem(fleet(tmp_path, slice_entry=False))
    model = problem.models[0]
    scaled = problem.performance(model, "H200", "1g.1gb")
    assert scaled.scaled_from == "H200" and scaled.memory_table == model.performance["H200"].memory_table


def test_the_plan_packs_instances_by_the_planned_memory(capsys, tmp_path):
    """Every bin of the plan holds at most its memory by the planned table (exact check on the return path and
    here), and with 2048 MiB per GPU the own boundary's batch cannot be planned."""
    path = fleet(tmp_path, gpu_mb=2048, slice_entry=False, rate=3000)
    assert main(["solve", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    problem = load_problem(path)
    perf = problem.models[0].performance["H200"]
    placements = out["plan"]["placements"]
    assert placements and all(perf.memory(p["batch_size"], p["instances"]) <= 2048 for p in placements)
    assert all(p["batch_size"] <= 64 for p in placements)  # 412 needs 3208 MiB measured
    margin = out["memory_margin"]
    assert margin["entries"][0]["memory_limit_mb"] == 2048 and margin["entries"][0]["max_batch"] == 64
    assert margin["notes"][0].startswith("resnet50 on H200: memory per instance from the memory model")


def test_the_exact_check_counts_the_table(tmp_path):
    """A plan whose GPU holds more than its memory by the planned table fails the exact check."""
    from dataclasses import replace

    from servopt import solve

    problem = load_problem(fleet(tmp_path, gpu_mb=4096, slice_entry=False, rate=3000))
    plan = solve(problem).plan
    assert violations(problem, plan) == []
    perf = problem.models[0].performance["H200"]
    p = plan.placements[0]
    lat = perf.latency_ms[586] * 3  # three instances: slowdown 1 + 2 x (2 - 1)
    crowded = replace(p, instances=3, batch_size=586, slowdown=3.0, latency_ms=lat,
                      capacity_rps=3 * 1000 * 586 / lat, memory_mb=perf.memory(586, 3))
    assert perf.memory(586, 3) > 4096 and perf.instance_mb + perf.per_batch_mb * 586 * 3 <= 4096  # the line: 0
    found = violations(problem, replace(plan, placements=(crowded,) + tuple(plan.placements[1:])))
    assert any("memory" in v for v in found)


@pytest.mark.parametrize("memory, extra, match", [
    ("fitt", "", "H200.memory_mb': 'fitt': expected"),
    ("fit", "      latency_ms: {1: 2.0}\n", "H200.latency_ms': give either latency_ms or profile"),
])
def test_errors_name_the_key(tmp_path, memory, extra, match):
    with pytest.raises(ValidationError, match=match):
        load_problem(fleet(tmp_path, memory=memory, extra=extra))


def test_fit_with_an_inline_table_and_a_profile_without_memory_are_errors(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("problem: fleet\ngpu_types:\n- {name: G, count: 1, memory_mb: 1000, price_per_hour: 1}\n"
                    "models:\n- name: m\n  rate_rps: 10\n  slo_ms: 100\n  performance:\n"
                    "    G: {latency_ms: {1: 2.0}, memory_mb: fit}\n")
    with pytest.raises(ValidationError, match=r"models\[0\]\.performance\.G\.memory_mb.*inline latency_ms"):
        load_problem(path)
    text = fleet(tmp_path).read_text()
    load_profile(PROFILE).frame.drop(columns=["memory_mb"]).to_csv(tmp_path / "q.csv", index=False)
    (tmp_path / "g.yaml").write_text(text.replace("profile: p.csv", "profile: q.csv"))
    with pytest.raises(ValidationError, match=r"performance\.H200\.memory_mb.*q\.csv has no memory_mb"):
        load_problem(tmp_path / "g.yaml")


def test_nothing_fits_is_an_error_naming_the_entry(tmp_path):
    path = fleet(tmp_path, gpu_mb=4096)
    path.write_text(path.read_text().replace("memory_mb: 1024", "memory_mb: 64"))
    with pytest.raises(ValidationError, match=r"H200/1g\.1gb\.memory_mb.*not even batch 1 fits in 64 MiB"):
        load_problem(path)


def test_planned_memory_fits_exactly_where_largest_batch_says():
    """Over profiled, unprofiled and beyond sizes and limits with and without a boundary: the planned memory of
    batch b is within the limit for b <= largest_batch and above it at the next batch."""
    rng = np.random.default_rng(3)
    rows = []
    for s in (128, 192, 256):
        for b in (1, 2, 4, 8, 16, 32, 64):
            rows.append({"model": "net", "input_size": s, "batch_size": b,
                         "memory_mb": (120 + 2.5e-4 * b * s * s) * (1 + rng.uniform(-0.01, 0.01)),
                         "oom_batch_size": int((0.9 * 4096 - 120) / (2.5e-4 * s * s)) + 1})
    frame = pd.DataFrame(rows)
    model = MaxBatchModel(structure="family", oom_limit_mb=4096).fit(frame[COLS], frame["memory_mb"])
    model.calibrate(*boundaries_from_profile(frame, COLS))
    query = pd.DataFrame({"batch_size": 1, "model": "net", "input_size": [96, 128, 160, 256, 320]})
    for limit in (4096, 2048, 777):
        largest = model.largest_batch(query, limit)
        for k, size in enumerate(query.input_size):
            top = int(largest["max_batch"][k])
            grid = pd.DataFrame({"batch_size": np.arange(1, top + 2), "model": "net", "input_size": size})
            planned = model.planned_memory(grid, limit)
            assert np.all(planned["memory_mb"][:top] <= limit) and planned["memory_mb"][top] > limit
            assert set(planned["basis"]) == {largest["basis"][k]}
            np.testing.assert_allclose(planned["usable_fraction"], largest["usable_fraction"][k])
    with pytest.raises(ValidationError, match="planned_memory: memory_limit_mb"):
        model.planned_memory(query, -1)
