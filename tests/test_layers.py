"""The walls between layers, read from the code: every import of every module, lazy ones included.

components/ (reusable components) <- stacks/ (the Pulumi program) <- offline/ (mock engine, plan)
<- tools/ (operator tools): a layer imports only the layers before it. The policy pack runs in its
own environment and imports none of them. No import cycles among the project's modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("components", "stacks", "offline", "tools")
PACKAGES = (*LAYERS, "policies", "jobs")
# What each package may not import (anything of the project not listed is allowed).
FORBIDDEN = {
    "components": {"stacks", "offline", "tools", "policies"},
    "stacks": {"offline", "tools", "policies"},
    "offline": {"tools"},  # policies: offline.policies runs the pack over the mock engine's registrations
    "tools": {"policies"},
    "policies": {"components", "stacks", "offline", "tools"},
    # Runs alone in a container image (components/weights_copy.py ships the file): nothing of the project.
    "jobs": {"components", "stacks", "offline", "tools", "policies"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    modules = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    modules["__main__"] = ROOT / "__main__.py"
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """Project modules ``name`` imports (with the line of the first import), parent packages included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: dict[str, int] = {}

    def add(module: str, line: int) -> None:
        parts = module.split(".")
        for end in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            candidate = ".".join(parts[:end])
            # A module's own packages are already being imported when it runs: no edge to them.
            if candidate in modules and candidate != name and not name.startswith(candidate + "."):
                found.setdefault(candidate, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            add(module, node.lineno)
            for alias in node.names:  # `from stacks import config` imports the module stacks.config
                add(f"{module}.{alias.name}", node.lineno)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_scan_sees_the_program(graph):
    # Guards the scanner itself: if it stopped resolving imports, every wall would pass vacuously.
    assert "stacks.compose" in graph.get("stacks.program", {}), sorted(graph.get("stacks.program", {}))
    assert "components.vertex" in graph.get("stacks.compose", {}), sorted(graph.get("stacks.compose", {}))
    assert "stacks.catalog" in graph.get("stacks.resolve", {}), sorted(graph.get("stacks.resolve", {}))


@pytest.mark.parametrize("package", PACKAGES)
def test_layer_imports_only_what_it_may(graph, package):
    breaches = [
        f"{name} (line {line}) imports {target}"
        for name, targets in sorted(graph.items())
        if name.split(".")[0] == package
        for target, line in sorted(targets.items())
        if target.split(".")[0] in FORBIDDEN[package]
    ]
    assert not breaches, f"{package}/ must not import {sorted(FORBIDDEN[package])}:\n  " + "\n  ".join(breaches)


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles(graph):
    cycles = _cycles(graph)
    assert not cycles, "import cycles among project modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
