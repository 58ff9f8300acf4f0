"""Sizes and ages as findings, tables and the CLI write them, and the age arithmetic behind them.

Used by the rules' messages and by every screen and command that shows a size or an age,
so that a finding's "23 days" and the VM table's "23 days" are the same words.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import humanize

from hvtui.config import DAY, HOUR


def size_text(num_bytes: int | float) -> str:
    return humanize.naturalsize(num_bytes, binary=True)


def age_text(seconds: float) -> str:
    return _age_text(round(max(0.0, seconds)))


@functools.lru_cache(maxsize=4096)
def _age_text(seconds: int) -> str:
    """Exact enough to compare with a threshold: "47 hours", "23 days", "1 year, 35 days".

    ``naturaldelta``'s words alone are too fuzzy here: 23 days read "a month" and 47 hours
    "a day" (next to "crit at 2 days").  Hours below two days, then whole days.
    Cached: thresholds and many ages repeat across thousands of findings.
    """
    delta = timedelta(seconds=seconds)
    if seconds < 60:
        return humanize.precisedelta(delta, minimum_unit="seconds", format="%0.0f")
    if seconds < HOUR:
        return humanize.precisedelta(delta, minimum_unit="minutes", format="%0.0f")
    if seconds < 2 * DAY:
        return humanize.precisedelta(delta, minimum_unit="hours", suppress=["days"], format="%0.0f")
    return humanize.naturaldelta(delta, months=False)


def aware(when: datetime) -> datetime:
    """``when`` with a time zone: naive times are taken as UTC (the wire contract sends UTC everywhere)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def age_seconds(now: datetime, then: datetime) -> float:
    """Seconds from ``then`` to ``now``; never negative (a clock skew is not an age)."""
    return max(0.0, (aware(now) - aware(then)).total_seconds())


def file_name(path: str) -> str:
    """The last part of a Windows or POSIX path (findings name a disk file, not its folder)."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]
