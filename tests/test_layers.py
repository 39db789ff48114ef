"""The house's walls: no import cycles (lazy imports inside functions included), the plugin SDK
sits below the core, and flavors use only the SDK and the public API."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: What a flavor may build on: the plugin SDK. None of it may import the core that uses it.
SDK = {"modelpack.flavor", "modelpack.errors", "modelpack.descriptor", "modelpack.python_model",
       "modelpack.float_rows", "modelpack.signature", "modelpack.signature_inference"}


def _modules() -> dict[str, Path]:
    found = {}
    for base, package in ((ROOT / "modelpack", "modelpack"), (ROOT / "flavors", "modelpack.flavors")):
        for path in base.rglob("*.py"):
            parts = [package, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _graph() -> dict[str, set[str]]:
    """module -> the modelpack modules it imports anywhere in its body (``import modelpack`` alone not counted)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target not in (name, "modelpack"):
                    deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_plugin_sdk_does_not_call_up_into_the_core():
    graph = _graph()
    for module in SDK:
        assert graph[module] <= SDK, f"{module} imports {sorted(graph[module] - SDK)}"


def test_flavors_use_only_the_sdk():
    graph = _graph()
    flavors = [m for m in graph if m.startswith("modelpack.flavors.")]
    assert "modelpack.flavors.sklearn" in flavors
    for module in flavors:
        assert graph[module] <= SDK, f"{module} imports {sorted(graph[module] - SDK)}"
