"""The per-host read-rate limiter (issue 19 §2), with an injected clock: the sleeps it asks for
are computed, never measured."""

from __future__ import annotations

import threading

import pytest

from hvtui.hosts.ratelimit import RateLimiter

MB = 1_000_000


class FakeTime:
    """A clock that only moves when the limiter sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def limiter(rate: int, clock: FakeTime, burst: int | None = None) -> RateLimiter:
    return RateLimiter(rate, burst=burst, monotonic=clock.monotonic, sleep=clock.sleep)


def test_a_full_bucket_lets_one_second_through_then_paces_at_the_rate() -> None:
    clock = FakeTime()
    bucket = limiter(100 * MB, clock)
    assert bucket.take(100 * MB) == 0.0  # the burst: one second's worth
    assert bucket.take(50 * MB) == pytest.approx(0.5)
    assert bucket.take(50 * MB) == pytest.approx(0.5)
    assert clock.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]


def test_long_run_rate_is_the_limit_whatever_the_request_sizes() -> None:
    clock = FakeTime()
    bucket = limiter(200 * MB, clock, burst=8 * 1024 * 1024)
    start = clock.now
    total = 0
    for size in [8 * 1024 * 1024, 1024, 3 * 1024 * 1024, 64 * 1024 * 1024, 4096] * 20:
        bucket.take(size)
        total += size
    elapsed = clock.now - start
    # Only the initial burst comes free: the rest is paced exactly at 200 MB/s.
    assert elapsed == pytest.approx((total - 8 * 1024 * 1024) / (200 * MB))


def test_time_that_passes_refills_the_bucket_up_to_the_burst_only() -> None:
    clock = FakeTime()
    bucket = limiter(10 * MB, clock)
    bucket.take(10 * MB)
    clock.now += 100.0  # idle for a long time: the bucket holds one second's worth, not 100
    assert bucket.take(10 * MB) == 0.0
    assert bucket.take(10 * MB) == pytest.approx(1.0)


def test_set_rate_changes_the_pace_and_bad_rates_are_refused() -> None:
    clock = FakeTime()
    bucket = limiter(10 * MB, clock)
    bucket.take(10 * MB)
    bucket.set_rate(20 * MB)
    assert bucket.rate == 20 * MB
    assert bucket.take(20 * MB) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        bucket.set_rate(-1)
