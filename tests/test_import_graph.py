"""The package's layers (DESIGN.md section 1): no import cycles, late imports included; imports
point down the layer order; no module reaches into another's private names; modules stay small.

The graph is built with ``ast`` from every ``import`` in ``src/droplab``, at module level or
inside a function: a late import that dodges a cycle is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "droplab"

# Top to bottom. A module may import its own layer and the layers below it, never above.
LAYERS = (
    ("cli",),
    ("train", "replay", "ui", "verify", "api"),
    ("study", "compare"),
    ("tracking",),
    ("fit",),
    ("data",),
    ("render",),
    ("config",),
    ("tags", "metrics", "locks", "progress", "interrupts", "runtime", "optuna_compat"),
)
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The droplab modules that ``path`` imports (``from a import b`` counts ``a.b`` when it
    is a module, else ``a``)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, name, set(mods)) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
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
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself
    for depth, names in enumerate(LAYERS):
        if parts[1] in names:
            return depth
    raise AssertionError(f"{module} is in no layer of DESIGN.md section 1: add it to LAYERS")


def test_the_cycle_finder_finds_a_cycle() -> None:
    # the checker itself: a -> b -> c -> a is one cycle, d -> a is not part of it
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_counting_imports_inside_functions() -> None:
    # every import counts, a late one too: the package has no cycle
    assert cycles(graph()) == []


def test_imports_only_point_down_the_layers() -> None:
    upward = []
    for src, targets in graph().items():
        for dst in targets:
            here, there = layer(src), layer(dst)
            if here is not None and there is not None and there < here:
                upward.append(f"{src} (layer {here}) imports {dst} (layer {there})")
    # a module imports its own layer or the ones below it, never one above
    assert upward == []


def test_no_module_imports_another_modules_private_names() -> None:
    reach_ins = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("droplab"):
                reach_ins += [f"{name}: {a.name}" for a in node.names if a.name.startswith("_")]
    # public seams only: nobody imports another module's _private names
    assert reach_ins == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_stays_under_the_size_limit(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    # DESIGN.md: modules stay under ~300 lines, 400 at most
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_few_modules_at_the_package_root() -> None:
    root = [p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    # the ground vocabulary and the one-command modules, about ten, stay at the root
    assert len(root) <= 12, root
