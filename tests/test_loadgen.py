"""Load generation (servopt/measure/loadgen.py) and ``servopt profile --triton``.

Unit tests need no server. The ``triton`` tests start one CPU tritonserver (nvidia-pytriton, .triton-venv) with
a timed stand-in model (each execution sleeps 4 ms + 1 ms per item) and measure it with both drivers; the
``perf_analyzer`` ones set perf_analyzer up in .perf-analyzer/ (scripts/perf_analyzer_env.sh) and skip, with
the reason, when that cannot be done (no network, no apt-get download).
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from servopt.cli import main
from servopt.exceptions import ValidationError
from servopt.measure import loadgen

ROOT = Path(__file__).resolve().parents[1]

PA_CSV = """Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,\
Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency
2,392.5,20,300,4100,30,9800,20,5,10200,11900,12500,14800
"""
PA_OUT = """  Pass [1] throughput: 380.0 infer/sec. p99 latency: 15000 usec
  Pass [2] throughput: 400.0 infer/sec. p99 latency: 14500 usec
  Pass [3] throughput: 390.0 infer/sec. p99 latency: 14800 usec
  Request count: 2355
"""


def test_perf_analyzer_csv_parsed_into_points() -> None:
    [p] = loadgen.parse_perf_analyzer_csv(PA_CSV, model="m", batch_size=4, stdout=PA_OUT)
    assert (p.concurrency, p.request_rate, p.batch_size, p.driver) == (2, None, 4, "perf_analyzer")
    assert p.throughput_rps == 392.5 and p.latency_p50_ms == 10.2 and p.latency_p99_ms == 14.8
    assert p.server_queue_ms == pytest.approx(4.1) and p.server_compute_ms == pytest.approx(9.85)
    assert p.requests == 2355 and p.windows == 3 and p.stable
    assert p.throughput_spread == pytest.approx(20 / 390)
    rate = loadgen.parse_perf_analyzer_csv(PA_CSV.replace("Concurrency", "Request Rate"), model="m", batch_size=1,
                                           stdout="Failed to obtain stable measurement")[0]
    assert rate.request_rate == 2 and rate.concurrency is None and not rate.stable


def test_stability_rule_and_settings() -> None:
    assert loadgen.stability([10, 10.9, 9.5], [5, 5, 5], 0.10, 3)
    assert not loadgen.stability([10, 10], [5, 5], 0.10, 3)  # fewer windows than asked
    assert not loadgen.stability([10, 10, 10], [5, 5, 7], 0.10, 3)  # p99 moved
    with pytest.raises(ValidationError, match="stable_windows"):
        loadgen.LoadSettings(stable_windows=5, max_windows=3)


@pytest.mark.parametrize("url", ["10.0.0.1:8001", "example.com:8001", "127.0.0.1", "grpc://8.8.8.8:1"])
def test_only_local_servers(url: str) -> None:
    with pytest.raises(ValidationError, match="127.0.0.1:PORT"):
        loadgen.check_local_url(url)
    assert loadgen.check_local_url("grpc://localhost:8001") == "127.0.0.1:8001"


def test_perf_analyzer_command_reproduces_a_load() -> None:
    cmd = loadgen.perf_analyzer_command("m", 8, concurrency=3, csv_path="o.csv")
    assert cmd[:9] == ["perf_analyzer", "-m", "m", "-u", "127.0.0.1:8001", "-i", "grpc", "-b", "8"]
    assert "--concurrency-range" in cmd and "3:3" in cmd and cmd[-2:] == ["-f", "o.csv"]


def test_profile_rows_round_trip_through_load_profile(tmp_path: Path) -> None:
    from servopt.profiles import load_profile

    [p] = loadgen.parse_perf_analyzer_csv(PA_CSV, model="m", batch_size=4, stdout=PA_OUT)
    out = loadgen.write_profile_rows(loadgen.profile_rows([p], hardware="cpu", instances=2), tmp_path / "p.csv")
    loadgen.write_profile_rows(loadgen.profile_rows([p], hardware="cpu", instances=3), out, append=True)
    frame = load_profile(out).frame
    assert len(frame) == 2 and set(frame["instances"]) == {2, 3}
    assert {"concurrency", "throughput_spread", "server_queue_ms", "latency_p99_ms"} <= set(frame.columns)


def test_profile_triton_needs_a_model_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["profile", "--triton", "127.0.0.1:1", "--batch-sizes", "1", "-o", str(tmp_path / "p.csv")]) == 2
    assert "--model NAME" in capsys.readouterr().err
    assert main(["profile", "--triton", "10.1.1.1:1", "--model", "m", "--batch-sizes", "1",
                 "-o", str(tmp_path / "p.csv")]) == 2


# -- against a real server ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def timed_server(tmp_path_factory: pytest.TempPathFactory):
    from servopt.serving.tritonserver import TritonServer, TritonSetupError, ensure_env
    from servopt.testing.timed_repo import write_timed_model

    try:
        env = ensure_env()
    except TritonSetupError as exc:
        pytest.fail(f"could not set up the tritonserver environment:\n{exc}", pytrace=False)
    work = tmp_path_factory.mktemp("loadgen")
    write_timed_model(work / "repo", "timed", base_ms=4, per_item_ms=1, instances=1)
    with TritonServer(env, [work / "repo"], work) as server:
        yield server


FAST = loadgen.LoadSettings(window_s=0.8, warmup_s=0.3, max_windows=6, stable_windows=3, stability=0.25)


@pytest.mark.triton
def test_builtin_driver_measures_concurrency_and_rate(timed_server) -> None:
    driver = loadgen.BuiltinDriver(f"127.0.0.1:{timed_server.grpc_port}", FAST)
    one = driver.measure("timed", 1, concurrency=1)
    eight = driver.measure("timed", 8, concurrency=1)
    # the model sleeps 4 + 1 x items ms: batch 8 takes longer per request and gives more items per second
    assert 5 <= one.server_compute_ms < 40 and eight.server_compute_ms > one.server_compute_ms + 3
    assert eight.throughput_rps > one.throughput_rps
    assert one.latency_p50_ms <= one.latency_p90_ms <= one.latency_p99_ms
    assert eight.server_batch_avg == pytest.approx(8) and one.requests > 10
    rate = driver.measure("timed", 1, request_rate=40)
    assert rate.request_rate == 40 and rate.concurrency is None
    assert 20 < rate.throughput_rps < 70  # Poisson arrivals at 40/s (a short run: a wide band)


@pytest.mark.triton
def test_profile_cli_from_a_served_model(timed_server, tmp_path: Path) -> None:
    from servopt.profiles import load_profile

    out = tmp_path / "served.csv"
    code = main(["profile", "--triton", f"127.0.0.1:{timed_server.grpc_port}", "--model", "timed",
                 "--batch-sizes", "1,4", "--concurrency", "1,2", "--window", "0.6", "--max-windows", "5",
                 "--stability", "0.25", "-q", "-o", str(out)])
    assert code == 0
    frame = load_profile(out).frame
    assert sorted(zip(frame["batch_size"], frame["concurrency"])) == [(1, 1), (1, 2), (4, 1), (4, 2)]
    assert set(frame["instances"]) == {1} and (frame["throughput_spread"] >= 0).all()


def _perf_analyzer() -> Path:
    found = loadgen.find_perf_analyzer()
    if found is not None:
        return found
    script = ROOT / "scripts" / "perf_analyzer_env.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
    found = loadgen.find_perf_analyzer()
    if found is None:
        pytest.skip(f"perf_analyzer could not be set up by {script} (needs pip download of tritonclient==2.41.0 "
                    f"and apt-get download libb64-0d): {proc.stderr[-500:]}")
    return found


@pytest.mark.triton
@pytest.mark.perf_analyzer
def test_perf_analyzer_driver_gives_the_same_records(timed_server, tmp_path: Path) -> None:
    binary = _perf_analyzer()
    url = f"127.0.0.1:{timed_server.grpc_port}"
    settings = loadgen.LoadSettings(window_s=1.0, max_windows=6, stability=0.25)
    pa = loadgen.PerfAnalyzerDriver(url, settings, binary=binary).measure("timed", 4, concurrency=1)
    builtin = loadgen.BuiltinDriver(url, settings).measure("timed", 4, concurrency=1)
    assert pa.driver == "perf_analyzer" and pa.batch_size == 4 and pa.concurrency == 1
    # the same model measured by both: compute within a factor of 2 on a loaded 2-core machine
    assert 0.5 < pa.server_compute_ms / builtin.server_compute_ms < 2
    assert 0.5 < pa.throughput_rps / builtin.throughput_rps < 2
    out = tmp_path / "pa.csv"
    assert main(["profile", "--triton", url, "--model", "timed", "--batch-sizes", "2", "--driver",
                 "perf_analyzer", "--perf-analyzer", str(binary), "--window", "1", "--stability", "0.3", "-q",
                 "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["driver"] == "perf_analyzer" and float(rows[0]["throughput_rps"]) > 0
