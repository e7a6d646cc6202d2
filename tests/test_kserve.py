"""KServe manifests a cluster accepts and places right (docs/triton.md, "KServe").

Every manifest servopt writes here (the test cases, the shipped examples, edge cases) is validated against
``SCHEMA``: servopt's own restatement, written for these tests, of the Kubernetes and KServe rules that apply to
the fields servopt writes (RFC 1035 / DNS-1123 names of at most 63 characters, label keys and values, resource
quantities, storage URI schemes, the InferenceGraph router types and weights). It is not KServe's CRD: that is
not vendored (nothing fetched from public repositories is committed here), and the CRD alone does not catch
what the webhook and Knative refuse (name patterns, derived host labels, weights summing to 100), which
``check_documents`` adds.
"""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from _triton_cases import CASES, FakeProblem, FakeSolution, gpu_plan, variant_plan
from hypothesis import given
from hypothesis import strategies as st

from servopt.cli import main
from servopt.exceptions import ValidationError
from servopt.triton import build_repository
from servopt.triton.k8s_names import check_quantity, check_storage_uri, quantity_value
from servopt.triton.kserve import split_percentages

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------------------------
# the schema: Kubernetes / KServe rules, restated

DNS1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"          # KServe: InferenceService / InferenceGraph names
DNS1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"       # namespaces, PVC names
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_KEY = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
             r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
QUANTITY = (r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
            r"(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")   # positive, as servopt writes them
STORAGE_URI = (r"^((gs|s3|hdfs|webhdfs)://[^/\s]+(/\S*)?|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/\S*)?"
               r"|https://[^/\s]+\.(blob|file)\.core\.windows\.net/\S+|https?://[^/\s]+/\S+\.(zip|tar|tar\.gz|tgz)"
               r"|hf://\S+|oci://\S+)$")

_NAME = {"type": "string", "pattern": DNS1035, "maxLength": 63}
_LABELS = {"type": "object", "propertyNames": {"pattern": LABEL_KEY, "maxLength": 316},
           "additionalProperties": {"type": "string", "pattern": LABEL_VALUE, "maxLength": 63}}
_METADATA = {
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {"name": _NAME, "namespace": {"type": "string", "pattern": DNS1123, "maxLength": 63},
                   "labels": _LABELS,
                   "annotations": {"type": "object", "additionalProperties": {"type": "string"}}},
}
_RESOURCES = {"type": "object", "additionalProperties": False,
              "properties": {"cpu": {"type": "string", "pattern": QUANTITY},
                             "memory": {"type": "string", "pattern": QUANTITY},
                             "nvidia.com/gpu": {"type": "string", "pattern": r"^[1-9][0-9]*$"}},
              # the GPU operator's mixed MIG strategy: one resource per slice profile (nvidia.com/mig-1g.10gb)
              "patternProperties": {r"^nvidia\.com/mig-[1-7]g\.[0-9]+gb(\+me)?$":
                                    {"type": "string", "pattern": r"^[1-9][0-9]*$"}}}
_REPLICAS = {"type": "integer", "minimum": 0}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "oneOf": [
        {   # serving.kserve.io/v1beta1 InferenceService, the fields servopt writes
            "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": {"const": "serving.kserve.io/v1beta1"},
                "kind": {"const": "InferenceService"},
                "metadata": _METADATA,
                "spec": {"type": "object", "additionalProperties": False, "required": ["predictor"], "properties": {
                    "predictor": {
                        "type": "object", "additionalProperties": False, "required": ["model"],
                        "properties": {
                            "minReplicas": _REPLICAS, "maxReplicas": _REPLICAS,
                            # KServe's ComponentExtensionSpec: the Knative autoscaler's metric and target
                            "scaleMetric": {"enum": ["concurrency", "rps", "cpu", "memory"]},
                            "scaleTarget": {"type": "integer", "minimum": 1},
                            "nodeSelector": {"type": "object", "minProperties": 1,
                                             "propertyNames": {"pattern": LABEL_KEY},
                                             "additionalProperties": {"type": "string", "pattern": LABEL_VALUE,
                                                                      "maxLength": 63}},
                            "tolerations": {"type": "array", "items": {
                                "type": "object", "additionalProperties": False, "required": ["key", "operator"],
                                "properties": {"key": {"type": "string", "pattern": LABEL_KEY},
                                               "operator": {"enum": ["Exists", "Equal"]},
                                               "value": {"type": "string"},
                                               "effect": {"enum": ["NoSchedule", "PreferNoSchedule",
                                                                   "NoExecute"]}}}},
                            "model": {
                                "type": "object", "additionalProperties": False,
                                "required": ["modelFormat", "storageUri", "resources"],
                                "properties": {
                                    "modelFormat": {"type": "object", "additionalProperties": False,
                                                    "required": ["name"],
                                                    "properties": {"name": {"const": "triton"}}},
                                    "runtimeVersion": {"type": "string",
                                                       "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"},
                                    "storageUri": {"type": "string", "pattern": STORAGE_URI},
                                    "args": {"type": "array", "items": {"type": "string"}},
                                    "resources": {"type": "object", "additionalProperties": False,
                                                  "required": ["requests", "limits"],
                                                  "properties": {"requests": _RESOURCES, "limits": _RESOURCES}},
                                }},
                        }},
                }},
            },
        },
        {   # serving.kserve.io/v1alpha1 InferenceGraph
            "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": {"const": "serving.kserve.io/v1alpha1"},
                "kind": {"const": "InferenceGraph"},
                "metadata": _METADATA,
                "spec": {"type": "object", "additionalProperties": False, "required": ["nodes"], "properties": {
                    "nodes": {"type": "object", "required": ["root"], "additionalProperties": {
                        "type": "object", "additionalProperties": False, "required": ["routerType", "steps"],
                        "properties": {
                            "routerType": {"enum": ["Sequence", "Splitter", "Ensemble", "Switch"]},
                            "steps": {"type": "array", "minItems": 1, "items": {
                                "type": "object", "additionalProperties": False,
                                "properties": {"name": {"type": "string"}, "serviceName": _NAME,
                                               "nodeName": {"type": "string"}, "serviceUrl": {"type": "string"},
                                               "weight": {"type": "integer", "minimum": 0, "maximum": 100}},
                                "oneOf": [{"required": ["serviceName"]}, {"required": ["nodeName"]},
                                          {"required": ["serviceUrl"]}]}},
                        }}},
                }},
            },
        },
    ],
}


def check_documents(docs: list[dict]) -> None:
    """Validate a ``kserve.yaml``: the schema, plus the rules a JSON schema cannot state."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    names: dict[tuple[str, str], int] = {}
    services: dict[str, str | None] = {}  # name -> namespace (None: kubectl's)
    for doc in docs:
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{doc['metadata'].get('name')}: {errors[0].message} at {list(errors[0].absolute_path)}"
        meta = doc["metadata"]
        namespace = meta.get("namespace", "default")
        key = (doc["kind"], meta["name"])
        names[key] = names.get(key, 0) + 1
        if doc["kind"] == "InferenceService":
            services[meta["name"]] = meta.get("namespace")
            # Knative: the route's host label and the first revision's name are DNS labels too
            assert len(f"{meta['name']}-predictor-{namespace}") <= 63
            assert len(f"{meta['name']}-predictor-00001") <= 63
            predictor = doc["spec"]["predictor"]
            assert predictor["minReplicas"] <= predictor["maxReplicas"]
            res = predictor["model"]["resources"]
            assert res["requests"] == res["limits"]
            assert {"cpu", "memory"} <= set(res["limits"]), "every pod states its CPU and memory"
            assert quantity_value(res["limits"]["memory"]) >= 2 ** 30
            if any(k == "nvidia.com/gpu" or k.startswith("nvidia.com/mig-") for k in res["limits"]):
                assert predictor["nodeSelector"], "a GPU pod is pinned to its GPU type"
            assert ("scaleTarget" in predictor) == ("scaleMetric" in predictor)
        else:
            assert len(f"{meta['name']}-{namespace}") <= 63
    for doc in docs:
        if doc["kind"] == "InferenceGraph":
            for node in doc["spec"]["nodes"].values():
                steps = node["steps"]
                assert len({s.get("name") for s in steps}) == len(steps)
                if node["routerType"] == "Splitter":
                    assert sum(s["weight"] for s in steps) == 100
                for step in steps:
                    assert step.get("serviceName", next(iter(services))) in services
                    if "serviceUrl" in step:  # a predictor of this file, in the graph's own namespace
                        found = re.fullmatch(r"http://([a-z0-9-]+)-predictor(?:\.([a-z0-9-]+)\.svc\.cluster\.local)?"
                                             r"/v2/models/[A-Za-z0-9_.-]+/infer", step["serviceUrl"])
                        assert found, step["serviceUrl"]
                        graph_namespace = doc["metadata"].get("namespace")
                        # a bare Service name resolves in the router's (the graph's) namespace
                        assert found.group(1) in services and found.group(2) == graph_namespace
                        assert services[found.group(1)] == graph_namespace, "graph and services share a namespace"
    assert all(count == 1 for count in names.values()), names


def manifests(problem, solution, **kwargs) -> list[dict]:
    kwargs.setdefault("kserve", True)
    kwargs.setdefault("storage_uri", "gs://bucket/repo")
    _, files, _ = build_repository(problem, solution, **kwargs)
    docs = list(yaml.safe_load_all(files["kserve.yaml"]))
    check_documents(docs)
    return docs


def services(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] == "InferenceService"]


MIXED = gpu_plan([("A100-80GB", 3, 64), ("T4", 8, 16)])
VARIANTS = variant_plan([("resnet18", 4, 30.0), ("resnet50", 6, 90.0), ("resnet152", 0, 0.0)])


# ---------------------------------------------------------------------------------------------------------------
# every written manifest passes


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_case_validates(case: str) -> None:
    problem, solution, kwargs = CASES[case]
    manifests(problem, solution, **{**kwargs, "kserve": True,
                                    "storage_uri": kwargs.get("storage_uri", "s3://bucket/" + case)})


EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_validates(path: Path) -> None:
    import servopt

    problem = servopt.load_problem(path)
    solution = servopt.solve(problem, time_limit_s=60)
    if solution.plan is None:
        pytest.skip("no plan to deploy")
    docs = manifests(problem, solution, storage_uri="gs://bucket/" + path.stem, source=path)
    assert services(docs)


def test_the_schema_refuses_what_a_cluster_refuses() -> None:
    """The schema is not vacuous: the issue's broken manifests fail it."""
    doc = services(manifests(FakeProblem("effnet"), FakeSolution(MIXED)))[0]
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for path, bad in ((("spec", "predictor", "model", "resources", "limits", "memory"), "8GB"),
                      (("metadata", "namespace"), "Vision_Team"),
                      (("metadata", "name"), "x" * 64),
                      (("spec", "predictor", "model", "storageUri"), "ftp://host/repo"),
                      (("spec", "predictor", "model", "storageUri"), "az://account/repo")):
        broken = yaml.safe_load(yaml.safe_dump(doc))
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = bad
        assert not validator.is_valid(broken), (path, bad)


# ---------------------------------------------------------------------------------------------------------------
# resources, replicas, placement


def test_gpu_pods_get_gpus_cpu_memory_and_their_node_type() -> None:
    a100, t4 = services(manifests(FakeProblem("effnet"), FakeSolution(MIXED)))
    for doc, gpus, product in ((a100, "3", "A100-80GB"), (t4, "8", "Tesla-T4")):
        predictor = doc["spec"]["predictor"]
        limits = predictor["model"]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == gpus
        assert limits["cpu"] == str(2 * int(gpus)) and limits["memory"] == f"{8 * int(gpus)}Gi"
        assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": product}
        assert predictor["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert predictor["minReplicas"] == predictor["maxReplicas"] == 1


def test_gpu_resources_and_labels_are_configurable() -> None:
    triton = {"kserve": {"cpu_per_gpu": "1500m", "memory_per_gpu": "12Gi", "gpu_label": "example.com/gpu",
                         "gpu_products": {"A100-80GB": "NVIDIA-A100-SXM4-80GB"}}}
    a100, t4 = services(manifests(FakeProblem("effnet", triton=triton), FakeSolution(MIXED)))
    assert a100["spec"]["predictor"]["model"]["resources"]["limits"] == {
        "cpu": "4500m", "memory": "36Gi", "nvidia.com/gpu": "3"}
    assert a100["spec"]["predictor"]["nodeSelector"] == {"example.com/gpu": "NVIDIA-A100-SXM4-80GB"}
    assert t4["spec"]["predictor"]["nodeSelector"] == {"example.com/gpu": "Tesla-T4"}
    fixed = {"kserve": {"cpu": 6, "memory": "40Gi"}}
    for doc in services(manifests(FakeProblem("effnet", triton=fixed), FakeSolution(MIXED))):
        limits = doc["spec"]["predictor"]["model"]["resources"]["limits"]
        assert (limits["cpu"], limits["memory"]) == ("6", "40Gi")


def test_cpu_pods_get_the_plans_cores_and_memory() -> None:
    docs = services(manifests(FakeProblem("resnets"), FakeSolution(VARIANTS)))
    assert [d["spec"]["predictor"]["model"]["resources"]["limits"] for d in docs] == [
        {"cpu": "4", "memory": "4Gi"}, {"cpu": "6", "memory": "6Gi"}]
    assert all("nodeSelector" not in d["spec"]["predictor"] for d in docs)
    with pytest.raises(ValidationError, match=r"key 'triton.kserve.cpu': '2': sets the CPU of GPU pods"):
        manifests(FakeProblem("resnets", triton={"kserve": {"cpu": 2}}), FakeSolution(VARIANTS))


# ---------------------------------------------------------------------------------------------------------------
# routing


def test_variants_are_split_by_an_inference_graph() -> None:
    docs = manifests(FakeProblem("resnets"), FakeSolution(variant_plan([("a", 2, 10.0), ("b", 2, 10.0),
                                                                          ("c", 2, 10.0)])))
    graph = docs[-1]
    assert graph["apiVersion"] == "serving.kserve.io/v1alpha1" and graph["kind"] == "InferenceGraph"
    root = graph["spec"]["nodes"]["root"]
    assert root["routerType"] == "Splitter"
    # each step reaches its variant's Triton model (a serviceName step would reach /v2/models/<service name>)
    assert [(s["name"], s["serviceUrl"], s["weight"]) for s in root["steps"]] == [
        (f"resnets-{v}", f"http://resnets-{v}-predictor/v2/models/{v}/infer", w)
        for v, w in (("a", 34), ("b", 33), ("c", 33))]
    assert not any("servopt.io/routing-weight" in d["metadata"].get("annotations", {}) for d in docs)
    # no namespace configured: none is written, so `kubectl apply -n prod` puts graph and services together
    assert not any("namespace" in d["metadata"] for d in docs)


def test_a_configured_namespace_is_in_every_object_and_step_url() -> None:
    docs = manifests(FakeProblem("resnets", triton={"kserve": {"namespace": "prod"}}),
                     FakeSolution(variant_plan([("a", 2, 10.0), ("b", 2, 10.0)])))
    assert {d["metadata"]["namespace"] for d in docs} == {"prod"}
    assert [s["serviceUrl"] for s in docs[-1]["spec"]["nodes"]["root"]["steps"]] == [
        f"http://resnets-{v}-predictor.prod.svc.cluster.local/v2/models/{v}/infer" for v in "ab"]


def test_one_variant_needs_no_graph() -> None:
    docs = manifests(FakeProblem("resnets"), FakeSolution(variant_plan([("a", 2, 10.0), ("b", 0, 0.0)])))
    assert [d["kind"] for d in docs] == ["InferenceService"]


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=12))
def test_percentages_sum_to_100_within_one_of_the_share(weights: list[float]) -> None:
    percent = split_percentages(weights)
    assert sum(percent) == 100 and all(p >= 0 for p in percent)
    total = sum(weights)
    for w, p in zip(weights, percent):
        exact = 100 * w / total if total > 0 else 100 / len(weights)
        assert abs(p - exact) < 1 + 1e-9


# ---------------------------------------------------------------------------------------------------------------
# names


def test_long_names_are_shortened_stably_and_distinctly() -> None:
    name = "efficientnet_b7_noisy_student_distilled_from_teacher_model_v2"
    problem = FakeProblem(name, triton={"kserve": {"namespace": "vision-inference-team"}})
    plan = gpu_plan([("A100-80GB-SXM4", 2, 8), ("A100-80GB-PCIE", 2, 8)])
    first = [d["metadata"]["name"] for d in services(manifests(problem, FakeSolution(plan)))]
    again = [d["metadata"]["name"] for d in services(manifests(problem, FakeSolution(plan)))]
    assert first == again and len(set(first)) == 2
    assert all(re.search(r"-[0-9a-f]{6}$", n) for n in first)


def test_long_namespace_is_refused() -> None:
    problem = FakeProblem("m", triton={"kserve": {"namespace": "n" * 60}})
    with pytest.raises(ValidationError, match=r"key 'triton.kserve.namespace': 'n{60}' \(60 characters\) leaves "):
        manifests(problem, FakeSolution(MIXED))


@pytest.mark.parametrize("a, b", [("resnet_50", "resnet-50"), ("ResNet18", "resnet18")])
def test_names_colliding_after_normalisation_are_refused(a: str, b: str) -> None:
    plan = variant_plan([(a, 2, 10.0), (b, 2, 10.0)])
    with pytest.raises(ValidationError, match=rf"variant '{a}' and variant '{b}' both become the InferenceService "
                                              rf"name 'm-resnet-?\d+'"):
        manifests(FakeProblem("m"), FakeSolution(plan))


# ---------------------------------------------------------------------------------------------------------------
# refused values: one line naming the key and the value


@pytest.mark.parametrize("kserve, message", [
    ({"memory": "8GB"}, r"key 'triton.kserve.memory': '8GB' is not a Kubernetes quantity; write '8G' \(10\^9 "
                        r"bytes\) or '8Gi' \(2\^30 bytes\)"),
    ({"memory": "512m"}, r"key 'triton.kserve.memory': '512m' means 512 milli-bytes; write '512Mi'"),
    ({"memory_per_gpu": "lots"}, r"key 'triton.kserve.memory_per_gpu': 'lots' is not a Kubernetes quantity"),
    ({"cpu": "0.0001"}, r"key 'triton.kserve.cpu': '0.0001' is finer than"),
    ({"cpu": "-1"}, r"key 'triton.kserve.cpu': '-1' must be positive"),
    ({"namespace": "Vision_Team"}, r"key 'triton.kserve.namespace': 'Vision_Team' is not a DNS-1123 label.*"
                                   r"try 'vision-team'"),
    ({"runtime_version": "24.10 py3"}, r"key 'triton.kserve.runtime_version': '24.10 py3' is not a container"),
    ({"gpu_products": {"T4": "Tesla T4"}}, r"key 'triton.kserve.gpu_products.T4': 'Tesla T4' is not a Kubernetes "
                                           r"label value"),
    ({"gpu_label": "nvidia.com/"}, r"key 'triton.kserve.gpu_label': 'nvidia.com/' is not a Kubernetes label key"),
    ({"replicas": 2}, r"key 'triton.kserve.replicas': unknown key"),
])
def test_bad_section_values_are_refused(kserve: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        manifests(FakeProblem("m", triton={"kserve": kserve}), FakeSolution(MIXED))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("uri", ["ftp://host/repo", "az://account/repo", "file:///models", "bucket/path",
                                 "s3://", "pvc://Claim_1/repo", "https://example.com/models/",
                                 "http://example.com/"])
def test_storage_uris_kserve_cannot_download_are_refused(uri: str) -> None:
    with pytest.raises(ValidationError, match=r"^--storage-uri: ") as info:
        check_storage_uri(uri)
    assert repr(uri.rstrip("/")) in str(info.value) or repr(uri) in str(info.value)


@pytest.mark.parametrize("uri", ["gs://b/repo", "s3://b/repo/", "pvc://models/repo", "pvc://models",
                                 "hdfs://nn/repo", "webhdfs://nn/repo", "https://acct.blob.core.windows.net/c/repo",
                                 "https://example.com/repo.tar.gz", "hf://org/repo", "oci://registry/img:1"])
def test_storage_uris_kserve_downloads_are_accepted(uri: str) -> None:
    assert check_storage_uri(uri) == uri.rstrip("/")
    manifests(FakeProblem("resnets"), FakeSolution(VARIANTS), storage_uri=uri)


def test_one_archive_cannot_hold_several_repositories() -> None:
    with pytest.raises(ValidationError, match=r"names one archive or image, but the deployment has 2 repositories"):
        manifests(FakeProblem("effnet"), FakeSolution(MIXED), storage_uri="https://example.com/repo.zip")
    docs = manifests(FakeProblem("effnet"), FakeSolution(MIXED),
                     storage_uri="https://acct.blob.core.windows.net/models/effnet")
    assert [d["spec"]["predictor"]["model"]["storageUri"] for d in docs] == [
        "https://acct.blob.core.windows.net/models/effnet/A100-80GB",
        "https://acct.blob.core.windows.net/models/effnet/T4"]


@pytest.mark.parametrize("text, value", [("8Gi", 8 * 2 ** 30), ("512Mi", 512 * 2 ** 20), ("2", 2), ("500m", 0.5),
                                         ("1.5", 1.5), ("1e9", 10 ** 9), ("8G", 8 * 10 ** 9), (".5", 0.5)])
def test_quantities_kubernetes_accepts(text: str, value: float) -> None:
    memory = value >= 2 ** 20
    assert check_quantity(text, "q", memory=memory) == text
    assert float(quantity_value(text)) == value


# ---------------------------------------------------------------------------------------------------------------
# the CLI: exit 2, one line, nothing written


def _problem(tmp_path: Path, kserve: str = "") -> Path:
    text = (ROOT / "examples" / "variant_selection_infadapter.yaml").read_text()
    # the example's model files are relative to examples/: point them there from the copy
    text = text.replace("model_file: models/", f"model_file: {ROOT / 'examples' / 'models'}/")
    path = tmp_path / "p.yaml"
    path.write_text(text + (f"\ntriton:\n  kserve: {kserve}\n" if kserve else ""))
    return path


@pytest.mark.parametrize("kserve, flags, words", [
    ("{memory: 8GB}", [], "p.yaml: key 'triton.kserve.memory': '8GB' is not a Kubernetes quantity; write '8G'"),
    ("{namespace: Vision_Team}", [], "key 'triton.kserve.namespace': 'Vision_Team' is not a DNS-1123 label"),
    ("", ["--storage-uri", "ftp://host/repo"], "--storage-uri: scheme 'ftp' of 'ftp://host/repo'"),
    ("", ["--kserve-memory", "8GB"], "--kserve-memory: '8GB' is not a Kubernetes quantity"),
    ("", ["--kserve-namespace", "Vision_Team"], "--kserve-namespace: 'Vision_Team' is not a DNS-1123 label"),
])
def test_cli_refuses_with_exit_2_and_writes_nothing(tmp_path: Path, capsys, kserve: str, flags: list[str],
                                                    words: str) -> None:
    path = _problem(tmp_path, kserve)
    argv = ["solve", str(path), "--out", str(tmp_path / "repo"), "--kserve", *flags]
    if "--storage-uri" not in flags:
        argv += ["--storage-uri", "gs://bucket/repo"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "repo").exists()


def test_cli_flags_override_the_section(tmp_path: Path, capsys) -> None:
    path = _problem(tmp_path, "{namespace: vision, memory: 4Gi}")
    code = main(["solve", str(path), "--out", str(tmp_path / "repo"), "--kserve", "--storage-uri",
                 "gs://bucket/repo", "--kserve-namespace", "ml", "--kserve-memory", "16Gi"])
    assert code == 0, capsys.readouterr().err
    docs = list(yaml.safe_load_all((tmp_path / "repo" / "kserve.yaml").read_text()))
    check_documents(docs)
    assert {d["metadata"]["namespace"] for d in docs} == {"ml"}
    assert {d["spec"]["predictor"]["model"]["resources"]["limits"]["memory"] for d in services(docs)} == {"16Gi"}


def test_cli_kserve_flags_need_kserve(tmp_path: Path, capsys) -> None:
    code = main(["solve", str(_problem(tmp_path)), "--out", str(tmp_path / "repo"), "--kserve-cpu", "2"])
    assert code == 2 and "--kserve-cpu only applies with --kserve" in capsys.readouterr().err
