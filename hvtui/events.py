"""The one progress event type every long operation reports through.

Merges, backups, restores, verify and prune all call a ``ProgressCallback`` with
``Progress`` values; the console, the CLI progress bar, the job journal and the tests
consume the same events.  ``CancelToken`` is how callers stop a long operation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from hvtui.errors import Cancelled


@dataclass(frozen=True, slots=True)
class Progress:
    phase: str  # e.g. "checkpoint", "scan", "backup", "merge", "restore", "verify", "cleanup", "done"
    # (and COMMITTED_PHASE: the result is durable, ``current`` names it; the job journal keeps it)
    message: str = ""
    current: str | None = None  # current file or item
    done: int = 0  # bytes (or items) done in this phase
    total: int | None = None  # None when unknown
    bytes_new: int = 0  # bytes not already in the repository
    bytes_stored: int = 0  # bytes written to the repository after compression
    rate: float | None = None  # bytes per second
    eta: float | None = None  # seconds
    dedup_ratio: float | None = None
    compression_ratio: float | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[Progress], None]

# The phase an operation reports once its result is durable, ``current`` naming it (a backup:
# its restore point id, right after the manifest is committed and before the clean-up).  The
# job journal records it, so a process killed after it still shows what it had done.
COMMITTED_PHASE = "committed"


def no_progress(_event: Progress) -> None:
    """A progress callback that ignores events."""


class CancelToken:
    """A thread-safe cancellation flag passed into long operations."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise ``Cancelled`` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True if cancelled meanwhile."""
        return self._event.wait(seconds)
