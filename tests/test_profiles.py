"""Profiles: the canonical schema, its validation, the readers and importers, the shipped profiles."""

from __future__ import annotations

import csv
import io
import math
import sys

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import servopt
from servopt.cli import main
from servopt.exceptions import ServoptError, ValidationError
from servopt.profiles import (
    load_profile,
    profile_from_frame,
    read_infadapter_capacity,
    read_ipa_profile,
    read_model_analyzer,
    read_perf_analyzer,
    select_rows,
    validate_frame,
    write_profile,
)

GOOD = """model,hardware,batch_size,latency_ms,precision
m,T4,1,2.0,FP16
m,T4,8,9.0,FP16
m,T4,8,7.5,INT8
"""

SHIPPED = ["nvidia_efficientnet_pytorch.csv", "nvidia_resnet50_triton.csv", "nvidia_efficientnet_widese_pytorch.csv",
           "nvidia_resnet50_pytorch.csv", "nvidia_efficientnet_tf2.csv"]


def write(tmp_path, text, name="p.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- canonical CSV ---------------------------------------------------------------------------------------------------

def test_load_profile_fills_defaults(tmp_path):
    table = load_profile(write(tmp_path, GOOD))
    frame = table.frame
    assert len(frame) == 3 and table.sources == [tmp_path / "p.csv"]
    assert frame["variant"].tolist() == ["m", "m", "m"]
    assert frame["throughput_rps"].tolist() == pytest.approx([500.0, 8000 / 9.0, 8000 / 7.5])
    assert set(frame["source"]) == {str(tmp_path / "p.csv")}
    assert frame["batch_size"].dtype.kind == "i"
    assert table.label_columns == ["precision"]


BAD_CELLS = [
    ("latency_ms", "abc", "expected a number > 0"),
    ("latency_ms", "-1", "expected a number > 0"),
    ("latency_ms", "0", "expected a number > 0"),
    ("latency_ms", "", "got an empty cell"),
    ("latency_ms", "inf", "expected a number > 0"),
    ("batch_size", "0", "expected an integer >= 1"),
    ("batch_size", "2.5", "expected an integer >= 1"),
    ("model", "", "expected a non-empty text"),
]


@pytest.mark.parametrize("column,value,accepted", BAD_CELLS)
def test_bad_cell_names_file_row_column_and_accepted(tmp_path, column, value, accepted):
    frame = pd.read_csv(io.StringIO(GOOD), dtype=str, keep_default_na=False)
    frame.loc[1, column] = value
    path = write(tmp_path, frame.to_csv(index=False))
    with pytest.raises(ValidationError) as err:
        load_profile(path)
    message = str(err.value)
    assert str(path) in message and "row 2 (line 3)" in message and repr(column) in message
    assert accepted in message


@pytest.mark.parametrize("text,fragment", [
    ("model,hardware,batch_size\nm,T4,1\n", "missing required column(s) 'latency_ms'"),
    ("model,hardware,batch_size,latency_us\nm,T4,1,5\n", "'latency_us' has units servopt does not take"),
    ("model,hardware,batch_size,latency_ms,memory_gb\nm,T4,1,5,1\n", "servopt accepts 'memory_mb'"),
    ("model,hardware,batch_size,latency\nm,T4,1,5\n", "'latency' gives no units"),
    ("model,hardware,batch_size,Latency_ms\nm,T4,1,5\n", "rename it to 'latency_ms'"),
    ("model,hardware,batch_size,latency_ms\nm,T4,1\n", "row 1 (line 2) has 3 cells but the header has 4"),
    ("model,hardware,batch_size,latency_ms,model\nm,T4,1,5,m\n", "appear more than once"),
    ("model,hardware,batch_size,latency_ms\n", "no rows"),
    ("", "empty file"),
    ("model,hardware,batch_size,latency_ms,accuracy\nm,T4,1,5,76\n", "expected a number >= 0 and <= 1"),
    ("model,hardware,batch_size,latency_ms\nm,T4,1,5\nm,T4,1,6\n", "row 1 (line 2) and row 2 (line 3) measure the "
     "same point"),
    ('model,hardware,batch_size,latency_ms\n"m,T4,1,5\n', "malformed CSV"),
])
def test_bad_files(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ValidationError, match=None) as err:
        load_profile(path)
    assert fragment in str(err.value) and str(path) in str(err.value)


def test_binary_and_unknown_format(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(ValidationError, match="not UTF-8"):
        load_profile(path)
    path.write_bytes(b"model,hardware\x00\n")
    with pytest.raises(ValidationError, match="NUL bytes"):
        load_profile(path)
    with pytest.raises(ValidationError, match="unknown profile format '.xlsx'"):
        load_profile(tmp_path / "p.xlsx")
    with pytest.raises(ValidationError, match="no such file"):
        load_profile(tmp_path / "missing.csv")


def test_identical_duplicates_are_kept_conflicts_across_files_rejected(tmp_path):
    a = write(tmp_path, "model,hardware,batch_size,latency_ms\nm,T4,1,5\nm,T4,1,5\n", "a.csv")
    assert len(load_profile(a)) == 2
    b = write(tmp_path, "model,hardware,batch_size,latency_ms\nm,T4,1,6\n", "b.csv")
    with pytest.raises(ValidationError) as err:
        load_profile([a, b])
    assert f"{a}: row 1 (line 2)" in str(err.value) and f"{b}: row 1 (line 2)" in str(err.value)


def test_extra_columns_labels_measurements_and_hw(tmp_path):
    text = ("model,hardware,batch_size,latency_ms,concurrency,server_queue_ms,hw.gpu/util_percent\n"
            "m,T4,1,5,1,0.5,30\nm,T4,1,6,2,0.7,35\n")
    table = load_profile(write(tmp_path, text))
    assert table.label_columns == ["concurrency"]  # a configuration column: the two rows are distinct points
    assert table.hw_columns == ["hw.gpu/util_percent"]
    with pytest.raises(ValidationError, match="'hw.gpu/util_percent': expected a finite number"):
        load_profile(write(tmp_path, text.replace(",35", ",hot")))


def test_parquet_round_trip_and_corrupt_parquet(tmp_path):
    table = load_profile(write(tmp_path, GOOD))
    out = table.write(tmp_path / "p.parquet")
    again = load_profile(out)
    pd.testing.assert_frame_equal(again.frame.drop(columns="source"), table.frame.drop(columns="source"),
                                  check_dtype=False)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValidationError, match="cannot read as Parquet"):
        load_profile(tmp_path / "bad.parquet")


def test_write_is_atomic_and_rejects_unknown_suffix(tmp_path):
    table = load_profile(write(tmp_path, GOOD))
    with pytest.raises(ValidationError, match="unknown profile format"):
        write_profile(table, tmp_path / "p.json")
    with pytest.raises(ValidationError, match="does not exist"):
        write_profile(table, tmp_path / "nope" / "p.csv")
    write_profile(table, tmp_path / "copy.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.csv", "p.csv"]


def test_validate_frame_typed_input_and_select():
    frame = validate_frame(pd.DataFrame({"model": ["m", "m"], "hardware": ["T4", "A40"], "batch_size": [1, 2],
                                         "latency_ms": [1.0, 2.0], "variant": [None, "v2"]}), "mem")
    assert frame["variant"].tolist() == ["m", "v2"]
    with pytest.raises(ValidationError, match="no rows with hardware='H100'; available: A40, T4"):
        select_rows(frame, {"hardware": "H100"}, "mem")
    assert len(profile_from_frame(frame).select(hardware="T4")) == 1


# --- shipped profiles ------------------------------------------------------------------------------------------------

def test_shipped_profiles_restate_the_published_data(root, reference_data):
    sys.path.insert(0, str(root / "profiles"))
    try:
        import build_published
    finally:
        sys.path.pop(0)
    built = build_published.build_all(reference_data / "published")
    assert sorted(built) == sorted(SHIPPED)
    for name, frame in built.items():
        shipped = load_profile(root / "profiles" / name).frame
        assert shipped.columns.tolist() == frame.columns.tolist()
        for column in frame.columns:
            assert shipped[column].astype(str).tolist() == frame[column].astype(str).tolist(), (name, column)


def test_shipped_values_and_sources(root, reference_data):
    eff = load_profile(root / "profiles" / "nvidia_efficientnet_pytorch.csv").frame
    row = eff[(eff.variant == "efficientnet-b0-tf32") & (eff.hardware == "A100-80GB") & (eff.batch_size == 1)]
    assert row[["latency_ms", "latency_p99_ms", "throughput_rps"]].iloc[0].tolist() == [9.33, 9.0, 130.0]
    assert set(eff["model"]) == {"efficientnet-b0", "efficientnet-b4"} and len(eff) == 71
    assert set(eff["hardware"]) == {"A100-80GB", "V100-16GB"} and set(eff["precision"]) == {"TF32", "AMP", "FP32"}
    assert eff["source"].str.startswith("github.com/NVIDIA/DeepLearningExamples@729963dd47").all()
    triton = load_profile(root / "profiles" / "nvidia_resnet50_triton.csv").frame
    assert set(triton["hardware"]) == {"A100-80GB", "A40", "V100-32GB", "T4"} and len(triton) == 32
    source = pd.read_csv(reference_data / "published" / "nvidia_dle_resnet50_triton_offline.csv")
    assert sorted(triton["throughput_rps"]) == sorted(source["inferences_per_s"])


# --- perf_analyzer ---------------------------------------------------------------------------------------------------

PA_VERBOSE = ("Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
              "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,"
              "Avg latency,request/response,response wait\n"
              "1,583.054,7,374,2221,38,481,293,2,3125,3803,4324,6922,3419,9,3384\n"
              "2,901.5,7,380,2500,40,900,300,2,4300,5000,5200,7100,4400,9,4380\n")


def test_perf_analyzer_units_and_rows(tmp_path):
    table = read_perf_analyzer(write(tmp_path, PA_VERBOSE), model="add_sub", hardware="cpu", batch_size=2)
    frame = table.frame
    assert len(frame) == 2 and frame["concurrency"].tolist() == [1, 2]
    first = frame.iloc[0]
    assert first["latency_ms"] == pytest.approx(3.419)  # Avg latency, µs -> ms
    assert first["latency_p99_ms"] == pytest.approx(6.922)
    assert first["throughput_rps"] == pytest.approx(583.054)  # already counts the batch
    assert first["server_queue_ms"] == pytest.approx(2.221) and first["batch_size"] == 2
    assert "perf_analyzer" in first["source"]


def test_perf_analyzer_without_verbose_uses_median_and_gpu_cells(tmp_path):
    text = ("Concurrency,Inferences/Second,Client Send,p50 latency,p99 latency,Max GPU Memory Usage,"
            "Avg GPU Utilization\n1,100,5,2000,3000,GPU-a:1000000000;GPU-b:500000000;,GPU-a:0.5;GPU-b:0.7;\n")
    frame = read_perf_analyzer(write(tmp_path, text), model="m", hardware="A100-80GB", batch_size=1).frame
    assert frame["latency_ms"].iloc[0] == pytest.approx(2.0)
    assert frame["memory_mb"].iloc[0] == pytest.approx(1.5e9 / 2**20)  # bytes -> MiB
    assert frame["hw.gpu_utilization_pct"].iloc[0] == pytest.approx(60.0)


@pytest.mark.parametrize("edit,fragment", [
    (lambda t: t.replace("583.054", "fast"), "row 1 (line 2), column 'Inferences/Second': expected a number"),
    (lambda t: t.replace("Client Send", "Client Sent"), "column 'Client Sent' is not a perf_analyzer -f column"),
    (lambda t: t.replace("Concurrency", "Load"), "needs a 'Concurrency' or 'Request Rate' column"),
    (lambda t: t.replace(",3419,", ",-5,"), "column 'latency_ms' (file column 'Avg latency'): expected a number > 0"),
])
def test_perf_analyzer_errors(tmp_path, edit, fragment):
    path = write(tmp_path, edit(PA_VERBOSE))
    with pytest.raises(ValidationError) as err:
        read_perf_analyzer(path, model="m", hardware="T4", batch_size=1)
    assert fragment in str(err.value) and str(path) in str(err.value)


# --- Model Analyzer --------------------------------------------------------------------------------------------------

MA_INFERENCE = ("Model,Batch,Concurrency,Model Config Path,Instance Group,Max Batch Size,Satisfies Constraints,"
                "Throughput (infer/sec),p99 Latency (ms)\n"
                "add_sub,2,2,add_sub_config_default,1:GPU,8,Yes,13205.0,0.5\n"
                "add_sub,2,4,add_sub_config_1,2:GPU,16,Yes,20000.0,0.9\n")
MA_GPU = ("Model,GPU UUID,Batch,Concurrency,Model Config Path,Instance Group,Satisfies Constraints,"
          "GPU Memory Usage (MB),GPU Utilization (%),GPU Power Usage (W)\n"
          "add_sub,GPU-8557549f,2,2,add_sub_config_default,1:GPU,Yes,872.4,5.5,56.4\n"
          "add_sub,GPU-9999,2,2,add_sub_config_default,1:GPU,Yes,100.0,7.5,50.0\n")


def test_model_analyzer_reports(tmp_path):
    # Model Analyzer writes a GPU group's count times its GPUs: count 1 on the 2 GPUs of the GPU report is "2:GPU"
    text = MA_INFERENCE.replace("add_sub_config_default,1:GPU", "add_sub_config_default,2:GPU")
    inference, gpu = write(tmp_path, text, "inf.csv"), write(tmp_path, MA_GPU, "gpu.csv")
    frame = read_model_analyzer([gpu, inference], hardware="A100-80GB").frame
    assert frame["instances"].tolist() == [2, 2] and frame["instance_kind"].tolist() == ["GPU", "GPU"]
    assert frame["instances_per_gpu"].tolist() == [1, 2]  # row 2 has no GPU rows: one GPU
    assert frame["max_batch_size"].tolist() == [8, 16] and frame["model"].tolist() == ["add_sub", "add_sub"]
    assert frame["throughput_rps"].tolist() == [13205.0, 20000.0]
    # no Avg Latency column: the closed loop's mean latency, concurrency * batch / throughput
    assert frame["latency_ms"].tolist() == pytest.approx([2 * 2 / 13205 * 1000, 4 * 2 / 20000 * 1000])
    # Model Analyzer's MB (10**6 bytes) -> MiB
    assert frame["memory_mb"].iloc[0] == pytest.approx(972.4e6 / 2**20) and math.isnan(frame["memory_mb"].iloc[1])
    assert frame["hw.gpu_utilization_pct"].iloc[0] == pytest.approx(6.5)


def test_model_analyzer_avg_latency_preferred(tmp_path):
    text = MA_INFERENCE.replace("p99 Latency (ms)\n", "p99 Latency (ms),Avg Latency (ms)\n").replace(
        "13205.0,0.5\n", "13205.0,0.5,0.31\n").replace("20000.0,0.9\n", "20000.0,0.9,0.45\n")
    frame = read_model_analyzer(write(tmp_path, text), hardware="T4", model="renamed").frame
    assert frame["latency_ms"].tolist() == [0.31, 0.45] and set(frame["model"]) == {"renamed"}


@pytest.mark.parametrize("edit,fragment", [
    (lambda t: t.replace("2:GPU", '"1:GPU,2:GPU"'), "ensemble and multi-model rows are not supported"),
    (lambda t: t.replace("2:GPU", "two"), "row 2 (line 3), column 'Instance Group'"),
    (lambda t: t.replace("20000.0", '"421.0, [184.5,236.5]"'), "column 'Throughput (infer/sec)': expected a number"),
    (lambda t: t.replace("Max Batch Size,", "").replace(",8,", ",").replace(",16,", ","),
     "missing column(s) 'Max Batch Size'"),
])
def test_model_analyzer_errors(tmp_path, edit, fragment):
    with pytest.raises(ValidationError) as err:
        read_model_analyzer(write(tmp_path, edit(MA_INFERENCE)), hardware="T4")
    assert fragment in str(err.value)


def test_model_analyzer_gpu_rows_must_match(tmp_path):
    inference = write(tmp_path, MA_INFERENCE, "inf.csv")
    gpu = write(tmp_path, MA_GPU.replace("add_sub_config_default,1:GPU,Yes,100.0", "other,1:GPU,Yes,100.0"), "g.csv")
    with pytest.raises(ValidationError, match="no row of metrics-model-inference.csv has"):
        read_model_analyzer([inference, gpu], hardware="T4")
    with pytest.raises(ValidationError, match="needs metrics-model-inference.csv"):
        read_model_analyzer([gpu], hardware="T4")


# --- InfAdapter and IPA ----------------------------------------------------------------------------------------------

def test_infadapter_capacity(reference_data):
    path = reference_data / "infadapter" / "capacity_result_Feb_21.csv"
    table = read_infadapter_capacity(path)
    frame = table.frame
    assert len(frame) == 100 and set(frame["sla_ms"]) == {750}
    assert set(frame["variant"]) == {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
    assert set(frame["model"]) == {"resnet"} and set(frame["hardware"]) == {"cpu"}
    r18 = frame[(frame.variant == "resnet18") & (frame.cores == 1)].iloc[0]
    assert (r18["throughput_rps"], r18["latency_p99_ms"], r18["batch_size"]) == (19, 389.09, 1)
    assert r18["latency_ms"] == pytest.approx(1000 / 22)  # service time: cores / saturation throughput
    assert frame["latency_p99_ms"].isna().sum() == 2  # the file's empty p99 cells at SLA 750 stay empty
    assert len(read_infadapter_capacity(path, sla_ms=500)) == 100
    with pytest.raises(ValidationError, match="no rows with SLA=900 ms; the file has SLA 500, 750, 1000, 1500"):
        read_infadapter_capacity(path, sla_ms=900)
    assert len(read_infadapter_capacity(reference_data / "infadapter" / "capacity_result_Jan_11.csv")) == 100


def test_ipa_profiles_all_load(reference_data):
    files = sorted((reference_data / "ipa" / "profiles").glob("*.csv"))
    assert len(files) == 16
    for path in files:
        source = pd.read_csv(path)
        frame = read_ipa_profile(path).frame
        assert len(frame) == len(source)
        if "model_latencies_avg" in source:
            assert frame["latency_ms"].tolist() == pytest.approx((source["model_latencies_avg"] * 1000).tolist())
        else:
            assert set(frame["latency_statistic"]) == {"p99"}


# --- the import command ----------------------------------------------------------------------------------------------

def test_cli_import(tmp_path, reference_data, capsys):
    out = tmp_path / "cap.csv"
    assert main(["import", "infadapter", str(reference_data / "infadapter" / "capacity_result_Feb_21.csv"),
                 "-o", str(out)]) == 0
    assert len(load_profile(out)) == 100
    pa = write(tmp_path, PA_VERBOSE, "pa.csv")
    assert main(["import", "perf_analyzer", str(pa), "--model", "m", "--hardware", "T4", "--batch-size", "2",
                 "-o", str(tmp_path / "pa.parquet")]) == 0
    assert load_profile(tmp_path / "pa.parquet").frame["batch_size"].tolist() == [2, 2]
    capsys.readouterr()
    assert main(["import", "perf-analyzer", str(pa), "--hardware", "T4"]) == 2
    assert "give --model" in capsys.readouterr().err
    assert main(["import", "model-analyzer", str(write(tmp_path, "x\n1\n", "bad.csv")), "--hardware", "T4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "not a Model Analyzer" in err
    assert main(["import", "profile", str(write(tmp_path, GOOD))]) == 0
    assert capsys.readouterr().out.startswith("model,variant,hardware,batch_size,latency_ms")


# --- properties: malformed input is an error, never a traceback, never a silent drop ---------------------------------

def _data_rows(data: bytes) -> int | None:
    """Rows the CSV text holds after its header (blank lines skipped), or None if it is not CSV."""
    try:
        text = data.decode("utf-8-sig")
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        rows = [r for r in reader if r and not (len(r) == 1 and not r[0].strip())]
    except (UnicodeDecodeError, csv.Error):
        return None
    return max(len(rows) - 1, 0)


READERS = {
    "profile": lambda p: load_profile(p),
    "perf_analyzer": lambda p: read_perf_analyzer(p, model="m", hardware="T4", batch_size=1),
    "model_analyzer": lambda p: read_model_analyzer(p, hardware="T4"),
    "infadapter": lambda p: read_infadapter_capacity(p),
    "ipa": lambda p: read_ipa_profile(p),
}
HEADERS = {
    "profile": b"model,hardware,batch_size,latency_ms,warmup_ms,precision\n",
    "perf_analyzer": PA_VERBOSE.splitlines(keepends=True)[0].encode(),
    "model_analyzer": MA_INFERENCE.splitlines(keepends=True)[0].encode(),
    "infadapter": b"CPU,ARCH,BATCH,SLA,p99_latency,capacity,saturation_tp\n",
    "ipa": b"model_variant,max_batch_size,cpu_request,load,model_latencies_avg\n",
}
_cells = st.one_of(st.sampled_from(["", "1", "0", "-3", "2.5", "nan", "inf", "abc", "m", "1:GPU", '"', "1e999",
                                    "750", "7.0"]),
                   st.text(alphabet="0123456789.,-eE:+ abcGPU\"", max_size=8))


def _check_reader(kind, path, data):
    try:
        table = READERS[kind](path)
    except ServoptError:
        return
    expected = _data_rows(data)
    if kind == "infadapter":
        assert set(table.frame["sla_ms"]) == {750}  # rows at other SLAs are not this profile's (documented)
    else:
        assert expected is not None and len(table) == expected, "a row was dropped or invented"


@pytest.mark.parametrize("kind", sorted(READERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.binary(max_size=400))
def test_random_bytes_raise_servopt_error(tmp_path, kind, data):
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    _check_reader(kind, path, data)


@pytest.mark.parametrize("kind", sorted(READERS))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(st.lists(_cells, min_size=1, max_size=9), min_size=0, max_size=5))
def test_malformed_tables_raise_servopt_error(tmp_path, kind, rows):
    body = io.StringIO()
    csv.writer(body, lineterminator="\n").writerows(rows)
    data = HEADERS[kind] + body.getvalue().encode()
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    _check_reader(kind, path, data)


VALID = {  # plausible cells per column, to reach the valid-table branch often
    "profile": [["m", "v"], ["T4", "A40"], ["1", "2", "8"], ["1.5", "9"], ["", "20"], ["FP16", "", "INT8"]],
    "perf_analyzer": [["1", "2", "4", "8"]] + [["0", "7", "374", "2221", "3125"]] * 15,
    "model_analyzer": [["add_sub"], ["1", "2"], ["1", "2", "4"], ["c0", "c1"], ["1:GPU", "2:CPU + 1:GPU"], ["8"],
                       ["Yes", "No"], ["100.5", "13205.0"], ["0.5", "1"]],
    "infadapter": [["1", "2", "3"], ["18", "50"], ["1"], ["750", "500"], ["", "389.1"], ["19", "0"], ["22"]],
    "ipa": [["resnet18", "yolov5n"], ["1", "2"], ["1", "2"], ["10", "20"], ["0.05", "0.1"]],
}


@st.composite
def _mostly_valid(draw, kind):
    bad = ["", "x", "-1", "inf"]
    n = draw(st.integers(0, 6))
    return [[draw(st.sampled_from(pool * 6 + bad)) for pool in VALID[kind]] for _ in range(n)]


@pytest.mark.parametrize("kind", sorted(READERS))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mostly_valid_tables_keep_every_row(tmp_path, kind, data):
    rows = data.draw(_mostly_valid(kind))
    body = io.StringIO()
    csv.writer(body, lineterminator="\n").writerows(rows)
    raw = HEADERS[kind] + body.getvalue().encode()
    path = tmp_path / "f.csv"
    path.write_bytes(raw)
    _check_reader(kind, path, raw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(row=st.integers(0, 2), column=st.sampled_from(["batch_size", "latency_ms", "warmup_ms", "hardware"]),
       value=st.sampled_from(["x", "-1", "0", "inf", "1e999", "2.5", "NaN!", ""]))
def test_a_bad_cell_is_reported_where_it_is(tmp_path, row, column, value):
    frame = pd.DataFrame({"model": "m", "hardware": "T4", "batch_size": ["1", "2", "4"],
                          "latency_ms": ["1.0", "2.0", "3.5"], "warmup_ms": ["9", "9", "9"]})
    frame.loc[row, column] = value
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    acceptable = {"batch_size": set(), "latency_ms": {"2.5"}, "warmup_ms": {"2.5", ""},
                  "hardware": {"x", "-1", "0", "inf", "1e999", "2.5", "NaN!"}}[column]
    if value in acceptable:
        assert len(load_profile(path)) == 3
        return
    with pytest.raises(ValidationError) as err:
        load_profile(path)
    message = str(err.value)
    assert str(path) in message and f"row {row + 1} (line {row + 2})" in message and repr(column) in message
    assert "expected" in message


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _careful(path):
    from servopt.profiles import read_raw
    from servopt.profiles._schema import validate_frame

    raw, where = read_raw(path)
    return validate_frame(raw.astype(object), str(path), where)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "profiles").glob("*.csv")))
def test_fast_csv_reader_gives_the_careful_readers_frame(name):
    import pandas as pd

    from servopt.profiles import read_csv_fast

    path = ROOT / "profiles" / name
    try:
        want = _careful(path)
    except ValidationError:
        pytest.skip("not a profile")
    fast = read_csv_fast(path)
    if fast is not None and (fast[fast.columns[-1]] != "").all():  # the fast reader takes it
        pd.testing.assert_frame_equal(servopt.load_profile(path).frame, want, check_dtype=False)


@pytest.mark.parametrize("text, fast", [
    ("model,hardware,batch_size,latency_ms\nm,T4,1, 2.5 \nm,T4,2,NA\n", True),       # missing word: NaN in a column
    ("model,hardware,batch_size,latency_ms\nm,T4,1,2.5\n\nm,T4,2,4\n", False),       # blank line: line numbers
    ("model,hardware,batch_size,latency_ms\nm,T4,1,2.5\nm,T4,2\n", False),           # short row
    ("model,hardware,batch_size,latency_ms,run\n007,T4,1,1e1,1_0\nx,T4,2,0.1,2\n", True),  # 1_0: float() only
    ("model,model,batch_size,latency_ms\nm,T4,1,2.5\n", False),                     # repeated name
])
def test_fast_csv_reader_agrees_or_steps_aside(tmp_path, text, fast):
    import pandas as pd

    from servopt.exceptions import ValidationError
    from servopt.profiles import read_csv_fast

    path = tmp_path / "p.csv"
    path.write_text(text)
    assert (read_csv_fast(path) is not None) == fast
    try:
        want = _careful(path)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as got:
            servopt.load_profile(path)
        assert str(got.value) == str(exc)
    else:
        pd.testing.assert_frame_equal(servopt.load_profile(path).frame, want, check_dtype=False)
