"""Fleet plans → one Triton model repository per server (docs/fleet-deployment.md).

A :class:`~servopt.formulations.fleet.types.FleetPlan` places models on physical GPUs (or MIG slices) of several
types, several models per GPU when they fit. It becomes a set of Triton servers, each with its own repository:

* **replicas** — a whole GPU (or a MIG slice) that runs one model alone: every such GPU with the same model, type,
  profile, batch size and instance count serves the same repository (``<model>.<type>[.<profile>].b<B>.k<K>``),
  one server per GPU. These are the servers an autoscaler may add or remove (KServe ``minReplicas`` = the plan's).
* **shared** — whole GPUs that run co-located models: one server per node and GPU type (``<type>.node<N>``), each
  model's ``instance_group`` pinned to its GPUs (``count`` = the planned instances on that GPU).
* **mig** — a MIG slice that runs co-located models: its own server (``<type>.node<N>.gpu<I>.slice<J>.<profile>``).

GPU indices in a config are positions in the server's visible devices: each server is started with
``CUDA_VISIBLE_DEVICES`` set to its node-local GPU indices (``servers`` in ``servopt.json`` lists them), and a MIG
slice is seen as device 0 once ``CUDA_VISIBLE_DEVICES=MIG-<UUID>`` (a placeholder to fill from ``nvidia-smi -L``;
``README.md`` has the commands). Kubernetes renumbers a pod's GPUs the same way, so one repository serves both.

Servers on one machine need their own ports (Triton's defaults, 8000/8001/8002, bind once per machine): the
``k``-th server of a node (a GPU type's node number, ``k`` counted from 0 in the order ``servers`` and
``README.md`` list them) listens on HTTP ``8000 + 3k``, gRPC ``8001 + 3k`` and metrics ``8002 + 3k``
(:func:`server_ports`); its command line says so and ``servers[].ports`` records it. Pods on Kubernetes have their
own network and keep the runtime's ports.

Besides the repositories: ``routing.json`` (which server serves which model, its capacity and share of the model's
rate), ``mig-parted.yaml`` (NVIDIA mig-parted configs for the planned MIG layouts, one per node), ``README.md``
(how to start every server), ``servopt.json`` with ``servers`` and per-placement ``predictions`` (what ``servopt
verify`` measures), and a ``servopt.json`` inside every server repository so ``servopt verify`` runs on one server.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from servopt.exceptions import ValidationError
from servopt.formulations.fleet.types import FleetPlan
from servopt.triton.build import (ModelEntry, RepositoryLayout, TritonDeployment, _artifact, _base_name,
                                  _deployment_of, _entry, _io, _kind, _model, _tensor_messages, default_io)
from servopt.triton.spec import check_model_keys, safe_name

__all__ = ["queue_delay_us", "mig_parted_config", "server_ports", "MIG_PLACEHOLDER", "BASE_PORT"]

#: what stands for a MIG slice's UUID in CUDA_VISIBLE_DEVICES until ``nvidia-smi -L`` gives the real one
MIG_PLACEHOLDER = "MIG-<UUID of GPU {gpu} slice {slice} ({profile}) from nvidia-smi -L>"
#: the first server of a node listens on Triton's default ports: HTTP 8000, gRPC 8001, metrics 8002
BASE_PORT = 8000


def server_ports(k: int) -> dict[str, int]:
    """The ports of the ``k``-th server (from 0) of a node: a block of three from :data:`BASE_PORT`.

    >>> server_ports(0), server_ports(2)
    ({'http': 8000, 'grpc': 8001, 'metrics': 8002}, {'http': 8006, 'grpc': 8007, 'metrics': 8008})
    """
    if k < 0:
        raise ValueError(f"a server's position on its node is >= 0, got {k}")
    first = BASE_PORT + 3 * k
    return {"http": first, "grpc": first + 1, "metrics": first + 2}


def queue_delay_us(latency_ms: float, batch_size: int) -> int:
    """The dynamic batcher's delay that lets single-image clients fill the planned batch (as ``GPUPlan``):
    at the planned rate ``b`` requests arrive within (b - 1) / b of one batch latency.

    >>> queue_delay_us(4.0, 8), queue_delay_us(2.0, 1)
    (3500, 0)
    """
    return int(math.ceil(1000.0 * float(latency_ms) * (batch_size - 1) / batch_size))


@dataclass
class _Server:
    """One Triton server of the fleet: where it runs and what its repository serves."""

    node: int
    gpus: tuple[int, ...]                 # node-local indices of its GPUs
    gpu_indices: tuple[int, ...]          # the plan's indices (among the used GPUs of the type)
    mig: dict[str, Any] | None = None     # {"gpu": local index, "slice": j, "profile": p}


@dataclass
class _Repo:
    path: str
    role: str                             # replicas | shared | mig
    gpu_type: str
    mig_profile: str | None
    # per GPU (or slice) of ONE server, in device order: the placements on it
    devices: list[list[Any]]
    servers: list[_Server] = field(default_factory=list)


def _gpus_per_node(problem: Any, gpu_type: str, default: int) -> int:
    for t in getattr(problem, "gpu_types", ()) or ():
        if getattr(t, "name", None) == gpu_type:
            value = getattr(t, "gpus_per_node", None)
            return int(value) if value else default
    return default


def _units(plan: FleetPlan) -> tuple[dict[tuple[str, int], Any], dict[tuple[str, int, int | None], list[Any]]]:
    """The plan's GPUs by (type, index), and its placements by GPU or slice, checked against each other."""
    gpus = {(g.gpu_type, int(g.gpu_index)): g for g in plan.gpus}
    units: dict[tuple[str, int, int | None], list[Any]] = defaultdict(list)
    for p in plan.placements:
        gpu = gpus.get((p.gpu_type, int(p.gpu_index)))
        if gpu is None:
            raise ValidationError(f"fleet plan: model {p.model!r} is placed on {p.gpu_type} GPU {p.gpu_index}, "
                                  "which the plan's gpus do not list")
        layout = tuple(gpu.mig_layout) if gpu.mig_layout else None
        if (p.mig_profile is None) != (layout is None):
            raise ValidationError(f"fleet plan: model {p.model!r} on {p.gpu_type} GPU {p.gpu_index}: "
                                  f"MIG profile {p.mig_profile!r} but the GPU's layout is {layout}")
        if layout is not None and (p.slice_index is None or not 0 <= p.slice_index < len(layout)
                                   or layout[p.slice_index] != p.mig_profile):
            raise ValidationError(f"fleet plan: model {p.model!r} on {p.gpu_type} GPU {p.gpu_index}: slice "
                                  f"{p.slice_index} ({p.mig_profile}) is not in the GPU's layout {list(layout)}")
        if int(p.instances) < 1 or int(p.batch_size) < 1:
            raise ValidationError(f"fleet plan: model {p.model!r} on {p.gpu_type} GPU {p.gpu_index}: instances "
                                  f"{p.instances} and batch size {p.batch_size} must be >= 1")
        units[(p.gpu_type, int(p.gpu_index), p.slice_index)].append(p)
    return gpus, units


def _plan_servers(plan: FleetPlan, problem: Any, per_node_default: int) -> list[_Repo]:
    """Group the plan's GPUs and slices into repositories and their servers (see the module docstring)."""
    gpus, units = _units(plan)
    repos: dict[str, _Repo] = {}
    replica_keys: dict[tuple[Any, ...], str] = {}
    for (gpu_type, index, slice_index), placements in sorted(units.items(), key=lambda kv: (
            kv[0][0], kv[0][1], -1 if kv[0][2] is None else kv[0][2])):
        gpu = gpus[(gpu_type, index)]
        per_node = _gpus_per_node(problem, gpu_type, per_node_default)
        node = int(getattr(gpu, "node", index // per_node))
        local = index % per_node
        placements = sorted(placements, key=lambda p: p.model)
        profile = placements[0].mig_profile
        mig = None if slice_index is None else {"gpu": local, "slice": int(slice_index), "profile": profile}
        server = _Server(node=node, gpus=(local,), gpu_indices=(index,), mig=mig)
        if len(placements) == 1:
            p = placements[0]
            key = (p.model, gpu_type, profile, int(p.batch_size), int(p.instances))
            if key not in replica_keys:
                parts = [p.model, gpu_type] + ([profile] if profile else []) + [f"b{p.batch_size}",
                                                                                f"k{p.instances}"]
                replica_keys[key] = ".".join(safe_name(x) for x in parts)
            path = replica_keys[key]
            repo = repos.setdefault(path, _Repo(path, "replicas", gpu_type, profile, [placements]))
            repo.servers.append(server)
        elif slice_index is not None:
            path = ".".join(safe_name(x) for x in (gpu_type, f"node{node}", f"gpu{local}", f"slice{slice_index}",
                                                   str(profile)))
            repos[path] = _Repo(path, "mig", gpu_type, profile, [placements], [server])
        else:
            path = f"{safe_name(gpu_type)}.node{node}"
            repo = repos.get(path)
            if repo is None:
                repo = repos[path] = _Repo(path, "shared", gpu_type, None, [], [_Server(node, (), ())])
            repo.devices.append(placements)
            only = repo.servers[0]
            repo.servers[0] = _Server(node, only.gpus + (local,), only.gpu_indices + (index,))
    return list(repos.values())


def _model_entries(ctx: Any, repo: _Repo, problem_models: dict[str, Any]) -> tuple[list[ModelEntry], list[dict]]:
    """The model configs of one repository and one prediction per config (what one server should sustain)."""
    by_model: dict[tuple[str, int], list[tuple[int, Any]]] = defaultdict(list)
    for device, placements in enumerate(repo.devices):
        for p in placements:
            by_model[(p.model, int(p.batch_size))].append((device, p))
    batches: dict[str, int] = defaultdict(int)
    for model, _ in by_model:
        batches[model] += 1
    entries, predictions = [], []
    default_in, default_out = default_io(ctx.input_size)
    for (model, batch), where in sorted(by_model.items()):
        name = safe_name(model) if batches[model] == 1 else f"{safe_name(model)}_b{batch}"
        source = problem_models.get(model)
        artifact = _artifact(ctx, getattr(source, "model_file", None))
        inputs, outputs, sources = _io(ctx, model, _tensor_messages(default_in, mc.ModelInput),
                                       _tensor_messages(default_out, mc.ModelOutput), artifact=artifact)
        latency = max(float(p.latency_ms) for _, p in where)
        delay = queue_delay_us(latency, batch)
        kind = _kind(ctx, "KIND_GPU")
        first_device, first = where[0]
        cfg, filename, files = _model(ctx, model, name, inputs, outputs, max_batch_size=batch, batch_size=batch,
                                      delay_us=delay, kind=kind, count=int(first.instances), gpus=[first_device],
                                      artifact=artifact)
        for device, p in where[1:]:  # one instance group per GPU: the plan's instances on each
            group = cfg.instance_group.add()
            group.CopyFrom(cfg.instance_group[0])
            group.count = int(p.instances)
            del group.gpus[:]
            if kind == "KIND_GPU":
                group.gpus.append(device)
        if kind != "KIND_GPU":  # a CPU kind: the same instances, no GPU list
            for group in cfg.instance_group:
                del group.gpus[:]
        capacity = sum(float(p.capacity_rps) for _, p in where)
        instances = sum(int(p.instances) for _, p in where)
        placed = [{"device": d, "gpu_index": p.gpu_index, "slice_index": p.slice_index, "instances": p.instances,
                   "capacity_rps": p.capacity_rps, "latency_ms": p.latency_ms, "memory_mb": p.memory_mb,
                   "slowdown": p.slowdown, "slowdown_source": p.slowdown_source, "co_located": list(p.co_located)}
                  for d, p in where]
        info = {"name": name, "model": model, "batch_size": batch, "instances": instances,
                "gpus": [d for d, _ in where], "placements": placed}
        entries.append(_entry(ctx, cfg, info, artifact, filename, files, sources))
        slo = getattr(source, "slo_ms", None)
        predictions.append({
            "repository": repo.path, "model": name, "fleet_model": model, "hardware": repo.gpu_type,
            "mig_profile": repo.mig_profile, "model_instances": instances, "batch_size": batch,
            "batch_latency_ms": latency, "throughput_rps": capacity, "queue_delay_ms": latency,
            "latency_ms": 2 * latency, "max_queue_delay_us": cfg.dynamic_batching.max_queue_delay_microseconds,
            "latency_slo_ms": float(slo) if slo is not None and getattr(source, "slo", "p99") == "p99" else None,
            "slo": getattr(source, "slo", None), "slo_ms": slo,
            "load": {"concurrency": 2 * instances, "request_batch_size": batch}})
    return entries, predictions


def mig_parted_config(plan: FleetPlan, problem: Any, per_node_default: int = 8) -> dict[str, Any] | None:
    """NVIDIA mig-parted's config (``version: v1``, ``mig-configs``): one named config per node and GPU type
    whose GPUs the plan partitions, listing each partitioned GPU's slice counts and the node's other used GPUs
    with MIG disabled. None when the plan uses no MIG."""
    nodes: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    if not any(g.mig_layout for g in plan.gpus):
        return None
    for g in sorted(plan.gpus, key=lambda g: (g.gpu_type, g.gpu_index)):
        per_node = _gpus_per_node(problem, g.gpu_type, per_node_default)
        local = int(g.gpu_index) % per_node
        if g.mig_layout:
            counts: dict[str, int] = {}
            for profile in g.mig_layout:
                counts[str(profile)] = counts.get(str(profile), 0) + 1
            item = {"devices": [local], "mig-enabled": True, "mig-devices": counts}
        else:
            item = {"devices": [local], "mig-enabled": False}
        nodes[(g.gpu_type, int(g.node))].append(item)
    configs = {}
    for (gpu_type, node), items in sorted(nodes.items()):
        if any(i["mig-enabled"] for i in items):
            configs[f"servopt-{safe_name(gpu_type).lower()}-node{node}"] = items
    return {"version": "v1", "mig-configs": configs}


def _server_rows(repos: list[_Repo]) -> list[dict[str, Any]]:
    """One row per server, in repository order; each server's ports are the next free block of its node."""
    rows = []
    on_node: dict[tuple[str, int], int] = defaultdict(int)
    for repo in repos:
        for i, s in enumerate(repo.servers):
            if s.mig is not None:
                visible = MIG_PLACEHOLDER.format(**s.mig)
            else:
                visible = ",".join(str(g) for g in s.gpus)
            ports = server_ports(on_node[(repo.gpu_type, s.node)])
            on_node[(repo.gpu_type, s.node)] += 1
            rows.append({"repository": repo.path, "server": i, "role": repo.role, "node": s.node,
                         "gpu_type": repo.gpu_type, "gpus": list(s.gpus), "gpu_indices": list(s.gpu_indices),
                         "mig": s.mig, "env": {"CUDA_VISIBLE_DEVICES": visible}, "ports": ports,
                         "command": (f"CUDA_VISIBLE_DEVICES='{visible}' tritonserver "
                                     f"--model-repository=$PWD/{repo.path} --http-port={ports['http']} "
                                     f"--grpc-port={ports['grpc']} --metrics-port={ports['metrics']}")})
    return rows


def _routing(problem: Any, repos: list[_Repo], predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model: its rate, and every server that serves it with its capacity and share of the rate."""
    rates = {str(m.name): float(getattr(m, "rate_rps", 0.0)) for m in getattr(problem, "models", ()) or ()}
    servers = {r.path: len(r.servers) for r in repos}
    routes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pred in predictions:
        for i in range(servers[pred["repository"]]):
            routes[pred["fleet_model"]].append({"repository": pred["repository"], "server": i,
                                                "model": pred["model"], "capacity_rps": pred["throughput_rps"]})
    out = {}
    for model, rows in sorted(routes.items()):
        total = sum(r["capacity_rps"] for r in rows)
        rate = rates.get(model)
        for r in rows:
            share = r["capacity_rps"] / total if total > 0 else 1 / len(rows)
            r["share"] = round(share, 6)
            r["rate_share_rps"] = None if rate is None else rate * share
        out[model] = {"rate_rps": rate, "capacity_rps": total, "servers": rows}
    return {"headroom": getattr(problem, "headroom", None), "models": out}


def _readme(name: str, rows: list[dict[str, Any]], mig: bool) -> str:
    lines = [f"# {name}: fleet deployment written by servopt", "",
             "One Triton server per line; start each on its node from this folder (docs/fleet-deployment.md).",
             "Servers on one node (a GPU type's node N) listen on their own ports: the k-th of the node (from 0, "
             "in this order) on HTTP 8000 + 3k, gRPC 8001 + 3k, metrics 8002 + 3k; on that node, `servopt verify "
             "<repository> --server 127.0.0.1:<gRPC>` measures a running one.", "",
             "| node | GPU type | repository | server | CUDA_VISIBLE_DEVICES | HTTP | gRPC | metrics |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['node']} | {r['gpu_type']} | {r['repository']} | {r['server']} | "
              f"`{r['env']['CUDA_VISIBLE_DEVICES']}` | {r['ports']['http']} | {r['ports']['grpc']} | "
              f"{r['ports']['metrics']} |" for r in rows]
    lines += ["", "Commands:", "", "```sh"] + [r["command"] for r in rows] + ["```"]
    if mig:
        lines += ["", "## MIG slices", "",
                  "Partition each node's GPUs as planned (mig-parted.yaml, one config per node), then read the "
                  "slices' UUIDs and put each in place of its `MIG-<UUID ...>` placeholder above:", "", "```sh",
                  "sudo nvidia-mig-parted apply -f mig-parted.yaml -c servopt-<type>-node<N>",
                  "# or by hand, per GPU: sudo nvidia-smi -i <gpu> -mig 1 && sudo nvidia-smi mig -i <gpu> "
                  "-cgi <profiles, comma-separated> -C",
                  "nvidia-smi -L   # lists MIG-<UUID> per slice of each GPU, in creation order", "```", "",
                  "A slice's server sees it as device 0 (`gpus: [0]` in its configs)."]
    return "\n".join(lines) + "\n"


@_deployment_of.register
def _fleet_deployment(plan: FleetPlan, ctx: Any) -> TritonDeployment:
    base = _base_name(ctx, "fleet")
    problem_models = {str(m.name): m for m in getattr(ctx.problem, "models", ()) or ()}
    planned = sorted({p.model for p in plan.placements})
    check_model_keys(ctx.spec, list(problem_models) or planned, "model")
    if not plan.placements:
        raise ValidationError("the fleet plan places no model: there is nothing to deploy")
    repos = _plan_servers(plan, ctx.problem, ctx.spec.gpus_per_node)
    layouts, predictions = [], []
    headroom = float(getattr(ctx.problem, "headroom", 0.0) or 0.0)
    rows = _server_rows(repos)
    for repo in repos:
        entries, preds = _model_entries(ctx, repo, problem_models)
        predictions.extend(preds)
        layout = RepositoryLayout(path=repo.path, models=entries, hardware=repo.gpu_type,
                                  gpus=len(repo.devices), replicas=len(repo.servers), mig_profile=repo.mig_profile)
        if repo.role == "replicas":
            layout.autoscale = {"per_replica_rps": preds[0]["throughput_rps"], "headroom": headroom}
        else:
            shared = sorted({p.model for placements in repo.devices for p in placements})
            where = "MIG slice" if repo.role == "mig" else "GPUs"
            layout.fixed_reason = (f"co-located models {', '.join(shared)} share {where}: each one's capacity "
                                   "depends on the others' slowdown, so the placement is fixed (no autoscaling)")
        layouts.append(layout)
    routing = _routing(ctx.problem, repos, predictions)
    shares = {(r["repository"], r["model"]): r["rate_share_rps"] for route in routing["models"].values()
              for r in route["servers"] if r["server"] == 0}
    for pred in predictions:  # every server of a repository carries the same share
        pred["rate_share_rps"] = shares.get((pred["repository"], pred["model"]))
    mig = mig_parted_config(plan, ctx.problem, ctx.spec.gpus_per_node)
    extra = {"README.md": _readme(base, rows, mig is not None)}
    if mig is not None:
        import yaml

        extra["mig-parted.yaml"] = yaml.safe_dump(mig, sort_keys=False)
    deployment = TritonDeployment(name=base, kind="fleet", repositories=layouts, routing=routing, extra_files=extra)
    deployment.summary_extra = {"servers": rows,
                                "predictions": {"kind": "fleet", "headroom": headroom, "placements": predictions}}
    for layout, repo in zip(layouts, repos):  # each server repository verifies on its own
        own = [dict(p, repository=".") for p in predictions if p["repository"] == repo.path]
        deployment.repository_summaries[repo.path] = {
            "fleet_repository": repo.path, "role": repo.role,
            "repositories": [{"path": ".", "hardware": repo.gpu_type, "gpus": layout.gpus, "cpu_cores": None,
                              "entry": None, "models": [m.info for m in layout.models]}],
            "servers": [r for r in rows if r["repository"] == repo.path],
            "predictions": {"kind": "fleet", "headroom": headroom, "placements": own}}
    return deployment

