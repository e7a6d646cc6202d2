"""Peak memory and latency per batch on CPU with ONNX Runtime's memory arena on and off, and with the arena but
without the memory pattern: why the largest batch on CPU is hard to get both within 10 % and never above the first
batch that runs out, and the runtime setting that makes it easier.

    python benchmarks/arena_sawtooth.py                 # mobilenet of fresh set 18 at 96 px, batch 1-100
    python benchmarks/arena_sawtooth.py --graph resnet_like --size 224 --top 64

Each batch is measured as ``servopt profile`` measures a point (:func:`servopt.measure.profiler._measure_point`: a
fresh session, its warm-up, then steady-state runs; peak RSS of the process above the RSS before the session),
2 cores, batch 1, 2, ... in turn, each batch under four settings side by side: the arena with the memory pattern
(ONNX Runtime's defaults, what Triton's ONNX Runtime backend uses unless ``enable_mem_arena`` or
``enable_mem_pattern`` is "0"), no arena (``SessionOptions.enable_cpu_mem_arena = False``) and the arena without the
memory pattern (``enable_mem_pattern = False``, ``servopt profile --mem-pattern off``). With the pattern, each run's
activations are one planned block that the arena serves from regions grown in powers of two, so the peak is
saw-toothed in the batch: a batch just past a region's size can need less memory than a smaller one. Without it the
arena serves each tensor on its own. A fourth setting, the default with the arena shrunk after every run
(``RunOptions`` entry ``memory.enable_memory_arena_shrinkage = cpu:0``, which Triton's ONNX Runtime backend takes as
a model-config parameter of that name), asks whether giving the first run's regions back removes the steps.

Writes ``benchmarks/results/arena_sawtooth.csv`` (batch, arena, mem_pattern, arena_shrinkage, memory_mb,
latency_ms) and ``arena_sawtooth.png``, and prints per setting: the largest drop of the peak from one batch to the
next (share of the previous peak), the number of batches whose peak is more than 10 % below a smaller batch's (both
also from batch 17 on, where the baseline's noise is a small share of the peak), the median peak and the median
latency against the default's over the batches from 32 on.

    python benchmarks/arena_sawtooth.py --first-runs 32 --graph resnet_fresh21 --size 176

instead shows where the memory goes: the resident set above the baseline after the session is created and after each
of its first runs, with and without the memory pattern (each in a fresh process; ``arena_first_runs.csv``). With it,
the first run records the pattern in per-tensor allocations that the arena keeps, and the second run allocates the
planned block on top of them.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import RESULTS, ROOT, pyplot, save_figure, write_csv  # noqa: E402

FIELDS = ["graph", "input_size", "batch_size", "arena", "mem_pattern", "arena_shrinkage", "memory_mb", "latency_ms"]
RUN_FIELDS = ["graph", "input_size", "batch_size", "mem_pattern", "after", "rss_above_baseline_mb"]
CORES = 2
#: (arena, memory pattern, arena shrinkage after each run): the default first, the ratios are against it
SETTINGS = ((1, 1, 0), (0, 1, 0), (1, 0, 0), (1, 1, 1))
LABELS = {(1, 1, 0): "arena + memory pattern (default)", (0, 1, 0): "no arena", (1, 0, 0): "arena, no memory pattern",
          (1, 1, 1): "arena + memory pattern, shrunk after each run"}
#: the run-option entry that shrinks the CPU arena after each run (Triton: a model-config parameter of that name)
SHRINKAGE = ("memory.enable_memory_arena_shrinkage", "cpu:0")
#: the steps are also counted from this batch on: below it the peak is a few tens of MiB, and the few MiB the
#: process's baseline moves between points are a large share of it
FROM_BATCH = 17


def _graph(name: str) -> Any:
    from servopt.measure.onnx_models import BUILDERS

    if name in BUILDERS:
        return BUILDERS[name]()
    from fresh_cpu import GRAPHS, graphs

    for which in sorted(GRAPHS, reverse=True):
        found = graphs(which)
        if name in found:
            return found[name]
    raise SystemExit(f"arena_sawtooth: unknown graph {name!r} (a builder of servopt.measure.onnx_models or a "
                     f"fresh set's graph, e.g. mobilenet_fresh18)")


def _setting(row: dict[str, Any]) -> tuple[int, int, int]:
    """A row's entry of :data:`SETTINGS` (rows written before the shrinkage setting have no such column)."""
    return int(row["arena"]), int(row.get("mem_pattern", 1)), int(row.get("arena_shrinkage", 0))


def _runtime(arena: bool, pattern: bool, shrinkage: bool = False) -> Any:
    """The parts of ``onnxruntime`` the profiler's point measurement uses, with the CPU arena and the memory pattern
    on or off, and the arena shrunk after each run or not."""
    import onnxruntime as ort

    def options() -> Any:
        opts = ort.SessionOptions()
        opts.enable_cpu_mem_arena = arena
        opts.enable_mem_pattern = pattern
        return opts

    def run_options() -> Any:
        run = ort.RunOptions()
        if shrinkage:
            run.add_run_config_entry(*SHRINKAGE)
        return run

    return types.SimpleNamespace(SessionOptions=options, RunOptions=run_options,
                                 InferenceSession=ort.InferenceSession)


def measure(graph: str, size: int, top: int) -> list[dict[str, Any]]:
    from servopt.measure.hwmon import HardwareMonitor
    from servopt.measure.profiler import _measure_point

    model = _graph(graph).SerializeToString()
    rng = np.random.default_rng(0)
    rows = []
    monitor = HardwareMonitor()
    for batch in range(1, top + 1):  # the settings side by side at each batch: the same machine load
        x = rng.random((batch, 3, size, size), dtype=np.float32)
        for arena, pattern, shrinkage in SETTINGS:
            runtime = _runtime(bool(arena), bool(pattern), bool(shrinkage))
            point = _measure_point(runtime, model, ["CPUExecutionProvider"], lambda: {"input": x}, CORES, batch,
                                   repeats=5, min_repeats=3, time_budget_s=0.2, limit_mb=None, monitor=monitor,
                                   device="cpu", max_cv=None)
            rows.append({"graph": graph, "input_size": size, "batch_size": batch, "arena": arena,
                         "mem_pattern": pattern, "arena_shrinkage": shrinkage,
                         "memory_mb": round(point["memory_mb"], 3), "latency_ms": round(point["latency_ms"], 4)})
        if batch % 10 == 0:
            print(f"measured batch 1-{batch}", flush=True)
    return rows


def _first_runs_here(graph: str, size: int, batch: int, pattern: bool, runs: int) -> list[dict[str, Any]]:
    """Resident set above the baseline after the session is created and after each of its first ``runs`` runs."""
    from servopt.measure.hwmon import rss_bytes

    model = _graph(graph).SerializeToString()
    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    ort = _runtime(True, pattern)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = CORES, 1
    base = rss_bytes()
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    out = [("load", rss_bytes())]
    for k in range(1, runs + 1):
        session.run(None, {"input": x})
        out.append((f"run {k}", rss_bytes()))
    return [{"graph": graph, "input_size": size, "batch_size": batch, "mem_pattern": int(pattern), "after": what,
             "rss_above_baseline_mb": round((rss - base) / 2**20, 1)} for what, rss in out]


def first_runs(graph: str, size: int, batch: int, runs: int = 4) -> list[dict[str, Any]]:
    """:func:`_first_runs_here` with and without the memory pattern, each in a fresh process (the allocator
    keeps what a first session freed)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return [row for pattern in (True, False)
                for row in pool.apply(_first_runs_here, (graph, size, batch, pattern, runs))]


def _steps(peak: np.ndarray) -> tuple[float, int]:
    """The largest drop of ``peak`` from one batch to the next (share of the previous peak; 0 where it only rises) and
    how many batches lie more than 10 % below a smaller batch's peak."""
    drops = (peak[:-1] - peak[1:]) / peak[:-1]
    return max(0.0, float(drops.max())), int(sum(peak[k] < 0.9 * peak[:k].max() for k in range(1, len(peak))))


def summary(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    memory, latency = {}, {}
    for setting in SETTINGS:
        part = sorted((r for r in rows if _setting(r) == setting), key=lambda r: r["batch_size"])
        if not part:
            continue
        peak = np.array([r["memory_mb"] for r in part])
        drop, below = _steps(peak)
        memory[setting] = {r["batch_size"]: r["memory_mb"] for r in part}
        latency[setting] = {r["batch_size"]: r["latency_ms"] for r in part}
        line = (f"{LABELS[setting]}: largest drop from one batch to the next {100 * drop:.0f} % of the peak; "
                f"{below} of {len(peak) - 1} batches more than 10 % below a smaller batch's peak")
        large = np.array([r["batch_size"] >= FROM_BATCH for r in part])
        if 1 < large.sum() < len(part):
            drop, below = _steps(peak[large])
            line += f" (from batch {FROM_BATCH} on: {100 * drop:.0f} %, {below} of {large.sum() - 1})"
        common = [b for b in latency[setting] if b >= 32 and b in latency.get(SETTINGS[0], {})]
        if setting != SETTINGS[0] and common:
            base = SETTINGS[0]
            peak_ratio = np.median([memory[setting][b] / memory[base][b] for b in common])
            latency_ratio = np.median([latency[setting][b] / latency[base][b] for b in common])
            line += f"; batch 32 and up against the default: peak x{peak_ratio:.2f}, latency x{latency_ratio:.2f} (medians)"
        lines.append(line)
    return lines


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, (mem, lat) = plt.subplots(1, 2, figsize=(11, 4.6))
    for setting, style in zip(SETTINGS, ("-o", "-s", "-^", "-x")):
        part = sorted((r for r in rows if _setting(r) == setting), key=lambda r: r["batch_size"])
        if not part:
            continue
        label = LABELS[setting]
        mem.plot([r["batch_size"] for r in part], [r["memory_mb"] for r in part], style, ms=3, label=label)
        lat.plot([r["batch_size"] for r in part], [r["latency_ms"] for r in part], style, ms=3, label=label)
    first = rows[0]
    mem.set(xlabel="batch size", ylabel="peak memory above the baseline, MiB",
            title=f"{first['graph']} {first['input_size']} px, {CORES} cores")
    lat.set(xlabel="batch size", ylabel="latency, ms (median of the runs)", title="latency")
    for ax in (mem, lat):
        ax.grid(alpha=0.3)
    fig.legend(*mem.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize="small", frameon=False)
    fig.subplots_adjust(bottom=0.3, wspace=0.25)  # one legend below both panels, clear of the curves
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", default="mobilenet_fresh18", help="graph name (default: %(default)s)")
    parser.add_argument("--size", type=int, default=96, help="input size, px (default: %(default)s)")
    parser.add_argument("--top", type=int, default=100, help="largest batch (default: %(default)s)")
    parser.add_argument("--first-runs", type=int, default=None, metavar="BATCH",
                        help="instead: the resident set after the session and each of its first runs at this batch, "
                        "with and without the memory pattern (arena_first_runs.csv)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    if args.first_runs is not None:
        found = first_runs(args.graph, args.size, args.first_runs)
        write_csv(found, RUN_FIELDS, args.out_dir / "arena_first_runs.csv")
        for pattern in (1, 0):
            print(f"memory pattern {'on ' if pattern else 'off'}: MiB above the baseline after "
                  + ", ".join(f"{r['after']} {r['rss_above_baseline_mb']:g}" for r in found
                              if r["mem_pattern"] == pattern))
        return 0
    rows = measure(args.graph, args.size, args.top)
    write_csv(rows, FIELDS, args.out_dir / "arena_sawtooth.csv")
    plot(rows, args.out_dir / "arena_sawtooth.png")
    if args.img_dir != args.out_dir:
        plot(rows, args.img_dir / "arena_sawtooth.png")
    print("\n".join(summary(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
