"""Profile torchvision models on an NVIDIA GPU with servopt's torch profiler, within a time budget.

Run from the repository root on a machine with an NVIDIA GPU, torch (CUDA build) and torchvision; no network and
no servopt install are needed, and nothing of servopt's solver stack is imported (only ``servopt.measure``):

    PYTHONPATH=. python scripts/gpu_profile_check.py OUT_DIR [--budget-s 340] [--memory-limit-mb 8192]

For each model (resnet50, mobilenet_v3_large) x dtype (fp32, fp16): input sizes 224, 320, 448 x batch sizes 1,
2, 4, ..., 256, then the out-of-memory boundary per input size under ``--memory-limit-mb`` (doubling, then
bisection). Writes ``OUT_DIR/measured_<gpu>_<model>_<dtype>.csv`` (servopt's profile schema) and
``OUT_DIR/max_batch_<gpu>.csv`` (model, dtype, input_size, max_batch, oom_batch, trials). The budget is shared
out between the four runs (what one leaves goes to the next); a run that reaches its share keeps the points
measured so far. Imports: torch, torchvision, numpy, and (when installed) psutil and nvidia-ml-py (``pynvml``).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

MODELS = ("resnet50", "mobilenet_v3_large")
DTYPES = ("fp32", "fp16")
SIZES = (224, 320, 448)
BATCHES = tuple(2**i for i in range(9))  # 1 .. 256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the CSV files (created)")
    parser.add_argument("--budget-s", type=float, default=340.0, help="time for the whole run (default 340 s)")
    parser.add_argument("--memory-limit-mb", type=float, default=8192.0, help="limit of the OOM search (MiB)")
    parser.add_argument("--models", default=",".join(MODELS), help="torchvision model names, comma-separated")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="fp32, fp16, bf16, comma-separated")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="input sizes, comma-separated")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes, comma-separated")
    parser.add_argument("--time-budget", type=float, default=0.4, help="steady-state seconds per point (0.4)")
    parser.add_argument("--force", action="store_true", help="replace existing CSV files")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import torch

    from servopt.measure.hwmon import gpu_hardware_name
    from servopt.measure.torch_runtime import profile_torch

    if not torch.cuda.is_available():
        print("no CUDA device: this check needs an NVIDIA GPU and a CUDA build of torch", file=sys.stderr)
        return 2
    gpu = gpu_hardware_name(torch.cuda.get_device_name())
    try:
        import torchvision
    except Exception as exc:
        print(f"torchvision does not import ({exc}); install the build matching torch {torch.__version__}",
              file=sys.stderr)
        return 2
    models, dtypes = args.models.split(","), args.dtypes.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    print(f"gpu {gpu} ({torch.cuda.get_device_name()}), torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}; "
          f"budget {args.budget_s:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    summary: list[dict[str, object]] = []
    combos = [(m, d) for m in models for d in dtypes]
    for i, (model, dtype) in enumerate(combos):
        left = args.budget_s - (time.perf_counter() - started)
        share = left / (len(combos) - i)
        if share < 10:
            print(f"{model} {dtype}: skipped, {left:.0f} s left", flush=True)
            continue
        out = args.out / f"measured_{gpu}_{model}_{dtype}.csv"
        print(f"== {model} {dtype}: {len(sizes)} sizes x {len(batches)} batches + OOM search under "
              f"{args.memory_limit_mb:.0f} MiB, {share:.0f} s -> {out}", flush=True)
        t0 = time.perf_counter()

        def show(row: dict[str, object], t0: float = t0) -> None:
            if "reason" in row:
                print(f"   {time.perf_counter() - t0:6.1f} s  size {row['input_size']} batch {row['batch_size']}: "
                      f"out of memory ({row['reason'][:60]})", flush=True)
            else:
                print(f"   {time.perf_counter() - t0:6.1f} s  size {row['input_size']} batch {row['batch_size']}: "
                      f"{row['latency_ms']:.2f} ms (cv {row['latency_cv']:.3f}{', unstable' if row['unstable'] else ''}"
                      f"), warm-up {row['warmup_ms']:.0f} ms, reserved {row['memory_mb']:.0f} MiB, "
                      f"util {row.get('hw.05_gpu_smi/gpu_0_gpu_util_in_percent', float('nan')):.0f} %", flush=True)

        try:
            run = profile_torch(f"torchvision:{model}", batches, sizes, device="cuda", dtype=dtype, repeats=20,
                                min_repeats=3, time_budget_s=args.time_budget, total_budget_s=share, max_cv=0.1,
                                memory_limit_mb=args.memory_limit_mb, find_max_batch=True, max_batch_cap=16384,
                                output=out, force=args.force, on_point=show)
        except Exception as exc:  # one failing run (e.g. a kernel that refuses a huge batch) must not stop the rest
            print(f"   failed: {type(exc).__name__}: {str(exc)[:300]} (rows measured so far are in {out})",
                  flush=True)
            torch.cuda.empty_cache()
            continue
        for found in run.max_batch:
            summary.append({"model": model, "dtype": dtype, "input_size": found["input_size"],
                            "max_batch": found["max_batch"], "oom_batch": found["oom_batch"],
                            "trials": " ".join(map(str, found["trials"]))})
            print(f"   size {found['input_size']}: max batch {found['max_batch']} (OOM at {found['oom_batch']}, "
                  f"{len(found['trials'])} trials)", flush=True)
        print(f"   {len(run.rows)} rows in {run.elapsed_s:.0f} s (load {run.rows[0]['load_time_s']:.1f} s)"
              f"{'; ' + run.stopped if run.stopped else ''}" if run.rows else "   no rows", flush=True)
        del run
        torch.cuda.empty_cache()
    if summary:
        path = args.out / f"max_batch_{gpu}.csv"
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(summary[0]))
            writer.writeheader()
            writer.writerows(summary)
        print(f"wrote {path}")
    loaded = sorted(m for m in ("psutil", "pynvml", "pandas", "sklearn", "ortools", "highspy", "yaml", "lightgbm",
                                "matplotlib", "google.protobuf", "tritonclient", "onnxruntime", "tqdm")
                    if m in sys.modules)
    print(f"done in {time.perf_counter() - started:.0f} s; optional modules imported: {', '.join(loaded) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
