"""Formatting helpers of the console: ages, sizes, times, file names, default checkpoint names."""

from __future__ import annotations

from datetime import UTC, datetime

import humanize

from hvtui.model import HostInventory
from hvtui.policy import age_text as policy_age_text


def age_text(seconds: float | None) -> str:
    """An age as the findings word it too ("47 hours", "23 days"); empty for none."""
    if seconds is None:
        return ""
    return policy_age_text(seconds)


def size_text(num_bytes: int | float | None) -> str:
    if num_bytes is None:
        return ""
    return humanize.naturalsize(num_bytes, binary=True)


def aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def seconds_between(now: datetime, then: datetime) -> float:
    return max(0.0, (aware(now) - aware(then)).total_seconds())


def file_name(path: str) -> str:
    """The last component of a Windows or POSIX path."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def host_now(host: HostInventory | None, fallback: datetime) -> datetime:
    """Ages are measured against the host's own clock when it told us one."""
    if host is not None and host.facts is not None:
        return host.facts.now
    return fallback


def default_checkpoint_name(vm_name: str, when: datetime) -> str:
    """Hyper-V Manager's default: ``web01 - (11/24/2026 - 12:00:00 PM)`` (local time)."""
    local = aware(when).astimezone()
    hour = local.hour % 12 or 12
    suffix = "AM" if local.hour < 12 else "PM"
    return f"{vm_name} - ({local.month}/{local.day}/{local.year} - {hour}:{local.minute:02d}:{local.second:02d} {suffix})"
