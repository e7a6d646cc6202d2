"""A repository with one timed stand-in model (Python backend), for load-generation and verify tests.

The model takes ``INPUT0`` (FP32, dims [4]) and returns ``OUTPUT0`` (FP32, dims [4]); each execution sleeps
``base_ms + per_item_ms * items`` (see ``standin_model.py``), so its batch latency is known exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from servopt.testing.triton_server import STANDIN

__all__ = ["write_timed_model", "timed_parameters"]


def timed_parameters(base_ms: float, per_item_ms: float) -> str:
    """The ``parameters`` lines of config.pbtxt that make the stand-in sleep."""
    return (f'parameters {{ key: "servopt_base_ms" value {{ string_value: "{base_ms:g}" }} }}\n'
            f'parameters {{ key: "servopt_per_item_ms" value {{ string_value: "{per_item_ms:g}" }} }}\n')


def write_timed_model(repo: Path, name: str = "timed", *, base_ms: float = 5.0, per_item_ms: float = 1.0,
                      max_batch_size: int = 32, instances: int = 1, queue_delay_us: int | None = 0) -> Path:
    """Write ``repo/name`` (config.pbtxt and version 1 with the stand-in); returns the model folder.

    ``queue_delay_us=None`` leaves dynamic batching off."""
    folder = Path(repo) / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy2(STANDIN, folder / "1" / "model.py")
    batching = (f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}\n"
                if queue_delay_us is not None else "")
    (folder / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
        'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n" + batching
        + timed_parameters(base_ms, per_item_ms))
    return folder
