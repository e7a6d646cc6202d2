"""The two devices of the torch profiler: what differs between CPU and CUDA (timing, memory, limits, NVML).

:func:`make_device` returns a :class:`CpuDevice` or a :class:`CudaDevice`; :mod:`servopt.measure.torch_runtime`
calls only their methods, so tests drive the GPU control flow (memory limit, OOM, peaks, window sampling) with a
fake device on a CPU-only machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from servopt.exceptions import BackendUnavailableError, ValidationError
from servopt.measure.hwmon import HighWaterMark, PeakMemoryTracker, gpu_hardware_name, hardware_name, rss_bytes
from servopt.measure.sweep import is_oom_error

__all__ = ["CpuDevice", "CudaDevice", "make_device"]

_MIB = float(2**20)


class CpuDevice:
    """Timing with perf_counter, memory as peak RSS minus the RSS before the model was loaded."""

    #: False: the memory limit is checked against the peak after each run
    enforces_limit = False

    def __init__(self, torch: Any) -> None:
        self._torch = torch
        self.torch_device = torch.device("cpu")
        self._hwm: HighWaterMark | None = None
        self._tracker: PeakMemoryTracker | None = None
        self._baseline = 0.0

    def hardware_name(self) -> str:
        return hardware_name("cpu")

    def set_memory_limit(self, limit_mb: float) -> None:
        pass  # checked against the peak RSS after each point

    def memory_baseline(self) -> float:
        return rss_bytes()

    def synchronize(self) -> None:
        pass

    def empty_cache(self) -> None:
        from servopt.measure.hwmon import release_free_memory

        release_free_memory()

    def time_ms(self, fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    def is_oom(self, exc: BaseException) -> bool:
        return is_oom_error(exc)

    def begin_point(self, baseline: float) -> None:
        self._baseline = baseline
        self._hwm = HighWaterMark()
        self._tracker = PeakMemoryTracker(rss_bytes, rss_bytes(), None, _NoTerminate())
        self._tracker.start()

    def end_point(self) -> dict[str, float]:
        assert self._tracker is not None and self._hwm is not None
        self._tracker.stop()
        peak = max(self._tracker.peak, self._hwm.read())
        return {"memory_mb": max(peak - self._baseline, 0.0) / _MIB}

    def window_reader(self) -> None:
        return None

    def close(self) -> None:
        pass


class CudaDevice:
    """CUDA events for timing, the caching allocator's peaks for memory, NVML for the window features."""

    #: True: PyTorch's allocator refuses to pass the limit (OutOfMemoryError), no check after the run
    enforces_limit = True

    def __init__(self, torch: Any) -> None:
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"device 'cuda': torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False; "
                "a CPU-only wheel, or no NVIDIA driver/GPU); install a CUDA build of torch on a machine with a GPU")
        self._torch = torch
        self.index = torch.cuda.current_device()
        self.torch_device = torch.device("cuda", self.index)
        torch.cuda.init()
        self._nvml: Any = None
        self._limited = False

    def hardware_name(self) -> str:
        return gpu_hardware_name(self._torch.cuda.get_device_name(self.index))

    def set_memory_limit(self, limit_mb: float) -> None:
        total = self._torch.cuda.get_device_properties(self.index).total_memory
        fraction = limit_mb * _MIB / total
        if fraction > 1:
            raise ValidationError(f"memory_limit_mb: {limit_mb:g} MiB is more than the GPU's {total / _MIB:.0f} MiB")
        self._torch.cuda.set_per_process_memory_fraction(fraction, self.index)
        self._limited = True

    def memory_baseline(self) -> float:
        return 0.0

    def synchronize(self) -> None:
        self._torch.cuda.synchronize(self.index)

    def empty_cache(self) -> None:
        self._torch.cuda.empty_cache()

    def time_ms(self, fn: Callable[[], Any]) -> float:
        cuda = self._torch.cuda
        start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))

    def is_oom(self, exc: BaseException) -> bool:
        return isinstance(exc, self._torch.cuda.OutOfMemoryError) or is_oom_error(exc)

    def begin_point(self, baseline: float) -> None:
        self._torch.cuda.reset_peak_memory_stats(self.index)

    def end_point(self) -> dict[str, float]:
        cuda = self._torch.cuda
        allocated = cuda.max_memory_allocated(self.index) / _MIB
        reserved = cuda.max_memory_reserved(self.index) / _MIB
        return {"memory_mb": reserved, "torch/allocated_peak_mb": allocated, "torch/reserved_peak_mb": reserved}

    def window_reader(self) -> Callable[[], dict[str, float]] | None:
        from servopt.measure.gpu_sampler import nvml_handle_for_torch_device, nvml_reader
        from servopt.measure.hwmon import _nvml

        self._nvml = _nvml()
        if self._nvml is None:
            return None
        handle, ix = nvml_handle_for_torch_device(self._nvml, self._torch, self.index)
        return nvml_reader(self._nvml, handle, ix)

    def close(self) -> None:
        if getattr(self, "_limited", False):  # the limit is the profile's, not the rest of the process's
            self._torch.cuda.set_per_process_memory_fraction(1.0, self.index)
            self._limited = False
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None


class _NoTerminate:
    terminate = False


def make_device(device: str, torch: Any) -> Any:
    return CudaDevice(torch) if device == "cuda" else CpuDevice(torch)
