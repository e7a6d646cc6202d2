"""servopt.measure.torch_runtime (``servopt profile --runtime torch``), its devices and the NVML window sampler.

CI installs torch's CPU build, so the ``torch`` tests run there on tiny models defined here (saved with
``torch.export.save`` and ``torch.jit.save``; torchvision does not import with that build). The GPU-only parts
(CUDA events, the memory fraction, OOM, the bisection, NVML sampling) run through fakes of the device, of
``torch.cuda`` and of NVML, which cover their control flow on CPU.
"""

from __future__ import annotations

import csv
import time
import types
from pathlib import Path
from typing import Any

import pytest

from servopt.cli import main
from servopt.exceptions import BackendUnavailableError, ServoptError, ValidationError
from servopt.measure.gpu_sampler import WindowSampler, nvml_reader
from servopt.measure.hwmon import gpu_hardware_name
from servopt.measure.profiler import coefficient_of_variation, steady_state
from servopt.measure.torch_runtime import find_oom_boundary

FAST = dict(repeats=4, min_repeats=2, time_budget_s=0.02)


def _torch() -> Any:
    return pytest.importorskip("torch", reason="torch is not installed (CI installs torch==2.13.0+cpu; "
                                               "pip install 'servopt[torch]')")


def _net(torch: Any) -> Any:
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch = _torch()
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("torch_models")
    net = _net(torch).eval()
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    exported = torch.export.export(net, (torch.rand(2, 3, 16, 16),),
                                   dynamic_shapes=({0: batch, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO},))
    torch.export.save(exported, folder / "tiny.pt2")
    static = torch.export.export(net, (torch.rand(2, 3, 16, 16),))
    torch.export.save(static, folder / "static.pt2")
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 3, 16, 16)), folder / "tiny_ts.pt")
    return {"export": folder / "tiny.pt2", "static": folder / "static.pt2", "script": folder / "tiny_ts.pt"}


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------- pure control flow
def test_steady_state_remeasures_a_noisy_point_once_and_marks_it():
    times = iter([10.0, 10.0, 30.0] + [10.0, 10.5] * 3)
    stats = steady_state(lambda: next(times), 3, 3, 60.0, max_cv=0.1)
    assert stats["unstable"] == 1 and stats["repeats"] == 6 and stats["latency_cv"] < 0.1
    calm = steady_state(lambda: 5.0, 4, 2, 60.0, max_cv=0.1)
    assert calm == {"latency_ms": 5.0, "latency_p99_ms": 5.0, "latency_cv": 0.0, "repeats": 4, "unstable": 0}
    noisy = iter([1.0, 9.0] * 10)
    assert steady_state(lambda: next(noisy), 2, 2, 60.0, max_cv=None)["unstable"] == 0  # None: never re-measured
    assert coefficient_of_variation([3.0]) == 0.0


@pytest.mark.parametrize("limit", [1, 2, 3, 37, 64, 65, 1000])
def test_bisection_finds_the_boundary_from_any_grid_knowledge(limit):
    tried: list[int] = []

    def fits(b: int) -> bool:
        tried.append(b)
        return b <= limit

    assert find_oom_boundary(fits)[:2] == (limit, limit + 1)
    assert len(tried) <= 2 * (limit.bit_length() + 1)
    assert find_oom_boundary(lambda b: b <= limit, largest_fit=1 if limit >= 1 else 0)[:2] == (limit, limit + 1)
    assert find_oom_boundary(lambda b: b <= limit, 0, 2048)[:2] == (limit, limit + 1)
    assert find_oom_boundary(lambda b: False) == (0, 1, [1])  # not even batch 1 fits
    assert find_oom_boundary(lambda b: True, cap=100) == (100, None, [1, 2, 4, 8, 16, 32, 64, 100])


def test_window_sampler_thread_aggregates_mean_and_max():
    values = iter(range(1, 10_000))
    sampler = WindowSampler(lambda: {"k": float(next(values))}, interval_s=0.001)
    sampler.start()
    while sampler.samples < 5:
        time.sleep(0.001)
    summary = sampler.stop()
    n = summary["window_samples"]
    assert n >= 6 and summary["k_max"] == n and summary["k"] == (n + 1) / 2
    broken = WindowSampler(lambda: 1 / 0)
    broken.sample_now()
    assert broken.summary() == {"window_samples": 0.0}


class FakeNvml:
    NVML_TEMPERATURE_GPU, NVML_CLOCK_SM = 0, 1

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def nvmlDeviceGetUtilizationRates(self, h):  # noqa: N802 (NVML's names)
        return types.SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetClockInfo(self, h, clock):  # noqa: N802
        assert clock == self.NVML_CLOCK_SM
        return 1980

    def nvmlDeviceGetPowerUsage(self, h):  # noqa: N802
        return 512_000

    def nvmlDeviceGetTemperature(self, h, sensor):  # noqa: N802
        return 55

    def nvmlDeviceGetMemoryInfo(self, h):  # noqa: N802
        return types.SimpleNamespace(used=3 * 2**30, total=141 * 2**30, free=138 * 2**30)

    def nvmlDeviceGetComputeRunningProcesses(self, h):  # noqa: N802
        return [types.SimpleNamespace(pid=self.pid, usedGpuMemory=700 * 2**20),
                types.SimpleNamespace(pid=self.pid + 1, usedGpuMemory=5 * 2**30)]


def test_nvml_reader_uses_the_seed_keys_and_this_process_memory():
    read = nvml_reader(FakeNvml(pid=4242), handle=object(), ix=2, pid=4242)
    assert read() == {
        "05_gpu_smi/gpu_2_gpu_util_in_percent": 87.0, "05_gpu_smi/gpu_2_mem_util_in_percent": 40.0,
        "05_gpu_smi/gpu_2_sm_clock_MHz": 1980.0, "05_gpu_smi/gpu_2_power_in_W": 512.0,
        "05_gpu_smi/gpu_2_temp_in_C": 55.0, "05_gpu_smi/gpu_2_fb_used_MiB": 3072.0,
        "torch/nvml_process_used_mb": 700.0,
    }
    assert gpu_hardware_name("NVIDIA H200") == "H200"


# --------------------------------------------------------------------------------------- real torch, CPU
@pytest.mark.torch
@pytest.mark.parametrize("kind", ["export", "script"])
def test_profile_torch_on_cpu_writes_a_loadable_profile(models, tmp_path, kind):
    from servopt.measure.torch_runtime import profile_torch
    from servopt.profiles import load_profile

    out = tmp_path / "p.csv"
    run = profile_torch(models[kind], [1, 3], [16, 24], cores=1, output=out, **FAST)
    assert [(r["input_size"], r["batch_size"]) for r in run.rows] == [(16, 1), (16, 3), (24, 1), (24, 3)]
    row = run.rows[0]
    assert row["variant"] == f"{models[kind].stem}-fp32" and row["precision"] == "fp32"
    assert row["framework"].startswith("torch ") and row["cores"] == 1 and row["hardware"].startswith("cpu-")
    assert row["latency_ms"] <= row["latency_p99_ms"] and row["warmup_ms"] > 0 and row["load_time_s"] > 0
    assert row["unstable"] in (0, 1) and row["latency_cv"] >= 0 and row["memory_mb"] >= 0
    frame = load_profile(out).frame
    assert len(frame) == 4 and {"latency_cv", "unstable", "oom_batch_size"} <= set(frame.columns)
    assert read_rows(out)[0]["source"].startswith("servopt profile --runtime torch")


@pytest.mark.torch
def test_bf16_inputs_and_cli(models, tmp_path):
    out = tmp_path / "bf16.csv"
    code = main(["profile", "--runtime", "torch", str(models["export"]), "--dtype", "bf16", "--batch-sizes", "2",
                 "--input-sizes", "16", "--repeats", "3", "--time-budget", "0.02", "-q", "-o", str(out)])
    assert code == 0
    (row,) = read_rows(out)
    assert row["precision"] == "bf16" and row["variant"] == "tiny-bf16"


@pytest.mark.torch
def test_cli_refusals(models, tmp_path, capsys):
    base = ["--batch-sizes", "1", "--input-sizes", "16", "-q", "-o", str(tmp_path / "x.csv")]
    assert main(["profile", str(models["export"]), "--dtype", "fp16", *base]) == 2  # ONNX Runtime path
    assert "--runtime torch" in capsys.readouterr().err
    assert main(["profile", "--runtime", "torch", str(models["export"]), "--cores", "1,2", *base]) == 2
    assert main(["profile", "--runtime", "torch", str(models["export"]), "--find-max-batch", *base]) == 2
    assert "memory_limit_mb" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.torch
def test_static_export_and_missing_torchvision_are_explained(models, tmp_path):
    from servopt.measure.torch_runtime import profile_torch

    with pytest.raises(ServoptError, match="dynamic"):
        profile_torch(models["static"], [3], [16], **FAST)
    try:
        import torchvision  # noqa: F401
    except Exception:
        with pytest.raises(BackendUnavailableError, match="torchvision build that matches torch"):
            profile_torch("torchvision:resnet18", [1], [16], **FAST)
    with pytest.raises(ValidationError, match="no such model file"):
        profile_torch(tmp_path / "missing.pt2", [1], [16])
    (tmp_path / "junk.pt").write_text("not a zip")
    with pytest.raises(ValidationError, match="not a TorchScript or torch.export file"):
        profile_torch(tmp_path / "junk.pt", [1], [16])


@pytest.mark.torch
def test_cuda_without_a_gpu_is_refused(models):
    torch = _torch()
    from servopt.measure.torch_runtime import profile_torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        profile_torch(models["export"], [1], [16], device="cuda", **FAST)


# ------------------------------------------------------------------------------ GPU control flow, faked
class FakeCuda:
    """``torch.cuda`` of a 141 GiB GPU whose allocator counts the bytes of the inputs it is given."""

    OutOfMemoryError = RuntimeError  # replaced by torch's class in the tests

    def __init__(self, torch: Any) -> None:
        self.OutOfMemoryError = torch.cuda.OutOfMemoryError
        self.calls: list[tuple[str, Any]] = []
        self.peak = 0.0
        self.clock = 0.0

    def set_per_process_memory_fraction(self, fraction, index):
        self.calls.append(("fraction", round(fraction, 6)))

    def get_device_properties(self, index):
        return types.SimpleNamespace(total_memory=141 * 2**30)

    def get_device_name(self, index):
        return "NVIDIA H200"

    def synchronize(self, index=None):
        self.calls.append(("sync", None))

    def empty_cache(self):
        self.calls.append(("empty_cache", None))

    def reset_peak_memory_stats(self, index):
        self.peak = 0.0

    def max_memory_allocated(self, index):
        return self.peak

    def max_memory_reserved(self, index):
        return self.peak * 1.25

    def Event(self, enable_timing):  # noqa: N802 (torch's name)
        assert enable_timing
        cuda = self

        class Event:
            def record(self):
                cuda.clock += 1.5
                self.t = cuda.clock

            def synchronize(self):
                cuda.calls.append(("event_sync", None))

            def elapsed_time(self, end):
                return end.t - self.t

        return Event()


@pytest.mark.torch
def test_gpu_path_with_a_fake_cuda_device(models, tmp_path, monkeypatch):
    """Memory fraction, CUDA-event timing, OOM sweeps, bisection and NVML columns, driven on CPU."""
    torch = _torch()
    from servopt.measure import torch_devices, torch_runtime
    from servopt.profiles import load_profile

    fake = FakeCuda(torch)
    real_net = torch_runtime.load_torch_model(str(models["export"]), torch)
    limit_mib = 64.0

    class OomNet(torch.nn.Module):  # "allocates" 1 MiB per image per 16x16 pixels; OOM past the limit
        def __init__(self) -> None:
            super().__init__()
            self.net = real_net

        def forward(self, x):
            need = x.shape[0] * (x.shape[2] * x.shape[3] / 256) * 2**20
            if need > limit_mib * 2**20:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate ...")
            fake.peak = max(fake.peak, need)
            return self.net(x)

    class FakeDevice(torch_devices.CudaDevice):
        def __init__(self, torch_: Any) -> None:  # no torch.cuda.init: tensors stay on the CPU
            self._torch = types.SimpleNamespace(cuda=fake, __version__=torch.__version__)
            self.index, self.torch_device, self._nvml = 0, torch.device("cpu"), None

        def window_reader(self):
            counter = iter(range(1, 1_000_000))
            return lambda: {"05_gpu_smi/gpu_0_power_in_W": float(next(counter))}

    monkeypatch.setattr(torch_runtime, "make_device", lambda device, torch_: FakeDevice(torch_))
    monkeypatch.setattr(torch_runtime, "load_torch_model", lambda spec, torch_: OomNet())
    out = tmp_path / "gpu.csv"
    run = torch_runtime.profile_torch(models["export"], [1, 2, 4, 8, 16, 32, 64, 128], [16, 32], device="cuda",
                                      memory_limit_mb=limit_mib, find_max_batch=True, output=out,
                                      sample_interval_s=0.001, **FAST)
    fractions = [value for call, value in fake.calls if call == "fraction"]
    assert fractions == [round(limit_mib / (141 * 1024), 6), 1.0]  # set for the profile, lifted after it
    assert ("event_sync", None) in fake.calls
    # 16 px: 1 MiB per image, the grid's 128 runs out; 32 px: 4 MiB per image, fits up to 16
    assert [(o["input_size"], o["batch_size"]) for o in run.oom] == [(16, 128), (32, 32)]
    assert [(m["input_size"], m["max_batch"], m["oom_batch"]) for m in run.max_batch] == [(16, 64, 65), (32, 16, 17)]
    by_size = {s: [r for r in run.rows if r["input_size"] == s] for s in (16, 32)}
    assert [r["batch_size"] for r in by_size[16]] == [1, 2, 4, 8, 16, 32, 64]
    assert {r["oom_batch_size"] for r in by_size[16]} == {65} and {r["oom_batch_size"] for r in by_size[32]} == {17}
    assert {r["oom_limit_mb"] for r in run.rows} == {float(limit_mib)}
    row = by_size[32][-1]
    assert row["hardware"] == "H200" and row["cores"] is None
    assert row["latency_ms"] == 1.5  # elapsed between the two fake events
    assert row["hw.torch/allocated_peak_mb"] == 64.0 and row["memory_mb"] == row["hw.torch/reserved_peak_mb"] == 80.0
    assert row["hw.05_gpu_smi/gpu_0_power_in_W_max"] >= row["hw.05_gpu_smi/gpu_0_power_in_W"] >= 1.0
    assert row["hw.torch/nvml_samples"] >= 2
    frame = load_profile(out).frame
    assert len(frame) == len(run.rows) and frame["oom_batch_size"].notna().all()
    # every OOM was followed by empty_cache before the next allocation
    names = [c for c, _ in fake.calls]
    assert names.count("empty_cache") >= len(run.max_batch[0]["trials"])


@pytest.mark.torch
def test_cuda_device_reads_the_allocator_and_refuses_a_limit_above_the_gpu(monkeypatch):
    torch = _torch()
    from servopt.measure.torch_devices import CudaDevice

    fake = FakeCuda(torch)
    dev = CudaDevice.__new__(CudaDevice)
    dev._torch, dev.index, dev._nvml = types.SimpleNamespace(cuda=fake), 0, None
    fake.peak = 100 * 2**20
    assert dev.end_point() == {"memory_mb": 125.0, "torch/allocated_peak_mb": 100.0, "torch/reserved_peak_mb": 125.0}
    assert dev.is_oom(torch.cuda.OutOfMemoryError("x")) and not dev.is_oom(ValueError("shape"))
    assert dev.hardware_name() == "H200"
    with pytest.raises(ValidationError, match="more than the GPU"):
        dev.set_memory_limit(200 * 1024)


def test_onnx_path_records_cv_and_unstable(tmp_path):
    pytest.importorskip("onnxruntime")
    from servopt.measure.onnx_models import save_model, tiny_cnn
    from servopt.measure.profiler import profile_model

    path = save_model(tiny_cnn(), tmp_path / "tiny.onnx")
    run = profile_model(path, [1], [16], repeats=4, min_repeats=2, time_budget_s=5, max_cv=1e-9)
    (row,) = run.rows
    assert row["unstable"] == 1 and row["repeats"] == 8 and row["latency_cv"] >= 0


@pytest.mark.torch
def test_total_budget_stops_the_boundary_search(models, monkeypatch):
    from servopt.measure import torch_runtime

    clock = iter(range(1, 10_000))  # each perf_counter call of the profiler is one second later
    monkeypatch.setattr(torch_runtime, "time",
                        types.SimpleNamespace(perf_counter=lambda: float(next(clock)), strftime=time.strftime))
    run = torch_runtime.profile_torch(models["export"], [1], [16], total_budget_s=3.5, memory_limit_mb=10_000,
                                      find_max_batch=True, **FAST)
    assert len(run.rows) == 1 and run.max_batch == []
    assert "during the max-batch search of input size 16" in run.stopped
