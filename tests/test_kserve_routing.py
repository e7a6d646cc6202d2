"""What a cluster does with servopt's KServe manifests: where an InferenceGraph step's requests go, and how many
pods Knative's autoscaler wants at the planned load (docs/triton.md "KServe", docs/fleet-deployment.md).

Two pieces of KServe and Knative are restated here from their source (kserve/kserve, knative/serving):

* the InferenceGraph controller (``pkg/controller/v1alpha1/inferencegraph/controller.go``) keeps a step's
  ``serviceUrl``; a ``serviceName`` step becomes the InferenceService's address plus
  ``PredictPath(GetModelName(isvc), protocol)`` = ``/v2/models/<name>/infer`` for Triton (protocol v2), where
  ``GetModelName`` (``pkg/controller/v1beta1/inferenceservice/utils/utils.go``) reads a ``--model_name`` argument
  of the predictor and otherwise returns the InferenceService's own name;
* Knative's autoscaler (``pkg/reconciler/autoscaling/resources/target.go``, ``pkg/autoscaler/scaling``) wants
  ceil(observed / (target x utilization)) pods, utilization the annotation
  ``autoscaling.knative.dev/target-utilization-percentage`` / 100, else 0.7; KServe writes ``scaleTarget`` as the
  target and copies the InferenceService's annotations to the revision.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from servopt.cli import main

ROOT = Path(__file__).resolve().parent.parent
UTILIZATION = "autoscaling.knative.dev/target-utilization-percentage"
KNATIVE_DEFAULT_UTILIZATION = 0.7


def _solve(tmp: Path, example: str, uri: str, *flags: str) -> Path:
    out = tmp / example
    assert main(["solve", str(ROOT / "examples" / f"{example}.yaml"), "--out", str(out), "--kserve",
                 "--storage-uri", uri, *flags]) == 0
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """The reviewer's runs: each example solved once, with its storage URI."""
    tmp = tmp_path_factory.mktemp("kserve_routing")
    runs = {"fleet_shared": "gs://b/fs", "fleet_mixed": "gs://b/fm", "variant_selection_infadapter_fit": "s3://b/vs"}
    return {name: (_solve(tmp, name, uri), uri) for name, uri in runs.items()}


def _docs(out: Path) -> list[dict]:
    return list(yaml.safe_load_all((out / "kserve.yaml").read_text()))


# ---------------------------------------------------------------------------------------------------------------
# InferenceGraph steps reach the Triton model they mean


def _model_name(isvc: dict) -> str:
    """KServe's GetModelName for a Triton predictor: a ``--model_name`` argument, else the service's name."""
    args = isvc["spec"]["predictor"]["model"].get("args", [])
    for i, arg in enumerate(args):
        if arg.startswith("--model_name"):
            if "=" in arg:
                return arg.split("=", 1)[1]
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                return args[i + 1]
    return isvc["metadata"]["name"]


def _step_target(step: dict, graph: dict, services: dict[str, dict]) -> tuple[str, str]:
    """(InferenceService, Triton model) a step's requests reach, as KServe's controller resolves the step."""
    namespace = graph["metadata"].get("namespace", "default")
    if step.get("serviceUrl"):
        url = step["serviceUrl"]
    else:
        isvc = services[step["serviceName"]]
        url = f"http://{step['serviceName']}.{namespace}.svc.cluster.local/v2/models/{_model_name(isvc)}/infer"
    # cluster DNS: a bare Service name resolves in the caller's namespace (the router runs in the graph's)
    found = re.fullmatch(r"http://([a-z0-9-]+?)(-predictor)?(?:\.([a-z0-9-]+)\.svc\.cluster\.local)?"
                         r"/v2/models/([^/]+)/infer", url)
    assert found, f"{graph['metadata']['name']}: {url!r} is not an in-cluster open-inference-protocol URL"
    assert (found.group(3) or namespace) == namespace, f"{url} leaves the graph's namespace {namespace}"
    return found.group(1), found.group(4)


def _loaded(out: Path, uri: str, isvc: dict) -> set[str]:
    """The Triton models the service's server loads: its repository's models, or its ``--load-model``s."""
    model = isvc["spec"]["predictor"]["model"]
    assert model["storageUri"].startswith(uri)
    repo = out / model["storageUri"][len(uri):].lstrip("/")
    explicit = {a.split("=", 1)[1] for a in model.get("args", []) if a.startswith("--load-model=")}
    if "--model-control-mode=explicit" in model.get("args", []):
        return explicit
    return {p.parent.name for p in repo.glob("*/config.pbtxt")}


def _check_graphs(out: Path, uri: str) -> int:
    docs = _docs(out)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "InferenceService"}
    graphs = [d for d in docs if d["kind"] == "InferenceGraph"]
    for graph in graphs:
        plan_model = graph["metadata"]["labels"].get("servopt.io/model")
        for step in graph["spec"]["nodes"]["root"]["steps"]:
            assert sum(bool(step.get(k)) for k in ("serviceName", "serviceUrl", "nodeName")) == 1, step  # webhook
            service, triton_model = _step_target(step, graph, services)
            assert service in services, f"{step}: no InferenceService {service!r}"
            served = _loaded(out, uri, services[service])
            assert triton_model in served, (f"{graph['metadata']['name']}: step {step['name']!r} sends requests to "
                                            f"model {triton_model!r}; {service} serves {sorted(served)}")
            if plan_model:  # a fleet graph: the model's own config (<model> or <model>_b<B>)
                assert re.fullmatch(re.escape(plan_model) + r"(_b\d+)?", triton_model), (plan_model, triton_model)
    return len(graphs)


def test_variant_graph_steps_reach_each_variants_triton_model(written) -> None:
    """The reviewer's run: steps named by serviceName reached /v2/models/variant-selection-...-resnet18/infer,
    while that server loads only ``resnet18``."""
    out, uri = written["variant_selection_infadapter_fit"]
    assert _check_graphs(out, uri) == 1
    routes = {r["model"]: r["weight"] for r in json.loads((out / "routing.json").read_text())["routes"]}
    [graph] = [d for d in _docs(out) if d["kind"] == "InferenceGraph"]
    got = {_step_target(s, graph, {})[1]: s["weight"] for s in graph["spec"]["nodes"]["root"]["steps"]}
    assert got == {m: round(100 * w) for m, w in routes.items() if round(100 * w) > 0}
    # the variants' services are fixed (min = max replicas): Knative's utilization does not apply to them
    for isvc in (d for d in _docs(out) if d["kind"] == "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        assert predictor["minReplicas"] == predictor["maxReplicas"] and "scaleMetric" not in predictor
        assert UTILIZATION not in isvc["metadata"].get("annotations", {})


@pytest.mark.parametrize("example", ["fleet_shared", "fleet_mixed"])
def test_fleet_graph_steps_reach_the_models_triton_config(written, example: str) -> None:
    """Fleet graphs, including a step to a node service that serves two models (fleet_shared's L4.node0)."""
    out, uri = written[example]
    assert _check_graphs(out, uri) >= 1


def test_fleet_demo_graphs_reach_a_shared_node_and_a_shared_slice(tmp_path: Path) -> None:
    pytest.importorskip("servopt.formulations.fleet.types")
    from _fleet_cases import demo_plan, demo_problem

    from servopt.triton import write_repository

    out = write_repository(demo_problem(model_files=False), demo_plan(), tmp_path / "fleet", kserve=True,
                           storage_uri="gs://bucket/fleet")
    assert _check_graphs(out, "gs://bucket/fleet") == 3


def test_random_fleet_graphs_reach_every_config_of_a_model(tmp_path: Path) -> None:
    """test_fleet_output's random plans: a model at two batch sizes on one server is two Triton models
    (``<model>_b<B>``), each its own step with its own capacity share."""
    pytest.importorskip("servopt.formulations.fleet.types")
    from dataclasses import replace

    from _fleet_cases import demo_problem
    from test_fleet_output import _random_plan

    from servopt.triton import write_repository

    problem = replace(demo_problem(model_files=False), gpu_types=[
        replace(t, gpus_per_node=4) for t in demo_problem().gpu_types])
    graphs = 0
    for seed in range(25):
        out = write_repository(problem, _random_plan(seed), tmp_path / str(seed), kserve=True,
                               storage_uri="s3://bucket/fleet")
        graphs += _check_graphs(out, "s3://bucket/fleet")
    assert graphs >= 25
    steps = [s for d in _docs(tmp_path / "11") if d["kind"] == "InferenceGraph"
             for s in d["spec"]["nodes"]["root"]["steps"]]
    assert {s["name"] for s in steps} >= {"fleet-demo-a100-80gb-node2/classifier_b1",
                                          "fleet-demo-a100-80gb-node2/classifier_b4"}


def test_graph_urls_name_the_namespace_every_object_is_in(tmp_path: Path) -> None:
    out = _solve(tmp_path, "variant_selection_infadapter_fit", "s3://b/vs", "--kserve-namespace", "vision")
    docs = _docs(out)
    assert {d["metadata"]["namespace"] for d in docs} == {"vision"}
    [graph] = [d for d in docs if d["kind"] == "InferenceGraph"]
    assert all(".vision.svc.cluster.local/" in s["serviceUrl"] for s in graph["spec"]["nodes"]["root"]["steps"])


@pytest.mark.parametrize("example", ["variant_selection_infadapter_fit", "fleet_shared"])
def test_graph_without_a_namespace_applies_in_any_namespace(tmp_path: Path, example: str) -> None:
    """The reviewer's case: ``kubectl apply -n prod -f kserve.yaml`` of a plan with a graph and no
    ``kserve.namespace`` failed, every object saying ``namespace: default``. Now no object names a namespace and
    each step's URL is the bare predictor Service, which resolves in the graph's (the router's) namespace."""
    docs = _docs(_solve(tmp_path, example, "s3://b/x"))
    assert [d for d in docs if d["kind"] == "InferenceGraph"]
    assert all("namespace" not in d["metadata"] for d in docs), [d["metadata"] for d in docs]
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "InferenceService"}
    for graph in (d for d in docs if d["kind"] == "InferenceGraph"):
        for step in graph["spec"]["nodes"]["root"]["steps"]:
            found = re.fullmatch(r"http://([a-z0-9-]+)-predictor/v2/models/[^/]+/infer", step["serviceUrl"])
            assert found and found.group(1) in services, step


# ---------------------------------------------------------------------------------------------------------------
# Knative keeps the plan's pods at the plan's load


def _planned_load(out: Path) -> dict[str, float]:
    """Per repository: the requests per second routing.json sends it (all its servers together)."""
    load: dict[str, float] = {}
    for route in json.loads((out / "routing.json").read_text())["models"].values():
        for row in route["servers"]:
            load[row["repository"]] = load.get(row["repository"], 0.0) + float(row["rate_share_rps"] or 0.0)
    return load


def _knative_pods(isvc: dict, load_rps: float) -> int:
    """The pods Knative's autoscaler wants for a steady ``load_rps`` (its stable-mode arithmetic)."""
    predictor = isvc["spec"]["predictor"]
    annotations = isvc["metadata"].get("annotations", {})
    utilization = float(annotations[UTILIZATION]) / 100 if UTILIZATION in annotations \
        else KNATIVE_DEFAULT_UTILIZATION
    aim = max(0.01, predictor["scaleTarget"] * utilization)
    wanted = math.ceil(load_rps / aim)
    return min(max(wanted, predictor["minReplicas"]), predictor["maxReplicas"])


@pytest.mark.parametrize("example", ["fleet_shared", "fleet_mixed"])
def test_autoscaled_services_run_the_planned_pods_at_the_planned_load(written, example: str) -> None:
    """Before: 6 of 12 (fleet_shared) and 9 of 13 (fleet_mixed) autoscaled services wanted a pod the plan never
    bought, e.g. fleet_shared's ResNet-50: scaleTarget 1711 at Knative's 70 % -> ceil(1500 / 1197.7) = 2 pods."""
    out, uri = written[example]
    load = _planned_load(out)
    headroom = json.loads((out / "routing.json").read_text())["headroom"]
    summary = json.loads((out / "servopt.json").read_text())
    capacity = {p["repository"]: p["throughput_rps"] for p in summary["predictions"]["placements"]}
    autoscaled = 0
    for isvc in (d for d in _docs(out) if d["kind"] == "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        if predictor.get("scaleMetric") != "rps":  # a fixed placement: min = max, nothing for Knative to aim at
            assert predictor["minReplicas"] == predictor["maxReplicas"]
            assert UTILIZATION not in isvc["metadata"].get("annotations", {})
            continue
        autoscaled += 1
        repo = predictor["model"]["storageUri"][len(uri):].lstrip("/")
        pods = _knative_pods(isvc, load[repo])
        assert pods == predictor["minReplicas"], (f"{isvc['metadata']['name']}: Knative wants {pods} pods at the "
                                                  f"planned {load[repo]:.1f} rps, the plan has "
                                                  f"{predictor['minReplicas']}")
        # and what it aims at per pod is the plan's capacity / (1 + headroom): never more, at most 1e-6 less
        aim = predictor["scaleTarget"] * float(isvc["metadata"]["annotations"][UTILIZATION]) / 100
        per_pod = capacity[repo] / (1 + headroom)
        assert per_pod * (1 - 1e-6) - 1e-9 <= aim <= per_pod + 1e-9
    assert autoscaled >= 12


@given(st.floats(min_value=0.01, max_value=1e7, allow_nan=False, allow_infinity=False))
def test_knative_target_aims_at_the_rate_from_below(per_pod: float) -> None:
    from servopt.triton.kserve import knative_target

    target, text = knative_target(per_pod)
    percent = float(text)
    assert isinstance(target, int) and target >= 1 and 1 <= percent <= 100
    assert re.fullmatch(r"\d+(\.\d{1,4})?", text)
    aim = target * percent / 100
    assert aim <= per_pod * (1 + 1e-12)
    assert aim >= per_pod - target * 1e-6 - 1e-12


def test_knative_target_is_whole_when_the_rate_is() -> None:
    from servopt.triton.kserve import knative_target

    assert knative_target(496.0) == (496, "100")
    assert knative_target(5.5555555) == (6, "92.5925")
    with pytest.raises(ValueError, match="positive, finite"):
        knative_target(0.0)
