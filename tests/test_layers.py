"""The layers import only downward (curation < routing < training < app) and project modules
import each other without cycles: every import counts, at module level and inside functions."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("curation", "routing", "training", "app")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_name(path): path for layer in LAYERS for path in sorted((ROOT / layer).rglob("*.py"))
}


def _resolve(name: str) -> str | None:
    """The project module an imported name lives in (``curation.store.Store`` -> its module)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def _imports(module: str) -> Iterator[tuple[str, int]]:
    """(imported project module, line) for every import statement anywhere in ``module``."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [base])])
            # ``from pkg import sub`` imports pkg and, where it is a module, pkg.sub
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in {_resolve(name) for name in names} - {None, module}:
            yield target, node.lineno


EDGES = {module: sorted(set(_imports(module))) for module in MODULES}


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_the_walk_sees_imports_inside_functions():
    """The walk is not fooled by lazy imports: a function-level import is an edge like any other."""
    lazy = {target for target, _ in EDGES["app.cli_team"]}  # assign_cmd imports curation.queues
    assert "curation.queues" in lazy and "app.cli" in lazy
    assert len(MODULES) > 50


def test_no_layer_imports_a_layer_above_it():
    """curation imports nothing of routing, training or app; routing nothing of training or app;
    training nothing of app."""
    violations = [
        f"{module} imports {target} ({MODULES[module].relative_to(ROOT)}:{line})"
        for module, edges in EDGES.items()
        for target, line in edges
        if _layer(target) > _layer(module)
    ]
    assert not violations, "imports against the layer order:\n" + "\n".join(violations)


def test_project_modules_import_each_other_without_cycles():
    """A cycle, even through an import inside a function, means a shared piece sits in the wrong
    module: move it down instead of importing lazily."""
    graph = {module: {target for target, _ in edges} for module, edges in EDGES.items()}
    line_of = {(m, t): line for m, edges in EDGES.items() for t, line in edges}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    cycles: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                loop = [*stack[stack.index(target) :], target]
                cycles.append(
                    " -> ".join(
                        f"{a} (line {line_of[a, b]})" for a, b in zip(loop, loop[1:], strict=False)
                    )
                    + f" -> {target}"
                )
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_two_test_modules_share_a_file_name():
    """pytest imports test files by their base name (the tests folders are not packages): two
    files of one name in different folders stop the whole run with an import mismatch."""
    tests = Path(__file__).resolve().parent
    names: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
