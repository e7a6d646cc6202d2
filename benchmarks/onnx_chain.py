"""The ONNX chain measured: profile -> fit -> solve -> verify with servopt commands only, repeated.

    python benchmarks/onnx_chain.py                 # 3 runs x (2 models profiled, 3 plans verified); ~10 min here
    python benchmarks/onnx_chain.py --quick [--out DIR] # 1 run, the text model, 2 batch sizes, short windows,
                                                        # 1,000 images (tests/test_onnx_chain.py); its CSVs go
                                                        # to the work folder, not benchmarks/results
    python benchmarks/onnx_chain.py --replot            # tables and docs/img/onnx_chain.png from the results CSVs

Each run, for each case (an ONNX file from examples/models and the example problem files that deploy it):

1. ``servopt profile MODEL.onnx --triton start --batch-sizes ... --concurrency 2 --latency service`` (a fresh
   tritonserver per profile, stopped afterwards);
2. ``servopt fit PROFILE``;
3. per problem file: ``servopt solve FILE --triton-backend python --out REPO`` on a copy of the example whose
   ``profiles:`` is this run's profile (and ``model_file:`` the absolute path), then
   ``servopt verify REPO --start --json`` (exit 0: the plan holds, 3: it does not; both are results).

Every command's output goes to ``<out>/run<i>/<step>.log``; ``<out>/chain.json`` lists the commands and their exit
codes. Results: ``onnx_chain.csv`` (one row per run and plan: predicted against measured) and
``onnx_chain_profiles.csv`` (every profiled point of every run: the run-to-run spread of the profile), in
``--results`` (default benchmarks/results; with ``--quick`` the work folder), and markdown tables on stdout
(docs/verify.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class Case:
    """One ONNX file, the batch sizes to profile, and the problem files (plan label, file) that deploy it."""

    model: str
    batch_sizes: str
    plans: tuple[tuple[str, str], ...]


FULL = (Case("image_classifier", "1,2,4,8", (("min_gpus", "onnx_chain/min_gpus.yaml"),
                                              ("max_throughput", "onnx_chain/max_throughput.yaml"))),
        Case("language_id", "1,4,16,32", (("min_gpus text", "onnx_chain/min_gpus_text.yaml"),)))
QUICK = (Case("language_id", "1,8", (("min_gpus text", "onnx_chain/min_gpus_text.yaml"),)),)
FULL_WINDOWS = ["--window", "1", "--max-windows", "8", "--stability", "0.15"]
QUICK_WINDOWS = ["--window", "0.5", "--max-windows", "3", "--stability", "0.5"]


def _servopt(args: list[str], log: Path, record: list[dict]) -> subprocess.CompletedProcess:
    """Run ``python -m servopt ARGS`` (output to ``log``) and record the command and its exit code."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "servopt", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=900)
    log.write_text(f"$ servopt {' '.join(args)}\n# exit {proc.returncode}\n--- stdout\n{proc.stdout}"
                   f"--- stderr\n{proc.stderr}")
    record.append({"command": "servopt " + " ".join(args), "exit": proc.returncode,
                   "seconds": round(time.monotonic() - started, 1), "log": str(log)})
    return proc


def _problem_copy(example: Path, profile: Path, dest: Path, *, quick: bool = False) -> Path:
    """The example problem file with this run's profile and the model file's absolute path; ``quick``: also
    ``images: 1000`` (min_gpus), so that a plan exists whatever a short profile on a busy machine measured."""
    import yaml

    doc = yaml.safe_load(example.read_text())
    if quick and "images" in doc:
        doc["images"] = 1000
    doc["profiles"] = [str(profile.resolve())]
    doc["model_file"] = str((example.parent / doc["model_file"]).resolve())
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def run_chain(out: Path, *, runs: int, quick: bool) -> tuple[list[dict], list[dict], list[dict]]:
    """Run the chain ``runs`` times under ``out``; returns (plan rows, profile rows, commands)."""
    cases, windows = (QUICK, QUICK_WINDOWS) if quick else (FULL, FULL_WINDOWS)
    plan_rows: list[dict] = []
    profile_rows: list[dict] = []
    record: list[dict] = []
    for run in range(1, runs + 1):
        work = out / f"run{run}"
        work.mkdir(parents=True, exist_ok=True)
        for case in cases:
            profile = work / f"{case.model}.csv"
            load = os.getloadavg()[0]
            proc = _servopt(["profile", str(EXAMPLES / "models" / f"{case.model}.onnx"), "--triton", "start",
                             "--batch-sizes", case.batch_sizes, "--concurrency", "2", "--latency", "service",
                             "--hardware", "triton-cpu", *windows, "-q", "-o", str(profile), "--force"],
                            work / f"profile_{case.model}.log", record)
            if proc.returncode != 0:
                raise SystemExit(f"profile failed (exit {proc.returncode}); see {work}/profile_{case.model}.log")
            with profile.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    profile_rows.append({"run": run, "model": case.model, "batch_size": int(row["batch_size"]),
                                         "concurrency": int(row["concurrency"]),
                                         "throughput_rps": float(row["throughput_rps"]),
                                         "latency_ms": float(row["latency_ms"]),
                                         "latency_p99_ms": float(row["latency_p99_ms"]),
                                         "server_compute_ms": float(row["server_compute_ms"] or "nan"),
                                         "throughput_spread": float(row["throughput_spread"]),
                                         "stable": int(row["stable"]), "load_avg": round(load, 1)})
            _servopt(["fit", str(profile), "-q"], work / f"fit_{case.model}.log", record)
            for label, example in case.plans:
                slug = label.replace(" ", "_")
                problem = _problem_copy(EXAMPLES / example, profile, work / f"{slug}.yaml", quick=quick)
                repo = work / f"repo_{slug}"
                proc = _servopt(["solve", str(problem), "--triton-backend", "python", "--out", str(repo),
                                 "--force"], work / f"solve_{slug}.log", record)
                if proc.returncode != 0:
                    raise SystemExit(f"solve failed (exit {proc.returncode}); see {work}/solve_{slug}.log")
                load = os.getloadavg()[0]
                proc = _servopt(["verify", str(repo), "--start", "--json", *windows],
                                work / f"verify_{slug}.log", record)
                if proc.returncode not in (0, 3):
                    raise SystemExit(f"verify failed (exit {proc.returncode}); see {work}/verify_{slug}.log")
                report = json.loads(proc.stdout)
                (work / f"verify_{slug}.json").write_text(json.dumps(report, indent=2))
                plan_rows += _plan_rows(run, label, example, report, proc.returncode, load)
    return plan_rows, profile_rows, record


def _plan_rows(run: int, label: str, example: str, report: dict, code: int, load: float) -> list[dict]:
    end = report["end_to_end"]
    rows = []
    for m in report["models"]:
        e, x = m["expected"], m["measured"]
        rows.append({"run": run, "plan": label, "problem": f"examples/{example}", "model": e["model"],
                     "instances": e["instances"], "batch_size": e["batch_size"],
                     "pred_throughput_rps": e["throughput_rps"], "throughput_rps": x["throughput_rps"],
                     "throughput_error": m["throughput_error"], "pred_batch_ms": e["batch_latency_ms"],
                     "server_compute_ms": x["server_compute_ms"], "batch_latency_error": m["batch_latency_error"],
                     "pred_p50_ms": e["latency_ms"], "p50_ms": x["latency_p50_ms"], "p99_ms": x["latency_p99_ms"],
                     "latency_slo_ms": e["latency_slo_ms"], "server_batch": x["server_batch_avg"],
                     "stable": int(x["stable"]), "requested_images": end["requested_images"],
                     "projected_s": end["projected_s"], "deadline_s": end["deadline_s"],
                     "deadline_met": end["deadline_met"], "holds": report["holds"], "exit": code,
                     "load_avg": round(load, 1)})
    return rows


def _write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.mean(values) if len(values) > 1 else 0.0


def markdown(plan_rows: list[dict], profile_rows: list[dict]) -> str:
    """The two tables of docs/verify.md: predicted vs measured per run and plan; the profiles' spread."""
    lines = ["| plan | run | inst. | batch | pred. items/s | measured | err | pred. batch ms | Triton compute ms "
             "| pred. p50 | p50 | p99 | server batch | deadline (projected / limit) | holds (exit) | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in plan_rows:
        deadline = (f"{r['projected_s']:.1f} s / {r['deadline_s']:g} s" if r["projected_s"] is not None else
                    f"- / {r['deadline_s']:g} s")
        lines.append(
            f"| {r['plan']} | {r['run']} | {r['instances']} | {r['batch_size']} | {r['pred_throughput_rps']:.0f} | "
            f"{r['throughput_rps']:.0f} | {r['throughput_error']:+.0%} | {r['pred_batch_ms']:.2f} | "
            f"{r['server_compute_ms']:.2f} | {r['pred_p50_ms']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['server_batch'] or 0:.1f} | {deadline} | {'yes' if r['holds'] else 'no'} ({r['exit']}) | "
            f"{float(r['load_avg']):.1f} |")
    lines += ["", "| model | batch | throughput per run (items/s) | spread | latency_ms per run (ms) | spread | "
              "largest in-run spread |", "|---|---|---|---|---|---|---|"]
    points = sorted({(r["model"], r["batch_size"]) for r in profile_rows})
    for model, batch in points:
        rs = [r for r in profile_rows if (r["model"], r["batch_size"]) == (model, batch)]
        tp = [r["throughput_rps"] for r in rs]
        lat = [r["latency_ms"] for r in rs]
        lines.append(f"| {model} | {batch} | {', '.join(f'{v:.0f}' for v in tp)} | {_spread(tp):.0%} | "
                     f"{', '.join(f'{v:.2f}' for v in lat)} | {_spread(lat):.0%} | "
                     f"{max(r['throughput_spread'] for r in rs):.0%} |")
    return "\n".join(lines)


def plot(plan_rows: list[dict], profile_rows: list[dict], path: Path) -> Path:
    """Left: measured against predicted throughput per run and plan, with the +-25 % band of verify's default
    tolerance; right: each profiled point's throughput in each run, relative to the point's mean over the runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    top = max(max(r["pred_throughput_rps"], r["throughput_rps"]) for r in plan_rows) * 1.2
    low = min(min(r["pred_throughput_rps"], r["throughput_rps"]) for r in plan_rows) / 1.2
    line = [low, top]
    left.plot(line, line, color="black", lw=1)
    left.fill_between(line, [v * 0.75 for v in line], [v * 1.25 for v in line], color="grey", alpha=0.2,
                      label="within 25 %")
    for label in dict.fromkeys(r["plan"] for r in plan_rows):
        rs = [r for r in plan_rows if r["plan"] == label]
        left.scatter([r["pred_throughput_rps"] for r in rs], [r["throughput_rps"] for r in rs], label=label)
    left.set(xscale="log", yscale="log", xlabel="predicted items/s", ylabel="measured items/s (verify)",
             title="plans: predicted vs measured")
    left.legend(fontsize=8)
    points = sorted({(r["model"], r["batch_size"]) for r in profile_rows})
    for i, (model, batch) in enumerate(points):
        rs = [r for r in profile_rows if (r["model"], r["batch_size"]) == (model, batch)]
        mean = statistics.mean(r["throughput_rps"] for r in rs)
        right.scatter([i] * len(rs), [r["throughput_rps"] / mean for r in rs], color="C0")
    right.axhspan(0.75, 1.25, color="grey", alpha=0.2)
    right.set_xticks(range(len(points)), [f"{m} b={b}" for m, b in points], fontsize=7, rotation=30, ha="right")
    right.set(ylabel="throughput / mean over runs", title="profiles: run-to-run spread")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _read_csv(path: Path) -> list[dict]:
    def value(text: str):
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return {"True": True, "False": False, "": None}.get(text, text)

    with path.open(newline="") as fh:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="repetitions (default 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="the text model only, 2 batch sizes, short windows")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a new temporary folder)")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder of onnx_chain.csv and onnx_chain_profiles.csv (default benchmarks/results; "
                        "with --quick the work folder)")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "onnx_chain.png",
                        help="PNG of predicted vs measured and of the profiles' spread (not written by --quick)")
    parser.add_argument("--replot", action="store_true", help="only print the tables and write the PNG from the "
                        "CSVs in --results")
    args = parser.parse_args(argv)
    if args.replot:
        args.results = args.results or ROOT / "benchmarks" / "results"
        plan_rows = _read_csv(args.results / "onnx_chain.csv")
        profile_rows = _read_csv(args.results / "onnx_chain_profiles.csv")
        print(markdown(plan_rows, profile_rows))
        plot(plan_rows, profile_rows, args.plot)
        return 0
    runs = args.runs or (1 if args.quick else 3)
    if args.out is None:
        import tempfile

        args.out = Path(tempfile.mkdtemp(prefix="servopt-onnx-chain-"))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.results is None:  # a quick run never replaces the committed results
        args.results = args.out if args.quick else ROOT / "benchmarks" / "results"
    plan_rows, profile_rows, record = run_chain(args.out, runs=runs, quick=args.quick)
    (args.out / "chain.json").write_text(json.dumps(record, indent=2))
    _write_csv(plan_rows, args.results / "onnx_chain.csv")
    _write_csv(profile_rows, args.results / "onnx_chain_profiles.csv")
    print(markdown(plan_rows, profile_rows))
    if not args.quick:
        plot(plan_rows, profile_rows, args.plot)
    print(f"\nwork folder {args.out}; results in {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
