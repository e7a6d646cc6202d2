"""Simulator core (queueing theory, batching rules checked independently), trace readers, plan wiring, CLI."""

from __future__ import annotations

import bz2
import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import servopt
from servopt.exceptions import ValidationError
from servopt.serving.simulate import (
    SimulatedDeployment,
    ServerPool,
    _lindley,
    _serve_batches,
    poisson_arrivals,
    simulate,
    simulate_schedule,
)
from servopt.serving.traces import as_trace, read_trace

INF_WINDOW = "infadapter/twitter_window_day15_min82-103_per_second.txt"
IPA_SLICES = {  # name -> (start, end) in the full trace, damping 8 (IPA's experiment configs)
    "bursty": (1301160, 1302360),
    "steady_low": (1299600, 1300800),
    "steady_high": (1768800, 1769400),
    "fluctuating": (1301400, 1302000),
}


# ------------------------------------------------------------------------------------------ queueing theory
@pytest.mark.parametrize("rho", [0.5, 0.8, 0.9])
def test_md1_mean_wait_matches_theory(rho: float) -> None:
    """M/D/1: W_q = rho / (2 mu (1 - rho)); one hour at 300 RPS, batch 1, one replica, within 5 %."""
    lam = 300.0
    service = rho / lam
    mu = 1.0 / service
    theory = rho / (2.0 * mu * (1.0 - rho))
    pool = ServerPool("m", latency_s=service)
    rep = simulate(SimulatedDeployment.parallel([pool], slo_ms=10_000), np.full(3600, lam), seed=7, timeout_ms=None)
    assert rep.requests > 1_000_000 and rep.dropped == 0
    measured = rep.mean_ms / 1000.0 - service
    assert measured == pytest.approx(theory, rel=0.05)


def test_md1_utilisation_and_served_count() -> None:
    rep = simulate(SimulatedDeployment.parallel([ServerPool("m", latency_s=0.002)], slo_ms=1000), np.full(600, 200.0),
                   seed=3, timeout_ms=None)
    assert rep.requests == rep.served
    assert rep.requests == pytest.approx(120_000, rel=0.01)  # Poisson counts follow the rate
    assert rep.p50_ms >= 2.0 and rep.p99_ms >= rep.p50_ms


@pytest.mark.parametrize("replicas", [1, 3, 8])
def test_vectorised_lindley_equals_event_loop(replicas: int) -> None:
    rng = np.random.default_rng(replicas)
    t = poisson_arrivals(np.full(200, 250.0), rng)
    d = 0.9 * replicas / 250.0
    vec = _lindley(t, d, replicas)
    loop, fin, _ = _serve_batches(t, None, 1, 0.0, np.array([0.0, d]), replicas)
    np.testing.assert_allclose(vec, loop, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fin - loop, d)


def test_more_replicas_wait_less() -> None:
    rates = np.full(300, 300.0)
    waits = []
    for c in (2, 4, 8):
        pool = ServerPool("m", latency_s=0.8 * c / 300.0, replicas=c)  # same utilisation 0.8
        rep = simulate(SimulatedDeployment.parallel([pool], slo_ms=1000), rates, seed=1, timeout_ms=None)
        waits.append(rep.mean_ms - pool.latency_s * 1000.0)
    assert waits[0] > waits[1] > waits[2] > 0


# ------------------------------------------------------------------------------------------ dynamic batching
def _one(pool: ServerPool, arrivals: list[float], slo_ms: float = 10_000, timeout_ms=None):
    arr = np.asarray(arrivals, dtype=float)
    dep = SimulatedDeployment.parallel([pool], slo_ms=slo_ms)
    return simulate_schedule([(0.0, dep)], np.zeros(int(arr.max()) + 1), arrivals=arr, timeout_ms=timeout_ms)


def test_batch_waits_for_queue_delay_then_runs_partial() -> None:
    pool = ServerPool("b", latency_s={1: 0.1, 4: 0.16}, batch_size=4, max_queue_delay_s=0.005)
    rep = _one(pool, [0.0])
    assert rep.latency_s[0] == pytest.approx(0.005 + 0.1)


def test_full_batch_starts_at_once_and_next_waits_for_server() -> None:
    pool = ServerPool("b", latency_s={1: 0.1, 2: 0.15}, batch_size=2, max_queue_delay_s=0.01)
    rep = _one(pool, [0.0, 0.001, 0.002])
    # requests 0 and 1 fill a batch at 0.001 and finish at 0.151; request 2 runs alone when the server frees
    np.testing.assert_allclose(rep.arrival_s + rep.latency_s, [0.151, 0.151, 0.251])


def test_partial_batch_interpolates_profiled_latency() -> None:
    pool = ServerPool("b", latency_s={1: 0.010, 8: 0.080}, batch_size=8)
    np.testing.assert_allclose(pool.batch_latencies()[1:], np.linspace(0.010, 0.080, 8))
    floor = ServerPool("b", latency_s={4: 0.04, 8: 0.06}, batch_size=8)
    assert floor.batch_latencies()[1] == pytest.approx(0.04)  # below the smallest point: its latency


def _batches(start: np.ndarray, finish: np.ndarray, batch_of: np.ndarray) -> list[tuple[float, float, list[int]]]:
    out: dict[int, list[int]] = {}
    for i, k in enumerate(batch_of):
        out.setdefault(int(k), []).append(i)
    for idx in out.values():  # every member of a batch starts and ends together
        assert len({start[i] for i in idx}) == 1 and len({finish[i] for i in idx}) == 1
    return sorted((start[idx[0]], finish[idx[0]], idx) for idx in out.values())


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 0.05), min_size=1, max_size=60),
    batch=st.integers(1, 6),
    replicas=st.integers(1, 3),
    delay=st.floats(0.0, 0.03),
)
def test_batching_rules_hold_on_random_arrivals(gaps, batch, replicas, delay) -> None:
    """An independent checker of the dynamic-batching rules on the event loop's schedule."""
    t = np.cumsum(gaps)
    lat = np.concatenate(([0.0], 0.02 + 0.01 * np.arange(1, batch + 1)))
    start, finish, batch_of = _serve_batches(t, None, batch, delay, lat, replicas)
    assert not np.isnan(start).any()
    assert np.all(start >= t - 1e-12)
    assert np.all(np.diff(start) >= -1e-12)  # FIFO
    batches = _batches(start, finish, batch_of)
    finishes = sorted(f for _, f, _ in batches)
    n = t.size
    for s, f, idx in batches:
        assert len(idx) <= batch
        assert f == pytest.approx(s + lat[len(idx)])
        assert idx == list(range(idx[0], idx[-1] + 1))  # a batch is consecutive requests
        assert sum(1 for s2, f2, _ in batches if s2 <= s < f2) <= replicas  # never more batches than servers
        # ready: the batch is full, or its oldest request has waited the delay
        h = idx[0]
        full_at = t[h + batch - 1] if h + batch - 1 < n else math.inf
        ready = min(full_at, t[h] + delay)
        assert s >= ready - 1e-12
        if s > ready + 1e-12:  # started late: every server was busy until one finished at s
            assert any(abs(s - g) < 1e-12 for g in finishes)
            busy = sum(1 for s2, f2, _ in batches if s2 < s and f2 >= s - 1e-12)
            assert busy >= replicas
        # the batch takes everything queued at its start, up to the batch size
        nxt = idx[-1] + 1
        assert len(idx) == batch or nxt >= n or t[nxt] > s


# ------------------------------------------------------------------------------------------ drops, routing, schedules
def test_overload_drops_at_the_deadline_and_sheds_the_queue() -> None:
    pool = ServerPool("m", latency_s=0.01)  # capacity 100 RPS, offered 200
    dep = SimulatedDeployment.parallel([pool], slo_ms=200)
    shed = simulate(dep, np.full(120, 200.0), seed=2)
    assert shed.dropped > 0.4 * shed.requests
    assert np.nanmax(shed.latency_s) <= 0.2 + 0.01 + 1e-9
    # under overload the queue stays full: served requests waited close to the deadline, so they are late too
    late = np.count_nonzero(shed.latency_s * 1000 > 200)
    assert shed.slo_violation_rate == pytest.approx((shed.dropped + late) / shed.requests)
    unbounded = simulate(dep, np.full(120, 200.0), seed=2, timeout_ms=None)
    assert unbounded.dropped == 0 and unbounded.p99_ms > 10_000  # the queue grows without bound


def test_series_latency_adds_up_and_accuracy_combines() -> None:
    a = ServerPool("a", latency_s=0.010, accuracy=0.5)
    b = ServerPool("b", latency_s=0.020, accuracy=0.8)
    arr = [0.0, 1.0, 2.0]
    for mode, acc in (("average", 0.65), ("sum", 1.3), ("product", 0.4)):
        dep = SimulatedDeployment.series([a, b], slo_ms=100, accuracy=mode)
        rep = simulate_schedule([(0.0, dep)], np.zeros(3), arrivals=np.array(arr))
        np.testing.assert_allclose(rep.latency_s, 0.030)
        assert rep.average_accuracy == pytest.approx(acc)


def test_routing_follows_weights() -> None:
    low = ServerPool("low", latency_s=0.001, accuracy=0.0)
    high = ServerPool("high", latency_s=0.001, accuracy=1.0)
    rep = simulate(SimulatedDeployment.parallel([low, high], [1.0, 3.0], slo_ms=100), np.full(200, 100.0), seed=4)
    assert rep.average_accuracy == pytest.approx(0.75, abs=0.01)


def test_identical_segments_continue_the_same_pools() -> None:
    pool = ServerPool("m", latency_s=0.004, replicas=2, cores=3)
    dep = SimulatedDeployment.parallel([pool], slo_ms=50)
    rates = np.full(100, 400.0)
    one = simulate_schedule([(0.0, dep)], rates, seed=5)
    two = simulate_schedule([(0.0, dep), (37.5, dep)], rates, seed=5)
    np.testing.assert_array_equal(one.latency_s, two.latency_s)
    assert one.core_seconds == two.core_seconds == pytest.approx(6 * 100)


def test_changed_pool_starts_empty_and_cost_follows_schedule() -> None:
    small = SimulatedDeployment.parallel([ServerPool("m", latency_s=0.01, cores=1)], slo_ms=100)
    big = SimulatedDeployment.parallel([ServerPool("m", latency_s=0.01, replicas=4, cores=1)], slo_ms=100)
    rates = np.concatenate((np.full(60, 50.0), np.full(60, 300.0)))
    static = simulate_schedule([(0.0, small)], rates, seed=1)
    adapted = simulate_schedule([(0.0, small), (60.0, big)], rates, seed=1)
    assert adapted.core_seconds == pytest.approx(60 * 1 + 60 * 4)
    assert adapted.slo_violation_rate < 0.01 < static.slo_violation_rate


def test_report_dict_is_the_cli_contract() -> None:
    rep = simulate(SimulatedDeployment.parallel([ServerPool("m", latency_s=0.01, cores=2, accuracy=0.7)], slo_ms=100),
                   [10, 20, 30], seed=0)
    d = rep.to_dict()
    assert list(d) == ["mean_ms", "p50_ms", "p99_ms", "slo_violation_rate", "served", "dropped",
                       "average_accuracy", "core_seconds"]
    assert d["core_seconds"] == 6.0 and d["average_accuracy"] == pytest.approx(0.7)
    json.dumps(d)
    empty = simulate(SimulatedDeployment.parallel([ServerPool("m", latency_s=0.01)], slo_ms=100), [0, 0], seed=0)
    assert empty.to_dict()["p99_ms"] is None and empty.served == 0


def test_servopt_simulate_is_callable_after_importing_the_module() -> None:
    import servopt.serving.simulate as module  # binds the module to the package attribute

    assert module is not None
    rep = servopt.simulate(SimulatedDeployment.parallel([ServerPool("m", latency_s=0.01)], slo_ms=100), [5, 5])
    assert rep.requests >= 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"replicas": 0}, "replicas"),
        ({"batch_size": 16, "latency_s": {1: 0.1, 8: 0.2}}, "largest profiled batch size 8"),
        ({"latency_s": -1.0}, "finite and > 0"),
        ({"max_queue_delay_s": float("nan")}, "max_queue_delay_s"),
        ({"latency_s": "fast"}, "expected seconds"),
    ],
)
def test_bad_pool_is_rejected(kwargs, match) -> None:
    args = {"name": "p", "latency_s": 0.1} | kwargs
    with pytest.raises(ValidationError, match=match):
        ServerPool(**args)


def test_bad_schedule_and_missing_slo_are_rejected() -> None:
    dep = SimulatedDeployment.parallel([ServerPool("m", latency_s=0.01)])
    with pytest.raises(ValidationError, match="no latency SLO"):
        simulate(dep, [1, 2])
    with pytest.raises(ValidationError, match="begin at 0"):
        simulate_schedule([(5.0, dep)], [1, 2], slo_ms=10)
    with pytest.raises(ValidationError, match="routing weights"):
        SimulatedDeployment.parallel([ServerPool("m", latency_s=0.01)], [0.0])


# ------------------------------------------------------------------------------------------ traces
def test_infadapter_window_reads(reference_data: Path) -> None:
    tr = read_trace(reference_data / INF_WINDOW)
    assert tr.duration_s == 21 * 60
    assert tr.rps.sum() == 121_697 and tr.rps.min() == 27 and tr.rps.max() == 274


@pytest.mark.parametrize("name, length, lo, hi, mean", [
    ("bursty", 1200, 3, 34, 12.0), ("steady_low", 1200, 3, 8, 5.1), ("steady_high", 600, 23, 34, 28.8),
    ("fluctuating", 600, 3, 34, 18.7),
])
def test_ipa_windows_read(reference_data: Path, name, length, lo, hi, mean) -> None:
    tr = read_trace(reference_data / "ipa" / "traces" / f"twitter_slice_{name}_damping8.csv")
    assert (tr.duration_s, tr.rps.min(), tr.rps.max()) == (length, lo, hi)
    assert tr.rps.mean() == pytest.approx(mean, abs=0.05)


@pytest.mark.slow
def test_full_twitter_trace_slices_reproduce_both_windows(reference_data: Path) -> None:
    """The compressed 22-day trace is read in memory (never extracted) and sliced as IPA and InfAdapter do."""
    full = read_trace(reference_data / "twitter_workload_2021-08.tbz2")
    assert full.duration_s == 1_899_061 and full.rps.max() == 388
    assert full.rps.mean() == pytest.approx(63.6, abs=0.05)
    day = 86_400
    np.testing.assert_array_equal(full.rps[15 * day + 82 * 60: 15 * day + 103 * 60],
                                  read_trace(reference_data / INF_WINDOW).rps)
    for name, (a, b) in IPA_SLICES.items():
        ipa = read_trace(reference_data / "ipa" / "traces" / f"twitter_slice_{name}_damping8.csv")
        np.testing.assert_array_equal(np.floor(full.rps[a:b] / 8), ipa.rps)


def test_trace_archive_is_read_in_memory(tmp_path: Path) -> None:
    data = b"1 2\n3\n"
    path = tmp_path / "w.tbz2"
    with tarfile.open(path, "w:bz2") as tar:
        info = tarfile.TarInfo("workload.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tr = read_trace(path, start=1, damping=2)
    np.testing.assert_array_equal(tr.rps, [1.0, 1.0])
    (tmp_path / "w.txt.bz2").write_bytes(bz2.compress(data))
    np.testing.assert_array_equal(read_trace(tmp_path / "w.txt.bz2").rps, [1, 2, 3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.tbz2", "w.txt.bz2"]  # nothing extracted


@pytest.mark.parametrize("name, text, match", [
    ("a.txt", "1 2\n3 x 4\n", r"line 2, value #4: 'x' is not a number"),
    ("b.txt", "1 -2\n", r"line 1, value #2: request rate -2.0 is not allowed"),
    ("c.txt", "\n", "no values"),
    ("d.csv", "second,rps\n0,1\n1,abc\n", r"row 3, column 'rps': 'abc' is not a number"),
    ("e.csv", "a,b,c\n1,2,3\n", "cannot tell which column"),
    ("f.csv", "second,rps\n0,nan\n", r"row 2, column 'rps': request rate nan"),
])
def test_bad_traces_are_rejected_with_location(tmp_path: Path, name, text, match) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValidationError, match=match) as info:
        read_trace(path)
    assert str(path) in str(info.value)


def test_trace_slice_and_column_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("minute,max_rps\n0,54\n1,62\n")
    assert read_trace(path, column="max_rps").rps.tolist() == [54] * 60 + [62] * 60  # each minute's rate, held
    with pytest.raises(ValidationError, match="no column 'rps'"):
        read_trace(path, column="rps")
    with pytest.raises(ValidationError, match="outside the trace"):
        read_trace(path, column="max_rps", start=1, end=500)
    with pytest.raises(ValidationError, match="cannot tell which column"):
        read_trace(path)  # a per-minute file is not taken for a per-second trace
    with pytest.raises(ValidationError, match="no such trace file"):
        read_trace(tmp_path / "missing.txt")
    with pytest.raises(ValidationError, match="one-dimensional"):
        as_trace([[1, 2]])
    assert math.isclose(as_trace([1, 2]).scaled(2).rps.sum(), 6)


# ------------------------------------------------------------------------------------------ plans -> deployments
@pytest.fixture(scope="module")
def examples(root: Path) -> Path:
    return root / "examples"


def test_variant_selection_plan_becomes_per_core_servers(examples: Path) -> None:
    from servopt.serving.simulate import deployment_from_plan

    problem = servopt.load_problem(examples / "variant_selection_infadapter_fit.yaml").update(workload_rps=200.0)
    plan = servopt.solve(problem).plan
    dep = deployment_from_plan(problem, plan, slo_ms=750)
    loaded = [v for v in plan.variants if v.cores > 0]
    assert [p.name for p in dep.stages[0]] == [v.name for v in loaded]
    caps = {v.name: v.capacity for v in problem.variants}
    for pool, v, w in zip(dep.stages[0], loaded, dep.weights[0]):
        assert pool.replicas == v.cores and pool.cores == 1
        assert pool.latency_s == pytest.approx(v.cores * 0.8 / caps[v.name][v.cores])
        assert pool.capacity_rps == pytest.approx(caps[v.name][v.cores] / 0.8)
        assert w == pytest.approx(v.rps)
    assert dep.cores == plan.cores
    single = deployment_from_plan(problem, plan, slo_ms=750, servers="single")
    assert all(p.replicas == 1 for p in single.stages[0])
    # served at the planned load, the plan meets the SLO; accuracy is the plan's
    rep = simulate(dep, np.full(300, 200.0), seed=3)
    assert rep.slo_violation_rate < 0.001
    assert rep.average_accuracy == pytest.approx(plan.average_accuracy, abs=0.005)
    assert rep.core_seconds == pytest.approx(plan.cores * 300)


def test_pipeline_plan_becomes_stages_in_series(examples: Path) -> None:
    from servopt.serving.simulate import deployment_from_plan

    problem = servopt.load_problem(examples / "pipeline_video.yaml")
    plan = servopt.solve(problem).plan
    dep = deployment_from_plan(problem, plan)
    assert dep.slo_ms == problem.sla_ms and dep.accuracy == problem.accuracy
    for (pool,), sp in zip(dep.stages, plan.stages):
        assert (pool.replicas, pool.batch_size) == (sp.replicas, sp.batch_size)
        assert pool.max_queue_delay_s == pytest.approx(sp.queue_ms / 1000.0)
        assert pool.batch_latencies()[sp.batch_size] == pytest.approx(sp.latency_ms / 1000.0)
    rep = simulate(problem, np.full(300, problem.workload_rps), seed=2)
    assert rep.average_accuracy == pytest.approx(plan.accuracy)
    assert rep.slo_violation_rate < 0.01
    assert rep.core_seconds == pytest.approx(plan.cores * 300)


def test_simulating_a_plan_needs_its_problem(examples: Path) -> None:
    problem = servopt.load_problem(examples / "pipeline_video.yaml")
    solution = servopt.solve(problem)
    with pytest.raises(ValidationError, match="pass problem="):
        simulate(solution, [5, 5])
    assert simulate(solution, [5, 5], problem=problem).requests >= 0
    gpu = servopt.load_problem(examples / "min_gpus_efficientnet.yaml")
    with pytest.raises(ValidationError, match="batch jobs"):
        simulate(gpu, [5, 5])


# ------------------------------------------------------------------------------------------ CLI
def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from servopt.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_simulate_json(capsys, examples: Path, reference_data: Path) -> None:
    trace = reference_data / "ipa" / "traces" / "twitter_slice_steady_high_damping8.csv"
    code, out, err = _cli(capsys, "simulate", str(examples / "pipeline_video.yaml"), "--trace", str(trace),
                          "--seed", "3", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert list(d) == ["mean_ms", "p50_ms", "p99_ms", "slo_violation_rate", "served", "dropped",
                       "average_accuracy", "core_seconds"]
    assert d["served"] + d["dropped"] == pytest.approx(trace_sum(trace), rel=0.05)
    code2, out2, _ = _cli(capsys, "simulate", str(examples / "pipeline_video.yaml"), "--trace", str(trace),
                          "--seed", "3", "--json")
    assert out2 == out  # the seed fixes the result
    code3, out3, _ = _cli(capsys, "simulate", str(examples / "pipeline_video.yaml"), "--trace", str(trace))
    assert code3 == 0 and "slo_violation_rate" in out3 and "detect:" in out3


def trace_sum(path: Path) -> float:
    return float(read_trace(path).rps.sum())


def test_cli_simulate_variant_selection_needs_an_slo(capsys, examples: Path, reference_data: Path) -> None:
    problem = str(examples / "variant_selection_infadapter_fit.yaml")
    trace = str(reference_data / INF_WINDOW)
    code, out, err = _cli(capsys, "simulate", problem, "--trace", trace, "--json")
    assert code == 2 and "--slo-ms" in err and "Traceback" not in err
    code, out, err = _cli(capsys, "simulate", problem, "--trace", trace, "--slo-ms", "750", "--json",
                          "--trace-end", "120")
    assert code == 0 and json.loads(out)["served"] > 0


def test_cli_simulate_errors(capsys, tmp_path: Path, examples: Path, reference_data: Path) -> None:
    trace = str(reference_data / INF_WINDOW)
    code, _, err = _cli(capsys, "simulate", str(examples / "min_gpus_efficientnet.yaml"), "--trace", trace)
    assert code == 2 and "batch job" in err
    code, _, err = _cli(capsys, "simulate", str(examples / "pipeline_video.yaml"), "--trace",
                        str(tmp_path / "none.txt"))
    assert code == 2 and "no such trace file" in err
    code, _, err = _cli(capsys, "simulate", str(examples / "pipeline_video.yaml"), "--trace", trace,
                        "--timeout-ms", "soon")
    assert code == 2 and "--timeout-ms" in err
    text = (examples / "pipeline_video.yaml").read_text().replace("workload_rps: 20", "workload_rps: 100000")
    text = text.replace("model_file: models/", f"model_file: {examples}/models/")  # relative to the example
    (tmp_path / "p.yaml").write_text(text)
    code, _, err = _cli(capsys, "simulate", str(tmp_path / "p.yaml"), "--trace", trace)
    assert code == 1 and "no plan" in err
