"""Peak compute and memory bandwidth of common inference GPUs, from NVIDIA's public datasheets.

Used to carry a latency slope from one GPU to another (a model profiled on an A100 whose batch sweep on a T4 never
left the launch-overhead floor) and as hardware features. Values are dense (no sparsity) peaks of the SXM or
the standard board; FP16 is tensor-core FP16 with FP32 accumulate where the datasheet gives it, FP32 the
non-tensor rate.

=====  ==========  ==========  ============  =====================================================
name   FP16 TF/s   FP32 TF/s   memory GB/s   datasheet
=====  ==========  ==========  ============  =====================================================
A100   312         19.5        2039          A100 80GB SXM (40GB: 1555 GB/s)
H100   989         67          3350          H100 SXM5
H200   989         67          4800          H200 SXM
L4     121         30.3        300           L4 (242 TF/s FP16 with sparsity)
T4     65          8.1         320           T4
V100   125         15.7        900           V100 SXM2 (16 and 32 GB)
A40    149.7       37.4        696           A40 (299.4 with sparsity)
A10    125         31.2        600           A10 (250 with sparsity)
=====  ==========  ==========  ============  =====================================================

CPUs have no entry: :func:`hardware_spec` returns ``None`` for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["GPU_SPECS", "HardwareSpec", "hardware_spec"]


@dataclass(frozen=True)
class HardwareSpec:
    """Datasheet peaks of one GPU."""

    name: str
    fp16_tflops: float
    fp32_tflops: float
    memory_gbps: float


GPU_SPECS: dict[str, HardwareSpec] = {s.name: s for s in (
    HardwareSpec("A100", 312.0, 19.5, 2039.0),
    HardwareSpec("H100", 989.0, 67.0, 3350.0),
    HardwareSpec("H200", 989.0, 67.0, 4800.0),
    HardwareSpec("L4", 121.0, 30.3, 300.0),
    HardwareSpec("T4", 65.0, 8.1, 320.0),
    HardwareSpec("V100", 125.0, 15.7, 900.0),
    HardwareSpec("A40", 149.7, 37.4, 696.0),
    HardwareSpec("A10", 125.0, 31.2, 600.0),
)}


def hardware_spec(hardware: str) -> HardwareSpec | None:
    """The datasheet entry for a profile's hardware name (``A100-80GB``, ``NVIDIA T4``, ``v100-32gb``), or None.

    Examples
    --------
    >>> hardware_spec("A100-80GB").memory_gbps
    2039.0
    >>> hardware_spec("cpu-amd-epyc") is None
    True
    """
    tokens = re.split(r"[^A-Za-z0-9]+", str(hardware).upper())
    for token in tokens:
        if token in GPU_SPECS:
            return GPU_SPECS[token]
    return None
