"""``servopt verify`` (servopt/serving/verify.py, servopt/cli/verify.py) and the predictions plans carry.

Unit tests compare crafted measurements with a crafted servopt.json. The ``triton`` test closes the loop on a
CPU tritonserver: a timed stand-in model served -> ``servopt profile --triton`` -> ``fit`` -> ``solve --out``
-> ``verify --start --standin``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import servopt
from servopt.cli import main
from servopt.exceptions import ValidationError
from servopt.measure.loadgen import LoadPoint
from servopt.serving import verify


def _summary(tmp_path: Path, *, batch: int = 8, latency: float = 20.0, gpus: int = 2) -> Path:
    a = servopt.GPUType("cpu-standin", max_count=4, batches={batch: {"latency_ms": latency}})
    problem = servopt.MinGPUs(images=int(gpus * 0.9 * batch * 1000 / latency * 10), deadline_s=10, gpus=[a],
                              objective="gpus", name="timed")
    solution = servopt.solve(problem, "highs")
    out = tmp_path / "out"
    servopt.write_repository(problem, solution, out, triton_backend="python")
    verify.add_predictions(out, solution.plan.predictions())
    return out


def _point(rps: float, compute: float | None, *, stable: bool = True) -> LoadPoint:
    return LoadPoint(model="timed", batch_size=8, concurrency=4, request_rate=None, throughput_rps=rps,
                     latency_p50_ms=40, latency_p90_ms=45, latency_p99_ms=60, latency_avg_ms=41,
                     server_queue_ms=18, server_compute_ms=compute, requests=500, windows=3, stable=stable,
                     throughput_spread=0.05, p99_spread=0.1, server_batch_avg=8.0)


def test_predictions_of_a_gpu_plan(tmp_path: Path) -> None:
    out = _summary(tmp_path)
    pred = json.loads((out / "servopt.json").read_text())["predictions"]
    [g] = pred["groups"]
    assert g["model_instances"] == 2 and g["batch_size"] == 8 and g["batch_latency_ms"] == 20
    assert g["throughput_rps"] == pytest.approx(800) and pred["throughput_rps"] == pytest.approx(800)
    # 8 single images arrive within 7/8 of one batch latency at the planned rate
    assert g["max_queue_delay_us"] == 17500
    assert g["load"] == {"concurrency": 4, "request_batch_size": 8, "single_image_concurrency": 32}
    assert "-b 8 --concurrency-range 4:4" in g["perf_analyzer"]


def test_plan_holds_within_tolerance_and_fails_outside(tmp_path: Path) -> None:
    out = _summary(tmp_path)
    summary = verify.load_summary(out)
    [e] = verify.expectations(summary, out)
    assert (e.model, e.instances, e.batch_size) == ("timed", 2, 8)
    good = verify.verify_plan(summary, out, lambda e: _point(700, 22.0))
    assert good.holds and good.deadline_met is not None
    assert "plan holds within 25%" in good.to_table()
    slow = verify.verify_plan(summary, out, lambda e: _point(500, 22.0))  # -37.5 % throughput
    assert not slow.holds and "does NOT hold" in slow.to_table()
    assert not verify.verify_plan(summary, out, lambda e: _point(800, 30.0)).holds  # batch latency +50 %
    assert verify.verify_plan(summary, out, lambda e: _point(500, 22.0), tolerance=0.5).holds
    data = slow.to_dict()
    assert data["end_to_end"]["throughput_error"] == pytest.approx(500 / 800 - 1)
    assert data["models"][0]["measured"]["throughput_rps"] == 500
    capped = verify.verify_plan(summary, out, lambda e: _point(350, 22.0, stable=False), served_instances=1)
    assert capped.checks[0].expected.throughput_rps == pytest.approx(400) and capped.holds
    assert any("1 of 2 planned" in n for n in capped.notes) and any("settle" in n for n in capped.notes)
    png = slow.plot(tmp_path / "v.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_verify_refuses_what_it_cannot_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValidationError, match="servopt solve FILE --out DIR"):
        verify.load_summary(tmp_path)
    (tmp_path / "servopt.json").write_text(json.dumps({"problem": "pipeline", "repositories": []}))
    with pytest.raises(ValidationError, match="no 'predictions'"):
        verify.load_summary(tmp_path)
    assert main(["verify", str(tmp_path), "--server", "10.0.0.2:8001"]) == 2
    assert main(["verify", str(tmp_path), "--server", "127.0.0.1:1", "--standin", "4,1"]) == 2
    assert "only with --start" in capsys.readouterr().err
    assert main(["verify", str(tmp_path), "--start", "--standin", "x"]) == 2


def test_standin_copy_is_cpu_servable(tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    out = _summary(tmp_path)
    verify.make_standin_copy(out, tmp_path / "copy", base_ms=4, per_item_ms=1, max_instances=1,
                             max_queue_delay_us=17500)
    cfg = text_format.Parse((tmp_path / "copy" / "timed" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.backend == "python" and [g.kind for g in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert cfg.instance_group[0].count == 1 and cfg.dynamic_batching.max_queue_delay_microseconds == 17500
    assert cfg.parameters["servopt_per_item_ms"].string_value == "1"
    assert (tmp_path / "copy" / "timed" / "1" / "model.py").is_file()


@pytest.mark.triton
@pytest.mark.slow
def test_close_the_loop_on_a_cpu_tritonserver(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from servopt.serving.tritonserver import TritonServer, TritonSetupError, ensure_env
    from servopt.testing.timed_repo import write_timed_model

    try:
        env = ensure_env()
    except TritonSetupError as exc:
        pytest.fail(f"could not set up the tritonserver environment:\n{exc}", pytrace=False)
    write_timed_model(tmp_path / "served", "timed", base_ms=4, per_item_ms=1, max_batch_size=16)
    profile = tmp_path / "p.csv"
    with TritonServer(env, [tmp_path / "served"], tmp_path) as server:
        assert main(["profile", "--triton", f"127.0.0.1:{server.grpc_port}", "--model", "timed", "--batch-sizes",
                     "1,4,16", "--window", "0.8", "--max-windows", "5", "--stability", "0.25", "--hardware",
                     "cpu-standin", "-q", "-o", str(profile)]) == 0
    assert main(["fit", str(profile)]) == 0
    problem = tmp_path / "job.yaml"
    problem.write_text(f"problem: min_gpus\nname: timed\nprofiles: [{profile}]\nperformance: table\n"
                       "images: 5000\ndeadline_s: 30\nobjective: gpus\n"
                       "gpus:\n  - hardware: cpu-standin\n    max_count: 4\n"
                       # the served tensors, so the plan's repository sends what was profiled
                       "triton:\n  backend: python\n"
                       "  inputs: [{name: INPUT0, data_type: FP32, dims: [4]}]\n"
                       "  outputs: [{name: OUTPUT0, data_type: FP32, dims: [4]}]\n")
    out = tmp_path / "out"
    assert main(["solve", str(problem), "--out", str(out)]) == 0
    capsys.readouterr()
    code = main(["verify", str(out), "--start", "--standin", "4,1", "--window", "0.8", "--max-windows", "5",
                 "--stability", "0.25", "--json", "--update-profile", str(profile)])
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["holds"] else 3)
    [m] = report["models"]
    # the served stand-in sleeps what the profile measured: batch latency close to the prediction even on a
    # busy machine (throughput depends on how busy; it is the verdict's business, not this test's)
    assert 0.5 < m["measured"]["server_compute_ms"] / m["expected"]["batch_latency_ms"] < 2
    assert m["measured"]["server_batch_avg"] == pytest.approx(m["expected"]["batch_size"])
    assert report["end_to_end"]["projected_s"] > 0
    from servopt.profiles import load_profile

    assert len(load_profile(profile).frame) == 4  # 3 profiled points + the verified one
