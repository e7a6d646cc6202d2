"""Verify a plan against a running Triton server: drive the load the plan was made for, compare with its predictions.

``servopt solve --out DIR`` writes ``DIR/servopt.json`` with the plan and, for plans that carry them
(``GPUPlan.predictions()``: ``min_gpus`` and ``max_throughput``), a ``predictions`` object: per GPU type the
batch latency, throughput, queueing delay and the load (requests of the planned batch size, two in flight per
instance). :func:`verify_plan` sends that load to each served model with a load-generation driver
(:mod:`servopt.measure.loadgen`) and returns a :class:`VerifyReport`: predicted against measured per model and
end to end (throughput, batch latency, p50/p99 latency, requests over the SLO, the deadline).

Fleet plans (:mod:`servopt.triton.fleet`) write their predictions themselves: ``predictions.placements``, one per
served model of each server repository (the capacity of one server, and its share of the model's planned rate,
which the measured throughput must also carry); each server repository has its own ``servopt.json``, so a verify
run covers the whole fleet (one server per repository, in turn) or one server.

The run is *time-compressed*: each model is measured until its windows are stable (not for the whole job), and
the time to process the requested images is projected from the measured throughput.

**Tolerance.** The plan holds when every model's measured throughput is at least (1 - tolerance) x predicted,
its batch latency (Triton's compute time per request) at most (1 + tolerance) x predicted, the latency SLO (when
the problem has one) met within (1 + tolerance) by what the SLO bounds in the plan, and the end-to-end throughput
as a model's. **What the SLO bounds:** a min_gpus / max_throughput plan's ``latency_slo_ms`` bounds the batch
latency (``servopt solve`` offers only batches with L(b) <= SLO; a request also waits for the batch ahead, so the
plan itself predicts about 2 L(b) per request), so verify judges the measured batch latency against it; a fleet
plan's p99 SLO bounds the request latency (its plan keeps 2 L(b) within it), so verify judges the request p99.
The default, 0.25, is the spread of repeated profiles on a busy machine (25-35 % between runs of the same point
on this 2-core machine shared by several jobs, up to 44 % under heavy load; docs/verify.md): a smaller
tolerance fails plans for noise.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError

__all__ = ["Expectation", "ModelCheck", "VerifyReport", "load_summary", "expectations", "verify_plan",
           "add_predictions", "make_standin_copy", "standin_timings", "DEFAULT_TOLERANCE", "EXIT_PLAN_FAILED"]

DEFAULT_TOLERANCE = 0.25
#: ``servopt verify`` exit code when the measured numbers fall outside the tolerance
EXIT_PLAN_FAILED = 3


def add_predictions(out_dir: str | Path, predictions: dict[str, Any]) -> None:
    """Add ``predictions`` to ``out_dir/servopt.json`` (atomically)."""
    from servopt.atomic import atomic_write

    path = Path(out_dir) / "servopt.json"
    summary = json.loads(path.read_text())
    summary["predictions"] = predictions
    with atomic_write(path, "w") as fh:
        fh.write(json.dumps(summary, indent=2, sort_keys=False) + "\n")


def load_summary(repo: str | Path) -> dict[str, Any]:
    """``servopt.json`` of a folder written by ``servopt solve --out`` (refused without predictions).

    GPU plans carry ``predictions.groups`` (fleet plans ``placements``), checked by :func:`verify_plan`;
    pipeline and variant_selection plans ``predictions.models`` (a request rate), checked by
    :mod:`servopt.serving.verify_rate`."""
    path = Path(repo) / "servopt.json"
    try:
        summary = json.loads(path.read_text())
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read ({exc.strerror or exc}); verify needs a folder written by "
                              "`servopt solve FILE --out DIR`") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path}: not JSON ({exc})") from None
    if "predictions" not in summary:
        raise ValidationError(f"{path}: has no 'predictions' (problem {summary.get('problem')!r}); verify "
                              "takes the plans that carry them (min_gpus, max_throughput), written by this "
                              "servopt's `solve --out`")
    if not {"groups", "placements", "models"} & set(summary["predictions"]):
        raise ValidationError(f"{path}: its predictions have no 'groups', 'placements' or 'models' (problem "
                              f"{summary.get('problem')!r}); write it again with this servopt's `solve --out`")
    return summary


@dataclass(frozen=True)
class Expectation:
    """What the plan predicts for one served model (``instances`` as served; throughputs scaled to them)."""

    repository: str
    model: str
    hardware: str
    instances: int
    planned_instances: int
    batch_size: int
    batch_latency_ms: float
    throughput_rps: float
    latency_ms: float
    queue_delay_ms: float
    max_queue_delay_us: int
    latency_slo_ms: float | None = None
    #: fleet plans: the share of the model's planned rate this server carries (routing.json)
    rate_share_rps: float | None = None
    #: what ``latency_slo_ms`` bounds in the plan: ``"batch_latency"`` (min_gpus, max_throughput: L(b) <= SLO)
    #: or ``"request_p99"`` (fleet plans' p99 SLO)
    slo_applies_to: str = "request_p99"


def _instances(config_path: Path, cap: int | None = None) -> int:
    """Instances a config starts (``count`` is per listed GPU), each group capped at ``cap`` as a CPU-only
    server runs it (:func:`servopt.serving.tritonserver.cpu_instance_groups`)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    if cap is not None and cap < 1:
        raise ValidationError(f"--max-instances: expected an instance count >= 1, got {cap}")
    cfg = text_format.Parse(config_path.read_text(), mc.ModelConfig())
    counts = [g.count * max(1, len(g.gpus)) if g.kind == mc.ModelInstanceGroup.KIND_GPU else g.count
              for g in cfg.instance_group]
    return sum(min(c, cap) if cap is not None else c for c in counts) or 1


def _fleet_expectations(summary: dict[str, Any], repo_dir: str | Path, served_instances: int | None
                        ) -> list[Expectation]:
    """Fleet plans: one prediction per served model of each server repository (``predictions.placements``):
    the capacity of ONE server of that repository, and the share of the model's rate it carries (both scaled
    to the instances served)."""
    out = []
    for p in summary["predictions"]["placements"]:
        cfg = Path(repo_dir) / p["repository"] / p["model"] / "config.pbtxt"
        planned = _instances(cfg) if cfg.is_file() else int(p["model_instances"])
        served = _instances(cfg, served_instances) if cfg.is_file() else planned
        per_instance = float(p["throughput_rps"]) / max(1, int(p["model_instances"]))
        out.append(Expectation(
            repository=p["repository"], model=p["model"], hardware=p["hardware"], instances=served,
            planned_instances=planned, batch_size=int(p["batch_size"]),
            batch_latency_ms=float(p["batch_latency_ms"]), throughput_rps=per_instance * served,
            latency_ms=float(p["latency_ms"]), queue_delay_ms=float(p["queue_delay_ms"]),
            max_queue_delay_us=int(p["max_queue_delay_us"]), latency_slo_ms=p.get("latency_slo_ms"),
            rate_share_rps=None if p.get("rate_share_rps") is None
            else float(p["rate_share_rps"]) * served / max(1, planned)))
    return out


def expectations(summary: dict[str, Any], repo_dir: str | Path, *, served_instances: int | None = None
                 ) -> list[Expectation]:
    """One :class:`Expectation` per model of every repository, matched to its prediction group by hardware.

    ``served_instances`` caps the instances a started server runs (``--max-instances``); the predicted
    throughput is then scaled to the instances actually served."""
    if "placements" in summary["predictions"]:
        return _fleet_expectations(summary, repo_dir, served_instances)
    groups = {g["hardware"]: g for g in summary["predictions"]["groups"]}
    out = []
    for repo in summary["repositories"]:
        group = groups.get(repo.get("hardware"))
        if group is None:
            raise ValidationError(f"servopt.json: repository {repo['path']!r} (hardware {repo.get('hardware')!r}) "
                                  f"has no prediction; predicted hardware: {', '.join(groups)}")
        for model in repo["models"]:
            cfg = Path(repo_dir) / repo["path"] / model["name"] / "config.pbtxt"
            planned = _instances(cfg) if cfg.is_file() else int(group["model_instances"])
            served = _instances(cfg, served_instances) if cfg.is_file() else planned
            per_instance = group["throughput_rps"] / max(1, group["model_instances"])
            out.append(Expectation(
                repository=repo["path"], model=model["name"], hardware=group["hardware"], instances=served,
                planned_instances=planned, batch_size=int(group["batch_size"]),
                batch_latency_ms=float(group["batch_latency_ms"]), throughput_rps=per_instance * served,
                latency_ms=float(group["latency_ms"]), queue_delay_ms=float(group["queue_delay_ms"]),
                max_queue_delay_us=int(group["max_queue_delay_us"]),
                latency_slo_ms=summary["predictions"].get("latency_slo_ms"), slo_applies_to="batch_latency"))
    return out


@dataclass(frozen=True)
class ModelCheck:
    """Predicted against measured for one model."""

    expected: Expectation
    measured: Any  # loadgen.LoadPoint
    tolerance: float

    @property
    def throughput_error(self) -> float:
        return self.measured.throughput_rps / self.expected.throughput_rps - 1.0

    @property
    def batch_latency_ms(self) -> float:
        return float(self.measured.server_compute_ms or math.nan)

    @property
    def batch_latency_error(self) -> float:
        return self.batch_latency_ms / self.expected.batch_latency_ms - 1.0

    @property
    def slo_measured_ms(self) -> float | None:
        """What the latency SLO is judged on (``expected.slo_applies_to``): the batch latency (min_gpus,
        max_throughput plans) or the request p99 (fleet plans); None without an SLO."""
        if self.expected.latency_slo_ms is None:
            return None
        if self.expected.slo_applies_to == "batch_latency":
            return self.batch_latency_ms
        return float(self.measured.latency_p99_ms)

    @property
    def slo_bound_ms(self) -> float | None:
        slo = self.expected.latency_slo_ms
        return None if slo is None else slo * (1 + self.tolerance)

    @property
    def slo_met(self) -> bool | None:
        """The SLO's quantity within (1 + tolerance) x the SLO; None without an SLO or when it was not measured
        (no server compute time)."""
        measured = self.slo_measured_ms
        if measured is None or not math.isfinite(measured):
            return None
        return measured <= self.slo_bound_ms

    @property
    def covers_rate_share(self) -> bool | None:
        """Fleet plans: the measured throughput carries this server's share of the model's rate."""
        share = self.expected.rate_share_rps
        return None if share is None else self.measured.throughput_rps >= share

    @property
    def holds(self) -> bool:
        ok = self.throughput_error >= -self.tolerance and self.covers_rate_share is not False
        if math.isfinite(self.batch_latency_error):
            ok = ok and self.batch_latency_error <= self.tolerance
        return ok and self.slo_met is not False

    def slo_line(self) -> str | None:
        """The SLO check in words: the measured value, the bound and what the SLO bounds (None without one)."""
        e = self.expected
        if e.latency_slo_ms is None:
            return None
        what = "batch latency" if e.slo_applies_to == "batch_latency" else "request p99"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[self.slo_met]
        line = (f"SLO {e.repository}/{e.model}: {what} {self.slo_measured_ms:.1f} ms, bound {self.slo_bound_ms:.1f} "
                f"ms (latency_slo_ms {e.latency_slo_ms:g} x {1 + self.tolerance:g}): {verdict}")
        if e.slo_applies_to == "batch_latency":
            line += (f"; the plan chose batches with L(b) <= the SLO, and a request also waits for the batch "
                     f"ahead (predicted {e.latency_ms:.1f} ms per request), so its p99 "
                     f"({self.measured.latency_p99_ms:.1f} ms) is reported, not judged against the SLO")
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"expected": asdict(self.expected), "measured": self.measured.to_dict(),
                "throughput_error": self.throughput_error, "batch_latency_error": self.batch_latency_error,
                "slo_met": self.slo_met,
                "slo": None if self.expected.latency_slo_ms is None else {
                    "applies_to": self.expected.slo_applies_to, "slo_ms": self.expected.latency_slo_ms,
                    "measured_ms": self.slo_measured_ms, "bound_ms": self.slo_bound_ms, "met": self.slo_met},
                "covers_rate_share": self.covers_rate_share, "holds": self.holds}


@dataclass
class VerifyReport:
    """The whole comparison; ``holds`` decides ``servopt verify``'s exit code (0, or 3)."""

    problem: str
    tolerance: float
    checks: list[ModelCheck]
    requested_images: int | None
    deadline_s: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def predicted_rps(self) -> float:
        return sum(c.expected.throughput_rps for c in self.checks)

    @property
    def measured_rps(self) -> float:
        return sum(c.measured.throughput_rps for c in self.checks)

    @property
    def scaled(self) -> bool:
        """Some model served with fewer instances than planned (``--max-instances``)."""
        return any(c.expected.instances < c.expected.planned_instances for c in self.checks)

    @property
    def projected_rps(self) -> float:
        """The measured throughput at the planned instances: each model's measured throughput per served
        instance x its planned instances (the measured throughput itself when every instance is served)."""
        return sum(c.measured.throughput_rps * c.expected.planned_instances / max(1, c.expected.instances)
                   for c in self.checks)

    @property
    def projected_s(self) -> float | None:
        """Time the planned instances need for the requested images at the measured throughput per instance
        (time-compressed run)."""
        if not self.requested_images or self.projected_rps <= 0:
            return None
        return self.requested_images / self.projected_rps

    @property
    def deadline_met(self) -> bool | None:
        if self.projected_s is None or self.deadline_s is None:
            return None
        return self.projected_s <= self.deadline_s

    @property
    def holds(self) -> bool:
        end_to_end = self.measured_rps >= (1 - self.tolerance) * self.predicted_rps
        return end_to_end and all(c.holds for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"problem": self.problem, "tolerance": self.tolerance, "holds": self.holds,
                "models": [c.to_dict() for c in self.checks],
                "end_to_end": {"predicted_rps": self.predicted_rps, "measured_rps": self.measured_rps,
                               "throughput_error": self.measured_rps / self.predicted_rps - 1.0,
                               "requested_images": self.requested_images, "deadline_s": self.deadline_s,
                               "projected_rps": self.projected_rps, "projected_s": self.projected_s,
                               "deadline_met": self.deadline_met},
                "notes": self.notes}

    def to_table(self) -> str:
        head = ("model", "inst", "batch", "pred items/s", "meas items/s", "err", "pred batch ms", "meas batch ms",
                "err", "pred p50", "p50", "p99", "srv batch", "holds")
        shares = any(c.expected.rate_share_rps is not None for c in self.checks)
        if shares:  # fleet plans: the share of the model's rate each server carries
            head = head[:-1] + ("rate share", "holds")
        slos = any(c.expected.latency_slo_ms is not None for c in self.checks)
        if slos:  # the SLO check per model; the lines below the table say on what and against which bound
            head = head[:-1] + ("slo", "holds")
        rows = [head]
        for c in self.checks:
            e, m = c.expected, c.measured
            share = () if not shares else (
                "-" if e.rate_share_rps is None else f"{e.rate_share_rps:.1f}" + ("" if c.covers_rate_share
                                                                                  else " NOT carried"),)
            slo = () if not slos else ({True: "met", False: "MISSED", None: "-"}[c.slo_met],)
            rows.append((f"{e.repository}/{e.model}", str(e.instances), str(e.batch_size),
                         f"{e.throughput_rps:.1f}", f"{m.throughput_rps:.1f}", f"{c.throughput_error:+.0%}",
                         f"{e.batch_latency_ms:.2f}", f"{c.batch_latency_ms:.2f}", f"{c.batch_latency_error:+.0%}",
                         f"{e.latency_ms:.1f}", f"{m.latency_p50_ms:.1f}", f"{m.latency_p99_ms:.1f}",
                         f"{m.server_batch_avg or 0:.1f}", *share, *slo, "yes" if c.holds else "NO"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
                 for r in rows]
        d = self.to_dict()["end_to_end"]
        lines.append(f"end to end: predicted {d['predicted_rps']:.1f} items/s, measured {d['measured_rps']:.1f} "
                     f"({d['throughput_error']:+.0%})")
        lines += [line for c in self.checks if (line := c.slo_line()) is not None]
        if self.projected_s is not None:
            at = ("at the measured rate" if not self.scaled else
                  f"at the measured rate per served instance x the planned instances ({self.projected_rps:.1f} "
                  "items/s)")
            deadline = "" if self.deadline_s is None else \
                f"; deadline {self.deadline_s:g} s {'met' if self.deadline_met else 'MISSED'}"
            lines.append(f"{self.requested_images:,} images: {self.projected_s:.1f} s {at}{deadline}")
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"plan {'holds' if self.holds else 'does NOT hold'} within {self.tolerance:.0%}")
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Predicted and measured throughput and batch latency per model, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [f"{c.expected.repository}/{c.expected.model}" for c in self.checks]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        bar_pairs(axes, names, [
            ("throughput (items/s)", [c.expected.throughput_rps for c in self.checks],
             [c.measured.throughput_rps for c in self.checks]),
            ("batch latency (ms)", [c.expected.batch_latency_ms for c in self.checks],
             [c.batch_latency_ms for c in self.checks])])
        return save_verdict_figure(fig, path, self.problem, self.holds, self.tolerance)


def verify_plan(summary: dict[str, Any], repo_dir: str | Path, measure: Callable[[Expectation], Any], *,
                tolerance: float = DEFAULT_TOLERANCE, served_instances: int | None = None,
                only: set[str] | None = None) -> VerifyReport:
    """Measure every expected model with ``measure(expectation) -> LoadPoint`` and compare.

    ``only`` restricts the check to some repositories (paths in servopt.json)."""
    if not (0 < tolerance < 1):
        raise ValidationError(f"tolerance: expected a fraction between 0 and 1 such as 0.25, got {tolerance}")
    wanted = [e for e in expectations(summary, repo_dir, served_instances=served_instances)
              if only is None or e.repository in only]
    checks = [ModelCheck(e, measure(e), tolerance) for e in wanted]
    pred = summary["predictions"]
    report = VerifyReport(problem=str(summary.get("problem")), tolerance=tolerance, checks=checks,
                          requested_images=pred.get("requested_images"), deadline_s=pred.get("deadline_s"))
    for c in checks:
        if c.expected.instances < c.expected.planned_instances:
            report.notes.append(f"{c.expected.repository}/{c.expected.model}: {c.expected.instances} of "
                                f"{c.expected.planned_instances} planned instances served; its prediction is scaled")
        if c.expected.latency_slo_ms is not None and c.slo_met is None:
            report.notes.append(f"{c.expected.repository}/{c.expected.model}: the latency SLO was not judged (no "
                                "server compute time measured)")
        if not c.measured.stable:
            report.notes.append(f"{c.expected.repository}/{c.expected.model}: windows did not settle within the "
                                "stability rule (a busy machine); numbers are the last windows'")
    if only is not None and len(wanted) < len(expectations(summary, repo_dir)):
        report.notes.append("some repositories were not measured; end-to-end numbers cover the measured ones")
    return report


def standin_timings(expected: list[Expectation]) -> dict[tuple[str, str], tuple[float, float]]:
    """``--standin plan``: (repository, model) -> (0, batch latency / batch) so each stand-in takes the plan's
    batch latency for a full batch (and proportionally less for a partial one)."""
    return {(e.repository, e.model): (0.0, e.batch_latency_ms / e.batch_size) for e in expected}


def _cpu_served_copy(repo: Path, dest: Path, max_instances: int | None, max_queue_delay_us: int | None,
                     edit: Callable[[Any, Path], None] | None = None) -> None:
    """Copy ``repo`` to ``dest`` with every non-ensemble model on CPU instances (:func:`cpu_instance_groups`), the
    batcher's delay replaced when ``max_queue_delay_us`` is given, and ``edit(config, config_path)`` applied."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from servopt.serving.tritonserver import cpu_instance_groups

    shutil.copytree(repo, dest)
    for cfg_path in sorted(Path(dest).glob("*/config.pbtxt")):
        cfg = text_format.Parse(cfg_path.read_text(), mc.ModelConfig())
        if cfg.platform == "ensemble":
            continue
        cpu_instance_groups(cfg, max_instances)
        if max_queue_delay_us is not None and cfg.HasField("dynamic_batching"):
            cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
        if edit is not None:
            edit(cfg, cfg_path)
        cfg_path.write_text(text_format.MessageToString(cfg, use_short_repeated_primitives=True))


def make_standin_copy(repo: Path, dest: Path, *, base_ms: float, per_item_ms: float,
                      max_instances: int | None = None, max_queue_delay_us: int | None = None,
                      timings: dict[str, tuple[float, float]] | None = None) -> None:
    """Copy a repository so a CPU-only tritonserver serves it with timed stand-ins (``--standin``).

    KIND_GPU groups become KIND_CPU (one instance per listed GPU); each model runs the Python-backend stand-in
    (``servopt/testing/standin_model.py``, copied as a file) sleeping ``base_ms + per_item_ms x items`` per
    batch (``timings``: model name -> its own (base, per item)); ``max_queue_delay_us`` replaces the dynamic
    batcher's delay when given."""
    standin = Path(__file__).resolve().parents[1] / "testing" / "standin_model.py"

    def to_standin(cfg: Any, cfg_path: Path) -> None:
        cfg.backend = "python"
        cfg.platform = ""
        cfg.ClearField("default_model_filename")
        cfg.ClearField("model_warmup")
        base, per_item = (timings or {}).get(cfg.name, (base_ms, per_item_ms))
        cfg.parameters["servopt_base_ms"].string_value = f"{base:g}"
        cfg.parameters["servopt_per_item_ms"].string_value = f"{per_item:g}"
        for version in cfg_path.parent.iterdir():
            if version.is_dir() and version.name.isdigit():
                shutil.copy2(standin, version / "model.py")

    _cpu_served_copy(repo, dest, max_instances, max_queue_delay_us, to_standin)


def make_cpu_copy(repo: Path, dest: Path, *, max_instances: int | None = None,
                  max_queue_delay_us: int | None = None) -> None:
    """Copy a repository so a CPU-only tritonserver serves its real models (``--cpu``): KIND_GPU groups become
    KIND_CPU (one instance per listed GPU, at most ``max_instances``); models and backends are kept."""
    _cpu_served_copy(repo, dest, max_instances, max_queue_delay_us)


def backend_of(config_path: Path) -> str | None:
    """The backend folder a model's config.pbtxt needs (``platform: onnxruntime_onnx`` -> ``onnxruntime``);
    None for ensembles."""
    import re

    text = Path(config_path).read_text()
    found = re.search(r'^\s*backend\s*:\s*"([^"]+)"', text, re.M)
    if found:
        return found.group(1)
    platform = re.search(r'^\s*platform\s*:\s*"([^"]+)"', text, re.M)
    if platform is None or platform.group(1) == "ensemble":
        return None
    return {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch",
            "tensorflow_savedmodel": "tensorflow", "tensorflow_graphdef": "tensorflow"}.get(platform.group(1),
                                                                                          platform.group(1))


def bar_pairs(axes: Any, names: list[str], panels: list[tuple[str, list[float], list[float]]]) -> None:
    """One panel per (title, predicted, measured): predicted and measured bars side by side per model."""
    x = range(len(names))
    for ax, (title, pred, meas) in zip(axes, panels):
        ax.bar([i - 0.2 for i in x], pred, width=0.4, label="predicted")
        ax.bar([i + 0.2 for i in x], meas, width=0.4, label="measured")
        ax.set_xticks(list(x), names, rotation=20, ha="right")
        ax.set_title(title)
        ax.legend()


def save_verdict_figure(fig: Any, path: str | Path, problem: str, holds: bool, tolerance: float) -> Path:
    """Title ``fig`` with the verdict, write it to ``path`` (PNG) and close it."""
    import matplotlib.pyplot as plt

    fig.suptitle(f"{problem}: plan {'holds' if holds else 'does not hold'} within {tolerance:.0%}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
