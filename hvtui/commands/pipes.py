"""Standard output that a reader closing early (`hvtui check | head -1`) cannot disturb.

A monitoring system or a script reads the exit code; `head` closing the pipe must not
change it (nor make it depend on how much was written before the reader left).  Like
well-behaved Unix filters, the rest of the output is dropped silently and the command
runs to its end: its exit code is the one it would have had unpiped.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO


class ClosedPipeGuard:
    """Wraps a text stream; after the first ``BrokenPipeError`` writes go to /dev/null."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop_rest()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop_rest()

    def _drop_rest(self) -> None:
        self.reader_gone = True
        # Whatever is still buffered (and the interpreter's flush at exit) goes nowhere,
        # instead of raising the broken pipe again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding...: the stream's
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_stdout() -> Iterator[ClosedPipeGuard]:
    """``sys.stdout`` guarded for the duration (and flushed under the guard at the end)."""
    original = sys.stdout
    guard = ClosedPipeGuard(original)
    sys.stdout = guard  # type: ignore[assignment]
    try:
        yield guard
    finally:
        guard.flush()
        sys.stdout = original
