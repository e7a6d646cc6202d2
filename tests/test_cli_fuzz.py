"""Fuzzing the command line: random and extreme files and arguments for every subcommand, run in-process.

Whatever the input, ``servopt.cli.main`` must end with exit code 0, 1 or 2, never a traceback, and a run that
fails leaves no output behind. Examples per test: a few dozen by default (the suite stays fast);
``SERVOPT_FUZZ_EXAMPLES=N`` runs N per test.

The strategies include what outside testing found: duplicate keys, ``1e3``-style numbers, integers past int64,
accuracies outside [0, 1], enormous rates and loads, JSON problem files.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servopt.cli import main

EXAMPLES = int(os.environ.get("SERVOPT_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(max_examples=EXAMPLES or 40, deadline=None, derandomize=EXAMPLES is None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

PIPELINE = {
    "problem": "pipeline", "workload_rps": 5, "sla_ms": 800, "alpha": 2, "beta": 1, "delta": 1e-6,
    "stages": [
        {"name": "a", "variants": [
            {"name": "a1", "accuracy": 0.5, "cores": 1, "batches": {1: {"latency_ms": 50.0}, 4: {"latency_ms": 120.0}}},
            {"name": "a2", "accuracy": 0.7, "cores": 2, "batches": {1: {"latency_ms": 90.0}}},
        ]},
        {"name": "b", "variants": [
            {"name": "b1", "accuracy": 0.6, "cores": 1, "batches": {1: {"latency_ms": 40.0}}},
        ]},
    ],
}
VARIANTS = {
    "problem": "variant_selection", "workload_rps": 30, "core_budget": 8, "alpha": 1.0, "beta": 0.05,
    "gamma": 0.001,
    "variants": [
        {"name": "r18", "accuracy": 0.69, "load_time_s": 6.0, "capacity": {1: 10, 2: 22, 4: 40}},
        {"name": "r50", "accuracy": 0.76, "capacity": {1: 5, 2: 11, 4: 21}},
    ],
}
GPUS = {
    "problem": "min_gpus", "images": 100_000, "deadline_s": 10, "objective": "gpus",
    "gpus": [
        {"hardware": "A100", "max_count": 4, "cost_per_hour": 4.0, "batches": {64: {"latency_ms": 20.0}}},
        {"hardware": "T4", "max_count": 8, "cost_per_hour": 0.5, "batches": {64: {"latency_ms": 60.0}}},
    ],
}
BASES = (PIPELINE, VARIANTS, GPUS)


def _number() -> st.SearchStrategy[Any]:
    """Random and extreme numbers."""
    return st.one_of(
        st.sampled_from([0, -1, 1, 2, 0.5, -0.5, 1e-300, 1e12, float("nan"), float("inf"), -float("inf"),
                         10**20, 2**63, -(2**63) - 1, 10**30, 99999999999999999999, 1e300, -1e300, 1.5, 100]),
        st.integers(-10, 10**6),
        st.floats(-1e9, 1e9),
    )


_VALUE = st.one_of(_number(), st.text(max_size=8), st.booleans(), st.none(), st.just([]), st.just({}),
                   st.lists(st.integers(-3, 5), max_size=3))


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def problem_text(draw: st.DrawFn) -> str:
    """A problem file: a valid base mutated at a few places, or garbage."""
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "empty", "garbage", "binary", "scalar", "dup",
                                 "e-notation"]))
    if kind == "empty":
        return ""
    if kind == "garbage":
        return draw(st.text(max_size=60))
    if kind == "binary":
        return draw(st.binary(max_size=60)).decode("latin-1")
    if kind == "scalar":
        return yaml.safe_dump(draw(_VALUE))
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    if kind == "dup":  # a top-level key written twice
        key = draw(st.sampled_from(sorted(doc)))
        return yaml.safe_dump(doc) + f"{key}: {draw(st.sampled_from(['1', '1e3', 'x', '[]']))}\n"
    if kind == "e-notation":  # numbers as people write them: 1e3, 2.5E-2
        key = draw(st.sampled_from([k for k in sorted(doc) if isinstance(doc[k], (int, float))]))
        text = yaml.safe_dump({k: v for k, v in doc.items() if k != key})
        return text + f"{key}: {draw(st.sampled_from(['1e3', '2.5E-2', '1e300', '-1e3', '1E+30']))}\n"
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if path[-1] == "problem":
            continue
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_VALUE)
    return yaml.safe_dump(doc, allow_unicode=True)


def _trace_text() -> st.SearchStrategy[str]:
    rates = st.lists(st.one_of(st.integers(0, 40), st.sampled_from([-1, 0.5, float("nan"), 1e9, 1e300])), max_size=25)
    return st.one_of(rates.map(lambda r: " ".join(map(str, r))), st.text(max_size=40))


def _csv_text(header: str) -> st.SearchStrategy[str]:
    cell = st.one_of(st.sampled_from(["", "0", "-1", "nan", "inf", "1e300", "x", "T4", "m", "8", "224", "3.5"]),
                     st.integers(-5, 500).map(str))
    n = len(header.split(","))
    row = st.lists(cell, min_size=n, max_size=n).map(",".join)
    return st.lists(row, max_size=6).map(lambda rows: header + "\n" + "".join(r + "\n" for r in rows))


def call(argv: list[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors (exit 2) and --help (0)
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    return code, out, err


def _fresh(tmp: Path, name: str) -> Path:
    path = tmp / name
    if path.is_dir():
        import shutil

        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    return path


@pytest.fixture(scope="module")
def fuzzdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(text=problem_text(), as_json=st.booleans(), json_flag=st.booleans(), out=st.booleans(),
       extra=st.lists(st.sampled_from(["--backend", "nope", "highs", "--time-limit", "-1", "0", "--scale", "nan",
                                       "--policy", "greedy", "--kserve", "--force", "--storage-uri", "s3://x"]),
                      max_size=3))
def test_fuzz_solve(fuzzdir, capsys, text, as_json, json_flag, out, extra):
    problem = fuzzdir / "p.yaml"
    if as_json:  # the same document as a JSON problem file (when it is valid YAML at all)
        import json

        try:
            text = json.dumps(yaml.safe_load(text), default=str)
            problem = fuzzdir / "p.json"
        except yaml.YAMLError:
            pass
    problem.write_text(text, encoding="utf-8", errors="surrogateescape")
    repo = _fresh(fuzzdir, "repo")
    argv = ["solve", problem] + (["--json"] if json_flag else []) + (["--out", repo] if out else []) + extra
    code, stdout, _ = call(argv, capsys)
    if json_flag and stdout:
        import json

        json.loads(stdout)
    if code != 0:
        assert not repo.exists()


@FUZZ
@given(text=problem_text(), trace=_trace_text(), swap=st.booleans(),
       extra=st.lists(st.sampled_from(["--slo-ms", "-5", "100", "--timeout-ms", "x", "none", "--seed", "3",
                                       "--damping", "0", "--trace-end", "2", "--headroom", "nan"]), max_size=3))
def test_fuzz_simulate_and_replay(fuzzdir, capsys, text, trace, swap, extra):
    problem, tr = fuzzdir / "p.yaml", fuzzdir / "t.txt"
    problem.write_text(text, encoding="utf-8", errors="surrogateescape")
    tr.write_text(trace, encoding="utf-8", errors="surrogateescape")
    call(["simulate", problem, "--trace", tr] + extra, capsys)
    series = _fresh(fuzzdir, "series.csv")
    pair = [problem, tr] if swap else [tr, problem]
    code, _, _ = call(["replay", *pair, "--interval", "5", "--series", series] + extra, capsys)
    if code != 0:
        assert not series.exists()


PROFILE_HEADER = "model,variant,hardware,input_size,cores,batch_size,latency_ms"
PA_HEADER = "Concurrency,Inferences/Second,Client Send,Server Queue,Server Compute Infer,Client Recv,p99 latency"


@FUZZ
@given(profile=_csv_text(PROFILE_HEADER), pa=_csv_text(PA_HEADER), query=_csv_text("model,hardware,input_size,"
                                                                                    "batch_size"),
       meta=st.lists(st.sampled_from(["--cores", "nan", "-1", "2", "--input-size", "-3", "0", "224",
                                      "--batch-size", "0", "8", "--variant", ""]), max_size=4))
def test_fuzz_import_fit_predict(fuzzdir, capsys, profile, pa, query, meta):
    prof, pa_csv, q = fuzzdir / "prof.csv", fuzzdir / "pa.csv", fuzzdir / "q.csv"
    prof.write_text(profile)
    pa_csv.write_text(pa)
    q.write_text(query)
    out = _fresh(fuzzdir, "out.csv")
    code, _, _ = call(["import", "perf-analyzer", pa_csv, "--model", "m", "--hardware", "T4", *meta, "-o", out],
                      capsys)
    assert out.exists() == (code == 0)
    out = _fresh(fuzzdir, "out.csv")
    code, _, _ = call(["import", "profile", prof, "-o", out], capsys)
    assert out.exists() == (code == 0)
    models = _fresh(fuzzdir, "m.joblib")
    code, _, _ = call(["fit", prof, "-o", models, "--json"], capsys)
    assert models.exists() == (code == 0)
    if code == 0:
        call(["predict", models, q, "--json"], capsys)


@FUZZ
@given(onnx=st.one_of(st.binary(max_size=40), st.just(b"")),
       lists=st.lists(st.sampled_from(["1", "0", "-1", "x", "1,2", "", "99999999999"]), min_size=3, max_size=3),
       extra=st.lists(st.sampled_from(["--device", "cuda", "--resume", "--force", "--time-budget", "nan",
                                       "--memory-limit-mb", "0", "--repeats", "-1"]), max_size=3))
def test_fuzz_profile_without_a_real_model(fuzzdir, capsys, onnx, lists, extra):
    model = fuzzdir / "m.onnx"
    model.write_bytes(onnx)
    out = _fresh(fuzzdir, "prof_out.csv")
    code, _, _ = call(["profile", model, "--batch-sizes", lists[0], "--input-sizes", lists[1], "--cores", lists[2],
                       "-q", "-o", out, *extra], capsys)
    assert code != 0 and not out.exists()


@FUZZ
@given(argv=st.lists(st.one_of(st.sampled_from(["solve", "import", "fit", "predict", "profile", "simulate",
                                                "replay", "backends", "bench", "--json", "--help", "--version",
                                                "nope", "-o", "--force", "perf-analyzer", "--bogus"]),
                               st.text(max_size=6)), max_size=4))
def test_fuzz_arguments(capsys, argv, fuzzdir, monkeypatch):
    if "bench" in argv and not any(a.startswith("-") for a in argv):  # no real benchmark runs: names only
        argv = argv + ["--out", str(fuzzdir / "bench")]
    if argv[:1] == ["bench"] and len(argv) > 1 and argv[1] in ("gpus", "pipeline", "variants"):
        return
    monkeypatch.chdir(fuzzdir)
    call(argv, capsys)


def test_fuzz_examples_are_bounded():
    assert FUZZ.max_examples == (EXAMPLES or 40) and math.isfinite(FUZZ.max_examples)
