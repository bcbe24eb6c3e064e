"""The import rules that keep each layer ownable, checked on the source (every import, module-level or
inside a function, so that no deferred import can hide a cycle).

- model imports only errors (and model);
- adapters import only errors, results and adapters;
- the host pipeline (engine.host) and the rollout (engine.rollout) never import the store: they reach
  it through their ports;
- app never imports workflows, cli or context;
- only cli, workflows.tasks, workflows.worker and the lab import context (the composition root);
- no cycles at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "orchestrator"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The orchestrator modules ``path`` imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("orchestrator.") or name == "orchestrator":
                found.add(name)
    found.discard(module_name(path))
    return found - {"orchestrator"}


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def offenders(sources: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{mod} imports {dep}"
        for mod, deps in GRAPH.items()
        if under(mod, *sources)
        for dep in deps
        if not under(dep, *allowed)
    )


def forbidden(sources: tuple[str, ...], banned: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{mod} imports {dep}"
        for mod, deps in GRAPH.items()
        if under(mod, *sources)
        for dep in deps
        if under(dep, *banned)
    )


PKG = "orchestrator"


def test_the_graph_sees_the_whole_package() -> None:
    assert len(MODULES) > 50 and f"{PKG}.engine.host.machine" in GRAPH
    assert f"{PKG}.model.spec" in GRAPH[f"{PKG}.model.resolve"]  # a control: edges are found


def test_model_imports_only_errors_and_itself() -> None:
    assert offenders((f"{PKG}.model",), (f"{PKG}.model", f"{PKG}.errors", f"{PKG}.results")) == []


def test_adapters_import_only_errors_results_and_adapters() -> None:
    assert offenders((f"{PKG}.adapters",), (f"{PKG}.adapters", f"{PKG}.errors", f"{PKG}.results")) == []


def test_the_engine_reaches_the_store_only_through_its_ports() -> None:
    assert forbidden((f"{PKG}.engine",), (f"{PKG}.store",)) == []


def test_the_application_layer_does_not_reach_up() -> None:
    assert forbidden((f"{PKG}.app",), (f"{PKG}.workflows", f"{PKG}.cli", f"{PKG}.context")) == []


def test_only_the_entry_points_import_the_composition_root() -> None:
    users = sorted(mod for mod, deps in GRAPH.items() if f"{PKG}.context" in deps)
    entry = (
        f"{PKG}.cli",
        f"{PKG}.cli_schedule",
        f"{PKG}.cli_audit",
        f"{PKG}.workflows.tasks",
        f"{PKG}.workflows.worker",
        f"{PKG}.lab",
    )
    assert [u for u in users if not under(u, *entry)] == []


def cycles() -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(GRAPH.get(node, ())):
            if state.get(dep) == 1:
                found.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles_even_through_deferred_imports() -> None:
    assert cycles() == []


@pytest.mark.parametrize("package", ["engine", "app"])
def test_engine_and_application_modules_stay_small(package: str) -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / package).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 300
    }
    assert big == {}


def test_only_the_composition_root_and_the_store_open_a_store() -> None:
    """``Store(...)`` runs the migrations: one place builds it (context), besides the store package."""
    openers = sorted(
        name
        for name, path in MODULES.items()
        if not under(name, f"{PKG}.store", f"{PKG}.context")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Store"
    )
    assert openers == []


def _named(node: ast.expr, *names: str) -> bool:
    """``node`` is a plain name or an attribute called one of ``names`` (``progress``, ``x.progress``)."""
    return (isinstance(node, ast.Name) and node.id in names) or (
        isinstance(node, ast.Attribute) and node.attr in names
    )


def test_only_the_progress_module_reads_progress_keys() -> None:
    """The stored progress is typed in ``model.progress``; nobody else indexes it or calls .get on it."""
    readers = sorted(
        name
        for name, path in MODULES.items()
        if name != f"{PKG}.model.progress"
        for node in ast.walk(ast.parse(path.read_text()))
        if (isinstance(node, ast.Subscript) and _named(node.value, "progress"))
        or (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and _named(node.func.value, "progress")
        )
    )
    assert readers == []


def test_no_code_reads_meaning_from_a_reason_text() -> None:
    """Why a rollout is paused is ``pause_cause``: rewording a message must never change behaviour."""
    readers = sorted(
        name
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("startswith", "endswith")
        and _named(node.func.value, "reason", "detail", "why")
    )
    assert readers == []
