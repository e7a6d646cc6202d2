"""A models file saved before a constructor parameter existed still answers ``get_params``, ``repr`` and ``clone``.

``servopt fit -o`` pickles the fitted estimators (joblib). A parameter added later is missing from such a file's
objects; scikit-learn's ``get_params`` (and so ``repr``, ``clone`` and ``servopt predict`` on anything that prints
the model) reads every constructor parameter and failed with ``AttributeError``. The objects below are real fits
on a shipped profile with the later parameters removed from their state, as a file saved before them holds.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from servopt.performance import MaxBatchModel, WorkLatencyModel
from servopt.performance.evaluate import PerformanceModels, fit_profile
from servopt.performance.warmup_runtime import RuntimeWarmupModel
from servopt.profiles import load_profile


@pytest.fixture(scope="module")
def fitted(root):
    frame = load_profile(root / "profiles" / "measured_H200_resnet50_fp16.csv").frame
    models, _ = fit_profile(frame, source="resnet50 fp16", cross_validate=False)
    return models, frame


def _as_saved_before(model, names):
    """``model`` pickled without ``names`` in its state, then read back (a file written before they existed)."""
    state = model.__dict__.copy()
    for name in names:
        del state[name]
    old = object.__new__(type(model))
    old.__dict__.update(state)
    return pickle.loads(pickle.dumps(old))


@pytest.mark.parametrize(("target", "cls"), [("memory", MaxBatchModel), ("latency", WorkLatencyModel),
                                             ("warmup", RuntimeWarmupModel)])
def test_parameters_added_later_take_the_behaviour_before_them(fitted, target, cls):
    models, frame = fitted
    model = models.targets[target].model
    assert type(model) is cls and cls._params_before
    # what the test removes must be real, current parameters, and the value given back must differ from the
    # fitted model's where the behaviour before was another (otherwise the check below proves nothing)
    params = model.get_params()
    assert set(cls._params_before) <= set(params)
    X = models.targets[target].frame(frame)
    old = _as_saved_before(model, cls._params_before)
    got = old.get_params()
    assert {k: got[k] for k in cls._params_before} == cls._params_before
    assert {k: v for k, v in got.items() if k not in cls._params_before} == \
        {k: v for k, v in params.items() if k not in cls._params_before}
    assert cls.__name__ in repr(old)
    assert clone(old).get_params() == got
    np.testing.assert_array_equal(old.predict(X), model.predict(X))  # its fitted state decides the predictions


def test_a_missing_parameter_not_listed_takes_its_default(fitted):
    model = fitted[0].targets["memory"].model
    old = _as_saved_before(model, ["block_mb", "max_batch_size"])
    assert old.get_params()["block_mb"] == 0.0 and old.get_params()["max_batch_size"] == 4096


def test_a_saved_models_file_without_them_loads_prints_and_predicts_as_before(fitted, tmp_path):
    models, frame = fitted
    old = copy.deepcopy(models)
    for target in old.targets.values():
        target.model = _as_saved_before(target.model, type(target.model)._params_before)
    path = tmp_path / "models.joblib"
    old.save(path)
    loaded = PerformanceModels.load(path)
    assert set(loaded.targets) == {"latency", "warmup", "memory"}
    for target in loaded.targets.values():
        assert type(target.model).__name__ in repr(target.model)
    pd.testing.assert_frame_equal(loaded.predict(frame), models.predict(frame))


def test_a_memory_model_saved_while_the_activation_peak_was_the_axis_says_so():
    """From 2886e1f to 311283a the family lines ran in batch x act_peak_mb wherever a profile recorded it, before
    ``work_axis`` existed: such a file's fitted axes tell which it was."""
    rng = np.random.default_rng(3)
    rows = [{"batch_size": float(b), "model": m, "input_size": float(s), "gflops": g * (s / 100) ** 2,
             "act_peak_mb": a * (s / 100) ** 2}
            for m, g, a in (("a", 1.0, 3.0), ("b", 2.0, 1.5)) for s in (96, 128, 160) for b in (1, 2, 4, 8, 16)]
    X = pd.DataFrame(rows)
    y = 50 + X["batch_size"] * X["act_peak_mb"] * rng.uniform(0.95, 1.05, len(X))
    for axis in ("act_peak", "flops"):
        model = MaxBatchModel(structure="family", work_axis=axis).fit(X, y)
        old = _as_saved_before(model, ["work_axis"])
        assert old.get_params()["work_axis"] == axis
        np.testing.assert_array_equal(old.predict(X), model.predict(X))
