"""A read-rate limit for one host (token bucket), so a backup in business hours does not starve
the host's storage.

Every reader of the host's files takes its bytes from the same bucket before it asks for them;
the bucket refills at ``rate`` bytes per second and holds at most ``burst`` bytes.  A request
larger than what is left goes into debt and sleeps it off, so the long-run rate is exact and a
single large request is never refused.  The clock and the sleep are injected for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most ``rate`` bytes per second on average, shared by every thread that calls ``take``."""

    def __init__(
        self,
        rate: int,
        *,
        burst: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"a rate limit must be above zero, not {rate}")
        self._rate = float(rate)
        self._burst = float(burst if burst is not None else rate)  # one second's worth by default
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self._burst
        self._last = monotonic()

    @property
    def rate(self) -> int:
        """The limit in bytes per second (for the jobs view: "limit 200 MB/s")."""
        return int(self._rate)

    def set_rate(self, rate: int) -> None:
        """A new limit from now on (``--limit-rate`` over the config's)."""
        if rate <= 0:
            raise ValueError(f"a rate limit must be above zero, not {rate}")
        with self._lock:
            self._refill()
            self._rate = float(rate)
            self._burst = float(rate)
            self._tokens = min(self._tokens, self._burst)

    def take(self, count: int) -> float:
        """Take ``count`` bytes from the bucket, sleeping until they are covered; the seconds slept."""
        if count <= 0:
            return 0.0
        with self._lock:
            self._refill()
            self._tokens -= count
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait

    def _refill(self) -> None:
        now = self._monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
