"""The contents one bin (a whole GPU of a type, or one MIG slice) can hold, and a search over them.

A content is a set of placements ``model -> (batch b, instances k)``, at most one per model. It is feasible when its
memory fits the bin and every placed model meets its latency bound with the slowdown the content implies
(:class:`~servopt.formulations.fleet.types.Colocation`). The search needs no caps to be finite; the bounds it uses
are *implied* by the problem, so they never cut a content an optimal plan needs:

* **memory / latency**: instances are added one model at a time and ``k`` grows until memory or a latency bound
  breaks; slowdowns only grow with more instances (every factor is >= 1), so the first break ends that branch;
* **capacity**: at most ``k_max(i, b) = floor(r_i * L_i(b) * S_i(b) / (1000 b)) + 1`` instances, with
  ``S_i(b) = slo_i / (F * L_i(b))`` the largest slowdown the SLO allows and ``r_i`` the model's required RPS:
  with ``k - 1`` instances the model already covers ``r_i`` on this bin alone at any allowed slowdown, so the
  k-th instance only slows its neighbours down (a content without it is at least as good in a covering problem).

``max_instances`` / ``max_models`` (problem keys) restrict the search further when a user sets them; a cap that
cut a feasible content is reported (``truncated``) and the plan is then not proven optimal.

:meth:`BinSpace.search` enumerates every feasible content (``weights=None``) or, for column generation, the
contents of largest value ``Σ_i w_i min(c_i, r_i)`` above a threshold, by branch and bound with a fractional
knapsack bound over the bin's time (``Σ_i c_i / θ_i <= U``, ``θ_i`` the model's best one-instance throughput,
``U`` the most GPU-time N co-located instances can use: ``N / (1 + (N - 1)(f_min - 1))``).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

from servopt.formulations.fleet.types import SLO_FACTOR

__all__ = ["Pattern", "BinSpace", "SearchBudget"]


class SearchBudget(Exception):
    """A search visited more contents than its budget allowed (the pattern set would not be complete)."""


@dataclass(frozen=True)
class Pattern:
    """One feasible bin content: ``items`` = ((model index, batch, instances), ...) sorted by model index."""

    items: tuple[tuple[int, int, int], ...]
    capacity: tuple[float, ...]   # per item, RPS after slowdown
    slowdown: tuple[float, ...]
    memory_mb: float


class BinSpace:
    """Every model's options on one bin of ``problem`` (GPU type ``gpu``, MIG ``profile`` or None)."""

    def __init__(self, problem: Any, gpu: str, profile: str | None, memory_mb: float, *,
                 max_instances: int | None = None, max_models: int | None = None) -> None:
        self.problem, self.gpu, self.profile, self.memory_mb = problem, gpu, profile, memory_mb
        self.max_instances = max_instances if max_instances is not None else math.inf
        self.max_models = max_models if max_models is not None else math.inf
        self.required = [problem.required_rps(m) for m in problem.models]
        self.perf = {}
        #: model index -> [(batch, latency_ms, memory per instance, k_max)]
        self.options: dict[int, list[tuple[int, float, float, int]]] = {}
        for i, m in enumerate(problem.models):
            perf = problem.performance(m, gpu, profile)
            if perf is None:
                continue
            opts = []
            for b, lat in perf.latency_ms.items():
                slack = m.slo_ms / (SLO_FACTOR[m.slo] * lat)   # the largest slowdown the SLO allows
                if slack < 1 or perf.memory(b) > memory_mb:
                    continue
                k_cap = math.floor(self.required[i] * lat * slack / (1000.0 * b)) + 1
                opts.append((b, lat, perf.memory(b), max(1, k_cap)))
            if opts:
                self.perf[i] = perf
                self.options[i] = opts
        self.names = [m.name for m in problem.models]
        self._factor: dict[tuple[int, int], float] = {}

    def factor(self, a: int, c: int) -> float:
        key = (a, c) if a <= c else (c, a)
        f = self._factor.get(key)
        if f is None:
            f = self.problem.colocation.factor(self.names[a], self.names[c], self.gpu)[0]
            self._factor[key] = f
        return f

    def pattern(self, items: tuple[tuple[int, int, int], ...]) -> Pattern | None:
        """The pattern of ``items`` (sorted by model index), or None when memory or a latency bound breaks."""
        mem = 0.0
        for i, b, k in items:
            perf = self.perf.get(i)
            if perf is None or b not in perf.latency_ms:
                return None
            mem += perf.memory(b, k)
        if mem > self.memory_mb:
            return None
        caps, sds = [], []
        for i, b, k in items:
            s = 1.0
            for c, _, kc in items:
                others = kc - 1 if c == i else kc
                if others > 0:
                    s += others * (self.factor(i, c) - 1.0)
            m = self.problem.models[i]
            lat = self.perf[i].latency_ms[b]
            if SLO_FACTOR[m.slo] * lat * s > m.slo_ms:
                return None
            caps.append(k * 1000.0 * b / (lat * s))
            sds.append(s)
        return Pattern(items, tuple(caps), tuple(sds), mem)

    def value(self, pat: Pattern, weights: dict[int, float]) -> float:
        """``Σ_i w_i min(c_i, r_i)``: capacity beyond a model's requirement is worth nothing."""
        return sum(weights.get(i, 0.0) * min(c, self.required[i]) for (i, _, _), c in zip(pat.items, pat.capacity))

    # -- the search ------------------------------------------------------------------------------------------------

    def _utilisation_bound(self, models: list[int]) -> float:
        """The most Σ c_i / θ_i a content of ``models`` can reach (inf when nothing bounds it)."""
        f_min = self.problem.colocation.default_slowdown
        for (a, b, gpu), f in self.problem.colocation.pairs.items():
            if gpu == self.gpu:
                f_min = min(f_min, f)
        if f_min >= 2.0:
            return 1.0
        n_max = math.inf
        mems = [mem for i in models for _, _, mem, _ in self.options[i]]
        if mems and min(mems) > 0:
            n_max = math.floor(self.memory_mb / min(mems))
        if f_min > 1.0:
            slack = max(self.problem.models[i].slo_ms / (SLO_FACTOR[self.problem.models[i].slo] * lat)
                        for i in models for _, lat, _, _ in self.options[i])
            n_max = min(n_max, 1 + math.floor((slack - 1) / (f_min - 1) + 1e-9))
        if math.isinf(n_max):
            return math.inf
        n_max = max(1, min(n_max, sum(k for i in models for k in [max(o[3] for o in self.options[i])])))
        return n_max / (1 + (n_max - 1) * (f_min - 1))

    def search(self, weights: dict[int, float] | None = None, threshold: float = -math.inf, keep: int | None = None,
               node_budget: int | None = None, zero_weights: bool = False) -> tuple[list[Pattern], bool]:
        """Feasible contents, and whether a user cap cut one.

        With ``weights=None`` every feasible content; else the ``keep`` contents (all when None) of largest value
        ``> threshold``, among contents of models with a positive weight only unless ``zero_weights`` (a model of
        weight 0 adds no value; pricing leaves it out, listing every column under a reduced-cost limit does not).
        Raises :class:`SearchBudget` past ``node_budget`` contents visited.
        """
        if weights is None:
            models = sorted(self.options)
        else:
            models = [i for i in self.options if weights.get(i, 0.0) > 0 or zero_weights]
        theta = {i: max(1000.0 * b / lat for b, lat, _, _ in self.options[i]) for i in models}
        solo = {}
        for i in models:  # most capacity model i reaches alone on the bin (an upper bound with neighbours)
            best = 0.0
            for b, _, _, kmax in self.options[i]:
                for k in range(1, min(kmax, self.max_instances) + 1):
                    pat = self.pattern(((i, b, k),))
                    if pat is None:
                        break
                    best = max(best, pat.capacity[0])
            solo[i] = min(best, self.required[i])
        if weights is not None:
            models.sort(key=lambda i: (-weights.get(i, 0.0) * theta[i], i))
        u_max = self._utilisation_bound(models) if (weights is not None and models) else math.inf
        found: list[Pattern] = []
        heap: list[tuple[float, int, Pattern]] = []
        truncated = False
        nodes = 0
        counter = 0

        def bound(items: tuple, caps: tuple, start: int) -> float:
            """Fractional knapsack over the bin's time: current items at most at their current capacity."""
            pieces = [(weights.get(i, 0.0) * theta[i], min(c, self.required[i]) / theta[i]) for (i, _, _), c in zip(items, caps)]
            pieces += [(weights.get(j, 0.0) * theta[j], solo[j] / theta[j]) for j in models[start:]]
            if math.isinf(u_max):
                return sum(d * u for d, u in pieces)
            pieces.sort(key=lambda t: -t[0])
            left, total = u_max, 0.0
            for d, u in pieces:
                take = min(u, left)
                total += d * take
                left -= take
                if left <= 0:
                    break
            return total

        def floor_value() -> float:
            if keep is not None and len(heap) >= keep:
                return max(threshold, heap[0][0])
            return threshold

        def grow(start: int, items: tuple, caps: tuple, instances: int) -> None:
            nonlocal nodes, truncated, counter
            if weights is not None and bound(items, caps, start) <= floor_value():
                return
            for j in range(start, len(models)):
                i = models[j]
                for b, _, _, kmax in self.options[i]:
                    for k in range(1, kmax + 1):
                        if instances + k > self.max_instances or len(items) + 1 > self.max_models:
                            if self.pattern(tuple(sorted(items + ((i, b, k),)))) is not None:
                                truncated = True
                            break
                        new = tuple(sorted(items + ((i, b, k),)))
                        pat = self.pattern(new)
                        if pat is None:
                            break  # more instances only slow every placement down further (factors >= 1)
                        nodes += 1
                        if node_budget is not None and nodes > node_budget:
                            raise SearchBudget(f"more than {node_budget} contents of {self.gpu}/{self.profile}")
                        if weights is None:
                            found.append(pat)
                        else:
                            v = self.value(pat, weights)
                            if v > floor_value():
                                counter += 1
                                if keep is None:
                                    found.append(pat)
                                elif len(heap) < keep:
                                    heapq.heappush(heap, (v, counter, pat))
                                else:
                                    heapq.heapreplace(heap, (v, counter, pat))
                        grow(j + 1, new, pat.capacity, instances + k)

        grow(0, (), (), 0)
        if weights is not None and keep is not None:
            found = [p for _, _, p in sorted(heap, key=lambda t: (-t[0], t[1]))]
        return found, truncated
