"""Triton Model Analyzer's ``metrics-model-inference.csv`` and ``metrics-model-gpu.csv`` restated as servopt profiles.

Read like the other importers (:mod:`servopt.profiles._importers`): cells through :func:`read_csv_cells`, columns
mapped to the canonical schema, the result validated with :func:`validate_frame`, so errors name the file, the row
and the column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.exceptions import ValidationError
from servopt.profiles._importers import _MIB, _column, _metadata, _positive, _require, _required_numbers
from servopt.profiles._io import ProfileTable, read_csv_cells
from servopt.profiles._schema import parse_texts, validate_frame

__all__ = ["read_model_analyzer"]

#: Model Analyzer's "MB" is 10**6 bytes (it writes Triton's ``nv_gpu_memory_used_bytes // 1e6``), restated in MiB
_MA_MB = 1e6 / _MIB

# Model Analyzer CSV header -> servopt column (values in ms / W / %, or MB: see _MA_MB_COLUMNS)
_MA_METRICS: dict[str, str] = {
    "Throughput (infer/sec)": "throughput_rps",
    "p99 Latency (ms)": "latency_p99_ms",
    "Avg Latency (ms)": "latency_avg_ms",
    "p90 Latency (ms)": "latency_p90_ms",
    "p95 Latency (ms)": "latency_p95_ms",
    "Response Wait Time (ms)": "client_response_wait_ms",
    "Client Send/Recv (ms)": "client_send_recv_ms",
    "Server Queue time (ms)": "server_queue_ms",
    "Server Compute Input time (ms)": "server_compute_input_ms",
    "Server Compute Infer time (ms)": "server_compute_infer_ms",
    "Server Compute Output time (ms)": "server_compute_output_ms",
    "GPU Memory Available (MB)": "hw.gpu_memory_available_mb",
    "RAM Usage (MB)": "hw.ram_usage_mb",
    "RAM Available (MB)": "hw.ram_available_mb",
}
_MA_GPU_METRICS: dict[str, tuple[str, str]] = {
    "GPU Memory Usage (MB)": ("memory_mb", "sum"),
    "GPU Utilization (%)": ("hw.gpu_utilization_pct", "mean"),
    "GPU Power Usage (W)": ("hw.gpu_power_w", "sum"),
}
#: Model Analyzer columns in MB (10**6 bytes), multiplied by :data:`_MA_MB` into MiB
_MA_MB_COLUMNS = frozenset({"GPU Memory Usage (MB)", "GPU Memory Available (MB)", "RAM Usage (MB)",
                            "RAM Available (MB)"})
#: outcomes of a measurement (its values checked against Model Analyzer's constraints), not settings: not carried,
#: since as a text column each would be a label that splits one configuration's batch sweep
_MA_OUTCOMES = frozenset({"Satisfies Constraints"})
_MA_KEYS = ("Model", "Batch", "Model Config Path")
_INSTANCE_PART = re.compile(r"^\s*(\d+)\s*:\s*(GPU|CPU|MODEL)\s*$", re.IGNORECASE)


def _instance_group(cells: pd.Series, where: Sequence[str],
                    path: Path) -> tuple[list[int], list[str], list[int | None]]:
    """Total instances, kinds (``GPU``, ``GPU+CPU``) and the GPU groups' instances (None without one) per row."""
    counts, kinds, on_gpus = [], [], []
    for i, cell in enumerate(cells):
        text = str(cell).strip()
        parts = [p for p in text.split("+")]
        matches = [_INSTANCE_PART.match(p) for p in parts]
        if not text or not all(matches):
            hint = " (ensemble and multi-model rows are not supported: import each model's own report)" \
                if "," in text else ""
            raise ValidationError(f"{path}: {where[i]}, column 'Instance Group': expected '<count>:<KIND>' such as "
                                  f"'2:GPU', or groups joined with ' + ', got {text[:60]!r}{hint}")
        zero = next((m.group(0).strip() for m in matches if m and int(m.group(1)) < 1), None)
        if zero is not None:
            raise ValidationError(f"{path}: {where[i]}, column 'Instance Group': expected a count >= 1 in each "
                                  f"'<count>:<KIND>' group (a config serves with at least one instance), got "
                                  f"{zero!r} in {text[:60]!r}")
        counts.append(sum(int(m.group(1)) for m in matches if m))
        kinds.append("+".join(m.group(2).upper() for m in matches if m))
        gpu = [int(m.group(1)) for m in matches if m and m.group(2).upper() == "GPU"]
        on_gpus.append(sum(gpu) if gpu else None)
    return counts, kinds, on_gpus


def _max_batch_sizes(cells: pd.Series, where: Sequence[str], path: Path) -> np.ndarray:
    """``Max Batch Size``: whole numbers >= 0 (Triton's ``max_batch_size``; 0 is a model without batching)."""
    accepted = "an integer >= 0 (the config's max_batch_size)"
    values = _required_numbers(cells, "Max Batch Size", where, path, accepted)
    bad = np.flatnonzero((values < 0) | (values != np.floor(values)))
    if bad.size:
        i = int(bad[0])
        raise ValidationError(f"{path}: {where[i]}, column 'Max Batch Size': expected {accepted}, got "
                              f"{cells.iloc[i]!r}")
    return values


def _ma_numbers(cells: pd.Series, name: str, where: Sequence[str], path: Path) -> np.ndarray:
    """A Model Analyzer metric column, its MB (10**6 bytes) restated in MiB."""
    if name in _MA_MB_COLUMNS:
        return _required_numbers(cells, name, where, path, "a number of MB", _MA_MB)
    return _required_numbers(cells, name, where, path, "a number")


def _ma_load_column(header: Sequence[str], path: Path) -> tuple[str, str]:
    if "Concurrency" in header:
        return "Concurrency", "concurrency"
    if "Request Rate" in header:
        return "Request Rate", "request_rate"
    raise ValidationError(f"{path}: a Model Analyzer report needs a 'Concurrency' or 'Request Rate' column "
                          f"(found: {', '.join(header)})")


def read_model_analyzer(paths: str | Path | Sequence[str | Path], *, hardware: str, model: str | None = None,
                        variant: str | None = None, input_size: int | None = None, cores: float | None = None,
                        source: str | None = None) -> ProfileTable:
    """Read Triton Model Analyzer reports as a profile.

    Parameters
    ----------
    paths : path or sequence of paths
        ``metrics-model-inference.csv`` (required) and optionally ``metrics-model-gpu.csv``; which is which is
        told from the header.
    hardware : str
        The GPU the reports were measured on (Model Analyzer does not record its type).
    model, variant : str, optional
        servopt names; default: the report's ``Model`` cell.

    Notes
    -----
    One row per (model config, client batch, concurrency). ``Batch`` is the client batch and becomes
    ``batch_size``; ``Throughput (infer/sec)`` becomes ``throughput_rps``; ``latency_ms`` is ``Avg Latency (ms)``
    when the report has it, otherwise the mean latency implied by the closed loop (Little's law):
    ``concurrency * batch / throughput``. ``Instance Group`` cells such as ``2:GPU`` become ``instances`` and
    ``instance_kind``; ``Model Config Path`` becomes ``config``, ``Max Batch Size`` ``max_batch_size``. The GPU
    report adds ``memory_mb`` (summed over GPUs), ``hw.gpu_utilization_pct`` (mean) and ``hw.gpu_power_w`` (sum).
    Model Analyzer's MB are 10**6 bytes; every ``(MB)`` column becomes MiB (x 10**6 / 2**20), the unit of servopt's
    ``memory_mb`` and memory limits. ``Satisfies Constraints`` is not carried: it is an outcome of each measurement
    (its values checked against the constraints given to Model Analyzer), not a setting, and as a label it would
    split one configuration's batch sweep.
    """
    items = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    inference: tuple[Path, list[str], list[list[str]], list[str]] | None = None
    gpu: tuple[Path, list[str], list[list[str]], list[str]] | None = None
    for path in items:
        header, rows, where = read_csv_cells(path)
        if "GPU UUID" in header and "Throughput (infer/sec)" not in header:
            if "Batch" not in header:
                raise ValidationError(f"{path}: this is Model Analyzer's metrics-server-only.csv, which has no "
                                      "per-model measurements; import metrics-model-inference.csv")
            if gpu is not None:
                raise ValidationError(f"{path}: a second metrics-model-gpu.csv; give one per import")
            gpu = (path, header, rows, where)
        elif "Throughput (infer/sec)" in header:
            if inference is not None:
                raise ValidationError(f"{path}: a second metrics-model-inference.csv; give one per import")
            inference = (path, header, rows, where)
        else:
            raise ValidationError(f"{path}: not a Model Analyzer metrics-model-inference.csv (no "
                                  f"'Throughput (infer/sec)' column) nor metrics-model-gpu.csv (no 'GPU UUID' "
                                  f"column); found: {', '.join(header)}")
    if inference is None:
        raise ValidationError(f"{items[0]}: Model Analyzer import needs metrics-model-inference.csv (latency and "
                              "throughput); metrics-model-gpu.csv only adds memory and GPU features")
    path, header, rows, where = inference
    load_name, load_col = _ma_load_column(header, path)
    _require(header, [*_MA_KEYS, "Instance Group", "Max Batch Size", "Throughput (infer/sec)",
                      "p99 Latency (ms)"], path, "Model Analyzer writes them by default")
    if not rows:
        raise ValidationError(f"{path}: the report has a header but no rows")
    known = {*_MA_KEYS, load_name, "Instance Group", "Max Batch Size", *_MA_OUTCOMES, *_MA_METRICS,
             *_MA_GPU_METRICS}
    raw: dict[str, Any] = {}
    for name in header:
        if name not in known and not name.startswith("backend_parameter/"):
            raise ValidationError(f"{path}: column {name!r} is not a Model Analyzer report column servopt knows "
                                  f"(known: {', '.join(sorted(known))}, backend_parameter/*); remove it")
    cells = {name: _column(rows, header, name) for name in header}
    models = parse_texts(cells["Model"], "Model", where, str(path))
    batch = _required_numbers(cells["Batch"], "Batch", where, path, "a batch size (integer >= 1)")
    load = _positive(_required_numbers(cells[load_name], load_name, where, path, "a number > 0"), cells[load_name],
                     load_name, where, path, "a number > 0 (the load perf_analyzer drove)")
    configs = parse_texts(cells["Model Config Path"], "Model Config Path", where, str(path))
    counts, kinds, on_gpus = _instance_group(cells["Instance Group"], where, path)
    raw["max_batch_size"] = _max_batch_sizes(cells["Max Batch Size"], where, path)
    for name, column in _MA_METRICS.items():
        if name in cells:
            raw[column] = _ma_numbers(cells[name], name, where, path)
    for name, (column, _) in _MA_GPU_METRICS.items():
        if name in cells:
            raw[column] = _ma_numbers(cells[name], name, where, path)
    for name in header:
        if name.startswith("backend_parameter/"):
            label = "backend_parameter." + re.sub(r"[^A-Za-z0-9_.\-]", "_", name.split("/", 1)[1] or "value")
            raw[label] = parse_texts(cells[name], name, where, str(path))
    origin = {column: name for name, column in _MA_METRICS.items()}
    origin.update({column: name for name, (column, _) in _MA_GPU_METRICS.items()})
    origin.update(batch_size="Batch", max_batch_size="Max Batch Size", config="Model Config Path",
                  instances="Instance Group", instance_kind="Instance Group", model="Model")
    origin[load_col] = load_name
    if "latency_avg_ms" in raw:
        raw["latency_ms"] = raw.pop("latency_avg_ms")
        origin["latency_ms"] = "Avg Latency (ms)"
    else:
        origin["latency_ms"] = f"derived: {load_name} * Batch / Throughput (infer/sec)"
        if load_col != "concurrency":
            raise ValidationError(f"{path}: a request-rate report needs 'Avg Latency (ms)' to give the latency of "
                                  "one request (add perf_latency_avg to inference_output_fields)")
        throughput = raw["throughput_rps"]
        bad = np.flatnonzero(throughput <= 0)
        if bad.size:
            i = int(bad[0])
            raise ValidationError(f"{path}: {where[i]}, column 'Throughput (infer/sec)': expected a number > 0 to "
                                  f"derive the mean latency, got {cells['Throughput (infer/sec)'].iloc[i]!r}")
        raw["latency_ms"] = load * batch / throughput * 1000.0
    n = len(rows)
    frame = pd.DataFrame({
        "model": [model] * n if model is not None else models,
        **_metadata(n, model=None, hardware=hardware, variant=variant, input_size=input_size, cores=cores,
                    source=source or f"{path} (Model Analyzer)"),
        "batch_size": batch, "config": configs, "instances": counts, "instance_kind": kinds, load_col: load, **raw,
    })
    devices = [1] * n
    if gpu is not None:
        frame, devices = _merge_gpu(frame, models, batch, load, configs, gpu, load_col)
    frame.insert(int(frame.columns.get_loc("instances")) + 1, "instances_per_gpu",
                 _per_gpu_instances(on_gpus, devices, where, path))
    origin["instances_per_gpu"] = "Instance Group"
    if model is not None:
        origin.pop("model")
    table = validate_frame(frame, str(path), where, origin)
    return ProfileTable(table, [p for p in (path, gpu[0] if gpu else None) if p])


def _per_gpu_instances(on_gpus: Sequence[int | None], devices: Sequence[int], where: Sequence[str],
                       path: Path) -> list[float]:
    """Instances on each GPU: Model Analyzer writes a GPU group's count times the GPUs it runs on."""
    out: list[float] = []
    for i, (total, n) in enumerate(zip(on_gpus, devices)):
        if total is None:
            out.append(math.nan)
            continue
        if total % n:
            raise ValidationError(
                f"{path}: {where[i]}, column 'Instance Group': {total} GPU instances on the {n} GPUs that "
                "metrics-model-gpu.csv lists for this row is not a whole number per GPU (Model Analyzer writes the "
                "count times the number of GPUs); are the two reports from the same run?")
        out.append(float(total // n))
    return out


def _merge_gpu(frame: pd.DataFrame, models: list[Any], batch: np.ndarray, load: np.ndarray, configs: list[Any],
               gpu: tuple[Path, list[str], list[list[str]], list[str]],
               load_col: str) -> tuple[pd.DataFrame, list[int]]:
    """``frame`` with the GPU report's metrics, and the number of GPUs (distinct ``GPU UUID``) per row."""
    path, header, rows, where = gpu
    load_name = "Concurrency" if load_col == "concurrency" else "Request Rate"
    _require(header, [*_MA_KEYS, load_name, "GPU UUID"], path, "Model Analyzer writes them in metrics-model-gpu.csv")
    cells = {name: _column(rows, header, name) for name in header}
    unknown = [h for h in header if h not in {*_MA_KEYS, load_name, "GPU UUID", "Instance Group", *_MA_OUTCOMES,
                                              *_MA_GPU_METRICS}]
    if unknown:
        raise ValidationError(f"{path}: column {unknown[0]!r} is not a metrics-model-gpu.csv column servopt knows; "
                              "remove it")
    g_models = parse_texts(cells["Model"], "Model", where, str(path))
    g_batch = _required_numbers(cells["Batch"], "Batch", where, path, "a batch size")
    g_load = _required_numbers(cells[load_name], load_name, where, path, "a number")
    g_configs = parse_texts(cells["Model Config Path"], "Model Config Path", where, str(path))
    index = {(m, float(b), float(c), cfg): i for i, (m, b, c, cfg) in enumerate(zip(models, batch, load, configs))}
    rows: list[int] = []  # the metrics-model-inference.csv row of each GPU row
    for j in range(len(g_models)):
        key = (g_models[j], float(g_batch[j]), float(g_load[j]), g_configs[j])
        if key not in index:
            raise ValidationError(
                f"{path}: {where[j]}: no row of metrics-model-inference.csv has Model={g_models[j]!r}, "
                f"Batch={g_batch[j]:g}, {load_name}={g_load[j]:g}, Model Config Path={g_configs[j]!r}; the "
                "two reports must come from the same Model Analyzer run")
        rows.append(index[key])
    uuids: dict[int, set[str]] = {}
    for row, uuid in zip(rows, cells["GPU UUID"]):
        uuids.setdefault(row, set()).add(str(uuid).strip())
    devices = [len(uuids.get(i, ())) or 1 for i in range(len(frame))]
    sums: dict[str, dict[int, list[float]]] = {}
    for name in _MA_GPU_METRICS:
        if name not in cells:
            continue
        values = _ma_numbers(cells[name], name, where, path)
        per_row = sums.setdefault(name, {})
        for row, value in zip(rows, values):
            per_row.setdefault(row, []).append(float(value))
    for name, (column, how) in _MA_GPU_METRICS.items():
        if name not in sums:
            continue
        combined = np.full(len(frame), np.nan)
        for i, values in sums[name].items():
            combined[i] = sum(values) if how == "sum" else sum(values) / len(values)
        frame[column] = combined
    return frame, devices
