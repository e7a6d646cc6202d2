"""NVML sampled over a measurement window: a background thread, mean and max per key (used by the torch profiler).

:class:`HardwareMonitor` takes one sample per call; a GPU's utilisation, clocks and power change within a
point's steady-state runs, so the torch profiler samples them every ``interval_s`` (25 ms by default) in a
thread while the runs go on and keeps the mean and the max of each key. The keys are the seed's
(``05_gpu_smi/gpu_{ix}_*``, see :mod:`servopt.measure.hwmon`): the mean is written under the seed's key, the max
under the key plus ``_max``.

The reading function is a parameter, so the aggregation is tested without a GPU:

>>> values = iter([{"k": 1.0}, {"k": 3.0}, {"k": 2.0}])
>>> s = WindowSampler(lambda: next(values, {}), interval_s=0.001)
>>> s.sample_now(); s.sample_now(); s.sample_now()
>>> s.summary()
{'k': 2.0, 'k_max': 3.0, 'window_samples': 3.0}
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["WindowSampler", "nvml_reader", "nvml_handle_for_torch_device"]

_MIB = float(2**20)


class WindowSampler(threading.Thread):
    """Calls ``read()`` every ``interval_s`` seconds between :meth:`start` and :meth:`stop`; keeps mean and max.

    Parameters
    ----------
    read : callable
        Returns a dict of floats (keys may be missing from some samples; a failing read is skipped).
    interval_s : float
        Time between two samples (default 25 ms).
    """

    def __init__(self, read: Callable[[], dict[str, float]], interval_s: float = 0.025) -> None:
        super().__init__(daemon=True)
        self._read, self._interval = read, interval_s
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._sum: dict[str, float] = {}
        self._max: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self.samples = 0

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample_now()
            self._halt.wait(self._interval)

    def sample_now(self) -> None:
        """Take one sample now (the thread does this every ``interval_s``)."""
        try:
            values = self._read()
        except Exception:  # a driver hiccup loses one sample, not the point
            return
        with self._lock:
            self.samples += 1
            for key, value in values.items():
                self._sum[key] = self._sum.get(key, 0.0) + value
                self._max[key] = max(self._max.get(key, value), value)
                self._count[key] = self._count.get(key, 0) + 1

    def stop(self) -> dict[str, float]:
        """Stop the thread (after one last sample) and return :meth:`summary`."""
        self._halt.set()
        if self.is_alive():
            self.join()
        self.sample_now()
        return self.summary()

    def summary(self) -> dict[str, float]:
        """``key`` -> mean, ``key_max`` -> max over the samples, ``window_samples`` -> how many were taken."""
        with self._lock:
            out: dict[str, float] = {}
            for key in sorted(self._sum):
                out[key] = self._sum[key] / self._count[key]
                out[key + "_max"] = self._max[key]
            out["window_samples"] = float(self.samples)
            return out


def nvml_handle_for_torch_device(nvml: Any, torch: Any, index: int) -> tuple[Any, int]:
    """NVML handle and NVML index of CUDA device ``index`` (matched by UUID, as ``CUDA_VISIBLE_DEVICES`` may
    renumber devices; by index when the UUID is not available)."""
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else "GPU-" + uuid)
        return handle, int(nvml.nvmlDeviceGetIndex(handle))
    except Exception:
        return nvml.nvmlDeviceGetHandleByIndex(index), index


def nvml_reader(nvml: Any, handle: Any, ix: int, pid: int | None = None) -> Callable[[], dict[str, float]]:
    """A ``read()`` for :class:`WindowSampler`: one GPU's utilisation, SM clock, power, temperature and memory.

    Keys: ``05_gpu_smi/gpu_{ix}_{gpu_util_in_percent, mem_util_in_percent, sm_clock_MHz, power_in_W, temp_in_C,
    fb_used_MiB}`` (the seed's names and units) and ``torch/nvml_process_used_mb`` (this process's memory on the
    GPU as NVML sees it, MiB; absent where NVML cannot see the process, e.g. in another PID namespace).
    """
    pid = os.getpid() if pid is None else pid
    p = f"05_gpu_smi/gpu_{ix}_"
    temp_sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
    sm_clock = getattr(nvml, "NVML_CLOCK_SM", 1)

    def read() -> dict[str, float]:
        out: dict[str, float] = {}
        for key, fn in (
            ("util", lambda: nvml.nvmlDeviceGetUtilizationRates(handle)),
            ("sm", lambda: nvml.nvmlDeviceGetClockInfo(handle, sm_clock)),
            ("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle)),
            ("temp", lambda: nvml.nvmlDeviceGetTemperature(handle, temp_sensor)),
            ("fb", lambda: nvml.nvmlDeviceGetMemoryInfo(handle)),
            ("procs", lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle)),
        ):
            try:
                value = fn()
            except Exception:
                continue
            if key == "util":
                out[p + "gpu_util_in_percent"] = float(value.gpu)
                out[p + "mem_util_in_percent"] = float(value.memory)
            elif key == "sm":
                out[p + "sm_clock_MHz"] = float(value)
            elif key == "power":
                out[p + "power_in_W"] = value / 1000.0
            elif key == "temp":
                out[p + "temp_in_C"] = float(value)
            elif key == "fb":
                out[p + "fb_used_MiB"] = value.used / _MIB
            else:
                used = [proc.usedGpuMemory for proc in value
                        if proc.pid == pid and isinstance(getattr(proc, "usedGpuMemory", None), int)]
                if used:
                    out["torch/nvml_process_used_mb"] = sum(used) / _MIB
        return out

    return read
