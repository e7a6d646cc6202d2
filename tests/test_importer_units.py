"""Importers: memory in MiB like the rest of servopt, and Model Analyzer's outcome columns never made labels."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servopt.performance.features import TARGETS, feature_columns, group_columns
from servopt.profiles import CANONICAL, label_columns, read_model_analyzer, read_perf_analyzer

MIB = 2**20


def write(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- perf_analyzer: GPU memory cells are bytes, memory_mb is MiB ----------------------------------------------------

PA_HEADER = "Concurrency,Inferences/Second,p50 latency,p99 latency,Max GPU Memory Usage,Total GPU Memory\n"


def test_perf_analyzer_memory_bytes_become_mib(tmp_path):
    # a 16 GB T4 as NVML reports it (15843721216 bytes = 15109.75 MiB); 1.5 GiB used on one GPU, 1 GiB + 0.5 GiB on two
    text = PA_HEADER + ("1,100,2000,3000,GPU-a:1610612736;,GPU-a:15843721216;\n"
                        "2,150,2500,3500,GPU-a:1073741824;GPU-b:536870912;,GPU-a:15843721216;GPU-b:15843721216;\n")
    frame = read_perf_analyzer(write(tmp_path, text, "r50_b1.csv"), model="r50", hardware="T4").frame
    assert frame["memory_mb"].tolist() == [1536.0, 1536.0]
    assert frame["hw.gpu_memory_total_mb"].tolist() == [15109.75, 2 * 15109.75]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=80 * 2**30), min_size=1, max_size=4))
def test_perf_analyzer_memory_is_bytes_over_2_20(tmp_path_factory, used):
    cell = "".join(f"GPU-{i}:{b};" for i, b in enumerate(used))
    path = write(tmp_path_factory.mktemp("pa"), PA_HEADER + f"1,100,2000,3000,{cell},\n", "m_b1.csv")
    frame = read_perf_analyzer(path, model="m", hardware="A100-80GB").frame
    assert frame["memory_mb"].iloc[0] == pytest.approx(sum(used) / MIB, rel=1e-12, abs=1e-12)


# --- Model Analyzer: MB (10**6 bytes) become MiB ---------------------------------------------------------------------

MA_HEADER = ("Model,Batch,Concurrency,Model Config Path,Instance Group,Max Batch Size,Satisfies Constraints,"
             "Throughput (infer/sec),p99 Latency (ms)")
MA_GPU_HEADER = ("Model,GPU UUID,Batch,Concurrency,Model Config Path,Instance Group,Satisfies Constraints,"
                 "GPU Memory Usage (MB),GPU Utilization (%),GPU Power Usage (W)\n")


def test_model_analyzer_mb_become_mib(tmp_path):
    # Model Analyzer writes Triton's nv_gpu_memory_used_bytes // 1e6 as "MB"; 1048.576 MB are 1000 MiB
    inference = (MA_HEADER + ",GPU Memory Available (MB),RAM Usage (MB),RAM Available (MB)\n"
                 "r50,1,1,r50_config_0,1:GPU,8,Yes,250.0,4.5,14680.064,2097.152,31457.28\n")
    gpu = MA_GPU_HEADER + "r50,GPU-a,1,1,r50_config_0,1:GPU,Yes,1048.576,50,60\n"
    frame = read_model_analyzer([write(tmp_path, inference, "inf.csv"), write(tmp_path, gpu, "gpu.csv")],
                                hardware="T4").frame.iloc[0]
    assert frame["memory_mb"] == pytest.approx(1000.0, rel=1e-12)
    assert frame["hw.gpu_memory_available_mb"] == pytest.approx(14000.0, rel=1e-12)
    assert frame["hw.ram_usage_mb"] == pytest.approx(2000.0, rel=1e-12)
    assert frame["hw.ram_available_mb"] == pytest.approx(30000.0, rel=1e-12)
    assert frame["hw.gpu_utilization_pct"] == 50 and frame["hw.gpu_power_w"] == 60  # not memory: unchanged


def test_memory_mb_is_documented_as_mib():
    assert "(MiB)" in CANONICAL["memory_mb"].meaning


# --- Model Analyzer: Satisfies Constraints is an outcome, not a setting ---------------------------------------------

def _ma_sweep(no_above_ms: float | None) -> tuple[str, str]:
    """Two configs x three concurrencies x batches 1..16, 'No' where p99 > no_above_ms (None: all 'Yes')."""
    inference, gpu = [MA_HEADER], [MA_GPU_HEADER.rstrip("\n")]
    for config, group in (("r50_config_0", "1:GPU"), ("r50_config_1", "2:GPU")):
        for batch in (1, 2, 4, 8, 16):
            for conc in (1, 2, 4):
                latency = (2.5 + 1.1 * batch) * (1 + 0.3 * (conc - 1))
                p99 = 1.3 * latency
                ok = "No" if no_above_ms is not None and p99 > no_above_ms else "Yes"
                inference.append(f"r50,{batch},{conc},{config},{group},16,{ok},{conc * batch / latency * 1000:.1f},"
                                 f"{p99:.2f}")
                gpu.append(f"r50,GPU-a,{batch},{conc},{config},{group},{ok},{1500 + 60 * batch},50,60")
    return "\n".join(inference) + "\n", "\n".join(gpu) + "\n"


@pytest.mark.parametrize("with_gpu", [False, True])
def test_satisfies_constraints_is_not_a_label(tmp_path, with_gpu):
    frames = {}
    for name, limit in (("all_yes", None), ("some_no", 15.0)):
        inference, gpu = _ma_sweep(limit)
        assert limit is None or ",No," in inference
        paths = [write(tmp_path, inference, f"{name}-inference.csv")]
        if with_gpu:
            paths.append(write(tmp_path, gpu, f"{name}-gpu.csv"))
        frames[name] = read_model_analyzer(paths, hardware="T4", input_size=224).frame
    yes, mixed = frames["all_yes"], frames["some_no"]
    assert "satisfies_constraints" not in mixed.columns
    assert label_columns(mixed) == label_columns(yes)
    assert mixed.drop(columns="source").equals(yes.drop(columns="source"))
    # the fit sees one configuration per (config, concurrency), each with its whole batch sweep
    latency = TARGETS["latency"]
    assert group_columns(mixed, latency) == group_columns(yes, latency)
    assert feature_columns(mixed, latency) == feature_columns(yes, latency)
    sizes = mixed.groupby(group_columns(mixed, latency), dropna=False)["batch_size"].nunique()
    assert len(sizes) == 6 and set(sizes) == {5}
