"""The progress line every long CLI command shows on stderr (backup, restore, verify, prune,
checkpoint apply and delete, resumed jobs).

On a terminal one line is redrawn in place, at most ten times a second and always on a new
phase. Anywhere else (cron, a pipe, a log file) one line is written per phase, so logs stay
short and still say how far a run got.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

import humanize
from rich.cells import set_cell_size  # cells, not characters: wide names must not wrap

from hvtui.events import Progress
from hvtui.policy import size_text
from hvtui.text import display_text

REDRAW_INTERVAL = 0.1  # seconds between redraws of the same phase: a slow SSH link keeps up
BAR_CELLS = 20


class ProgressLine:
    """A progress listener (``Callable[[Progress], None]``) that draws on ``stream``.

    Called from worker or notifier threads; ``close`` ends the line once the work is over.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        title: str = "",
        monotonic: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        """``enabled=False``: draw nothing (``--json`` runs keep stderr for errors only)."""
        self.stream = stream or sys.stderr
        self.title = title
        self.enabled = enabled
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._monotonic = monotonic
        self._phase: str | None = None
        self._last_draw = 0.0
        self._drawn = False
        self._lock = threading.Lock()

    def __call__(self, event: Progress) -> None:
        if not self.enabled:
            return
        now = self._monotonic()
        with self._lock:
            new_phase = event.phase != self._phase
            self._phase = event.phase
            if self.interactive:
                if not new_phase and now - self._last_draw < REDRAW_INTERVAL:
                    return
                self._last_draw = now
                # One cell short of the width: a line that reaches the last column wraps on some terminals.
                line = set_cell_size(display_text(self.render(event)), self._width() - 1).rstrip()
                self.stream.write("\r\x1b[K" + line)
                self._drawn = True
            elif new_phase:
                prefix = f"{self.title}: " if self.title else ""
                line = f"{prefix}{event.phase}" + (f": {event.message}" if event.message else "")
                self.stream.write(display_text(line) + "\n")
            else:
                return
            self.stream.flush()

    def _width(self) -> int:
        """The width of the terminal the line is drawn on (stdout may be a file: ``--json > x``).
        A line that wraps could not be redrawn in place."""
        try:
            return max(10, os.get_terminal_size(self.stream.fileno()).columns)
        except (AttributeError, OSError, ValueError):
            return 80

    @staticmethod
    def render(event: Progress) -> str:
        """``backup [#####...............]  25%  256.0 MiB/1.0 GiB  100.0 MiB/s  ETA 7 seconds ...``"""
        parts = [event.phase]
        fraction = event.fraction
        if fraction is not None:
            filled = int(fraction * BAR_CELLS)
            parts.append(f"[{'#' * filled}{'.' * (BAR_CELLS - filled)}] {fraction * 100:3.0f}%")
        if event.total:
            parts.append(f"{size_text(event.done)}/{size_text(event.total)}")
        elif event.done:
            parts.append(size_text(event.done))
        if event.rate:
            parts.append(f"{size_text(event.rate)}/s")
        if event.eta is not None and fraction is not None and fraction < 1:
            parts.append(f"ETA {humanize.naturaldelta(event.eta)}")
        if event.bytes_new:
            parts.append(f"new {size_text(event.bytes_new)}")
        if event.bytes_stored:
            parts.append(f"stored {size_text(event.bytes_stored)}")
        if event.dedup_ratio is not None:
            parts.append(f"dedup {event.dedup_ratio:.2f}x")
        if event.compression_ratio is not None:
            parts.append(f"lz4 {event.compression_ratio:.2f}x")
        if event.current:
            parts.append(event.current)
        elif event.message:
            parts.append(event.message)
        return "  ".join(parts)

    def close(self) -> None:
        """End a redrawn line, so what is printed next starts on its own line."""
        with self._lock:
            if self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False
