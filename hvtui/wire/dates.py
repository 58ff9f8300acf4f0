"""Times on the wire: ISO 8601, ``/Date(ms)/`` and the DisplayHint date object in; ``ToString('o')`` out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hvtui.wire.fields import Malformed, describe

_DATE_MS = re.compile(r"^\\?/Date\((?P<ms>[+-]?\d+)(?P<offset>[+-]\d{4})?\)\\?/$")
_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_datetime(value: object, path: str = "date") -> datetime:
    """ISO 8601 (any fraction digits, Z or offset), ``/Date(ms[+hhmm])/``, or the DisplayHint object.

    Returns an aware UTC datetime.  Raises ``ValueError`` with the path on bad input.
    """
    try:
        return as_datetime(value, path)
    except Malformed as err:
        raise ValueError(f"{err.path}: expected {err.expected}, found {describe(err.found)}") from None


def as_datetime(value: object, path: str) -> datetime:
    expected = "an ISO 8601 time or /Date(ms)/"
    if isinstance(value, dict) and "value" in value and ("DisplayHint" in value or "DateTime" in value):
        return as_datetime(value["value"], f"{path}.value")
    if not isinstance(value, str):
        raise Malformed(path, expected, value)
    text = value.strip()
    match = _DATE_MS.match(text)
    if match:
        # The milliseconds are UTC since the epoch; the +hhmm suffix only says which local
        # offset the writer was in, it does not shift the instant.
        try:
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(match.group("ms")))
        except OverflowError:
            raise Malformed(path, expected, value) from None
    match = _ISO.match(text)
    if not match:
        raise Malformed(path, expected, value)
    frac = (match.group("frac") or "")[:6].ljust(6, "0")
    tz = match.group("tz")
    try:
        parsed = datetime.fromisoformat(f"{match.group('date')}T{match.group('time')}.{frac}")
    except ValueError:
        raise Malformed(path, expected, value) from None
    if tz is None or tz in ("Z", "z"):
        # '.ToUniversalTime().ToString("o")' always ends in Z; a zone-less time is read as UTC.
        return parsed.replace(tzinfo=UTC)
    sign = 1 if tz[0] == "+" else -1
    digits = tz[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return (parsed - sign * offset).replace(tzinfo=UTC)


def format_datetime(when: datetime) -> str:
    """``.ToUniversalTime().ToString('o')``: seven fraction digits and a Z."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond:06d}0Z"
