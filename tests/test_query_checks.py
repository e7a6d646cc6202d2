"""What a query to fitted models may leave out or get wrong: found by walking ``servopt predict`` and the Python API.

* An empty ``input_size`` where every profile row had one was read as 0 (not applicable) and the model
  predicted 0-pixel images: 0.04 ms for 34.5 at 176 px, with only the generic "extrapolated" warning.
* A batch of 12.5 items was predicted; a batch is a whole number of items.
* An empty query raised scikit-learn's "Found array with 0 sample(s)" from the Python API.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servopt.exceptions import ValidationError
from servopt.performance.evaluate import fit_profile
from servopt.profiles import load_profile


@pytest.fixture(scope="module")
def models(root: Path):
    frame = load_profile([root / "profiles" / "measured_resnet_like.csv"]).frame
    fitted, _ = fit_profile(frame, targets=["latency", "memory"], cross_validate=False)
    return fitted


def _query(**cells) -> pd.DataFrame:
    row = {"model": "resnet_like", "variant": "resnet_like", "hardware": "cpu-amd-epyc", "cores": 2,
           "input_size": 224, "batch_size": 8}
    row.update(cells)
    return pd.DataFrame([row])


def test_a_full_query_predicts(models) -> None:
    got = models.predict(_query())
    assert got["latency_ms"].iloc[0] > 1 and got["memory_mb"].iloc[0] > 1


@pytest.mark.parametrize("column", ["input_size", "cores"])
@pytest.mark.parametrize("value", [np.nan, None, ""])
def test_an_empty_size_is_refused_where_the_profiles_gave_one(models, column: str, value) -> None:
    query = _query(**{column: value})
    with pytest.raises(ValidationError, match=rf"row 1, column '{column}': empty or 0, but every profile row"):
        models.predict(query, source="q.csv")


def test_a_fractional_batch_is_refused(models) -> None:
    with pytest.raises(ValidationError, match=r"q.csv: row 1, column 'batch_size': expected a whole number of "
                                              r"items, got 12.5"):
        models.predict(_query(batch_size=12.5), source="q.csv")
    assert len(models.predict(_query(batch_size=12.0))) == 1  # a whole number written as a float is one


def test_an_empty_query_gives_empty_columns(models) -> None:
    empty = _query().iloc[:0]
    assert list(models.predict(empty).columns) == ["latency_ms", "memory_mb"]
    assert models.predict(empty, intervals=True).empty
    assert list(models.largest_batch(empty, 100.0).columns) == [
        "max_batch", "max_batch_usable_fraction", "max_batch_oom_margin", "max_batch_basis"]
    assert models.planned_memory(empty, 100.0).empty
    with pytest.raises(ValidationError, match="memory_limit_mb=-1"):
        models.largest_batch(empty, -1)


def test_the_cli_names_the_row(tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from servopt.cli import main

    assert main(["fit", str(root / "profiles" / "measured_resnet_like.csv"), "--targets", "latency",
                 "-o", str(tmp_path / "m.joblib")]) == 0
    (tmp_path / "q.csv").write_text("model,hardware,cores,input_size,batch_size\n"
                                    "resnet_like,cpu-amd-epyc,2,224,8\nresnet_like,cpu-amd-epyc,2,,8\n")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "m.joblib"), str(tmp_path / "q.csv")]) == 2
    assert "row 2 (line 3), column 'input_size': empty or 0" in capsys.readouterr().err


def test_a_missing_column_names_what_a_query_needs(models) -> None:
    """The message listed every hw.* column of the profile (about 40 on the H200 profiles) as needed, although a
    query may leave them out."""
    with pytest.raises(ValidationError) as caught:
        models.predict(_query().drop(columns="batch_size"), source="q.csv")
    message = str(caught.value)
    assert message.startswith("q.csv: missing column(s) 'batch_size'; the fitted models need batch_size, model")
    assert "hw." not in message.replace("(hw.* columns may be left out)", "")


def test_an_old_import_s_constraint_outcome_is_not_a_label() -> None:
    """Profiles imported from Model Analyzer before 931351c carry its Yes/No ``satisfies_constraints``: it must not
    split a configuration's batch sweep into two."""
    from servopt.performance.features import TARGETS, group_columns

    rows = pd.DataFrame({"model": "m", "hardware": "T4", "concurrency": [1] * 4 + [4] * 4,
                         "batch_size": [1, 2, 4, 8] * 2, "latency_ms": [1.0, 2, 4, 8, 3, 6, 12, 24],
                         "satisfies_constraints": ["Yes", "Yes", "Yes", "No", "Yes", "No", "No", "No"]})
    assert group_columns(rows, TARGETS["latency"])[-1:] == ["concurrency"]
