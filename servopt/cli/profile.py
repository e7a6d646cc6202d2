"""``servopt profile``: measure an ONNX model (ONNX Runtime) or a PyTorch model (``--runtime torch``) into a profile
CSV (SPEC §7)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from servopt.cli._options import check_memory_limit, int_list
from servopt.exceptions import ValidationError
from servopt.progress import progress_enabled

DESCRIPTION = """Run MODEL.onnx with ONNX Runtime over cores x input sizes x batch sizes and write one profile row per
point: steady-state latency (median and p99 of repeated runs within --time-budget), warm-up (the first run after
the session is created), peak memory (RSS delta on CPU, NVML on GPU), session load time, and hardware-monitoring
features (hw.* columns). Each point gets its own session with --cores intra-op threads.

The CSV is rewritten atomically after every point, so an interrupted run keeps what it measured; --resume
continues it. An out-of-memory point (an allocation failure, or a peak above --memory-limit-mb) ends that input
size's batch sweep: the sweep's rows get oom_batch_size = that batch size (see docs/profiler.md). With
--find-max-batch (and --memory-limit-mb) the boundary is then searched per sweep (ONNX Runtime: 16 upward steps,
then bisection inside the first step that runs out; torch: bisection), each trial a fresh session's first two
runs: oom_batch_size becomes the largest batch that fits plus one, what `servopt fit` calibrates the largest batch
on.

With --runtime torch, MODEL is a TorchScript file (torch.jit.save), a torch.export program (torch.export.save,
.pt2, exported with a dynamic batch and image size) or torchvision:NAME (random weights, nothing downloaded);
--device cuda times with CUDA events, records PyTorch's peak allocated/reserved GPU memory, samples NVML during
the runs (mean and max as hw.* columns), and with --memory-limit-mb caps the allocator
(torch.cuda.set_per_process_memory_fraction).
Needs pip install 'servopt[torch]'.

A point whose runs vary by more than --max-cv (coefficient of variation) is measured again once with twice the
repeats and marked unstable=1.

With --triton URL --model NAME, a model served by a running Triton server is measured instead (load generation
through Triton, docs/verify.md); with --triton start, MODEL.onnx is served for the run on a tritonserver started
here (Python backend running it with ONNX Runtime, tensors read from the graph, max_batch_size = the largest
batch size; the server found as by `servopt verify --start`) and stopped afterwards, also on errors and Ctrl-C.
Either way the rows are written once, at the end, as one profile ready for `servopt fit` and `solve`.

An existing OUT.csv is refused unless --force (replace it) or --resume (continue it)."""

EPILOG = """examples:
  python -m servopt.measure.onnx_models resnet_like resnet_like.onnx
  servopt profile resnet_like.onnx --batch-sizes 1,2,4,8 --input-sizes 224,320 --cores 1,2 -o resnet.csv
  servopt profile resnet_like.onnx --batch-sizes 1,2,4,8,16,32,64 --input-sizes 224 --memory-limit-mb 300 \
      --find-max-batch -o m.csv
  servopt profile --runtime torch torchvision:resnet50 --device cuda --dtype fp16 --batch-sizes 1,2,4,8 \
      --input-sizes 224 --memory-limit-mb 8192 --find-max-batch -o resnet50_fp16.csv
  servopt profile examples/models/image_classifier.onnx --triton start --batch-sizes 1,2,4,8 \
      --concurrency 1 --hardware triton-cpu -o served.csv
  servopt profile --triton 127.0.0.1:8001 --model timed --batch-sizes 1,4,16 --concurrency 1,2 -o timed.csv

exit codes:
  0  measured (at least one row written)
  1  measured nothing (every point out of memory, or --total-budget spent before the first point); no file written
  2  bad input or usage, e.g. --device cuda without onnxruntime-gpu, or without a CUDA build of torch
     (refused before measuring)
  130  interrupted (Ctrl-C); OUT.csv keeps every point measured so far (the message says how many rows):
     run the same command again with --resume to finish"""


USAGE = """%(prog)s MODEL.onnx --batch-sizes LIST --input-sizes LIST -o OUT.csv [options]
       %(prog)s --runtime torch MODEL --batch-sizes LIST --input-sizes LIST -o OUT.csv [options]
       %(prog)s MODEL.onnx --triton start --batch-sizes LIST -o OUT.csv [options]
       %(prog)s --triton URL --model NAME --batch-sizes LIST -o OUT.csv [options]"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", nargs="?",
                        help="ONNX file with dynamic batch (and image) dimensions; with --runtime torch a TorchScript / "
                        "torch.export file or torchvision:NAME; with --triton start the ONNX file to serve "
                        "(or --triton URL --model NAME)")
    parser.add_argument("--runtime", choices=("onnxruntime", "torch"), default="onnxruntime",
                        help="what runs the model (default onnxruntime; torch needs servopt[torch])")
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32",
                        help="--runtime torch: precision of weights and inputs (default fp32)")
    parser.add_argument("--find-max-batch", action="store_true",
                        help="after each input size's batch sweep, search its out-of-memory boundary under "
                        "--memory-limit-mb (needs it)")
    parser.add_argument("--mem-pattern", choices=("on", "off"), default="on",
                        help="ONNX Runtime's memory pattern (default on, as Triton's ONNX Runtime backend). off: a "
                        "lower CPU peak that steps less with the batch, at the same latency (measured: the largest "
                        "batch under a limit 1.4-2.2x); rows get the label mem_pattern=off; serve the plan with "
                        "enable_mem_pattern \"0\" (a triton: template; docs/profiler.md)")
    parser.add_argument("--max-cv", type=float, default=0.1, metavar="CV",
                        help="re-measure a point once (and mark it unstable) when the coefficient of variation "
                        "of its runs is above CV (default 0.1)")
    parser.add_argument("--batch-sizes", required=True, metavar="LIST", help="comma-separated, e.g. 1,2,4,8")
    parser.add_argument("--input-sizes", metavar="LIST",
                        help="image sides in pixels, e.g. 224,320; required, except with --triton (start: one "
                        "value at most)")
    parser.add_argument("--cores", default="1", metavar="LIST", help="intra-op threads per session (default 1)")
    parser.add_argument("--repeats", type=int, default=30, metavar="N",
                        help="at most N steady-state runs per point (default 30)")
    parser.add_argument("--min-repeats", type=int, default=3, metavar="N",
                        help="at least N steady-state runs per point, even past the time budget (default 3)")
    parser.add_argument("--time-budget", type=float, default=2.0, metavar="S",
                        help="seconds of steady-state runs per point (default 2)")
    parser.add_argument("--total-budget", type=float, default=None, metavar="S",
                        help="stop the whole grid after S seconds, keeping what was measured")
    parser.add_argument("--memory-limit-mb", type=float, default=None, metavar="MiB",
                        help="artificial memory limit: a point whose peak memory passes it is out of memory")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.csv",
                        help="profile to write: CSV, or Parquet for .parquet / .pq")
    parser.add_argument("--resume", action="store_true", help="keep the rows of an existing OUT.csv and measure "
                        "only the missing points")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT.csv (its rows are not kept)")
    parser.add_argument("--hardware", default=None, help="hardware name (default: cpu-<CPU model> or GPU name)")
    parser.add_argument("--model-name", default=None, help="model column (default: the file name's stem)")
    parser.add_argument("--variant", default=None,
                        help="variant column (default: the model name; with --runtime torch <model>-<dtype>)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="execution provider")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    from servopt.cli import _profile_triton

    _profile_triton.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from servopt.cli._output import check_output

    check_memory_limit(getattr(args, "memory_limit_mb", None))
    from servopt.cli import _profile_triton

    if args.triton:
        return _profile_triton.run(args)
    stray = _profile_triton.given_without_triton(args)
    if stray[:1] == ["--model"]:
        raise ValidationError("--model NAME only applies with --triton URL (the served model's name); the model "
                              "column of a profile measured here is --model-name")
    if stray:
        raise ValidationError(f"{stray[0]} only applies with --triton URL or --triton start (a served model's "
                              "load); without --triton the model runs in this process, one batch at a time")
    if args.resume and args.force:
        raise ValidationError("give either --resume (keep OUT.csv's rows) or --force (replace OUT.csv), not both")
    # checked before measuring; --resume consents to an existing OUT.csv (it continues it)
    check_output(args.output, "-o", force=args.force or args.resume)
    _check_model(args)  # each problem on its own: MODEL missing or not a file, then --input-sizes missing
    if not args.input_sizes:
        raise ValidationError("--input-sizes LIST is required (image sides in pixels, e.g. 224,320); only "
                              "--triton start or --triton URL measure without it")
    if args.runtime == "torch":
        if args.mem_pattern != "on":
            raise ValidationError("--mem-pattern off needs --runtime onnxruntime (an ONNX Runtime session option; "
                                  "torch has no memory pattern)")
        measure = _run_torch
    else:
        if args.dtype != "fp32":
            raise ValidationError("--dtype needs --runtime torch (ONNX Runtime runs the model in the precision it "
                                  "was exported in)")
        if args.device == "cuda":
            _check_cuda()
        measure = _run_onnx
    before = _file_state(args.output)
    try:
        result = measure(args)
    except KeyboardInterrupt:
        _report_interrupt(args.output, before)
        return 130
    return _report(result)


def _check_model(args: argparse.Namespace) -> None:
    """MODEL is given and, unless it is ``torchvision:NAME``, an existing file."""
    from pathlib import Path

    torch = args.runtime == "torch"
    if not args.model:
        raise ValidationError("MODEL is required: " + ("a TorchScript or torch.export file, or torchvision:NAME"
                                                      if torch else "the ONNX file to measure")
                              + " (or --triton URL --model NAME)")
    if torch and args.model.startswith("torchvision:"):
        return
    if not Path(args.model).is_file():
        raise ValidationError(f"MODEL {args.model}: no such " + ("model file (give a TorchScript or torch.export "
                                                                 "file, or torchvision:NAME)" if torch else
                                                                 "ONNX file"))


def _shared(args: argparse.Namespace) -> dict[str, Any]:
    """The options both runtimes take, as keyword arguments of their profile function."""
    return dict(repeats=args.repeats, min_repeats=args.min_repeats, time_budget_s=args.time_budget,
                total_budget_s=args.total_budget, memory_limit_mb=args.memory_limit_mb, max_cv=args.max_cv,
                output=args.output, resume=args.resume, force=args.force, hardware=args.hardware,
                model_name=args.model_name, variant=args.variant, device=args.device,
                progress=progress_enabled(args.quiet), seed=args.seed)


def _run_onnx(args: argparse.Namespace) -> Any:
    from servopt.measure.profiler import profile_model

    return profile_model(args.model, int_list("--batch-sizes", args.batch_sizes),
                         int_list("--input-sizes", args.input_sizes), int_list("--cores", args.cores),
                         find_max_batch=args.find_max_batch, mem_pattern=args.mem_pattern == "on", **_shared(args))


def _run_torch(args: argparse.Namespace) -> Any:
    from servopt.measure.torch_runtime import profile_torch

    cores = int_list("--cores", args.cores)
    if len(cores) != 1:
        raise ValidationError(f"--cores: --runtime torch takes one value (torch.set_num_threads), got {args.cores!r}")
    return profile_torch(args.model, int_list("--batch-sizes", args.batch_sizes),
                         int_list("--input-sizes", args.input_sizes), dtype=args.dtype, cores=cores[0],
                         find_max_batch=args.find_max_batch, **_shared(args))


def _report(result: Any) -> int:
    if not result.rows:  # exit 1, like an infeasible solve: the input was fine, nothing could be measured
        why = (f"stopped early: {result.stopped}" if result.stopped else
               "every point was out of memory" if result.oom else "no point was measured")
        print(f"servopt profile: measured nothing ({why}); no output written", file=sys.stderr)
        # each OOM point's reason and memory reached, on stdout as after a run that wrote rows (stderr: one line)
        _report_points(result, sys.stdout, written=False)
        return 1
    print(f"wrote {result.path}: {len(result.rows)} rows ({result.measured} points measured now) in "
          f"{result.elapsed_s:.1f} s")
    _report_points(result, sys.stdout, written=True)
    if result.stopped:
        print(f"  stopped early: {result.stopped}; run again with --resume to finish", file=sys.stderr)
    return 0


def _report_points(result: Any, stream: TextIO, *, written: bool) -> None:
    """One line per out-of-memory point (reason, memory reached) and per searched boundary."""
    recorded = ", recorded as oom_batch_size" if written else ""
    for oom in result.oom:
        memory = oom.get("memory_mb")
        reached = f", {memory:.0f} MiB" if isinstance(memory, (int, float)) else ""
        where = " ".join(f"{key}={oom[key]}" for key in ("cores", "input_size", "batch_size")
                         if oom.get(key) is not None)
        print(f"  out of memory at {where} ({oom['reason']}{reached}); larger batches skipped{recorded}",
              file=stream)
    for found in result.max_batch:
        boundary = (f"out of memory from {found['oom_batch']}" if found["oom_batch"] is not None else
                    "no out of memory up to the search cap")
        where = " ".join(f"{key}={found[key]}" for key in ("cores", "input_size") if found.get(key) is not None)
        print(f"  {where}: largest batch that fits {found['max_batch']} ({boundary}; {len(found['trials'])} trials)",
              file=stream)


def _file_state(path: str) -> tuple[int, int, int] | None:
    """``(inode, size, mtime_ns)`` of ``path``, None where it does not exist: tells whether a run rewrote it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _report_interrupt(path: str, before: tuple[int, int, int] | None) -> None:
    """Ctrl-C during the grid: say what OUT.csv holds (it is rewritten atomically after every point, so it is a
    complete profile of the points measured so far) and how to finish the run."""
    after = _file_state(path)
    if after is None:
        print("servopt profile: interrupted before the first point was measured; no output written",
              file=sys.stderr)
        return
    rows = _count_rows(path)
    held = f"{rows} rows" if rows is not None else "the rows measured so far"
    if after == before:
        print(f"servopt profile: interrupted before a new point was measured; {path} is as it was ({held})",
              file=sys.stderr)
        return
    print(f"servopt profile: interrupted; kept {held} in {path} (every point measured so far, each complete; "
          "the grid is not finished); run the same command again with --resume to finish it", file=sys.stderr)


def _count_rows(path: str) -> int | None:
    import csv

    try:
        with open(path, newline="") as fh:
            return max(sum(1 for _ in csv.reader(fh)) - 1, 0)
    except (OSError, csv.Error, UnicodeDecodeError):
        return None


def _check_cuda() -> None:
    """Refuse --device cuda before measuring when ONNX Runtime has no CUDA provider (the plain wheel)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return  # profile_model names the missing package
    found = ort.get_available_providers()
    if "CUDAExecutionProvider" not in found:
        raise ValidationError(f"--device cuda: ONNX Runtime {ort.__version__} has no CUDAExecutionProvider "
                              f"(providers found: {', '.join(found)}); pip install onnxruntime-gpu (in place of "
                              "onnxruntime) on a machine with an NVIDIA GPU")
