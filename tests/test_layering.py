"""The layout's rules, read from the source (an AST walk over ``servopt/``; nothing is imported).

1. No import circle between modules.
2. No module imports a higher layer (the table below; docs/architecture.md explains it).
3. No private name or private module of one package is imported from another package.

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
    ("servopt.exceptions", "servopt.fields", "servopt.exact", "servopt.documents", "servopt.atomic", "servopt.lp_format"),
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
