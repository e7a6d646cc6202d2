"""Plans → Triton model repositories (SPEC §6).

``write_repository(problem, solution, out_dir)`` builds one ``ModelConfig`` message per served model
(``tritonclient.grpc.model_config_pb2``), checks Triton's load-time rules on them (:mod:`servopt.triton.rules`,
with Triton's own messages), and writes the repository atomically in protobuf text format, with a summary
(``servopt.json``), the load balancer's weights for ``variant_selection`` (``routing.json``) and optionally a
KServe manifest (``kserve.yaml``). docs/triton.md describes the layout and the ``triton:`` section of problem
files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_repository", "build_repository", "config_only", "TRITON_VERSION"]

#: the Triton release whose load rules and config fields the output targets (nvidia-pytriton 0.7.0 bundles it)
TRITON_VERSION = "2.51.0"


def _plan_of(solution: Any) -> Any:
    """The typed plan of a solution (or the plan itself); refused when there is none."""
    plan = getattr(solution, "plan", solution)
    if plan is None:
        status = getattr(getattr(solution, "status", None), "value", getattr(solution, "status", "unknown"))
        from servopt.exceptions import ValidationError

        raise ValidationError(f"there is no plan to deploy (status {status}); solve a feasible problem first")
    return plan


def build_repository(problem: Any, solution: Any, *, triton_backend: str | None = None, template: Any = None,
                     kserve: bool = False, storage_uri: str | None = None, source: str | Path | None = None
                     ) -> tuple[Any, dict[str, str], list[str]]:
    """Everything :func:`write_repository` would write, checked, without touching the disk.

    Returns
    -------
    (TritonDeployment, files, folders)
        ``files`` maps relative paths to text, ``folders`` lists the version folders.
    """
    from servopt.exceptions import ValidationError
    from servopt.triton.build import build_deployment
    from servopt.triton.rules import check_repository
    from servopt.triton.spec import parse_triton_section
    from servopt.triton.write import render_files

    _register_plan_types()
    source = source or getattr(problem, "source", None) or getattr(problem, "path", None)
    # a key the problem's kind would ignore is refused: judged by the problem, else (a stand-in) by its plan
    used_by = problem if hasattr(problem, "kind") else getattr(solution, "plan", None)
    spec = parse_triton_section(getattr(problem, "triton", None), source, used_by=used_by)
    plan = _plan_of(solution)
    if kserve and storage_uri is None:
        raise ValidationError("--kserve needs --storage-uri: where the repository will be uploaded "
                              "(e.g. gs://bucket/models/effnet)")
    deployment = build_deployment(problem, plan, spec, triton_backend=triton_backend, template=template)
    for repo in deployment.repositories:
        configs = {m.name: m.config for m in repo.models}
        if len(configs) != len(repo.models):
            raise ValidationError(f"two models of repository {repo.path!r} share a name")
        check_repository(configs, {m.name: m.versions for m in repo.models})
    manifests = None
    if kserve:
        from servopt.triton.kserve import kserve_manifests
        from servopt.triton.kserve_options import with_overrides

        options = with_overrides(spec.kserve, kserve if isinstance(kserve, Mapping) else None)
        try:
            manifests = kserve_manifests(deployment, storage_uri, options)
        except ValidationError as exc:  # e.g. two variant names that become one InferenceService name
            if source is None or str(exc).startswith(str(source)):
                raise
            raise ValidationError(f"{source}: {exc}") from None
    files, folders = render_files(deployment, _summary(deployment, plan.to_dict()), manifests)
    for path, own in deployment.repository_summaries.items():
        files[f"{path}/servopt.json"] = json.dumps(_repository_summary(deployment, path, own), indent=2) + "\n"
    return deployment, files, folders


def _register_plan_types() -> None:
    """Import the modules that register their plan type on the builder (``build._deployment_of``)."""
    from servopt.triton import fleet  # noqa: F401


def config_only(deployment: Any) -> list[str]:
    """Why the repository cannot serve the real model as written (empty when it can): models without a
    ``model_file``, or with servopt's placeholder tensors."""
    reasons = [reason for repo in deployment.repositories for m in repo.models for reason in m.missing]
    return list(dict.fromkeys(reasons))  # a model in several repositories (nodes, servers) is named once


def _repository_summary(deployment: Any, path: str, own: dict[str, Any]) -> dict[str, Any]:
    """``servopt.json`` of one repository of several (its own models' "config only" reasons)."""
    repo = next(r for r in deployment.repositories if r.path == path)
    missing = list(dict.fromkeys(reason for m in repo.models for reason in m.missing))
    return {"name": deployment.name, "problem": deployment.kind, "triton_version": TRITON_VERSION,
            "config_only": bool(missing), "missing": missing, **own}


def _summary(deployment: Any, plan: dict[str, Any]) -> dict[str, Any]:
    missing = config_only(deployment)
    return {
        "name": deployment.name,
        "problem": deployment.kind,
        "triton_version": TRITON_VERSION,
        "config_only": bool(missing),
        "missing": missing,
        "repositories": [
            {
                "path": repo.path,
                "hardware": repo.hardware,
                "gpus": repo.gpus,
                "cpu_cores": repo.cpu_cores,
                "entry": repo.entry,
                "models": [m.info for m in repo.models],
            }
            for repo in deployment.repositories
        ],
        "plan": plan,
        **getattr(deployment, "summary_extra", {}),
    }


def write_repository(problem: Any, solution: Any, out_dir: str | Path, *, force: bool = False,
                     triton_backend: str | None = None, template: Any = None, kserve: bool = False,
                     storage_uri: str | None = None, source: str | Path | None = None, link: bool = False) -> Path:
    """Write the Triton model repository (or repositories) for a solved plan.

    Parameters
    ----------
    problem : Problem
        The solved problem: ``triton`` (the raw ``triton:`` mapping or None), ``name``/``source``,
        ``input_size``.
    solution : servopt.Solution
        Its answer; ``solution.plan`` must exist and be a typed plan (``GPUPlan``, ``VariantSelectionPlan``,
        ``PipelinePlan``): the repository's layout follows the plan's type.
    out_dir : path
        The folder to create. An existing folder is refused unless ``force`` (then replaced atomically).
    triton_backend : {"onnxruntime", "tensorrt_plan", "pytorch_libtorch", "python"}, optional
        Overrides the backend of every model.
    template : path or mapping, optional
        A ``config.pbtxt`` to start every model from (or model key -> path); overrides ``triton.template``.
    kserve : bool or mapping
        Also write ``kserve.yaml`` (KServe ``InferenceService`` manifests); needs ``storage_uri``. A mapping
        (``{"namespace": ..., "cpu": ..., "memory": ...}``, the CLI's ``--kserve-*``) also overrides those keys of
        ``triton.kserve``.
    storage_uri : str, optional
        Where the repository will be uploaded (``gs://...``, ``s3://...``, ``pvc://...``).
    source : path, optional
        The problem file, when ``problem`` does not record it (``problem.source``): named in errors about the
        ``triton:`` section, and relative template paths are resolved against its folder.
    link : bool
        Symlink each model file (``model_file:``) into its version folder instead of copying it.

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    servopt.ValidationError
        Bad ``triton:`` section or arguments, a configuration Triton would refuse
        (:class:`servopt.triton.rules.TritonRuleError`), or an existing ``out_dir`` without ``force``; nothing
        is written then.

    Examples
    --------
    >>> import servopt, tempfile, pathlib
    >>> problem = servopt.load_problem("examples/pipeline_video.yaml")   # doctest: +SKIP
    >>> servopt.write_repository(problem, servopt.solve(problem), "repo/")  # doctest: +SKIP
    PosixPath('repo')
    """
    from servopt.triton.write import artifact_copies, check_target, write_tree

    out = Path(out_dir)
    check_target(out, force)
    deployment, files, folders = build_repository(problem, solution, triton_backend=triton_backend,
                                                  template=template, kserve=kserve, storage_uri=storage_uri,
                                                  source=source)
    return write_tree(out, files, folders, force=force, copies=artifact_copies(deployment), link=link)
