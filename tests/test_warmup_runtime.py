"""Warm-up structured by runtime (``RuntimeWarmupModel``), what ``servopt fit`` uses for warm-up."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from servopt.performance import RuntimeWarmupModel, WarmupModel
from servopt.performance.evaluate import fit_profile
from servopt.performance.warmup_runtime import OVERHEAD_RATIO, runtime_context, runtime_of, with_run_flags
from servopt.profiles import load_profile


@parametrize_with_checks([RuntimeWarmupModel()])
def test_sklearn_contract(estimator, check):
    check(estimator)


def _torch_run(source: str, setup: float, first: float) -> tuple[pd.DataFrame, np.ndarray]:
    """A torch-like run: ascending shapes, warm-up = max(setup, 1.02 x latency), the first point `first`."""
    sizes, batches = [224, 320], [1, 2, 4, 8, 16, 32, 64, 128, 256]
    rows = pd.DataFrame([(s, b) for s in sizes for b in batches], columns=["input_size", "batch_size"])
    rows = rows.assign(model="net", variant="net-fp16", hardware="H200", framework="torch 2.11.0", source=source)
    rows["latency_ms"] = 3.0 + rows["batch_size"] * rows["input_size"] ** 2 / 224**2 * 0.3
    warm = np.maximum(setup, 1.02 * rows["latency_ms"].to_numpy())
    warm[0] = first
    return rows, warm


def _features(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[["batch_size", "model", "variant", "hardware", "input_size"]].reset_index(drop=True)


def test_torch_structure_setup_latency_first_point_and_seen_shape():
    a, wa = _torch_run("run a", 60.0, 600.0)
    b, wb = _torch_run("run b", 60.0, 900.0)
    rows = pd.concat([a, b], ignore_index=True)
    warm = np.concatenate([wa, wb])
    model = RuntimeWarmupModel().fit(_features(rows), warm, profile=with_run_flags(rows))
    assert model.structured_ and model.setup_[("runtime", "torch")] == pytest.approx(60.0)
    assert model.k_ == pytest.approx(1.02)
    assert model.first_factor_ == pytest.approx(np.sqrt(10.0 * 15.0))  # geometric mean of 600/60 and 900/60
    query = _features(a)
    latency = model.latency_.predict(query)
    plain = model.predict(query)  # no labels: every row a new shape after the first
    assert plain == pytest.approx(np.maximum(60.0, 1.02 * latency))
    assert plain[-1] > 60.0 * OVERHEAD_RATIO  # a long batch hides the per-shape setup
    labelled = model.predict(query, profile=with_run_flags(a).drop(columns=["latency_ms"]))
    assert labelled[0] == pytest.approx(model.first_factor_ * 60.0)
    assert labelled[1:] == pytest.approx(plain[1:])
    seen = with_run_flags(a).drop(columns=["latency_ms", "seen_shape"])
    seen["oom_batch_size"] = np.where(seen["input_size"] == 224, 257, np.nan)  # the 224 px search found 256
    assert runtime_context(seen)["seen_shape"].tolist() == [False] * 8 + [True] + [False] * 9
    shaped = model.predict(query, profile=seen)
    assert shaped[8] == pytest.approx(1.02 * latency[8])  # the max-batch search ran the shape: no setup left


def test_onnxruntime_structure_is_a_ratio_of_the_latency_model():
    rows = pd.DataFrame([(s, b) for s in (64, 128, 224) for b in (1, 2, 4, 8, 16)], columns=["input_size",
                                                                                           "batch_size"])
    rows = rows.assign(model="cnn", variant="cnn", hardware="cpu", cores=2.0)
    rows["latency_ms"] = 0.5 * rows["batch_size"] * (rows["input_size"] / 64) ** 2
    warm = 1.7 * rows["latency_ms"].to_numpy()
    X = rows[["batch_size", "model", "variant", "hardware", "input_size", "cores"]]
    model = RuntimeWarmupModel().fit(X, warm, profile=rows)
    assert model.ratio_[("config", "cnn|cnn|cpu|2.0")] == pytest.approx(1.7)
    assert model.predict(X) == pytest.approx(1.7 * model.latency_.predict(X))
    assert model.predict(X) == pytest.approx(warm, rel=0.05)


def test_without_profile_or_latency_it_is_the_lightgbm_model():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"batch_size": rng.integers(1, 64, 80).astype(float), "input_size": 224.0})
    y = 50 + 3 * X["batch_size"].to_numpy()
    plain = RuntimeWarmupModel().fit(X, y)
    assert not plain.structured_
    assert plain.predict(X) == pytest.approx(WarmupModel().fit(X, y).predict(X))
    assert plain.feature_importances_ == pytest.approx(plain.fallback_.feature_importances_)


def test_runtime_names_and_flags_of_a_subset():
    assert runtime_of("torch 2.11.0+cu130") == "torch" and runtime_of(None) == "onnxruntime"
    a, _ = _torch_run("run a", 60.0, 600.0)
    flagged = with_run_flags(a)
    subset = flagged.iloc[[3, 5, 0]]
    assert runtime_context(subset)["first_in_run"].tolist() == [False, False, True]  # the profile's, not the fold's
    assert runtime_context(a.iloc[[3, 5, 0]])["first_in_run"].tolist() == [True, False, False]


def test_servopt_fit_uses_it_and_meets_the_target_on_the_h200_profiles(root):
    paths = [root / "profiles" / f"measured_H200_{n}.csv" for n in ("resnet50_fp32", "mobilenet_v3_large_fp16")]
    frame = load_profile(paths).frame
    models, reports = fit_profile(frame, targets=["warmup"], source="h200")
    assert isinstance(models.targets["warmup"].model, RuntimeWarmupModel)
    report = reports["warmup"].to_dict(with_groups=False)
    assert report["model"] == "RuntimeWarmupModel"
    assert report["mape"] < 0.25 < report["baseline_mape"]  # leave one batch size out, against the line
    # bundles predict from the features alone (every row a later shape of a profiled configuration)
    predicted = models.predict(frame.iloc[[3, 35]].reset_index(drop=True), targets=["warmup"])["warmup_ms"]
    assert np.all(np.isfinite(predicted) & (predicted > 0))


def test_benchmark_quick_writes_both_models_per_runtime(root, tmp_path):
    spec = importlib.util.spec_from_file_location("warmup_features", root / "benchmarks" / "warmup_features.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    profiles = [str(root / "profiles" / n) for n in ("measured_H200_resnet50_fp32.csv",
                                                      "measured_H200_mobilenet_v3_large_fp16.csv",
                                                      "measured_mobilenet_like.csv")]
    assert bench.main(["--quick", "--profiles", *profiles, "--out-dir", str(tmp_path)]) == 0
    cv = pd.read_csv(tmp_path / "warmup_cv_quick.csv")
    assert set(cv["runtime"]) == {"all", "torch", "onnxruntime"}
    assert cv["model"].str.startswith("RuntimeWarmupModel").any() and cv["model"].str.startswith("LightGBM").any()
    assert (cv["mape_pct"] > 0).all()
    repeats = pd.read_csv(tmp_path / "warmup_repeats_quick.csv")
    assert repeats["data"].str.contains("cpu-amd-epyc").any()  # the shipped repeated CPU warm-ups
    assert (repeats["one_run_predicts_another_mape_pct"] > 0).all()
    assert Path(tmp_path / "warmup_features.png").exists() is False  # --quick draws nothing
