"""A Python backend stub that dies while its model loads is reported at once, not after the 600 s start-up timeout.

Measured on tritonserver 2.51 (nvidia-pytriton's): when the stub process of a Python-backend model ends before
answering the server (a ``triton_python_backend_stub`` that cannot start, a model.py that exits or crashes at
import), the server neither fails the model nor opens its endpoints: it waits for the stub forever and leaves it a
zombie. A model whose ``initialize()`` raises is answered: it fails at once (UNAVAILABLE, with Triton's reason)
and the server comes up. :class:`TritonServer` ends the wait as soon as a child of the server stays a zombie.

The unit tests run a fake tritonserver that leaves a dead child unreaped (and one that reaps it); the ``triton``
tests use the real CPU server (a stub that cannot start, through ``servopt verify --start``; a model.py that exits
at import; a missing model.py, whose stub logs why and crashes; a model that raises in ``initialize()``; a slow
healthy start, which must be waited for).
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from servopt.serving.tritonserver import TritonCheckError, TritonEnv, TritonServer

# -- a fake tritonserver: a Python script that writes Triton's log lines and forks a "stub" --------------------

_FAKE_SERVER = """\
import os, signal, sys, time
def log(text):
    print('I1208 00:00:00.000000 %d model_lifecycle.cc:472] "%s"' % (os.getpid(), text), flush=True)
log("loading: /r::slow:1")
log("loading: /r::broken:1")
stub = os.fork()
if stub == 0:
    os.write(2, b"fake stub: cannot start\\n")
    {end_stub}
time.sleep(0.3)
log("successfully loaded '/r::slow'")
{then}
"""


def _fake_env(tmp_path: Path, *, end_stub: str, then: str) -> TritonEnv:
    """A TritonEnv whose server is the fake above (never live: no HTTP endpoint)."""
    server = tmp_path / "fake" / "tritonserver"
    (tmp_path / "fake" / "backends" / "python").mkdir(parents=True)
    server.write_text(f"#!{sys.executable}\n" + _FAKE_SERVER.format(end_stub=end_stub, then=then))
    server.chmod(0o755)
    stub = tmp_path / "fake" / "stub"
    stub.write_text("")
    return TritonEnv(venv=tmp_path, python=Path(sys.executable), server=server, libs=tmp_path,
                     backends=tmp_path / "fake" / "backends", stub=stub)


@pytest.mark.parametrize("end_stub, how", [
    ("os._exit(7)", "exited with code 7"),
    ("os.kill(os.getpid(), signal.SIGKILL)", "was killed by SIGKILL (signal 9)"),
])
def test_a_dead_stub_the_server_does_not_reap_ends_the_start(tmp_path: Path, end_stub: str, how: str) -> None:
    env = _fake_env(tmp_path, end_stub=end_stub, then="time.sleep(600)")
    server = TritonServer(env, [tmp_path], tmp_path / "work", startup_timeout_s=120)
    server.workdir.mkdir()
    with pytest.raises(TritonCheckError) as info:
        server.start()
    first = str(info.value).splitlines()[0]
    # 'slow' loaded while the dead stub was waited on: only 'broken' is named
    assert first.startswith(f"model 'broken' did not load: its Python backend stub {how} before answering "
                            "tritonserver, and tritonserver waits for such a stub forever: servopt stopped it after")
    assert info.value.reason == "fake stub: cannot start"
    assert server.proc is None


def test_a_stub_the_server_reaps_is_not_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that ends and is reaped (as Triton does for a stub that answered) is no reason to stop: the fake
    server reaps it when told, then exits, so the start fails on the exit, not on the stub.

    Deterministic, whatever the machine's load: the server's clock is a fake one that stands still until its
    poll has seen the zombie and 'slow' has loaded (so only the dead stub could stop the start), then moves 0.25 s
    per poll; at half of ``dead_stub_s`` the server is told to reap and the fake clock waits (real time) for it to
    exit, so the zombie is never older than 1 s on that clock. Told to reap only after ``dead_stub_s``, the same
    test fails: the start reports the stub."""
    from servopt.serving import tritonserver

    reap, reaped = tmp_path / "reap", tmp_path / "reaped"
    then = (f"while not os.path.exists({str(reap)!r}): time.sleep(0.01)\n"
            f"os.waitpid(stub, 0)\nopen({str(reaped)!r}, 'w').close()")
    env = _fake_env(tmp_path, end_stub="os._exit(7)", then=then)
    server = TritonServer(env, [tmp_path], tmp_path / "work", startup_timeout_s=120, dead_stub_s=2.0)
    server.workdir.mkdir()
    real_sleep, real_clock = tritonserver.time.sleep, tritonserver.time.monotonic
    hang_guard = real_clock() + 120  # only against a hung fake server; never decides the outcome
    clock = {"now": 0.0, "seen": None}

    def sleep(seconds: float) -> None:
        assert real_clock() < hang_guard, "the fake tritonserver hung"
        real_sleep(0.005)
        if clock["seen"] is None:
            if not server._zombies or "successfully loaded '/r::slow'" not in server.log():
                return  # the poll has not seen the dead stub (or 'slow' is loading): the fake clock stands still
            clock["seen"] = clock["now"]
        clock["now"] += seconds
        if clock["now"] - clock["seen"] >= server.dead_stub_s / 2 and not reap.exists():
            reap.touch()
            while server.proc.poll() is None:  # reaped and exited before the clock moves on
                assert real_clock() < hang_guard, "the fake tritonserver did not reap its stub"
                real_sleep(0.01)

    monkeypatch.setattr(tritonserver, "time", SimpleNamespace(monotonic=lambda: clock["now"], sleep=sleep))
    with pytest.raises(TritonCheckError, match="tritonserver exited with code 0 during start-up"):
        server.start()
    assert reaped.exists() and clock["seen"] is not None  # the zombie was seen, then reaped: not reported


# -- the real CPU tritonserver ------------------------------------------------------------------------------------

CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 0
input [{{ name: "X" data_type: TYPE_FP32 dims: [1] }}]
output [{{ name: "Y" data_type: TYPE_FP32 dims: [1] }}]
instance_group [{{ kind: KIND_CPU count: {count} }}]
"""

ECHO = """\
import time
import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def initialize(self, args):
        time.sleep({sleep_s})
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X")
                .as_numpy())]) for r in requests]
"""

#: a triton_python_backend_stub in a model's folder, used instead of the server's: one that cannot start (as one
#: built for another Python does: "error while loading shared libraries: libpython3.X.so.1.0"); it exits 1, also
#: when Triton runs it without arguments first (any other code there makes Triton chmod it)
BROKEN_STUB = "#!/bin/sh\necho 'servopt test: this stub cannot start' >&2\nexit 1\n"


@pytest.fixture(scope="module")
def triton_env():
    from servopt.serving.tritonserver import TritonSetupError, ensure_env

    try:
        return ensure_env()
    except TritonSetupError as exc:
        pytest.fail(f"could not set up the tritonserver environment:\n{exc}", pytrace=False)


def _repository(tmp_path: Path, model_py: str, *, name: str = "m", count: int = 1) -> Path:
    repo = tmp_path / "repo"
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(CONFIG.format(name=name, count=count))
    (repo / name / "1" / "model.py").write_text(model_py)
    return repo


def _processes_under(path: Path) -> list[str]:
    """Command lines of the running processes that name ``path`` (a server or stub left behind)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline and entry.isdigit() and int(entry) != os.getpid():
            found.append(cmdline)
    return found


@pytest.mark.triton
@pytest.mark.slow
def test_verify_start_reports_a_stub_that_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], triton_env) -> None:
    """The measured case of the issue: before, ``verify --start`` waited 600 s and said only 'not live'."""
    import tempfile

    import servopt
    from servopt.cli import main
    from servopt.serving import verify

    pytest.importorskip("tritonclient.grpc")
    gpu = servopt.GPUType("cpu-standin", max_count=4, batches={8: {"latency_ms": 20.0}})
    problem = servopt.MinGPUs(images=1000, deadline_s=10, gpus=[gpu], objective="gpus", name="timed")
    solution = servopt.solve(problem, "highs")
    out = tmp_path / "out"
    servopt.write_repository(problem, solution, out, triton_backend="python")
    verify.add_predictions(out, dict(solution.plan.predictions()))
    stub = out / "timed" / "triton_python_backend_stub"
    stub.write_text(BROKEN_STUB)
    stub.chmod(0o755)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the server's copy and work folder: under tmp_path
    assert main(["verify", str(out), "--start", "--cpu", "--window", "0.5", "--max-windows", "3"]) == 2
    err = capsys.readouterr().err
    assert "--start: model 'timed' did not load: its Python backend stub exited with code 1 before answering" in err
    assert "its log says: servopt test: this stub cannot start" in err
    assert "not live" not in err
    assert _processes_under(tmp_path) == []  # the server and its stubs are gone


@pytest.mark.triton
@pytest.mark.slow
@pytest.mark.parametrize("model_py, how, reason", [
    ("import os\nos._exit(3)\n", "exited with code 3", "nothing from the stub (import the model.py with "),
    (None, "", "Failed to preinitialize Python stub: Python model file not found in "),  # the stub then crashes
], ids=["exits-at-import", "no-model.py"])
def test_a_model_whose_stub_dies_is_reported_with_how_and_why(tmp_path: Path, triton_env, model_py: str | None,
                                                               how: str, reason: str) -> None:
    repo = _repository(tmp_path, model_py or "")
    if model_py is None:
        (repo / "m" / "1" / "model.py").unlink()
    (tmp_path / "work").mkdir()
    server = TritonServer(triton_env, [repo], tmp_path / "work", startup_timeout_s=120)
    with pytest.raises(TritonCheckError) as info:
        server.start()
    assert str(info.value).startswith(f"model 'm' did not load: its Python backend stub {how}")
    assert "before answering tritonserver, and tritonserver waits for such a stub forever" in str(info.value)
    assert info.value.reason.startswith(reason)
    assert _processes_under(tmp_path) == []


@pytest.mark.triton
@pytest.mark.slow
def test_a_model_that_raises_in_initialize_fails_at_once_with_tritons_reason(tmp_path: Path, triton_env) -> None:
    """Triton answers this one itself: the server comes up with the model UNAVAILABLE and the exception."""
    model_py = ("class TritonPythonModel:\n    def initialize(self, args):\n"
                "        raise RuntimeError('servopt test: no')\n")
    repo = _repository(tmp_path, model_py)
    (tmp_path / "work").mkdir()
    with TritonServer(triton_env, [repo], tmp_path / "work", startup_timeout_s=120) as server:
        [(name, state, reason)] = server.not_ready(timeout_s=30)
        assert (name, state) == ("m", "UNAVAILABLE") and "RuntimeError: servopt test: no" in reason
        assert any("failed to load" in line and "servopt test: no" in line for line in server.load_errors())


@pytest.mark.triton
@pytest.mark.slow
def test_a_slow_healthy_start_is_waited_for(tmp_path: Path, triton_env) -> None:
    """Two instances whose initialize() takes longer than ``dead_stub_s``: stubs that live (and the autocomplete
    stub Triton ends and reaps) are no reason to stop."""
    repo = _repository(tmp_path, textwrap.dedent(ECHO.format(sleep_s=3)), count=2)
    (tmp_path / "work").mkdir()
    with TritonServer(triton_env, [repo], tmp_path / "work", startup_timeout_s=120, dead_stub_s=1.0) as server:
        assert server.not_ready(timeout_s=30) == []
