"""Bad or unusual problem files: one clean error (exit 2) naming the file, key and value, or the right answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servopt.cli import main
from servopt.documents import parse_json, parse_yaml
from servopt.exceptions import ValidationError

GPU = "gpus:\n  - {hardware: T4, max_count: 2, batches: {1: {latency_ms: 5.0}}}\n"


def run(tmp_path: Path, name: str, text: str, capsys, *extra: str) -> tuple[int, str, str]:
    path = tmp_path / name
    path.write_text(text)
    code = main(["solve", str(path), *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_huge_image_count_is_refused_before_any_solver(tmp_path, capsys):
    code, _, err = run(tmp_path, "p.yaml", "problem: min_gpus\nimages: 100000000000000000000000\ndeadline_s: 60\n"
                       + GPU, capsys)
    assert code == 2 and "key 'images'" in err and "2^53" in err and "100000000000000000000000" in err


def test_duplicate_keys_are_refused_with_their_line(tmp_path, capsys):
    code, _, err = run(tmp_path, "p.yaml", "problem: min_gpus\nimages: 10\nimages: 20\ndeadline_s: 60\n" + GPU,
                       capsys)
    assert code == 2 and "line 3: key 'images' appears twice" in err
    with pytest.raises(ValidationError, match="appears twice"):
        parse_json('{"a": 1, "a": 2}', "p.json")


def test_yaml_1_2_numbers_are_numbers(tmp_path, capsys):
    code, out, _ = run(tmp_path, "p.yaml", "problem: min_gpus\nimages: 1e3\ndeadline_s: 1e3\n" + GPU, capsys,
                       "--json")
    assert code == 0 and json.loads(out)["status"] == "optimal"
    assert parse_yaml("x: 1E-6\ny: -2.5e+3\nz: '1e3'", "p.yaml") == {"x": 1e-06, "y": -2500.0, "z": "1e3"}


def test_json_problem_files_are_read_as_json(tmp_path, capsys):
    doc = {"problem": "min_gpus", "images": 100, "deadline_s": 1e3,
           "gpus": [{"hardware": "T4", "max_count": 2, "batches": {"1": {"latency_ms": 1e-06}}}]}
    code, out, _ = run(tmp_path, "p.json", json.dumps(doc), capsys, "--json")
    assert code == 0 and json.loads(out)["plan"]["groups"][0]["batch_size"] == 1
    pipe = {"problem": "pipeline", "workload_rps": 5, "sla_ms": 1000,
            "stages": [{"name": "s", "variants": [{"name": "v", "accuracy": 0.5, "cores": 1,
                                                   "batches": {"1": {"latency_ms": 50.0}}}]}]}
    code, out, _ = run(tmp_path, "q.json", json.dumps(pipe), capsys, "--json")
    assert code == 0 and json.loads(out)["status"] == "optimal"


@pytest.mark.parametrize("kind", ["variant_selection", "pipeline"])
def test_accuracies_outside_0_1_are_refused(tmp_path, capsys, kind):
    if kind == "variant_selection":
        text = ("problem: variant_selection\nworkload_rps: 5\ncore_budget: 4\nvariants:\n"
                "  - {name: a, accuracy: 76.1, capacity: {1: 10}}\n")
    else:
        text = ("problem: pipeline\nworkload_rps: 5\nsla_ms: 1000\nstages:\n  - name: s\n    variants:\n"
                "      - {name: v, accuracy: -0.1, cores: 1, batches: {1: {latency_ms: 50.0}}}\n")
    code, _, err = run(tmp_path, "p.yaml", text, capsys)
    assert code == 2 and "accuracy" in err and ("<= 1" in err or ">= 0" in err)


def test_an_unservable_load_is_infeasible_with_the_servable_sentence(tmp_path, capsys):
    text = ("problem: variant_selection\nworkload_rps: 1.0e+300\ncore_budget: 20\nvariants:\n"
            "  - {name: a, accuracy: 0.7, capacity: {1: 10, 2: 20}}\n")
    code, _, err = run(tmp_path, "p.yaml", text, capsys)
    assert code == 1 and "exceeds the largest load the 20-core budget can serve" in err and "20 RPS" in err


@pytest.mark.parametrize("value", ["99999999999999999999", "9223372036854775807"])
def test_profile_batch_sizes_beyond_int32_are_refused_not_wrapped(tmp_path, capsys, value):
    src = tmp_path / "p.csv"
    src.write_text(f"model,hardware,batch_size,latency_ms\nm,T4,{value},5\n")
    out = tmp_path / "out.csv"
    code = main(["import", "profile", str(src), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "column 'batch_size'" in err and value in err and "Traceback" not in err
    assert not out.exists()


def test_a_trace_too_large_to_simulate_is_refused_up_front(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("rps\n" + "1e9\n" * 60)
    code = main(["simulate", str(Path(__file__).resolve().parents[1] / "examples" / "pipeline_video.yaml"),
                 "--trace", str(trace)])
    err = capsys.readouterr().err
    assert code == 2 and "at most 20,000,000 requests" in err and "--damping" in err


def test_a_pipeline_load_beyond_max_replicas_is_infeasible_not_an_overflow(tmp_path, capsys):
    text = (Path(__file__).resolve().parents[1] / "examples" / "pipeline_video.yaml").read_text()
    import re

    text = re.sub(r"(?m)^workload_rps: .*$", "workload_rps: 1000000000000000000000000000000", text)
    text = re.sub(r"(?m)^\s*model_file: .*\n", "", text)  # the example's model files are relative to examples/
    code, _, err = run(tmp_path, "p.yaml", text, capsys)
    assert code == 1 and "cannot serve 1e+30 RPS" in err and "max_replicas" in err
