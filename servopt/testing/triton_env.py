"""The separate virtualenv that runs a real tritonserver: ``nvidia-pytriton`` (tritonserver 2.51 with the Python
backend, CPU-only capable), ``numpy<2`` (with numpy 2 the Python backend stub returns empty tensors) and
``onnxruntime`` (servopt's Python-backend ``model.py`` runs the ONNX model with it).

It is kept apart from servopt's own environment because pytriton pins numpy<2. ``ensure_env`` creates it once
(idempotent, safe under concurrent test processes) and finds the server, its libraries and the backend stub.

Command line: ``python -m servopt.testing.triton_env [VENV]`` (also ``scripts/triton_env.sh``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from servopt.serving.tritonserver import (REQUIREMENTS, STAMP, TritonEnv, TritonSetupError, default_venv, ensure_env,
                                          find_env)

__all__ = ["TritonEnv", "TritonSetupError", "ensure_env", "find_env", "default_venv", "REQUIREMENTS"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    venv = Path(args[0]) if args else default_venv()
    started = time.monotonic()
    try:
        env = ensure_env(venv)
    except TritonSetupError as exc:
        print(f"triton env: {exc}", file=sys.stderr)
        return 1
    print(f"triton env: ready at {env.venv} ({(env.venv / STAMP).read_text().strip()}); "
          f"tritonserver {env.server}; {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
