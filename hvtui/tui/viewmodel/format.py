"""Formatting helpers of the console: ages, sizes, times, file names, default checkpoint names."""

from __future__ import annotations

from datetime import datetime, tzinfo

from hvtui.model import HostInventory
from hvtui.policy.text import age_seconds as seconds_between
from hvtui.policy.text import age_text as policy_age_text
from hvtui.policy.text import aware, file_name
from hvtui.policy.text import size_text as policy_size_text

# aware, file_name and seconds_between are the policy's own (one definition of an age).
__all__ = [
    "age_text", "aware", "default_checkpoint_name", "file_name", "host_now", "local_time_text", "seconds_between", "size_text",
]


def age_text(seconds: float | None) -> str:
    """An age as the findings word it too ("47 hours", "23 days"); empty for none."""
    if seconds is None:
        return ""
    return policy_age_text(seconds)


def size_text(num_bytes: int | float | None) -> str:
    """A size as the findings write it; empty for none."""
    return "" if num_bytes is None else policy_size_text(num_bytes)


def local_time_text(when: datetime | None, zone: tzinfo) -> str:
    """A time in the jump box's zone to the minute, as the list views show it; "-" for none."""
    return "-" if when is None else when.astimezone(zone).strftime("%Y-%m-%d %H:%M")


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
