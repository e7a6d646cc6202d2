"""Peak memory and latency per batch on CPU with ONNX Runtime's memory arena on and off: why the largest batch on
CPU cannot be both within 10 % and never above the first batch that runs out.

    python benchmarks/arena_sawtooth.py                 # mobilenet of fresh set 18 at 96 px, batch 1-100
    python benchmarks/arena_sawtooth.py --graph resnet_like --size 224 --top 64

Each batch is measured as ``servopt profile`` measures a point (:func:`servopt.measure.profiler._measure_point`: a
fresh session, its warm-up, then steady-state runs; peak RSS of the process above the RSS before the session),
2 cores, batch 1, 2, ... in turn, first with the arena (ONNX Runtime's default, what Triton's ONNX Runtime backend
uses unless ``enable_mem_arena`` is "0") and then without (``SessionOptions.enable_cpu_mem_arena = False``). With the
arena the peak is saw-toothed in the batch: the arena grows its regions in powers of two, so a batch just past a
region's size can need less memory than a smaller one. Writes ``benchmarks/results/arena_sawtooth.csv`` (batch,
arena, memory_mb, latency_ms) and ``arena_sawtooth.png``, and prints per arena setting: the largest drop of the
peak from one batch to the next (share of the previous peak), the number of batches whose peak is more than 10 %
below a smaller batch's, and the median latency ratio without / with the arena over the batches from 32 on.
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

FIELDS = ["graph", "input_size", "batch_size", "arena", "memory_mb", "latency_ms"]
CORES = 2


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


def _runtime(arena: bool) -> Any:
    """The parts of ``onnxruntime`` the profiler's point measurement uses, with the CPU arena on or off."""
    import onnxruntime as ort

    def options() -> Any:
        opts = ort.SessionOptions()
        opts.enable_cpu_mem_arena = arena
        return opts

    return types.SimpleNamespace(SessionOptions=options, RunOptions=ort.RunOptions,
                                 InferenceSession=ort.InferenceSession)


def measure(graph: str, size: int, top: int) -> list[dict[str, Any]]:
    from servopt.measure.hwmon import HardwareMonitor
    from servopt.measure.profiler import _measure_point

    model = _graph(graph).SerializeToString()
    rng = np.random.default_rng(0)
    rows = []
    for arena in (True, False):
        monitor = HardwareMonitor()
        for batch in range(1, top + 1):
            x = rng.random((batch, 3, size, size), dtype=np.float32)
            point = _measure_point(_runtime(arena), model, ["CPUExecutionProvider"], lambda: {"input": x}, CORES,
                                   batch, repeats=5, min_repeats=3, time_budget_s=0.2, limit_mb=None,
                                   monitor=monitor, device="cpu", max_cv=None)
            rows.append({"graph": graph, "input_size": size, "batch_size": batch, "arena": int(arena),
                         "memory_mb": round(point["memory_mb"], 3), "latency_ms": round(point["latency_ms"], 4)})
        print(f"arena {'on' if arena else 'off'}: measured batch 1-{top}", flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    latency = {}
    for arena in (1, 0):
        part = sorted((r for r in rows if r["arena"] == arena), key=lambda r: r["batch_size"])
        memory = np.array([r["memory_mb"] for r in part])
        drops = (memory[:-1] - memory[1:]) / memory[:-1]
        below = int(sum(memory[k] < 0.9 * memory[:k].max() for k in range(1, len(memory))))
        latency[arena] = {r["batch_size"]: r["latency_ms"] for r in part}
        lines.append(f"arena {'on ' if arena else 'off'}: largest drop from one batch to the next "
                     f"{100 * drops.max():.0f} % of the peak; {below} of {len(memory) - 1} batches more than 10 % "
                     f"below a smaller batch's peak")
    common = [b for b in latency[1] if b >= 32 and b in latency[0]]
    if common:
        ratio = np.median([latency[0][b] / latency[1][b] for b in common])
        lines.append(f"latency without / with the arena, batch 32 and up: median {ratio:.2f}x")
    return lines


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, (mem, lat) = plt.subplots(1, 2, figsize=(11, 4))
    for arena, style in ((1, "-o"), (0, "-s")):
        part = sorted((r for r in rows if r["arena"] == arena), key=lambda r: r["batch_size"])
        label = "arena (default)" if arena else "no arena"
        mem.plot([r["batch_size"] for r in part], [r["memory_mb"] for r in part], style, ms=3, label=label)
        lat.plot([r["batch_size"] for r in part], [r["latency_ms"] for r in part], style, ms=3, label=label)
    first = rows[0]
    mem.set(xlabel="batch size", ylabel="peak memory above the baseline, MiB",
            title=f"{first['graph']} {first['input_size']} px, {CORES} cores")
    lat.set(xlabel="batch size", ylabel="latency, ms (median of the runs)", title="latency")
    for ax in (mem, lat):
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", default="mobilenet_fresh18", help="graph name (default: %(default)s)")
    parser.add_argument("--size", type=int, default=96, help="input size, px (default: %(default)s)")
    parser.add_argument("--top", type=int, default=100, help="largest batch (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    rows = measure(args.graph, args.size, args.top)
    write_csv(rows, FIELDS, args.out_dir / "arena_sawtooth.csv")
    plot(rows, args.out_dir / "arena_sawtooth.png")
    if args.img_dir != args.out_dir:
        plot(rows, args.img_dir / "arena_sawtooth.png")
    print("\n".join(summary(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
