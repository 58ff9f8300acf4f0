"""The job manager's parts each own their state: a private attribute a module's code uses
(``self._x``) is one that module defines, never one another module's class sets up (the
manager was once a mixin of the runner and the replay, which read and wrote its ``_cond``,
``_records``, ``_journal`` ... across three modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parent.parent / "hvtui" / "jobs"
MODULES = sorted(JOBS.rglob("*.py"))


def defined_private_names(tree: ast.Module) -> set[str]:
    """Private names a module gives a value: ``self._x = ...``, ``def _x``, ``_x = ...`` in a class."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_"):
            names.add(node.name)
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and (not isinstance(node, ast.AnnAssign) or node.value is not None):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                names.add(target.attr)
            elif isinstance(target, ast.Name):
                names.add(target.id)
    return {name for name in names if name.startswith("_")}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(JOBS)))
def test_a_jobs_module_uses_only_the_private_attributes_it_defines(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    defined = defined_private_names(tree)
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    }
    assert sorted(used - defined) == []
