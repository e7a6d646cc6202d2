"""Review group 3: CP-SAT scaling messages in plain numbers and the command line's words; options refused where
they do not apply (a ``triton:`` key of another problem kind, ``import`` flags, ``solve --scale``, ``profile``'s
served-model flags); help generated from the registries; ``profile``'s missing MODEL named; ``run_policy`` given
options positionally; the tritonserver install announced before it starts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from servopt.cli import main
from servopt.exceptions import CapabilityError, ValidationError
from servopt.model import Model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

SMALL = {
    "problem": "min_gpus",
    "images": 10_000,
    "deadline_s": 10,
    "objective": "cost",
    "gpus": [
        {"hardware": "A100", "max_count": 4, "cost_per_hour": 3.06, "batches": {64: {"latency_ms": 20.0}}},
        {"hardware": "T4", "max_count": 8, "cost_per_hour": 0.5, "batches": {64: {"latency_ms": 60.0}}},
    ],
}


def write(tmp_path: Path, data: dict, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def toy(coefficient: float) -> Model:
    m = Model("toy")
    x = m.add_var("x", kind="integer", ub=3)
    m.add_constraint(coefficient * x <= 1.0, name="cap")
    m.maximize(x)
    return m


# ------------------------------------------------------------------ 1. CP-SAT scaling: plain numbers, CLI flags
def test_scaling_error_shows_plain_numbers_and_the_factor() -> None:
    import servopt

    m = Model("toy")
    x = m.add_var("x", kind="integer", ub=3)
    m.add_constraint(x <= 2)
    m.minimize(3.06 * x)
    with pytest.raises(CapabilityError) as exc:
        servopt.solve(m, "cpsat", scale=10)
    text = str(exc.value)
    assert "is 3.06 and with scale=10 it becomes 30.6, not an integer; pass scale=100," in text
    assert "np." not in text
    with pytest.raises(CapabilityError) as exc:  # a factor of a million, written out
        servopt.solve(toy(1e-6), "cpsat", scale=10)
    assert "pass scale=1000000," in str(exc.value) and "e+06" not in str(exc.value)
    with pytest.raises(CapabilityError) as exc:  # without scale=: the capability check names the factor too
        servopt.solve(m, "cpsat")
    assert "or pass scale=100 to solve on CP-SAT" in str(exc.value)


def test_solve_cli_gives_the_advice_in_its_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, SMALL)
    code, _, err = run(capsys, "solve", path, "--backend", "cpsat", "--scale", "10")
    assert code == 2 and "np." not in err
    assert "is 3.06 and with --scale 10 it becomes 30.6, not an integer; pass --scale 100, or use --backend highs" \
        in err
    code, _, err = run(capsys, "solve", path, "--backend", "cpsat")
    assert code == 2 and "pass --scale 100 to solve on CP-SAT" in err
    assert run(capsys, "solve", path, "--backend", "cpsat", "--scale", "100")[0] == 0


# ------------------------------------------------------------------ 2. options refused where they do not apply
@pytest.mark.parametrize("extra, said", [
    (["--backend", "highs"], "not with --backend highs"),
    ([], "not with --backend auto (the default"),
    (["--policy", "greedy"], "not with --policy greedy"),
])
def test_scale_needs_the_cpsat_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                       said: str) -> None:
    code, out, err = run(capsys, "solve", write(tmp_path, SMALL), "--scale", "100", *extra)
    assert code == 2 and out == ""
    assert "--scale applies only with --backend cpsat" in err and said in err


def test_triton_max_batch_size_is_refused_for_a_gpu_plan(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {**SMALL, "objective": "gpus", "triton": {"max_batch_size": 4}}, "mbs.yaml")
    code, out, err = run(capsys, "solve", path, "--out", tmp_path / "repo")
    assert code == 2 and out == "" and not (tmp_path / "repo").exists()
    assert f"{path}: key 'triton.max_batch_size': applies only to variant_selection problems" in err
    assert "min_gpus" in err
    assert run(capsys, "solve", path)[0] == 0  # without --out the section is not used


def test_triton_keys_by_problem_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from servopt.formulations.registry import load_problem
    from servopt.triton.spec import parse_triton_section

    variants = load_problem(EXAMPLES / "variant_selection_infadapter.yaml")
    fleet = load_problem(EXAMPLES / "fleet_mixed.yaml")
    pipeline = load_problem(EXAMPLES / "pipeline_video.yaml")
    assert parse_triton_section({"max_batch_size": 4}, "v.yaml", used_by=variants).max_batch_size == 4
    assert parse_triton_section({"gpus_per_node": 4}, "g.yaml", used_by=fleet).gpus_per_node == 4
    with pytest.raises(ValidationError, match=r"p\.yaml: key 'triton\.max_batch_size': applies only to "
                                              r"variant_selection problems, not to this pipeline problem"):
        parse_triton_section({"max_batch_size": 4}, "p.yaml", used_by=pipeline)
    with pytest.raises(ValidationError, match=r"key 'triton\.gpus_per_node': applies only to min_gpus, "
                                              r"max_throughput and fleet problems, not to this variant_selection"):
        parse_triton_section({"gpus_per_node": 4}, "p.yaml", used_by=variants)
    # a pipeline problem file, through the command line
    data = yaml.safe_load((EXAMPLES / "pipeline_video.yaml").read_text())
    data["triton"] = {**(data.get("triton") or {}), "max_batch_size": 4}
    (tmp_path / "models").symlink_to(EXAMPLES / "models")
    code, _, err = run(capsys, "solve", write(tmp_path, data), "--out", tmp_path / "repo")
    assert code == 2 and "key 'triton.max_batch_size'" in err and not (tmp_path / "repo").exists()


@pytest.mark.parametrize("argv, said", [
    (["profile", ROOT / "profiles" / "nvidia_resnet50_triton.csv", "--model", "x"],
     "servopt import profile: --model does not apply"),
    (["perf-analyzer", "r50_b1.csv", "--model", "m", "--hardware", "T4", "--sla-ms", "5"],
     "servopt import perf-analyzer: --sla-ms does not apply"),
    (["infadapter", ROOT / "data" / "infadapter" / "capacity_result_Feb_21.csv", "--hardware", "T4"],
     "servopt import infadapter: --hardware does not apply"),
])
def test_import_refuses_options_its_kind_does_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       argv: list, said: str) -> None:
    code, _, err = run(capsys, "import", *argv, "-o", tmp_path / "out.csv")
    assert code == 2 and said in err and not (tmp_path / "out.csv").exists()
    assert "it is for " in err


def test_import_still_takes_the_options_it_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = ROOT / "data" / "infadapter" / "capacity_result_Feb_21.csv"
    assert run(capsys, "import", "infadapter", csv, "--sla-ms", "750", "--model", "r", "-o", tmp_path / "a.csv")[0] == 0
    assert run(capsys, "import", "infadapter", csv, "-o", tmp_path / "b.csv")[0] == 0  # --sla-ms default 750
    assert (tmp_path / "a.csv").read_text().count("\n") == (tmp_path / "b.csv").read_text().count("\n")
    code, _, err = run(capsys, "import", "infadapter", csv, "--variant", "v", "-o", tmp_path / "c.csv")
    assert code == 2 and "--variant does not apply; it is for perf-analyzer, model-analyzer" in err


@pytest.mark.parametrize("extra", [["--concurrency", "2"], ["--request-rate", "10"], ["--window", "1"],
                                   ["--driver", "builtin"], ["--instances", "2"]])
def test_profile_served_model_flags_need_triton(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                extra: list[str]) -> None:
    code, _, err = run(capsys, "profile", tmp_path / "m.onnx", "--batch-sizes", "1", "--input-sizes", "16",
                       *extra, "-o", tmp_path / "p.csv")
    assert code == 2 and f"{extra[0]} only applies with --triton" in err


def test_profile_model_name_flag_without_triton(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "profile", tmp_path / "m.onnx", "--batch-sizes", "1", "--input-sizes", "16",
                       "--model", "x", "-o", tmp_path / "p.csv")
    assert code == 2 and "--model NAME only applies with --triton URL" in err and "--model-name" in err


# ------------------------------------------------------------------ 3. help from the registries
def test_solve_help_lists_every_kind_policy_and_backend(capsys: pytest.CaptureFixture[str]) -> None:
    from servopt.backends import REGISTRY
    from servopt.formulations.registry import PROBLEM_KINDS
    from servopt.policies import POLICIES

    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    out = capsys.readouterr().out
    assert "problem: " + " | ".join(PROBLEM_KINDS) in out
    policy_help = " ".join(out.split("\n  --policy NAME", 1)[1].split("Triton output", 1)[0].split())
    for name in POLICIES:
        assert name in policy_help
    assert "fleet_ffd, fleet_one_per_gpu, fleet_cheapest_type (fleet)" in policy_help
    backend_help = " ".join(out.split("\n  --backend NAME", 1)[1].split("\n  --time-limit", 1)[0].split())
    assert all(name in backend_help for name in REGISTRY)
    readme = (ROOT / "README.md").read_text()
    assert "four MILPs" not in readme
    assert "the five problem kinds" in readme and len(PROBLEM_KINDS) == 5


# ------------------------------------------------------------------ 4. profile: MODEL and --input-sizes
def test_profile_names_the_missing_model_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nope = tmp_path / "nope.onnx"
    code, _, err = run(capsys, "profile", nope, "--batch-sizes", "1", "-o", tmp_path / "p.csv")
    assert code == 2 and f"MODEL {nope}: no such ONNX file" in err and "--input-sizes" not in err
    nope.write_bytes(b"")
    code, _, err = run(capsys, "profile", nope, "--batch-sizes", "1", "-o", tmp_path / "p.csv")
    assert code == 2 and "--input-sizes LIST is required" in err and "MODEL" not in err
    code, _, err = run(capsys, "profile", "--batch-sizes", "1", "--input-sizes", "16", "-o", tmp_path / "p.csv")
    assert code == 2 and "MODEL is required" in err
    code, _, err = run(capsys, "profile", tmp_path / "gone.onnx", "--triton", "start", "--batch-sizes", "1",
                       "-o", tmp_path / "p.csv")
    assert code == 2 and "no such ONNX file" in err and "starting a tritonserver" not in err


def test_profile_usage_shows_what_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["profile", "--help"])
    out = capsys.readouterr().out
    assert "usage: servopt profile MODEL.onnx --batch-sizes LIST --input-sizes LIST -o OUT.csv" in out
    assert "servopt profile --triton URL --model NAME --batch-sizes LIST -o OUT.csv" in out
    assert "[--input-sizes LIST]" not in out


# ------------------------------------------------------------------ 5. run_policy with options positionally
def test_run_policy_says_to_pass_options_by_name() -> None:
    from servopt.formulations.registry import load_problem
    from servopt.policies import run_policy

    problem = load_problem(EXAMPLES / "pipeline_video.yaml")
    with pytest.raises(ValidationError, match=r"params must be a SolveParams or None, got dict; policy options go "
                                              r"in options=, e\.g\. run_policy\(problem, 'fa2', "
                                              r"options=\{'variants': 'highest'\}\)"):
        run_policy(problem, "fa2", {"variants": "highest"})
    with pytest.raises(ValidationError, match="options must be a mapping"):
        run_policy(problem, "fa2", options=["variants"])
    assert run_policy(problem, "fa2", options={"variants": "highest"}).plan is not None


# ------------------------------------------------------------------ 6. the tritonserver install is announced
def test_tritonserver_install_is_announced_before_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import servopt.serving.tritonserver as ts

    said_before: list[str] = []

    def fake_run(cmd, **kwargs):  # what stderr held when the first install step ran; then the step fails
        said_before.append(capsys.readouterr().err)
        return subprocess.CompletedProcess(cmd, 1, "", "no network")

    monkeypatch.delenv("SERVOPT_TRITON_VENV", raising=False)
    monkeypatch.setattr(ts, "default_venv", lambda: tmp_path / ".triton-venv")
    monkeypatch.setattr(ts.shutil, "which", lambda name: None)
    monkeypatch.setattr(ts.subprocess, "run", fake_run)
    with pytest.raises(ts.TritonSetupError):
        ts.resolve_env()
    notice = said_before[0]
    assert "installing a tritonserver environment (nvidia-pytriton, numpy<2, onnxruntime; about 450 MB" in notice
    assert f"into {tmp_path / '.triton-venv'}, because no --tritonserver PATH was given and there is no " \
           "tritonserver on PATH; set $SERVOPT_TRITON_VENV=DIR to install it elsewhere" in notice
    assert len(notice.strip().splitlines()) == 1
    # the place $SERVOPT_TRITON_VENV names is said to be that
    monkeypatch.setenv("SERVOPT_TRITON_VENV", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(ts, "default_venv", lambda: tmp_path / "elsewhere")
    with pytest.raises(ts.TritonSetupError):
        ts.ensure_env()
    assert f"into {tmp_path / 'elsewhere'} ($SERVOPT_TRITON_VENV)" in said_before[1]
