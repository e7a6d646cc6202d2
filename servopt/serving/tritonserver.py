"""Start and stop a tritonserver on this machine: the ``nvidia-pytriton`` environment that provides one
(tritonserver 2.51 with the Python backend, CPU-only capable, kept in its own virtualenv because pytriton pins
numpy<2) and :class:`TritonServer`, one server process over some repositories on free 127.0.0.1 ports, stopped
by its PID.

Used by ``servopt verify --start`` and by the test harness (``servopt.testing.triton_server``, which re-exports
these names).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TritonEnv", "TritonSetupError", "TritonCheckError", "TritonServer", "ensure_env", "find_env",
           "default_venv", "free_ports", "cpu_instance_groups", "REQUIREMENTS", "STAMP"]

REQUIREMENTS = ("nvidia-pytriton", "numpy<2", "onnxruntime")
STAMP = ".servopt-triton-ok"


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


#: what an install of :data:`REQUIREMENTS` takes (measured: 448 MB in about 36 s), said before it starts
INSTALL_SIZE = "about 450 MB, under a minute on a fast link"


def ensure_env(venv: str | Path | None = None, *, log: Path | None = None, timeout_s: float = 900,
               why: str | None = None) -> TritonEnv:
    """Create the venv with :data:`REQUIREMENTS` unless a complete one exists; return its paths.

    The venv uses the running interpreter's version (the backend stub embeds the matching libpython).
    Concurrent callers wait on a lock file; a stamp file marks a finished install. Before installing, one line on
    stderr says what is installed where, ``why`` (the caller's reason) and how to choose another place
    (``$SERVOPT_TRITON_VENV``): the default place is inside the source checkout.
    """
    import fcntl

    # the default place: named by $SERVOPT_TRITON_VENV, else beside pyproject.toml (the notice says which)
    place = None if venv is not None else "env" if os.environ.get("SERVOPT_TRITON_VENV") else "checkout"
    venv = Path(venv) if venv is not None else default_venv()
    venv.parent.mkdir(parents=True, exist_ok=True)
    import hashlib
    import tempfile

    digest = hashlib.sha1(str(venv.absolute()).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"servopt-triton-venv-{digest}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = venv / STAMP
        if stamp.is_file() and stamp.read_text().startswith(" ".join(REQUIREMENTS) + ";"):
            try:
                return find_env(venv)
            except TritonSetupError:
                pass
        print(f"servopt: installing a tritonserver environment ({', '.join(REQUIREMENTS)}; {INSTALL_SIZE}) with "
              f"pip into {venv.absolute()}" + (" ($SERVOPT_TRITON_VENV)" if place == "env" else "")
              + (f", because {why}" if why else "")
              + ("; set $SERVOPT_TRITON_VENV=DIR to install it elsewhere" if place == "checkout" else ""),
              file=sys.stderr, flush=True)
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
                                "import numpy, onnxruntime; print(numpy.__version__)"],
                               capture_output=True, text=True)
        if check.returncode != 0 or not check.stdout.startswith("1."):
            raise TritonSetupError(f"numpy<2 is needed in {venv} (the Python backend stub returns empty tensors "
                                   f"with numpy 2), found: {check.stdout.strip() or check.stderr.strip()}")
        env = find_env(venv)
        (venv / STAMP).write_text(f"{' '.join(REQUIREMENTS)}; numpy {check.stdout.strip()}; "
                                   f"{time.monotonic() - started:.0f} s\n")
        return env


def env_for_binary(server: str | Path) -> TritonEnv:
    """The environment of an installed ``tritonserver`` binary (NGC layout: ``<root>/bin/tritonserver``,
    ``<root>/lib``, ``<root>/backends``, the Python backend stub in ``backends/python``)."""
    path = Path(server).absolute()
    if not path.is_file():
        raise TritonSetupError(f"--tritonserver {server}: no such file")
    root = path.parent.parent
    backends = root / "backends"
    env = TritonEnv(venv=Path(sys.prefix), python=Path(sys.executable), server=path, libs=root / "lib",
                    backends=backends, stub=backends / "python" / "triton_python_backend_stub")
    if not backends.is_dir():
        raise TritonSetupError(f"--tritonserver {server}: no backends folder at {backends} (expected the NGC "
                               "layout <root>/bin/tritonserver, <root>/backends)")
    return env


def resolve_env(tritonserver: str | Path | None = None) -> TritonEnv:
    """``tritonserver`` given by path, else the one on PATH, else nvidia-pytriton's in ``.triton-venv``.

    The last is created with pip when missing (:func:`ensure_env`); when that fails the error says how to get
    a server.
    """
    if tritonserver is not None:
        return env_for_binary(tritonserver)
    found = shutil.which("tritonserver")
    if found:
        return env_for_binary(found)
    try:
        return ensure_env(why="no --tritonserver PATH was given and there is no tritonserver on PATH")
    except TritonSetupError as exc:
        raise TritonSetupError(f"no tritonserver found: give --tritonserver PATH (e.g. /opt/tritonserver/bin/"
                               f"tritonserver in the NGC image nvcr.io/nvidia/tritonserver), put one on PATH, "
                               f"or let servopt install nvidia-pytriton into {default_venv()} "
                               f"(pip install {' '.join(REQUIREMENTS)}; this failed: {exc})") from None


class TritonCheckError(AssertionError):
    """A repository did not load or serve; ``log`` is the server's whole log, ``reason`` (where servopt found one)
    why, in the words of the server or of its stub."""

    def __init__(self, message: str, log: str = "", reason: str = "") -> None:
        self.log = log
        self.reason = reason
        tail = "\n".join(log.splitlines()[-120:])
        super().__init__(f"{message}\n----- tritonserver log (last 120 lines) -----\n{tail}" if log else message)


def cpu_instance_groups(cfg: Any, max_instances: int | None = None) -> None:
    """Rewrite a ``ModelConfig``'s instance groups for a CPU-only server, in place.

    ``KIND_GPU`` groups become ``KIND_CPU`` with one instance per listed GPU (``count`` is per GPU in Triton) and no
    ``gpus``; ``max_instances`` caps every group's count (CPU time on a small machine).
    """
    from tritonclient.grpc import model_config_pb2 as mc

    from servopt.exceptions import ValidationError

    if max_instances is not None and max_instances < 1:  # Triton runs one instance for count 0
        raise ValidationError(f"--max-instances: expected an instance count >= 1, got {max_instances}")
    for group in cfg.instance_group:
        if group.kind == mc.ModelInstanceGroup.KIND_GPU:
            group.count = group.count * max(1, len(group.gpus))
            group.kind = mc.ModelInstanceGroup.KIND_CPU
            del group.gpus[:]
        if max_instances is not None:
            group.count = min(group.count, max_instances)


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


_LOG_LINE = re.compile(r"^[IWEV]\d{4} \d\d:\d\d:\d\d\.\d+ +(\d+) \S+\] ")


def _log_pid(line: str) -> int | None:
    """The process id a tritonserver-format log line names (the server's, or a stub's), else None."""
    match = _LOG_LINE.match(line)
    return int(match.group(1)) if match else None


def _foreign_lines(log: str, server_pid: int) -> list[str]:
    """The log's lines not written by the server process itself: what its Python backend stubs (and the dynamic
    loader or the shell starting them) wrote, without the server's tables."""
    return [line.strip() for line in log.splitlines()
            if line.strip() and _log_pid(line) != server_pid and not line.startswith(("+", "|"))
            and not line.startswith("Signal (")]


def _still_loading(log: str) -> list[str]:
    """Names of the models the log shows loading and neither loaded nor failed (sorted)."""
    loading = set(re.findall(r'\] "loading: (.+):\d+"$', log, re.M))
    done = set(re.findall(r"\] \"(?:successfully loaded|failed to load) '([^']+)'", log))
    return sorted({key.rsplit("::", 1)[-1] for key in loading - done})


def _children(pid: int) -> list[tuple[int, str, str, int]]:
    """(pid, start time, state, wait status) of the process ``pid``'s children, read from /proc (empty where
    there is none); the wait status is the kernel's for a zombie (``exit_code`` of proc(5), Linux 3.5+), else -1."""
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[-1].split()
        except OSError:  # ended meanwhile
            continue
        if len(fields) > 19 and fields[1] == str(pid):
            found.append((int(entry), fields[19], fields[0], int(fields[49]) if len(fields) > 49 else -1))
    return found


def _wait_status(status: int) -> str:
    """``exited with code N`` / ``was killed by SIGSEGV (signal 11)`` from a wait status."""
    if status < 0:
        return "died"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "a signal"
        return f"was killed by {name} (signal {number})"
    return f"exited with code {os.WEXITSTATUS(status)}"


def _shm_regions(pid: int) -> set[Path]:
    """The Python backend's shared-memory files the process ``pid`` has mapped."""
    try:
        with open(f"/proc/{pid}/maps") as fh:
            rows = [line.split(None, 5) for line in fh]
    except OSError:
        return set()
    return {Path(row[5].strip()) for row in rows
            if len(row) == 6 and row[5].startswith("/dev/shm/triton_python_backend_shm_region")}


class TritonServer:
    """One tritonserver process over some repositories; use as a context manager (stops by PID on exit)."""

    def __init__(self, env: TritonEnv, repositories: list[Path], workdir: Path, *, startup_timeout_s: float = 600,
                 exit_timeout_s: int = 5, dead_stub_s: float = 2.0) -> None:
        self.env = env
        self.repositories = [Path(r).absolute() for r in repositories]
        self.workdir = Path(workdir)
        self.startup_timeout_s = startup_timeout_s
        self.exit_timeout_s = exit_timeout_s
        self.dead_stub_s = dead_stub_s
        self.proc: subprocess.Popen | None = None
        self._zombies: dict[tuple[int, str], float] = {}
        self.log_path = self.workdir / "tritonserver.log"
        self.http_port = self.grpc_port = self.metrics_port = 0

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> float:
        """Start the server and wait until its endpoints answer; returns the seconds it took.

        Raises :class:`TritonCheckError` (and stops the server) when the server exits, when it is not live after
        ``startup_timeout_s``, or as soon as a Python backend stub has died while its model was loading: a child of
        the server that stays a zombie for ``dead_stub_s``. tritonserver reaps a stub that answered within
        milliseconds, but waits forever for one that died before answering (a stub that cannot start, a model.py
        that exits or crashes at import): it neither fails the model nor opens its endpoints (tritonserver 2.51;
        python_backend PR 408, 2025, makes later servers fail the model instead). A model that raises in
        ``initialize()`` is answered, fails at once and is reported by :meth:`not_ready`."""
        backends = self.workdir / "backends"
        if not backends.exists():
            shutil.copytree(self.env.backends, backends)
            shutil.copy2(self.env.stub, backends / "python" / "triton_python_backend_stub")
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self._zombies = {}
        cmd = [str(self.env.server), *[f"--model-repository={r}" for r in self.repositories],
               "--model-namespacing=true", f"--backend-directory={backends}",
               "--http-address=127.0.0.1", f"--http-port={self.http_port}",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
               "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
               "--allow-gpu-metrics=false", "--exit-on-error=false", "--strict-readiness=false",
               f"--exit-timeout-secs={self.exit_timeout_s}"]
        started = time.monotonic()
        settled: tuple[list[str], float] | None = None  # the models still loading, since when
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env.environ(), cwd=self.workdir, start_new_session=True)
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()  # reaps the Python backend stubs a crashed server leaves behind
                raise TritonCheckError(f"tritonserver exited with code {code} during start-up", self.log())
            if self._live():
                return time.monotonic() - started
            dead = self._dead_stubs()
            if dead:  # name the models once the others have loaded (or stopped changing for dead_stub_s)
                loading = _still_loading(self.log())
                if settled is None or settled[0] != loading:
                    settled = (loading, time.monotonic())
                if len(loading) <= len(dead) or time.monotonic() - settled[1] >= self.dead_stub_s:
                    message, reason = self._dead_stub_report(dead, loading, time.monotonic() - started)
                    self.stop()
                    raise TritonCheckError(message, self.log(), reason)
            if time.monotonic() - started > self.startup_timeout_s:
                self.stop()
                raise TritonCheckError(f"tritonserver was not live after {self.startup_timeout_s:.0f} s", self.log())
            time.sleep(0.25)

    def _live(self) -> bool:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v2/health/live", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _dead_stubs(self) -> list[tuple[int, int]]:
        """(pid, wait status) of the server's children that have stayed zombies for ``dead_stub_s``: Python backend
        stubs that died and that the server does not reap (it reaps one that answered within milliseconds)."""
        now = time.monotonic()
        zombies = {(pid, started): status for pid, started, state, status in _children(self.proc.pid) if state == "Z"}
        self._zombies = {key: self._zombies.get(key, now) for key in zombies}
        return [(key[0], zombies[key]) for key, since in self._zombies.items() if now - since >= self.dead_stub_s]

    def _dead_stub_report(self, dead: list[tuple[int, int]], loading: list[str], elapsed: float) -> tuple[str, str]:
        """The error's first line (which models, how their stubs ended) and its reason (the stubs' own output in
        the log, else what to run to see it)."""
        how = ", ".join(_wait_status(status) for _, status in dead)
        if len(loading) == 1 and len(dead) == 1:
            what = f"model '{loading[0]}' did not load: its Python backend stub {how} before answering tritonserver"
        else:
            stubs = f"{len(dead)} Python backend stub{'s' if len(dead) > 1 else ''} ended ({how})"
            what = (f"models {', '.join(repr(m) for m in loading)} did not load: {stubs} while they were loading"
                    if loading else f"{stubs} during start-up")
        pids = {pid for pid, _ in dead}
        output = [_LOG_LINE.sub("", line).strip().strip('"') for line in _foreign_lines(self.log(), self.proc.pid)
                  if _log_pid(line) in (None, *pids)]
        reason = "; ".join(output[-5:]) or (f"nothing from the stub (import the model.py with {self.env.python} to "
                                            "see why it ends)")
        return (f"{what}, and tritonserver waits for such a stub forever: servopt stopped it after {elapsed:.1f} s",
                reason)

    def stop(self) -> None:
        """SIGTERM to the server's PID, then SIGKILL to its process group: the Python backend stubs it started
        ignore SIGTERM and outlive a server that crashed (the group is the server's own session, started here).
        The Python backend's shared-memory files the server had mapped are removed when it leaves them behind
        (a server killed, or hung on a dead stub, does)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        regions = _shm_regions(proc.pid) if proc.poll() is None else set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.exit_timeout_s + 10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(timeout=10)
        for region in regions:
            try:
                region.unlink()
            except OSError:  # removed by the server itself (a clean exit)
                pass

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def not_ready(self, timeout_s: float = 120) -> list[tuple[str, str, str]]:
        """(name, state, reason) of every model that did not load, after waiting (at most ``timeout_s``) while any
        is still loading; empty when every model of the repositories is READY."""
        deadline = time.monotonic() + timeout_s
        while True:
            index = self.index()
            if not any(state == "LOADING" for _, state, _ in index) or time.monotonic() > deadline:
                return [(name, state, reason) for name, state, reason in index if state != "READY"]
            time.sleep(0.25)

    def load_errors(self, limit: int = 5) -> list[str]:
        """The log's last ``limit`` lines saying a model failed to load (else its last error lines), without
        the log prefix."""
        errors = [line for line in self.log().splitlines() if re.match(r"E\d{4} ", line)]
        chosen = [line for line in errors if "failed to load '" in line] or errors
        return [re.sub(r"^E\S+ \S+ +\d+ \S+\] ", "", line).strip().strip('"') for line in chosen[-limit:]]

    # -- client side ---------------------------------------------------------------------------------------------
    def client(self) -> Any:
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")

    def index(self) -> list[tuple[str, str, str]]:
        """(name, state, reason) of every model the server knows."""
        index = self.client().get_model_repository_index()
        return [(m.name, m.state, m.reason) for m in index.models]

    def infer(self, config: Any) -> dict[str, tuple[int, ...]]:
        """One request of batch 1 (or unbatched) with zero inputs; returns output name -> shape."""
        import numpy as np
        import tritonclient.grpc as grpcclient
        from tritonclient.grpc import model_config_pb2 as mc
        from tritonclient.utils import triton_to_np_dtype

        lead = [1] if config.max_batch_size > 0 else []
        inputs = []
        for io in config.input:
            dtype = mc.DataType.Name(io.data_type)[len("TYPE_"):]
            shape = lead + [1 if d < 0 else int(d) for d in io.dims]
            item = grpcclient.InferInput(io.name, shape, dtype)
            np_type = triton_to_np_dtype(dtype)
            data = np.full(shape, b"", dtype=object) if dtype == "BYTES" or dtype == "STRING" else \
                np.zeros(shape, dtype=np_type)
            item.set_data_from_numpy(data)
            inputs.append(item)
        outputs = [grpcclient.InferRequestedOutput(io.name) for io in config.output]
        result = self.client().infer(config.name, inputs, outputs=outputs, client_timeout=60)
        shapes = {}
        for io in config.output:
            array = result.as_numpy(io.name)
            if array is None:
                raise TritonCheckError(f"model {config.name}: output {io.name} missing from the response", self.log())
            want = lead + list(io.dims)
            got = list(array.shape)
            if len(got) != len(want) or any(w not in (-1, g) for w, g in zip(want, got)):
                raise TritonCheckError(f"model {config.name}: output {io.name} has shape {got}, config says {want}",
                                       self.log())
            shapes[io.name] = tuple(got)
        return shapes
