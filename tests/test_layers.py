"""The package's layers stay apart: no import cycle, no upward import, no module over 500 lines.

Imports are read from the source (nothing is imported), every kind counts: at module level, inside
functions and under ``if TYPE_CHECKING:`` alike, because each is a dependency a reader must follow.
The layers and the reasons for them are in docs/architecture.md.
"""

from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

import pytest

# Bottom to top; a module may import its own layer and the layers below it.  The first
# matching prefix (the longest) decides a module's layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",
        (
            "hvtui",
            "hvtui.errors",
            "hvtui.model",
            "hvtui.events",
            "hvtui.clock",
            "hvtui.paths",
            "hvtui.files",
            "hvtui.logsetup",
            "hvtui.journal",
            "hvtui.audit",
            "hvtui.text",
        ),
    ),
    ("config", ("hvtui.config", "hvtui.secrets")),
    ("hosts", ("hvtui.hosts", "hvtui.wire")),
    ("inventory", ("hvtui.inventory",)),
    ("policy", ("hvtui.policy",)),
    ("engine", ("hvtui.engine",)),
    ("services", ("hvtui.actions", "hvtui.backups", "hvtui.changes", "hvtui.notify", "hvtui.schedules")),
    ("jobs", ("hvtui.jobs",)),
    ("core", ("hvtui.core",)),
    ("entry points", ("hvtui.commands", "hvtui.tui", "hvtui.cli", "hvtui.__main__")),
)
MAX_LINES = 500
PACKAGE = Path(__file__).resolve().parent.parent / "hvtui"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (each resolved to the deepest known module)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            # A module's own packages run before it anyway: not an edge.
            if target and target != name and not name.startswith(target + "."):
                out.add(target)
    return out


def layer_of(name: str) -> int:
    """The rank of ``name``'s layer in LAYERS, or -1 when no layer names it.

    A prefix covers the module and everything below it; the package root ``hvtui`` (its
    ``__init__``) covers only itself.
    """
    best, best_len = -1, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            covers = name == prefix or (prefix != "hvtui" and name.startswith(prefix + "."))
            if covers and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    return best


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: imported_modules(path, name, known) for name, path in modules.items()}


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in package_modules() if layer_of(name) < 0]
    assert not unplaced, f"place these modules in a layer (tests/test_layers.py, docs/architecture.md): {unplaced}"


def test_no_upward_import() -> None:
    upward = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    try:
        tuple(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def test_nothing_below_the_console_imports_textual() -> None:
    # Everything below the console is imported, run and tested without Textual.
    offenders = []
    for name, path in package_modules().items():
        if name.startswith("hvtui.tui"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            else:
                continue
            if any(m == "textual" or m.startswith("textual.") for m in modules):
                offenders.append(name)
    assert not offenders, f"only hvtui.tui may import textual: {sorted(set(offenders))}"


def test_no_module_over_the_size_limit() -> None:
    too_long = {
        str(path.relative_to(PACKAGE.parent)): count
        for path in package_modules().values()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, f"modules over {MAX_LINES} lines (split them along their seams): {too_long}"


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above would pass on an empty graph; this shows they read real imports."""
    fake = tmp_path / "hvtui"
    (fake / "hosts").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "hosts" / "__init__.py").write_text("")
    (fake / "errors.py").write_text("from hvtui.core import Core\n")
    (fake / "core.py").write_text("def f():\n    from hvtui.errors import X\n")
    (fake / "hosts" / "lab.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hvtui.jobs import J\n")
    (fake / "jobs.py").write_text("from . import errors\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    graph = import_graph()
    assert graph["hvtui.errors"] == {"hvtui.core"}
    assert graph["hvtui.core"] == {"hvtui.errors"}
    assert graph["hvtui.hosts.lab"] == {"hvtui.jobs"}
    assert graph["hvtui.jobs"] == {"hvtui.errors"}
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycle()
    with pytest.raises(AssertionError, match=r"hvtui.hosts.lab \(hosts\) imports hvtui.jobs \(jobs\)"):
        test_no_upward_import()
