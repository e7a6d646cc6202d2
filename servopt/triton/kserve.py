"""KServe ``InferenceService`` manifests that run a written repository on Triton.

One ``InferenceService`` (``serving.kserve.io/v1beta1``, predictor ``model.modelFormat: triton``) per Triton
server the deployment needs, read from its repositories (never from the problem kind):

* a repository with ``server_per_model`` (``variant_selection``: InfAdapter runs each variant as its own
  deployment): one per model, each loading only its model (``--model-control-mode=explicit
  --load-model=<variant>``) with the model's cores as CPU request/limit and its routing weight;
* a repository with a ``hardware`` type (GPU plans): one per repository, asking for its GPU count
  (``nvidia.com/gpu``);
* any other repository (``pipeline``): one running it (its ``entry`` model), with the repository's cores.
"""

from __future__ import annotations

import re
from typing import Any

from servopt.exceptions import ValidationError
from servopt.triton.build import TritonDeployment, RepositoryLayout

__all__ = ["kserve_manifests", "check_storage_uri", "dns_name"]

API_VERSION = "serving.kserve.io/v1beta1"
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


def check_storage_uri(uri: Any) -> str:
    """Accept ``scheme://...`` (gs, s3, pvc, https, hf, ...); the repository is uploaded there by the user."""
    if not isinstance(uri, str) or not _URI.match(uri):
        raise ValidationError(
            f"--storage-uri: expected a storage URI such as gs://bucket/repo, s3://bucket/repo or "
            f"pvc://claim/repo (where the written repository will be uploaded), got {uri!r}"
        )
    return uri.rstrip("/")


def dns_name(*parts: str) -> str:
    """An RFC 1035 label for ``metadata.name``: lower case, digits and ``-``, starting with a letter, <= 63 chars.

    >>> dns_name("EffNet_B0", "A100-80GB")
    'effnet-b0-a100-80gb'
    """
    text = "-".join(p for p in parts if p)
    text = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    text = re.sub(r"-{2,}", "-", text)
    if not text or not text[0].isalpha():
        text = "m-" + text
    return text[:63].rstrip("-")


def _uri(storage_uri: str, repo: RepositoryLayout) -> str:
    return storage_uri if repo.path == "." else f"{storage_uri}/{repo.path}"


def _service(name: str, deployment: TritonDeployment, storage_uri: str, repo: RepositoryLayout, *,
             namespace: str | None, runtime_version: str, memory: str | None, gpus: int = 0,
             cpu: float | None = None, args: list[str] | None = None, labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    if cpu is not None:
        limits["cpu"] = _cpu(cpu)
    if memory is not None:
        limits["memory"] = memory
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    model: dict[str, Any] = {
        "modelFormat": {"name": "triton"},
        "runtimeVersion": runtime_version,
        "storageUri": _uri(storage_uri, repo),
    }
    if args:
        model["args"] = args
    if limits:
        # requests = limits: the plan sized the deployment for exactly these resources
        model["resources"] = {"requests": dict(limits), "limits": dict(limits)}
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {"app.kubernetes.io/managed-by": "servopt", "servopt.io/problem": deployment.kind,
                          **(labels or {})}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": API_VERSION, "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 1, "model": model}}}


def _cpu(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{int(round(cores * 1000))}m"


def kserve_manifests(deployment: TritonDeployment, storage_uri: str, *, namespace: str | None = None,
                     runtime_version: str = "24.10-py3", memory: str | None = None) -> list[dict[str, Any]]:
    """The ``InferenceService`` objects for a deployment (see the module docstring)."""
    storage_uri = check_storage_uri(storage_uri)
    common = {"namespace": namespace, "runtime_version": runtime_version, "memory": memory}
    docs = []
    for repo in deployment.repositories:
        if repo.server_per_model:
            for entry in repo.models:
                docs.append(_service(
                    dns_name(deployment.name, entry.name), deployment, storage_uri, repo,
                    cpu=entry.info["cores"],
                    args=["--model-control-mode=explicit", f"--load-model={entry.name}"],
                    labels={"servopt.io/model": dns_name(entry.name)},
                    annotations={"servopt.io/routing-weight": str(_weight(deployment, entry.name))}, **common))
        elif repo.hardware is not None:
            docs.append(_service(
                dns_name(deployment.name, repo.hardware if repo.path != "." or len(deployment.repositories) > 1
                         else ""),
                deployment, storage_uri, repo, gpus=repo.gpus,
                labels={"servopt.io/hardware": dns_name(repo.hardware)},
                annotations={"servopt.io/hardware": repo.hardware}, **common))
        else:
            docs.append(_service(dns_name(deployment.name), deployment, storage_uri, repo, cpu=repo.cpu_cores,
                                 annotations={"servopt.io/entry-model": repo.entry} if repo.entry else None,
                                 **common))
    return docs


def _weight(deployment: TritonDeployment, model: str) -> float:
    for route in (deployment.routing or {}).get("routes", []):
        if route["model"] == model:
            return route["weight"]
    return 0.0
