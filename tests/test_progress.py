"""Progress on stderr (servopt.progress): drawn on a terminal or with SERVOPT_PROGRESS=1, never with -q or a pipe."""

from __future__ import annotations

import io
import json

import pytest

from servopt.cli import main
from servopt.progress import ENV, Progress, progress_enabled


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_forcing(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


def run_stages(stream, **options) -> str:
    with Progress("servopt fit", stream=stream, **options) as p:
        p.stage("reading 1 profile(s)")
        p.stage("cross-validating latency", 4)
        p.advance()
        p.advance()
    return stream.getvalue()


def test_a_terminal_gets_the_stages_and_the_line_is_erased_at_the_end():
    text = run_stages(FakeTerminal())
    assert "servopt fit: reading 1 profile(s)" in text
    assert "servopt fit: cross-validating latency [##########..........] 2/4" in text
    assert text.endswith("\r\x1b[K")


def test_no_terminal_or_quiet_or_forced_off_draws_nothing(monkeypatch):
    assert run_stages(io.StringIO()) == ""
    assert run_stages(FakeTerminal(), quiet=True) == ""
    monkeypatch.setenv(ENV, "0")
    assert run_stages(FakeTerminal()) == ""


def test_forced_on_draws_on_a_pipe(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    assert "cross-validating latency" in run_stages(io.StringIO())
    assert not progress_enabled(quiet=True)  # -q wins over the environment


def test_nothing_is_drawn_before_the_delay():
    assert run_stages(FakeTerminal(), delay=3600.0) == ""


def test_the_background_redraw_shows_a_blocking_stage_and_stops():
    import threading
    import time

    stream = FakeTerminal()
    with Progress("servopt solve", stream=stream, tick=0.01) as p:
        p.stage("solving min_gpus (backend auto)")
        before = stream.getvalue().count("\r")
        deadline = time.monotonic() + 30
        while stream.getvalue().count("\r") < before + 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # the redraw thread draws again while this thread is busy elsewhere
    assert stream.getvalue().count("servopt solve: solving min_gpus (backend auto)") >= 2
    assert not any(t.name == "servopt-progress" for t in threading.enumerate())


def test_servopt_fit_reports_its_stages_on_stderr_only_when_asked(root, capsys, monkeypatch):
    profile = str(root / "profiles" / "nvidia_resnet50_triton.csv")
    assert main(["fit", profile, "--json", "--targets", "latency"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "latency" in json.loads(out)  # stderr is not a terminal here: nothing
    monkeypatch.setenv(ENV, "1")
    assert main(["fit", profile, "--json", "--targets", "latency"]) == 0
    out, err = capsys.readouterr()
    assert "servopt fit: reading 1 profile(s)" in err and "servopt fit: cross-validating latency" in err
    assert "latency" in json.loads(out)  # stdout keeps exactly the JSON object
    assert main(["fit", profile, "--json", "--targets", "latency", "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_servopt_solve_reports_slow_steps(root, capsys, monkeypatch):
    import servopt.cli.solve as solve_cli

    example = str(root / "examples" / "pipeline_video.yaml")
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setattr(solve_cli, "SLOW_S", 3600.0)
    assert main(["solve", example, "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and json.loads(out)["status"] == "optimal"  # shorter than SLOW_S: nothing is drawn
    monkeypatch.setattr(solve_cli, "SLOW_S", 0.0)
    assert main(["solve", example, "--json"]) == 0
    out, err = capsys.readouterr()
    assert "servopt solve: reading" in err and "servopt solve: solving pipeline (backend auto)" in err
    assert json.loads(out)["status"] == "optimal"
    assert main(["solve", example, "--json", "-q"]) == 0
    assert capsys.readouterr().err == ""
