"""Fleet plans as deployments: one Triton repository per server, KServe manifests, verification
(docs/fleet-deployment.md). The plan is built by hand in tests/_fleet_cases.py with every layout shape.

Golden files live in tests/golden/triton/fleet/; regenerate them with SERVOPT_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

# the plan types are the fleet formulation's (issue 22a); until its package is merged there is nothing to output
pytest.importorskip("servopt.formulations.fleet.types")
from _fleet_cases import demo_plan, demo_problem, placement  # noqa: E402
from _triton_cases import assert_golden  # noqa: E402
from _triton_cases import tree as _tree  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

from servopt.exceptions import ValidationError  # noqa: E402
from servopt.triton import build_repository, write_repository  # noqa: E402
from servopt.triton.fleet import mig_parted_config, queue_delay_us  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "triton" / "fleet"


def _configs(files: dict[str, str]) -> dict[tuple[str, str], mc.ModelConfig]:
    return {(rel.split("/")[0], rel.split("/")[1]): text_format.Parse(text, mc.ModelConfig())
            for rel, text in files.items() if rel.endswith("/config.pbtxt")}


# ---------------------------------------------------------------------------------------------------------------
# repositories


def test_golden(tmp_path: Path) -> None:
    out = write_repository(demo_problem(model_files=False), demo_plan(), tmp_path / "fleet", kserve=True,
                           storage_uri="gs://bucket/fleet")
    assert_golden(_tree(out), GOLDEN)


def test_every_placement_is_pinned_with_its_instances() -> None:
    plan = demo_plan()
    _, files, _ = build_repository(demo_problem(model_files=False), plan)
    _check_pinning(plan, files)


def _random_plan(seed: int):
    """A random fleet plan: 1-6 GPUs of two types over nodes of 4, some MIG-partitioned, 1-3 models per GPU or
    slice (any memory: the output does not re-check the formulation)."""
    import random

    from servopt.formulations.fleet.types import FleetGpu, FleetPlan

    rng = random.Random(seed)
    names = ["classifier", "langid", "detector"]
    gpus, placements = [], []
    for gpu_type in ("A100-80GB", "L4"):
        for index in sorted(rng.sample(range(12), rng.randint(0, 3))):
            layout = None
            if gpu_type == "A100-80GB" and rng.random() < 0.5:
                layout = tuple(rng.choice([("3g.40gb", "3g.40gb"), ("4g.40gb", "2g.20gb", "1g.10gb"),
                                           ("1g.10gb",) * 7]))
            gpus.append(FleetGpu(gpu_type, index, index // 4, layout))
            for slice_index in (range(len(layout)) if layout else [None]):
                if layout and rng.random() < 0.3:
                    continue  # an unused slice
                models = rng.sample(names, rng.randint(1, 3))
                for m in models:
                    others = tuple(x for x in models if x != m)
                    placements.append(placement(
                        m, gpu_type, index, rng.choice([1, 4, 8]), rng.randint(1, 3), rng.choice([5.0, 9.0]),
                        profile=layout[slice_index] if layout else None, slice_index=slice_index,
                        slowdown=1.0 + len(others), co_located=others))
    if not placements:
        gpus.append(FleetGpu("L4", 0, 0, None))
        placements.append(placement("langid", "L4", 0, 8, 1, 5.0))
    return FleetPlan(placements=tuple(placements), gpus=tuple(gpus), cost_per_hour=1.0, gpu_count=len(gpus),
                     objective=1.0)


@pytest.mark.parametrize("seed", range(25))
def test_random_plans_pin_every_placement(seed: int) -> None:
    from test_kserve import check_documents

    plan = _random_plan(seed)
    problem = replace(demo_problem(model_files=False), gpu_types=[
        replace(t, gpus_per_node=4) for t in demo_problem().gpu_types])
    _, files, _ = build_repository(problem, plan, kserve=True, storage_uri="s3://bucket/fleet")
    _check_pinning(plan, files)
    summary = json.loads(files["servopt.json"])
    used = {(p.gpu_type, p.gpu_index, p.slice_index) for p in plan.placements}
    whole_shared = {(p.gpu_type, p.gpu_index) for p in plan.placements if p.slice_index is None and p.co_located}
    nodes_shared = {(t, i // 4) for t, i in whole_shared}
    # a server per used GPU or slice, except co-located whole GPUs: one server per node and type
    assert len(summary["servers"]) == len(used) - len(whole_shared) + len(nodes_shared)
    docs = list(yaml.safe_load_all(files["kserve.yaml"]))
    check_documents(docs)
    for doc in docs:
        if doc["kind"] == "InferenceService":
            p = doc["spec"]["predictor"]
            assert ("scaleMetric" in p) == ("servopt.io/fixed-placement" not in doc["metadata"]["annotations"])


def _check_pinning(plan, files: dict[str, str]) -> None:
    summary = json.loads(files["servopt.json"])
    configs = _configs(files)
    servers = defaultdict(list)
    for row in summary["servers"]:
        servers[row["repository"]].append(row)
    # (model, type, gpu index, slice) -> (instances, batch) as the configs and servers.json say
    served: dict[tuple, tuple[int, int]] = {}
    for (repo, name), cfg in configs.items():
        model = name.split("_b")[0]
        rows = servers[repo]
        assert rows, f"repository {repo} has no server"
        for row in rows:
            for group in cfg.instance_group:
                assert group.kind == mc.ModelInstanceGroup.KIND_GPU
                assert len(group.gpus) == 1
                device = group.gpus[0]
                gpu_index = row["gpu_indices"][device]
                slice_index = row["mig"]["slice"] if row["mig"] else None
                key = (model, row["gpu_type"], gpu_index, slice_index)
                assert key not in served, key
                served[key] = (group.count, cfg.max_batch_size)
                if cfg.max_batch_size > 1:
                    assert list(cfg.dynamic_batching.preferred_batch_size) == [cfg.max_batch_size]
                else:  # batch 1: nothing to batch (as other plan kinds)
                    assert not cfg.HasField("dynamic_batching")
    planned = {(p.model, p.gpu_type, p.gpu_index, p.slice_index): (p.instances, p.batch_size)
               for p in plan.placements}
    assert served == planned


def test_layout_roles() -> None:
    _, files, _ = build_repository(demo_problem(model_files=False), demo_plan())
    summary = json.loads(files["servopt.json"])
    roles = {r["repository"]: r["role"] for r in summary["servers"]}
    counts = defaultdict(int)
    for r in summary["servers"]:
        counts[r["repository"]] += 1
    # exclusive L4 GPUs of the classifier: one repository, three servers on two nodes
    assert roles["classifier.L4.b8.k2"] == "replicas" and counts["classifier.L4.b8.k2"] == 3
    nodes = [(r["node"], r["gpus"]) for r in summary["servers"] if r["repository"] == "classifier.L4.b8.k2"]
    assert nodes == [(0, [0]), (0, [1]), (1, [0])]
    # co-located whole GPUs: one server per node and type
    assert roles["A100-80GB.node0"] == "shared" and roles["L4.node0"] == "shared"
    # MIG: every slice its own server, seen as device 0 through its MIG UUID
    for r in summary["servers"]:
        if r["mig"] is not None:
            assert r["env"]["CUDA_VISIBLE_DEVICES"].startswith("MIG-<UUID of GPU 0 slice ")
        else:
            assert r["env"]["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, r["gpus"]))
    assert roles["A100-80GB.node0.gpu0.slice1.2g.20gb"] == "mig"
    assert counts["classifier.A100-80GB.1g.10gb.b4.k1"] == 2
    # every server repository has its own servopt.json with its predictions
    for repo in counts:
        own = json.loads(files[f"{repo}/servopt.json"])
        assert own["repositories"][0]["path"] == "."
        assert {p["model"] for p in own["predictions"]["placements"]} == \
            {m["name"] for m in own["repositories"][0]["models"]}


def test_queue_delay_and_routing() -> None:
    plan = demo_plan()
    problem = demo_problem(model_files=False)
    _, files, _ = build_repository(problem, plan)
    configs = _configs(files)
    cfg = configs[("classifier.L4.b8.k2", "classifier")]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == queue_delay_us(9.0, 8) == 7875
    routing = json.loads(files["routing.json"])
    assert routing["headroom"] == 0.2
    for m in problem.models:
        route = routing["models"][m.name]
        planned = sum(p.capacity_rps for p in plan.placements if p.model == m.name)
        assert route["capacity_rps"] == pytest.approx(planned)
        assert route["capacity_rps"] >= m.rate_rps * 1.2  # the hand-built plan covers the rates with headroom
        assert sum(r["share"] for r in route["servers"]) == pytest.approx(1.0, abs=1e-5)
        assert sum(r["rate_share_rps"] for r in route["servers"]) == pytest.approx(m.rate_rps)


def test_mig_parted() -> None:
    plan = demo_plan()
    cfg = mig_parted_config(plan, demo_problem())
    assert cfg == {"version": "v1", "mig-configs": {"servopt-a100-80gb-node0": [
        {"devices": [0], "mig-enabled": True, "mig-devices": {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 2}},
        {"devices": [1], "mig-enabled": False}]}}
    no_mig = replace(plan, gpus=tuple(g for g in plan.gpus if not g.mig_layout),
                     placements=tuple(p for p in plan.placements if p.mig_profile is None))
    assert mig_parted_config(no_mig, demo_problem()) is None
    _, files, _ = build_repository(demo_problem(model_files=False), no_mig)
    assert "mig-parted.yaml" not in files and "MIG" not in files["README.md"]


def test_model_files_are_copied(tmp_path: Path) -> None:
    out = write_repository(demo_problem(), demo_plan(), tmp_path / "fleet")
    summary = json.loads((out / "servopt.json").read_text())
    assert summary["config_only"] is False
    for row in summary["repositories"]:
        for model in row["models"]:
            copied = out / row["path"] / model["name"] / "1" / "model.onnx"
            assert copied.read_bytes() == Path(model["model_file"]["source"]).read_bytes()


def test_refusals() -> None:
    plan = demo_plan()
    problem = demo_problem(model_files=False)
    stray = replace(plan, placements=plan.placements + (placement("classifier", "L4", 5, 8, 1, 9.0),))
    with pytest.raises(ValidationError, match="L4 GPU 5, which the plan's gpus do not list"):
        build_repository(problem, stray)
    wrong_slice = replace(plan, placements=plan.placements + (
        placement("detector", "A100-80GB", 0, 4, 1, 12.0, profile="7g.80gb", slice_index=0),))
    with pytest.raises(ValidationError, match="not in the GPU's layout"):
        build_repository(problem, wrong_slice)
    with pytest.raises(ValidationError, match="FleetPlan"):
        build_repository(problem, plan.to_dict())
    with pytest.raises(ValidationError, match="triton.models.nope"):
        build_repository(replace(problem, triton={"models": {"nope": {"backend": "python"}}}), plan)


# ---------------------------------------------------------------------------------------------------------------
# KServe


def _manifests(problem, plan, **kwargs) -> list[dict]:
    from test_kserve import check_documents

    _, files, _ = build_repository(problem, plan, kserve=kwargs.pop("kserve", True),
                                   storage_uri="gs://bucket/fleet", **kwargs)
    docs = list(yaml.safe_load_all(files["kserve.yaml"]))
    check_documents(docs)  # servopt's JSON schema of KServe objects, plus the rules a schema cannot state
    return docs


def test_kserve_resources_and_autoscaling() -> None:
    problem = demo_problem(model_files=False)
    plan = demo_plan()
    docs = _manifests(problem, plan)
    isvc = {d["spec"]["predictor"]["model"]["storageUri"].rsplit("/", 1)[1]: d for d in docs
            if d["kind"] == "InferenceService"}
    assert len(isvc) == 7  # one per repository
    rep = isvc["classifier.L4.b8.k2"]["spec"]["predictor"]
    per_replica = 2 * 1000.0 * 8 / 9.0
    assert (rep["minReplicas"], rep["maxReplicas"], rep["scaleMetric"]) == (3, 6, "rps")
    # Knative aims at scaleTarget x utilization per pod (default utilization 70 %): exactly capacity / 1.2 here
    utilization = "autoscaling.knative.dev/target-utilization-percentage"
    annotations = isvc["classifier.L4.b8.k2"]["metadata"]["annotations"]
    assert rep["scaleTarget"] == math.ceil(per_replica / 1.2) == 1482
    assert annotations[utilization] == "99.965"
    assert 1482 * 0.99965 == pytest.approx(per_replica / 1.2, abs=1e-3)
    assert rep["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert rep["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    mig = isvc["classifier.A100-80GB.1g.10gb.b4.k1"]["spec"]["predictor"]
    assert mig["model"]["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "1"
    assert "nvidia.com/gpu" not in mig["model"]["resources"]["limits"]
    assert (mig["minReplicas"], mig["maxReplicas"], mig["scaleTarget"]) == (2, 4, math.ceil(1000 * 4 / 12.0 / 1.2))
    mig_utilization = float(isvc["classifier.A100-80GB.1g.10gb.b4.k1"]["metadata"]["annotations"][utilization])
    assert mig["scaleTarget"] * mig_utilization / 100 == pytest.approx(1000 * 4 / 12.0 / 1.2, abs=1e-3)
    for path in ("A100-80GB.node0", "L4.node0", "A100-80GB.node0.gpu0.slice1.2g.20gb"):
        doc = isvc[path]
        fixed = doc["spec"]["predictor"]
        assert fixed["minReplicas"] == fixed["maxReplicas"] == 1 and "scaleMetric" not in fixed
        assert utilization not in doc["metadata"]["annotations"]
        assert "co-located models" in doc["metadata"]["annotations"]["servopt.io/fixed-placement"]
    assert isvc["L4.node0"]["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # the classifier is served by four services: a Splitter with their capacity shares
    graphs = {d["metadata"]["labels"]["servopt.io/model"]: d for d in docs if d["kind"] == "InferenceGraph"}
    assert set(graphs) == {"classifier", "langid", "detector"}
    steps = graphs["classifier"]["spec"]["nodes"]["root"]["steps"]
    assert len(steps) == 4 and sum(s["weight"] for s in steps) == 100


def test_kserve_max_replicas_factor() -> None:
    problem = replace(demo_problem(model_files=False), triton={"kserve": {"max_replicas_factor": 1.5}})
    docs = _manifests(problem, demo_plan())
    rep = next(d for d in docs if d["metadata"]["name"].startswith("fleet-demo-classifier-l4"))["spec"]["predictor"]
    assert (rep["minReplicas"], rep["maxReplicas"]) == (3, 5)
    with pytest.raises(ValidationError, match="max_replicas_factor"):
        _manifests(replace(problem, triton={"kserve": {"max_replicas_factor": 0.5}}), demo_plan())


# ---------------------------------------------------------------------------------------------------------------
# verification


def _point(model: str, rps: float, batch_ms: float, p99_ms: float = 10.0):
    from servopt.measure.loadgen import LoadPoint

    return LoadPoint(model=model, batch_size=8, concurrency=2, request_rate=None, throughput_rps=rps,
                     latency_p50_ms=p99_ms / 2, latency_p90_ms=p99_ms, latency_p99_ms=p99_ms,
                     latency_avg_ms=p99_ms / 2, server_queue_ms=0.1, server_compute_ms=batch_ms, requests=100,
                     windows=3, stable=True, throughput_spread=0.01, p99_spread=0.01, server_batch_avg=8.0)


def test_verify_expectations_per_server(tmp_path: Path) -> None:
    from servopt.serving import verify

    out = write_repository(demo_problem(model_files=False), demo_plan(), tmp_path / "fleet")
    whole = verify.expectations(verify.load_summary(out), out)
    assert len(whole) == 10  # one per model config of every repository
    one = out / "classifier.L4.b8.k2"
    [e] = verify.expectations(verify.load_summary(one), one)
    assert (e.repository, e.model, e.instances, e.batch_size) == (".", "classifier", 2, 8)
    assert e.throughput_rps == pytest.approx(2 * 8000 / 9.0) and e.batch_latency_ms == 9.0
    # three L4 replicas and three other servers carry the classifier's 3000 rps in proportion to capacity
    assert e.rate_share_rps == pytest.approx(3000 * (16000 / 9) / 10800)
    assert e.latency_slo_ms == 50.0
    [capped] = verify.expectations(verify.load_summary(one), one, served_instances=1)
    assert capped.throughput_rps == pytest.approx(8000 / 9.0)
    assert capped.rate_share_rps == pytest.approx(e.rate_share_rps / 2)
    # the shared A100 node: the classifier on GPU 0 (2 instances) and langid (1), each its own prediction
    shared = out / "A100-80GB.node0"
    got = {x.model: (x.instances, round(x.throughput_rps)) for x in verify.expectations(verify.load_summary(shared),
                                                                                        shared)}
    assert got == {"classifier": (2, 4000), "langid": (1, 1600)}
    # a mean-SLO model is not held to a p99 bound
    lang = out / "langid.A100-80GB.3g.40gb.b8.k2"
    assert verify.expectations(verify.load_summary(lang), lang)[0].latency_slo_ms is None


def test_verify_holds_only_when_the_rate_share_is_carried(tmp_path: Path) -> None:
    from servopt.serving import verify

    out = write_repository(demo_problem(model_files=False), demo_plan(), tmp_path / "fleet")
    one = out / "classifier.L4.b8.k2"
    summary = verify.load_summary(one)
    good = verify.verify_plan(summary, one, lambda e: _point(e.model, 1700.0, 9.5))
    assert good.holds and good.checks[0].covers_rate_share
    slow = verify.verify_plan(summary, one, lambda e: _point(e.model, 1200.0, 9.5))  # -32 % of capacity
    assert not slow.holds and slow.checks[0].covers_rate_share  # 1200 still carries the 493.8 rps share
    # a wide tolerance forgives the capacity, never the share of the rate
    assert verify.verify_plan(summary, one, lambda e: _point(e.model, 600.0, 9.5), tolerance=0.9).holds
    short = verify.verify_plan(summary, one, lambda e: _point(e.model, 450.0, 9.5), tolerance=0.9)
    assert not short.holds and short.checks[0].covers_rate_share is False
    assert short.to_dict()["models"][0]["covers_rate_share"] is False
    assert "rate share" in short.to_table() and "493.8 NOT carried" in short.to_table()


def test_standin_plan_timings(tmp_path: Path) -> None:
    from servopt.serving import verify

    out = write_repository(demo_problem(model_files=False), demo_plan(), tmp_path / "fleet")
    shared = out / "L4.node0"
    expected = verify.expectations(verify.load_summary(shared), shared)
    timings = {m: t for (_, m), t in verify.standin_timings(expected).items()}
    assert timings == {"detector": (0.0, 30.0 / 4), "langid": (0.0, 16.0 / 4)}
    verify.make_standin_copy(shared, tmp_path / "standin", base_ms=0, per_item_ms=0, timings=timings)
    cfg = text_format.Parse((tmp_path / "standin" / "detector" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.parameters["servopt_per_item_ms"].string_value == "7.5"
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU and cfg.backend == "python"


@pytest.mark.triton
def test_real_server_serves_every_fleet_model_and_verifies_one(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Every model of every server repository READY on a real tritonserver (CPU, Python backend running the
    ONNX files), one inference each; then ``servopt verify`` on one server's repository with plan-timed
    stand-ins."""
    import sys
    import time

    from servopt.cli import main
    from servopt.testing.triton_env import TritonSetupError, ensure_env
    from servopt.testing.triton_server import TritonCheckError, check_repositories, find_repositories

    try:
        env = ensure_env()
    except TritonSetupError as exc:
        pytest.fail(f"could not set up the tritonserver environment:\n{exc}", pytrace=False)
    started = time.monotonic()
    out = write_repository(demo_problem(), demo_plan(), tmp_path / "fleet", triton_backend="python")
    repos = find_repositories(out)
    assert len(repos) == 7
    try:
        report = check_repositories(repos, env=env, workdir=tmp_path / "server", max_instances=1,
                                    unique_names=True)
    except TritonCheckError as exc:
        print(exc.log, file=sys.stderr)
        pytest.fail(str(exc), pytrace=False)
    loaded = (f"\nfleet: {report.repositories} repositories, {report.models} models READY={report.ready}, "
          f"{len(report.inferences)} inferences, server up after {report.startup_s:.1f} s, "
          f"{report.total_s:.1f} s in all ({time.monotonic() - started:.1f} s with writing)")
    loaded += f"; inferred: {', '.join(sorted(report.inferences))}"
    assert report.models == 10 and report.ready == report.models and len(report.inferences) == report.models
    capsys.readouterr()
    one = out / "langid.A100-80GB.3g.40gb.b8.k2"
    code = main(["verify", str(one), "--start", "--standin", "plan", "--max-instances", "1", "--window", "0.8",
                 "--max-windows", "5", "--stability", "0.25", "--json"])
    result = json.loads(capsys.readouterr().out)
    print(loaded, "\nverify:", json.dumps(result["models"][0]), "holds:", result["holds"])
    assert code == (0 if result["holds"] else 3)
    [m] = result["models"]
    assert m["expected"]["instances"] == 1 and m["expected"]["rate_share_rps"] > 0
    # the stand-in sleeps the plan's batch latency: Triton's compute time per batch is close to it
    assert 0.5 < m["measured"]["server_compute_ms"] / m["expected"]["batch_latency_ms"] < 3
    assert m["measured"]["server_batch_avg"] == pytest.approx(8)


# ---------------------------------------------------------------------------------------------------------------
# the shipped example, through servopt solve --out


FLEET_EXAMPLES = ("fleet_mixed", "fleet_shared")


def _example(tmp_path: Path, name: str = "fleet_mixed") -> Path:
    from servopt.cli import main

    out = tmp_path / name
    assert main(["solve", str(Path(__file__).resolve().parents[1] / "examples" / f"{name}.yaml"), "--out",
                 str(out), "--kserve", "--storage-uri", "gs://bucket/fleet", "--triton-backend", "python"]) == 0
    return out


@pytest.mark.parametrize("name", FLEET_EXAMPLES)
def test_example_solves_to_deployable_repositories(tmp_path: Path, name: str) -> None:
    from test_kserve import check_documents

    import servopt

    out = _example(tmp_path, name)
    summary = json.loads((out / "servopt.json").read_text())
    assert summary["problem"] == "fleet" and summary["config_only"] is False
    assert summary["plan"]["proven_optimal"] and summary["plan"]["gap"] == 0
    problem = servopt.load_problem(Path(__file__).resolve().parents[1] / "examples" / f"{name}.yaml")
    assert {m["fleet_model"] for m in summary["predictions"]["placements"]} == {m.name for m in problem.models}
    routing = json.loads((out / "routing.json").read_text())
    for m in problem.models:
        assert routing["models"][m.name]["capacity_rps"] >= m.rate_rps * (1 + problem.headroom) - 1e-6
    check_documents(list(yaml.safe_load_all((out / "kserve.yaml").read_text())))


@pytest.mark.triton
@pytest.mark.parametrize("name", FLEET_EXAMPLES)
def test_example_loads_on_a_real_server(tmp_path: Path, name: str) -> None:
    import sys

    from servopt.testing.triton_env import ensure_env
    from servopt.testing.triton_server import TritonCheckError, check_repositories, find_repositories

    out = _example(tmp_path, name)
    repos = find_repositories(out)
    try:
        report = check_repositories(repos, env=ensure_env(), workdir=tmp_path / "server", max_instances=1,
                                    unique_names=True)
    except TritonCheckError as exc:
        print(exc.log, file=sys.stderr)
        pytest.fail(str(exc), pytrace=False)
    print(f"\n{name}: {report.repositories} repositories, {report.models} models READY={report.ready}, "
          f"{len(report.inferences)} inferences, up after {report.startup_s:.1f} s, {report.total_s:.1f} s in all")
    summary = json.loads((out / "servopt.json").read_text())
    assert len(repos) == len(summary["repositories"])
    served = sum(len(r["models"]) for r in summary["repositories"])
    assert report.ready == report.models == len(report.inferences) == served


@pytest.mark.triton
def test_fleet_shared_colocated_server_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/fleet_shared.yaml: the co-located L4 server (two models on one GPU, each at the slowdown the plan
    priced in) runs on the CPU tritonserver with plan-timed stand-ins; verify measures both models against their
    own predictions and rate shares."""
    from servopt.cli import main

    out = _example(tmp_path, "fleet_shared")
    summary = json.loads((out / "servopt.json").read_text())
    shared = [s for s in summary["servers"] if s["role"] == "shared"]
    assert shared, "the optimum of fleet_shared co-locates models on a whole GPU"
    repo = out / shared[0]["repository"]
    capsys.readouterr()
    code = main(["verify", str(repo), "--start", "--standin", "plan", "--window", "0.8", "--max-windows", "5",
                 "--stability", "0.25", "--json"])
    result = json.loads(capsys.readouterr().out)
    print("\nfleet_shared", shared[0]["repository"], json.dumps(result["models"]), "holds:", result["holds"])
    assert code == (0 if result["holds"] else 3)
    placements = [p for p in summary["plan"]["placements"] if p["gpu_type"] == shared[0]["gpu_type"]
                  and p["gpu_index"] in shared[0]["gpu_indices"]]
    assert len(result["models"]) == len(placements) >= 2 and all(p["slowdown"] > 1 for p in placements)
    for m in result["models"]:
        assert m["expected"]["rate_share_rps"] > 0
        # the stand-in sleeps the plan's batch latency (after the co-location slowdown)
        assert 0.5 < m["measured"]["server_compute_ms"] / m["expected"]["batch_latency_ms"] < 3
