"""Measure an ONNX model with ONNX Runtime over a grid of cores x input sizes x batch sizes (SPEC §7).

Before the first point, an unmeasured warm-up (one session, its first run and one more, at the grid's smallest
point, without the memory limit) takes the process's one-time costs (ONNX Runtime's thread pools and kernel tables,
modules imported on first use: about 8 MiB of RSS for a MobileNet-like) out of the first point's ``memory_mb``.
For each point of the grid, in this order: ``for cores: for input_size: for batch_size (ascending)``:

1. a fresh :class:`onnxruntime.InferenceSession` is created with ``intra_op_num_threads = cores`` (its
   creation time is ``load_time_s``);
2. **warm-up** = wall time of the first ``run`` after the session was created (``warmup_ms``);
3. **steady state**: further runs until ``repeats`` runs are done or ``time_budget_s`` has passed (at least
   ``min_repeats``); ``latency_ms`` is their median, ``latency_p99_ms`` their 99th percentile (linear
   interpolation, so with fewer than 100 runs it lies between the two slowest), ``throughput_rps`` is
   ``batch_size / latency``;
   ``latency_cv`` is the coefficient of variation (sample standard deviation / mean) of the runs; a point whose
   CV is above ``max_cv`` (when given) is measured again once with twice the repeats and time budget (those runs
   are kept) and gets ``unstable = 1`` (else 0), so a fit can weigh it;
4. **work** (outside the timed runs, once per input size): ``gflops``, the FLOPs of one sample at that size,
   ``param_mb``, the weights, and ``act_peak_mb``, the peak of live activations of one sample (none for graphs
   with attention), from the graph (:mod:`servopt.measure.work_columns`; empty, with a note on stderr, when the
   graph cannot be counted);
5. **memory** (``memory_mb``, MiB): on CPU the peak resident set size of the process during steps 1-3 minus the
   RSS just before step 1 (inputs included); the peak is the kernel's ``VmHWM`` (reset per point through
   ``/proc/self/clear_refs``) and, where that is missing, a sampling thread (every ``5 ms``). On GPU, the peak of
   NVML's device-wide used memory minus its value before step 1.
6. **hardware features**: a :class:`servopt.measure.hwmon.HardwareMonitor` sample is taken just before step 1 (opening
   the window) and one after step 3; the latter becomes the ``hw.<key>`` columns (its utilisations and rates
   cover the point).

**Out of memory.** A point is *out of memory* when ONNX Runtime fails to allocate (or Python raises
``MemoryError``), or, with ``memory_limit_mb``, when its peak memory exceeds the limit. The limit is enforced
while the point runs: the sampling thread sets ``RunOptions.terminate`` as soon as the RSS delta passes the limit,
which aborts the run in progress; a peak found over the limit after the runs also counts. An OOM point ends its
``(cores, input_size)`` sweep: the larger batch sizes are not run, the point gets no row (it has no latency, which
every profile row needs), and every row of that sweep gets ``oom_batch_size`` = the batch size that ran out of
memory (the column is empty for sweeps that did not). :attr:`ProfileRun.oom` lists the OOM points with the memory
reached and the reason. With ``find_max_batch`` the boundary of each sweep is then searched
(:mod:`servopt.measure.max_batch_search`: upward steps, then bisection inside the first step that ran out):
``oom_batch_size`` becomes the largest batch that fits plus one, and that batch is measured as a row when the
grid lacks it.

**Writing.** After every point the whole table is rewritten atomically (temporary file + ``os.replace``), so an
interrupted run (Ctrl-C, crash, an exception from ``on_point``) leaves a valid file (CSV, or Parquet for an output
ending in ``.parquet`` / ``.pq``) with every point measured so far; ``resume=True`` keeps those rows and measures only the missing points.
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servopt.exceptions import BackendUnavailableError, ServoptError, ValidationError
from servopt.measure.hwmon import HighWaterMark, PeakMemoryTracker, release_free_memory, rss_bytes
from servopt.measure.max_batch_search import ARENA_STEPS, OutOfTime, search_boundary
from servopt.measure.ort_inputs import check_sizes, input_spec, make_feeds, spatial_axes
from servopt.measure.sweep import (
    PROFILE_COLUMNS,
    ProfileRun,
    check_output_format,
    check_positive,
    coefficient_of_variation,
    is_oom_error,
    positive_ints,
    progress_bar,
    read_existing,
    record_point,
    steady_state,
    write_rows,
)

# ProfileRun, PROFILE_COLUMNS, is_oom_error and steady_state live in servopt.measure.sweep (shared with the torch
# profiler) and are imported from here too
__all__ = ["profile_model", "ProfileRun", "PROFILE_COLUMNS", "coefficient_of_variation", "is_oom_error",
           "record_point", "steady_state", "write_rows"]

_MIB = float(2**20)


def profile_model(
    model: str | Path,
    batch_sizes: Iterable[int],
    input_sizes: Iterable[int],
    cores: Iterable[int] = (1,),
    *,
    repeats: int = 30,
    min_repeats: int = 3,
    time_budget_s: float = 2.0,
    total_budget_s: float | None = None,
    memory_limit_mb: float | None = None,
    find_max_batch: bool = False,
    max_batch_cap: int = 65536,
    output: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    hardware: str | None = None,
    model_name: str | None = None,
    variant: str | None = None,
    device: str = "cpu",
    max_cv: float | None = None,
    progress: bool = False,
    seed: int = 0,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    mem_pattern: bool = True,
) -> ProfileRun:
    """Profile ``model`` over ``cores x input_sizes x batch_sizes`` (see the module docstring for the method).

    Parameters
    ----------
    model : str or Path
        An ONNX file whose inputs have a dynamic (or matching) batch dimension and, for 4-D image inputs,
        dynamic (or matching) spatial dimensions (NCHW or NHWC). Sizes the inputs cannot take are refused before
        anything is measured.
    batch_sizes, input_sizes, cores : iterable of int
        The grid; each value a positive integer. ``cores`` is ONNX Runtime's intra-op thread count. A model
        without a 4-D image input takes one input size (the ``input_size`` label of its rows).
    repeats, min_repeats : int
        At most ``repeats`` and at least ``min_repeats`` steady-state runs per point.
    time_budget_s : float
        Time for the steady-state runs of one point (after warm-up); runs stop when it has passed.
    total_budget_s : float, optional
        Stop the grid (keeping what was measured) once this much time has passed.
    memory_limit_mb : float, optional
        Artificial memory limit in MiB: a point whose peak memory passes it is recorded as out of memory.
    find_max_batch : bool
        Search the out-of-memory boundary of each ``(cores, input_size)`` sweep under ``memory_limit_mb`` (which it
        needs) after its grid: :mod:`servopt.measure.max_batch_search`; each trial is a fresh session's warm-up
        and one run.
    max_batch_cap : int
        Largest batch the boundary search tries.
    output : str or Path, optional
        Profile rewritten atomically after every measured point (never written while no point has a row): Parquet
        for ``.parquet`` / ``.pq``, CSV for ``.csv`` (another ending is refused). It must not exist unless
        ``resume`` or ``force`` is true.
    resume : bool
        Keep the rows already in ``output`` and measure only the points it lacks.
    force : bool
        Replace an existing ``output`` (its rows are not kept) once the first point is measured.
    hardware, model_name, variant : str, optional
        Profile metadata; defaults: :func:`servopt.measure.hwmon.hardware_name`, the file's stem, ``model_name``.
    device : {"cpu", "cuda"}
        Execution provider (CUDA needs onnxruntime-gpu and an NVIDIA GPU).
    max_cv : float or None
        Re-measure a point once (twice the repeats) when the coefficient of variation of its runs is above this,
        and mark it ``unstable``; None (the default; the CLI's ``--max-cv`` defaults to 0.1) never re-measures,
        so ``repeats`` stays the maximum.
    progress : bool
        Show a tqdm progress bar on stderr.
    seed : int
        Seed of the random input tensors, a non-negative integer.
    on_point : callable, optional
        Called after each point has been written, with its row (for an OOM point: the entry appended to
        :attr:`ProfileRun.oom`).
    mem_pattern : bool
        ONNX Runtime's memory pattern (``SessionOptions.enable_mem_pattern``, on by default, as in Triton's ONNX
        Runtime backend). Off, every row carries the label ``mem_pattern = off``: the CPU arena then serves each
        tensor on its own, with no planned block on top of the first run's regions, so the peak is lower and steps
        less with the batch, at the same latency (``benchmarks/arena_sawtooth.py``). Serve such a profile's plan
        with the same setting (``parameters { key: "enable_mem_pattern" value { string_value: "0" } }`` in a
        ``triton: template``; docs/profiler.md).

    Returns
    -------
    ProfileRun

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from servopt.measure.onnx_models import tiny_cnn, save_model
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> onnx_path = save_model(tiny_cnn(), tmp / "tiny.onnx")
    >>> run = profile_model(onnx_path, [1, 2], [32], time_budget_s=0.05, output=tmp / "p.csv")
    >>> [(r["batch_size"], r["latency_ms"] <= r["latency_p99_ms"]) for r in run.rows]
    [(1, True), (2, True)]
    """
    from servopt.measure.hwmon import HardwareMonitor, hardware_name

    model = Path(model)
    # messages name the CLI flag first, then this function's parameter
    grid_b = positive_ints(batch_sizes, "--batch-sizes (batch_sizes)")
    grid_s = positive_ints(input_sizes, "--input-sizes (input_sizes)")
    grid_c = positive_ints(cores, "--cores (cores)")
    repeats = positive_ints([repeats], "--repeats (repeats)")[0]
    min_repeats = min(positive_ints([min_repeats], "--min-repeats (min_repeats)")[0], repeats)
    check_positive(time_budget_s, "--time-budget (time_budget_s)")
    if total_budget_s is not None:
        check_positive(total_budget_s, "--total-budget (total_budget_s)")
    if memory_limit_mb is not None:
        check_positive(memory_limit_mb, "--memory-limit-mb (memory_limit_mb)")
    max_batch_cap = positive_ints([max_batch_cap], "max_batch_cap")[0]
    if find_max_batch and memory_limit_mb is None:
        raise ValidationError("find_max_batch (--find-max-batch) needs memory_limit_mb (--memory-limit-mb): the "
                              "boundary is searched under that limit")
    if max_cv is not None:
        check_positive(max_cv, "--max-cv (max_cv)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValidationError(f"--seed (seed): expected a non-negative integer (the random inputs' seed), got "
                              f"{seed!r}")
    if device not in ("cpu", "cuda"):
        raise ValidationError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if not model.is_file():
        raise ValidationError(f"{model}: no such ONNX file")
    out = Path(output) if output is not None else None
    check_output_format(out)
    if out is not None and out.exists() and not (resume or force):
        raise ValidationError(f"{out}: the output file exists; pass resume=True (--resume) to keep its rows and "
                              "measure the missing points, or choose another path")

    ort = _import_ort()
    providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    if providers[0] not in ort.get_available_providers():
        raise BackendUnavailableError(
            f"device {device!r}: ONNX Runtime {ort.__version__} has no {providers[0]} (available: "
            f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu on a machine with a GPU"
        )
    name = model_name or model.stem
    meta = {
        "model": name,
        "variant": variant or name,
        "hardware": hardware or hardware_name("cpu" if device == "cpu" else "cuda"),
        "source": f"servopt profile {model.name} (onnxruntime {ort.__version__}, {providers[0]}, "
                  f"{time.strftime('%Y-%m-%d')})",
    }
    if memory_limit_mb is not None:  # the limit the out-of-memory boundaries hold for (servopt fit calibrates on it)
        meta["oom_limit_mb"] = float(memory_limit_mb)
    if not mem_pattern:  # a configuration label: rows measured with and without it are different configurations
        meta["mem_pattern"] = "off"
    model_bytes = model.read_bytes()
    feeds_spec = input_spec(ort, model_bytes, model, providers)
    check_sizes(feeds_spec, grid_s, model, grid_b, find_max_batch)
    work = _work_columns(model, feeds_spec)

    rows: list[dict[str, Any]] = read_existing(out, meta) if (out is not None and resume and out.exists()) else []
    done = {(int(r["cores"]), int(r["input_size"]), int(r["batch_size"])) for r in rows}
    run = ProfileRun(rows=rows, path=out)
    bar = progress_bar(len(grid_c) * len(grid_s) * len(grid_b), progress)
    sweep = _Sweep(ort=ort, model_bytes=model_bytes, providers=providers, feeds_spec=feeds_spec, seed=seed,
                   repeats=repeats, min_repeats=min_repeats, time_budget_s=time_budget_s,
                   memory_limit_mb=memory_limit_mb, max_cv=max_cv, device=device, total_budget_s=total_budget_s,
                   run=run, out=out, on_point=on_point, meta=meta, work=work, bar=bar, mem_pattern=mem_pattern,
                   monitor=HardwareMonitor(gpu=None if device == "cuda" else False),
                   stopped_sweeps={(int(r["cores"]), int(r["input_size"])) for r in rows if r.get("oom_batch_size")},
                   warm_up=(grid_c[0], grid_s[0], grid_b[0]))
    try:
        for c in grid_c:
            for s in grid_s:
                for b in grid_b:
                    if (c, s, b) in done or (c, s) in sweep.stopped_sweeps:
                        bar.update(1)
                        continue
                    if sweep.out_of_time():
                        run.stopped = f"--total-budget (total_budget_s) {total_budget_s:g} s reached"
                        break
                    bar.set_postfix_str(f"cores={c} size={s} batch={b}")
                    sweep.record(c, s, b, sweep.measure(c, s, b))
                    bar.update(1)
                if run.stopped:
                    break
                if find_max_batch:
                    try:
                        search_boundary(run, rows, {"cores": c, "input_size": s}, max_batch_cap,
                                        functools.partial(sweep.measure, c, s), functools.partial(sweep.record, c, s),
                                        functools.partial(sweep.fits, c, s), functools.partial(write_rows, out, rows),
                                        steps=ARENA_STEPS)
                    except OutOfTime:
                        run.stopped = (f"--total-budget (total_budget_s) {total_budget_s:g} s reached during the "
                                       f"max-batch search of cores={c}, input size {s}")
                        break
            if run.stopped:
                break
    finally:
        bar.close()
        sweep.monitor.close()
        run.elapsed_s = time.perf_counter() - sweep.start
    return run


@dataclass
class _Sweep:
    """One :func:`profile_model` run's measuring and recording of points: what its loops and the boundary search
    call (``measure``, ``record``, ``fits``)."""

    ort: Any
    model_bytes: bytes
    providers: list[str]
    feeds_spec: list[tuple[str, list[Any], str]]
    seed: int
    repeats: int
    min_repeats: int
    time_budget_s: float
    memory_limit_mb: float | None
    max_cv: float | None
    device: str
    total_budget_s: float | None
    run: ProfileRun
    out: Path | None
    on_point: Callable[[dict[str, Any]], None] | None
    meta: dict[str, Any]
    work: Any
    bar: Any
    monitor: Any
    stopped_sweeps: set[tuple[int, int]]
    mem_pattern: bool = True
    start: float = field(default_factory=time.perf_counter)
    warm_up: tuple[int, int, int] | None = None  # (cores, input size, batch) of the untimed warm-up point

    def measure(self, c: int, s: int, b: int, check: bool = False) -> dict[str, Any]:
        """A point of the grid; ``check``: the search's trial (warm-up and one run, memory only). Before the
        first, an untimed warm-up point (:meth:`_warm_up`)."""
        if self.warm_up is not None:
            self._warm_up(*self.warm_up)
        feeds = functools.partial(make_feeds, self.feeds_spec, b, s, self.seed)
        runs = (1, 1, 0.0, None) if check else (self.repeats, self.min_repeats, self.time_budget_s, self.max_cv)
        return _measure_point(self.ort, self.model_bytes, self.providers, feeds, c, b, *runs[:3],
                              self.memory_limit_mb, self.monitor, self.device, runs[3], mem_pattern=self.mem_pattern)

    def _warm_up(self, c: int, s: int, b: int) -> None:
        """Run one session once, unrecorded and without the memory limit, so that ONNX Runtime's one-time process
        costs (about 8 MiB of RSS on CPU: thread pools, kernel tables, first allocations) fall before the first
        point's baseline instead of into its ``memory_mb``."""
        self.warm_up = None
        self.bar.set_postfix_str("warm-up")
        _warm_up(self.ort, self.model_bytes, self.providers, make_feeds(self.feeds_spec, b, s, self.seed), c,
                 mem_pattern=self.mem_pattern)

    def record(self, c: int, s: int, b: int, point: dict[str, Any]) -> dict[str, Any]:
        row = record_point(self.run, self.run.rows, {"cores": c, "input_size": s}, b, point, self.out,
                           self.on_point, lambda p: dict(self.meta, cores=c, input_size=s, batch_size=b, **p,
                                                         **self.work(s), oom_batch_size=None))
        if "reason" in row:
            self.stopped_sweeps.add((c, s))
        return row

    def out_of_time(self) -> bool:
        return self.total_budget_s is not None and time.perf_counter() - self.start > self.total_budget_s

    def fits(self, c: int, s: int, b: int) -> bool:
        """The boundary search's trial at batch ``b``: two passes of a fresh session."""
        if self.out_of_time():
            raise OutOfTime
        self.bar.set_postfix_str(f"cores={c} size={s} max-batch search: {b}")
        return self.measure(c, s, b, check=True)["oom_reason"] is None


# --------------------------------------------------------------------------------------------- measuring
def _work_columns(model: Path, spec: list[tuple[str, list[Any], str]]) -> Any:
    """``gflops`` / ``param_mb`` / ``act_peak_mb`` of the graph at batch 1 per input size
    (:mod:`servopt.measure.work_columns`)."""
    from servopt.measure.work_columns import WorkColumns, onnx_counter

    counters: list[Any] = []  # the graph is read on first use, inside WorkColumns' error handling

    def count(size: int | None) -> tuple[float, ...]:
        if not counters:
            counters.append(onnx_counter(model, spatial_axes(spec[0][1]) if spec else None))
        return counters[0](size)

    return WorkColumns(count, model.name)


def _session(ort: Any, model_bytes: bytes, providers: list[str], cores: int, mem_pattern: bool) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cores
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not mem_pattern:
        opts.enable_mem_pattern = False
    return ort.InferenceSession(model_bytes, opts, providers=providers)


def _warm_up(ort: Any, model_bytes: bytes, providers: list[str], feeds: dict[str, Any], cores: int, *,
             mem_pattern: bool = True) -> None:
    """One session, its first run and one steady-state run, not measured: the one-time costs of this process
    (ONNX Runtime's, and the modules the statistics import on first use). An error is left to the first point,
    which meets it again and classifies it."""
    try:
        session = _session(ort, model_bytes, providers, cores, mem_pattern)
        session.run(None, feeds)

        def run_once() -> float:
            session.run(None, feeds)
            return 0.0

        steady_state(run_once, 1, 1, 0.0, None)
    except Exception:
        pass
    finally:
        session = feeds = None
        gc.collect()
        release_free_memory()


def _measure_point(ort: Any, model_bytes: bytes, providers: list[str], make_feeds: Callable[[], dict[str, Any]],
                   cores: int, batch: int, repeats: int, min_repeats: int, time_budget_s: float,
                   limit_mb: float | None, monitor: Any, device: str, max_cv: float | None, *,
                   mem_pattern: bool = True) -> dict[str, Any]:
    gc.collect()
    release_free_memory()
    monitor.sample()  # opens the utilisation / bandwidth window of this point
    read = (lambda: max(monitor.gpu_memory_used_mib() or [0.0]) * _MIB) if device == "cuda" else rss_bytes
    hwm = HighWaterMark() if device == "cpu" else None
    baseline = read()
    run_options = ort.RunOptions()
    tracker = PeakMemoryTracker(read, baseline, None if limit_mb is None else limit_mb * _MIB, run_options)
    tracker.start()
    result: dict[str, Any] = {"oom_reason": None}
    session = feeds = None
    try:
        feeds = make_feeds()
        t0 = time.perf_counter()
        session = _session(ort, model_bytes, providers, cores, mem_pattern)
        result["load_time_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        session.run(None, feeds, run_options)
        result["warmup_ms"] = (time.perf_counter() - t0) * 1e3

        def run_once() -> float:
            t0 = time.perf_counter()
            session.run(None, feeds, run_options)
            return (time.perf_counter() - t0) * 1e3

        stats = steady_state(run_once, repeats, min_repeats, time_budget_s, max_cv)
    except ServoptError:
        raise
    except Exception as exc:  # ONNX Runtime raises its own exception types; classify, re-raise the rest
        if not (tracker.tripped or is_oom_error(exc)):
            raise ServoptError(f"onnxruntime failed at cores={cores}, batch_size={batch}: {exc}") from exc
        result = {"oom_reason": "memory limit" if tracker.tripped else f"allocation failure: {str(exc)[:200]}"}
        stats = None
    finally:
        session = feeds = None
        tracker.stop()
    peak = max(tracker.peak, hwm.read() if hwm is not None else 0.0)
    result["memory_mb"] = max(peak - baseline, 0.0) / _MIB
    if limit_mb is not None and result["memory_mb"] > limit_mb and result["oom_reason"] is None:
        result = {"oom_reason": "memory limit", "memory_mb": result["memory_mb"]}
    if stats is not None and result["oom_reason"] is None:
        result.update(stats, throughput_rps=batch / (stats["latency_ms"] / 1e3))
    else:
        result.update(repeats=0)
    result.update({f"hw.{k}": v for k, v in monitor.sample().items()})
    gc.collect()
    release_free_memory()
    return result


# ----------------------------------------------------------------------------------------------- helpers
def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(f"the profiler needs onnxruntime: pip install 'servopt[profile]' ({exc})")
    return onnxruntime
