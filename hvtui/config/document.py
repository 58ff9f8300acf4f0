"""The config file as PyYAML's node tree: values with their line numbers, and mistakes
reported against them.

The file is composed into nodes (safe loader: plain data, no Python objects) rather than
loaded straight into dicts, because nodes keep their line numbers: every mistake is
reported with the file, the line, the key path (``hosts[1].port``), what was expected and
what was found.  Mistakes are collected (``Problems``), not raised one at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from hvtui.config.errors import Problems
from hvtui.errors import ConfigError

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_MERGE = _TAG + "merge"
_WORD_BOOLEANS = ("on", "off", "yes", "no")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Located:
    """One value in the file: its node (for the line) and its key path (for the message)."""

    node: yaml.Node
    path: str

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1


def child_path(path: str, key: str) -> str:
    if _IDENTIFIER_RE.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'


def describe(node: yaml.Node) -> str:
    """What was found, for "expected ..., found ..." (a value is cut at 60 characters)."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    text = str(node.value)
    if len(text) > 60:
        text = text[:57] + "..."
    if node.tag == STR:
        return repr(text)
    if node.tag == NULL:
        return "nothing (an empty value)"
    kind = {INT: "an integer", FLOAT: "a number", BOOL: "a boolean"}.get(node.tag, "a value")
    return f"{text} ({kind})"


def syntax_error_text(file: Path, err: yaml.MarkedYAMLError) -> str:
    # Only the parser's problem and position: its snippet of the line could hold a secret.
    mark = err.problem_mark or err.context_mark
    line = f":{mark.line + 1}" if mark is not None else ""
    where = [f"column {mark.column + 1}"] if mark is not None else []
    if err.context and err.problem:
        started = err.context_mark
        since = f" that starts on line {started.line + 1}" if started is not None and started is not mark else ""
        where.append(f"{err.context}{since}")
    problem = err.problem or err.context or "invalid YAML"
    detail = f" ({', '.join(where)})" if where else ""
    return f"{file}{line}: YAML syntax error: {problem}{detail}"


def syntax_error(file: Path, err: yaml.MarkedYAMLError) -> ConfigError:
    return ConfigError(syntax_error_text(file, err))


class Document:
    """The file being read: turns nodes into values and mistakes into ``problems``."""

    def __init__(self, file: Path, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader
        self.problems = Problems(file)
        self._entries: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}

    # -- reporting -------------------------------------------------------------------
    def report(self, where: Located | yaml.Node, message: str) -> None:
        node = where.node if isinstance(where, Located) else where
        path = where.path if isinstance(where, Located) else ""
        line = node.start_mark.line + 1
        location = f"{self.file}:{line}"
        self.problems.add(line, f"{location}: {path}: {message}" if path else f"{location}: {message}")

    def expected(self, where: Located, what: str, hint: str = "") -> None:
        self.report(where, f"expected {what}, found {describe(where.node)}{hint}")

    # -- structure -------------------------------------------------------------------
    def entries(self, where: Located, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """Key -> (key node, value node) of a mapping with text keys, merge keys (``<<``)
        applied; None (reported) when the node is not a mapping.  A duplicate or non-text
        key is reported and left out."""
        node = where.node
        if not isinstance(node, yaml.MappingNode):
            self.expected(where, what)
            return None
        # Flattening merges keys into the node itself, so a second look must reuse the first.
        cached = self._entries.get(id(node))
        if cached is not None:
            return cached
        seen: dict[str, yaml.Node] = {}
        for key_node, _value in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.key_text(key_node, where.path)
            if key is None:
                continue
            if key in seen:
                self.report(
                    Located(key_node, child_path(where.path, key)),
                    f"duplicate key (first given on line {seen[key].start_mark.line + 1})",
                )
                continue
            seen[key] = key_node
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as err:
            raise syntax_error(self.file, err) from None
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:  # merged entries first, so the mapping's own win
            key = self.key_text(key_node, where.path, report=False)
            if key is not None:
                result[key] = (key_node, value_node)
        self._entries[id(node)] = result
        return result

    def key_text(self, key_node: yaml.Node, path: str, report: bool = True) -> str | None:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == BOOL and key_node.value.lower() in _WORD_BOOLEANS:
            return str(key_node.value)  # YAML 1.1 reads a bare `on:` key as true; as a key it is the word
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != STR:
            if report:
                self.report(Located(key_node, path), f"expected a text key, found {describe(key_node)}")
            return None
        return str(key_node.value)

    def sequence(self, where: Located, what: str) -> list[Located] | None:
        if not isinstance(where.node, yaml.SequenceNode):
            self.expected(where, what)
            return None
        return [Located(item, f"{where.path}[{index}]") for index, item in enumerate(where.node.value)]

    # -- scalars ---------------------------------------------------------------------
    def scalar(self, where: Located) -> object:
        """The node's Python value; a collection is returned as the node (the caller's type
        check rejects it); an invalid tagged scalar (e.g. ``!!int x``) is reported."""
        if not isinstance(where.node, yaml.ScalarNode):
            return where.node
        try:
            return self.loader.construct_object(where.node, deep=True)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            self.problems.add(mark.line + 1 if mark is not None else 0, syntax_error_text(self.file, err))
            return where.node

    @staticmethod
    def is_null(where: Located) -> bool:
        return isinstance(where.node, yaml.ScalarNode) and where.node.tag == NULL

    def resolve_path(self, text: str) -> Path:
        """``~`` is expanded; a relative path is taken from the config file's folder."""
        value = Path(text).expanduser()
        if not value.is_absolute():
            value = self.file.parent / value
        return value
