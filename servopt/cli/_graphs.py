"""``--graph MODEL=FILE.onnx`` of ``servopt fit`` and ``servopt predict``: the work of a model from its graph."""

from __future__ import annotations

from pathlib import Path
import pandas as pd

from servopt.exceptions import ValidationError

__all__ = ["GRAPH_HELP", "add_graphs", "parse_graphs"]

GRAPH_HELP = ("MODEL=FILE.onnx (repeatable): the ONNX graph of the profile's model MODEL; its rows that lack "
              "them get gflops (FLOPs of one sample at the row's input size), param_mb and activation_mb from "
              "shape inference, and the latency model takes batch x gflops as the work of a batch")


def parse_graphs(values: list[str] | None, option: str = "--graph") -> dict[str, Path]:
    """``MODEL=FILE.onnx`` values -> {model: path}; refuses a malformed value, a repeated model, a missing file."""
    graphs: dict[str, Path] = {}
    for value in values or []:
        model, sep, file = value.partition("=")
        model, file = model.strip(), file.strip()
        if not sep or not model or not file:
            raise ValidationError(f"{option} {value}: expected MODEL=FILE.onnx (the profile's model name, '=', "
                                  "an ONNX file)")
        if model in graphs:
            raise ValidationError(f"{option} {value}: model {model!r} is given twice")
        path = Path(file)
        if not path.is_file():
            raise ValidationError(f"{option} {value}: {file}: no such ONNX file")
        graphs[model] = path
    return graphs


def add_graphs(frame: pd.DataFrame, graphs: dict[str, Path], source: str, option: str = "--graph") -> pd.DataFrame:
    """``frame`` with the work columns of ``graphs`` added (:func:`servopt.performance.work.add_work_columns`);
    a model ``frame`` lacks, or a graph that cannot be read or counted, is an error naming the option."""
    if not graphs:
        return frame
    from servopt.performance.work import add_work_columns

    names = set(map(str, frame["model"])) if "model" in frame.columns else set()
    for model, path in graphs.items():
        if model not in names:
            raise ValidationError(f"{option} {model}={path}: {source} has no model {model!r} (models: "
                                  f"{', '.join(sorted(names)) or 'none'})")
    try:
        return add_work_columns(frame, {m: p for m, p in graphs.items()})
    except ValidationError as exc:
        raise ValidationError(f"{option}: {exc}") from None
    except Exception as exc:  # onnx raises its own types on a file that is not a graph
        raise ValidationError(f"{option}: cannot count {', '.join(f'{m}={p}' for m, p in graphs.items())} "
                              f"({type(exc).__name__}: {str(exc).strip()[:300]})") from None
