"""The layout's rules, read from the source (an AST walk over ``servopt/``; nothing is imported).

1. No import circle between modules.
2. No module imports a higher layer (the table below; docs/architecture.md explains it).
3. No private name or private module of one package is imported from another package.
4. Outside ``servopt/formulations/`` nothing switches on a problem-kind string: consumers dispatch on the plan's
   or problem's type (``functools.singledispatch``, ``isinstance``). A kind may be *written* as data (labels,
   messages, ``servopt.json``); comparing against one, matching one, or looking something up by ``.kind`` is
   refused (``==``/``!=``/``in`` with a kind literal or a constant holding kinds, ``match`` on a kind, a
   comparison or subscript on ``x.kind`` / ``getattr(x, "kind")`` / a variable named ``kind``).

Module-level and function-level imports both count; imports under ``if TYPE_CHECKING:`` do not (they never run).
An import of ``servopt.a.b`` counts as an import of that module only, not of the packages ``servopt.a`` above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "servopt"

#: layer of each module, by its longest matching dotted prefix; a module may import its own layer or lower ones
LAYERS: tuple[tuple[str, ...], ...] = (
    ("servopt.exceptions", "servopt.fields", "servopt.exact", "servopt.documents", "servopt.yaml_subset",
     "servopt.progress", "servopt.atomic", "servopt.lp_format"),
    ("servopt.model", "servopt.result"),
    ("servopt.backends",),
    ("servopt.solve", "servopt"),  # servopt/__init__.py: the public API (it imports solve; the rest lazily)
    ("servopt.profiles",),
    ("servopt.performance",),
    ("servopt.formulations",),
    ("servopt.policies",),
    ("servopt.triton", "servopt.serving", "servopt.measure"),
    ("servopt.testing",),
    ("servopt.cli", "servopt.__main__"),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, package: str) -> list[tuple[str, tuple[str, ...], int]]:
    """(module, imported names, line) of every import that runs, resolving relative imports."""
    out: list[tuple[str, tuple[str, ...], int]] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    walk(sub)
                continue
            if isinstance(child, ast.Import):
                out.extend((alias.name, (), child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                out.append((base, tuple(alias.name for alias in child.names), child.lineno))
            walk(child)

    walk(tree)
    return out


def _graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, tuple[str, ...], int]]]]:
    paths = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
    edges = {}
    for module, path in paths.items():
        found = []
        for target, names, line in _imports(ast.parse(path.read_text(), str(path)), _package_of(module, path)):
            if target != "servopt" and not target.startswith("servopt."):
                continue
            # ``from servopt.pkg import module`` imports that module
            modules = [f"{target}.{n}" for n in names if f"{target}.{n}" in paths] or [target]
            rest = tuple(n for n in names if f"{target}.{n}" not in paths)
            found.extend((m, rest if m == target else (), line) for m in modules)
        edges[module] = found
    return paths, edges


PATHS, EDGES = _graph()


def layer(module: str) -> int:
    best, level = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    assert level is not None, f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)"
    return level


def test_every_module_has_a_layer():
    for module in PATHS:
        layer(module)


def test_no_import_circles():
    graph = {m: sorted({t for t, _, _ in targets if t in PATHS and t != m}) for m, targets in EDGES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_upward_imports():
    bad = [f"{PATHS[m].relative_to(ROOT.parent)}:{line}: {m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
           for m, targets in EDGES.items() for t, _, line in targets if layer(t) > layer(m)]
    assert not bad, "imports of a higher layer:\n" + "\n".join(bad)


def test_no_private_names_cross_packages():
    bad = []
    for m, targets in EDGES.items():
        own = _package_of(m, PATHS[m])
        for t, names, line in targets:
            if t not in PATHS:
                continue
            home = _package_of(t, PATHS[t])
            if home == own:
                continue
            private_module = any(part.startswith("_") and part != "__init__" for part in t.split(".")[1:])
            private_names = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private_module or private_names:
                bad.append(f"{PATHS[m].relative_to(ROOT.parent)}:{line}: {m} imports "
                           f"{t}{(' ' + ', '.join(private_names)) if private_names else ''}")
    assert not bad, "private names used across packages:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    ("from servopt.model import Model", [("servopt.model", ("Model",), 1)]),
    ("def f():\n    from . import x", [("servopt.formulations", ("x",), 2)]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import servopt.solve", [("typing", ("TYPE_CHECKING",), 1)]),
])
def test_the_walk_sees_function_level_and_relative_imports_and_skips_type_checking(source, expected):
    assert _imports(ast.parse(source), "servopt.formulations") == expected


# ---------------------------------------------------------------------------------------------------------------
# 4. no switches on problem-kind strings outside formulations/


def _problem_kinds() -> frozenset[str]:
    """The keys of ``PROBLEM_KINDS`` in formulations/registry.py, read from its source."""
    tree = ast.parse((ROOT / "formulations" / "registry.py").read_text())
    for node in ast.walk(tree):
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == "PROBLEM_KINDS" and isinstance(node.value, ast.Dict):
            return frozenset(k.value for k in node.value.keys if isinstance(k, ast.Constant))
    raise AssertionError("formulations/registry.py: no PROBLEM_KINDS dict literal")


PROBLEM_KIND_NAMES = _problem_kinds()

#: comparisons on a ``kind`` of another vocabulary (not a problem kind), by file and source text
OTHER_KINDS = {
    ("servopt/serving/tritonserver.py", "group.kind == mc.ModelInstanceGroup.KIND_GPU"),  # Triton instance kind
    ("servopt/serving/verify.py", "g.kind == mc.ModelInstanceGroup.KIND_GPU"),  # Triton instance kind
    ("servopt/cli/import_.py", "_ALIASES.get(args.kind, args.kind)"),  # the importer's format (perf-analyzer, ...)
}

_VALUE_TESTS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)  # ``is`` compares identities (types, enums), not strings


def _literals(node: ast.AST, constants: dict[str, frozenset]) -> frozenset | None:
    """The string constants ``node`` stands for (a literal, a literal collection, a module constant), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return frozenset([node.value])
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        values = [_literals(e, constants) for e in node.elts]
        return None if any(v is None for v in values) else frozenset().union(*values)
    if isinstance(node, ast.Starred):
        return _literals(node.value, constants)
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _is_kind(node: ast.AST) -> bool:
    """``x.kind``, ``getattr(x, "kind"...)`` or a variable named ``kind`` / ``kinds``."""
    if isinstance(node, ast.Attribute):
        return node.attr == "kind"
    if isinstance(node, ast.Name):
        return node.id in ("kind", "kinds")
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "kind")


def kind_switches(source: str) -> list[tuple[int, str]]:
    """(line, source text) of every comparison, match or lookup on a problem kind in ``source``."""
    tree = ast.parse(source)
    constants: dict[str, frozenset] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            values = _literals(node.value, constants)
            for t in targets:
                if isinstance(t, ast.Name) and values is not None:
                    constants[t.id] = values
    found = []
    for node in ast.walk(tree):
        bad = False
        if isinstance(node, ast.Compare) and any(isinstance(op, _VALUE_TESTS) for op in node.ops):
            operands = [node.left, *node.comparators]
            literals = [_literals(o, constants) for o in operands]
            if any(v is not None and v & PROBLEM_KIND_NAMES for v in literals):
                bad = True
            elif any(_is_kind(o) for o in operands):
                # a kind of another vocabulary compared with its own literals ("KIND_GPU", "int") is fine
                bad = not any(v is not None and v for v in literals)
        elif isinstance(node, ast.MatchValue):
            bad = bool((_literals(node.value, constants) or frozenset()) & PROBLEM_KIND_NAMES)
        elif isinstance(node, ast.Subscript):
            bad = _is_kind(node.slice)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            bad = bool(node.args) and _is_kind(node.args[0])
        if bad:
            found.append((node.lineno, ast.get_source_segment(source, node) or ""))
    return found


def test_no_switches_on_problem_kind_strings():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        if (ROOT / "formulations") in path.parents:
            continue
        rel = path.relative_to(ROOT.parent).as_posix()
        for line, text in kind_switches(path.read_text()):
            if (rel, text) not in OTHER_KINDS:
                bad.append(f"{rel}:{line}: {text}")
    assert not bad, ("switches on problem-kind strings outside servopt/formulations/ (dispatch on the plan's or "
                     "problem's type instead; docs/architecture.md):\n" + "\n".join(bad))


def test_other_kinds_allowlist_is_current():
    """Every allowlisted comparison still exists (a stale entry would hide a new one)."""
    for rel, text in OTHER_KINDS:
        assert text in [t for _, t in kind_switches((ROOT.parent / rel).read_text())], (rel, text)


@pytest.mark.parametrize("source", [
    'if problem.kind == "min_gpus": pass',
    'if kind in ("min_gpus", "max_throughput"): pass',
    'GPU = ("min_gpus", "max_throughput")\nKINDS = (*GPU, "pipeline")\nif k not in KINDS: pass',
    'if "pipeline" != deployment.kind: pass',
    'if getattr(problem, "kind", None) in kinds: pass',
    'if kind not in kinds: pass',
    'f = BUILDERS[problem.kind]',
    'f = BUILDERS.get(plan.kind)',
    'f = BUILDERS[kind]',
    'match problem.kind:\n    case "variant_selection": pass',
])
def test_kind_switches_are_found(source):
    assert kind_switches(source), source


@pytest.mark.parametrize("source", [
    'label = "pipeline"',
    'msg = f"a {problem.kind} plan"',
    'out = {"problem": problem.kind}',
    'if group.kind == "KIND_GPU": pass',
    'KINDS = ("perf-analyzer", "ipa")\nif kind not in KINDS: pass',
    'if spec.kind == "int": pass',
    'if isinstance(plan, GPUPlan): pass',
    'if kind is float: pass',
])
def test_data_and_other_kinds_pass(source):
    assert not kind_switches(source), source
