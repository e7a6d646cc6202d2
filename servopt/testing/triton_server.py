"""Check written repositories on a real tritonserver (CPU-only, from the ``nvidia-pytriton`` wheel).

``check_repositories(paths)`` copies each repository, makes it servable on a machine without a GPU (KIND_GPU
groups become KIND_CPU, every model gets the Python backend and a stand-in ``model.py`` with the same inputs and
outputs; see :func:`make_servable`), starts one server over all copies on free 127.0.0.1 ports with
``--model-namespacing`` (two repositories may both hold a model called ``resnet50``), checks that every model is
READY, runs one inference through every ensemble and every model whose name is unambiguous, stops the server by
its PID and returns a :class:`CheckReport`. On failure :class:`TritonCheckError` carries the server log.

Command line: ``python -m servopt.testing.triton_server REPO [REPO ...]``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servopt.serving.tritonserver import (TritonCheckError, TritonEnv, TritonServer, cpu_instance_groups,
                                          ensure_env)

__all__ = ["TritonServer", "TritonCheckError", "CheckReport", "make_servable", "check_repositories",
           "find_repositories"]

STANDIN = Path(__file__).with_name("standin_model.py")


@dataclass
class CheckReport:
    """What one check did."""

    repositories: int = 0
    models: int = 0
    ready: int = 0
    rejected: int = 0
    inferences: list[str] = field(default_factory=list)
    startup_s: float = 0.0
    total_s: float = 0.0
    log: str = ""


def _read_config(path: Path) -> Any:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(path.read_text(), mc.ModelConfig())


def make_servable(repo: Path, dest: Path, *, max_instances: int | None = None, prefix: str = "") -> list[Any]:
    """Copy ``repo`` to ``dest`` and make it load on a CPU-only server with only the Python backend.

    Per model: ``KIND_GPU`` groups become ``KIND_CPU`` with one instance per listed GPU and no ``gpus``. A model
    that already runs on the Python backend with its own ``model.py`` (``--triton-backend python``) is served as
    written. Any other model gets the Python backend: a version folder holding an ONNX model (``model.onnx`` or the
    config's ``default_model_filename``) gets servopt's ``model.py`` that runs it with ONNX Runtime, so the real
    model answers; the others get the stand-in ``model.py`` (zeros of the declared outputs). Ensembles are copied
    unchanged. ``max_instances`` caps each group's count (CPU time on a small CI machine). ``prefix`` is put
    before every model name (ensemble steps follow), so that models of several repositories have distinct names
    on one server. Returns the rewritten configs.
    """
    from google.protobuf import text_format

    from servopt.triton.artifacts import PYTHON_ONNX_MODEL

    shutil.copytree(repo, dest)
    if prefix:
        for cfg_path in sorted(dest.glob("*/config.pbtxt")):
            cfg_path.parent.rename(cfg_path.parent.with_name(prefix + cfg_path.parent.name))
    configs = []
    for cfg_path in sorted(dest.glob("*/config.pbtxt")):
        cfg = _read_config(cfg_path)
        if prefix:
            cfg.name = prefix + cfg.name
            for step in cfg.ensemble_scheduling.step:
                step.model_name = prefix + step.model_name
        if cfg.platform != "ensemble":
            cpu_instance_groups(cfg, max_instances)
            versions = [v for v in cfg_path.parent.iterdir() if v.is_dir() and v.name.isdigit()]
            own = cfg.backend == "python" and versions and all((v / "model.py").is_file() for v in versions)
            if not own:
                onnx_name = cfg.default_model_filename or "model.onnx"
                cfg.backend = "python"
                cfg.platform = ""
                cfg.ClearField("default_model_filename")
                for version in versions:
                    if onnx_name.endswith(".onnx") and (version / onnx_name).is_file():
                        if onnx_name != "model.onnx":
                            shutil.copy2(version / onnx_name, version / "model.onnx")
                        (version / "model.py").write_text(PYTHON_ONNX_MODEL)
                    else:
                        shutil.copy2(STANDIN, version / "model.py")
        cfg_path.write_text(text_format.MessageToString(cfg, use_short_repeated_primitives=True))
        configs.append(cfg)
    return configs


def find_repositories(out_dir: Path) -> list[Path]:
    """The repositories inside a folder written by ``write_repository`` (from its ``servopt.json``)."""
    import json

    out_dir = Path(out_dir)
    summary = json.loads((out_dir / "servopt.json").read_text())
    return [(out_dir / r["path"]).resolve() for r in summary["repositories"]]


def check_repositories(repositories: list[Path], *, env: TritonEnv | None = None, workdir: Path | None = None,
                       max_instances: int | None = None, startup_timeout_s: float = 600,
                       expect_failures: Mapping[str, str] | None = None, unique_names: bool = False
                       ) -> CheckReport:
    """Load every repository on one server, check all models are READY, infer every ensemble (and every model
    with a unique name). Raises :class:`TritonCheckError` (with the server log) on the first problem.

    ``expect_failures`` maps model names that must *not* load to a text Triton must report for them (in the
    repository index or the log): how the tests prove servopt's rule messages are Triton's. With ``unique_names``
    the models of each repository without expected failures get a prefix ``r<i>_``, so that every model, not
    only the uniquely named ones, gets an inference."""
    started = time.monotonic()
    env = env or ensure_env()
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="servopt-triton-")) if own_tmp else Path(workdir)
    report = CheckReport(repositories=len(repositories))
    try:
        copies, configs = [], []
        failing = dict(expect_failures or {})
        for i, repo in enumerate(repositories):
            dest = work / "repos" / f"r{i:02d}_{Path(repo).name}"
            names = {p.parent.name for p in Path(repo).glob("*/config.pbtxt")}
            prefix = f"r{i:02d}_" if unique_names and not names & set(failing) else ""
            configs.extend(make_servable(Path(repo), dest, max_instances=max_instances, prefix=prefix))
            copies.append(dest)
        configs = [c for c in configs if c.name not in failing]
        report.models = len(configs)
        server = TritonServer(env, copies, work, startup_timeout_s=startup_timeout_s)
        with server:
            report.startup_s = time.monotonic() - started
            try:
                _check_loaded(server, configs, report, failing)
                counts = Counter(c.name for c in configs)
                ensembles = [c for c in configs if c.platform == "ensemble"]
                ambiguous = sorted(c.name for c in ensembles if counts[c.name] > 1)
                if ambiguous:
                    raise TritonCheckError(f"ensembles {', '.join(ambiguous)} have the same name in two "
                                           "repositories; check them in separate calls")
                for cfg in sorted(configs, key=lambda c: (c.platform != "ensemble", c.name)):
                    if counts[cfg.name] == 1:
                        server.infer(cfg)
                        report.inferences.append(cfg.name)
            except TritonCheckError:
                raise
            except Exception as exc:  # a client error: show it with the log
                raise TritonCheckError(f"{type(exc).__name__}: {exc}", server.log()) from exc
            finally:
                report.log = server.log()
        report.total_s = time.monotonic() - started
        return report
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def _check_loaded(server: TritonServer, configs: list[Any], report: CheckReport, failing: Mapping[str, str]) -> None:
    import re

    index = server.index()
    log = server.log()
    plain = re.sub(r"/[^\s'\"]*::", "", log)  # "/abs/repo::model" (model namespacing) -> "model"
    for name, text in failing.items():
        reasons = [reason for n, state, reason in index if n == name and state != "READY"]
        loaded = [n for n, state, _ in index if n == name and state == "READY"]
        if loaded or not (any(text in r for r in reasons) or text in plain):
            raise TritonCheckError(f"model {name} was expected to fail with {text!r}; "
                                   f"index says {[(n, s, r) for n, s, r in index if n == name]}", log)
    report.rejected = len(failing)
    index = [row for row in index if row[0] not in failing]
    ready = Counter(name for name, state, _ in index if state == "READY")
    report.ready = sum(ready.values())
    problems = [f"{name}: {state} {reason}".strip() for name, state, reason in index if state != "READY"]
    expected = Counter(c.name for c in configs)
    missing = expected - ready
    if problems or missing:
        raise TritonCheckError(
            "models did not load: " + "; ".join(problems + [f"{n} (x{k}) not READY" for n, k in missing.items()]),
            server.log())


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m servopt.testing.triton_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path,
                        help="repositories, or folders written by servopt (with servopt.json)")
    parser.add_argument("--max-instances", type=int, default=None, help="cap each instance group's count")
    args = parser.parse_args(argv)
    repos: list[Path] = []
    for p in args.paths:
        repos.extend(find_repositories(p) if (p / "servopt.json").is_file() else [p])
    try:
        report = check_repositories(repos, max_instances=args.max_instances)
    except TritonCheckError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{report.repositories} repositories, {report.models} models READY={report.ready}, "
          f"{len(report.inferences)} inferences ({', '.join(report.inferences)}); "
          f"server up after {report.startup_s:.1f} s, {report.total_s:.1f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
