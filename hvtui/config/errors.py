"""Config mistakes: the "did you mean" hints, and ``Problems``, which collects every mistake
found in a file so that one ``ConfigError`` reports them all."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from hvtui.errors import ConfigError


def close_match(value: str, known: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(value: str, known: Sequence[str], what: str) -> str:
    """``"; did you mean 'prod'?"``, or the list of what is configured when nothing is close."""
    close = close_match(value, known)
    if close:
        return f"; did you mean '{close}'?"
    return f" (configured {what}: {', '.join(known) or 'none'})"


def unknown_key_message(key: str, allowed: Sequence[str]) -> str:
    close = close_match(key, allowed)
    if close:
        return f"unknown key; did you mean '{close}'?"
    return f"unknown key; expected one of: {', '.join(allowed)}"


class Problems:
    """Every mistake found in one file, each a line ``<file>:<line>: <key path>: <message>``.

    One mistake is raised as that line alone; several as a summary line
    (``<file>: 3 errors``) followed by one line each, in file order: the CLI joins the
    lines with " / " on its one-line error, ``hvtui config check`` prints them as they are.
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        self._found: list[tuple[int, str]] = []

    def add(self, line: int, text: str) -> None:
        """``text`` is the whole line, starting with the file and line."""
        if (line, text) not in self._found:  # a merged (<<) node read twice reports once
            self._found.append((line, text))

    def __len__(self) -> int:
        return len(self._found)

    def error(self) -> ConfigError:
        lines = [text for _line, text in sorted(self._found, key=lambda found: found[0])]
        if len(lines) == 1:
            return ConfigError(lines[0])
        return ConfigError("\n".join([f"{self.file}: {len(lines)} errors", *lines]))

    def raise_if_any(self) -> None:
        if self._found:
            raise self.error()
