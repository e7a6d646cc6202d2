"""Problem files for ``min_gpus`` / ``max_throughput``: the shared keys, the ``gpus:`` entries, one reader per kind.

Each GPU entry takes its performance from an inline ``batches:`` table (SPEC §5) or, without one, from the
``profiles:`` files through :func:`servopt.performance.batch_table`. Errors name the file and key path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError
from servopt.fields import Fields, is_number, model_file
from servopt.formulations.gpu import arrays as _arrays  # noqa: F401  (every problem builds them; not in parse_seconds)
from servopt.formulations.gpu.max_throughput import MaxThroughput
from servopt.formulations.gpu.min_gpus import OBJECTIVES, MinGPUs
from servopt.formulations.gpu.types import FORMULATIONS, GPUType, measured_instances_per_gpu

__all__ = [
    "COMMON_KEYS", "GPU_KEYS", "min_gpus_from_mapping", "max_throughput_from_mapping", "read_common", "construct",
]

#: keys both GPU problems read (besides their own: ``images`` / ``objective`` or ``budget_per_hour``)
COMMON_KEYS = ("problem", "name", "model", "variant", "input_size", "cores", "where", "profiles", "performance",
               "triton", "model_file", "formulation", "latency_slo_ms", "deadline_s", "gpus", "latency_quantile")

#: keys of one ``gpus:`` entry
GPU_KEYS = ("hardware", "max_count", "cost_per_hour", "max_batches", "max_batch_size", "instances_per_gpu",
            "batches", "memory_limit_mb")


def read_common(f: Any, source: Path) -> dict[str, Any]:
    """Read the keys of :data:`COMMON_KEYS` from a problem file into keyword arguments of the problem class.

    ``f`` is a :class:`servopt.fields.Fields` over the whole document. GPU entries without ``batches:`` take
    their table from the ``profiles:`` files (paths relative to the problem file) through
    :func:`servopt.performance.batch_table`, selected by ``model``, ``variant``, ``input_size``, ``cores`` and
    ``where:`` (label column -> value, or a list of values meaning "one of", e.g. ``where: {concurrency: 1}``).
    When the selected rows carry ``instances_per_gpu`` (Model Analyzer imports), the GPU type plans with it.
    ``latency_quantile: q`` (with ``performance: fit``) plans on the upper end of the fitted latency's
    prediction interval at level ``q`` (:class:`servopt.performance.upper_latency.UpperLatency`); the margin used
    is kept in ``kwargs["latency_margin"]``. A GPU entry's ``memory_limit_mb: L`` caps its batch sizes at the
    largest batch the profiles' memory model predicts to fit in L MiB (:meth:`_Frame.largest_batch`); what it held
    back is kept in ``kwargs["memory_margin"]``.
    """
    f.raw("problem")
    model = f.str("model", None)
    input_size = f.int("input_size", None, minimum=1)
    selectors = {"model": model, "variant": f.str("variant", None), "input_size": input_size,
                 "cores": f.number("cores", None, positive=True)}
    where = _read_where(f)
    profiles = f.list("profiles", None)
    if profiles is not None:
        for i, p in enumerate(profiles):
            if not isinstance(p, str) or not p:
                raise f.error(f"profiles[{i}]", f"expected a path (string) relative to the file, got {p!r}")
        profiles = [source.parent / p for p in profiles]
    performance = f.str("performance", "table", choices=("table", "fit"))
    if f.has("performance") and profiles is None:
        raise f.error("performance", "only applies with profiles:; inline batches: tables are used as given")
    if where and profiles is None:
        raise f.error("where", "only applies with profiles: (it selects profile rows by label); inline batches: "
                               "tables are used as given")
    quantile = _read_quantile(f, profiles, performance)
    name = f.str("name", None) or model or source.stem
    kwargs: dict[str, Any] = {
        "name": name,
        "model": model,
        "input_size": input_size,
        "triton": f.mapping("triton", None),
        "model_file": model_file(f, "model_file", source.parent),
        "source": source,
        "formulation": f.str("formulation", "aggregated", choices=FORMULATIONS),
        "latency_slo_ms": f.number("latency_slo_ms", None, positive=True),
        "deadline_s": f.number("deadline_s", positive=True),
        "cores": selectors["cores"],
    }
    entries = f.list("gpus")
    frame = _Frame(profiles, source, quantile)
    kwargs["gpus"] = [
        _read_gpu(entry, i, f.source, frame, selectors=selectors, where=where, mode=performance)
        for i, entry in enumerate(entries)
    ]
    if quantile is not None:
        from servopt.performance.uncertainty import margin_record

        for entry in frame.margins:
            entry["model"] = name
        kwargs["latency_margin"] = margin_record(quantile, frame.margins)
    if frame.memory:
        kwargs["memory_margin"] = _memory_record(name, frame.memory)
    if frame.pattern:
        kwargs["serving_parameters"] = _serving_parameters(frame.pattern, str(f.source))
    return kwargs


def _serving_parameters(patterns: dict[str, str], source: str) -> dict[str, str]:
    """The Triton parameters the selected rows' ``mem_pattern`` labels ask for (hardware -> ``"off"`` or ``""``:
    the default): ``enable_mem_pattern "0"`` where every entry's rows were measured with the pattern off. One
    repository serves every entry, so a mix is refused."""
    if len(set(patterns.values())) > 1:
        shown = ", ".join(f"{hw}: {v or 'on (no label)'}" for hw, v in patterns.items())
        raise ValidationError(f"{source}: the GPU entries' profile rows were measured with ONNX Runtime's memory "
                              f"pattern both on and off ({shown}), and one repository serves them all; select "
                              "one setting for every entry (where: {mem_pattern: off}, or {mem_pattern: ''})")
    return {"enable_mem_pattern": "0"} if set(patterns.values()) == {"off"} else {}


def _memory_record(name: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``memory_margin`` a problem carries into ``solve --json`` and ``servopt.json``: one entry per GPU entry
    with ``memory_limit_mb``, and the text lines ``servopt solve`` prints."""
    from servopt.performance.memory import describe_margin
    from servopt.performance.oom import another_limit

    notes = []
    for e in entries:
        e["model"] = name
        warning = another_limit(e["boundary_limits_mb"], e["memory_limit_mb"], command=False)
        notes.append(f"{name} on {e['hardware']}: batch sizes capped at {e['max_batch']}, the largest the memory "
                     f"model predicts to fit in {e['memory_limit_mb']:g} MiB "
                     f"({describe_margin(e['basis'], e['oom_margin'], e['memory_limit_mb'])})"
                     + (f"; warning: {warning}" if warning else "")
                     + (f"; warning: {e['ceiling']}" if e.get("ceiling") else ""))
    return {"entries": entries, "notes": notes}


def _read_quantile(f: Any, profiles: list[Path] | None, performance: str) -> float | None:
    """``latency_quantile`` (a float in (0.5, 1)), which needs latencies from a fitted model."""
    raw = f.raw("latency_quantile", None)
    if raw is None:
        return None
    from servopt.performance.uncertainty import UPPER_QUANTILE_ABOVE, check_quantile

    quantile = check_quantile(raw, str(f.source), above=UPPER_QUANTILE_ABOVE)
    if profiles is None:
        raise f.error("latency_quantile", f"{raw!r}: plans on the upper end of a fitted model's prediction "
                                          "interval, and inline batches: tables have none; give profiles: with "
                                          "performance: fit, or remove the key")
    if performance != "fit":
        raise f.error("latency_quantile", f"{raw!r}: needs performance: fit (the profiled points of performance: "
                                          "table are measurements, not predictions with an interval)")
    return quantile


class _Frame:
    """The profiles' table, loaded on first use (only when some GPU entry has no inline ``batches:``)."""

    def __init__(self, paths: list[Path] | None, source: Path, quantile: float | None = None) -> None:
        self.paths = paths
        self.source = source
        self.quantile = quantile
        self._frame: Any = None
        self._upper: Any = None
        self._memory: Any = None
        #: one margin record per GPU entry planned on the upper bound (:meth:`upper`)
        self.margins: list[dict[str, Any]] = []
        #: one record per GPU entry with ``memory_limit_mb`` (:meth:`largest_batch`)
        self.memory: list[dict[str, Any]] = []
        #: hardware -> the ``mem_pattern`` label of its selected rows (``"off"``, or ``""`` for the default)
        self.pattern: dict[str, str] = {}

    def label(self) -> str:
        return ", ".join(str(p) for p in self.paths or [])

    def get(self, where: str) -> Any:
        if self.paths is None:
            raise ValidationError(
                f"{self.source}: key '{where}.batches': missing; give a batches: table (batch size -> "
                "{latency_ms, warmup_ms}) or a top-level profiles: list with the measurements"
            )
        if self._frame is None:
            try:
                from servopt.profiles import load_profile
            except ImportError as exc:  # the profiles module is part of servopt; this is a broken install
                raise ValidationError(f"{self.source}: cannot read profiles: ({exc})") from None
            missing = [p for p in self.paths if not p.exists()]
            if missing:
                raise ValidationError(
                    f"{self.source}: key 'profiles': {missing[0]} does not exist (paths are relative to the "
                    "problem file)"
                )
            self._frame = load_profile(self.paths if len(self.paths) > 1 else self.paths[0]).frame
        return self._frame

    def upper(self, rows: Any, sizes: list[int], hardware: str) -> dict[int, float]:
        """Upper latency bounds at ``sizes`` for the configuration of ``rows`` (``latency_quantile``)."""
        from servopt.performance.upper_latency import UpperLatency

        if self._upper is None:
            self._upper = UpperLatency(self._frame, float(self.quantile or 0.0), self.label(),
                                       context=f"{self.source}: key 'latency_quantile'")
        bounds, record = self._upper.upper(rows, sizes)
        self.margins.append({"model": None, "hardware": hardware, **record})
        return bounds

    def largest_batch(self, rows: Any, limit_mb: float, hardware: str, at: str) -> int:
        """The largest batch of the configuration of ``rows`` predicted to fit in ``limit_mb``: the memory model
        ``servopt fit`` fits on the profiles (calibrated on their out-of-memory boundaries where they record the
        limit of the search), queried at the configuration (:meth:`PerformanceModels.largest_batch
        <servopt.performance.evaluate.PerformanceModels.largest_batch>`)."""
        from servopt.performance.evaluate import fit_profile
        from servopt.performance.oom import boundary_limits

        if self._memory is None:
            frame = self.get(at)
            if "memory_mb" not in frame.columns or not frame["memory_mb"].notna().any():
                raise ValidationError(f"{self.source}: key '{at}.memory_limit_mb': the profiles ({self.label()}) "
                                      "have no memory_mb, so no memory model can say which batch fits; measure "
                                      "them with servopt profile (--memory-limit-mb L --find-max-batch calibrates "
                                      "it) or give max_batch_size instead")
            self._memory, _ = fit_profile(frame, source=self.label(), targets=["memory"], cross_validate=False)
        got = self._memory.largest_batch(rows.iloc[[0]].reset_index(drop=True), limit_mb, source=self.label())
        record = {"model": None, "hardware": hardware, "memory_limit_mb": float(limit_mb),
                  "max_batch": int(got["max_batch"].iloc[0]),
                  "usable_fraction": float(got["max_batch_usable_fraction"].iloc[0]),
                  "oom_margin": float(got["max_batch_oom_margin"].iloc[0]),
                  "basis": str(got["max_batch_basis"].iloc[0]),
                  "boundary_limits_mb": boundary_limits(self._memory.targets["memory"].model)}
        fitted = self._memory.targets["memory"]
        if record["max_batch"] >= fitted.model.max_batch_size:  # the model's cap, not a boundary: say which
            from servopt.performance.oom import ceiling_notes

            query = fitted.frame(rows.iloc[[0]].reset_index(drop=True), self.label())
            record["unbounded"] = True
            record["ceiling"] = ceiling_notes(fitted.model, query, [record["max_batch"]], limit_mb)[0]
        self.memory.append(record)
        return record["max_batch"]


def _read_where(f: Any) -> dict[str, Any]:
    value = f.raw("where", None)
    if value is None:  # servopt.profiles imports pandas: only a file with where: needs it (0.3-0.9 s cold)
        return {}
    from servopt.profiles import read_where

    return read_where(value, str(f.source))


def _read_gpu(entry: Any, i: int, source: str, frame: _Frame, *, selectors: Mapping[str, Any],
              where: Mapping[str, Any], mode: str) -> GPUType:
    at = f"gpus[{i}]"
    g = Fields(entry, source, at)
    hardware = g.str("hardware")
    kwargs = {
        "hardware": hardware,
        "max_count": g.int("max_count", minimum=0),
        "cost_per_hour": g.number("cost_per_hour", None, minimum=0.0),
        "max_batches": g.int("max_batches", None, minimum=0),
        "max_batch_size": g.int("max_batch_size", None, minimum=1),
    }
    instances = g.int("instances_per_gpu", None, minimum=1)
    batches = g.mapping("batches", None)
    limit = g.number("memory_limit_mb", None, positive=True)
    g.done()
    if batches is not None and limit is not None:
        raise ValidationError(f"{source}: key '{at}.memory_limit_mb': the largest batch that fits comes from the "
                              "memory model of profiles:, and this entry has an inline batches: table; give "
                              "max_batch_size instead, or take the performance from profiles: (remove batches:)")
    if batches is not None and frame.quantile is not None:
        raise ValidationError(f"{source}: key '{at}.batches': an inline table has no prediction interval, so "
                              "latency_quantile cannot apply to it; take this GPU's performance from profiles: "
                              "(remove batches:) or remove latency_quantile")
    if batches is None:
        profile = frame.get(at)
        from servopt.performance import batch_table

        chosen = {k: v for k, v in selectors.items() if v is not None}
        try:
            table = batch_table(profile, hardware=hardware, mode=mode, source=frame.label(), where=where, **chosen)
        except ValidationError as exc:
            raise ValidationError(
                f"{source}: key '{at}': {exc} (selectors in the problem file: model, variant, input_size, cores, "
                "where)"
            ) from None
        instances = _instances(profile, hardware, chosen, where, instances, source, at, frame.label())
        batches = {int(b): _known(row) for b, row in table.items()}
        if batches and (frame.quantile is not None or limit is not None or "mem_pattern" in profile.columns):
            from servopt.profiles import select_rows

            rows = select_rows(profile, {"hardware": hardware, **chosen, **dict(where)}, frame.label())
            if "mem_pattern" in rows.columns:  # one setting per entry: batch_table refused a mix
                frame.pattern[hardware] = str(rows["mem_pattern"].fillna("").iloc[0]).strip()
            if frame.quantile is not None:
                for b, hi in frame.upper(rows, sorted(batches), hardware).items():
                    batches[b]["latency_ms"] = hi
            if limit is not None:
                fits = frame.largest_batch(rows, limit, hardware, at)
                if fits < 1:
                    raise ValidationError(f"{source}: key '{at}.memory_limit_mb': {limit:g} MiB: the memory model "
                                          f"predicts that not even batch 1 fits on {hardware!r}")
                given = kwargs["max_batch_size"]
                kwargs["max_batch_size"] = fits if given is None else min(given, fits)
        if not batches:
            shown = ", ".join(f"{k} {v!r}" for k, v in chosen.items())
            raise ValidationError(
                f"{source}: key '{at}': the profiles hold no measurement for hardware {hardware!r}"
                + (f" with {shown}" if shown else "") + "; give an inline batches: table or add the measurements"
            )
    else:
        batches = {_batch_key(b, source, at): _read_point(v, source, f"{at}.batches.{b}")
                   for b, v in batches.items()}
    try:
        return GPUType(batches=batches, instances_per_gpu=instances or 1, **kwargs)
    except ValidationError as exc:
        if str(exc).startswith(f"{source}:"):  # already names the file and key
            raise
        raise ValidationError(f"{source}: key '{at}': {exc}") from None


def _instances(profile: Any, hardware: str, chosen: Mapping[str, Any], where: Mapping[str, Any],
               given: int | None, source: str, at: str, label: str) -> int | None:
    """The selected rows' ``instances_per_gpu`` (one value), or ``given`` when the profile has no such label."""
    try:
        measured = measured_instances_per_gpu(profile, hardware, {**chosen, "where": where}, label)
    except ValidationError as exc:
        raise ValidationError(f"{source}: key '{at}': {exc}") from None
    if measured is None:
        return given
    if given is not None and given != measured:
        raise ValidationError(
            f"{source}: key '{at}.instances_per_gpu': {given}, but the selected profile rows were measured with "
            f"{measured} instances per GPU; remove the key or select rows measured with {given} (where: "
            f"{{instances_per_gpu: {given}}})")
    return measured


def _known(row: Mapping[str, Any]) -> dict[str, Any]:
    """A batch_table row without the keys the GPU models do not use (and without NaN warm-ups)."""
    out: dict[str, Any] = {"latency_ms": float(row["latency_ms"])}
    for key in ("warmup_ms", "memory_mb"):
        value = row.get(key)
        if value is not None and is_number(value):
            out[key] = float(value)
    return out


def _batch_key(b: Any, source: str, where: str) -> int:
    if isinstance(b, str) and b.strip().isdigit():
        b = int(b)
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValidationError(f"{source}: key '{where}.batches': batch size {b!r} is not an integer >= 1")
    return b


def _read_point(value: Any, source: str, where: str) -> dict[str, Any]:
    p = Fields(value, source, where)
    out = {"latency_ms": p.number("latency_ms", positive=True)}
    for key in ("warmup_ms", "memory_mb", "throughput_rps"):
        v = p.number(key, None, minimum=0.0) if key == "memory_mb" else p.number(key, None, positive=True)
        if v is not None and key != "throughput_rps":  # throughput is b / latency here: accepted, not used
            out[key] = v
    p.done()
    return out


def construct(cls: type, kwargs: dict[str, Any]) -> Any:
    """``cls(**kwargs)``, with a validation error prefixed by the problem file's name (``kwargs["source"]``)."""
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        text, source = str(exc), str(kwargs["source"])
        raise ValidationError(text if text.startswith(source) else f"{source}: {text}") from None


def min_gpus_from_mapping(data: dict[str, Any], source: Path) -> MinGPUs:
    """Validate a ``problem: min_gpus`` document (SPEC §5) into a :class:`MinGPUs`."""
    f = Fields(data, source)
    kwargs = read_common(f, Path(source))
    kwargs["images"] = f.int("images", minimum=1)
    kwargs["objective"] = f.str("objective", "gpus", choices=OBJECTIVES)
    f.done()
    return construct(MinGPUs, kwargs)


def max_throughput_from_mapping(data: dict[str, Any], source: Path) -> MaxThroughput:
    """Validate a ``problem: max_throughput`` document (SPEC §5) into a :class:`MaxThroughput`."""
    f = Fields(data, source)
    kwargs = read_common(f, Path(source))
    kwargs["budget_per_hour"] = f.number("budget_per_hour", None, minimum=0.0)
    f.done()
    return construct(MaxThroughput, kwargs)
