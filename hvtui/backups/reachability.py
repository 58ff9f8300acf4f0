"""Remembering that a repository's storage did not answer, so that it is not asked again at once.

A dead S3 endpoint costs every caller the storage client's retries (seconds each) before it
says so, and the console asks on every refresh (the ``:repos`` view, each VM's last backup,
the off-site copy findings).  After an unreachable answer the repository is held for a while
(``FIRST_HOLD``, doubling up to ``LONGEST_HOLD`` while it stays down): meanwhile every call
answers at once from memory, and one call tries again when the hold is over.  An explicit
action (a backup, restore or copy to it, a retry in ``:repos``, a CLI command) calls
``retry_now`` and tries at once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from hvtui.clock import Clock
from hvtui.config.timing import local_zone
from hvtui.engine.backends.base import Backend, BackendError, ObjectInfo, Payload
from hvtui.engine.backends.s3 import S3Backend

FIRST_HOLD = 60.0  # seconds
LONGEST_HOLD = 300.0


class HeldUnreachable(BackendError):
    """Answered from memory: the storage did not answer a moment ago and is not asked again yet."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(where, message, kind="unreachable")


@dataclass(frozen=True, slots=True)
class Down:
    """The last unreachable answer: when, why, and until when it is not asked again."""

    last_tried: datetime
    reason: str
    retry_at: datetime


class ReachabilityHold:
    """The unreachable state of one repository's storage (``where``); thread-safe."""

    def __init__(self, where: str, clock: Clock) -> None:
        self.where = where
        self._clock = clock
        self._lock = threading.Lock()
        self._down: Down | None = None
        self._next_hold = FIRST_HOLD
        self._trying = False  # a call is trying again after the hold: the others still answer from memory

    @property
    def down(self) -> Down | None:
        with self._lock:
            return self._down

    def retry_now(self) -> None:
        """An explicit action: the next call tries the storage at once (a failure holds it longer)."""
        with self._lock:
            if self._down is not None:
                self._down = Down(self._down.last_tried, self._down.reason, self._clock.now())

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """Around one call to the storage: raises at once while held; records how the call went."""
        self._enter()
        try:
            yield
        except BackendError as err:
            self._answered(err if err.kind == "unreachable" else None)
            raise
        except BaseException:
            self._answered(None, answered=False)
            raise
        self._answered(None)

    def _enter(self) -> None:
        with self._lock:
            down = self._down
            if down is None:
                return
            now = self._clock.now()
            if now < down.retry_at or self._trying:
                raise HeldUnreachable(self.where, self._held_message(down, now))
            self._trying = True

    def _answered(self, unreachable: BackendError | None, answered: bool = True) -> None:
        with self._lock:
            self._trying = False
            if unreachable is not None:
                now = self._clock.now()
                reason = str(unreachable).removeprefix(f"{unreachable.where}: ")
                self._down = Down(now, reason, now + timedelta(seconds=self._next_hold))
                self._next_hold = min(self._next_hold * 2, LONGEST_HOLD)
            elif answered:  # the storage answered (an error of its own is an answer too)
                self._down = None
                self._next_hold = FIRST_HOLD

    @staticmethod
    def _held_message(down: Down, now: datetime) -> str:
        when = down.last_tried.astimezone(local_zone()).strftime("%H:%M:%S")
        left = math.ceil((down.retry_at - now).total_seconds())
        retry = f"retrying in {left} s" if left > 0 else "retrying now"
        return f"unreachable (last tried {when}: {down.reason}; {retry})"


class HeldBackend(Backend):
    """A bucket's backend whose calls go through a ``ReachabilityHold``."""

    def __init__(self, inner: S3Backend, hold: ReachabilityHold) -> None:
        self.inner = inner
        self.hold = hold
        self.where = inner.where
        self.verifies_puts = inner.verifies_puts

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self.hold.attempt():
            yield from self.inner.list(prefix)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        with self.hold.attempt():
            return self.inner.get(key, offset, length)

    def put(self, key: str, data: Payload) -> None:
        with self.hold.attempt():
            self.inner.put(key, data)

    def put_if_absent(self, key: str, data: Payload) -> None:
        with self.hold.attempt():
            self.inner.put_if_absent(key, data)

    def delete(self, key: str) -> None:
        with self.hold.attempt():
            self.inner.delete(key)

    def stat(self, key: str) -> ObjectInfo | None:
        with self.hold.attempt():
            return self.inner.stat(key)

    def check_bucket(self) -> None:
        with self.hold.attempt():
            self.inner.check_bucket()

    def close(self) -> None:
        self.inner.close()
