"""A real PowerShell grammar for the tests: no PowerShell runs here, and a syntax error in a template
or a host-setup snippet would otherwise only show on a customer's host.

The grammar is the airbus-cert tree-sitter-powershell, taken from PyPI as a prebuilt manylinux wheel
(the same grammar and release as the npm package, without an npm or gcc step) and loaded by
py-tree-sitter; both are pinned in the ``[test]`` extra.  The parse tree also shows the PowerShell 7-only
forms that Windows PowerShell 5.1 would refuse, and the checks here say where the grammar is blind.
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


# Parameters that exist only from PowerShell 6/7 on: 5.1 stops the script with "A parameter cannot be
# found that matches parameter name" (winrm.md section 3 for the JSON ones).  Full names only: an
# abbreviation (``-AsHash``) is not recognised.
PS7_ONLY_PARAMETERS = {
    "convertto-json": {"asarray", "enumsasstrings", "escapehandling"},
    "convertfrom-json": {"ashashtable", "depth", "noenumerate"},
    "foreach-object": {"parallel", "throttlelimit", "asjob"},
    "get-content": {"asbytestream"},
    "set-content": {"asbytestream"},
    "invoke-webrequest": {"skipcertificatecheck"},
    "invoke-restmethod": {"skipcertificatecheck"},
}
PS7_ONLY_PARAMETERS["%"] = PS7_ONLY_PARAMETERS["foreach"] = PS7_ONLY_PARAMETERS["foreach-object"]


def _ps7_operator(data: bytes, error: Node) -> str | None:
    """What the ``?`` an ERROR node starts with was meant to be (the grammar has no ``?`` operator;
    ``?`` as the Where-Object alias parses as a command and never lands in an ERROR)."""
    text = data[error.start_byte : error.end_byte]
    if not text.strip().startswith(b"?"):
        return None
    at = error.start_byte + text.index(b"?")
    after = data[at : at + 3]
    if after.startswith(b"??="):
        return "null-coalescing assignment '??='"
    if after.startswith(b"??"):
        return "null-coalescing operator '??'"
    if after[1:2] in (b".", b"["):
        return f"null-conditional operator '{after[:2].decode()}'"
    return "ternary operator '? :'"


def powershell7_only_syntax(source: str) -> list[SyntaxProblem]:
    """Forms PowerShell 7 runs and Windows PowerShell 5.1 refuses: the pipeline chain operators
    ``&&``/``||`` (the grammar accepts them, so a parse check cannot see them); ``??``, ``??=``, ``?.``,
    ``?[`` and the ternary ``a ? b : c`` (the grammar leaves them as unnamed ERROR nodes); and the
    PowerShell-7-only parameters above.  Found in the parse tree, so the same characters in a string or
    a comment do not count."""
    data = source.encode("utf-8")
    found = []
    seen_errors: set[int] = set()
    for node in _walk(parse(source)):
        if node.type in ("&&", "||") and node.parent is not None and node.parent.type == "pipeline_chain_tail":
            line, column, _ = _position(data, node)
            found.append(SyntaxProblem(line, column, f"pipeline chain operator '{node.type}'"))
        elif node.type == "ERROR" and not any(child.type == "ERROR" for child in node.children):
            what = _ps7_operator(data, node)
            if what is not None and node.start_byte not in seen_errors:
                seen_errors.add(node.start_byte)
                line, column, _ = _position(data, node)
                found.append(SyntaxProblem(line, column, what))
        elif node.type == "command":
            name_node = node.child_by_field_name("command_name")
            if name_node is None:
                continue
            name = (name_node.text or b"").decode("utf-8").rsplit("\\", 1)[-1].lower()
            for parameter in _walk(node):
                if parameter.type != "command_parameter" or _enclosing_command(parameter) != node:
                    continue
                flag = (parameter.text or b"").decode("utf-8").lstrip("-").rstrip(":").lower()
                if flag in PS7_ONLY_PARAMETERS.get(name, ()):
                    line, column, text = _position(data, parameter)
                    found.append(SyntaxProblem(line, column, f"PowerShell 7 parameter {name_node.text.decode()} {text}"))
    return sorted(found, key=lambda p: (p.line, p.column))


def _enclosing_command(node: Node) -> Node | None:
    parent = node.parent
    while parent is not None and parent.type != "command":
        parent = parent.parent
    return parent


# PowerShell's tokenizer takes these as quotes and dashes (SpecialChars in its parser); the grammar does
# not, so where one stands the grammar's verdict is not PowerShell's (a smart quote can end a string
# for PowerShell that the grammar reads on through).  A word processor or a Markdown renderer makes them.
PS_QUOTES_AND_DASHES = {
    "\u2018": "left single quotation mark",
    "\u2019": "right single quotation mark",
    "\u201a": "single low-9 quotation mark",
    "\u201b": "single high-reversed-9 quotation mark",
    "\u201c": "left double quotation mark",
    "\u201d": "right double quotation mark",
    "\u201e": "double low-9 quotation mark",
    "\u2013": "en dash",
    "\u2014": "em dash",
    "\u2015": "horizontal bar",
}


def quotes_and_dashes_the_grammar_misses(source: str) -> list[SyntaxProblem]:
    """Each character PowerShell reads as a quote or a dash though the grammar does not."""
    found = []
    for number, line in enumerate(source.splitlines(), start=1):
        for column, char in enumerate(line, start=1):
            if char in PS_QUOTES_AND_DASHES:
                found.append(SyntaxProblem(number, column, f"U+{ord(char):04X} {PS_QUOTES_AND_DASHES[char]}"))
    return found


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
