"""`servopt replay` / `servopt simulate` options: invalid values are refused when parsed, naming the option;
options that would be ignored are refused, naming the option and why; the printed plan says what is simulated.

Before these fixes `--static-rps abc` with `--policy servopt`, `--bucket 0 --span -3` with `--forecaster max`,
`--window -5` with `--forecaster ewma` and `--headroom 5 --servers single` with a pipeline all exited 0; bad values
that were checked were reported under the library's parameter names (`interval_s must be ...`), and `--seed -1`
ended in a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servopt.cli import main

PIPELINE = "examples/pipeline_video.yaml"
VS = "examples/variant_selection_infadapter.yaml"
IPA_TRACE = "data/ipa/traces/twitter_slice_steady_high_damping8.csv"
INF_TRACE = "data/infadapter/twitter_window_day15_min82-103_per_second.txt"


def _run(capsys, root: Path, *argv: str) -> tuple[int, str, str]:
    args = [str(root / a) if a.startswith(("examples/", "data/")) else a for a in argv]
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _replay(capsys, root: Path, *extra: str) -> tuple[int, str, str]:
    return _run(capsys, root, "replay", IPA_TRACE, PIPELINE, "--trace-end", "60", "--interval", "30", *extra)


# ------------------------------------------------------------------------- values refused when parsed
@pytest.mark.parametrize("extra, expected", [
    (["--interval", "-5"], "argument --interval: expected seconds > 0, got '-5'"),
    (["--apply-delay", "-1"], "argument --apply-delay: expected seconds >= 0 or 'load', got '-1'"),
    (["--scale-down-delay", "-1"], "argument --scale-down-delay: expected seconds >= 0, got '-1'"),
    (["--min-change", "1.5"], "argument --min-change: expected a fraction in [0, 1), got '1.5'"),
    (["--forecaster", "max", "--window", "0"], "argument --window: expected a whole number of seconds >= 1"),
    (["--forecaster", "ewma", "--window", "-5"], "argument --window: expected a whole number of seconds >= 1"),
    (["--forecaster", "ewma", "--bucket", "0"], "argument --bucket: expected a whole number of seconds >= 1"),
    (["--forecaster", "max", "--bucket", "0", "--span", "-3"], "argument --bucket: expected a whole number"),
    (["--forecaster", "ewma", "--span", "-3"], "argument --span: expected a number >= 1, got '-3'"),
    (["--margin", "-1"], "argument --margin: expected a number > -1"),
    (["--policy", "servopt", "--static-rps", "abc"], "argument --static-rps: expected max, mean or a number > 0"),
    (["--headroom", "1.5"], "argument --headroom: expected a fraction in (0, 1], got '1.5'"),
    (["--headroom", "nan"], "argument --headroom: expected a fraction in (0, 1], got 'nan'"),
    (["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (["--damping", "0"], "argument --damping: expected a number > 0, got '0'"),
    (["--trace-start", "-1"], "argument --trace-start: expected a whole second >= 0"),
    (["--slo-ms", "inf"], "argument --slo-ms: expected a number of milliseconds > 0, got 'inf'"),
])
def test_bad_values_are_refused_naming_the_option(capsys, root, extra, expected) -> None:
    with pytest.raises(SystemExit) as info:
        _replay(capsys, root, *extra)
    err = capsys.readouterr().err
    assert info.value.code == 2 and expected in err and "Traceback" not in err


def test_a_bad_value_with_json_is_one_json_object(capsys, root) -> None:
    with pytest.raises(SystemExit):
        _replay(capsys, root, "--interval", "-5", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "error" and "--interval" in data["message"]


# ------------------------------------------------------------------- options that would be ignored
@pytest.mark.parametrize("extra, expected", [
    (["--policy", "servopt", "--static-rps", "50"], "--static-rps only applies with --policy static"),
    (["--forecaster", "max", "--bucket", "60"], "--bucket only applies with --forecaster ewma; the forecaster is max"),
    (["--forecaster", "max", "--span", "5"], "--span only applies with --forecaster ewma"),
    (["--forecaster", "ewma", "--window", "60"], "--window only applies with --forecaster max; the forecaster is ewma"),
    (["--window", "60"], "--window only applies with --forecaster max; the forecaster is last (the default)"),
    (["--policy", "static", "--min-change", "0.1"], "--min-change does not apply to --policy static"),
    (["--policy", "static", "--forecaster", "max"], "--forecaster does not apply to --policy static"),
    (["--policy", "static", "--apply-delay", "load"], "--apply-delay does not apply to --policy static"),
    (["--policy", "fa2,rim", "--backend", "highs"], "--backend only applies to the policies that solve"),
    (["--headroom", "0.5"], "--headroom only applies to variant_selection problems"),
    (["--servers", "single"], "--servers only applies to variant_selection problems"),
])
def test_options_that_do_not_apply_are_refused(capsys, root, extra, expected) -> None:
    code, out, err = _replay(capsys, root, *extra)
    assert code == 2 and expected in err and "Traceback" not in err and out == ""


def test_simulate_refuses_pod_options_for_a_pipeline(capsys, root) -> None:
    with pytest.raises(SystemExit) as info:
        _run(capsys, root, "simulate", PIPELINE, "--trace", IPA_TRACE, "--headroom", "5", "--servers", "single")
    assert info.value.code == 2 and "argument --headroom: expected a fraction in (0, 1]" in capsys.readouterr().err
    code, _, err = _run(capsys, root, "simulate", PIPELINE, "--trace", IPA_TRACE, "--servers", "single")
    assert code == 2 and "--servers only applies to variant_selection problems" in err
    assert "pipeline_video.yaml is a pipeline problem" in err


def test_options_that_apply_still_run(capsys, root) -> None:
    """Regression guard: each option with the policy or forecaster it belongs to is accepted."""
    for extra in (["--forecaster", "max", "--window", "60", "--margin", "0.1"],
                  ["--forecaster", "ewma", "--span", "5", "--bucket", "10", "--scale-down-delay", "30"],
                  ["--policy", "servopt,static", "--static-rps", "mean", "--apply-delay", "load",
                   "--min-change", "0.1"]):
        code, out, err = _replay(capsys, root, *extra, "--json")
        assert code == 0, err
        assert json.loads(out)["policies"]
    code, _, err = _run(capsys, root, "replay", INF_TRACE, VS, "--slo-ms", "750", "--trace-end", "60",
                        "--headroom", "0.7", "--servers", "single")
    assert code == 0, err


# ------------------------------------------------------------------------- what the printed plan says
@pytest.mark.parametrize("servers, expected", [
    ("single", "resnet50: 1 server x 13 cores, batch 1"),
    ("per_core", "resnet50: 13 servers x 1 core, batch 1"),
])
def test_simulate_prints_what_is_simulated(capsys, root, servers, expected) -> None:
    code, out, err = _run(capsys, root, "simulate", VS, "--trace", INF_TRACE, "--slo-ms", "750", "--trace-end",
                          "60", "--servers", servers)
    assert code == 0, err
    assert expected in out.splitlines()[0]
