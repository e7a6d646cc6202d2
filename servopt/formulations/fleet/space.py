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
contents of largest value ``Σ_i w_i min(c_i, r_i)`` above a threshold, by branch and bound. Its bound: the
current items' value (slowdowns only grow) plus, for the models still to come, the least of (a) a fractional
knapsack over the bin's time (each of N instances runs at least ``1 + (N - 1)(f_min - 1)`` times slower, so
``Σ_i k_i / s_i <= U = N / (1 + (N - 1)(f_min - 1))``; a model's capacity per unit of time is at most its best
one-instance throughput among the batches whose latency bound survives that slowdown; the current items keep at
least ``k_i / S_i``), (b) the same with a Lagrangian price on the instances still allowed (memory, and every
placed item's largest allowed slowdown ``S_i``), (c) the largest values of that many models.
"""

from __future__ import annotations

import heapq
import math
import time
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


class _Excess(dict):
    """(a, c) -> f(a, c) - 1, computed on first use."""

    def __init__(self, space: BinSpace) -> None:
        super().__init__()
        self.space = space

    def __missing__(self, key: tuple[int, int]) -> float:
        value = self.space.factor(*key) - 1.0
        self[key] = value
        return value


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

    def _min_factor(self) -> float:
        """The least co-location factor of any pair on this GPU type (the default included)."""
        f_min = self.problem.colocation.default_slowdown
        for (_, _, gpu), f in self.problem.colocation.pairs.items():
            if gpu == self.gpu:
                f_min = min(f_min, f)
        return f_min

    def _utilisation_bound(self, models: list[int]) -> float:
        """The most Σ c_i / θ_i(b_i) a content of ``models`` can reach (inf when nothing bounds it): each of N
        instances runs at least ``1 + (N - 1)(f_min - 1)`` times slower, so ``Σ k_i / s_i <= U(N)``."""
        f_min = self._min_factor()
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
               node_budget: int | None = None, zero_weights: bool = False, deadline: float | None = None,
               stop_quietly: bool = False) -> tuple[list[Pattern], bool]:
        """Feasible contents, and whether a user cap cut one.

        With ``weights=None`` every feasible content; else the ``keep`` contents (all when None) of largest value
        ``> threshold``, among contents of models with a positive weight only unless ``zero_weights`` (a model of
        weight 0 adds no value; pricing leaves it out, listing every column under a reduced-cost limit does not).
        Raises :class:`SearchBudget` past ``node_budget`` contents visited or past ``deadline``
        (``time.perf_counter()``), or with ``stop_quietly`` returns what it found so far (a heuristic search).
        """
        if weights is None:
            models = sorted(self.options)
        else:
            models = [i for i in self.options if weights.get(i, 0.0) > 0 or zero_weights]
        w = weights or {}
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
            models.sort(key=lambda i: (-w.get(i, 0.0) * theta[i], i))
        u_max = self._utilisation_bound(models) if (weights is not None and models) else math.inf
        # per model: [(batch, latency, memory per instance, k_max, largest slowdown allowed, 1000 b / latency)]
        opts = {i: [(b, lat, mem, kmax, self.problem.models[i].slo_ms / (SLO_FACTOR[self.problem.models[i].slo] * lat),
                     1000.0 * b / lat) for b, lat, mem, kmax in self.options[i]] for i in models}
        fm = _Excess(self)
        found: list[Pattern] = []
        heap: list[tuple[float, int, Pattern]] = []
        state = {"truncated": False, "nodes": 0, "counter": 0, "stop": False}
        req = self.required
        # the current content: parallel lists (model, batch, k, slowdown, slack, throughput per instance)
        cur_i: list[int] = []
        cur_b: list[int] = []
        cur_k: list[int] = []
        cur_s: list[float] = []
        cur_slack: list[float] = []
        cur_th: list[float] = []

        f_min = self._min_factor()
        by_n: dict[int, list[tuple[float, float, int]]] = {}

        def candidates(n_total: int) -> list[tuple[float, float, int]]:
            """(density, most utilisation, position) of every model in a content of ``n_total`` instances, best
            density first: only batches whose latency bound survives the least slowdown ``n_total`` implies."""
            out = by_n.get(n_total)
            if out is None:
                s_min = 1.0 + (n_total - 1) * (f_min - 1.0)
                out = []
                for pos, j in enumerate(models):
                    th = max((o[5] for o in opts[j] if o[4] >= s_min * (1 - 1e-12)), default=0.0)
                    if th > 0 and w.get(j, 0.0) > 0:
                        out.append((w[j] * th, solo[j] / th, pos))
                out.sort(key=lambda t: -t[0])
                by_n[n_total] = out
            return out

        max_slack = max((o[4] for j in models for o in opts[j]), default=1.0)
        min_mem = min((o[2] for j in models for o in opts[j]), default=0.0)

        def bound(start: int, instances: int, memory: float) -> float:
            """An upper bound on the value of every content extending the current one with models[start:]:
            a fractional knapsack over the bin's time (current items at most at their current capacity)."""
            current = sum(w.get(i, 0.0) * min(k * th / s, req[i]) for i, k, s, th in zip(cur_i, cur_k, cur_s, cur_th))
            if start >= len(models):
                return current
            # how many more instances fit: every instance of N slows each by >= (N - 1)(f_min - 1), memory
            n_left = math.inf
            if f_min > 1.0:
                slack = min(cur_slack, default=max_slack)
                n_left = 1 + math.floor((slack - 1) / (f_min - 1.0) + 1e-9) - instances
            if min_mem > 0:
                n_left = min(n_left, math.floor((self.memory_mb - memory) / min_mem + 1e-9))
            if n_left <= 0:
                return current
            # the current items keep at least k_i / S_i of the bin's time (their slowdown can grow to S_i at most)
            u_left = u_max - sum(k / sl for k, sl in zip(cur_k, cur_slack))
            if u_left <= 0:
                return current
            rest = [(d, u) for d, u, pos in candidates(instances + 1) if pos >= start]
            cardinality = math.inf
            if not math.isinf(n_left):  # each added model: at least one instance, at most its value in the time left
                top = sorted((d * min(u, u_left) for d, u in rest), reverse=True)[:int(n_left)]
                cardinality = current + sum(top)
            # Lagrangian relaxation of "at most n_left more instances": any multiplier lam >= 0 gives an upper
            # bound lam * n_left + (fractional knapsack over the time left with densities d - lam / u)
            lams = [0.0]
            if not math.isinf(n_left):
                values = sorted((d * u for d, u in rest), reverse=True)
                lams += [values[r] for r in (int(n_left) - 1, int(n_left)) if 0 <= r < len(values)]
            best = math.inf
            for lam in lams:
                chosen = [(d - lam / u, u) for d, u in rest if u > 0 and d - lam / u > 0]
                extra = 0.0 if lam == 0 else lam * n_left
                if math.isinf(u_left):
                    best = min(best, extra + sum(d * u for d, u in chosen))
                    continue
                chosen.sort(key=lambda t: -t[0])
                left, total = u_left, 0.0
                for d, u in chosen:
                    take = min(u, left)
                    total += d * take
                    left -= take
                    if left <= 0:
                        break
                best = min(best, extra + total)
            return current + min(cardinality - current, best)

        def floor_value() -> float:
            if keep is not None and len(heap) >= keep:
                return max(threshold, heap[0][0])
            return threshold

        def emit() -> None:
            items = tuple(sorted(zip(cur_i, cur_b, cur_k)))
            if weights is None:
                pat = self.pattern(items)
                if pat is not None:
                    found.append(pat)
                return
            v = sum(w.get(i, 0.0) * min(k * th / s, req[i]) for i, k, s, th in zip(cur_i, cur_k, cur_s, cur_th))
            if v <= floor_value():
                return
            pat = self.pattern(items)
            if pat is None:
                return
            v = self.value(pat, w)
            if v <= floor_value():
                return
            state["counter"] += 1
            if keep is None:
                found.append(pat)
            elif len(heap) < keep:
                heapq.heappush(heap, (v, state["counter"], pat))
            else:
                heapq.heapreplace(heap, (v, state["counter"], pat))

        def fits(i: int, k: int, mem_new: float, slack: float, memory: float) -> bool:
            if memory + k * mem_new > self.memory_mb:
                return False
            s_new = 1.0 + (k - 1) * fm[i, i]
            for a, ka, sa, sla in zip(cur_i, cur_k, cur_s, cur_slack):
                f = fm[a, i]
                if sa + k * f > sla * (1 + 1e-12):
                    return False
                s_new += ka * f
            return s_new <= slack * (1 + 1e-12)

        def grow(start: int, instances: int, memory: float) -> None:
            if state["stop"]:
                return
            if weights is not None and bound(start, instances, memory) <= floor_value():
                return
            for j in range(start, len(models)):
                if (weights is not None and j > start and (j - start) % 4 == 0
                        and bound(j, instances, memory) <= floor_value()):
                    break  # the bound only falls with fewer candidates: no content from models[j:] helps
                i = models[j]
                for b, _, mem, kmax, slack, th in opts[i]:
                    for k in range(1, kmax + 1):
                        if not fits(i, k, mem, slack, memory):
                            break  # more instances only slow every placement down further (factors >= 1)
                        if instances + k > self.max_instances or len(cur_i) + 1 > self.max_models:
                            state["truncated"] = True
                            break
                        state["nodes"] += 1
                        if (node_budget is not None and state["nodes"] > node_budget) or (
                                deadline is not None and state["nodes"] % 256 == 0
                                and time.perf_counter() > deadline):
                            if stop_quietly:
                                state["stop"] = True
                                return
                            raise SearchBudget(f"more than {node_budget} contents of {self.gpu}/{self.profile}"
                                               if node_budget is not None and state["nodes"] > node_budget
                                               else f"time limit in {self.gpu}/{self.profile}")
                        s_new = 1.0 + (k - 1) * fm[i, i]
                        for n, a in enumerate(cur_i):
                            s_new += cur_k[n] * fm[i, a]
                            cur_s[n] += k * fm[a, i]
                        cur_i.append(i), cur_b.append(b), cur_k.append(k), cur_s.append(s_new)
                        cur_slack.append(slack), cur_th.append(th)
                        emit()
                        grow(j + 1, instances + k, memory + k * mem)
                        for lst in (cur_i, cur_b, cur_k, cur_s, cur_slack, cur_th):
                            lst.pop()
                        for n, a in enumerate(cur_i):
                            cur_s[n] -= k * fm[a, i]
                        if state["stop"]:
                            return

        grow(0, 0, 0.0)
        self.last_nodes = state["nodes"]
        if weights is not None and keep is not None:
            found = [p for _, _, p in sorted(heap, key=lambda t: (-t[0], t[1]))]
        return found, state["truncated"]
