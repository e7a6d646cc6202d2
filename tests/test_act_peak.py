"""The memory model's work axis: the peak of live activations of one sample (``act_peak_mb``), from the graph."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto, helper

from servopt.measure.onnx_models import resnet_like, save_model, tiny_cnn, vit_like
from servopt.measure.work_columns import WorkColumns, onnx_counter
from servopt.performance import MaxBatchModel
from servopt.performance.features import MEMORY_WORK_FEATURE, TARGETS, feature_columns, group_columns
from servopt.exceptions import ValidationError
from servopt.performance.memory import boundaries_from_profile
from servopt.performance.work import act_peak_mb, add_work_columns, onnx_work


def _residual_graph() -> object:
    """x -> a = Relu(x) -> b = Sigmoid(a) -> y = Add(x, b) -> z = Relu(y): x lives until the Add."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "H", "W"])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4, "H", "W"])
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["a"], ["b"]),
             helper.make_node("Add", ["x", "b"], ["y"]), helper.make_node("Relu", ["y"], ["z"])]
    graph = helper.make_graph(nodes, "residual", [x], [z])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_peak_of_live_activations_follows_the_graph_order():
    one = 4 * 4 * 8 * 8  # bytes of one [1, 4, 8, 8] float tensor
    work = onnx_work(_residual_graph(), 1, 8)
    # while Sigmoid runs x, a and b are alive (x waits for the Add); every other step holds two or three
    assert work["peak_activation_bytes"] == 3 * one
    assert work["activation_bytes"] == 4 * one  # the sum of every node output, no reuse
    assert work["attention_matmuls"] == 0 and act_peak_mb(work) == 3 * one / 2 ** 20
    # linear in the batch, quadratic in the side
    assert onnx_work(_residual_graph(), 5, 8)["peak_activation_bytes"] == 5 * 3 * one
    assert onnx_work(_residual_graph(), 1, 16)["peak_activation_bytes"] == 4 * 3 * one


def test_peak_is_at_most_the_sum_and_attention_is_recognised():
    for build in (tiny_cnn, resnet_like):
        work = onnx_work(build(), 1, 64)
        assert work["attention_matmuls"] == 0
        # the input counts in the peak but not in the sum of node outputs
        assert 0 < work["peak_activation_bytes"] <= work["activation_bytes"] + 3 * 64 * 64 * 4
        assert act_peak_mb(work) > 0
    vit = onnx_work(vit_like(depth=2), 1, 64)
    assert vit["attention_matmuls"] == 4  # query x key and score x value per block
    assert vit["peak_activation_bytes"] > 0 and np.isnan(act_peak_mb(vit))


def test_the_profilers_counter_records_act_peak_mb_except_under_attention(tmp_path):
    cnn = WorkColumns(onnx_counter(save_model(tiny_cnn(), tmp_path / "cnn.onnx")), "cnn.onnx")(32)
    assert set(cnn) == {"gflops", "param_mb", "act_peak_mb"}
    assert cnn["act_peak_mb"] == pytest.approx(onnx_work(tiny_cnn(), 1, 32)["peak_activation_bytes"] / 2 ** 20)
    assert set(WorkColumns(onnx_counter(vit_like()), "vit")(32)) == {"gflops", "param_mb"}
    # a counter of FLOPs and parameters only (the torch runtime's) gives no act_peak_mb
    assert set(WorkColumns(lambda size: (1e9, 4e6), "torch")(32)) == {"gflops", "param_mb"}


def test_profile_model_writes_act_peak_mb(tmp_path):
    from servopt.measure.profiler import profile_model

    path = save_model(tiny_cnn(), tmp_path / "cnn.onnx")
    run = profile_model(path, [1, 2], [32, 48], repeats=2, min_repeats=2, time_budget_s=0.01)
    peaks = {r["input_size"]: r["act_peak_mb"] for r in run.rows}
    assert peaks[48] / peaks[32] == pytest.approx((48 / 32) ** 2, rel=0.02)


def test_add_work_columns_adds_act_peak_mb():
    frame = pd.DataFrame({"model": ["cnn", "cnn", "vit"], "input_size": [32, 64, 32], "batch_size": [1, 4, 1]})
    out = add_work_columns(frame, {"cnn": tiny_cnn(), "vit": vit_like()})
    assert out.act_peak_mb[1] / out.act_peak_mb[0] == pytest.approx(4.0, rel=0.01)  # per sample: not x batch
    assert np.isnan(out.act_peak_mb[2])


def _cnn_like(limit: float = 300.0, usable: float = 0.95) -> tuple[pd.DataFrame, dict[int, int]]:
    """Memory 20 + 1.5 b x peak(s) MiB with the activations' peak 2e-4 s^2 per sample, while the FLOPs of one
    sample grow faster (a head whose work grows with s^3); the true largest batch fills ``usable`` x the limit."""
    rows, truth = [], {}
    for s in (96, 128, 160, 224):
        peak = 2e-4 * s ** 2
        truth[s] = int(np.floor((usable * limit - 20) / (1.5 * peak)))
        for b in (1, 2, 4, 8, 16, 32):
            rows.append({"model": "cnn", "input_size": s, "batch_size": b, "memory_mb": 20 + 1.5 * b * peak,
                         "gflops": 1e-3 * s ** 2 * (1 + s / 100), "act_peak_mb": peak, "oom_batch_size": truth[s] + 1})
    return pd.DataFrame(rows), truth


def test_act_peak_mb_is_no_feature_of_servopt_fit():
    """servopt fit's memory model keeps the FLOPs axis: the column neither keys nor feeds a target."""
    frame, _ = _cnn_like()
    for target in TARGETS.values():
        assert MEMORY_WORK_FEATURE not in feature_columns(frame, target)
        assert MEMORY_WORK_FEATURE not in group_columns(frame, target)


def test_the_default_axis_ignores_act_peak_mb_and_a_bad_axis_is_refused():
    frame, _ = _cnn_like()
    cols = ["batch_size", "model", "input_size", "gflops"]
    flops = MaxBatchModel(structure="family").fit(frame[cols], frame["memory_mb"])
    given = MaxBatchModel(structure="family").fit(frame[cols + ["act_peak_mb"]], frame["memory_mb"])
    assert given.peak_index_ is None and flops.work_index_ is not None
    query = frame[frame.input_size == 160].assign(input_size=200.0, gflops=np.nan, act_peak_mb=np.nan)
    assert np.allclose(given.predict(query[cols + ["act_peak_mb"]]), flops.predict(query[cols]))
    with pytest.raises(ValidationError, match="work_axis='pixels': expected one of flops, act_peak"):
        MaxBatchModel(structure="family", work_axis="pixels").fit(frame[cols], frame["memory_mb"])


@pytest.mark.parametrize("held_out", [128, 224])
def test_the_act_peak_axis_finds_a_held_out_size(held_out):
    frame, truth = _cnn_like()
    train = frame[frame.input_size != held_out]
    got = {}
    for cols in (["batch_size", "model", "input_size", "gflops", "act_peak_mb"],
                 ["batch_size", "model", "input_size", "gflops"]):
        model = MaxBatchModel(structure="family", oom_limit_mb=300, work_axis="act_peak")
        model.fit(train[cols], train["memory_mb"]).calibrate(*boundaries_from_profile(train, cols))
        got[len(cols)] = model.max_batch(held_out, 300.0, model="cnn")  # no work given: the polynomials in size
    # on its own axis the held-out size is found; on the FLOPs axis the misfit is held back (or overshoots)
    assert 0.9 * truth[held_out] <= got[5] <= truth[held_out]
    assert got[4] != got[5]


def test_a_family_without_act_peak_mb_keeps_the_flops_axis():
    cnn, _ = _cnn_like()
    vit = cnn.assign(model="vit", act_peak_mb=np.nan, memory_mb=20 + 1.5 * cnn.batch_size * cnn.gflops)
    both = pd.concat([cnn, vit], ignore_index=True)
    cols = ["batch_size", "model", "input_size", "gflops", "act_peak_mb"]
    train = both[both.input_size != 160]
    model = MaxBatchModel(structure="family", oom_limit_mb=300, work_axis="act_peak").fit(train[cols],
                                                                                          train["memory_mb"])
    alone = MaxBatchModel(structure="family", oom_limit_mb=300).fit(
        train.loc[train.model == "vit", cols[:4]], train.loc[train.model == "vit", "memory_mb"])
    query = pd.DataFrame({"batch_size": [8.0], "model": ["vit"], "input_size": [160.0], "gflops": [np.nan],
                          "act_peak_mb": [np.nan]})
    assert model.predict(query)[0] == pytest.approx(alone.predict(query[cols[:4]])[0])
    given = query.assign(gflops=1e-3 * 160 ** 2 * 2.6)  # with the FLOPs given, its line in batch x FLOPs is exact
    assert model.predict(given)[0] == pytest.approx(20 + 1.5 * 8 * 1e-3 * 160 ** 2 * 2.6, rel=1e-6)
    # the CNN's rows, on the peak axis, are exact at the held-out size too
    query = query.assign(model="cnn")
    assert model.predict(query)[0] == pytest.approx(20 + 1.5 * 8 * 2e-4 * 160 ** 2, rel=1e-6)
