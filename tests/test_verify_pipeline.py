"""``servopt verify`` for pipeline and variant_selection plans, and trace replay (servopt/serving/verify_rate.py,
verify_drive.py, verify_report.py, traces.py: rate_segments, poisson_arrivals).

Unit tests build the plan from a repository written by ``servopt solve --out`` and feed the verdict crafted
replays (:class:`RateRun`), so holds / does not hold, over_slo and the exit codes are checked exactly. The
``triton`` tests run the real CPU tritonserver: the shipped examples/pipeline_video.yaml and a two-variant
variant_selection plan, solved, written and verified with timed stand-ins (a few seconds of load each).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from servopt.cli import main
from servopt.exceptions import ValidationError
from servopt.serving import verify_rate
from servopt.serving.verify_report import analyze
from servopt.serving.traces import as_trace, poisson_arrivals, rate_segments
from servopt.serving.verify_drive import RateRun, ServerCounters

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = """problem: variant_selection
workload_rps: 60
core_budget: 4
alpha: 1.0
beta: 0.05
gamma: 0.001
triton:
  backend: python
  inputs: [{name: INPUT0, data_type: FP32, dims: [4]}]
  outputs: [{name: OUTPUT0, data_type: FP32, dims: [4]}]
variants:
  - {name: small, accuracy: 0.70, load_time_s: 1, min_cores: 1, max_cores: 4, capacity: {1: 40, 2: 80, 3: 120, 4: 160}}
  - {name: large, accuracy: 0.78, load_time_s: 1, min_cores: 1, max_cores: 4, capacity: {1: 10, 2: 20, 3: 30, 4: 40}}
"""


def _write(tmp_path: Path, problem_path: Path, name: str) -> Path:
    """``servopt solve FILE --out DIR --triton-backend python``: the repository with its predictions."""
    out = tmp_path / name
    assert main(["solve", str(problem_path), "--out", str(out), "--triton-backend", "python"]) == 0
    return out


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("pipe"), ROOT / "examples" / "pipeline_video.yaml", "pv")


@pytest.fixture(scope="module")
def variants_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("variants")
    (tmp / "vs.yaml").write_text(VARIANTS)
    return _write(tmp, tmp / "vs.yaml", "vs")


def _plan(repo: Path, **kw: object) -> verify_rate.RatePlan:
    from servopt.serving.verify import load_summary

    return verify_rate.rate_plan(load_summary(repo), repo, **kw)


def _run(latencies_ms: list[float], *, span: float = 10.0, targets: list[str], target: list[int] | None = None,
         counters: dict[str, ServerCounters] | None = None) -> RateRun:
    """A replay whose requests are evenly spread over [0, span), each with the given latency (NaN: failed)."""
    n = len(latencies_ms)
    sent = np.arange(n) * span / n
    lat = np.asarray(latencies_ms, float) / 1000.0
    return RateRun(sent_s=sent, latency_s=lat, done_s=sent + lat, target=np.asarray(target or [0] * n),
                   targets=targets, measure_from=0.0, measure_to=span, counters=counters or {})


def _counters(items: int, batch_ms: float, batch: float = 1.0) -> ServerCounters:
    """Triton's counters for ``items`` single-item requests run in batches of ``batch``, each ``batch_ms``."""
    return ServerCounters(success=items, queue_ns=items * 1e6, compute_ns=items * batch_ms * 1e6,
                          executions=items / batch, inferences=items)


def test_pipeline_plan_from_the_written_repository(pipeline_repo: Path) -> None:
    plan = _plan(pipeline_repo, rate_scale=0.5)
    assert plan.problem == "pipeline" and plan.targets == ("pipeline_video",) and plan.weights == (1.0,)
    assert plan.offered_rps == 10 and plan.slo_ms == 2000 and plan.predicted_latency_ms == pytest.approx(218.62)
    detect, classify = plan.stages
    assert (detect.model, detect.instances, detect.batch_size, detect.batch_latency_ms) == ("detect", 2, 1, 77.17)
    assert detect.capacity_rps == pytest.approx(2 * 1000 / 77.17) and detect.load_rps == 10
    assert (classify.batch_size, classify.queue_delay_ms) == (2, 50)
    assert plan.standin_timings() == {"detect": (0.0, 77.17), "classify": (0.0, 91.45 / 2)}
    capped = _plan(pipeline_repo, served_instances=1, slo_ms=300)
    assert capped.stages[0].instances == 1 and capped.stages[0].planned_instances == 2
    assert capped.stages[0].capacity_rps == pytest.approx(1000 / 77.17) and capped.slo_ms == 300


def test_variant_plan_splits_by_routing_json(variants_repo: Path) -> None:
    plan = _plan(variants_repo)
    assert plan.problem == "variant_selection" and plan.slo_ms is None
    routes = json.loads((variants_repo / "routing.json").read_text())["routes"]
    assert dict(zip(plan.targets, plan.weights)) == {r["model"]: r["weight"] for r in routes}
    assert sorted(plan.targets) == ["large", "small"] and sum(plan.weights) == pytest.approx(1)
    assert {s.model: s.load_rps for s in plan.stages} == {"small": 30, "large": 30}
    routing = json.loads((variants_repo / "routing.json").read_text())
    bad = variants_repo.parent / "bad"
    import shutil

    shutil.copytree(variants_repo, bad)
    routing["routes"][0]["model"] = "nowhere"
    (bad / "routing.json").write_text(json.dumps(routing))
    with pytest.raises(ValidationError, match="routes to nowhere"):
        _plan(bad)
    with pytest.raises(ValidationError, match="rate-scale"):
        _plan(variants_repo, rate_scale=0)


def test_pipeline_verdict_holds_and_fails(pipeline_repo: Path) -> None:
    plan = _plan(pipeline_repo, rate_scale=0.5)
    ok = {"detect": _counters(100, 80.0), "classify": _counters(100, 95.0, batch=2)}
    good = analyze(plan, _run([300.0] * 100, targets=["pipeline_video"], counters=ok))
    assert good.holds and good.total.over_slo == 0 and good.total.sent_rps == pytest.approx(10)
    detect, classify = good.checks
    assert detect.batch_latency_ms == pytest.approx(80) and classify.batch_avg == pytest.approx(2)
    assert classify.capacity_rps == pytest.approx(2 * 1000 / 95) and classify.client is None
    assert "plan holds within 25%" in good.to_table()
    # a stage 40 % slower per batch than planned
    slow = {"detect": _counters(100, 110.0), "classify": _counters(100, 95.0, batch=2)}
    bad = analyze(plan, _run([300.0] * 100, targets=["pipeline_video"], counters=slow))
    assert not bad.holds and bad.end_to_end_holds and not bad.checks[0].holds
    # 3 of 100 requests over the 2 s SLA by far: p99 over SLA x 1.25, over_slo counted exactly
    late = analyze(plan, _run([300.0] * 97 + [3000.0] * 3, targets=["pipeline_video"], counters=ok))
    assert late.total.over_slo == pytest.approx(0.03) and not late.holds
    assert "does NOT hold" in late.to_table()
    # 1 over the SLA: p99 is the 99th of 100 (nearest rank), still fine
    assert analyze(plan, _run([300.0] * 99 + [3000.0], targets=["pipeline_video"],
                                          counters=ok)).holds
    # failed requests count as over the SLO and as infinitely slow
    failed = analyze(plan, _run([300.0] * 95 + [float("nan")] * 5, targets=["pipeline_video"],
                                            counters=ok))
    assert failed.total.failed == 5 and failed.total.over_slo == pytest.approx(0.05)
    assert failed.total.latency_p99_ms == float("inf") and not failed.holds
    # a trace replay must hold in every window: the second half of the requests took 3 s (the SLA is 2 s)
    windows = [("first", 0.0, 5.0, 10.0), ("second", 5.0, 10.0, 10.0)]
    run = _run([300.0] * 50 + [3000.0] * 50, targets=["pipeline_video"], counters=ok)
    traced = analyze(plan, run, windows=windows, trace="t.csv")
    first, second = traced.windows
    assert first.holds(2000, 0.25) and not second.holds(2000, 0.25) and second.measured.over_slo == 1.0
    assert not traced.holds and "x plan" in traced.to_table()
    assert analyze(plan, _run([300.0] * 100, targets=["pipeline_video"], counters=ok), windows=windows).holds
    data = failed.to_dict()
    assert data["end_to_end"]["failed"] == 5 and data["holds"] is False and len(data["models"]) == 2


def test_variant_verdict_per_variant(variants_repo: Path) -> None:
    plan = _plan(variants_repo, slo_ms=100)
    small, large = plan.targets.index("small"), plan.targets.index("large")
    target = [small, large] * 50
    lat = [20.0, 50.0] * 50
    counters = {"small": _counters(50, 26.0), "large": _counters(50, 34.0)}
    good = analyze(plan, _run(lat, targets=list(plan.targets), target=target, counters=counters))
    assert good.holds
    by = {c.expected.model: c for c in good.checks}
    assert by["small"].client.sent == 50 and by["small"].client.latency_p99_ms == 20
    assert by["large"].offered_rps == pytest.approx(5) and by["large"].client.over_slo == 0
    # the large variant's requests take 150 ms: over its 100 ms SLO (x 1.25)
    lat_bad = [20.0, 150.0] * 50
    bad = analyze(plan, _run(lat_bad, targets=list(plan.targets), target=target, counters=counters))
    by = {c.expected.model: c for c in bad.checks}
    assert by["small"].holds and not by["large"].holds and by["large"].client.over_slo == 1.0
    assert bad.total.over_slo == pytest.approx(0.5) and not bad.holds
    # a variant that carries only half its requests (the rest answered after the span)
    run = _run(lat, targets=list(plan.targets), target=target, counters=counters)
    run.done_s[np.asarray(target) == large] += 100.0
    short = analyze(plan, run)
    assert not short.holds and not short.end_to_end_holds


def test_trace_segments_and_arrivals_are_compressed() -> None:
    trace = as_trace([100.0, 0.0, 300.0, 200.0])
    segs = rate_segments(trace, compress=4, scale=0.5)
    assert segs == [(0.25, 50.0), (0.25, 0.0), (0.25, 150.0), (0.25, 100.0)]
    a = poisson_arrivals(segs * 100, seed=3)  # 100 s of trace in 100 wall seconds / 4 ... 25 s
    assert a.max() < 100.0 * 4 * 0.25 and (np.diff(a) >= 0).all()
    assert not np.any((a % 1.0 >= 0.25) & (a % 1.0 < 0.5))  # the zero-rate quarter of each second is empty
    expected = 100 * 0.25 * (50 + 150 + 100)
    assert abs(a.size - expected) < 4 * np.sqrt(expected)
    assert np.array_equal(a, poisson_arrivals(segs * 100, seed=3))
    assert poisson_arrivals([(1.0, 0.0)]).size == 0
    with pytest.raises(ValidationError, match="compress"):
        rate_segments(trace, compress=0)
    with pytest.raises(ValidationError, match="segment 0"):
        poisson_arrivals([(0.0, 5.0)])


def _fake_replay(latency_ms: float, batch_ms: dict[str, float]):
    """A stand-in for verify_drive.replay: every request answered after ``latency_ms``."""

    def replay(url, targets, weights, batch_sizes, arrivals, *, measure_from, measure_to, stats_models, seed=0,
               **kw):
        n = arrivals.size
        choice = np.random.default_rng(seed).choice(len(targets), size=n, p=np.asarray(weights) / sum(weights))
        measured = ((arrivals >= measure_from) & (arrivals < measure_to)).sum()
        b = batch_sizes[0]  # each request one execution of b items
        counters = {m: ServerCounters(success=measured, queue_ns=measured * 1e6,
                                      compute_ns=measured * batch_ms[m] * 1e6, executions=measured,
                                      inferences=measured * b) for m in stats_models}
        lat = np.full(n, latency_ms / 1000.0)
        return RateRun(sent_s=arrivals, latency_s=lat, done_s=arrivals + lat, target=choice, targets=list(targets),
                       measure_from=measure_from, measure_to=measure_to, counters=counters)

    return replay


def test_cli_exit_codes_json_plot_and_trace(pipeline_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from servopt.serving import verify_drive

    args = ["verify", str(pipeline_repo), "--server", "127.0.0.1:1", "--duration", "20", "--warmup", "0"]
    monkeypatch.setattr(verify_drive, "replay", _fake_replay(300.0, {"detect": 80.0, "classify": 90.0}))
    assert main(args + ["--json", "--plot", str(tmp_path / "p.png")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["holds"] and report["problem"] == "pipeline" and report["end_to_end"]["over_slo"] == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setattr(verify_drive, "replay", _fake_replay(300.0, {"detect": 80.0, "classify": 200.0}))
    assert main(args) == 3  # classify twice its planned batch latency
    captured = capsys.readouterr()
    assert "classify" in captured.out and "exit 3" in captured.err
    monkeypatch.setattr(verify_drive, "replay", _fake_replay(300.0, {"detect": 80.0, "classify": 90.0}))
    assert main(args + ["--slo-ms", "200"]) == 3  # every request over a 200 ms SLO
    capsys.readouterr()
    trace = tmp_path / "t.csv"
    trace.write_text("second,rps\n" + "".join(f"{i},{0 if i < 30 else 20}\n" for i in range(120)))
    # a trace that starts at 0/s: the warm-up sends nothing and the windows keep their times (1 s of warm-up)
    assert main(args[:-2] + ["--trace", str(trace), "--compress", "10", "--trace-window", "30", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["windows"][0]["sent"] == 0 and report["windows"][1]["sent"] > 20
    trace.write_text("second,rps\n" + "".join(f"{i},{10 if i < 60 else 20}\n" for i in range(120)))
    assert main(args + ["--trace", str(trace), "--compress", "10", "--trace-window", "30", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [w["label"] for w in report["windows"]] == ["0-30 s", "30-60 s", "60-90 s", "90-120 s"]
    assert [w["offered_rps"] for w in report["windows"]] == [10, 10, 20, 20]
    assert report["plan"]["asked_rps"] == pytest.approx(15)
    # 120 trace seconds in 12 wall seconds at 10-20 requests/s: about 180 requests
    assert 120 < report["end_to_end"]["sent"] < 240
    assert main(args + ["--update-profile", str(tmp_path / "x.csv")]) == 2
    assert main(args + ["--trace", str(trace), "--compress", "0"]) == 2
    (tmp_path / "zero.txt").write_text("0 0 0 0")
    assert main(args + ["--trace", str(tmp_path / "zero.txt")]) == 2
    assert "no request falls in the measured" in capsys.readouterr().err
    assert main(args + ["--compress", "4"]) == 2
    assert "--compress: apply only with --trace" in capsys.readouterr().err


@pytest.mark.triton
@pytest.mark.slow
def test_pipeline_example_verified_on_a_cpu_tritonserver(pipeline_repo: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    _ensure_triton()
    code = main(["verify", str(pipeline_repo), "--start", "--standin", "plan", "--rate-scale", "0.5",
                 "--duration", "3", "--json", "--plot", str(tmp_path / "v.png")])
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["holds"] else 3)
    assert report["end_to_end"]["sent"] > 0 and report["end_to_end"]["failed"] == 0
    by = {m["expected"]["model"]: m for m in report["models"]}
    assert set(by) == {"detect", "classify"}
    # each stage measured inside the ensemble (Triton's statistics of the composing models): the stand-ins sleep
    # the planned time per item, so a stage's batch latency is at most about its planned one
    for m in by.values():
        assert m["throughput_rps"] > 0 and 0.3 < m["batch_latency_ms"] / m["expected"]["batch_latency_ms"] < 2
    assert by["detect"]["batch_avg"] == pytest.approx(1)
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.triton
@pytest.mark.slow
def test_variants_and_a_trace_verified_on_a_cpu_tritonserver(variants_repo: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _ensure_triton()
    trace = ROOT / "data" / "ipa" / "traces" / "twitter_slice_bursty_damping8.csv"
    code = main(["verify", str(variants_repo), "--start", "--standin", "plan", "--rate-scale", "2",
                 "--slo-ms", "1000", "--trace", str(trace), "--trace-end", "120", "--compress", "40",
                 "--trace-window", "60", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["holds"] else 3)
    by = {m["expected"]["model"]: m for m in report["models"]}
    assert set(by) == {"small", "large"}
    for m in by.values():  # requests split by routing.json's weights, both variants served and measured
        assert m["client"]["sent"] > 0 and m["client"]["failed"] == 0 and m["batch_latency_ms"] > 0
    assert len(report["windows"]) == 2 and report["end_to_end"]["sent"] == sum(
        m["client"]["sent"] for m in by.values())


def _ensure_triton() -> None:
    from servopt.serving.tritonserver import TritonSetupError, ensure_env

    try:
        ensure_env()
    except TritonSetupError as exc:
        pytest.fail(f"could not set up the tritonserver environment:\n{exc}", pytrace=False)


def test_trace_replay_of_a_gpu_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """min_gpus plans replay a trace too: rates in items/s, sent as requests of the planned batch."""
    import servopt
    from servopt.serving import verify, verify_drive

    gpu = servopt.GPUType("cpu-standin", max_count=4, batches={8: {"latency_ms": 20.0}})
    problem = servopt.MinGPUs(images=14400, deadline_s=10, gpus=[gpu], objective="gpus", name="timed")
    solution = servopt.solve(problem, "highs")
    out = tmp_path / "out"
    servopt.write_repository(problem, solution, out, triton_backend="python")
    verify.add_predictions(out, solution.plan.predictions())
    plan = verify_rate.gpu_rate_plan(verify.load_summary(out), out, rate_scale=0.5)
    assert plan.targets == ("timed",) and plan.request_batch == 8 and plan.workload_rps == pytest.approx(1600)
    assert plan.stages[0].load_rps == pytest.approx(800) and plan.queue_delay_us == 17500
    single = verify_rate.gpu_rate_plan(verify.load_summary(out), out, single_images=True)
    assert single.request_batch == 1
    seen = {}

    def replay(url, targets, weights, batch_sizes, arrivals, **kw):
        seen["batch_sizes"], seen["requests"] = batch_sizes, arrivals.size
        return _fake_replay(30.0, {"timed": 21.0})(url, targets, weights, batch_sizes, arrivals, **kw)

    monkeypatch.setattr(verify_drive, "replay", replay)
    trace = tmp_path / "t.txt"
    trace.write_text(" ".join(["800"] * 20))  # 800 items/s for 20 s, replayed in 2 s
    assert main(["verify", str(out), "--server", "127.0.0.1:1", "--trace", str(trace), "--compress", "10",
                 "--warmup", "0", "--trace-window", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert seen["batch_sizes"] == [8] and abs(seen["requests"] - 200) < 60  # 100 requests of 8 per second
    assert report["plan"]["request_batch"] == 8 and len(report["windows"]) == 2
    assert report["end_to_end"]["sent_rps"] == pytest.approx(seen["requests"] * 8 / 2)
    assert report["models"][0]["batch_avg"] == 8 and report["holds"]
    assert main(["verify", str(out), "--server", "127.0.0.1:1", "--rate-scale", "2"]) == 2  # no trace: concurrency
    assert "--rate-scale: apply to pipeline and variant_selection" in capsys.readouterr().err
