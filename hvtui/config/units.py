"""Durations and sizes as written in the config file: parsing, the inverse for messages,
and the patterns the JSON Schema checks them with."""

from __future__ import annotations

import re

from hvtui.config.settings import DAY, HOUR

_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": HOUR, "d": DAY, "w": 7 * DAY}
_PLAIN_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
# Decimal units follow IEC (GB = 10^9); bare letters are binary, as in qemu-img and dd.
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
    "p": 1024**5,
    "pib": 1024**5,
    "pb": 1000**5,
}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
DURATION_HELP = "a duration such as 30s, 90m, 12h, 3d, 2w or a number of seconds"
SIZE_HELP = "a size such as 500MB, 20G, 100GiB or a number of bytes"
# The same syntax for the JSON Schema (editors check what they can; the loader has the last word).
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*|(\d+(\.\d+)?\s*[smhdwSMHDW]\s*)+)$"
SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*([bB]|[kKmMgGtTpP]([iI]?[bB])?)?\s*$"
RATE_HELP = "a rate such as 200MB/s, 1GiB/s or a number of bytes per second"
RATE_PATTERN = r"^\s*\d+(\.\d+)?\s*([bB]|[kKmMgGtTpP]([iI]?[bB])?)?\s*(/\s*[sS])?\s*$"
_PER_SECOND_RE = re.compile(r"/\s*s\s*$", re.IGNORECASE)

def parse_duration(text: str) -> float | None:
    """``"3d"`` -> 259200.0; ``"1h30m"`` -> 5400.0; None when ``text`` is not a duration."""
    compact = text.strip().lower()
    if not compact:
        return None
    if _PLAIN_NUMBER_RE.fullmatch(compact):
        return float(compact)
    total, position = 0.0, 0
    for match in _DURATION_RE.finditer(compact):
        if compact[position : match.start()].strip():
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or compact[position:].strip():
        return None
    return total


def parse_size(text: str) -> int | None:
    """``"100GiB"`` -> 107374182400; ``"500MB"`` -> 500000000; None when not a size."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        return None
    factor = _SIZE_UNITS.get(match.group(2).lower())
    if factor is None:
        return None
    return int(float(match.group(1)) * factor)


def parse_rate(text: str) -> int | None:
    """``"200MB/s"`` -> 200000000 (bytes per second); the ``/s`` may be left out."""
    return parse_size(_PER_SECOND_RE.sub("", text.strip()))


def format_duration(seconds: float) -> str:
    """The inverse of ``parse_duration`` for messages: 259200 -> ``"3d"``, 5400 -> ``"1h30m"``."""
    if seconds <= 0:
        return "0s"
    remaining = int(round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return "".join(parts) or f"{seconds:g}s"
