"""KServe manifests that run a written repository on Triton, sized and placed as the plan says.

One ``InferenceService`` (``serving.kserve.io/v1beta1``, predictor ``model.modelFormat: triton``) per Triton
server the deployment needs, read from its repositories (never from the problem kind):

* a repository with ``server_per_model`` (``variant_selection``: InfAdapter runs each variant as its own
  deployment): one per model, each loading only its model (``--model-control-mode=explicit
  --load-model=<variant>``) with the model's cores as CPU request/limit; with several variants, an
  ``InferenceGraph`` (``serving.kserve.io/v1alpha1``) whose ``Splitter`` root sends each variant its share of the
  load (integer percentages summing to 100, largest-remainder rounding);
* a repository with a ``hardware`` type (GPU plans): one per repository, asking for its GPUs
  (``nvidia.com/gpu``), CPU and memory for the pod, a ``nodeSelector`` on the GPU product label and a toleration
  of the ``nvidia.com/gpu`` taint;
* any other repository (``pipeline``): one running it (its ``entry`` model), with the repository's cores.

An ``InferenceGraph`` step names its target by ``serviceUrl``, the predictor's in-cluster address plus the open
inference protocol path of the Triton model it must reach (:func:`predictor_url`):
``http://<service>-predictor.<namespace>.svc.cluster.local/v2/models/<model>/infer`` when ``namespace`` is set,
else the namespace-relative ``http://<service>-predictor/v2/models/<model>/infer``.
A ``serviceName`` step would not: KServe's controller resolves it to the service address plus
``/v2/models/<GetModelName(isvc)>/infer``, and ``GetModelName`` reads only a ``--model_name`` argument (which
tritonserver refuses) or falls back to the InferenceService's own name, a model Triton does not serve. Its
webhook also refuses a step with both fields. A Service name without a namespace resolves in the caller's own
namespace, and the graph's router runs in the graph's namespace: without ``namespace``, no object names one and
``kubectl apply -n <ns>`` puts the services and the graph together wherever it is applied; with ``namespace``,
every object and every URL names it.

Fleet repositories (:mod:`servopt.triton.fleet`) are GPU repositories with more to say: a MIG slice's server asks
for ``nvidia.com/mig-<profile>`` instead of whole GPUs; a repository of replicas (GPUs that run one model alone)
gets ``minReplicas`` = the plan's replicas, ``maxReplicas`` = ceil(``max_replicas_factor`` x that) and Knative's
``scaleMetric: rps``, aimed at exactly ``x`` = per-replica capacity / (1 + headroom) requests per second and pod:
``scaleTarget`` (an integer in KServe) = ceil(x) and the annotation
``autoscaling.knative.dev/target-utilization-percentage`` = 100 x / ceil(x) (rounded down to 4 decimals; "100"
when x is whole), because Knative aims at target x utilization per pod and its default utilization is 70 %
(:func:`knative_target`). KServe copies the InferenceService's annotations to the Knative revision, whose
autoscaler then wants ceil(load / x) pods: at the planned load never more than the plan's replicas. A repository
of co-located models is a fixed placement (min = max replicas, annotation ``servopt.io/fixed-placement`` says
why). A model served by several services (or by one under several Triton names) gets an ``InferenceGraph``
``Splitter`` with each step's share of the model's capacity.

Every name, quantity and URI is checked (:mod:`servopt.triton.k8s_names`) and a refused one raises
``ValidationError`` before anything is written. Names are shortened with a stable hash suffix when KServe's
derived labels (``<name>-predictor-<namespace>``, ``<name>-predictor-00001``) would pass 63 characters; two
services whose names coincide after normalisation are refused, naming both.
"""

from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from servopt.exceptions import ValidationError
from servopt.triton.build import RepositoryLayout, TritonDeployment
from servopt.triton.k8s_names import (MAX_LABEL, check_storage_uri, dns_name, fit_name, format_cpu,
                                      format_memory, label_value, quantity_value, subpaths_allowed)
from servopt.triton.kserve_options import KServeSpec

__all__ = ["kserve_manifests", "check_storage_uri", "dns_name", "split_percentages", "knative_target",
           "predictor_url", "API_VERSION", "GRAPH_API_VERSION", "TARGET_UTILIZATION", "CLUSTER_DOMAIN"]

API_VERSION = "serving.kserve.io/v1beta1"
GRAPH_API_VERSION = "serving.kserve.io/v1alpha1"
#: the taint GPU node pools commonly carry (GKE, AKS, the GPU operator's examples)
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
#: CPU pods get ``memory_per_core`` per core, but never less than this (KServe's own default request)
MIN_CPU_POD_MEMORY = 2 * 2 ** 30
_MIN_NAME = 8
#: Knative's per-revision annotation: the fraction (percent) of the target each pod is aimed at (default 70)
TARGET_UTILIZATION = "autoscaling.knative.dev/target-utilization-percentage"
#: the cluster DNS domain of the steps' URLs (Kubernetes' default; KServe's own addresses use the configured one)
CLUSTER_DOMAIN = "cluster.local"


@dataclass
class _Service:
    parts: tuple[str, ...]
    origin: str
    repo: RepositoryLayout
    gpus: int = 0
    cpu: str | None = None
    memory: str | None = None
    args: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    name: str = ""
    mig_profile: str | None = None
    #: fleet replicas: (minReplicas, maxReplicas, scaleTarget in requests per second)
    autoscale: tuple[int, int, int] | None = None


def split_percentages(weights: list[float]) -> list[int]:
    """Integer percentages proportional to ``weights``, summing to 100 (largest remainder; ties: first wins).

    >>> split_percentages([0.25, 0.75]), split_percentages([1, 1, 1]), split_percentages([0, 0])
    ([25, 75], [34, 33, 33], [50, 50])
    """
    if not weights:
        return []
    total = sum(max(0.0, float(w)) for w in weights)
    shares = ([100.0 * max(0.0, float(w)) / total for w in weights] if total > 0
              else [100.0 / len(weights)] * len(weights))
    floors = [math.floor(s + 1e-9) for s in shares]
    order = sorted(range(len(shares)), key=lambda i: (-(shares[i] - floors[i]), i))
    for i in order[:100 - sum(floors)]:
        floors[i] += 1
    return floors


def knative_target(per_pod_rps: float) -> tuple[int, str]:
    """KServe's integer ``scaleTarget`` and Knative's target utilization (percent, as the annotation's text)
    whose product is ``per_pod_rps``: the load Knative's autoscaler aims at per pod.

    Knative wants ceil(observed / (target x utilization)) pods, utilization 70 % unless annotated, and KServe's
    ``scaleTarget`` is an integer: ceil(x) at 100 x / ceil(x) % aims at x itself (to 4 decimals of a percent,
    rounded down, so never above x for x >= 0.01). Knative accepts 1 to 100 %, so below 0.01 requests per second
    and pod the percentage is clamped to 1 % and the aim is 0.01, above x.

    >>> knative_target(1711.58), knative_target(5.58), knative_target(496.0)
    ((1712, '99.9754'), (6, '93'), (496, '100'))
    >>> knative_target(0.004)  # the 1 % floor: aims at 0.01
    (1, '1')
    """
    if not per_pod_rps > 0 or not math.isfinite(per_pod_rps):
        raise ValueError(f"a scale target needs a positive, finite rate per pod, got {per_pod_rps!r}")
    target = max(1, math.ceil(per_pod_rps - 1e-9))
    percent = min(100.0, max(1.0, math.floor(100.0 * per_pod_rps / target * 1e4 + 1e-6) / 1e4))
    return target, f"{percent:.4f}".rstrip("0").rstrip(".")


def predictor_url(service: str, namespace: str | None, model: str) -> str:
    """The in-cluster URL an ``InferenceGraph`` step sends a request to reach Triton model ``model`` of the
    InferenceService ``service``: its predictor's Kubernetes service (Knative's route in serverless mode, the
    Deployment's Service in raw mode, port 80 either way) and the open inference protocol's infer path.

    With ``namespace`` None the host is the bare Service name, which cluster DNS resolves in the caller's own
    namespace: the graph's router runs in the graph's namespace, so the step reaches the service applied beside it.

    >>> predictor_url("resnets-a", "vision", "resnet18")
    'http://resnets-a-predictor.vision.svc.cluster.local/v2/models/resnet18/infer'
    >>> predictor_url("resnets-a", None, "resnet18")
    'http://resnets-a-predictor/v2/models/resnet18/infer'
    """
    host = f"{service}-predictor" + (f".{namespace}.svc.{CLUSTER_DOMAIN}" if namespace else "")
    return f"http://{host}/v2/models/{urllib.parse.quote(model, safe='')}/infer"


def _name_limits(options: KServeSpec) -> tuple[int, int]:
    """The longest ``InferenceService`` and ``InferenceGraph`` names whose derived labels fit 63 characters."""
    ns = len(options.namespace or "default")
    isvc = MAX_LABEL - max(len("-predictor-") + ns, len("-predictor-00001"))
    graph = MAX_LABEL - max(len("-") + ns, len("-00001"))
    if isvc < _MIN_NAME:
        where = options.where.get("namespace", "namespace")
        raise ValidationError(
            f"{where}: {options.namespace!r} ({ns} characters) leaves {max(isvc, 0)} characters for the "
            f"InferenceService names (KServe's host label <name>-predictor-<namespace> must fit {MAX_LABEL}); "
            f"use a namespace of at most {ns - (_MIN_NAME - isvc)} characters")
    return isvc, graph


def _gpu_service(deployment: TritonDeployment, repo: RepositoryLayout, options: KServeSpec) -> _Service:
    hardware = str(repo.hardware)
    gpus = int(repo.gpus)
    cpu = options.cpu or format_cpu(quantity_value(options.cpu_per_gpu) * max(gpus, 1))
    memory = options.memory or format_memory(quantity_value(options.memory_per_gpu) * max(gpus, 1))
    suffix = "" if repo.path == "." else repo.path
    svc = _Service(
        parts=(deployment.name, suffix), origin=f"repository {repo.path!r} (hardware {hardware!r})", repo=repo,
        gpus=gpus, cpu=cpu, memory=memory, labels={"servopt.io/hardware": label_value(hardware)},
        annotations={"servopt.io/hardware": hardware},
        node_selector={options.gpu_label: options.product(hardware)})
    if repo.mig_profile is not None:
        svc.mig_profile = repo.mig_profile
        svc.gpus = 0
        svc.annotations["servopt.io/mig-profile"] = repo.mig_profile
    if repo.autoscale is not None:
        replicas = max(1, int(repo.replicas))
        per_replica = float(repo.autoscale["per_replica_rps"])
        headroom = float(repo.autoscale.get("headroom", 0.0))
        per_pod = per_replica / (1.0 + headroom)
        if not per_pod > 0 or not math.isfinite(per_pod):
            raise ValidationError(f"fleet repository {repo.path!r}: per-replica capacity {per_replica!r} rps / (1 + "
                                  f"headroom {headroom:g}): autoscaling needs a positive, finite rate per pod")
        target, utilization = knative_target(per_pod)
        svc.autoscale = (replicas, max(replicas, math.ceil(options.max_replicas_factor * replicas - 1e-9)), target)
        svc.annotations[TARGET_UTILIZATION] = utilization
        svc.annotations["servopt.io/scale-target"] = (
            f"per-replica capacity {per_replica:.1f} rps / (1 + headroom {headroom:g}) = {per_pod:.2f} rps per pod: "
            f"scaleTarget {target} at {utilization} % target utilization")
    if repo.fixed_reason is not None:
        svc.annotations["servopt.io/fixed-placement"] = repo.fixed_reason
    names = sorted({str(m.info.get("model", m.name)) for m in repo.models})
    if len(names) == 1 and (repo.autoscale is not None or repo.fixed_reason is not None):
        svc.labels["servopt.io/model"] = label_value(names[0])
    return svc


def _cpu_memory(cores: float | None, options: KServeSpec) -> str:
    if options.memory:
        return options.memory
    per_core = quantity_value(options.memory_per_core) * math.ceil(cores or 1)
    return format_memory(max(per_core, Decimal(MIN_CPU_POD_MEMORY)))


def _services(deployment: TritonDeployment, options: KServeSpec) -> list[_Service]:
    out = []
    for repo in deployment.repositories:
        if repo.server_per_model:
            for entry in repo.models:
                cores = float(entry.info["cores"])
                variant = str(entry.info.get("variant", entry.name))
                out.append(_Service(
                    parts=(deployment.name, entry.name), origin=f"variant {variant!r}", repo=repo,
                    cpu=format_cpu(cores), memory=_cpu_memory(cores, options),
                    args=["--model-control-mode=explicit", f"--load-model={entry.name}"],
                    labels={"servopt.io/model": label_value(entry.name)},
                    annotations={"servopt.io/variant": variant}, model=entry.name))
        elif repo.hardware is not None:
            out.append(_gpu_service(deployment, repo, options))
        else:
            cores = repo.cpu_cores
            out.append(_Service(
                parts=(deployment.name,), origin=f"repository {repo.path!r}", repo=repo,
                cpu=format_cpu(cores) if cores else None, memory=_cpu_memory(cores, options),
                annotations={"servopt.io/entry-model": repo.entry} if repo.entry else {}))
    return out


def _assign_names(services: list[_Service], limit: int, what: str) -> None:
    taken: dict[str, str] = {}
    for svc in services:
        raw = dns_name(*svc.parts)
        svc.name = fit_name(raw, limit, original="/".join(p for p in svc.parts if p))
        if svc.name in taken:
            raise ValidationError(
                f"{taken[svc.name]} and {svc.origin} both become the {what} name {svc.name!r} (lower-case "
                "letters, digits and '-'); rename one of them")
        taken[svc.name] = svc.origin


def _manifest(svc: _Service, deployment: TritonDeployment, uri: str, options: KServeSpec) -> dict[str, Any]:
    limits: dict[str, str] = {}
    if svc.cpu is not None:
        limits["cpu"] = svc.cpu
    if svc.memory is not None:
        limits["memory"] = svc.memory
    if svc.gpus:
        limits["nvidia.com/gpu"] = str(svc.gpus)
    if svc.mig_profile is not None:
        limits[f"nvidia.com/mig-{svc.mig_profile}"] = "1"
    model: dict[str, Any] = {
        "modelFormat": {"name": "triton"},
        "runtimeVersion": options.runtime_version,
        "storageUri": uri if svc.repo.path == "." else f"{uri}/{svc.repo.path}",
    }
    if svc.args:
        model["args"] = svc.args
    # requests = limits: the plan sized the pod for exactly these resources (Guaranteed QoS)
    model["resources"] = {"requests": dict(limits), "limits": dict(limits)}
    replicas = max(1, int(getattr(svc.repo, "replicas", 1) or 1))
    predictor: dict[str, Any] = {"minReplicas": replicas, "maxReplicas": replicas}
    if svc.autoscale is not None:  # Knative's utilization annotation rides on the metadata (svc.annotations)
        low, high, target = svc.autoscale
        predictor.update(minReplicas=low, maxReplicas=high, scaleMetric="rps", scaleTarget=target)
    if svc.node_selector:
        predictor["nodeSelector"] = dict(svc.node_selector)
        predictor["tolerations"] = [dict(GPU_TOLERATION)]
    predictor["model"] = model
    return {"apiVersion": API_VERSION, "kind": "InferenceService",
            "metadata": _metadata(svc.name, deployment, options, svc.labels, svc.annotations),
            "spec": {"predictor": predictor}}


def _metadata(name: str, deployment: TritonDeployment, options: KServeSpec, labels: dict[str, str],
              annotations: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if options.namespace:
        metadata["namespace"] = options.namespace
    metadata["labels"] = {"app.kubernetes.io/managed-by": "servopt",
                          "servopt.io/problem": label_value(deployment.kind), **labels}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


def _graph(deployment: TritonDeployment, services: list[_Service], options: KServeSpec,
           limit: int) -> dict[str, Any]:
    weights = {r["model"]: float(r["weight"]) for r in (deployment.routing or {}).get("routes", [])}
    percent = split_percentages([weights.get(str(s.model), 0.0) for s in services])
    name = fit_name(dns_name(deployment.name), limit, original=deployment.name)
    knative = {f"{s.name}-predictor": s.origin for s in services}
    if name in knative:
        raise ValidationError(f"the InferenceGraph {name!r} and the predictor of {knative[name]} would share a "
                              "Knative service name; set triton.name")
    namespace = options.namespace or None
    steps = [{"name": s.name, "serviceUrl": predictor_url(s.name, namespace, str(s.model)), "weight": p}
             for s, p in zip(services, percent) if p > 0]
    return {"apiVersion": GRAPH_API_VERSION, "kind": "InferenceGraph",
            "metadata": _metadata(name, deployment, options, {}, {"servopt.io/routing": "load shares of the plan"}),
            "spec": {"nodes": {"root": {"routerType": "Splitter", "steps": steps}}}}


def kserve_manifests(deployment: TritonDeployment, storage_uri: str, options: KServeSpec | None = None
                     ) -> list[dict[str, Any]]:
    """The KServe objects for a deployment (see the module docstring), checked.

    Parameters
    ----------
    deployment : TritonDeployment
        What :func:`servopt.triton.build.build_deployment` returned.
    storage_uri : str
        Where the written folder will be uploaded (a KServe storage URI); repositories in sub-folders are
        ``storage_uri/<path>``.
    options : KServeSpec, optional
        The ``triton.kserve`` section (namespace, runtime version, CPU/memory, GPU product labels).

    Returns
    -------
    list of dict
        ``InferenceService`` objects, then the ``InferenceGraph`` objects (variants split, fleet models served by
        several services). ``metadata.namespace`` and the graphs' step URLs name ``options.namespace`` when it is
        set; otherwise neither does, and the file goes wherever ``kubectl apply -n`` puts it.
    """
    options = options or KServeSpec()
    uri = check_storage_uri(storage_uri)
    nested = [r.path for r in deployment.repositories if r.path != "."]
    if nested and not subpaths_allowed(uri):
        raise ValidationError(
            f"--storage-uri: {uri!r} names one archive or image, but the deployment has {len(nested)} "
            f"repositories in sub-folders ({', '.join(nested)}); use a folder URI (gs://, s3://, pvc://, Azure)")
    isvc_limit, graph_limit = _name_limits(options)
    services = _services(deployment, options)
    if options.cpu and not any(s.gpus for s in services):
        raise ValidationError(f"{options.where.get('cpu', 'cpu')}: {options.cpu!r}: sets the CPU of GPU pods, but "
                              "this plan has none (CPU pods get the plan's cores)")
    _assign_names(services, isvc_limit, "InferenceService")
    # a graph's step URLs name options.namespace when set, else none (resolved in the graph's own namespace)
    split = [s for s in services if s.model is not None]
    graphs = [_graph(deployment, split, options, graph_limit)] if len(split) > 1 else []
    graphs.extend(_fleet_graphs(deployment, services, options, graph_limit))
    return [_manifest(s, deployment, uri, options) for s in services] + graphs


def _fleet_graphs(deployment: TritonDeployment, services: list[_Service], options: KServeSpec,
                  limit: int) -> list[dict[str, Any]]:
    """Fleet plans: per model served by several services (or by one under several Triton names: one config per
    batch size), a ``Splitter`` with one step per service and Triton model, weighted by its share of the model's
    capacity (``routing.json``)."""
    models = (deployment.routing or {}).get("models")  # fleet routing: model -> its servers
    if not models:
        return []
    by_path = {s.repo.path: s for s in services}
    knative = {f"{s.name}-predictor": s.origin for s in services}
    graphs = []
    namespace = options.namespace or None
    for model, route in models.items():
        # (repository, Triton model name) -> capacity; every server of a replicas repository adds its own
        shares: dict[tuple[str, str], float] = {}
        for row in route["servers"]:
            key = (row["repository"], row["model"])
            shares[key] = shares.get(key, 0.0) + float(row["capacity_rps"])
        if len(shares) < 2:
            continue
        chosen = list(shares)
        percent = split_percentages([shares[k] for k in chosen])
        name = fit_name(dns_name(deployment.name, model), limit, original=f"{deployment.name}/{model}")
        if name in knative or any(g["metadata"]["name"] == name for g in graphs):
            raise ValidationError(f"the InferenceGraph {name!r} of model {model!r} clashes with another name; "
                                  "set triton.name")
        repeated = {path for path, _ in chosen if sum(p == path for p, _ in chosen) > 1}
        steps = [{"name": by_path[path].name + (f"/{served}" if path in repeated else ""),
                  "serviceUrl": predictor_url(by_path[path].name, namespace, served), "weight": p}
                 for (path, served), p in zip(chosen, percent) if p > 0]
        graphs.append({"apiVersion": GRAPH_API_VERSION, "kind": "InferenceGraph",
                       "metadata": _metadata(name, deployment, options, {"servopt.io/model": label_value(model)},
                                             {"servopt.io/routing": f"model {model}: capacity shares of the plan"}),
                       "spec": {"nodes": {"root": {"routerType": "Splitter", "steps": steps}}}})
    return graphs
