"""``servopt`` command line: a thin adapter, one library call per command.

Each command lives in ``servopt/cli/<name>.py`` with ``add_arguments(parser)`` and ``run(args) -> int``, and
optionally ``DESCRIPTION``, ``EPILOG`` and ``USAGE`` (its one-line help is in :data:`COMMANDS`); modules are
imported only when their command runs, so ``servopt --help`` stays fast.
Any :class:`servopt.exceptions.ServoptError` becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from servopt.exceptions import ServoptError

__all__ = ["main", "COMMANDS"]

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "solve": ("servopt.cli.solve", "solve a problem file and print the plan (optionally write a Triton repository)"),
    "backends": ("servopt.cli.backends", "list solver backends: installed, version, capabilities"),
    "import": ("servopt.cli.import_", "convert perf_analyzer / Model Analyzer CSV output into a servopt profile"),
    "fit": ("servopt.cli.fit", "fit performance models on profiles and report their cross-validated error"),
    "predict": ("servopt.cli.predict", "predict latency and other targets with fitted performance models"),
    "profile": ("servopt.cli.profile", "measure an ONNX model with ONNX Runtime into a profile"),
    "bench": ("servopt.cli.bench", "run a solver-scaling benchmark (CSV + PNG under benchmarks/results/)"),
    "simulate": ("servopt.cli.simulate", "simulate a solved plan serving a request trace"),
    "replay": ("servopt.cli.replay", "re-plan along a trace with a policy and simulate between decisions"),
    "verify": ("servopt.cli.verify", "drive a plan's load against Triton and compare with its predictions"),
}

EPILOG = """examples:
  servopt backends
  servopt solve examples/min_gpus_efficientnet.yaml --out repo/ --force
  servopt solve examples/pipeline_video.yaml --json
  servopt fit profiles/nvidia_efficientnet_pytorch.csv --json

Run `servopt COMMAND --help` for each command's options."""


def _build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, str | None]:
    parser = _Parser(
        prog="servopt",
        description="Provably optimal ML inference serving configuration: profiles -> performance models -> "
        "MILP -> plan -> Triton model repository.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from servopt import __version__

    parser.add_argument("--version", action="version", version=f"servopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        if name == wanted:
            mod = importlib.import_module(module)
            # USAGE: a module's own usage lines, where argparse's would show a required option as optional
            p = sub.add_parser(name, help=help_text, description=getattr(mod, "DESCRIPTION", help_text),
                               epilog=getattr(mod, "EPILOG", None), usage=getattr(mod, "USAGE", None),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
        else:
            sub.add_parser(name, help=help_text)
    return parser, wanted


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors also answer ``--json`` with a JSON object on stdout."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if _Parser.json_errors:
            from servopt.cli._output import print_json_status

            print_json_status("error", 2, f"{self.prog}: {message}")
        super().error(message)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # with --json every outcome is one JSON object on stdout, errors included (a scheduler parses them all)
    want_json = "--json" in argv[: argv.index("--") if "--" in argv else len(argv)]
    _Parser.json_errors = want_json
    try:
        parser, _ = _build_parser(argv)
        args = parser.parse_args(argv)
        if getattr(args, "_run", None) is None:
            parser.print_help()
            return 2
        return int(args._run(args) or 0)
    except ServoptError as exc:
        message = " ".join(str(exc).split("\n"))
        print(f"servopt: error: {message}", file=sys.stderr)
        if want_json:
            from servopt.cli._output import print_json_status

            print_json_status("error", 2, message)
        return 2
    except KeyboardInterrupt:
        print("servopt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        _Parser.json_errors = False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
