"""servopt.measure.hwmon: key names against the seed monitor's schema, value semantics, NVML mapping (faked)."""

from __future__ import annotations

import csv
import math
import re
import types

import pytest

psutil = pytest.importorskip("psutil", reason="hardware monitoring needs the 'profile' extra (psutil)")

import servopt.measure.hwmon as hwmon  # noqa: E402
from servopt.exceptions import BackendUnavailableError  # noqa: E402
from servopt.measure.hwmon import CUMULATIVE_KEYS, HardwareMonitor, hardware_name, slugify  # noqa: E402

#: prefixes of the keys servopt adds to the seed's (documented in servopt/measure/hwmon.py)
SERVOPT_EXTRAS = ("cpu/util/", "cpu/times/", "cpu/freq/", "cpu/temp/")


@pytest.fixture(scope="module")
def seed_keys(reference_data) -> dict[str, str]:
    """key -> group of ``py_hardware_monitor_schema.csv``, with ``{ix}`` expanded to GPU 0."""
    with open(reference_data / "monitor" / "py_hardware_monitor_schema.csv", newline="") as fh:
        return {row["key"].replace("{ix}", "0"): row["group"] for row in csv.DictReader(fh)}


def test_cpu_sample_uses_the_seed_key_names(seed_keys):
    with HardwareMonitor(gpu=False) as mon:
        sample = mon.sample()
    assert mon.gpu_count == 0
    for key, value in sample.items():
        assert isinstance(value, float) and math.isfinite(value), key
        assert key in seed_keys or key.startswith(SERVOPT_EXTRAS), f"{key} is neither a seed key nor documented"
    wanted_groups = {"cpu", "memory", "process", "bandwidth"} | ({"disk"} if psutil.disk_io_counters() else set())
    wanted = {k for k, g in seed_keys.items() if g in wanted_groups}
    assert wanted - set(sample) == set()
    assert not any(k.startswith("05_gpu_smi/") for k in sample)


def test_sample_semantics():
    n = psutil.cpu_count(logical=True)
    with HardwareMonitor(gpu=False) as mon:
        first = mon.sample()
        sum(i * i for i in range(200_000))  # some work between samples
        second = mon.sample()
    assert len([k for k in second if re.fullmatch(r"cpu/util/core_\d+_percent", k)]) == n
    for s in (first, second):
        assert 0.0 <= s["cpu/util/total_percent"] <= 100.0
        assert 0.0 < s["memory/used_memory_sys_percent"] < 100.0
        assert s["process/memory/resident_set_size_proc_MB"] > 1.0
    for key in CUMULATIVE_KEYS & set(second):
        assert 0.0 <= first[key] <= second[key], key  # counted since the monitor was created
    assert second["cpu/interrupts/ctx_switches_count"] > 0


def test_static_info_and_hardware_name():
    with HardwareMonitor(gpu=False) as mon:
        info = mon.static_info()
    assert info["cpu_core_count"] == float(psutil.cpu_count(logical=True))
    assert info["total_memory_sys_MB"] > 100.0
    assert re.fullmatch(r"cpu-[a-z0-9]+(-[a-z0-9]+)*", hardware_name("cpu"))
    assert slugify("Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz") == "intel-xeon-gold-6126-cpu-2-60ghz"
    assert slugify("AMD EPYC 7B13 64-Core Processor") == "amd-epyc-7b13-64-core-processor"


class FakeNVML(types.SimpleNamespace):
    """Just enough of pynvml for one 80 GiB GPU; records shutdown."""

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2
    nvmlClocksThrottleReasonGpuIdle = 0x1
    nvmlClocksThrottleReasonApplicationsClocksSetting = 0x2
    nvmlClocksThrottleReasonSwPowerCap = 0x4
    nvmlClocksThrottleReasonHwSlowdown = 0x8

    def __init__(self) -> None:
        super().__init__(shutdown=False)

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"h{i}"

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA A100-SXM4-80GB"

    def nvmlSystemGetDriverVersion(self):
        return "550.54"

    def nvmlDeviceGetPciInfo(self, h):
        return types.SimpleNamespace(busId=b"00000000:07:00.0")

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=80 * 2**30, used=2**30, free=79 * 2**30)

    def nvmlDeviceGetBAR1MemoryInfo(self, h):
        return types.SimpleNamespace(bar1Total=2**30, bar1Used=2**20, bar1Free=2**30 - 2**20)

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=87, memory=41)

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 61

    def nvmlDeviceGetPowerUsage(self, h):
        return 312_500

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        return 0x4

    def nvmlDeviceGetClockInfo(self, h, clock):
        return {0: 1410, 1: 1410, 2: 1593}[clock]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h):
        raise RuntimeError("NVMLError_NotSupported")

    nvmlDeviceGetCurrPcieLinkGeneration = nvmlDeviceGetMaxPcieLinkGeneration
    nvmlDeviceGetMaxPcieLinkWidth = nvmlDeviceGetMaxPcieLinkGeneration
    nvmlDeviceGetCurrPcieLinkWidth = nvmlDeviceGetMaxPcieLinkGeneration

    def nvmlShutdown(self):
        self.shutdown = True


def test_nvml_sample_maps_to_the_seed_gpu_keys(monkeypatch, seed_keys):
    fake = FakeNVML()
    monkeypatch.setattr(hwmon, "_nvml", lambda: fake)
    with HardwareMonitor() as mon:
        sample, info = mon.sample(), mon.static_info()
        assert mon.gpu_count == 1 and mon.gpu_memory_used_mib() == [1024.0]
    assert fake.shutdown
    gpu = {k: v for k, v in sample.items() if k.startswith("05_gpu_smi/")}
    seed_gpu = {k for k in seed_keys if k.startswith("05_gpu_smi/")}
    assert seed_gpu <= set(gpu)  # every seed NVML key is produced under its seed name
    assert set(gpu) - seed_gpu == {f"05_gpu_smi/gpu_0_{c}_clock_MHz" for c in ("sm", "mem", "graphics")}
    assert gpu["05_gpu_smi/gpu_0_fb_total_MiB"] == 80 * 1024.0
    assert gpu["05_gpu_smi/gpu_0_power_in_W"] == 312.5
    assert gpu["05_gpu_smi/gpu_0_gpu_util_in_percent"] == 87.0
    assert gpu["05_gpu_smi/gpu_0_clocks_throttle_reason_sw_power_cap"] == 1.0
    assert gpu["05_gpu_smi/gpu_0_clocks_throttle_reason_gpu_idle"] == 0.0
    assert info["gpu_count"] == 1.0 and info["gpu_0_name"] == "NVIDIA A100-SXM4-80GB"
    assert info["gpu_0_pci_max_link"] == ""  # unsupported query -> empty, no crash
    assert hardware_name("cuda") == "A100-SXM4-80GB"


def test_gpu_true_without_nvml_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(hwmon, "_nvml", lambda: None)
    with pytest.raises(BackendUnavailableError, match="NVML"):
        HardwareMonitor(gpu=True)
    with HardwareMonitor() as mon:  # auto: CPU only
        assert mon.gpu_count == 0


def test_peak_memory_tracker_keeps_the_peak_and_trips_the_run_options():
    values = iter([100.0, 180.0, 400.0, 150.0] + [150.0] * 10_000)
    run_options = types.SimpleNamespace(terminate=False)
    tracker = hwmon.PeakMemoryTracker(lambda: next(values), baseline=100.0, limit_bytes=250.0,
                                      run_options=run_options, interval_s=0.001)
    tracker.start()
    while tracker.peak < 400.0:
        pass
    tracker.stop()
    assert tracker.peak == 400.0 and tracker.tripped and run_options.terminate is True
    quiet = types.SimpleNamespace(terminate=False)
    calm = hwmon.PeakMemoryTracker(lambda: 120.0, baseline=100.0, limit_bytes=250.0, run_options=quiet)
    calm.start()
    calm.stop()
    assert calm.peak == 120.0 and not calm.tripped and quiet.terminate is False


def test_high_water_mark_sees_a_freed_allocation():
    hwm = hwmon.HighWaterMark()
    if not hwm.available:
        pytest.skip("no writable /proc/self/clear_refs (not Linux?): the profiler relies on its 5 ms sampling")
    before = hwmon.rss_bytes()
    block = bytearray(b"\x01") * (64 * 2**20)  # 64 MiB, every page written
    del block
    assert hwm.read() - before > 60 * 2**20
