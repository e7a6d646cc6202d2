"""What ``problem: fleet`` says to its user: the caps note, the reason a fleet has no plan, the key of a bad
``where:``, and the key table of docs/fleet.md (from a walkthrough, issue 22)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from servopt.exceptions import ValidationError
from servopt.formulations.registry import problem_from_mapping

ROOT = Path(__file__).resolve().parents[1]

#: two models on L4 and A100; b runs on L4 only (the tester's share.yaml)
SHARE = {
    "problem": "fleet", "objective": "cost", "headroom": 0.1,
    "colocation": {"default_slowdown": 2.0,
                   "pairs": [{"models": ["a", "b"], "gpu_type": "L4", "slowdown": 1.2},
                             {"models": ["a", "a"], "gpu_type": "L4", "slowdown": 1.1}]},
    "gpu_types": [{"name": "L4", "count": 3, "memory_mb": 20000, "price_per_hour": 0.8},
                  {"name": "A100", "count": 2, "memory_mb": 80000, "price_per_hour": 3.67}],
    "models": [
        {"name": "a", "rate_rps": 400, "slo_ms": 20, "slo": "p99",
         "performance": {"L4": {"latency_ms": {1: 4.0, 4: 8.0}, "memory_mb": {"instance": 1000, "per_batch": 10}},
                         "A100": {"latency_ms": {1: 2.0, 4: 3.0},
                                  "memory_mb": {"instance": 1000, "per_batch": 10}}}},
        {"name": "b", "rate_rps": 150, "slo_ms": 30, "slo": "mean",
         "performance": {"L4": {"latency_ms": {1: 5.0, 4: 10.0},
                                "memory_mb": {"instance": 1000, "per_batch": 10}}}},
    ],
}


def fleet(**changes):
    """SHARE with ``changes``: top-level keys, or ``b_KEY`` for model b's keys, ``L4_KEY`` for the L4 type's."""
    data = copy.deepcopy(SHARE)
    for key, value in changes.items():
        if key.startswith("b_"):
            data["models"][1][key[2:]] = value
        elif key.startswith("L4_"):
            data["gpu_types"][0][key[3:]] = value
        else:
            data[key] = value
    return problem_from_mapping(data, "fleet.yaml")


def solve(p):
    import servopt

    return servopt.solve(p)


# -- 1. the caps note names the caps given, never None ------------------------------------------------------------

@pytest.mark.parametrize("caps, words", [
    ({"max_models": 1}, "max_models 1: at most 1 model per GPU or slice"),
    ({"max_instances": 1}, "max_instances 1: at most 1 instance per GPU or slice"),
    ({"max_instances": 1, "max_models": 2}, "max_instances 1, max_models 2: at most 1 instance and 2 models per GPU"),
])
def test_the_caps_note_names_only_the_caps_given(caps, words):
    sol = solve(fleet(**caps))
    assert sol.status.value == "feasible"
    note = next(n for n in sol.plan.notes if n.startswith("restricted pattern set"))
    assert words in note and "None" not in note


def test_the_caps_note_in_the_cli_table_and_json(tmp_path, capsys):
    import yaml

    from servopt.cli import main

    data = copy.deepcopy(SHARE)
    data["max_models"] = 1
    path = tmp_path / "cap.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["solve", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "max_models 1: at most 1 model per GPU or slice" in out + err and "None" not in out + err
    assert main(["solve", str(path), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["plan"]["notes"]
    assert any("max_models 1: at most 1 model" in n for n in notes) and not any("None" in n for n in notes)


def test_a_capped_fleet_without_a_plan_names_its_cap():
    """a and b share the one L4 there is; max_models 1 forbids it."""
    data = copy.deepcopy(SHARE)
    data["gpu_types"] = data["gpu_types"][:1]
    data["gpu_types"][0]["count"] = 1
    del data["models"][0]["performance"]["A100"]
    data["models"][0]["rate_rps"], data["models"][1]["rate_rps"] = 50, 50
    assert solve(problem_from_mapping(data, "fleet.yaml")).plan is not None
    data["max_models"] = 1
    sol = solve(problem_from_mapping(data, "fleet.yaml"))
    assert sol.status.value == "infeasible"
    assert sol.message.endswith("with the capped pattern set (max_models 1: at most 1 model per GPU or slice); "
                                "raise or remove the cap")


# -- 2. why there is no plan ----------------------------------------------------------------------------------

def test_a_model_no_batch_of_which_meets_its_slo_is_named_with_its_best_option():
    """b's fastest batch on its only GPU type gives 2 x 5 = 10 ms against slo_ms 5."""
    sol = solve(fleet(b_slo_ms=5, b_slo="p99"))
    assert sol.status.value == "infeasible"
    assert sol.message == ("model 'b': no GPU type with count > 0 has a batch that meets slo_ms 5 (p99: 2 x latency "
                           "<= slo_ms; best: L4 batch 1, 2 x 5 ms = 10 ms)")


def test_a_model_whose_only_gpu_type_has_count_0_is_named():
    sol = solve(fleet(L4_count=0))
    assert sol.status.value == "infeasible"
    assert sol.message.startswith("model 'b': it runs only on GPU type(s) with count 0 (L4)")


def test_a_model_no_batch_of_which_fits_memory_is_named_with_the_smallest():
    data = copy.deepcopy(SHARE)
    data["models"][1]["performance"]["L4"]["memory_mb"] = {"instance": 30000, "per_batch": 10}
    sol = solve(problem_from_mapping(data, "fleet.yaml"))
    assert sol.status.value == "infeasible"
    assert sol.message == ("model 'b': no batch of one instance fits the memory of a GPU or slice it can run on "
                           "(smallest: L4 batch 1, 30010 MB of 20000 MB)")


def test_memory_and_slo_that_hold_only_apart_are_both_named():
    """b fits memory only at batch 1 (too slow for its SLO) and meets its SLO only at batch 4 (too big)."""
    data = copy.deepcopy(SHARE)
    b = data["models"][1]
    b["slo_ms"], b["slo"] = 12, "p99"
    b["performance"]["L4"] = {"latency_ms": {1: 7.0, 4: 5.0}, "memory_mb": {"instance": 19000, "per_batch": 500}}
    sol = solve(problem_from_mapping(data, "fleet.yaml"))
    assert sol.status.value == "infeasible"
    assert sol.message.startswith("model 'b': no GPU or slice with count > 0 has a batch that both fits its memory")
    assert "fastest that fits: L4 batch 1, 2 x 7 ms = 14 ms" in sol.message
    assert "smallest that meets the SLO: L4 batch 4, 21000 MB of 20000 MB" in sol.message


def test_a_rate_beyond_every_gpu_the_model_can_use_is_named():
    sol = solve(fleet(b_rate_rps=15000))
    assert sol.status.value == "infeasible"
    assert sol.message.startswith("model 'b' needs 16500 RPS (rate_rps 15000 x (1 + headroom 0.1)), and the 3 GPU(s) "
                                  "it can run on, serving it alone, give at most 1200 RPS (L4: 3 x 400 RPS)")


def test_models_that_fit_alone_but_not_together_keep_the_generic_reason():
    """Each model alone fits one L4 and its rate; both need more than the one L4 there is."""
    data = copy.deepcopy(SHARE)
    data["gpu_types"] = data["gpu_types"][:1]
    data["gpu_types"][0]["count"] = 1
    del data["models"][0]["performance"]["A100"]
    data["colocation"]["pairs"] = []
    data["models"][0]["rate_rps"], data["models"][1]["rate_rps"] = 300, 300
    p = problem_from_mapping(data, "fleet.yaml")
    from servopt.formulations.fleet.diagnose import reason

    assert reason(p) is None
    sol = solve(p)
    assert sol.status.value == "infeasible"
    assert sol.message.startswith("no fleet plan covers every model's rate * (1 + headroom) within the GPU counts")
    assert "together the models need more GPUs than the counts give" in sol.message


def test_the_reason_in_the_cli_and_json(tmp_path, capsys):
    import yaml

    from servopt.cli import main

    data = copy.deepcopy(SHARE)
    data["models"][1]["slo_ms"], data["models"][1]["slo"] = 5, "p99"
    path = tmp_path / "slo.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["solve", str(path)]) == 1
    assert "servopt: infeasible: model 'b': no GPU type with count > 0" in capsys.readouterr().err
    assert main(["solve", str(path), "--json"]) == 1
    got = json.loads(capsys.readouterr().out)
    assert got["status"] == "infeasible" and got["message"].startswith("model 'b': no GPU type with count > 0")


def test_slices_count_only_where_a_layout_holds_them():
    """b runs only on a MIG profile no layout uses: it has no placement."""
    data = copy.deepcopy(SHARE)
    data["gpu_types"][1]["mig"] = [{"profile": "1g.10gb", "compute": 1, "memory_mb": 10000},
                                   {"profile": "3g.40gb", "compute": 3, "memory_mb": 40000}]
    data["gpu_types"][1]["layouts"] = [["3g.40gb", "3g.40gb"]]
    data["models"][1]["performance"] = {"A100/1g.10gb": {"latency_ms": {1: 5.0}, "memory_mb": {"instance": 1000}}}
    p = problem_from_mapping(data, "fleet.yaml")
    from servopt.formulations.fleet.diagnose import unplaceable

    assert unplaceable(p).startswith("model 'b': no GPU type with count > 0 can run it")
    data["gpu_types"][1]["layouts"].append(["1g.10gb"])
    assert unplaceable(problem_from_mapping(data, "fleet.yaml")) is None


def random_fleet(seed: int) -> dict:
    """A random fleet like test_fleet.py's, drawn wider: SLOs below some batches' bound, instances too big for
    some GPUs, counts of 0, rates that need several GPUs."""
    import random

    rng = random.Random(1000 + seed)
    types = [{"name": f"G{t}", "count": rng.randint(0, 3), "memory_mb": rng.choice([4000, 8000]),
              "price_per_hour": rng.choice([0.8, 1.5])} for t in range(rng.randint(1, 2))]
    models = []
    for i in range(rng.randint(1, 3)):
        perf = {}
        for t in types:
            if rng.random() < 0.7 or not perf:
                base = rng.uniform(1, 5)
                perf[t["name"]] = {"latency_ms": {b: round(base * (1 + 0.3 * (b - 1)), 3) for b in (1, 2, 4)},
                                   "memory_mb": {"instance": rng.choice([1000, 2500, 5000]), "per_batch": 50}}
        models.append({"name": f"m{i}", "rate_rps": rng.choice([100, 300, 700, 1500, 3000]),
                       "slo_ms": rng.choice([6, 12, 30]), "slo": rng.choice(["p99", "mean"]), "performance": perf})
    data = {"problem": "fleet", "headroom": rng.choice([0.0, 0.2]),
            "colocation": {"default_slowdown": rng.choice([1.5, 2.0])}, "gpu_types": types, "models": models}
    if rng.random() < 0.5:
        data["max_instances"] = 3
    return data


@pytest.mark.parametrize("seed", range(60))
def test_the_reasons_are_proofs_and_exact_for_one_model(seed):
    """A reason given before the solve is a proof: the brute force finds no plan. For one model alone (whole
    GPUs) it is exact both ways: no reason exactly when the brute force finds a plan."""
    from servopt.formulations.fleet.diagnose import reason
    from servopt.testing.fleet_oracles import brute_force_fleet

    data = random_fleet(seed)
    p = problem_from_mapping(data, f"random{seed}.yaml")
    why = reason(p)
    if why is not None:
        assert brute_force_fleet(p) is None, why
    for m in data["models"]:
        alone = problem_from_mapping({**data, "models": [m]}, f"random{seed}_{m['name']}.yaml")
        assert (reason(alone) is None) == (brute_force_fleet(alone) is not None), reason(alone)


@pytest.mark.parametrize("seed", range(20))
def test_the_capacity_reason_is_exact_for_one_model_with_mig(seed):
    """One model on a MIG GPU type (slices with and without their own latencies, derived and given layouts):
    no reason exactly when the pattern MILP finds a plan."""
    import random

    from servopt.formulations.fleet.diagnose import reason

    rng = random.Random(2000 + seed)
    a100 = {"name": "A100", "count": rng.randint(1, 2), "memory_mb": 80000, "price_per_hour": 3.0,
            "mig": [{"profile": "1g.10gb", "compute": 1, "memory_mb": 10000},
                    {"profile": "3g.40gb", "compute": 3, "memory_mb": 40000}]}
    if rng.random() < 0.5:
        a100["layouts"] = [["3g.40gb", "3g.40gb"], ["1g.10gb"] * 7][:rng.randint(1, 2)]
    perf = {"A100": {"latency_ms": {1: 2.0, 4: 4.0}, "memory_mb": {"instance": rng.choice([1000, 12000])}}}
    if rng.random() < 0.5:
        perf["A100/1g.10gb"] = {"latency_ms": {1: rng.choice([3.0, 6.0])}, "memory_mb": {"instance": 1000}}
    model = {"name": "m", "rate_rps": rng.choice([1000, 3000, 6000, 9000, 14000]), "slo_ms": rng.choice([12, 30, 45]),
             "performance": perf}
    data = {"problem": "fleet", "headroom": 0.0, "gpu_types": [a100], "models": [model],
            "colocation": {"default_slowdown": rng.choice([1.2, 2.0])}, "max_instances": 8}
    p = problem_from_mapping(data, f"mig{seed}.yaml")
    why = reason(p)
    sol = solve(p)
    assert (why is None) == (sol.plan is not None), (why, sol.status)


@pytest.mark.parametrize("seed", [s for s in range(60) if s % 4 == 0])
def test_fleets_without_a_reason_that_have_no_plan_say_together(seed):
    from servopt.formulations.fleet.diagnose import reason

    p = problem_from_mapping(random_fleet(seed), f"random{seed}.yaml")
    sol = solve(p)
    if sol.status.value == "infeasible" and reason(p) is None:
        assert "together the models need more GPUs" in sol.message
    elif sol.status.value == "infeasible":
        assert sol.message == reason(p)


# -- 3. a where: that selects nothing is reported under where ------------------------------------------------------

@pytest.mark.parametrize("where, needle", [
    ({"variant": "resnet50-nope"}, "no rows with variant='resnet50-nope'"),
    ({"colour": "red"}, "colour"),
])
def test_a_where_that_selects_nothing_names_the_where_key(where, needle):
    data = copy.deepcopy(SHARE)
    data["models"][0]["performance"]["A100"] = {"profile": str(ROOT / "profiles/nvidia_resnet50_triton.csv"),
                                                "where": where, "memory_mb": {"instance": 900}}
    with pytest.raises(ValidationError) as err:
        problem_from_mapping(data, "fleet.yaml")
    assert "key 'models[0].performance.A100.where'" in str(err.value) and needle in str(err.value)


def test_a_missing_profile_still_names_the_profile_key():
    data = copy.deepcopy(SHARE)
    data["models"][0]["performance"]["A100"] = {"profile": "no_such.csv", "where": {"variant": "x"},
                                                "memory_mb": {"instance": 900}}
    with pytest.raises(ValidationError, match=r"key 'models\[0\]\.performance\.A100\.profile'"):
        problem_from_mapping(data, "fleet.yaml")


# -- 4. docs/fleet.md's key table has every top-level key -----------------------------------------------------

def test_the_key_table_lists_every_top_level_key():
    data = copy.deepcopy(SHARE)
    data["zzz"] = 1
    with pytest.raises(ValidationError) as err:
        problem_from_mapping(data, "fleet.yaml")
    allowed = set(re.search(r"allowed here: ([^)]*)\)", str(err.value)).group(1).split(", "))
    text = (ROOT / "docs" / "fleet.md").read_text()
    table = text[text.index("| key | meaning |"):text.index("## Semantics")]
    first = {re.split(r"[.\[]", k)[0] for row in table.splitlines()[2:] if row.startswith("| ")
             for k in re.findall(r"`([^`]+)`", row.split(" | ")[0])}
    # problem: the file's header; name, triton: the plan's and the deployment's (docs/fleet-deployment.md);
    # weights: the objective row
    assert allowed - first == {"problem", "name", "triton", "weights"}
    assert "0.5 < q < 1" in table and "weights" in table


@pytest.mark.parametrize("policy", ["fleet_ffd", "fleet_one_per_gpu", "fleet_cheapest_type"])
def test_a_baseline_that_fails_says_when_no_plan_exists(policy):
    """A baseline's failure ("first-fit decreasing ran out of GPUs for 'b'") did not say that no method could
    succeed; where one model alone proves it, the reason follows."""
    from servopt.policies import run_policy

    sol = run_policy(fleet(b_slo_ms=5, b_slo="p99"), policy)
    assert sol.status.value == "infeasible"
    assert sol.message.endswith("; no plan exists: model 'b': no GPU type with count > 0 has a batch that meets "
                                "slo_ms 5 (p99: 2 x latency <= slo_ms; best: L4 batch 1, 2 x 5 ms = 10 ms)")
