"""Problem files for ``fleet`` (``/work/prompts/fleet_contract.md``; docs/fleet.md).

Every error names the file, the key path (``models[2].performance.L4.latency_ms[8]``) and the value; unknown keys
are rejected. A model's performance on a GPU type is inline (``latency_ms`` + ``memory_mb``) or read from a profile
(``profile: FILE.csv``, ``where: {label: value}``, ``column: latency_ms``, plus ``memory_mb``), paths relative to
the problem file. With a profile, ``memory_mb: fit`` counts an instance at each profiled batch as the larger of its
measured memory and the profile's memory model over its usable fraction of the GPU's or slice's memory
(:meth:`_Fits.planned_memory`; reported as ``memory_margin``). With ``latency_quantile: q`` every performance entry
must come from a profile, and its latency at each profiled batch size is the upper end of the fitted curve's
prediction interval at level ``q`` (:class:`servopt.performance.upper_latency.UpperLatency`, fitted on the whole
profile file), or the measured latency where that is larger (a plan with the quantile never assumes less than the
measurement).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError
from servopt.fields import Fields, check_int, check_number, model_file
from servopt.formulations.fleet.problem import FleetProblem
from servopt.formulations.fleet.types import SLO_FACTOR, Colocation, FleetModel, GpuType, MigProfile, Performance

__all__ = ["from_mapping"]


def from_mapping(data: Mapping[str, Any], source: str | Path) -> FleetProblem:
    """Validate a ``problem: fleet`` mapping into a :class:`FleetProblem`."""
    source = Path(source)
    f = Fields(data, source)
    f.str("problem")
    name = f.str("name", source.stem if source.name not in ("", "<problem>") else "fleet")
    objective = f.str("objective", "cost", choices=("cost", "gpus", "weighted"))
    weights = f.mapping("weights", None)
    if weights is not None:
        w = Fields(weights, source, "weights")
        weights = {k: w.number(k, 0.0, minimum=0.0) for k in ("cost", "gpus")}
        w.done()
    headroom = f.number("headroom", 0.0, minimum=0.0)
    caps = {"max_instances": f.int("max_instances", None, minimum=1),
            "max_models": f.int("max_models", None, minimum=1),
            "search_time_s": f.number("search_time_s", 60.0, positive=True)}
    triton = f.mapping("triton", None)
    quantile = f.raw("latency_quantile", None)  # null: not given
    if quantile is not None:
        from servopt.performance.uncertainty import UPPER_QUANTILE_ABOVE, check_quantile

        quantile = check_quantile(quantile, str(source), above=UPPER_QUANTILE_ABOVE)
    fits = _Fits(quantile)
    gpu_types = []
    for i, entry in enumerate(f.list("gpu_types")):
        if not isinstance(entry, Mapping):
            raise _bad(f, f"gpu_types[{i}]", entry)
        gpu_types.append(_gpu_type(Fields(entry, source, f"gpu_types[{i}]"), source))
    type_names = {g.name for g in gpu_types}
    colocation = _colocation(f, source)
    models = []
    for i, entry in enumerate(f.list("models")):
        if not isinstance(entry, Mapping):
            raise _bad(f, f"models[{i}]", entry)
        models.append(_model(Fields(entry, source, f"models[{i}]"), source, gpu_types, type_names, fits))
    f.done()
    margin = None
    if quantile is not None:
        from servopt.performance.uncertainty import margin_record

        margin = margin_record(quantile, fits.margins)
    try:
        return FleetProblem(models=models, gpu_types=gpu_types, objective=objective, weights=weights,
                            headroom=headroom, colocation=colocation, name=name, triton=triton, source=source,
                            latency_margin=margin, memory_margin=_memory_record(fits.memory) if fits.memory else None,
                            **caps)
    except ValidationError as exc:
        raise ValidationError(f"{source}: {exc}") from None


def _bad(f: Fields, key: str, value: Any) -> ValidationError:
    return ValidationError(f"{f.source}: key '{key}': expected a mapping, got {type(value).__name__} {value!r}")


def _fields(f: Fields, key: str) -> Fields:
    return Fields(f.mapping(key), f.source, f"{f.prefix}.{key}" if f.prefix else key)


def _gpu_type(g: Fields, source: Path) -> GpuType:
    name = g.str("name")
    mig = []
    for j, entry in enumerate(g.list("mig", None) or []):
        if not isinstance(entry, Mapping):
            raise _bad(g, f"{g.prefix}.mig[{j}]", entry)
        m = Fields(entry, source, f"{g.prefix}.mig[{j}]")
        mig.append((m, m.str("profile"), m.int("compute", minimum=1, maximum=7), m.number("memory_mb", positive=True)))
        m.done()
    layouts = []
    for j, lay in enumerate(g.list("layouts", None) or []):
        if not isinstance(lay, list) or not lay or not all(isinstance(x, str) for x in lay):
            raise g.error(f"layouts[{j}]", f"expected a non-empty list of MIG profile names, got {lay!r}")
        layouts.append(tuple(lay))
    kwargs = dict(name=name, count=g.int("count", minimum=0), memory_mb=g.number("memory_mb", positive=True),
                  price_per_hour=g.number("price_per_hour", minimum=0.0),
                  gpus_per_node=g.int("gpus_per_node", 8, minimum=1))
    g.done()
    try:
        return GpuType(**kwargs, mig=tuple(MigProfile(p, c, mem) for _, p, c, mem in mig), layouts=tuple(layouts))
    except ValidationError as exc:
        raise ValidationError(f"{source}: key '{g.prefix}': {exc}") from None


def _colocation(f: Fields, source: Path) -> Colocation:
    raw = f.mapping("colocation", None)
    if raw is None:
        return Colocation()
    c = Fields(raw, source, "colocation")
    default = c.number("default_slowdown", 2.0, minimum=1.0)
    pairs: dict[tuple[str, str, str], float] = {}
    for j, entry in enumerate(c.list("pairs", None, nonempty=False) or []):
        if not isinstance(entry, Mapping):
            raise _bad(c, f"colocation.pairs[{j}]", entry)
        p = Fields(entry, source, f"colocation.pairs[{j}]")
        models = p.list("models")
        if len(models) != 2 or not all(isinstance(m, str) and m for m in models):
            raise p.error("models", f"expected two model names, got {models!r}")
        key = (min(models), max(models), p.str("gpu_type"))
        factor = p.number("slowdown", minimum=1.0)
        if key in pairs and pairs[key] != factor:
            raise p.error("slowdown", f"pair {models} on {key[2]} given twice with different slowdowns")
        pairs[key] = factor
        p.done()
    c.done()
    return Colocation(default, pairs)


class _Fits:
    """What fleet entries fit on their profiles: upper latency bounds for ``latency_quantile`` (one fitted model
    per profile file and column) and ``memory_mb: fit`` (one memory model per profile file)."""

    def __init__(self, quantile: float | None) -> None:
        self.quantile = quantile
        self.fits: dict[tuple[str, str], Any] = {}
        self.memory_fits: dict[str, Any] = {}
        #: one margin record per model and GPU key planned on the upper bound
        self.margins: list[dict[str, Any]] = []
        #: one record per model and GPU key with ``memory_mb: fit`` (:meth:`planned_memory`)
        self.memory: list[dict[str, Any]] = []

    def bounds(self, full: Any, rel: str, rows: Any, column: str, model: str, key: str,
               measured: dict[int, float]) -> dict[int, float]:
        """The larger of the measured latency and the interval's upper end, per profiled batch size."""
        from servopt.performance.upper_latency import UpperLatency

        fit = self.fits.get((rel, column))
        if fit is None:
            fit = self.fits[(rel, column)] = UpperLatency(full, float(self.quantile or 0.0), rel, column)
        sizes = sorted(measured)
        high, record = fit.upper(rows, sizes)
        out = {b: max(high[b], measured[b]) for b in sizes}
        for entry in record["batches"]:
            entry["measured_ms"] = measured[entry["batch_size"]]
            entry["planned_ms"] = out[entry["batch_size"]]
        self.margins.append({"model": model, "hardware": key, **record})
        return out

    def planned_memory(self, full: Any, rel: str, rows: Any, limit_mb: float, model: str,
                       key: str) -> dict[int, float]:
        """Per profiled batch size of ``rows``, the memory of one instance a plan on ``key`` (``limit_mb`` of
        memory) counts: the memory model ``servopt fit`` fits on the whole profile file (calibrated on its
        out-of-memory boundaries), divided by its usable fraction of ``limit_mb``
        (:meth:`PerformanceModels.planned_memory <servopt.performance.evaluate.PerformanceModels.planned_memory>`),
        and never less than the row's measured ``memory_mb``."""
        from servopt.performance.evaluate import fit_profile
        from servopt.performance.oom import boundary_limits

        fitted = self.memory_fits.get(rel)
        if fitted is None:
            if "memory_mb" not in full.columns or not full["memory_mb"].notna().any():
                raise ValidationError(f"fit: {rel} has no memory_mb, so no memory model can say what an instance "
                                      "needs; measure it with servopt profile (--memory-limit-mb L --find-max-batch "
                                      "calibrates it) or give memory_mb: {instance, per_batch}")
            fitted, _ = fit_profile(full, source=rel, targets=["memory"], cross_validate=False)
            self.memory_fits[rel] = fitted
        got = fitted.planned_memory(rows.reset_index(drop=True), limit_mb, source=rel)
        measured = rows["memory_mb"] if "memory_mb" in rows.columns else [float("nan")] * len(rows)
        # never less than measured at a profiled batch: a fraction above 1 lowers small batches below it
        table = {int(b): max(float(mb), float(m)) if math.isfinite(float(m)) else float(mb)
                 for b, mb, m in zip(rows["batch_size"], got["planned_memory_mb"], measured)}
        fits = [b for b, mb in table.items() if mb <= limit_mb]
        if not fits:
            raise ValidationError(f"fit: the memory model of {rel} predicts that not even batch {min(table)} fits "
                                  f"in {limit_mb:g} MiB of {key}; remove this entry (the model cannot run there)")
        self.memory.append({"model": model, "hardware": key, "memory_limit_mb": float(limit_mb),
                            "max_batch": max(fits),
                            "usable_fraction": float(got["usable_fraction"].iloc[0]),
                            "oom_margin": float(got["oom_margin"].iloc[0]), "basis": str(got["basis"].iloc[0]),
                            "boundary_limits_mb": boundary_limits(fitted.targets["memory"].model),
                            "planned_memory_mb": {str(b): mb for b, mb in table.items() if math.isfinite(mb)}})
        return {b: mb for b, mb in table.items() if math.isfinite(mb)}


def _memory_record(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``memory_margin`` a fleet problem carries into ``solve --json`` and ``servopt.json``, with the text
    lines ``servopt solve`` prints."""
    from servopt.performance.memory import describe_margin
    from servopt.performance.oom import another_limit

    notes = []
    for e in entries:
        warning = another_limit(e["boundary_limits_mb"], e["memory_limit_mb"], command=False)
        notes.append(f"{e['model']} on {e['hardware']}: memory per instance from the memory model over its usable "
                     f"fraction {e['usable_fraction']:.3f} of {e['memory_limit_mb']:g} MiB "
                     f"({describe_margin(e['basis'], e['oom_margin'], e['memory_limit_mb'])}), never below the "
                     f"measured memory; alone, batch {e['max_batch']} is the largest profiled batch that fits"
                     + (f"; warning: {warning}" if warning else ""))
    return {"entries": entries, "notes": notes}


def _model(m: Fields, source: Path, gpu_types: list[GpuType], type_names: set[str], fits: _Fits) -> FleetModel:
    name = m.str("name")
    rate = m.number("rate_rps", positive=True)
    slo_ms = m.number("slo_ms", positive=True)
    slo = m.str("slo", "p99", choices=tuple(SLO_FACTOR))
    path = model_file(m, "model_file", source.parent)
    perf_fields = _fields(m, "performance")
    performance = {}
    for key in list(perf_fields.data):
        gpu, _, profile = str(key).partition("/")
        if gpu not in type_names:
            raise perf_fields.error(str(key), f"unknown GPU type {gpu!r}; known: {', '.join(sorted(type_names))}")
        g = next(t for t in gpu_types if t.name == gpu)
        if profile and profile not in {p.profile for p in g.mig}:
            raise perf_fields.error(str(key), f"unknown MIG profile {profile!r} of {gpu}; known: "
                                              f"{', '.join(p.profile for p in g.mig) or 'none'}")
        limit = g.profile(profile).memory_mb if profile else g.memory_mb
        performance[str(key)] = _performance(_fields(perf_fields, str(key)), source, fits, name, str(key), limit)
    perf_fields.done()
    m.done()
    return FleetModel(name=name, rate_rps=rate, slo_ms=slo_ms, slo=slo, performance=performance, model_file=path)


def _performance(p: Fields, source: Path, fits: _Fits, model: str, key: str, limit_mb: float) -> Performance:
    instance, per_batch, fitted = _memory(p)
    memory = None
    if p.has("profile"):
        if p.has("latency_ms"):
            raise p.error("latency_ms", "give either latency_ms or profile, not both")
        latency, full, rows = _profile_latency(p, source, fits, model, key)
        if fitted:
            try:
                memory = fits.planned_memory(full, p.data["profile"], rows, limit_mb, model, key)
            except ValidationError as exc:
                raise p.error("memory_mb", str(exc)) from None
            latency = {b: lat for b, lat in latency.items() if b in memory}
    else:
        if fitted:
            raise p.error("memory_mb", "fit: the memory model is fitted on profile:, and this entry has an "
                                       "inline latency_ms table; give profile: or memory_mb: {instance, per_batch}")
        if fits.quantile is not None:
            raise p.error("latency_ms", "an inline table has no prediction interval, so latency_quantile cannot "
                                        "apply to it; give profile: (with where:) or remove latency_quantile")
        table = p.mapping("latency_ms")
        latency = {}
        for b, lat in table.items():
            where = f"latency_ms[{b}]"
            b = check_int(b, lambda what: p.error(where, f"batch size: {what}"), minimum=1)
            latency[b] = check_number(lat, lambda what: p.error(where, what), positive=True)
        if not latency:
            raise p.error("latency_ms", "expected a non-empty mapping batch size -> milliseconds")
    p.done()
    return Performance(latency, instance, per_batch, memory_table=memory)


def _memory(p: Fields) -> tuple[float, float, bool]:
    """``memory_mb``: ``{instance, per_batch}`` (MB of one instance, a line in the batch), or ``fit`` (from the
    memory model of ``profile:``): (instance, per_batch, fit?)."""
    raw = p.raw("memory_mb")
    if isinstance(raw, str):
        if raw != "fit":
            raise p.error("memory_mb", f"{raw!r}: expected {{instance: MB, per_batch: MB}} or fit (the memory model "
                                       "of profile:)")
        return 0.0, 0.0, True
    mem = _fields(p, "memory_mb")
    instance = mem.number("instance", minimum=0.0)
    per_batch = mem.number("per_batch", 0.0, minimum=0.0)
    mem.done()
    return instance, per_batch, False


def _profile_latency(p: Fields, source: Path, fits: _Fits, model: str, key: str
                     ) -> tuple[dict[int, float], Any, Any]:
    """The latency per batch size of the profile rows ``where:`` selects (upper bounds with
    ``latency_quantile``), the whole profile and those rows."""
    from servopt.profiles import load_profile

    rel = p.str("profile")
    path = Path(rel) if Path(rel).is_absolute() else source.parent / rel
    where = p.mapping("where", None) or {}
    column = p.str("column", "latency_ms", choices=("latency_ms", "latency_p99_ms", "latency_p95_ms",
                                                      "latency_p90_ms"))
    try:
        loaded = load_profile(path)
    except ValidationError as exc:
        raise p.error("profile", f"{rel!r}: {exc}") from None
    try:
        table = loaded.select(**dict(where))
    except ValidationError as exc:  # a label the profile lacks, or a value no row has: the where: key is wrong
        raise p.error("where", str(exc)) from None
    frame = table.frame if hasattr(table, "frame") else table
    if len(frame) == 0:
        raise p.error("where", f"selects no rows of {rel} ({dict(where)})")
    if column not in frame.columns:
        raise p.error("column", f"{rel} has no column {column!r}")
    out: dict[int, float] = {}
    for b, lat in zip(frame["batch_size"], frame[column]):
        b = int(b)
        if b in out and out[b] != float(lat):
            raise p.error("where", f"selects several rows of {rel} for batch size {b}; narrow it (e.g. variant:)")
        out[b] = float(lat)
    if fits.quantile is not None:
        try:
            out = fits.bounds(loaded.frame, rel, frame, column, model, key, out)
        except ValidationError as exc:
            raise p.error("profile", f"{rel!r}: latency_quantile: {exc}") from None
    return out, loaded.frame, frame
