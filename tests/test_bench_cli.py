"""``servopt bench``: every issue-8 benchmark runs in its quick mode and writes its CSV and PNG."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from servopt.cli import main
from servopt.cli.bench import BENCHMARKS

ROOT = Path(__file__).resolve().parents[1]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_list_names_every_benchmark_and_its_script(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    for name, bench in BENCHMARKS.items():
        assert name in out and bench.script in out
        assert (ROOT / "benchmarks" / bench.script).is_file(), bench.script


def test_usage_errors_exit_2_without_traceback(capsys, tmp_path):
    assert main(["bench"]) == 2
    assert "give a benchmark NAME" in capsys.readouterr().err
    assert main(["bench", "pipeline", "--dir", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["bench", "no-such-benchmark"])
    assert exc.value.code == 2


def test_pipeline_quick(tmp_path):
    assert main(["bench", "pipeline", "--quick", "--out", str(tmp_path)]) == 0
    got = rows(tmp_path / "pipeline.csv")
    assert (tmp_path / "pipeline.png").stat().st_size > 10_000
    dp = [r for r in got if r["method"] == "dp"]
    assert dp and all(r["status"] == "optimal" for r in dp)
    # every exact method that reached optimality agrees with the DP (notes flag any disagreement)
    assert not [r for r in got if "differs from dp" in r["note"] and r["method"] != "ipa-gurobi"]
    assert {r["method"] for r in got} >= {"dp", "greedy", "bruteforce", "milp:highs", "ipa-published", "cli"}
    target = [r for r in got if r["method"] == "cli"]
    assert target and target[0]["status"] == "optimal" and float(target[0]["total_s"]) > 0


def test_variants_quick(tmp_path):
    assert main(["bench", "variants", "--quick", "--out", str(tmp_path)]) == 0
    got = rows(tmp_path / "variants.csv")
    assert (tmp_path / "variants.png").is_file()
    assert {r["method"] for r in got} >= {"dp", "milp:highs", "bruteforce", "greedy", "ms+", "cli"}
    assert not [r for r in got if "differs" in r["note"]]


def test_gpus_quick(tmp_path):
    assert main(["bench", "gpus", "--quick", "--out", str(tmp_path)]) == 0
    got = rows(tmp_path / "gpus.csv")
    assert (tmp_path / "gpus.png").is_file()
    assert {r["formulation"] for r in got} == {"aggregated", "per_gpu"}
    assert not [r for r in got if "disagree" in r["note"]]
    assert any(r["backend"].startswith("cli:") for r in got)
    solved = [r for r in got if r["status"] == "optimal" and not r["backend"].startswith("cli:")]
    assert solved and all(r["plan_ok"] == "True" for r in solved)


def test_prediction_quick(tmp_path):
    assert main(["bench", "prediction", "--quick", "--out", str(tmp_path)]) == 0
    got = rows(tmp_path / "prediction.csv")
    assert (tmp_path / "prediction.png").is_file()
    summary = [r for r in got if r["configuration"] == "all"]
    assert {r["origin"] for r in summary} == {"shipped", "reference"}
    assert all(0 <= float(r["mape"]) for r in summary)


def test_capacity_quick(tmp_path):
    assert main(["bench", "capacity", "--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "capacity_curves.png").is_file()
    curves = {r["candidate"]: r for r in rows(tmp_path / "capacity_curves.csv")}
    assert len(curves) == 22 and float(curves["line"]["feb_750"]) > float(curves["quadratic"]["feb_750"]) > 0
    choice = rows(tmp_path / "capacity_choice.csv")
    chosen = choice[0]
    # the curve chosen on the other three profiles is the one CapacityModel uses, and servopt fit agrees
    assert chosen["candidate"] == "avg(line, origin, quadratic)"
    servopt_750 = next(r for r in choice if r["candidate"] == "CapacityModel()" and r["profile"] == "feb_750")
    assert float(servopt_750["mape"]) == pytest.approx(float(chosen["mape"]), rel=1e-4)
    assert float(servopt_750["line_mape"]) == pytest.approx(float(chosen["line_mape"]), rel=1e-4)


def test_scale_quick(tmp_path):
    import csv

    assert main(["bench", "scale", "--quick", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "scale.csv").open()))
    assert {r["step"] for r in rows} >= {"load_profile", "fit --repeats mean", "load_problem"}
    assert all(r["status"] == "ok" for r in rows), [r["note"] for r in rows if r["status"] != "ok"]


def test_simulate_writes_where_out_says(tmp_path):
    """``servopt bench simulate --out DIR`` was refused ("takes no --out") although the script takes one."""
    assert main(["bench", "simulate", "--quick", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["simulate.csv", "simulate.png", "simulate_md1.csv"]
