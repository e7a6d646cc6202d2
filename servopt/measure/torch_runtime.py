"""Measure a PyTorch model on CPU or an NVIDIA GPU over input sizes x batch sizes (``servopt profile --runtime torch``).

The model is a TorchScript file (``torch.jit.save``), a ``torch.export`` program (``torch.export.save``, ``.pt2``;
export it with a dynamic batch and image size) or ``torchvision:NAME`` (built with random weights,
``weights=None``; nothing is downloaded). It is loaded once, moved to the device and the dtype (``fp32``,
``fp16``, ``bf16``) and put in eval mode: that is ``load_time_s`` (on GPU it includes creating the CUDA context).
Then, for each input size and each batch size (ascending), with inputs ``[batch, 3, size, size]`` of the dtype:

1. **warm-up** (``warmup_ms``): wall time of the first run of that shape, synchronised (kernel selection, the
   allocator's growth, lazy library loading; the first point also pays cuDNN/cuBLAS initialisation);
2. **steady state**: :func:`servopt.measure.profiler.steady_state` (median, p99, ``latency_cv``, re-measured once
   and marked ``unstable`` above ``max_cv``); each run is timed with CUDA events (``torch.cuda.Event``,
   synchronised) on GPU, :func:`time.perf_counter` on CPU;
3. **work** (once per input size, before its timed runs): ``gflops``, the FLOPs of one batch-1 forward pass on
   the device in the dtype under :class:`torch.utils.flop_counter.FlopCounterMode`, and ``param_mb``, the
   parameters' bytes (:mod:`servopt.measure.work_columns`; empty, with a note on stderr, when counting fails);
4. **memory**: on GPU ``memory_mb`` is the peak *reserved* by PyTorch's caching allocator during the point
   (``torch.cuda.max_memory_reserved``, so weights included), with ``hw.torch/allocated_peak_mb`` and
   ``hw.torch/reserved_peak_mb``; on CPU it is the peak RSS minus the RSS before the model was loaded;
5. **GPU features**: a :class:`~servopt.measure.gpu_sampler.WindowSampler` reads NVML every
   ``sample_interval_s`` during the steady-state runs; the mean of each seed key (``05_gpu_smi/gpu_{ix}_*``) and
   its max (``..._max``) become ``hw.*`` columns, with this process's memory as NVML sees it
   (``hw.torch/nvml_process_used_mb``). CPU features come from :class:`~servopt.measure.hwmon.HardwareMonitor`
   when psutil is installed.

**Out of memory** follows the ONNX Runtime profiler: ``memory_limit_mb`` on GPU caps PyTorch's allocator
(``torch.cuda.set_per_process_memory_fraction(limit / total)``), so a batch that needs more raises
``torch.cuda.OutOfMemoryError`` (caught; the cache is emptied after); on CPU a peak above the limit counts. An OOM
point ends the sweep of its input size and every row of that size gets ``oom_batch_size``. With
``find_max_batch``, the boundary is then searched per input size (doubling past the grid, then bisection between
the largest batch that ran and the smallest that did not, one forward pass per trial); the largest batch that
fits is measured as a row when the grid lacks it, and ``oom_batch_size`` of that size's rows becomes the exact
boundary, which is what :class:`servopt.performance.MaxBatchModel` and the max-batch checks learn from.
"""

from __future__ import annotations

import functools
import gc
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from servopt.exceptions import BackendUnavailableError, ServoptError, ValidationError
from servopt.measure.sweep import (
    ProfileRun,
    check_positive,
    positive_ints,
    progress_bar,
    read_existing,
    record_point,
    steady_state,
    write_rows,
)
from servopt.measure.max_batch_search import OutOfTime, find_oom_boundary, search_boundary
from servopt.measure.torch_devices import make_device

__all__ = ["profile_torch", "find_oom_boundary", "load_torch_model", "DTYPES"]

#: ``--dtype`` -> torch dtype name
DTYPES: dict[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def profile_torch(
    model: str | Path,
    batch_sizes: Iterable[int],
    input_sizes: Iterable[int],
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    cores: int | None = None,
    repeats: int = 30,
    min_repeats: int = 3,
    time_budget_s: float = 2.0,
    total_budget_s: float | None = None,
    memory_limit_mb: float | None = None,
    find_max_batch: bool = False,
    max_batch_cap: int = 65536,
    max_cv: float | None = None,
    output: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    hardware: str | None = None,
    model_name: str | None = None,
    variant: str | None = None,
    progress: bool = False,
    seed: int = 0,
    sample_interval_s: float = 0.025,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> ProfileRun:
    """Profile a PyTorch model over ``input_sizes x batch_sizes`` (see the module docstring for the method).

    Parameters
    ----------
    model : str or Path
        A TorchScript or ``torch.export`` file, or ``"torchvision:NAME"``.
    batch_sizes, input_sizes : iterable of int
        The grid (positive integers); inputs are ``[batch, 3, size, size]``.
    device : {"cpu", "cuda"}
        ``cuda`` is the current CUDA device.
    dtype : {"fp32", "fp16", "bf16"}
        Precision of the weights and inputs (also the ``precision`` label column).
    cores : int, optional
        ``torch.set_num_threads`` on CPU (the ``cores`` column); default: torch's own setting. Not used on GPU.
    repeats, min_repeats, time_budget_s, total_budget_s, max_cv, output, resume, force, progress, seed, on_point
        As in :func:`servopt.measure.profiler.profile_model`. As there, a resumed point is ``(cores, input_size,
        batch_size)``: rows of other cores are kept, and this run's cores are measured where they are missing.
    memory_limit_mb : float, optional
        Memory limit in MiB (on GPU enforced by PyTorch's allocator, see above).
    find_max_batch : bool
        Search the OOM boundary per input size (needs ``memory_limit_mb``).
    max_batch_cap : int
        Largest batch the boundary search tries.
    hardware, model_name, variant : str, optional
        Defaults: the GPU's name (``torch.cuda.get_device_name`` without the vendor, e.g. ``H200``) or
        ``cpu-<CPU model>``; the file's stem or the torchvision name; ``<model>-<dtype>``.
    sample_interval_s : float
        Period of the NVML sampler during the steady-state runs (GPU only).

    Returns
    -------
    ProfileRun
        Rows in the ONNX Runtime profiler's schema plus ``latency_cv``, ``unstable``, the labels
        ``precision`` and ``framework``, and ``hw.*`` columns; :attr:`ProfileRun.max_batch` with
        ``find_max_batch``.
    """
    grid_b = positive_ints(batch_sizes, "batch_sizes")
    grid_s = positive_ints(input_sizes, "input_sizes")
    repeats = positive_ints([repeats], "repeats")[0]
    min_repeats = min(positive_ints([min_repeats], "min_repeats")[0], repeats)
    max_batch_cap = positive_ints([max_batch_cap], "max_batch_cap")[0]
    if cores is not None:
        cores = positive_ints([cores], "cores")[0]
    for value, name in ((time_budget_s, "time_budget_s"), (total_budget_s, "total_budget_s"),
                        (memory_limit_mb, "memory_limit_mb"), (max_cv, "max_cv"),
                        (sample_interval_s, "sample_interval_s")):
        if value is not None or name == "time_budget_s":
            check_positive(value, name)
    if device not in ("cpu", "cuda"):
        raise ValidationError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if dtype not in DTYPES:
        raise ValidationError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    if find_max_batch and memory_limit_mb is None:
        raise ValidationError("find_max_batch (--find-max-batch) needs memory_limit_mb (--memory-limit-mb): the "
                              "boundary is searched under that limit")
    spec = str(model)
    if not spec.startswith("torchvision:") and not Path(spec).is_file():
        raise ValidationError(f"{spec}: no such model file (give a TorchScript or torch.export file, or "
                              "torchvision:NAME)")
    out = Path(output) if output is not None else None
    if out is not None and out.exists() and not (resume or force):
        raise ValidationError(f"{out}: the output file exists; pass resume=True (--resume) to keep its rows and "
                              "measure the missing points, or choose another path")

    torch = _import_torch()
    dev = make_device(device, torch)
    torch_dtype = getattr(torch, DTYPES[dtype])
    if cores is not None and device == "cpu":
        torch.set_num_threads(cores)
    name = model_name or (spec.split(":", 1)[1] if spec.startswith("torchvision:") else Path(spec).stem)
    meta = {"model": name, "variant": variant or f"{name}-{dtype}", "hardware": hardware or dev.hardware_name(),
            "source": f"servopt profile --runtime torch {Path(spec).name} (torch {torch.__version__}, {device}, "
                      f"{dtype}, {time.strftime('%Y-%m-%d')})"}
    if memory_limit_mb is not None:  # the limit the out-of-memory boundaries hold for (servopt fit calibrates on it)
        meta["oom_limit_mb"] = float(memory_limit_mb)
    labels = {"precision": dtype, "framework": f"torch {torch.__version__}",
              "cores": torch.get_num_threads() if device == "cpu" else None}

    rows: list[dict[str, Any]] = read_existing(out, meta) if (out is not None and resume and out.exists()) else []
    # a point is (cores, input size, batch), as in the ONNX Runtime profiler: a resumed file's rows of other cores
    # (another --cores, or a GPU run's empty cores) are kept and this run's cores are measured in full
    cores_now = labels["cores"]
    done = {(_cores_key(r.get("cores")), int(r["input_size"]), int(r["batch_size"])) for r in rows}
    stopped = {int(r["input_size"]) for r in rows
               if r.get("oom_batch_size") and _cores_key(r.get("cores")) == cores_now}
    run = ProfileRun(rows=rows, path=out)
    start = time.perf_counter()
    if memory_limit_mb is not None:
        dev.set_memory_limit(memory_limit_mb)
    baseline = dev.memory_baseline()
    t0 = time.perf_counter()
    module = load_torch_model(spec, torch)
    try:
        module = module.to(device=dev.torch_device, dtype=torch_dtype)
    except Exception as exc:
        raise ValidationError(f"{spec}: cannot move the model to {device} / {dtype} ({exc})") from None
    try:
        module.eval()
    except (AttributeError, NotImplementedError):  # a torch.export module is already in inference form
        pass
    dev.synchronize()
    load_time_s = time.perf_counter() - t0
    from servopt.measure.work_columns import WorkColumns, torch_counter

    work = WorkColumns(torch_counter(torch, module, dev.torch_device, torch_dtype), spec)
    monitor = _cpu_monitor()
    reader = dev.window_reader()
    bar = progress_bar(len(grid_s) * len(grid_b), progress)

    def measure(s: int, b: int) -> dict[str, Any]:
        point = _measure_point(torch, dev, module, b, s, torch_dtype, repeats, min_repeats, time_budget_s,
                               memory_limit_mb, max_cv, monitor, reader, sample_interval_s, seed, baseline)
        point["load_time_s"] = load_time_s
        return point

    def sweep_of(s: int) -> dict[str, Any]:
        """The columns that select one sweep's rows (cores only on CPU: a GPU run's rows have none)."""
        return {"input_size": s} if cores_now is None else {"cores": cores_now, "input_size": s}

    def record(s: int, b: int, point: dict[str, Any]) -> dict[str, Any]:
        def make_row(p: dict[str, Any]) -> dict[str, Any]:
            row = dict(meta, input_size=s, batch_size=b, **labels, **p, **work(s), oom_batch_size=None)
            row["throughput_rps"] = b / (row["latency_ms"] / 1e3)
            return row

        row = record_point(run, rows, {"input_size": s, "cores": cores_now}, b, point, out, on_point, make_row)
        if "reason" in row:
            stopped.add(s)
        return row

    try:
        with torch.inference_mode():
            for s in grid_s:
                if any((cores_now, s, b) not in done for b in grid_b) and s not in stopped:
                    work(s)  # FLOPs of one sample, counted once per size before its timed runs
                for b in grid_b:
                    if (cores_now, s, b) in done or s in stopped:
                        bar.update(1)
                        continue
                    if total_budget_s is not None and time.perf_counter() - start > total_budget_s:
                        run.stopped = f"total_budget_s={total_budget_s:g} reached"
                        break
                    bar.set_postfix_str(f"size={s} batch={b}")
                    record(s, b, measure(s, b))
                    bar.update(1)
                if run.stopped:
                    break
                if find_max_batch:
                    def fits(b: int, s: int = s) -> bool:
                        if total_budget_s is not None and time.perf_counter() - start > total_budget_s:
                            raise OutOfTime
                        return _fits(torch, dev, module, b, s, torch_dtype, memory_limit_mb, baseline, seed)

                    try:
                        search_boundary(run, rows, sweep_of(s), max_batch_cap, lambda b, s=s: measure(s, b),
                                        lambda b, point, s=s: record(s, b, point), fits,
                                        functools.partial(write_rows, out, rows))
                    except OutOfTime:
                        run.stopped = (f"total_budget_s={total_budget_s:g} reached during the max-batch search "
                                       f"of input size {s}")
                        break
    finally:
        bar.close()
        if monitor is not None:
            monitor.close()
        dev.close()
        run.elapsed_s = time.perf_counter() - start
    return run


def _cores_key(value: Any) -> int | None:
    """A row's ``cores`` as a resume key: an int, or None where the cell is empty (a GPU run)."""
    return None if value is None or value == "" else int(value)


def load_torch_model(spec: str, torch: Any) -> Any:
    """A callable module from a TorchScript file, a ``torch.export`` file or ``torchvision:NAME``."""
    if spec.startswith("torchvision:"):
        name = spec.split(":", 1)[1]
        try:
            import torchvision
        except Exception as exc:  # ImportError, or OSError/RuntimeError of a build that does not match torch
            raise BackendUnavailableError(
                f"{spec}: torchvision does not import ({type(exc).__name__}: {str(exc)[:200]}); install the "
                f"torchvision build that matches torch {torch.__version__} (same version line and CUDA/CPU "
                "index; the CPU-only torch wheel has none that imports), or save the model with "
                "torch.export.save / torch.jit.save and profile that file") from None
        try:
            return torchvision.models.get_model(name, weights=None)
        except ValueError:
            known = ", ".join(sorted(torchvision.models.list_models())[:12])
            raise ValidationError(f"{spec}: torchvision has no model {name!r} (e.g. {known}, ...)") from None
    path = Path(spec)
    try:
        names = zipfile.ZipFile(path).namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValidationError(f"{path}: not a TorchScript or torch.export file ({exc})") from None
    markers = ("/archive_format", "/models/model.json", "serialized_exported_program.json")
    exported = path.suffix == ".pt2" or any(n.endswith(markers) for n in names)
    try:
        if exported:
            return torch.export.load(str(path)).module()
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        kind = "torch.export" if exported else "TorchScript"
        raise ValidationError(f"{path}: torch {torch.__version__} cannot load this {kind} file "
                              f"({str(exc).strip()[:300]})") from None


# --------------------------------------------------------------------------------------------- measuring
def _measure_point(torch: Any, dev: Any, module: Any, batch: int, size: int, dtype: Any, repeats: int,
                   min_repeats: int, time_budget_s: float, limit_mb: float | None, max_cv: float | None,
                   monitor: Any, reader: Any, interval_s: float, seed: int, baseline: float) -> dict[str, Any]:
    from servopt.measure.gpu_sampler import WindowSampler

    gc.collect()
    dev.empty_cache()
    if monitor is not None:
        monitor.sample()  # opens the CPU utilisation window
    dev.begin_point(baseline)
    result: dict[str, Any] = {"oom_reason": None}
    sampler = WindowSampler(reader, interval_s) if reader is not None else None
    stats = None
    try:
        torch.manual_seed(seed)
        x = torch.rand(batch, 3, size, size, device=dev.torch_device, dtype=dtype)
        t0 = time.perf_counter()
        module(x)
        dev.synchronize()
        result["warmup_ms"] = (time.perf_counter() - t0) * 1e3
        if sampler is not None:
            sampler.start()
        stats = steady_state(lambda: dev.time_ms(lambda: module(x)), repeats, min_repeats, time_budget_s, max_cv)
    except Exception as exc:
        if not dev.is_oom(exc):
            raise ServoptError(f"torch failed at input_size={size}, batch_size={batch}: {str(exc).strip()[:400]} "
                               "(a torch.export program needs a dynamic batch and image size: export with "
                               "dynamic_shapes)") from None
        result = {"oom_reason": f"allocation failure: {str(exc).strip().splitlines()[0][:200]}"}
        stats = None
    finally:
        x = None
        window = sampler.stop() if sampler is not None else {}
    memory = dev.end_point()
    dev.empty_cache()
    result["memory_mb"] = memory.pop("memory_mb")
    if (limit_mb is not None and not dev.enforces_limit and result["memory_mb"] > limit_mb
            and result["oom_reason"] is None):
        result = {"oom_reason": "memory limit", "memory_mb": result["memory_mb"]}
    if stats is None or result["oom_reason"] is not None:
        return result
    result.update(stats)
    hw = dict(monitor.sample()) if monitor is not None else {}
    hw.update(memory)
    for key, value in window.items():
        hw["torch/nvml_samples" if key == "window_samples" else key] = value
    result.update({f"hw.{k}": v for k, v in hw.items()})
    return result


def _fits(torch: Any, dev: Any, module: Any, batch: int, size: int, dtype: Any, limit_mb: float | None,
          baseline: float, seed: int) -> bool:
    """Two forward passes of ``batch`` at ``size`` (the first, then one as in steady state): False when either runs
    out of memory (or passes ``limit_mb``). On an H200 in fp16 a first pass fitted where the second did not."""
    gc.collect()
    dev.empty_cache()
    dev.begin_point(baseline)
    ok = True
    try:
        torch.manual_seed(seed)
        x = torch.rand(batch, 3, size, size, device=dev.torch_device, dtype=dtype)
        for _ in range(2):
            module(x)
            dev.synchronize()
    except Exception as exc:
        if not dev.is_oom(exc):
            raise ServoptError(f"torch failed at input_size={size}, batch_size={batch}: {str(exc)[:300]}") from None
        ok = False
    finally:
        x = None
    memory = dev.end_point()["memory_mb"]
    dev.empty_cache()
    return ok and not (limit_mb is not None and not dev.enforces_limit and memory > limit_mb)


def _cpu_monitor() -> Any:
    """CPU/memory features (psutil); None where psutil is not installed (the GPU columns do not need it)."""
    try:
        from servopt.measure.hwmon import HardwareMonitor

        return HardwareMonitor(gpu=False)
    except ImportError:
        return None


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(f"--runtime torch needs PyTorch: pip install 'servopt[torch]' ({exc})") from None
    return torch
