"""Simulator speed (simulated seconds per wall second) and its validation against M/D/1 queueing theory.

    python benchmarks/bench_simulate.py              # an hour at 300 RPS per scenario, 3 repeats
    python benchmarks/bench_simulate.py --quick      # 10 minutes, 1 repeat, into a new temporary folder

Writes ``simulate.csv`` (speed per scenario: requests, batches, median wall time, simulated seconds per wall
second, requests per wall second), ``simulate_md1.csv`` (mean waiting time of one server with deterministic
service against W_q = rho / (2 mu (1 - rho)), for several utilisations) and ``simulate.png`` under ``--out``
(default ``benchmarks/results/``), with a copy of the PNG in ``--img-dir`` (default ``docs/img/``). ``--quick``
writes to a new temporary folder (named on stderr) and makes no copy, unless ``--out`` / ``--img-dir`` are given.

Scenarios (each at 300 RPS, Poisson arrivals, one hour):

- ``md1``: batch 1, one replica, rho 0.8: the vectorised Lindley recursion;
- ``variant_20_cores``: batch 1, 20 per-core servers (InfAdapter's pod on 20 cores), rho 0.8: vectorised;
- ``batch8_2_replicas``: dynamic batching, batch 8, 5 ms queue delay, 2 replicas: the event loop (per batch);
- ``batch1_overload_drops``: batch 1, one replica at rho 1.2 with drops at the 200 ms SLO: the event loop
  (per request; the vectorised path gives way when a request misses its deadline);
- ``pipeline_2_stages``: two stages in series, batch 4 and batch 1 with 3 replicas: the event loop per stage.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import image_dir, output_dir  # noqa: E402

from servopt.serving.simulate import SimulatedDeployment, ServerPool, simulate  # noqa: E402

RATE = 300.0


def scenarios() -> dict[str, tuple[SimulatedDeployment, float | None]]:
    """name -> (deployment, drop timeout in ms or None)."""
    return {
        "md1": (SimulatedDeployment.parallel([ServerPool("m", latency_s=0.8 / RATE)], slo_ms=1000), None),
        "variant_20_cores": (SimulatedDeployment.parallel(
            [ServerPool("r", latency_s=20 * 0.8 / RATE, replicas=20, cores=1)], slo_ms=750), None),
        "batch8_2_replicas": (SimulatedDeployment.parallel(
            [ServerPool("b", latency_s={1: 0.010, 8: 0.040}, batch_size=8, max_queue_delay_s=0.005, replicas=2)],
            slo_ms=200), None),
        "batch1_overload_drops": (SimulatedDeployment.parallel([ServerPool("m", latency_s=1.2 / RATE)], slo_ms=200), 200.0),
        "pipeline_2_stages": (SimulatedDeployment.series([
            ServerPool("detect", latency_s={1: 0.012, 4: 0.030}, batch_size=4, max_queue_delay_s=0.01, replicas=2),
            ServerPool("classify", latency_s=0.008, replicas=3),
        ], slo_ms=500), None),
    }


def bench_speed(duration: int, repeats: int) -> list[dict[str, object]]:
    rows = []
    rates = np.full(duration, RATE)
    for name, (dep, timeout) in scenarios().items():
        walls = []
        for k in range(repeats):
            t0 = time.perf_counter()
            rep = simulate(dep, rates, seed=k, timeout_ms=timeout)
            walls.append(time.perf_counter() - t0)
        wall = statistics.median(walls)
        rows.append({
            "scenario": name, "simulated_s": duration, "rps": RATE, "requests": rep.requests,
            "dropped": rep.dropped, "wall_s_median": round(wall, 4),
            "simulated_s_per_wall_s": round(duration / wall, 1), "requests_per_wall_s": round(rep.requests / wall),
            "p99_ms": round(rep.p99_ms, 3),
        })
        print(f"{name:24s} {rep.requests:>9d} requests  {wall:7.3f} s  {duration / wall:9.0f} sim-s/s")
    return rows


def bench_md1(duration: int) -> list[dict[str, object]]:
    rows = []
    for rho in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95):
        service = rho / RATE
        mu = 1.0 / service
        theory = rho / (2.0 * mu * (1.0 - rho))
        rep = simulate(SimulatedDeployment.parallel([ServerPool("m", latency_s=service)], slo_ms=10_000),
                       np.full(duration, RATE), seed=11, timeout_ms=None)
        measured = rep.mean_ms / 1000.0 - service
        rows.append({
            "rho": rho, "requests": rep.requests, "theory_wq_ms": round(theory * 1000, 5),
            "simulated_wq_ms": round(measured * 1000, 5), "relative_error": round((measured - theory) / theory, 5),
        })
        print(f"rho {rho:.2f}: W_q theory {theory * 1000:8.4f} ms, simulated {measured * 1000:8.4f} ms "
              f"({100 * (measured - theory) / theory:+.2f} %)")
    return rows


def write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def plot(speed: list[dict[str, object]], md1: list[dict[str, object]], paths: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = [str(r["scenario"]) for r in speed]
    a.barh(names, [float(r["simulated_s_per_wall_s"]) for r in speed], color="tab:blue")
    a.set_xlabel(f"simulated seconds per wall second ({RATE:g} RPS)")
    a.set_title("simulator speed")
    rho = [float(r["rho"]) for r in md1]
    grid = np.linspace(0.2, 0.96, 100)
    a_mu = RATE / grid
    b.plot(grid, 1000 * grid / (2 * a_mu * (1 - grid)), "k-", label="M/D/1 theory")
    b.plot(rho, [float(r["simulated_wq_ms"]) for r in md1], "o", color="tab:red", label="simulated")
    b.set_yscale("log")
    b.set_xlabel("utilisation rho")
    b.set_ylabel("mean waiting time W_q (ms)")
    b.set_title(f"M/D/1 at {RATE:g} RPS")
    b.legend()
    fig.tight_layout()
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 simulated minutes, one repeat")
    parser.add_argument("--out", type=Path, default=None, help="folder for the CSVs and the PNG (default "
                        "benchmarks/results; with --quick a new temporary folder)")
    parser.add_argument("--img-dir", type=Path, default=None,
                        help="folder for a copy of the PNG (default docs/img; none with --quick)")
    args = parser.parse_args(argv)
    out = output_dir(args.out, quick=args.quick, name="bench_simulate")
    img = image_dir(args.img_dir, quick=args.quick)
    duration, repeats = (600, 1) if args.quick else (3600, 3)
    speed = bench_speed(duration, repeats)
    md1 = bench_md1(duration)
    write_csv(out / "simulate.csv", speed)
    write_csv(out / "simulate_md1.csv", md1)
    plot(speed, md1, [out / "simulate.png"] + ([] if img is None else [img / "simulate.png"]))
    print(f"wrote {out / 'simulate.csv'}, {out / 'simulate_md1.csv'} and {out / 'simulate.png'}"
          + ("" if img is None else f" (copy in {img})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
