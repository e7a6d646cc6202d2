"""Serve an ONNX file on a tritonserver started for the purpose (``servopt profile MODEL.onnx --triton start``).

:func:`write_onnx_repository` writes a one-model Triton repository around an ONNX file: the Python backend with
servopt's generated ``model.py`` (:data:`servopt.triton.artifacts.PYTHON_ONNX_MODEL`, ONNX Runtime on CPU, the
same wrapper ``servopt solve --triton-backend python --out`` writes), the tensors read from the ONNX graph
(:func:`servopt.triton.artifacts.onnx_tensors`), ``max_batch_size`` = the largest batch to be profiled, CPU
instances, and no dynamic batcher (the client sends whole batches, so each request is one profiled batch).

:func:`served_onnx` starts a tritonserver on such a repository with the helpers of
:mod:`servopt.serving.tritonserver` (the server lookup of ``servopt verify --start``: a given binary, else
``tritonserver`` on PATH, else nvidia-pytriton's in ``.triton-venv``) and stops it by its PID when the block ends,
however it ends: an error, Ctrl-C (``KeyboardInterrupt``) or SIGTERM (turned into ``KeyboardInterrupt`` while the
block runs), also during the server's start-up. The repository lives in a temporary folder that goes with it.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError

__all__ = ["ServedModel", "write_onnx_repository", "served_onnx", "fixed_dims"]


@dataclass(frozen=True)
class ServedModel:
    """A model being served: its name, the server's gRPC URL, the repository and the server's log file."""

    name: str
    url: str
    repository: Path
    log_path: Path


def fixed_dims(path: Path, tensors: list[tuple[str, str, tuple[int, ...]]], input_size: int | None
               ) -> list[tuple[str, str, tuple[int, ...]]]:
    """The input tensors with every variable (-1) non-batch axis set to ``input_size``.

    A profiled point needs a definite shape: without ``input_size`` a variable axis is refused (the load
    generator would send a size of 1, which is not what the model serves).

    >>> fixed_dims(Path("m.onnx"), [("x", "TYPE_FP32", (3, -1, -1))], 224)
    [('x', 'TYPE_FP32', (3, 224, 224))]
    """
    out = []
    for name, dtype, dims in tensors:
        if any(d == -1 for d in dims):
            if input_size is None:
                raise ValidationError(f"{path}: input {name!r} has variable axes {list(dims)}; give --input-sizes "
                                      "SIZE (one value) to serve it with those axes fixed to SIZE")
            dims = tuple(input_size if d == -1 else d for d in dims)
        out.append((name, dtype, dims))
    return out


def write_onnx_repository(onnx_path: str | Path, dest: str | Path, *, name: str, max_batch_size: int,
                          instances: int = 1, threads: int = 1, input_size: int | None = None,
                          mem_pattern: bool = True) -> Path:
    """Write ``dest/name``: a Python-backend model running ``onnx_path`` with ONNX Runtime; returns ``dest``.

    Parameters
    ----------
    onnx_path : path
        ONNX file with a dynamic first (batch) axis on every input and output.
    dest : path
        Repository folder (created).
    name : str
        Model name (folder and ``config.pbtxt`` name).
    max_batch_size : int
        The largest batch a request may carry (the largest profiled batch size).
    instances : int
        CPU instances of the model (``instance_group { count: instances kind: KIND_CPU }``).
    threads : int
        ONNX Runtime intra-op threads per instance (``parameters.intra_op_thread_count``; the plan's repository
        leaves it unset, which the wrapper reads as 1).
    input_size : int, optional
        Fixes every variable non-batch input axis (see :func:`fixed_dims`).
    mem_pattern : bool
        False writes ``parameters.enable_mem_pattern = "0"`` (ONNX Runtime's memory pattern off, as
        ``servopt profile --mem-pattern off`` measures).
    """
    import shutil

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from servopt.triton.artifacts import PYTHON_ONNX_MODEL, onnx_tensors
    from servopt.triton.spec import safe_name

    onnx_path = Path(onnx_path)
    if onnx_path.suffix.lower() != ".onnx" or not onnx_path.is_file():
        raise ValidationError(f"MODEL {onnx_path}: expected an existing .onnx file")
    if safe_name(name) != name:
        raise ValidationError(f"--model-name {name!r}: Triton model names take letters, digits and _ . - only "
                              f"(e.g. {safe_name(name)!r})")
    for flag, value in (("max_batch_size", max_batch_size), ("--instances", instances), ("--cores", threads)):
        if value < 1:
            raise ValidationError(f"{flag}: expected >= 1, got {value}")
    inputs, outputs = onnx_tensors(onnx_path)
    inputs = fixed_dims(onnx_path, inputs, input_size)
    cfg = mc.ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    for tensors, field in ((inputs, cfg.input), (outputs, cfg.output)):
        for tname, dtype, dims in tensors:
            field.add(name=tname, data_type=mc.DataType.Value(dtype), dims=list(dims))
    cfg.instance_group.add(count=instances, kind=mc.ModelInstanceGroup.KIND_CPU)
    cfg.parameters["intra_op_thread_count"].string_value = str(threads)
    if not mem_pattern:
        cfg.parameters["enable_mem_pattern"].string_value = "0"
    folder = Path(dest) / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy2(onnx_path, folder / "1" / "model.onnx")
    (folder / "1" / "model.py").write_text(PYTHON_ONNX_MODEL)
    (folder / "config.pbtxt").write_text(text_format.MessageToString(cfg, use_short_repeated_primitives=True))
    return Path(dest)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``KeyboardInterrupt`` (so ``finally`` clauses stop the server)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def served_onnx(onnx_path: str | Path, *, name: str, max_batch_size: int, instances: int = 1, threads: int = 1,
                input_size: int | None = None, tritonserver: str | Path | None = None,
                startup_timeout_s: float = 600, mem_pattern: bool = True) -> Iterator[ServedModel]:
    """Serve ``onnx_path`` on a fresh tritonserver for the duration of the block.

    The repository (:func:`write_onnx_repository`) is written and checked before the server starts; the
    server is found with :func:`servopt.serving.tritonserver.resolve_env` (``tritonserver`` given, else on PATH,
    else nvidia-pytriton's in ``.triton-venv``) and stopped by its PID (and its process group) when the block
    ends, also on errors, Ctrl-C and SIGTERM. A model that does not load raises
    :class:`servopt.serving.tritonserver.TritonCheckError` with the server's log.
    """
    from servopt.serving.tritonserver import TritonServer, TritonSetupError, resolve_env

    with tempfile.TemporaryDirectory(prefix="servopt-profile-") as tmp:
        repo = write_onnx_repository(onnx_path, Path(tmp) / "repo", name=name, max_batch_size=max_batch_size,
                                     instances=instances, threads=threads, input_size=input_size,
                                     mem_pattern=mem_pattern)
        try:
            env = resolve_env(tritonserver)
        except TritonSetupError as exc:
            raise ValidationError(str(exc)) from None
        if not (env.backends / "python").is_dir():
            raise ValidationError(f"{env.server} has no python backend (in {env.backends}); the served ONNX file "
                                  "runs in servopt's Python-backend wrapper")
        server = TritonServer(env, [repo], Path(tmp), startup_timeout_s=startup_timeout_s)
        with _sigterm_as_interrupt():
            try:
                server.start()  # a failed start stops what it started; an interrupt here is caught below
                _check_ready(server, name)
                yield ServedModel(name=name, url=f"127.0.0.1:{server.grpc_port}", repository=repo,
                                  log_path=server.log_path)
            finally:
                server.stop()


def _check_ready(server: Any, name: str) -> None:
    """Raise :class:`TritonCheckError` (with the log) unless ``name`` is READY."""
    from servopt.serving.tritonserver import TritonCheckError

    states = {n: (state, reason) for n, state, reason in server.index()}
    state, reason = states.get(name, ("MISSING", "not in the repository index"))
    if state != "READY":
        raise TritonCheckError(f"model {name!r} did not load on {server.env.server} ({state}: {reason})",
                               server.log())
