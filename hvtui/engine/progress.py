"""Throttled progress reporting shared by backup, restore, verify and prune."""

from __future__ import annotations

import threading
import time

from hvtui.events import Progress, ProgressCallback

DEFAULT_INTERVAL = 0.2  # seconds between events: smooth for a bar, cheap for a journal


class Meter:
    """Counters the pipeline threads bump; ``emit`` turns them into ``Progress`` events.

    Only the thread that called the operation emits, so callbacks never run on pipeline
    threads.  Ratios are factors >= 1: ``dedup_ratio`` = data bytes examined / new bytes,
    ``compression_ratio`` = new bytes / bytes stored.
    """

    def __init__(self, callback: ProgressCallback | None, interval: float = DEFAULT_INTERVAL) -> None:
        self.callback = callback
        self.interval = interval
        self.lock = threading.Lock()
        self.phase = ""
        self.message = ""
        self.current: str | None = None
        self.total: int | None = None
        self.done = 0
        self.data_bytes = 0  # non-zero bytes hashed
        self.bytes_new = 0
        self.bytes_stored = 0
        self._started = time.monotonic()
        self._last_emit = 0.0

    def start_phase(self, phase: str, total: int | None = None, message: str = "", current: str | None = None) -> None:
        with self.lock:
            self.phase = phase
            self.total = total
            self.done = 0
            self.message = message
            self.current = current
            self._started = time.monotonic()
        self.emit(force=True)

    def add(self, done: int = 0, data: int = 0, new: int = 0, stored: int = 0) -> None:
        with self.lock:
            self.done += done
            self.data_bytes += data
            self.bytes_new += new
            self.bytes_stored += stored

    def emit(self, force: bool = False, message: str | None = None) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last_emit < self.interval:
            return
        self._last_emit = now
        with self.lock:
            if message is not None:
                self.message = message
            elapsed = max(now - self._started, 1e-6)
            rate = self.done / elapsed if self.done else None
            eta = None
            if rate and self.total is not None:
                eta = max(0.0, (self.total - self.done) / rate)
            event = Progress(
                phase=self.phase,
                message=self.message,
                current=self.current,
                done=self.done,
                total=self.total,
                bytes_new=self.bytes_new,
                bytes_stored=self.bytes_stored,
                rate=rate,
                eta=eta,
                dedup_ratio=(self.data_bytes / self.bytes_new) if self.bytes_new else None,
                compression_ratio=(self.bytes_new / self.bytes_stored) if self.bytes_stored else None,
            )
        self.callback(event)
