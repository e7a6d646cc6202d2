"""Hardware monitoring: one flat dict of numeric features per sample (psutil, and NVML when a GPU is present).

The keys follow the seed study's monitor, ``cirquit/py-hardware-monitor`` (its key list is in
``data/monitor/py_hardware_monitor_schema.csv``), wherever a key maps; the semantics are the same:

- counters (``cpu/interrupts/*``, ``process/*_ctx_switches``, ``disk/counter/*``, ``disk/time/*``) count since
  the :class:`HardwareMonitor` was created;
- rates (``bandwidth/*``) and utilisations (``cpu/util/*``, ``cpu/times/*``) cover the interval since the
  previous :meth:`HardwareMonitor.sample` call;
- everything else is the value at the moment of the sample.

Keys servopt adds (the seed has no per-core view): ``cpu/util/core_{i}_percent``, ``cpu/util/total_percent``,
``cpu/times/{user,system,iowait,steal}_percent``, ``cpu/freq/core_{i}_MHz``, ``cpu/freq/mean_MHz``,
``cpu/temp/<sensor>_<label>_C`` (only where the kernel exposes sensors), and per GPU
``05_gpu_smi/gpu_{ix}_{sm,mem,graphics}_clock_MHz``. The seed's PyTorch allocator groups (``03_gpu_mem/*``,
``04_agg_gpu/*``) have no ONNX Runtime counterpart and are not produced. The static keys of the seed's
``get_static_info`` are returned by :meth:`HardwareMonitor.static_info`.

Units follow the seed: ``*_MB`` system and process memory in 10**6 bytes, ``*_MiB`` GPU memory in 2**20 bytes.

>>> with HardwareMonitor(gpu=False) as mon:
...     sample = mon.sample()
>>> "memory/used_memory_sys_MB" in sample and all(isinstance(v, float) for v in sample.values())
True
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "HardwareMonitor",
    "hardware_name",
    "gpu_hardware_name",
    "cpu_model_name",
    "CUMULATIVE_KEYS",
    "slugify",
    "PeakMemoryTracker",
    "HighWaterMark",
    "rss_bytes",
    "release_free_memory",
]

_MB = 1e6
_MIB = float(2**20)

#: keys whose value counts since the monitor was created (a proxy for elapsed time, not a state).
CUMULATIVE_KEYS: frozenset[str] = frozenset(
    {
        "cpu/interrupts/ctx_switches_count",
        "cpu/interrupts/interrupts_count",
        "cpu/interrupts/soft_interrupts_count",
        "process/voluntary_proc_ctx_switches",
        "process/involuntary_proc_ctx_switches",
        "disk/counter/disk_read_sys_count",
        "disk/counter/disk_write_sys_count",
        "disk/time/disk_read_time_sys_s",
        "disk/time/disk_write_time_sys_s",
        "disk/time/disk_busy_time_sys_s",
    }
)

_THROTTLE_REASONS = (
    ("gpu_idle", "nvmlClocksThrottleReasonGpuIdle"),
    ("applications_clocks_setting", "nvmlClocksThrottleReasonApplicationsClocksSetting"),
    ("sw_power_cap", "nvmlClocksThrottleReasonSwPowerCap"),
    ("hw_slowdown", "nvmlClocksThrottleReasonHwSlowdown"),
)


def slugify(text: str) -> str:
    """Lower-case ``text`` and keep runs of letters and digits joined by ``-``.

    >>> slugify("Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz")
    'intel-xeon-gold-6126-cpu-2-60ghz'
    """
    text = re.sub(r"\((r|tm)\)", "", text.lower())
    return "-".join(re.findall(r"[a-z0-9]+", text))


def cpu_model_name() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (Linux), else :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
                    name = line.split(":", 1)[1].strip()
                    if name:
                        return name
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware_name(device: str = "cpu", gpu_index: int = 0) -> str:
    """A profile's ``hardware`` value for this machine.

    ``cpu-<slug of the CPU model name>`` on CPU (e.g. ``cpu-intel-xeon-gold-6126-cpu-2-60ghz``); on GPU the
    NVML device name without the vendor, spaces as ``-`` (e.g. ``A100-SXM4-80GB``).
    """
    if device == "cpu":
        return "cpu-" + (slugify(cpu_model_name()) or "unknown")
    nvml = _nvml()
    if nvml is None:
        return "gpu-unknown"
    return gpu_hardware_name(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(gpu_index)))


def gpu_hardware_name(name: str | bytes) -> str:
    """A GPU's device name (NVML's or ``torch.cuda.get_device_name``'s) as a profile's ``hardware`` value.

    >>> gpu_hardware_name("NVIDIA H200")
    'H200'
    >>> gpu_hardware_name(b"NVIDIA A100-SXM4-80GB")
    'A100-SXM4-80GB'
    """
    name = name.decode() if isinstance(name, bytes) else str(name)
    name = re.sub(r"^nvidia\s+", "", name.strip(), flags=re.IGNORECASE)
    return re.sub(r"\s+", "-", name) or "gpu-unknown"


def _nvml() -> Any | None:
    """The initialised ``pynvml`` module, or None when it is not installed or no driver/GPU answers."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() < 1:
            return None
    except Exception:  # NVMLError and friends: no driver, no device
        return None
    return pynvml


class HardwareMonitor:
    """Pull-based sampler of hardware-monitoring features (no background thread).

    Parameters
    ----------
    gpu : bool or None
        Sample NVML devices: ``None`` (default) when ``pynvml`` imports and a GPU answers, ``False`` never,
        ``True`` always (raises :class:`servopt.exceptions.BackendUnavailableError` when impossible).

    Examples
    --------
    >>> mon = HardwareMonitor(gpu=False)
    >>> _ = mon.sample()            # opens the utilisation window
    >>> s = mon.sample()            # utilisation and bandwidth since the previous call
    >>> 0.0 <= s["cpu/util/total_percent"] <= 100.0
    True
    >>> mon.close()
    """

    def __init__(self, gpu: bool | None = None) -> None:
        import psutil

        self._psutil = psutil
        self._proc = psutil.Process(os.getpid())
        self._nvml = None if gpu is False else _nvml()
        if gpu is True and self._nvml is None:
            from servopt.exceptions import BackendUnavailableError

            raise BackendUnavailableError(
                "HardwareMonitor(gpu=True): NVML is not usable (install nvidia-ml-py and run on a machine with "
                "an NVIDIA driver and GPU), or pass gpu=None to sample the CPU only"
            )
        self._handles = (
            [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(self._nvml.nvmlDeviceGetCount())]
            if self._nvml is not None
            else []
        )
        self._base = self._counters()
        self._last_io = self._io()
        self._last_time = time.monotonic()
        psutil.cpu_percent(percpu=True)  # opens the first utilisation window
        psutil.cpu_times_percent()

    @property
    def gpu_count(self) -> int:
        """Number of NVML devices sampled (0 without a GPU or with ``gpu=False``)."""
        return len(self._handles)

    def __enter__(self) -> HardwareMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release NVML (safe to call twice)."""
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None
            self._handles = []

    # ------------------------------------------------------------------ static
    def static_info(self) -> dict[str, str | float]:
        """The seed's ``get_static_info`` keys (GPU keys only with a GPU), plus ``cpu_model_name``."""
        psutil = self._psutil
        info: dict[str, str | float] = {
            "cpu_core_count": float(psutil.cpu_count(logical=True) or 0),
            "total_memory_sys_MB": psutil.virtual_memory().total / _MB,
            "cpu_model_name": cpu_model_name(),
        }
        if self._nvml is not None:
            nv = self._nvml
            info["gpu_count"] = float(len(self._handles))
            info["driver_version"] = _text(nv.nvmlSystemGetDriverVersion())
            for ix, h in enumerate(self._handles):
                info[f"gpu_{ix}_name"] = _text(nv.nvmlDeviceGetName(h))
                info[f"gpu_{ix}_id"] = _text(_try(lambda h=h: nv.nvmlDeviceGetPciInfo(h).busId, ""))
                info[f"gpu_{ix}_pci_max_link"] = str(_try(lambda h=h: nv.nvmlDeviceGetMaxPcieLinkGeneration(h), ""))
                info[f"gpu_{ix}_pci_cur_link"] = str(_try(lambda h=h: nv.nvmlDeviceGetCurrPcieLinkGeneration(h), ""))
                info[f"gpu_{ix}_pci_max_link_width"] = str(_try(lambda h=h: nv.nvmlDeviceGetMaxPcieLinkWidth(h), ""))
                info[f"gpu_{ix}_pci_cur_link_width"] = str(_try(lambda h=h: nv.nvmlDeviceGetCurrPcieLinkWidth(h), ""))
        return info

    # ----------------------------------------------------------------- dynamic
    def _counters(self) -> dict[str, float]:
        psutil = self._psutil
        stats = psutil.cpu_stats()
        ctx = self._proc.num_ctx_switches()
        out = {
            "cpu/interrupts/ctx_switches_count": float(stats.ctx_switches),
            "cpu/interrupts/interrupts_count": float(stats.interrupts),
            "cpu/interrupts/soft_interrupts_count": float(stats.soft_interrupts),
            "process/voluntary_proc_ctx_switches": float(ctx.voluntary),
            "process/involuntary_proc_ctx_switches": float(ctx.involuntary),
        }
        disk = _try(psutil.disk_io_counters, None)
        if disk is not None:
            out["disk/counter/disk_read_sys_count"] = float(disk.read_count)
            out["disk/counter/disk_write_sys_count"] = float(disk.write_count)
            out["disk/time/disk_read_time_sys_s"] = disk.read_time / 1000.0
            out["disk/time/disk_write_time_sys_s"] = disk.write_time / 1000.0
            out["disk/time/disk_busy_time_sys_s"] = getattr(disk, "busy_time", 0) / 1000.0
        return out

    def _io(self) -> tuple[float, float, float, float]:
        disk = _try(self._psutil.disk_io_counters, None)
        net = _try(self._psutil.net_io_counters, None)
        return (
            float(disk.read_bytes) if disk else 0.0,
            float(disk.write_bytes) if disk else 0.0,
            float(net.bytes_sent) if net else 0.0,
            float(net.bytes_recv) if net else 0.0,
        )

    def sample(self) -> dict[str, float]:
        """One sample: every key maps to a float (see the module docstring for the semantics)."""
        psutil = self._psutil
        out: dict[str, float] = {}
        for key, value in self._counters().items():
            out[key] = value - self._base.get(key, 0.0)
        n_logical = float(psutil.cpu_count(logical=True) or 1)
        for name, load in zip(("one", "five", "fifteen"), psutil.getloadavg()):
            out[f"cpu/load/avg_sys_load_{name}_min_percent"] = 100.0 * load / n_logical
        per_core = psutil.cpu_percent(percpu=True)
        for i, pct in enumerate(per_core):
            out[f"cpu/util/core_{i}_percent"] = float(pct)
        out["cpu/util/total_percent"] = float(sum(per_core) / max(len(per_core), 1))
        times = psutil.cpu_times_percent()
        for field in ("user", "system", "iowait", "steal"):
            if hasattr(times, field):
                out[f"cpu/times/{field}_percent"] = float(getattr(times, field))
        freqs = _try(lambda: psutil.cpu_freq(percpu=True), None) or []
        for i, f in enumerate(freqs):
            out[f"cpu/freq/core_{i}_MHz"] = float(f.current)
        if freqs:
            out["cpu/freq/mean_MHz"] = float(sum(f.current for f in freqs) / len(freqs))
        temps = _try(psutil.sensors_temperatures, None) if hasattr(psutil, "sensors_temperatures") else None
        for sensor, entries in (temps or {}).items():
            for j, entry in enumerate(entries):
                label = slugify(entry.label or "") or str(j)
                out[f"cpu/temp/{slugify(sensor) or 'sensor'}_{label}_C"] = float(entry.current)
        vm = psutil.virtual_memory()
        out["memory/available_memory_sys_MB"] = vm.available / _MB
        out["memory/used_memory_sys_MB"] = vm.used / _MB
        out["memory/used_memory_sys_percent"] = float(vm.percent)
        mem = self._proc.memory_info()
        for field, key in (("rss", "resident_set_size"), ("vms", "virtual_memory_size"), ("shared", "shared_memory"),
                           ("text", "text_resident_set"), ("data", "data_resident_set"), ("lib", "lib_memory")):
            if hasattr(mem, field):
                out[f"process/memory/{key}_proc_MB"] = getattr(mem, field) / _MB
        if hasattr(mem, "dirty"):
            out["process/memory/dirty_pages_proc_count"] = float(mem.dirty)
        now, io = time.monotonic(), self._io()
        dt = max(now - self._last_time, 1e-9)
        d = [b - a for a, b in zip(self._last_io, io)]
        out["bandwidth/disk_read_sys_bandwidth_MBs"] = d[0] / _MB / dt
        out["bandwidth/disk_write_sys_bandwidth_MBs"] = d[1] / _MB / dt
        out["bandwidth/net_sent_sys_bandwidth_Mbits"] = d[2] * 8 / 1e6 / dt
        out["bandwidth/net_recv_sys_bandwidth_Mbits"] = d[3] * 8 / 1e6 / dt
        self._last_io, self._last_time = io, now
        out.update(self._gpu_sample())
        return out

    def gpu_memory_used_mib(self) -> list[float]:
        """Framebuffer memory in use on each GPU (device-wide, every process), in MiB."""
        return [self._nvml.nvmlDeviceGetMemoryInfo(h).used / _MIB for h in self._handles] if self._nvml else []

    def _gpu_sample(self) -> dict[str, float]:
        nv = self._nvml
        out: dict[str, float] = {}
        if nv is None:
            return out
        for ix, h in enumerate(self._handles):
            p = f"05_gpu_smi/gpu_{ix}_"
            fb = _try(lambda h=h: nv.nvmlDeviceGetMemoryInfo(h), None)
            if fb is not None:
                out[p + "fb_total_MiB"], out[p + "fb_used_MiB"] = fb.total / _MIB, fb.used / _MIB
                out[p + "fb_free_MiB"] = fb.free / _MIB
            bar1 = _try(lambda h=h: nv.nvmlDeviceGetBAR1MemoryInfo(h), None)
            if bar1 is not None:
                out[p + "bar1_total_MiB"] = bar1.bar1Total / _MIB
                out[p + "bar1_used_MiB"] = bar1.bar1Used / _MIB
                out[p + "bar1_free_MiB"] = bar1.bar1Free / _MIB
            util = _try(lambda h=h: nv.nvmlDeviceGetUtilizationRates(h), None)
            if util is not None:
                out[p + "gpu_util_in_percent"], out[p + "mem_util_in_percent"] = float(util.gpu), float(util.memory)
            temp = _try(lambda h=h: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU), None)
            if temp is not None:
                out[p + "temp_in_C"] = float(temp)
            power = _try(lambda h=h: nv.nvmlDeviceGetPowerUsage(h), None)
            if power is not None:
                out[p + "power_in_W"] = power / 1000.0
            reasons = _try(lambda h=h: nv.nvmlDeviceGetCurrentClocksThrottleReasons(h), None)
            if reasons is not None:
                for name, const in _THROTTLE_REASONS:
                    bit = getattr(nv, const, None)
                    if bit is not None:
                        out[p + f"clocks_throttle_reason_{name}"] = float(bool(reasons & bit))
            for name, const in (("sm", "NVML_CLOCK_SM"), ("mem", "NVML_CLOCK_MEM"),
                                ("graphics", "NVML_CLOCK_GRAPHICS")):
                clock = _try(lambda h=h, c=getattr(nv, const): nv.nvmlDeviceGetClockInfo(h, c), None)
                if clock is not None:
                    out[p + f"{name}_clock_MHz"] = float(clock)
        return out


def _try(fn: Any, default: Any) -> Any:
    """``fn()``, or ``default`` when the platform or driver does not support the query."""
    try:
        return fn()
    except Exception:
        return default


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------ peak memory (used by the profiler)
class PeakMemoryTracker(threading.Thread):
    """Samples memory every ``interval_s`` in a thread, keeps the peak, and aborts runs past a limit.

    Parameters
    ----------
    read : callable
        Returns the current memory in bytes (e.g. :func:`rss_bytes`).
    baseline : float
        Memory before the measured work, in bytes.
    limit_bytes : float or None
        When ``read() - baseline`` passes it, ``run_options.terminate`` is set (ONNX Runtime then aborts the
        ``run`` in progress) and :attr:`tripped` becomes true.
    run_options : object
        An ``onnxruntime.RunOptions`` (anything with a ``terminate`` attribute).
    """

    def __init__(self, read: Callable[[], float], baseline: float, limit_bytes: float | None, run_options: Any,
                 interval_s: float = 0.005) -> None:
        super().__init__(daemon=True)
        self._read, self._baseline, self._limit = read, baseline, limit_bytes
        self._run_options, self._interval = run_options, interval_s
        self._halt = threading.Event()
        self.peak = baseline
        self.tripped = False

    def run(self) -> None:
        while not self._halt.is_set():
            self._check()
            self._halt.wait(self._interval)

    def _check(self) -> None:
        value = self._read()
        self.peak = max(self.peak, value)
        if self._limit is not None and value - self._baseline > self._limit and not self.tripped:
            self.tripped = True
            self._run_options.terminate = True

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self._check()


class HighWaterMark:
    """The kernel's peak RSS of this process (``VmHWM``), reset at construction; ``read()`` is 0 if unknown."""

    def __init__(self) -> None:
        self.available = False
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.available = True
        except OSError:
            pass

    def read(self) -> float:
        if not self.available:
            return 0.0
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return float(line.split()[1]) * 1024.0
        except OSError:
            pass
        return 0.0


def rss_bytes() -> float:
    """Resident set size of this process in bytes (``/proc/self/statm``, else psutil)."""
    try:
        with open("/proc/self/statm") as fh:
            return float(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import psutil

        return float(psutil.Process().memory_info().rss)


def release_free_memory() -> None:
    """Return freed heap memory to the OS (glibc), so the next point's RSS baseline is honest."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
