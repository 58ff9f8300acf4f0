"""A real PowerShell grammar for the tests: no PowerShell runs here, and a syntax error in a template
or a host-setup snippet would otherwise only show on a customer's host.

The grammar is the airbus-cert tree-sitter-powershell, taken from PyPI as a prebuilt manylinux wheel
(the same grammar and release as the npm package, without an npm or gcc step) and loaded by
py-tree-sitter; both are pinned in the ``[test]`` extra.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

try:
    import tree_sitter_powershell
    from tree_sitter import Language, Node, Parser
except ImportError as error:  # a missing grammar must fail the run, never skip it
    raise ImportError(
        f"the PowerShell grammar tests need the packages tree-sitter and tree-sitter-powershell ({error}); "
        "install the test extra: .venv/bin/pip install -e '.[test]'"
    ) from error

_parser = Parser(Language(tree_sitter_powershell.language()))


@dataclass(frozen=True)
class SyntaxProblem:
    """One place the grammar could not read: 1-based line and column, and the text there."""

    line: int
    column: int
    snippet: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.snippet}"


def parse(source: str) -> Node:
    return _parser.parse(source.encode("utf-8")).root_node


def _walk(root: Node) -> Iterator[Node]:
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def _position(source: bytes, node: Node) -> tuple[int, int, str]:
    """Line, column and text of a node, skipping the blanks an ERROR node can start with."""
    start = node.start_byte
    while start < node.end_byte and source[start : start + 1] in (b" ", b"\t"):
        start += 1
    line = source.count(b"\n", 0, start) + 1
    column = start - (source.rfind(b"\n", 0, start) + 1) + 1
    return line, column, source[start:node.end_byte].decode("utf-8", "replace")


def syntax_problems(source: str) -> list[SyntaxProblem]:
    """Every ERROR node and every zero-width MISSING node (tree-sitter reports an unclosed block as a
    MISSING ``}``, not as an ERROR), in source order."""
    data = source.encode("utf-8")
    problems = []
    for node in _walk(parse(source)):
        if node.type == "ERROR":
            line, column, text = _position(data, node)
            first_line = text.splitlines()[0] if text.strip() else repr(text)
            problems.append(SyntaxProblem(line, column, first_line[:80]))
        elif node.is_missing:
            line, column, _ = _position(data, node)
            problems.append(SyntaxProblem(line, column, f"missing {node.type!r}"))
    return sorted(problems, key=lambda p: (p.line, p.column))


_FENCE = re.compile(r"^```powershell[ \t]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class FencedBlock:
    """A ```powershell block of a Markdown file; ``line`` is the file line of its first code line."""

    path: Path
    line: int
    text: str

    def place(self, problem: SyntaxProblem) -> str:
        return f"{self.path.name}:{self.line + problem.line - 1}: {problem.snippet}"


def powershell_blocks(path: Path) -> list[FencedBlock]:
    text = path.read_text(encoding="utf-8")
    return [
        FencedBlock(path, text.count("\n", 0, match.start()) + 2, match.group(1)) for match in _FENCE.finditer(text)
    ]
