"""``servopt verify``'s checks before and around a started server, and what its verdict judges.

No server is started by the unit tests: a fake NGC-layout tritonserver (only the python backend) answers the backend
check, and a fake :class:`TritonServer` the load check; the ``triton`` test makes a model fail to load on the real
CPU tritonserver. Covered: the backend check for every ``--start``, models that do not load and requests the
started server refuses (exit 2, the server's reason, no traceback); the latency SLO judged on what it bounds in the
plan (a min_gpus plan's batch latency, a fleet plan's request p99); ``--max-instances`` scaling the rate sent and the
deadline projection; ``--max-instances`` and ``--tolerance`` refused at argument parsing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import servopt
from servopt.cli import main
from servopt.exceptions import ValidationError
from servopt.measure.loadgen import LoadPoint
from servopt.serving import verify, verify_rate
from servopt.serving.verify_drive import RateRun, ServerCounters
from servopt.serving.verify_report import analyze

pytest.importorskip("tritonclient.grpc")

ROOT = Path(__file__).resolve().parents[1]


def _plan_dir(tmp_path: Path, *, gpus: int = 2, slo: float | None = None, backend: str | None = "python",
              images: int | None = None) -> Path:
    """A min_gpus plan (batch 8 in 20 ms, ``gpus`` instances) written by servopt with its predictions."""
    gpu = servopt.GPUType("cpu-standin", max_count=4, batches={8: {"latency_ms": 20.0}})
    images = images if images is not None else int(gpus * 0.9 * 8 * 1000 / 20 * 10)
    problem = servopt.MinGPUs(images=images, deadline_s=10, gpus=[gpu], objective="gpus", name="timed",
                              latency_slo_ms=slo)
    solution = servopt.solve(problem, "highs")
    out = tmp_path / "out"
    servopt.write_repository(problem, solution, out, **({"triton_backend": backend} if backend else {}))
    predictions = dict(solution.plan.predictions())
    predictions.setdefault("latency_slo_ms", slo)  # as servopt solve --out writes it
    verify.add_predictions(out, predictions)
    return out


def _point(rps: float, compute: float | None, *, p99: float = 60.0) -> LoadPoint:
    return LoadPoint(model="timed", batch_size=8, concurrency=4, request_rate=None, throughput_rps=rps,
                     latency_p50_ms=40, latency_p90_ms=45, latency_p99_ms=p99, latency_avg_ms=41,
                     server_queue_ms=18, server_compute_ms=compute, requests=500, windows=3, stable=True,
                     throughput_spread=0.05, p99_spread=0.1, server_batch_avg=8.0)


def _fake_tritonserver(tmp_path: Path) -> Path:
    """An NGC-layout tritonserver with only the python backend (like nvidia-pytriton's); it exits at once."""
    root = tmp_path / "fake_triton"
    (root / "bin").mkdir(parents=True)
    (root / "backends" / "python").mkdir(parents=True)
    (root / "backends" / "python" / "triton_python_backend_stub").write_text("")
    binary = root / "bin" / "tritonserver"
    binary.write_text("#!/bin/sh\necho 'E1208 00:00:00.000000 1 server.cc:1] \"cannot start: test\"'\nexit 1\n")
    binary.chmod(0o755)
    return binary


class _FakeServer:
    """Stands in for :class:`TritonServer`: starts nothing; ``failed`` models did not load."""

    failed: list[tuple[str, str, str]] = []
    errors: list[str] = []
    started: list[list[Path]] = []

    def __init__(self, env, repositories, workdir, **kw) -> None:
        self.repositories = repositories
        self.grpc_port = 1

    def start(self) -> float:
        _FakeServer.started.append(self.repositories)
        return 0.0

    def not_ready(self, timeout_s: float = 120) -> list[tuple[str, str, str]]:
        return list(self.failed)

    def load_errors(self, limit: int = 5) -> list[str]:
        return list(self.errors)

    def stop(self) -> None:
        pass

    def __enter__(self) -> _FakeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch):
    from servopt.serving import tritonserver

    monkeypatch.setattr(tritonserver, "TritonServer", _FakeServer)
    _FakeServer.failed, _FakeServer.errors, _FakeServer.started = [], [], []
    return _FakeServer


# -- 1. the started server: backends, models that do not load, refused requests --------------------------------

def test_start_checks_the_backends_before_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Default repositories (onnxruntime) on a server with only python: exit 2 naming the backend and the ways
    out, for every --start (not only --cpu), before any server starts."""
    out = _plan_dir(tmp_path, backend=None)
    assert 'backend: "onnxruntime"' in (out / "timed" / "config.pbtxt").read_text()
    binary = _fake_tritonserver(tmp_path)
    assert main(["verify", str(out), "--start", "--tritonserver", str(binary)]) == 2
    err = capsys.readouterr().err
    assert "has no onnxruntime backend" in err and "onnxruntime: timed" in err
    assert "--tritonserver PATH" in err and "--standin" in err and "--triton-backend python" in err
    assert main(["verify", str(out), "--start", "--cpu", "--tritonserver", str(binary)]) == 2
    assert "has no onnxruntime backend" in capsys.readouterr().err


def test_a_server_that_does_not_start_is_exit_2_with_its_log(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = _plan_dir(tmp_path)  # python backend: the check passes; the fake server exits during start-up
    assert main(["verify", str(out), "--start", "--standin", "plan", "--tritonserver",
                 str(_fake_tritonserver(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "tritonserver exited with code 1 during start-up" in err and "cannot start: test" in err


def test_a_model_that_does_not_load_is_exit_2_with_the_servers_reason(
        tmp_path: Path, fake_server, capsys: pytest.CaptureFixture[str]) -> None:
    out = _plan_dir(tmp_path)
    binary = str(_fake_tritonserver(tmp_path))
    fake_server.failed = [("timed", "UNAVAILABLE", "Invalid argument: no GPUs")]
    fake_server.errors = ["failed to load '/x::timed' version 1: Invalid argument: no GPUs"]
    assert main(["verify", str(out), "--start", "--standin", "plan", "--tritonserver", binary]) == 2
    err = capsys.readouterr().err
    assert "1 model(s) did not load on the tritonserver servopt started" in err
    assert "timed (UNAVAILABLE)" in err and "failed to load '/x::timed' version 1: Invalid argument: no GPUs" in err
    # a pipeline plan (rate-driven): the same check, not "is a Triton server serving this repository there?"
    pipe = tmp_path / "pv"
    assert main(["solve", str(ROOT / "examples" / "pipeline_video.yaml"), "--out", str(pipe),
                 "--triton-backend", "python"]) == 0
    capsys.readouterr()
    fake_server.failed = [("detect", "UNAVAILABLE", "boom")]
    fake_server.errors = []
    assert main(["verify", str(pipe), "--start", "--tritonserver", binary, "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "did not load" in err and "detect: boom" in err and "serving this repository there" not in err


def test_a_request_the_started_server_refuses_is_exit_2(tmp_path: Path, fake_server,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tritonclient.utils import InferenceServerException

    from servopt.measure import loadgen

    def refuse(self, model, batch, *, concurrency=None, request_rate=None):
        raise InferenceServerException(f"[StatusCode.NOT_FOUND] Request for unknown model: '{model}'")

    monkeypatch.setattr(loadgen.BuiltinDriver, "measure", refuse)
    fake_server.errors = ["failed to load 'timed' version 1: oops"]
    out = _plan_dir(tmp_path)
    assert main(["verify", str(out), "--start", "--standin", "plan", "--tritonserver",
                 str(_fake_tritonserver(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "the tritonserver servopt started" in err and "unknown model: 'timed'" in err and "oops" in err


def test_load_errors_and_not_ready_read_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from servopt.serving.tritonserver import TritonServer

    server = TritonServer(None, [tmp_path], tmp_path)
    server.log_path.write_text(
        'I1208 00:29:14.1 1 model_lifecycle.cc:472] "loading: /r::m:1"\n'
        'E1208 00:29:14.2 1 server.cc:241] "CudaDriverHelper has not been initialized."\n'
        "E1208 00:29:14.3 1 model_lifecycle.cc:642] \"failed to load '/r::m' version 1: Invalid argument: "
        "unable to find backend library for backend 'onnxruntime'\"\n"
        'E1208 00:29:14.4 1 tritonserver.cc:2607] "Internal: failed to load all models"\n')
    assert server.load_errors() == ["failed to load '/r::m' version 1: Invalid argument: unable to find backend "
                                    "library for backend 'onnxruntime'"]
    states = iter([[("m", "LOADING", ""), ("e", "", "")], [("m", "UNAVAILABLE", "bad"), ("e", "", "")]])
    monkeypatch.setattr(server, "index", lambda: next(states))
    assert server.not_ready(timeout_s=5) == [("m", "UNAVAILABLE", "bad"), ("e", "", "")]


@pytest.mark.triton
@pytest.mark.slow
def test_a_model_that_fails_to_load_on_a_cpu_tritonserver(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from servopt.serving.tritonserver import TritonSetupError, ensure_env

    try:
        ensure_env()
    except TritonSetupError as exc:
        pytest.fail(f"could not set up the tritonserver environment:\n{exc}", pytrace=False)
    out = _plan_dir(tmp_path)
    (out / "timed" / "1").mkdir(exist_ok=True)
    (out / "timed" / "1" / "model.py").write_text(
        "class TritonPythonModel:\n    def initialize(self, args):\n"
        "        raise RuntimeError('servopt test: this model does not load')\n")
    assert main(["verify", str(out), "--start", "--cpu", "--window", "0.5", "--max-windows", "3"]) == 2
    err = capsys.readouterr().err
    assert "did not load on the tritonserver servopt started" in err
    assert "servopt test: this model does not load" in err


# -- 2. the latency SLO: judged on what it bounds in the plan ----------------------------------------------------

def test_a_gpu_plans_slo_bounds_the_batch_latency(tmp_path: Path) -> None:
    """Batch 8 at 20 ms under latency_slo_ms 25: the plan predicts 40 ms per request (one batch queued, one
    running). Served as predicted (p99 57 ms), it holds; the table says what was judged against which bound."""
    out = _plan_dir(tmp_path, gpus=1, slo=25.0, images=3000)
    summary = verify.load_summary(out)
    report = verify.verify_plan(summary, out, lambda e: _point(365.0, 21.7, p99=57.5))
    assert report.holds
    [e] = verify.expectations(summary, out)
    assert (e.latency_slo_ms, e.slo_applies_to, e.latency_ms) == (25.0, "batch_latency", 40.0)
    [check] = report.checks
    assert check.slo_met and check.slo_measured_ms == pytest.approx(21.7)
    table = report.to_table()
    assert "slo" in table.splitlines()[0] and " met " in table.splitlines()[1]
    assert "batch latency 21.7 ms, bound 31.2 ms (latency_slo_ms 25 x 1.25): met" in table
    assert "p99 (57.5 ms) is reported, not judged" in table
    slo = report.to_dict()["models"][0]["slo"]
    assert slo == {"applies_to": "batch_latency", "slo_ms": 25.0, "measured_ms": pytest.approx(21.7),
                   "bound_ms": 31.25, "met": True}
    late = verify.verify_plan(summary, out, lambda e: _point(365.0, 32.0, p99=57.5))
    assert late.checks[0].slo_met is False and not late.holds and "MISSED" in late.to_table()


def test_a_fleet_slo_bounds_the_request_p99() -> None:
    e = verify.Expectation(repository="r", model="m", hardware="L4", instances=1, planned_instances=1, batch_size=8,
                           batch_latency_ms=20.0, throughput_rps=400.0, latency_ms=40.0, queue_delay_ms=20.0,
                           max_queue_delay_us=0, latency_slo_ms=50.0)
    assert verify.ModelCheck(e, _point(400.0, 20.0, p99=60.0), 0.25).holds  # 60 <= 62.5
    late = verify.ModelCheck(e, _point(400.0, 20.0, p99=70.0), 0.25)
    assert late.slo_met is False and not late.holds
    assert e.slo_applies_to == "request_p99" and "request p99 70.0 ms, bound 62.5 ms" in late.slo_line()


def test_a_gpu_plans_trace_replay_judges_its_slo_on_the_batch_latency(tmp_path: Path) -> None:
    out = _plan_dir(tmp_path, gpus=1, slo=25.0, images=3000)
    plan = verify_rate.gpu_rate_plan(verify.load_summary(out), out)
    n, span = 200, 4.0  # 50 requests of 8 per second: 400 items/s, every request 45 ms (2 batch latencies)
    sent = np.arange(n) * span / n

    def run(batch_ms: float) -> RateRun:
        counters = {"timed": ServerCounters(success=n, queue_ns=n * 20e6, compute_ns=n * batch_ms * 1e6,
                                            executions=n, inferences=n * 8)}
        return RateRun(sent_s=sent, latency_s=np.full(n, 0.045), done_s=sent + 0.045, target=np.zeros(n, int),
                       targets=["timed"], measure_from=0.0, measure_to=span, counters=counters)

    good = analyze(plan, run(21.0))  # requests of 45 ms: over 25 ms, as the plan predicts (40 ms)
    assert good.holds
    assert plan.slo_ms is None and plan.stages[0].batch_slo_ms == 25.0
    assert "SLO timed: batch latency 21.0 ms, bound 31.2 ms" in good.to_table()
    bad = analyze(plan, run(33.0))
    assert not bad.holds and bad.checks[0].batch_slo_met is False and "MISSED" in bad.to_table()
    assert verify_rate.gpu_rate_plan(verify.load_summary(out), out, slo_ms=40).slo_ms == 40  # a request objective


# -- 3. --max-instances scales the rate sent -----------------------------------------------------------------------

def test_max_instances_scales_a_pipelines_rate(tmp_path: Path) -> None:
    pipe = tmp_path / "pv"
    assert main(["solve", str(ROOT / "examples" / "pipeline_video.yaml"), "--out", str(pipe),
                 "--triton-backend", "python"]) == 0
    plan = verify_rate.rate_plan(verify.load_summary(pipe), pipe, served_instances=1)
    detect, classify = plan.stages
    assert (detect.instances, detect.planned_instances) == (1, 2)
    # detect serves 1 of 2 instances: its capacity halves (13/s), and so does the rate every stage sees
    assert plan.offered_rps == pytest.approx(10) and plan.instance_scale == 0.5
    assert detect.load_rps == classify.load_rps == pytest.approx(10) and detect.load_rps < detect.capacity_rps
    assert verify_rate.rate_plan(verify.load_summary(pipe), pipe).offered_rps == pytest.approx(20)


def test_max_instances_scales_each_variants_rate(tmp_path: Path) -> None:
    """Variants get their own served / planned ratio: the routing weights are scaled by it."""
    (tmp_path / "servopt.json").write_text(json.dumps({"problem": "variant_selection", "repositories": [
        {"path": ".", "models": [{"name": "small", "variant": "small"}, {"name": "large", "variant": "large"}]}]}))
    for name, count in (("small", 2), ("large", 1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.pbtxt").write_text(
            f'name: "{name}"\nbackend: "python"\ninstance_group {{ count: {count} kind: KIND_CPU }}\n')
    verify.add_predictions(tmp_path, {"workload_rps": 60.0, "models": [
        {"variant": "small", "model_instances": 2, "batch_size": 1, "batch_latency_ms": 25.0, "throughput_rps": 80.0,
         "load_rps": 40.0, "share": 2 / 3},
        {"variant": "large", "model_instances": 1, "batch_size": 1, "batch_latency_ms": 50.0, "throughput_rps": 20.0,
         "load_rps": 20.0, "share": 1 / 3}]})
    plan = verify_rate.rate_plan(verify.load_summary(tmp_path), tmp_path, served_instances=1)
    sent = {m: plan.offered_rps * w / sum(plan.weights) for m, w in zip(plan.targets, plan.weights)}
    assert sent == {"small": pytest.approx(20), "large": pytest.approx(20)}  # small: 40/s planned on 2 instances
    loads = {s.model: s.load_rps for s in plan.stages}
    assert loads == {"small": pytest.approx(20), "large": pytest.approx(20)}


def test_max_instances_scales_the_rate_the_cli_sends(tmp_path: Path, fake_server, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from servopt.serving import verify_drive

    pipe = tmp_path / "pv"
    assert main(["solve", str(ROOT / "examples" / "pipeline_video.yaml"), "--out", str(pipe),
                 "--triton-backend", "python"]) == 0
    seen = {}

    def replay(url, targets, weights, batch_sizes, arrivals, *, measure_from, measure_to, stats_models, **kw):
        seen["rate"] = ((arrivals >= measure_from) & (arrivals < measure_to)).sum() / (measure_to - measure_from)
        n = arrivals.size
        counters = {m: ServerCounters(success=n, compute_ns=n * 50e6, executions=n, inferences=n)
                    for m in stats_models}
        return RateRun(sent_s=arrivals, latency_s=np.full(n, 0.3), done_s=arrivals + 0.3, target=np.zeros(n, int),
                       targets=list(targets), measure_from=measure_from, measure_to=measure_to, counters=counters)

    monkeypatch.setattr(verify_drive, "replay", replay)
    capsys.readouterr()
    assert main(["verify", str(pipe), "--start", "--standin", "plan", "--max-instances", "1", "--tritonserver",
                 str(_fake_tritonserver(tmp_path)), "--duration", "40", "--warmup", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["plan"]["offered_rps"] == pytest.approx(10) and 8 < seen["rate"] < 12
    assert any("x 0.5 for the instances served" in n for n in report["notes"])


# -- 4. and 6. --max-instances and --tolerance refused at argument parsing ----------------------------------------

@pytest.mark.parametrize("option, value", [("--max-instances", "0"), ("--max-instances", "-1"),
                                           ("--max-instances", "two"), ("--tolerance", "1"),
                                           ("--tolerance", "1.5"), ("--tolerance", "0"), ("--tolerance", "-0.1"),
                                           ("--tolerance", "nan")])
def test_bad_max_instances_and_tolerance_are_refused_before_anything_runs(
        tmp_path: Path, option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(tmp_path / "nowhere"), "--start", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected" in err and value in err


def test_the_library_refuses_them_too(tmp_path: Path) -> None:
    out = _plan_dir(tmp_path)
    summary = verify.load_summary(out)
    with pytest.raises(ValidationError, match="--max-instances: expected an instance count >= 1, got 0"):
        verify.expectations(summary, out, served_instances=0)
    with pytest.raises(ValidationError, match="tolerance: expected a fraction between 0 and 1"):
        verify.verify_plan(summary, out, lambda e: _point(800, 20.0), tolerance=1.0)
    with pytest.raises(ValidationError, match="--max-instances"):
        verify.make_standin_copy(out, tmp_path / "copy", base_ms=1, per_item_ms=1, max_instances=0)


# -- 5. the deadline projection with --max-instances ----------------------------------------------------------------

def test_deadline_is_projected_at_the_planned_instances(tmp_path: Path) -> None:
    """7,200 images in 10 s on 2 instances of 400 items/s; one instance served, measured at its 400 items/s:
    the planned 2 instances take 9 s (met), not the 18 s the served one would."""
    out = _plan_dir(tmp_path)
    summary = verify.load_summary(out)
    report = verify.verify_plan(summary, out, lambda e: _point(400.0, 20.0), served_instances=1)
    assert report.projected_s == pytest.approx(9.0) and report.deadline_met
    assert report.scaled and report.projected_rps == pytest.approx(800)
    table = report.to_table()
    assert "per served instance x the planned instances (800.0 items/s); deadline 10 s met" in table
    assert report.holds and "MISSED" not in table
    full = verify.verify_plan(summary, out, lambda e: _point(800.0, 20.0))
    assert not full.scaled and full.projected_s == pytest.approx(9.0) and "at the measured rate;" in full.to_table()
