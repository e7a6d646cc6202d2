"""A fleet's start commands: every Triton server on one node listens on its own ports (docs/fleet-deployment.md).

tritonserver listens on HTTP 8000, gRPC 8001 and metrics 8002 unless told otherwise, and only the first server on a
machine binds them. Ports are read here from the command lines as tritonserver would (a missing flag is its
default), so a command without the flags counts as the defaults.
"""

from __future__ import annotations

import json
import shlex
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("servopt.formulations.fleet.types")
from _fleet_cases import demo_plan, demo_problem  # noqa: E402

from servopt.cli import main  # noqa: E402
from servopt.triton import build_repository  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TRITON_DEFAULTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


def _ports(command: str) -> dict[str, int]:
    """The ports a ``CUDA_VISIBLE_DEVICES=... tritonserver ...`` line listens on (tritonserver's defaults if the
    flags are absent)."""
    words = shlex.split(command)
    assert "tritonserver" in words, command
    ports = dict(TRITON_DEFAULTS)
    for word in words[words.index("tritonserver") + 1:]:
        for kind in ports:
            if word.startswith(f"--{kind}-port="):
                ports[kind] = int(word.split("=", 1)[1])
    return ports


def _check_distinct(servers: list[dict]) -> int:
    """No two servers on one node (GPU type, node) share a port; returns the most servers on one node."""
    taken: dict[tuple[str, int], dict[int, str]] = defaultdict(dict)
    for row in servers:
        where = f"{row['repository']} server {row['server']}"
        for kind, port in _ports(row["command"]).items():
            node = taken[(row["gpu_type"], row["node"])]
            assert port not in node, (f"{row['gpu_type']} node {row['node']}: {where} and {node[port]} both "
                                      f"listen on {port} ({kind})")
            node[port] = where
    return max(len(v) // 3 for v in taken.values())


@pytest.fixture(scope="module")
def fleet_shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ports") / "fs"
    assert main(["solve", str(ROOT / "examples" / "fleet_shared.yaml"), "--out", str(out), "--kserve",
                 "--storage-uri", "gs://b/fs"]) == 0
    return out


def test_fleet_shared_servers_on_one_node_do_not_share_ports(fleet_shared: Path) -> None:
    """The reviewer's run: 13 servers on node 0's A100 (MIG slices) and 4 on the L4 all had 8000/8001/8002."""
    summary = json.loads((fleet_shared / "servopt.json").read_text())
    assert _check_distinct(summary["servers"]) == 13


def test_readme_commands_are_the_recorded_commands(fleet_shared: Path) -> None:
    summary = json.loads((fleet_shared / "servopt.json").read_text())
    readme = (fleet_shared / "README.md").read_text()
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert block == [row["command"] for row in summary["servers"]]
    for row in summary["servers"]:
        assert _ports(row["command"]) == row["ports"]
        p = row["ports"]
        assert f"| {row['repository']} | {row['server']} | " in readme
        assert f"| {p['http']} | {p['grpc']} | {p['metrics']} |" in readme


def test_ports_are_blocks_of_three_from_tritons_defaults_per_node() -> None:
    """The k-th server of a node (in the order servers lists them) gets 8000 + 3k, 8001 + 3k, 8002 + 3k."""
    _, files, _ = build_repository(demo_problem(model_files=False), demo_plan())
    summary = json.loads(files["servopt.json"])
    seen: dict[tuple[str, int], int] = defaultdict(int)
    for row in summary["servers"]:
        k = seen[(row["gpu_type"], row["node"])]
        seen[(row["gpu_type"], row["node"])] += 1
        expected = {"http": 8000 + 3 * k, "grpc": 8001 + 3 * k, "metrics": 8002 + 3 * k}
        assert _ports(row["command"]) == expected, row["command"]
        assert row["ports"] == expected
    assert {k for k, n in seen.items() if n > 1}, "the demo plan has a node with several servers"
    # each server repository's own servopt.json (what `servopt verify DIR/<repository>` reads) agrees
    for rel, text in files.items():
        if rel.endswith("/servopt.json"):
            own = json.loads(text)["servers"]
            assert own and all(r in summary["servers"] for r in own)
    from servopt.triton.fleet import server_ports

    assert [server_ports(k) for k in (0, 4)] == [TRITON_DEFAULTS, {"http": 8012, "grpc": 8013, "metrics": 8014}]


def test_random_plans_give_every_server_of_a_node_its_own_ports() -> None:
    """test_fleet_output's 25 random plans (nodes of 4 GPUs, MIG layouts, co-location)."""
    from dataclasses import replace

    from test_fleet_output import _random_plan

    problem = replace(demo_problem(model_files=False), gpu_types=[
        replace(t, gpus_per_node=4) for t in demo_problem().gpu_types])
    most = 0
    for seed in range(25):
        _, files, _ = build_repository(problem, _random_plan(seed))
        most = max(most, _check_distinct(json.loads(files["servopt.json"])["servers"]))
    assert most >= 5  # some node runs several servers (up to 7 MIG slices of one GPU, more GPUs)
