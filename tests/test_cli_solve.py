"""``servopt solve``: JSON contract, table output, exit codes, and messages without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from servopt.backends import backend_names
from servopt.cli import main
from servopt.testing.oracles import check_gpu_plan
from servopt.formulations.registry import load_problem

SMALL = {
    "problem": "min_gpus",
    "images": 100_000,
    "deadline_s": 10,
    "objective": "gpus",
    "gpus": [
        {"hardware": "A100", "max_count": 4, "cost_per_hour": 4.0,
         "batches": {64: {"latency_ms": 20.0, "warmup_ms": 1500}}},
        {"hardware": "T4", "max_count": 8, "cost_per_hour": 0.5, "batches": {64: {"latency_ms": 60.0}}},
    ],
}


def write(tmp_path: Path, data: dict, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["solve", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_one_object_with_the_contract(tmp_path, capsys):
    path = write(tmp_path, SMALL)
    code, out, err = run_cli(capsys, str(path), "--json")
    assert code == 0 and err == ""
    data = json.loads(out)  # exactly one JSON document (json.loads rejects trailing text)
    assert list(data) == ["problem", "status", "objective", "backend", "parse_seconds", "build_seconds",
                          "solve_seconds", "plan", "predictions"]
    assert data["parse_seconds"] > 0 and 0 <= data["build_seconds"] <= data["solve_seconds"]
    assert (data["problem"], data["status"]) == ("min_gpus", "optimal")
    assert data["backend"] in [*backend_names(), "greedy"]  # objective gpus: the exact greedy is the default
    assert data["solve_seconds"] > 0
    assert list(data["plan"]) == ["gpus", "images", "cost_per_hour", "groups"]
    assert all(list(g) == ["hardware", "gpus", "batch_size", "batches_per_gpu", "images"]
               for g in data["plan"]["groups"])
    assert data["objective"] == data["plan"]["gpus"]
    assert check_gpu_plan(load_problem(path), data["plan"]) == []


def test_table_for_people(tmp_path, capsys):
    code, out, err = run_cli(capsys, str(write(tmp_path, SMALL)), "--backend", "highs")
    assert code == 0 and err == ""
    assert out.startswith("min_gpus: optimal (backend highs")
    assert "hardware" in out and "A100" in out and "total" in out


@pytest.mark.parametrize("backend", ["cpsat", "scip"])
def test_other_backends_same_objective(tmp_path, capsys, backend):
    path = write(tmp_path, SMALL)
    code, out, _ = run_cli(capsys, str(path), "--json", "--backend", backend)
    assert code == 0
    assert json.loads(out)["objective"] == 4.0 and json.loads(out)["backend"] == backend


def test_cost_objective_on_cpsat_needs_scale(tmp_path, capsys):
    path = write(tmp_path, {**SMALL, "objective": "cost", "images": 10_000})
    code, _, err = run_cli(capsys, str(path), "--backend", "cpsat")
    assert code == 2 and "--scale" in err and "Traceback" not in err
    code, out, _ = run_cli(capsys, str(path), "--backend", "cpsat", "--scale", "100", "--json")
    assert code == 0 and json.loads(out)["objective"] == 0.5


def test_infeasible_exits_1_with_the_reason(tmp_path, capsys):
    path = write(tmp_path, {**SMALL, "images": 10_000_000})
    code, out, err = run_cli(capsys, str(path))
    assert code == 1 and out == ""
    assert err.startswith("servopt: infeasible: the whole pool processes at most") and "10 M requested" in err
    code, out, err = run_cli(capsys, str(path), "--json")
    assert code == 1 and "10 M requested" in err
    data = json.loads(out)
    assert data["status"] == "infeasible" and data["plan"] is None and data["objective"] is None


@pytest.mark.parametrize(
    "argv, words",
    [
        (["missing.yaml"], ["no such problem file"]),
        (["{bad}", "--time-limit", "-1"], ["--time-limit -1"]),
        (["{bad}", "--kserve"], ["--kserve only applies with --out"]),
        (["{bad}", "--policy", "greedy", "--backend", "highs"], ["either --policy", "or --backend"]),
        (["{bad}", "--backend", "nope"], ["unknown backend 'nope'"]),
        (["{unknown_key}"], ["key 'gpus[0].colour'", "unknown key"]),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, words):
    good = write(tmp_path, SMALL)
    broken = dict(SMALL, gpus=[dict(SMALL["gpus"][0], colour="red")])
    unknown = write(tmp_path, broken, "unknown.yaml")
    argv = [a.replace("{bad}", str(good)).replace("{unknown_key}", str(unknown)) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("servopt: error: ") and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as info:
        main(["solve", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ("examples:", "servopt solve examples/min_gpus_efficientnet.yaml", "exit codes:", "--json",
                 "--out DIR", "--time-limit S", "--policy NAME"):
        assert word in out, word


def test_real_entry_point_without_traceback(tmp_path):
    bad = write(tmp_path, {**SMALL, "deadline_s": "soon"})
    proc = subprocess.run([sys.executable, "-m", "servopt", "solve", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"servopt: error: {bad}: key 'deadline_s': expected a number, got str 'soon'"


def test_main_example_runs_as_it_is(root, capsys, tmp_path):
    """The README's main job: ``servopt solve examples/min_gpus_efficientnet.yaml --out triton-repo --force``."""
    example = root / "examples" / "min_gpus_efficientnet.yaml"
    problem = load_problem(example)
    assert [len(g.batches) for g in problem.gpus] == [9, 9, 6]  # A100/V100 from the shipped profile, T4 inline
    code, out, err = run_cli(capsys, str(example), "--json", "--out", str(tmp_path / "triton-repo"), "--force")
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "optimal" and data["plan"]["images"] >= 10_000_000
    assert {g["hardware"] for g in data["plan"]["groups"]} <= {"A100-80GB", "V100-16GB", "T4"}
    assert check_gpu_plan(problem, data["plan"]) == []
    assert list((tmp_path / "triton-repo").rglob("config.pbtxt"))


def test_out_writes_a_triton_repository_and_refuses_to_overwrite(tmp_path, capsys):
    path = write(tmp_path, {**SMALL, "name": "effnet"})
    out_dir = tmp_path / "repo"
    code, out, err = run_cli(capsys, str(path), "--out", str(out_dir), "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "optimal"  # stdout stays one JSON object; the note goes to stderr
    assert "wrote the Triton model repository" in err
    configs = sorted(out_dir.rglob("config.pbtxt"))
    assert configs and all("effnet" in str(c) for c in configs)
    code, out, err = run_cli(capsys, str(path), "--out", str(out_dir), "--json")
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert json.loads(out) == {"status": "error", "exit_code": 2, "message": err.strip().removeprefix("servopt: error: ")}
    code, out, err = run_cli(capsys, str(path), "--out", str(out_dir), "--force")
    assert code == 0 and "wrote the Triton model repository" in out


def test_policy_on_a_gpu_problem_is_a_clear_error(tmp_path, capsys):
    code, out, err = run_cli(capsys, str(write(tmp_path, SMALL)), "--policy", "greedy")
    assert code == 2 and out == "" and "min_gpus" in err and "Traceback" not in err


def test_help_examples_run(root, capsys):
    """Every example file the help names exists and solves (exit 0)."""
    import re

    from servopt.cli import solve as command

    files = sorted(set(re.findall(r"examples/\S+\.yaml", command.EPILOG)))
    assert len(files) >= 3
    for name in files:
        assert (root / name).exists(), name
        code, _, err = run_cli(capsys, str(root / name))
        assert code == 0, (name, err)


def test_a_plan_not_proven_optimal_says_how_far_it_may_be(monkeypatch, capsys):
    """A plan stopped by --time-limit printed only "feasible": its best bound, gap and the solver's message were
    dropped (a plan 12.5x the optimum looked like any other). A stand-in solver makes the stop deterministic."""
    import dataclasses

    import servopt
    from servopt.result import Result, Status

    real = servopt.solve

    def stopped(problem, *args, **kwargs):
        sol = real(problem, *args, **kwargs)
        result = Result(Status.FEASIBLE, sol.objective, sol.objective / 4, None, "highs", 0.0, 0.0)
        return dataclasses.replace(sol, status=Status.FEASIBLE, result=result,
                                   message="stopped by the time limit: not proven optimal")

    monkeypatch.setattr(servopt, "solve", stopped)
    example = str(Path(__file__).resolve().parents[1] / "examples" / "min_gpus_efficientnet.yaml")
    assert main(["solve", example, "--backend", "highs", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "feasible" and data["best_bound"] == pytest.approx(data["objective"] / 4)
    assert data["gap"] == pytest.approx(0.75) and data["message"].startswith("stopped by the time limit")
    assert main(["solve", example, "--backend", "highs"]) == 0
    assert "not proven optimal (best bound" in capsys.readouterr().err
