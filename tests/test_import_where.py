"""Imports that solve: several perf_analyzer files in one profile, ``where:`` in problem files, Model Analyzer's
instances per GPU carried into the plan (issue 17)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from servopt.cli import main
from servopt.exceptions import ValidationError
from servopt.formulations.gpu.types import GPUType
from servopt.formulations.registry import load_problem
from servopt.profiles import (
    batch_size_from_name,
    load_profile,
    read_model_analyzer,
    read_perf_analyzer,
    read_where,
    require_single_group,
    select_rows,
)

# perf_analyzer -f --verbose-csv, as written by report_writer.cc (times in µs); one file per client batch (-b)
PA_HEADER = ("Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
             "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,"
             "Avg latency,request/response,response wait\n")
PA_B1 = PA_HEADER + ("1,200.0,7,374,100,38,4000,293,2,4900,5100,5200,5600,5000,9,4980\n"
                     "2,350.0,7,380,2500,40,4100,300,2,5600,6000,6200,7100,5700,9,5680\n")
PA_B8 = PA_HEADER + ("1,800.0,7,374,100,38,9500,293,2,9900,10100,10200,10600,10000,9,9980\n"
                     "2,1200.0,7,380,2500,40,9600,300,2,13000,13500,13800,14100,13300,9,13280\n")

# Model Analyzer metrics-model-inference.csv (result_table_manager.py headers); config_1 runs 2 instances per GPU
MA_INFERENCE = ("Model,Batch,Concurrency,Model Config Path,Instance Group,Max Batch Size,Satisfies Constraints,"
                "Throughput (infer/sec),p99 Latency (ms)\n"
                "r50,1,2,r50_config_0,1:GPU,8,Yes,400.0,6.0\n"
                "r50,8,2,r50_config_0,1:GPU,8,Yes,1600.0,12.0\n"
                "r50,1,2,r50_config_1,2:GPU,8,Yes,500.0,6.5\n"
                "r50,8,2,r50_config_1,2:GPU,8,Yes,2000.0,13.0\n")
MA_GPU_HEADER = ("Model,GPU UUID,Batch,Concurrency,Model Config Path,Instance Group,Satisfies Constraints,"
                 "GPU Memory Usage (MB),GPU Utilization (%),GPU Power Usage (W)\n")


def write(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text)
    return path


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# --- perf_analyzer: several files, batch sizes from the option or the names -----------------------------------------

@pytest.mark.parametrize("name,batch", [
    ("r50_b8.csv", 8), ("r50-b16.csv", 16), ("b4.csv", 4), ("r50.b2.csv", 2), ("r50_bs32.csv", 32),
    ("r50_b8_run2.csv", 8), ("r50_batch8.csv", 8), ("mobilenetbatch8.csv", 8), ("batch_size_8.csv", 8),
    ("Batch-3.csv", 3), ("results.csv", None), ("web.csv", None), ("sub2.csv", None),
    ("r50_b8_batch16.csv", None),  # two different numbers: ambiguous
])
def test_batch_size_from_name(name, batch):
    assert batch_size_from_name(name) == batch


def test_perf_analyzer_files_by_name_make_one_profile(tmp_path):
    b1, b8 = write(tmp_path, PA_B1, "r50_b1.csv"), write(tmp_path, PA_B8, "r50_b8.csv")
    table = read_perf_analyzer([b1, b8], model="r50", hardware="T4")
    frame = table.frame
    assert table.sources == [b1, b8]
    assert frame["batch_size"].tolist() == [1, 1, 8, 8] and frame["concurrency"].tolist() == [1, 2, 1, 2]
    assert frame["latency_ms"].tolist() == pytest.approx([5.0, 5.7, 10.0, 13.3])
    assert [s.split(" ")[0] for s in frame["source"]] == [str(b1)] * 2 + [str(b8)] * 2


def test_perf_analyzer_batch_sizes_given_in_order(tmp_path):
    one, eight = write(tmp_path, PA_B1, "one.csv"), write(tmp_path, PA_B8, "eight.csv")
    frame = read_perf_analyzer([one, eight], model="r50", hardware="T4", batch_size=[1, 8]).frame
    assert frame["batch_size"].tolist() == [1, 1, 8, 8]
    # the option wins over a name that says otherwise
    named = write(tmp_path, PA_B8, "r50_b4.csv")
    assert set(read_perf_analyzer(named, model="r50", hardware="T4", batch_size=8).frame["batch_size"]) == {8}
    with pytest.raises(ValidationError, match=r"one\.csv: perf_analyzer does not record the client batch size"):
        read_perf_analyzer([one, eight], model="r50", hardware="T4")
    with pytest.raises(ValidationError, match="2 given .* for 3 perf_analyzer files; give one per file"):
        read_perf_analyzer([one, eight, named], model="r50", hardware="T4", batch_size=[1, 8])


def test_perf_analyzer_files_that_disagree_on_a_point(tmp_path):
    a, b = write(tmp_path, PA_B8, "a_b8.csv"), write(tmp_path, PA_B8.replace(",10000,", ",11000,"), "b_b8.csv")
    with pytest.raises(ValidationError, match="measure the same point .* different 'latency_ms'"):
        read_perf_analyzer([a, b], model="r50", hardware="T4")


def test_cli_import_several_perf_analyzer_files(tmp_path, capsys):
    one, eight = write(tmp_path, PA_B1, "one.csv"), write(tmp_path, PA_B8, "eight.csv")
    out = tmp_path / "p.csv"
    code, _, err = run(capsys, "import", "perf-analyzer", one, eight, "--batch-size", "1,8", "--model", "r50",
                       "--hardware", "T4", "-o", out)
    assert code == 0, err
    assert load_profile(out).frame["batch_size"].tolist() == [1, 1, 8, 8]
    for argv, fragment in [
        (["--batch-size", "1,8,16"], "--batch-size: 3 batch sizes (1,8,16) for 2 file(s)"),
        (["--batch-size", "1,x"], "--batch-size: expected an integer >= 1"),
        (["--batch-size", "0"], "--batch-size: expected an integer >= 1"),
        ([], "one.csv: perf_analyzer does not record the client batch size (-b)"),
    ]:
        code, _, err = run(capsys, "import", "perf-analyzer", one, eight, "--model", "r50", "--hardware", "T4",
                           *argv)
        assert code == 2 and fragment in err and err.count("\n") == 1, err


# --- where: selecting rows by label ----------------------------------------------------------------------------------

FRAME = pd.DataFrame({"model": "m", "hardware": "T4", "batch_size": [1, 1, 8, 8], "concurrency": [1, 2, 1, 2],
                      "precision": ["FP16"] * 4, "latency_ms": [5.0, 5.7, 10.0, 13.3]})


def test_select_rows_lists_mean_one_of():
    assert len(select_rows(FRAME, {"concurrency": [1, 2]}, "p.csv")) == 4
    assert select_rows(FRAME, {"concurrency": 2}, "p.csv")["latency_ms"].tolist() == [5.7, 13.3]
    assert len(select_rows(FRAME, {"concurrency": 1.0, "precision": ["FP16", "INT8"]}, "p.csv")) == 2


@pytest.mark.parametrize("where,fragment", [
    ({"conc": 1}, "cannot select conc=1: the profile has no column 'conc' (its label columns: 'concurrency', "
                  "'precision'"),
    ({"concurrency": 4}, "no rows with concurrency=4; available: 1, 2"),
    ({"concurrency": [4, 8]}, "no rows with concurrency=one of [4, 8]; available: 1, 2"),
    ({"concurrency": []}, "cannot select concurrency=[]: give at least one value"),
])
def test_select_rows_errors(where, fragment):
    with pytest.raises(ValidationError) as err:
        select_rows(FRAME, where, "p.csv")
    assert fragment in str(err.value)


def test_ambiguous_rows_suggest_the_where_to_add():
    with pytest.raises(ValidationError) as err:
        require_single_group(FRAME, "p.csv", "batch_size")
    assert ("several rows per batch_size match; select on column 'concurrency' (values: 1, 2); add where: "
            "{concurrency: 1} to the problem file") in str(err.value)


@pytest.mark.parametrize("value,fragment", [
    ([1], "key 'where': expected a mapping"),
    ({"concurrency": []}, "key 'where.concurrency': an empty list selects nothing"),
    ({"concurrency": {"a": 1}}, "key 'where.concurrency': expected text or a number"),
    ({"concurrency": float("nan")}, "key 'where.concurrency': expected text or a number"),
])
def test_read_where_errors(value, fragment):
    with pytest.raises(ValidationError, match="p.yaml: " + fragment.replace("(", r"\(").replace(".", r"\.")):
        read_where(value, "p.yaml")


@pytest.fixture
def pa_profile(tmp_path):
    write(tmp_path, PA_B1, "r50_b1.csv")
    write(tmp_path, PA_B8, "r50_b8.csv")
    assert main(["import", "perf-analyzer", str(tmp_path / "r50_b1.csv"), str(tmp_path / "r50_b8.csv"),
                 "--model", "r50", "--hardware", "T4", "-o", str(tmp_path / "r50.csv")]) == 0
    return tmp_path / "r50.csv"


def problem_file(tmp_path, where="", kind="min_gpus", name="p.yaml"):
    head = "images: 100000" if kind == "min_gpus" else "budget_per_hour: 10"
    text = (f"problem: {kind}\nmodel: r50\nprofiles: [r50.csv]\n{where}{head}\ndeadline_s: 60\n"
            "gpus:\n  - {hardware: T4, max_count: 8, cost_per_hour: 1}\n")
    return write(tmp_path, text, name)


@pytest.mark.parametrize("kind", ["min_gpus", "max_throughput"])
def test_problem_file_where_selects_rows(tmp_path, pa_profile, kind):
    problem = load_problem(problem_file(tmp_path, "where: {concurrency: 2}\n", kind))
    batches = {p.batch_size: p.latency_ms for p in problem.gpus[0].batches}
    assert batches == {1: 5.7, 8: 13.3}


@pytest.mark.parametrize("where,fragment", [
    ("", "several rows per batch_size match; select on column 'concurrency' (values: 1, 2); add where: "
         "{concurrency: 1} to the problem file"),
    ("where: {concurrency: [1, 2]}\n", "select on column 'concurrency'"),
    ("where: {concurrency: 3}\n", "no rows with concurrency=3 among rows with hardware='T4', model='r50'; "
                                  "available: 1, 2"),
    ("where: {instances: 2}\n", "cannot select instances=2: the profile has no column 'instances' (its label "
                                "columns: 'concurrency'"),
    ("where: 1\n", "key 'where': expected a mapping"),
])
def test_problem_file_where_errors(tmp_path, pa_profile, where, fragment):
    path = problem_file(tmp_path, where)
    with pytest.raises(ValidationError) as err:
        load_problem(path)
    assert str(err.value).startswith(str(path)) and fragment in str(err.value), str(err.value)


def test_where_needs_profiles(tmp_path):
    path = write(tmp_path, "problem: min_gpus\nwhere: {concurrency: 1}\nimages: 10\ndeadline_s: 1\n"
                 "gpus:\n  - {hardware: T4, max_count: 1, batches: {1: {latency_ms: 5}}}\n", "p.yaml")
    with pytest.raises(ValidationError, match="key 'where': only applies with profiles:"):
        load_problem(path)


def test_end_to_end_import_where_solve(tmp_path, pa_profile, capsys):
    """Several perf_analyzer files -> one profile -> a problem file with where: -> servopt solve exits 0."""
    path = problem_file(tmp_path, "where: {concurrency: 1}\n")
    code, out, err = run(capsys, "solve", path, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "optimal"
    plan = result["plan"]
    assert plan["images"] >= 100000 and {g["batch_size"] for g in plan["groups"]} <= {1, 8}
    code, _, err = run(capsys, "solve", problem_file(tmp_path, name="q.yaml"))
    assert code == 2 and "add where: {concurrency: 1} to the problem file" in err


def test_variant_selection_where(tmp_path, reference_data):
    profile = reference_data / "infadapter" / "capacity_result_Feb_21.csv"
    text = (f"problem: variant_selection\nworkload_rps: 50\ncore_budget: 8\nprofiles: {profile}\n{{where}}"
            "variants:\n  - {name: resnet18, accuracy: 0.7}\n")
    good = write(tmp_path, text.replace("{where}", "where: {replicas: [1]}\n"), "v.yaml")
    assert load_problem(good).variants[0].capacity
    bad = write(tmp_path, text.replace("{where}", "where: {replicas: 7}\n"), "w.yaml")
    with pytest.raises(ValidationError, match=r"w.yaml: key 'variants\[0\]': .*no rows with replicas=7"):
        load_problem(bad)
    none = write(tmp_path, "problem: variant_selection\nworkload_rps: 50\ncore_budget: 8\nwhere: {replicas: 1}\n"
                 "variants:\n  - {name: r, accuracy: 0.7, capacity: {1: 10}}\n", "x.yaml")
    with pytest.raises(ValidationError, match="key 'where': only allowed together with `profiles:`"):
        load_problem(none)


# --- Model Analyzer: instances per GPU into the plan -----------------------------------------------------------------

def test_model_analyzer_instances_per_gpu_from_gpu_report(tmp_path):
    # count 1 on 2 GPUs is written "2:GPU"; count 2 on 2 GPUs "4:GPU"
    inference = write(tmp_path, MA_INFERENCE.replace("1:GPU", "2:GPU").replace("2:GPU,8,Yes,500", "4:GPU,8,Yes,500")
                      .replace("2:GPU,8,Yes,2000", "4:GPU,8,Yes,2000"), "inf.csv")
    rows = [f"r50,GPU-{u},{b},2,r50_config_{c},x,Yes,900,50,60\n" for c in (0, 1) for b in (1, 8) for u in "ab"]
    gpu = write(tmp_path, MA_GPU_HEADER + "".join(rows), "gpu.csv")
    frame = read_model_analyzer([inference, gpu], hardware="A100").frame
    assert frame["instances"].tolist() == [2, 2, 4, 4]
    assert frame["instances_per_gpu"].tolist() == [1, 1, 2, 2]
    odd = write(tmp_path, MA_INFERENCE.replace("r50_config_0,1:GPU", "r50_config_0,3:GPU"), "odd.csv")
    with pytest.raises(ValidationError, match="row 1 .* 3 GPU instances on the 2 GPUs"):
        read_model_analyzer([odd, gpu], hardware="A100")


def test_model_analyzer_cpu_groups_have_no_instances_per_gpu(tmp_path):
    text = MA_INFERENCE.replace("r50_config_0,1:GPU", "r50_config_0,2:CPU").replace(
        "r50_config_1,2:GPU", "r50_config_1,1:GPU + 2:CPU")
    frame = read_model_analyzer(write(tmp_path, text, "inf.csv"), hardware="A100").frame
    assert frame["instances_per_gpu"].isna().tolist()[:2] == [True, True]
    assert frame["instances_per_gpu"].tolist()[2:] == [1, 1] and frame["instances"].tolist()[2:] == [3, 3]


@pytest.fixture
def ma_profile(tmp_path):
    write(tmp_path, MA_INFERENCE, "inf.csv")
    assert main(["import", "model-analyzer", str(tmp_path / "inf.csv"), "--hardware", "A100",
                 "-o", str(tmp_path / "ma.csv")]) == 0
    return tmp_path / "ma.csv"


def ma_problem(tmp_path, where, extra=""):
    return write(tmp_path, f"problem: max_throughput\nmodel: r50\nprofiles: [ma.csv]\n{where}deadline_s: 10\n"
                 f"gpus:\n  - {{hardware: A100, max_count: 2{extra}}}\n", "ma.yaml")


def test_model_analyzer_instances_reach_the_plan(tmp_path, ma_profile, capsys):
    problem = load_problem(ma_problem(tmp_path, "where: {config: r50_config_1}\n"))
    assert problem.gpus[0].instances_per_gpu == 2
    code, out, err = run(capsys, "solve", tmp_path / "ma.yaml", "--json")
    assert code == 0, err
    groups = json.loads(out)["plan"]["groups"]
    assert groups and all(g["instances_per_gpu"] == 2 for g in groups)
    code, out, _ = run(capsys, "solve", tmp_path / "ma.yaml")
    assert code == 0 and "model instances per GPU (as measured): A100 2" in out
    one = load_problem(ma_problem(tmp_path, "where: {instances_per_gpu: 1}\n"))
    assert one.gpus[0].instances_per_gpu == 1
    code, out, _ = run(capsys, "solve", tmp_path / "ma.yaml", "--json")
    assert code == 0 and all("instances_per_gpu" not in g for g in json.loads(out)["plan"]["groups"])


def test_model_analyzer_instances_must_be_one_per_gpu_type(tmp_path, ma_profile):
    # one configuration per batch size, but batch 1 from config_0 (1 per GPU) and batch 8 from config_1 (2 per GPU)
    frame = load_profile(ma_profile).frame
    mixed = frame[((frame.batch_size == 1) & (frame.config == "r50_config_0"))
                  | ((frame.batch_size == 8) & (frame.config == "r50_config_1"))].drop(columns="config")
    mixed.to_csv(ma_profile, index=False)
    with pytest.raises(ValidationError, match=r"different instances per GPU \(1, 2\); add where: "
                                              r"\{instances_per_gpu: 1\}"):
        load_problem(ma_problem(tmp_path, ""))
    with pytest.raises(ValidationError, match="gpus\\[0\\].instances_per_gpu': 1, but the selected profile rows "
                                              "were measured with 2"):
        load_problem(ma_problem(tmp_path, "where: {instances_per_gpu: 2}\n", ", instances_per_gpu: 1"))


def test_gpu_type_instances_per_gpu():
    t4 = GPUType("T4", max_count=1, batches={1: 5.0}, instances_per_gpu=3)
    assert t4.instances_per_gpu == 3 and GPUType("T4", 1, {1: 5.0}).instances_per_gpu == 1
    for bad in (0, 1.5, True):
        with pytest.raises(ValidationError, match="instances_per_gpu"):
            GPUType("T4", max_count=1, batches={1: 5.0}, instances_per_gpu=bad)


def test_inline_gpu_entry_takes_instances_per_gpu(tmp_path):
    path = write(tmp_path, "problem: min_gpus\nimages: 10\ndeadline_s: 1\n"
                 "gpus:\n  - {hardware: T4, max_count: 1, instances_per_gpu: 2, batches: {1: {latency_ms: 5}}}\n",
                 "p.yaml")
    assert load_problem(path).gpus[0].instances_per_gpu == 2


def test_gpu_type_from_profile_reads_instances_per_gpu(ma_profile):
    profile = load_profile(ma_profile)
    t = GPUType.from_profile(profile, "A100", 2, model="r50", where={"config": "r50_config_1"})
    assert t.instances_per_gpu == 2 and [p.batch_size for p in t.batches] == [1, 8]
    assert GPUType.from_profile(profile, "A100", 2, where={"config": "r50_config_0"}).instances_per_gpu == 1
    with pytest.raises(ValidationError, match="measured with 2 instances per GPU"):
        GPUType.from_profile(profile, "A100", 2, where={"config": "r50_config_1"}, instances_per_gpu=1)


def test_instances_per_gpu_reach_the_triton_config(tmp_path):
    # Triton starts `count` instances on each listed GPU: a profile measured with 2 per GPU is written as count 2
    path = write(tmp_path, "problem: min_gpus\nimages: 1000\ndeadline_s: 10\n"
                 "gpus:\n  - {hardware: T4, max_count: 3, instances_per_gpu: 2, batches: {8: {latency_ms: 50}}}\n",
                 "p.yaml")
    out = tmp_path / "repo"
    assert main(["solve", str(path), "--out", str(out)]) == 0
    config = (out / "p" / "config.pbtxt").read_text()
    assert "count: 2" in config and "KIND_GPU" in config and "gpus:" in config
