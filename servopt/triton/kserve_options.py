"""Options of the KServe manifests: the ``triton.kserve`` section of a problem file and the CLI's ``--kserve-*``.

Every value is checked when it is read (names, quantities: :mod:`servopt.triton.k8s_names`), so a bad value is
refused with the file and key (or the flag) before anything is solved or written. docs/triton.md lists the keys
and their defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from servopt.exceptions import ValidationError
from servopt.fields import Fields
from servopt.triton.k8s_names import check_dns_label, check_label_value, check_quantity

__all__ = ["DEFAULT_RUNTIME_VERSION", "GPU_PRODUCTS", "KServeSpec", "parse_kserve_section", "with_overrides"]

#: Triton 2.51 is NGC release 24.10: the server servopt checks repositories against
DEFAULT_RUNTIME_VERSION = "24.10-py3"

#: hardware name -> ``nvidia.com/gpu.product`` value that NVIDIA's GPU feature discovery gives such nodes; only
#: names with one product are listed (an A100-80GB is SXM4 or PCIe): set ``gpu_products`` for the others
GPU_PRODUCTS: dict[str, str] = {
    "T4": "Tesla-T4",
    "A10": "NVIDIA-A10",
    "A10G": "NVIDIA-A10G",
    "A40": "NVIDIA-A40",
    "L4": "NVIDIA-L4",
    "L40S": "NVIDIA-L40S",
}

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

#: keys the CLI may override (``--kserve-<key>``)
CLI_KEYS = ("namespace", "cpu", "memory")


@dataclass(frozen=True)
class KServeSpec:
    """The validated ``triton.kserve`` section (every field optional).

    ``cpu`` and ``memory`` are per pod and override the per-GPU / per-core defaults; CPU pods always get the
    plan's cores. ``where`` maps a field to the key or flag that set it (for later errors).
    """

    namespace: str | None = None
    runtime_version: str = DEFAULT_RUNTIME_VERSION
    memory: str | None = None
    cpu: str | None = None
    cpu_per_gpu: str = "2"
    memory_per_gpu: str = "8Gi"
    memory_per_core: str = "1Gi"
    gpu_label: str = "nvidia.com/gpu.product"
    gpu_products: Mapping[str, str] = field(default_factory=dict)
    #: fleet plans: an autoscaled model's ``maxReplicas`` = ceil(factor x the plan's replicas)
    max_replicas_factor: float = 2.0
    where: Mapping[str, str] = field(default_factory=dict)

    def product(self, hardware: str) -> str:
        """The node label value for a hardware type: ``gpu_products``, else :data:`GPU_PRODUCTS`, else the
        name itself (made a label value)."""
        from servopt.triton.k8s_names import label_value

        return self.gpu_products.get(hardware) or GPU_PRODUCTS.get(hardware) or label_value(hardware)


def _check(key: str, value: Any, where: str) -> Any:
    if key == "namespace":
        return check_dns_label(value, where)
    if key == "runtime_version":
        if not isinstance(value, str) or not _TAG.match(value):
            raise ValidationError(f"{where}: {value!r} is not a container image tag (e.g. 24.10-py3)")
        return value
    if key in ("memory", "memory_per_gpu", "memory_per_core"):
        return check_quantity(value, where, memory=True)
    if key in ("cpu", "cpu_per_gpu"):
        return check_quantity(value, where, memory=False)
    if key == "gpu_label":
        if not isinstance(value, str) or len(value) > 253 + 64 or not _LABEL_KEY.match(value):
            raise ValidationError(f"{where}: {value!r} is not a Kubernetes label key (e.g. nvidia.com/gpu.product)")
        return value
    raise ValidationError(f"{where}: unknown KServe option")


def parse_kserve_section(f: Fields) -> KServeSpec:
    """Read ``triton.kserve`` (``f`` is its :class:`Fields`); unknown keys are refused.

    >>> spec = parse_kserve_section(Fields({"memory": "8Gi", "gpu_products": {"A100": "NVIDIA-A100-SXM4-40GB"}},
    ...                                    "p.yaml", "triton.kserve"))
    >>> spec.memory, spec.product("A100"), spec.product("T4")
    ('8Gi', 'NVIDIA-A100-SXM4-40GB', 'Tesla-T4')
    """
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for key in ("namespace", "runtime_version", "memory", "cpu", "cpu_per_gpu", "memory_per_gpu",
                "memory_per_core", "gpu_label"):
        raw = f.raw(key, None)
        if raw is None:
            continue
        label = f"{f.source}: key '{f.prefix}.{key}'"
        values[key] = _check(key, str(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool)
                             and key not in ("namespace", "runtime_version", "gpu_label") else raw, label)
        where[key] = label
    factor = f.number("max_replicas_factor", None, minimum=1.0)
    if factor is not None:
        values["max_replicas_factor"] = float(factor)
        where["max_replicas_factor"] = f"{f.source}: key '{f.prefix}.max_replicas_factor'"
    products = f.mapping("gpu_products", None)
    if products is not None:
        checked = {}
        for hw, value in products.items():
            checked[str(hw)] = check_label_value(value, f"{f.source}: key '{f.prefix}.gpu_products.{hw}'")
        values["gpu_products"] = checked
    f.done()
    return KServeSpec(**values, where=where)


def with_overrides(spec: KServeSpec, overrides: Mapping[str, Any] | None) -> KServeSpec:
    """``spec`` with the CLI's ``--kserve-<key>`` values (:data:`CLI_KEYS`) applied, each checked."""
    if not overrides:
        return spec
    values: dict[str, Any] = {}
    where = dict(spec.where)
    for key, value in overrides.items():
        flag = f"--kserve-{key.replace('_', '-')}"
        if key not in CLI_KEYS:
            raise ValidationError(f"{flag}: unknown KServe option (known: {', '.join(CLI_KEYS)})")
        if value is None:
            continue
        values[key] = _check(key, value, flag)
        where[key] = flag
    return replace(spec, **values, where=where)
