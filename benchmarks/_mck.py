"""The multiple-choice knapsack used by the overhead and backend benchmarks (IPA-like pipeline, integer data).

Stages s, variants v, batch sizes b: choose one (variant, batch) per stage (binary x[s, v, b]) so that the
end-to-end latency stays within the SLA and the cores stay within the budget, maximising accuracy minus cores
and batch size. All data are integers, so CP-SAT takes the model without scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BATCHES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class MCK:
    value: np.ndarray  # (S, V, B) objective coefficient of each option (integer)
    latency: np.ndarray  # (S, V, B) latency in ms of each option (integer)
    cores: np.ndarray  # (S, V, B) cores of each option (integer)
    sla: int
    budget: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.value.shape  # type: ignore[return-value]


def make_mck(stages: int = 9, variants: int = 9, batches: int = 7, seed: int = 0) -> MCK:
    """A reproducible instance; 9 x 9 x 7 gives 567 binaries, 9 choice rows and 2 knapsack rows."""
    rng = np.random.default_rng(seed)
    b = np.asarray(BATCHES[:batches], dtype=float)
    accuracy = np.sort(rng.uniform(0.5, 0.95, size=(stages, variants)), axis=1)  # bigger variant, better
    base = np.sort(rng.uniform(5, 60, size=(stages, variants)), axis=1)  # ms at batch 1
    per_replica = np.sort(rng.integers(1, 8, size=(stages, variants)), axis=1)
    latency = np.rint(base[:, :, None] * (1 + 0.35 * (b[None, None, :] - 1) ** 0.85))
    throughput = 1000.0 * b[None, None, :] / latency  # items/s of one replica
    workload = 150.0
    replicas = np.ceil(workload / throughput)
    cores = (replicas * per_replica[:, :, None]).astype(int)
    value = np.rint(1000 * accuracy[:, :, None] - 8 * cores - b[None, None, :]).astype(int)
    sla = int(0.45 * latency.max(axis=(1, 2)).sum())
    budget = int(0.5 * cores.min(axis=(1, 2)).sum() + 0.5 * cores.mean(axis=(1, 2)).sum())
    return MCK(value, latency.astype(int), cores, sla, budget)
