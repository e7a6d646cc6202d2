"""Inputs at scale (issue 21): large profiles through ``load_profile`` / ``servopt fit``, large problem files.

Profiles (:func:`make_profile`): 24 configurations (model × hardware × input size × precision label) of a
ResNet-like latency curve ``(a + b · batch) · size² / 224²`` (± 3 % noise) at 12 batch sizes, each point measured
``runs`` times (a ``run`` label, 1..runs), with warm-up and memory columns: rows = 24 × 12 × runs. The committed
sizes: 1,152, 15,000, 150,000 and 1,500,000 rows (``--quick``: 240 and 2,400 rows of 2 configurations). For each
size, in a child process (so peak RSS is the step's own): ``load_profile`` (CSV), and ``servopt fit --targets
latency --json -q`` with ``--repeats mean`` (the runs of each point averaged before fitting); ``--repeats run``
(the default: every run its own configuration, fitted and cross-validated on its own) only at the smallest size:
the fit's cost follows the configurations, not the rows. Wall seconds and peak RSS (``ru_maxrss``).

Problem files (:func:`make_problem_doc`): a ``min_gpus`` pool of GPU types with 64 batch sizes each, written as
YAML and as JSON of about ``--problem-mb`` MB (10 by default), read with ``servopt.load_problem`` in a child
process (parse + validate; wall seconds, peak RSS), and the baseline RSS of a child that imports servopt only.

Usage::

    python benchmarks/bench_scale.py [--quick] [--problem-mb 10]

Writes ``scale.csv`` under ``--out`` (default ``benchmarks/results/``; with ``--quick`` a new temporary folder,
named on stderr).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import output_dir, write_csv  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256)
ROWS = (1_152, 15_000, 150_000, 1_500_000)
#: configurations (model × hardware × input size × precision); the rows beyond them are repeated runs
CONFIGS = 24
QUICK_ROWS = (240, 2_400)
QUICK_CONFIGS = 2
FIELDS = ["input", "format", "rows", "mb", "step", "wall_s", "peak_rss_mb", "baseline_rss_mb", "status", "note"]


def make_profile(rows: int, configs: int = CONFIGS, seed: int = 0) -> Any:
    """A profile of about ``rows`` rows (module docstring) as a pandas DataFrame in servopt's schema."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    configs = max(1, min(configs, rows // len(BATCHES)))
    runs = max(1, rows // (len(BATCHES) * configs))
    models = [f"net{i}" for i in range(max(1, configs // 40))]
    hardware = ["A100", "T4", "L4", "H100"]
    sizes = [160, 224, 288, 384, 448]
    parts = []
    for c in range(configs):
        model, hw = models[c % len(models)], hardware[(c // len(models)) % len(hardware)]
        size = sizes[(c // (len(models) * len(hardware))) % len(sizes)]
        precision = f"p{c // (len(models) * len(hardware) * len(sizes))}"
        a, b = rng.uniform(0.5, 3.0), rng.uniform(0.02, 0.3)
        batch = np.tile(np.asarray(BATCHES), runs)
        run = np.repeat(np.arange(1, runs + 1), len(BATCHES))
        lat = (a + b * batch) * size**2 / 224**2 * rng.normal(1.0, 0.03, batch.size)
        parts.append(pd.DataFrame({
            "model": model, "hardware": hw, "input_size": size, "precision": precision, "run": run,
            "batch_size": batch, "latency_ms": np.round(lat, 4), "warmup_ms": np.round(lat * 20, 3),
            "memory_mb": np.round(500 + 3.0 * batch * size**2 / 224**2, 2)}))
    return pd.concat(parts, ignore_index=True)


def make_problem_doc(target_mb: float) -> dict[str, Any]:
    """A ``min_gpus`` problem whose file is about ``target_mb`` MB (GPU types with 64 batch sizes each)."""
    rng = np.random.default_rng(1)
    per_type = 64 * 55  # bytes of one type's batch table, roughly
    types = max(1, int(target_mb * 1e6 / per_type))
    gpus = []
    for t in range(types):
        speed = float(rng.uniform(0.3, 3.0))
        batches = {b: {"latency_ms": round((4.6 + 0.22 * b) / speed, 3), "warmup_ms": round(900 / speed, 3)}
                   for b in range(1, 65)}
        gpus.append({"hardware": f"gpu{t}", "max_count": 4, "cost_per_hour": round(speed, 2), "batches": batches})
    return {"problem": "min_gpus", "images": 1_000_000, "deadline_s": 600, "gpus": gpus}


_CHILD = r"""
import json, resource, sys, time
step, path, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.perf_counter()
status, note = "ok", ""
try:
    if step == "baseline":
        import servopt  # noqa: F401
    elif step == "load_profile":
        import servopt
        note = f"{len(servopt.load_profile(path)):,} rows"
    elif step == "load_problem":
        import servopt
        from servopt.formulations.registry import load_problem
        problem = load_problem(path)
        note = f"{problem.kind}, {len(problem.gpus):,} GPU types"
    elif step == "fit":
        from servopt.cli import main
        code = main(["fit", path, "--targets", "latency", "--json", "-q", *extra])
        status = "ok" if code == 0 else f"exit {code}"
except Exception as exc:  # reported in the CSV
    status, note = "error", f"{type(exc).__name__}: {str(exc)[:200]}"
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall_s": wall, "peak_rss_mb": rss, "status": status, "note": note}), file=sys.stderr)
"""


def child(step: str, path: Path | str, *extra: str, timeout: float = 900) -> dict[str, Any]:
    """Run one step in a fresh interpreter; its wall seconds and peak RSS (MB)."""
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, step, str(path), *extra], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"wall_s": timeout, "peak_rss_mb": float("nan"), "status": "timeout", "note": f"> {timeout:g} s"}
    last = [line for line in done.stderr.splitlines() if line.startswith("{")]
    if not last:
        return {"wall_s": float("nan"), "peak_rss_mb": float("nan"), "status": "error",
                "note": done.stderr.strip()[-200:]}
    return json.loads(last[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--problem-mb", type=float, default=None, help="size of the problem files (default 10; "
                        "--quick: 0.2)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the CSV (default benchmarks/results; "
                        "with --quick a new temporary folder)")
    args = parser.parse_args(argv)
    args.out = output_dir(args.out, quick=args.quick, name="bench_scale")
    sizes = QUICK_ROWS if args.quick else ROWS
    problem_mb = args.problem_mb if args.problem_mb is not None else (0.2 if args.quick else 10.0)
    rows: list[dict[str, Any]] = []
    base = child("baseline", "-")
    baseline = base["peak_rss_mb"]
    print(f"baseline: import servopt, peak RSS {baseline:.0f} MB", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"profile_{n}.csv"
            t0 = time.perf_counter()
            make_profile(n, QUICK_CONFIGS if args.quick else CONFIGS).to_csv(path, index=False)
            made = time.perf_counter() - t0
            mb = path.stat().st_size / 1e6
            steps = [("load_profile", ()), ("fit --repeats mean", ("--repeats", "mean"))]
            if n == sizes[0]:
                steps.append(("fit --repeats run", ("--repeats", "run")))
            for label, extra in steps:
                got = child(label.split()[0], path, *extra)
                rows.append({"input": "profile", "format": "csv", "rows": n, "mb": round(mb, 2), "step": label,
                             "baseline_rss_mb": round(baseline, 1), **got})
                print(f"profile {n:>9,} rows ({mb:6.1f} MB, written in {made:.1f} s)  {label:20s} "
                      f"{got['wall_s']:8.2f} s  peak RSS {got['peak_rss_mb']:7.0f} MB  {got['status']} "
                      f"{got['note'][:60]}", flush=True)
        doc = make_problem_doc(problem_mb)
        import yaml

        for fmt in ("yaml", "json"):
            path = Path(tmp) / f"problem.{fmt}"
            text = yaml.safe_dump(doc, sort_keys=False) if fmt == "yaml" else json.dumps(doc)
            path.write_text(text)
            mb = path.stat().st_size / 1e6
            got = child("load_problem", path)
            rows.append({"input": "problem", "format": fmt, "rows": len(doc["gpus"]), "mb": round(mb, 2),
                         "step": "load_problem", "baseline_rss_mb": round(baseline, 1), **got})
            print(f"problem {fmt:4s} {mb:6.1f} MB ({len(doc['gpus']):,} GPU types)  load_problem "
                  f"{got['wall_s']:8.2f} s  peak RSS {got['peak_rss_mb']:7.0f} MB  {got['status']} {got['note'][:60]}",
                  flush=True)
    write_csv(rows, FIELDS, args.out / "scale.csv")
    print(f"wrote {args.out / 'scale.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
