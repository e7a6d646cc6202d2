"""From an ONNX file to a verified deployment with servopt commands only (issue 18).

``servopt profile MODEL.onnx --triton start`` (servopt/measure/served_onnx.py, servopt/cli/_profile_triton.py):
unit tests of the repository it serves and of what it refuses before starting anything; ``triton`` tests run it
on the CPU tritonserver (no leaked server after an interrupt, no partial profile) and run the whole chain
profile -> fit -> solve --out -> verify --start on an example model.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from servopt.cli import main
from servopt.exceptions import ValidationError
from servopt.measure import served_onnx

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"


def _config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_repository_around_an_onnx_file(tmp_path: Path) -> None:
    from tritonclient.grpc import model_config_pb2 as mc

    from servopt.triton.artifacts import PYTHON_ONNX_MODEL

    repo = served_onnx.write_onnx_repository(MODELS / "detector.onnx", tmp_path / "repo", name="det",
                                             max_batch_size=8, instances=2, threads=1)
    cfg = _config(repo / "det" / "config.pbtxt")
    assert (cfg.name, cfg.backend, cfg.max_batch_size) == ("det", "python", 8)
    # tensors from the graph, batch axis split off
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in cfg.input] == [
        ("IMAGE", "TYPE_FP32", [3, 160, 160])]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("BOXES", [16, 4]), ("SCORES", [16])]
    [group] = cfg.instance_group
    assert (group.count, group.kind) == (2, mc.ModelInstanceGroup.KIND_CPU)
    assert cfg.parameters["intra_op_thread_count"].string_value == "1"
    assert not cfg.HasField("dynamic_batching")  # the client sends whole batches: one request, one profiled batch
    assert (repo / "det" / "1" / "model.onnx").read_bytes() == (MODELS / "detector.onnx").read_bytes()
    assert (repo / "det" / "1" / "model.py").read_text() == PYTHON_ONNX_MODEL


def test_variable_axes_fixed_by_input_size(tmp_path: Path) -> None:
    from servopt.measure.onnx_models import save_model, tiny_cnn

    onnx = save_model(tiny_cnn(), tmp_path / "tiny.onnx")  # input [batch, 3, H, W]
    with pytest.raises(ValidationError, match="variable axes"):
        served_onnx.write_onnx_repository(onnx, tmp_path / "r", name="tiny", max_batch_size=4)
    repo = served_onnx.write_onnx_repository(onnx, tmp_path / "r2", name="tiny", max_batch_size=4, input_size=64)
    [inp] = _config(repo / "tiny" / "config.pbtxt").input
    assert list(inp.dims) == [3, 64, 64]


def test_repository_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="expected an existing .onnx file"):
        served_onnx.write_onnx_repository(tmp_path / "missing.onnx", tmp_path / "r", name="m", max_batch_size=1)
    with pytest.raises(ValidationError, match="letters, digits"):
        served_onnx.write_onnx_repository(MODELS / "detector.onnx", tmp_path / "r", name="a b", max_batch_size=1)
    with pytest.raises(ValidationError, match="--instances: expected >= 1"):
        served_onnx.write_onnx_repository(MODELS / "detector.onnx", tmp_path / "r", name="m", max_batch_size=4,
                                          instances=0)
    with pytest.raises(ValidationError, match="variable axes .* --input-sizes"):
        served_onnx.fixed_dims(Path("m.onnx"), [("x", "TYPE_FP32", (3, -1, -1))], None)


def test_profile_start_refuses_before_starting_a_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    def no_server(*args, **kwargs):
        raise AssertionError("a server was started")

    monkeypatch.setattr(served_onnx, "served_onnx", no_server)
    onnx = str(MODELS / "language_id.onnx")
    out = tmp_path / "p.csv"
    base = ["profile", "--triton", "start", "--batch-sizes", "1,2", "-o", str(out)]
    assert main(base) == 2
    assert "needs MODEL.onnx" in capsys.readouterr().err
    assert main([*base, onnx, "--model", "x"]) == 2
    assert "--model-name" in capsys.readouterr().err
    assert main([*base, onnx, "--cores", "1,2"]) == 2
    assert main([*base, onnx, "--runtime", "torch"]) == 2
    assert main([*base, onnx, "--concurrency", "0"]) == 2  # loads are checked before a server starts
    assert main([*base, onnx, "--window", "-1"]) == 2
    assert main([*base, onnx, "--driver", "perf_analyzer", "--perf-analyzer", str(tmp_path / "none")]) == 2
    assert main(["profile", "--triton", "127.0.0.1:1", "--model", "m", "--batch-sizes", "1", "--tritonserver",
                 "/x", "-o", str(out)]) == 2
    assert "only with --triton start" in capsys.readouterr().err
    out.write_text("kept\n")
    assert main([*base, onnx]) == 2  # an existing output is refused first
    assert "exists" in capsys.readouterr().err and out.read_text() == "kept\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _triton_env():
    from servopt.serving.tritonserver import TritonSetupError, ensure_env

    try:
        return ensure_env()
    except TritonSetupError as exc:
        pytest.fail(f"could not set up the tritonserver environment:\n{exc}", pytrace=False)


@pytest.mark.triton
@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_profile_stops_its_server_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 how: str) -> None:
    import signal

    from servopt.measure import loadgen
    from servopt.serving import tritonserver

    _triton_env()
    started: list[int] = []

    class Recorded(tritonserver.TritonServer):
        def start(self) -> float:
            took = super().start()
            started.append(self.proc.pid)
            return took

    def interrupted(driver, model, batch_sizes, **kwargs):
        assert model == "lid" and _alive(started[0])
        driver.measure(model, 1, concurrency=1)  # the served model answers
        if how == "sigterm":  # e.g. a job scheduler ending the run: turned into KeyboardInterrupt while serving
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            raise AssertionError("SIGTERM did not interrupt the profile")
        raise KeyboardInterrupt

    monkeypatch.setattr(tritonserver, "TritonServer", Recorded)
    monkeypatch.setattr(loadgen, "profile_served", interrupted)
    out = tmp_path / "p.csv"
    before = signal.getsignal(signal.SIGTERM)
    assert main(["profile", str(MODELS / "language_id.onnx"), "--triton", "start", "--model-name", "lid",
                 "--batch-sizes", "1,2", "--window", "0.3", "--max-windows", "3", "-q", "-o", str(out)]) == 130
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back
    assert len(started) == 1
    deadline = time.monotonic() + 10
    while _alive(started[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(started[0]), "tritonserver outlived the interrupted profile"
    assert not out.exists()


@pytest.mark.triton
@pytest.mark.slow
def test_onnx_file_to_verified_deployment(tmp_path: Path) -> None:
    """The whole chain with servopt commands only (benchmarks/onnx_chain.py --quick): profile the example text
    model on a started tritonserver, fit, solve examples/onnx_chain/min_gpus_text.yaml (with this profile) into a
    repository holding the ONNX file, verify it on a started server. Asserts on the artefacts, not on timings."""
    import csv
    import json
    import subprocess
    import sys

    from tritonclient.grpc import model_config_pb2 as mc

    _triton_env()
    out, results = tmp_path / "work", tmp_path / "results"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "onnx_chain.py"), "--quick", "--out", str(out),
                           "--results", str(results)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands = json.loads((out / "chain.json").read_text())
    assert [c["command"].split()[1] for c in commands] == ["profile", "fit", "solve", "verify"]
    assert [c["exit"] for c in commands[:3]] == [0, 0, 0] and commands[3]["exit"] in (0, 3)
    assert "--triton start" in commands[0]["command"]
    run = out / "run1"
    # the profile: one row per batch size, latency_ms the service time its throughput implies
    with (run / "language_id.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["batch_size"]) for r in rows] == [1, 8]
    for r in rows:
        assert r["latency_statistic"] == "service" and r["concurrency"] == "2" and r["instances"] == "1"
        assert float(r["latency_ms"]) == pytest.approx(int(r["batch_size"]) * 1000 / float(r["throughput_rps"]),
                                                       rel=1e-4)
    # the repository holds the ONNX file, served by the Python-backend wrapper on CPU instances
    summary = json.loads((run / "repo_min_gpus_text" / "servopt.json").read_text())
    assert summary["problem"] == "min_gpus" and not summary["config_only"]
    [group] = summary["predictions"]["groups"]
    model_dir = run / "repo_min_gpus_text" / "language_id"
    assert (model_dir / "1" / "model.onnx").read_bytes() == (MODELS / "language_id.onnx").read_bytes()
    assert (model_dir / "1" / "model.py").is_file()
    cfg = _config(model_dir / "config.pbtxt")
    assert cfg.backend == "python" and cfg.max_batch_size == group["batch_size"]
    assert [g.kind for g in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert sum(g.count for g in cfg.instance_group) == group["model_instances"]
    # verify measured the served plan and reported every number
    report = json.loads((run / "verify_min_gpus_text.json").read_text())
    assert commands[3]["exit"] == (0 if report["holds"] else 3)
    [m] = report["models"]
    assert m["expected"]["batch_size"] == group["batch_size"]
    assert m["expected"]["throughput_rps"] == pytest.approx(group["throughput_rps"])
    measured = m["measured"]
    assert measured["throughput_rps"] > 0 and measured["requests"] > 0 and measured["server_compute_ms"] > 0
    assert measured["latency_p99_ms"] >= measured["latency_p50_ms"] > 0
    assert measured["server_batch_avg"] == pytest.approx(group["batch_size"])  # whole batches sent, whole run
    end = report["end_to_end"]
    assert end["projected_s"] > 0 and end["deadline_met"] is not None
    with (results / "onnx_chain.csv").open(newline="") as fh:
        [row] = list(csv.DictReader(fh))
    assert row["plan"] == "min_gpus text" and row["exit"] == str(commands[3]["exit"])


@pytest.mark.parametrize("example, instances", [("min_gpus.yaml", None),
                                                ("max_throughput.yaml", 2),
                                                ("min_gpus_text.yaml", None)])
def test_example_problem_files_write_a_servable_repository(tmp_path: Path, example: str,
                                                           instances: int | None) -> None:
    """The examples solve from their shipped profiles into a repository that holds the ONNX file (no server)."""
    import json

    import yaml

    from tritonclient.grpc import model_config_pb2 as mc

    path = ROOT / "examples" / "onnx_chain" / example
    doc = yaml.safe_load(path.read_text())
    out = tmp_path / "repo"
    assert main(["solve", str(path), "--triton-backend", "python", "--out", str(out)]) == 0
    summary = json.loads((out / "servopt.json").read_text())
    assert not summary["config_only"] and summary["missing"] == []
    [group] = summary["predictions"]["groups"]
    if instances is not None:  # the budget buys both instances
        assert group["model_instances"] == instances
    model_dir = out / doc["name"]
    onnx = path.parent / doc["model_file"]
    assert (model_dir / "1" / "model.onnx").read_bytes() == onnx.read_bytes()
    cfg = _config(model_dir / "config.pbtxt")
    assert cfg.backend == "python" and cfg.max_batch_size == group["batch_size"]
    assert [g.kind for g in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert sum(g.count for g in cfg.instance_group) == group["model_instances"]
    # the tensors are the ONNX graph's, as profile --triton start served them
    from servopt.triton.artifacts import onnx_tensors

    inputs, _ = onnx_tensors(onnx)
    assert [(t.name, list(t.dims)) for t in cfg.input] == [(n, list(d)) for n, _, d in inputs]
