"""``servopt solve FILE``: solve a problem file, print the plan, optionally write a Triton repository."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from servopt.formulations.registry import PROBLEM_KINDS

DESCRIPTION = """Solve a problem file and print the plan.

FILE holds one problem (YAML): its kind, `problem: <KINDS>`,
its inputs, and performance either inline (`batches:` / `capacity:` tables) or from `profiles:` (see
docs/formulations.md and the files in examples/). The problem is solved exactly as a MILP by the chosen backend
(`servopt backends` lists them), or by a baseline policy with --policy.

Output: a table for people, or with --json exactly one JSON object on stdout:
  {"problem", "status", "objective", "backend", "parse_seconds", "build_seconds", "solve_seconds", "plan"}
parse_seconds: reading and validating FILE; solve_seconds: from the validated problem to the checked plan, as in
servopt.solve(); build_seconds: the part of solve_seconds building the MILP. First-time imports (the YAML reader,
the problem kind's modules, the solver) are in none of them: a cold CLI reports what a warm API call takes.
status is optimal, feasible (a limit stopped the solver with a plan), infeasible or error. Without a plan it
also has "exit_code" (1) and "message" (why); bad input prints {"status": "error", "exit_code": 2, "message"}.
An existing --out DIR is refused unless --force, the current folder (or one containing it) always; it is checked,
with the writability of its place, before solving. An OS error while writing (disk full) is exit 2, nothing written."""
DESCRIPTION = DESCRIPTION.replace("<KINDS>", " | ".join(PROBLEM_KINDS))  # the registry's: a new kind shows itself

EPILOG = """examples:
  servopt solve examples/min_gpus_efficientnet.yaml
  servopt solve examples/min_gpus_efficientnet.yaml --json
  servopt solve examples/min_gpus_efficientnet.yaml --backend cpsat --scale 100 --time-limit 10
  servopt solve examples/min_gpus_efficientnet.yaml --out triton-repo --force
  servopt solve examples/max_throughput_resnet50_budget.yaml --json | jq .plan.groups
  servopt solve examples/pipeline_video.yaml --policy greedy

exit codes:
  0  a plan was found (optimal, or feasible when --time-limit stopped the solver)
  1  no plan: infeasible (the reason is printed on stderr, e.g. "the whole pool processes at most
     8.1 M images within 600 s; 10 M requested") or the solver stopped without one
  2  bad input or usage (one line naming the file, key and value)"""

TRITON_BACKENDS = ("onnxruntime", "tensorrt_plan", "pytorch_libtorch", "python")

#: progress appears only once a command has run this long (a fast solve prints nothing on stderr)
SLOW_S = 1.0


class _Listed:
    """A list in an option's help, made when the help is printed (argparse expands ``%(name)s`` from the action's
    attributes): the registries it reads import modules (every problem kind's, for the policies) that a plain
    solve does not need."""

    def __init__(self, make: Any) -> None:
        self.make = make

    def __str__(self) -> str:
        return str(self.make())


def _backend_names() -> str:
    from servopt.backends import REGISTRY

    return ", ".join(["auto", *REGISTRY])


def _policy_names() -> str:
    """Each policy of ``servopt.policies.POLICIES`` with the problem kinds it takes."""
    from servopt.policies import POLICIES

    groups: dict[str, list[str]] = {}
    for name, (types, _, _) in POLICIES.items():
        groups.setdefault(", ".join(t.kind for t in types), []).append(name)
    return "; ".join(f"{', '.join(names)} ({takes})" for takes, names in groups.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="problem file (YAML)")
    backend = parser.add_argument("--backend", default="auto", metavar="NAME",
                                  help="solver backend (%(backends)s) or a problem's own exact algorithm; "
                                       "default: auto")
    backend.backends = _Listed(_backend_names)  # type: ignore[attr-defined]
    parser.add_argument("--time-limit", type=float, default=None, metavar="S",
                        help="stop the solver after S seconds (status 'feasible' if it has a plan by then); for "
                             "fleet problems it also bounds the pattern search (search_time_s)")
    parser.add_argument("--scale", type=float, default=None, metavar="FACTOR",
                        help="with --backend cpsat only (refused otherwise): multiply fractional data (e.g. costs) "
                             "by FACTOR and round to integers (checked for rounding error); e.g. 100 for prices "
                             "in cents")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object instead of a table")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress on stderr (shown only when stderr is a terminal, or with SERVOPT_PROGRESS=1, "
                             f"and only for steps that take over {SLOW_S:g} s)")
    policy = parser.add_argument("--policy", metavar="NAME", default=None,
                                 help="use a baseline policy instead of the exact solver: %(policies)s (the problem "
                                      "kinds each takes; see docs/formulations.md)")
    policy.policies = _Listed(_policy_names)  # type: ignore[attr-defined]
    out = parser.add_argument_group("Triton output")
    out.add_argument("--out", metavar="DIR", default=None,
                     help="write the Triton model repository for the plan to DIR")
    out.add_argument("--force", action="store_true", help="replace an existing repository at DIR")
    out.add_argument("--triton-backend", choices=TRITON_BACKENDS, default=None,
                     help="Triton backend of the served model (default: the problem file's triton: settings, "
                          "else onnxruntime)")
    out.add_argument("--link", action="store_true",
                     help="symlink each model file (model_file: in the problem) into the repository instead of "
                          "copying it")
    out.add_argument("--kserve", action="store_true", help="also write a KServe InferenceService manifest")
    out.add_argument("--storage-uri", metavar="URI", default=None,
                     help="where the cluster finds the repository (for the KServe manifest): gs://, s3://, pvc://, "
                          "hdfs://, webhdfs://, Azure https://, an http(s) archive, hf://, oci://")
    out.add_argument("--kserve-namespace", metavar="NS", default=None,
                     help="namespace of the KServe objects (overrides triton.kserve.namespace)")
    out.add_argument("--kserve-cpu", metavar="Q", default=None,
                     help="CPU per GPU pod, a Kubernetes quantity such as 8 or 500m (default: 2 per GPU; "
                          "CPU pods get the plan's cores)")
    out.add_argument("--kserve-memory", metavar="Q", default=None,
                     help="memory per pod, a Kubernetes quantity such as 16Gi (default: 8Gi per GPU, "
                          "1Gi per core with at least 2Gi)")


def run(args: argparse.Namespace) -> int:
    from servopt.cli._output import check_output
    from servopt.exceptions import ServoptError, ValidationError
    from servopt.formulations.registry import kind_module, problem_from_mapping, read_problem_document
    from servopt.result import SolveParams, Status

    if args.out is None:
        stray = [flag for flag, on in (("--force", args.force), ("--kserve", args.kserve),
                                       ("--storage-uri", args.storage_uri is not None),
                                       ("--triton-backend", args.triton_backend is not None),
                                       ("--link", args.link)) if on]
        if stray:
            raise ValidationError(f"{stray[0]} only applies with --out DIR (the Triton repository to write)")
    kserve_flags = _kserve_flags(args)
    if kserve_flags and not args.kserve:
        raise ValidationError(f"--kserve-{next(iter(kserve_flags))} only applies with --kserve")
    if args.storage_uri is not None and not args.kserve:
        raise ValidationError("--storage-uri only applies with --kserve (it is the KServe manifest's storageUri)")
    _check_numbers(args)
    if args.kserve and args.storage_uri is not None:
        # refused before solving, like --out: a URI or value the cluster would reject
        from servopt.triton.k8s_names import check_storage_uri
        from servopt.triton.kserve_options import KServeSpec, with_overrides

        check_storage_uri(args.storage_uri)
        with_overrides(KServeSpec(), kserve_flags)
    if args.policy is not None and args.backend != "auto":
        raise ValidationError("give either --policy NAME or --backend NAME, not both")
    if args.scale is not None and args.backend != "cpsat":
        # only CP-SAT scales (the others take fractional data as it is): a --scale it would ignore is refused
        if args.policy is not None:
            raise ValidationError(f"--scale applies only with --backend cpsat (CP-SAT needs integer data), not with "
                                  f"--policy {args.policy}; leave out --scale")
        used = ("--backend auto (the default; it gives fractional data to HiGHS or SCIP, which need no scaling)"
                if args.backend == "auto" else f"--backend {args.backend}")
        raise ValidationError(f"--scale applies only with --backend cpsat (CP-SAT needs integer data), not with "
                              f"{used}; add --backend cpsat, or leave out --scale")
    if args.out is not None:
        # refused before solving (exists without --force, the current folder, or not writable): nothing is
        # printed, nothing changes; check_target is the check (and message) the writer itself applies
        from pathlib import Path

        from servopt.triton.write import check_target

        check_target(Path(args.out), args.force)
        check_output(args.out, "--out", force=True, folder=True)
    import importlib
    import time

    import servopt.documents  # noqa: F401  (the YAML reader: imported outside parse_seconds)
    from servopt.progress import Progress

    with Progress("servopt solve", quiet=args.quiet, delay=SLOW_S) as bar:
        bar.stage(f"reading {args.file}")
        t0 = time.perf_counter()
        data = read_problem_document(args.file)
        parse_seconds = time.perf_counter() - t0
        module = kind_module(data)
        if module is not None:  # the kind's validation (and formulation) modules: imported outside parse_seconds
            importlib.import_module(module)
        bar.stage(f"validating {args.file}")
        t0 = time.perf_counter()
        problem = problem_from_mapping(data, args.file)
        parse_seconds += time.perf_counter() - t0
        if args.out is not None:  # the writer reads every model file: one that does not parse, before solving
            from servopt.triton.artifacts import check_model_files

            check_model_files(data, args.file)
            from servopt.triton.spec import parse_triton_section

            # the triton: section as the writer reads it (a key this kind would ignore is refused), before solving
            parse_triton_section(data.get("triton"), args.file, used_by=problem)
        params = SolveParams(time_limit_s=args.time_limit, scale=args.scale)
        bar.stage(f"solving {problem.kind} " + (f"with policy {args.policy}" if args.policy is not None else
                                                 f"(backend {args.backend})"))
        if args.policy is not None:
            solution = _run_policy(problem, args.policy, params, ServoptError)
        else:
            import servopt
            from servopt.exceptions import CapabilityError

            try:
                solution = servopt.solve(problem, backend=args.backend, params=params)
            except CapabilityError as exc:  # the library's advice, in this command's flags
                raise CapabilityError(cli_words(str(exc))) from None

        if solution.plan is not None and args.out is not None:
            # written before anything is printed: a refused or failed write leaves stdout empty (exit 2)
            bar.stage(f"writing the Triton model repository to {args.out}")
            missing = _write(problem, solution, args, ServoptError)
    reason = solution.message or f"the solver ended with status {solution.status.value}"
    if args.json:
        out = {}
        for key, value in solution.to_dict().items():
            if key == "build_seconds":
                out["parse_seconds"] = parse_seconds
            out[key] = value
        if solution.plan is not None and hasattr(solution.plan, "predictions"):
            out["predictions"] = _predictions(problem, solution.plan)
        if getattr(problem, "latency_margin", None):  # latency_quantile: the margin the plan was made with
            out["latency_margin"] = problem.latency_margin
        if getattr(problem, "memory_margin", None):  # memory_limit_mb: the largest batches and their margin
            out["memory_margin"] = problem.memory_margin
        if solution.plan is None:  # every outcome parses: infeasible (or no plan) says why, like an error does
            out.update(exit_code=1, message=reason)
        elif solution.status is Status.FEASIBLE:  # not proven optimal: how far it may be, and why it stopped
            out.update(_proof(solution))
        print(json.dumps(out, allow_nan=False))
    elif solution.plan is not None:
        print(_headline(solution))
        print(_table(solution.plan))
        for margin in ("latency_margin", "memory_margin"):
            for line in (getattr(problem, margin, None) or {}).get("notes", []):
                print(f"note: {line}")
    if solution.plan is None:
        label = "infeasible" if solution.status is Status.INFEASIBLE else f"no plan ({solution.status.value})"
        print(f"servopt: {label}: {reason}", file=sys.stderr)
        return 1
    if solution.status is Status.FEASIBLE and args.policy is not None:
        print(f"servopt: note: policy {args.policy!r} is a heuristic; the plan is feasible, not proven optimal",
              file=sys.stderr)
    elif solution.status is Status.FEASIBLE:
        # a plan may say itself why it is not proven (e.g. a fleet plan from a restricted pattern set)
        why = [n for n in getattr(solution.plan, "notes", ()) if "not proven optimal" in n]
        proof = _proof(solution)
        bound = ("" if "best_bound" not in proof else
                 f" (best bound {proof['best_bound']:.6g}" + (f", relative gap {proof['gap']:.3g}" if "gap" in proof
                                                               else "") + ")")
        print("servopt: note: " + ("; ".join(why) if why else
                                   "a limit stopped the solver; the plan is feasible but not proven optimal")
              + bound, file=sys.stderr)
    if solution.plan is not None and solution.message and solution.status is not Status.FEASIBLE and not args.json:
        print(f"servopt: note: {solution.message}", file=sys.stderr)  # e.g. how a plan was repaired (--json: message)
    if args.out is not None:
        where = sys.stderr if args.json else sys.stdout
        print(f"wrote the Triton model repository to {args.out}", file=where)
        if missing:
            print(f"config only (the repository cannot serve the model until this is fixed): {'; '.join(missing)}; "
                  "give model_file: (and tensors) in the problem file", file=where)
    return 0


def cli_words(message: str) -> str:
    """A library message in the command line's words: ``pass scale=100`` becomes ``pass --scale 100``
    (``scale=<factor>``: ``--scale FACTOR``), ``use backend 'highs'`` becomes ``use --backend highs``.

    >>> cli_words("with scale=10 it becomes 30.6, not an integer; pass scale=100, or use backend 'highs'")
    'with --scale 10 it becomes 30.6, not an integer; pass --scale 100, or use --backend highs'
    """
    import re

    message = re.sub(r"\bpass scale=<factor>", "pass --scale FACTOR", message)
    message = re.sub(r"\b(pass|with) scale=([0-9][0-9.e+]*)", r"\1 --scale \2", message)
    message = re.sub(r"\buse a smaller scale\b", "use a smaller --scale", message)
    return re.sub(r"\b(use|or) backend '([a-z]+)'(?: or '([a-z]+)')?",
                  lambda m: f"{m[1]} --backend {m[2]}" + (f" or {m[3]}" if m[3] else ""), message)


def _proof(solution: Any) -> dict[str, Any]:
    """What a solution with a plan says of its optimality: the solver's ``best_bound`` and the relative ``gap`` to
    it when the solver gave one, and its ``message`` (why it stopped, how the plan was repaired). Before, the CLI
    dropped them: a plan stopped by --time-limit 12.5x the optimum said only "feasible"."""
    out: dict[str, Any] = {}
    result = getattr(solution, "result", None)
    bound = getattr(result, "best_bound", None)
    if bound is not None and math.isfinite(bound):
        out["best_bound"] = float(bound)
        if solution.objective is not None and solution.objective != 0:
            out["gap"] = abs(float(solution.objective) - float(bound)) / abs(float(solution.objective))
    if solution.message:
        out["message"] = solution.message
    return out


def _run_policy(problem: Any, name: str, params: Any, error: type[Exception]) -> Any:
    try:
        from servopt.policies import run_policy
    except ImportError as exc:
        raise error(f"--policy needs servopt.policies, which cannot be imported ({exc})") from None
    return run_policy(problem, name, params)


def _write(problem: Any, solution: Any, args: argparse.Namespace, error: type[Exception]) -> list[str]:
    """Write the repository; returns why it is "config only" (empty when it serves the real models).

    ``servopt.write_repository`` in two steps, so that ``servopt.json`` gets the predictions and margins before
    the one atomic write: a failed write (disk full) leaves nothing behind."""
    from pathlib import Path

    try:
        from servopt.triton import build_repository
        from servopt.triton.write import artifact_copies, write_tree
    except ImportError as exc:
        raise error(f"--out needs servopt.triton, which cannot be imported ({exc})") from None
    deployment, files, folders = build_repository(problem, solution, triton_backend=args.triton_backend,
                                                  kserve=_kserve(args), storage_uri=args.storage_uri,
                                                  source=args.file)
    summary = json.loads(files["servopt.json"])
    # what servopt verify compares the served plan against (fleet repositories write their own, per server)
    if hasattr(solution.plan, "predictions") and "predictions" not in summary:
        summary["predictions"] = _predictions(problem, solution.plan)
    summary.update({k: getattr(problem, k) for k in ("latency_margin", "memory_margin") if getattr(problem, k, None)})
    files["servopt.json"] = json.dumps(summary, indent=2) + "\n"
    write_tree(Path(args.out), files, folders, force=args.force, copies=artifact_copies(deployment), link=args.link)
    return list(summary.get("missing", []))


def _check_numbers(args: argparse.Namespace) -> None:
    """``--time-limit`` and ``--scale``: absent, or finite numbers > 0 (refused in the options' own words)."""
    import math

    from servopt.exceptions import ValidationError

    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise ValidationError(f"--time-limit {args.time_limit:g}: expected a number of seconds > 0")
    if args.scale is not None and not (math.isfinite(args.scale) and args.scale > 0):
        raise ValidationError(f"--scale {args.scale:g}: expected a finite factor > 0 (e.g. 100 for prices in cents)")


def _predictions(problem: Any, plan: Any) -> dict[str, Any]:
    """The plan's predictions, with the problem's latency SLO (what ``servopt verify`` checks p99 against)."""
    out = dict(plan.predictions())
    out.setdefault("latency_slo_ms", getattr(problem, "latency_slo_ms", None))  # a pipeline plan carries its SLA
    return out


def _kserve_flags(args: argparse.Namespace) -> dict[str, str]:
    """The ``--kserve-*`` values given (they override the ``triton.kserve`` section)."""
    return {key: value for key, value in (("namespace", args.kserve_namespace), ("cpu", args.kserve_cpu),
                                          ("memory", args.kserve_memory)) if value is not None}


def _kserve(args: argparse.Namespace) -> Any:
    """``False``, ``True``, or the ``--kserve-*`` overrides (a mapping, which also turns KServe on)."""
    flags = _kserve_flags(args)
    return flags if args.kserve and flags else args.kserve


def _headline(solution: Any) -> str:
    return (f"{solution.problem}: {solution.status.value} (backend {solution.backend}, "
            f"{solution.solve_seconds:.3f} s)")


def _table(plan: Any) -> str:
    to_table = getattr(plan, "to_table", None)
    if callable(to_table):
        return str(to_table())
    return json.dumps(plan.to_dict(), indent=2)
