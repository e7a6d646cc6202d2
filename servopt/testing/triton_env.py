"""The separate virtualenv that runs a real tritonserver: ``nvidia-pytriton`` (tritonserver 2.51 with the Python
backend, CPU-only capable), ``numpy<2`` (with numpy 2 the Python backend stub returns empty tensors) and
``onnxruntime`` (the ``model.py`` servopt writes for ``--triton-backend python`` runs the ONNX model with it, so
the real models answer on a server without the onnxruntime backend).

It is kept apart from servopt's own environment because pytriton pins numpy<2. ``ensure_env`` creates it once
(idempotent, safe under concurrent test processes) and finds the server, its libraries and the backend stub.

Command line: ``python -m servopt.testing.triton_env [VENV]`` (also ``scripts/triton_env.sh``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TritonEnv", "TritonSetupError", "ensure_env", "find_env", "default_venv", "REQUIREMENTS"]

REQUIREMENTS = ("nvidia-pytriton", "numpy<2", "onnxruntime")
_STAMP = ".servopt-triton-ok"


class TritonSetupError(RuntimeError):
    """The tritonserver environment could not be created or is incomplete (the message holds the pip log)."""


@dataclass(frozen=True)
class TritonEnv:
    """Paths inside a ready virtualenv."""

    venv: Path
    python: Path
    server: Path
    libs: Path
    backends: Path
    stub: Path

    def environ(self) -> dict[str, str]:
        """Environment for the server: its libraries, and the venv first on PATH so the stub finds numpy."""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(self.libs), env.get("LD_LIBRARY_PATH")) if p)
        env["PATH"] = os.pathsep.join((str(self.venv / "bin"), env.get("PATH", "")))
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(var, None)
        return env


def default_venv() -> Path:
    """``$SERVOPT_TRITON_VENV``, else ``.triton-venv`` in the project root (beside ``pyproject.toml``)."""
    if os.environ.get("SERVOPT_TRITON_VENV"):
        return Path(os.environ["SERVOPT_TRITON_VENV"])
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent / ".triton-venv"
    return Path.cwd() / ".triton-venv"


def find_env(venv: str | Path) -> TritonEnv:
    """Locate the server inside an existing venv (raises :class:`TritonSetupError` when incomplete)."""
    venv = Path(venv).absolute()
    python = venv / "bin" / "python"
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / f"python{ver}" / "site-packages"
    base = site / "pytriton" / "tritonserver"
    env = TritonEnv(venv=venv, python=python, server=base / "bin" / "tritonserver", libs=site / "nvidia_pytriton.libs",
                    backends=base / "backends", stub=base / "python_backend_stubs" / ver / "triton_python_backend_stub")
    missing = [str(p) for p in (python, env.server, env.libs, env.backends / "python" / "libtriton_python.so",
                                env.stub) if not p.exists()]
    if missing:
        raise TritonSetupError(f"the tritonserver environment at {venv} is incomplete; missing: {', '.join(missing)}")
    return env


def ensure_env(venv: str | Path | None = None, *, log: Path | None = None, timeout_s: float = 900) -> TritonEnv:
    """Create the venv with :data:`REQUIREMENTS` unless a complete one exists; return its paths.

    The venv uses the running interpreter's version (the backend stub embeds the matching libpython).
    Concurrent callers wait on a lock file; a stamp file marks a finished install.
    """
    import fcntl

    venv = Path(venv) if venv is not None else default_venv()
    venv.parent.mkdir(parents=True, exist_ok=True)
    import hashlib
    import tempfile

    digest = hashlib.sha1(str(venv.absolute()).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"servopt-triton-venv-{digest}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = venv / _STAMP
        if stamp.is_file() and stamp.read_text().startswith(" ".join(REQUIREMENTS) + ";"):
            try:
                return find_env(venv)
            except TritonSetupError:
                pass
        out = []
        started = time.monotonic()
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
             "--no-input", *REQUIREMENTS],
        ]
        for cmd in steps:
            left = timeout_s - (time.monotonic() - started)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(left, 1))
            except subprocess.TimeoutExpired as exc:
                raise TritonSetupError(f"{' '.join(cmd)} ran past {timeout_s:.0f} s:\n{exc.stdout or ''}"
                                       f"{exc.stderr or ''}") from None
            out.append(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
            if log is not None:
                log.write_text("\n".join(out))
            if proc.returncode != 0:
                raise TritonSetupError(f"creating the tritonserver environment failed:\n{''.join(out[-1:])}")
        check = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import numpy, onnxruntime; print(numpy.__version__)"], capture_output=True, text=True)
        if check.returncode != 0 or not check.stdout.startswith("1."):
            raise TritonSetupError(f"numpy<2 is needed in {venv} (the Python backend stub returns empty tensors "
                                   f"with numpy 2), found: {check.stdout.strip() or check.stderr.strip()}")
        env = find_env(venv)
        (venv / _STAMP).write_text(f"{' '.join(REQUIREMENTS)}; numpy {check.stdout.strip()}; "
                                   f"{time.monotonic() - started:.0f} s\n")
        return env


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    venv = Path(args[0]) if args else default_venv()
    started = time.monotonic()
    try:
        env = ensure_env(venv)
    except TritonSetupError as exc:
        print(f"triton env: {exc}", file=sys.stderr)
        return 1
    print(f"triton env: ready at {env.venv} ({(env.venv / _STAMP).read_text().strip()}); "
          f"tritonserver {env.server}; {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
