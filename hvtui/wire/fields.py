"""Field readers for wire documents: each checks one value and names its path when it is malformed.

They accept the shapes Windows PowerShell 5.1's ``ConvertTo-Json`` emits by accident (a
single object where a list was expected, empty output for an empty list, ``{"value": [...],
"Count": n}`` wrappers, enums as integers where the integer is stable).  A bad value raises
``Malformed`` (path, what was expected, what was found); the parsers turn it into
``HostError(kind="protocol")`` with ``envelope.protocol_error``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

MISSING = object()


class Malformed(Exception):
    def __init__(self, path: str, expected: str, found: object) -> None:
        super().__init__(path, expected, found)
        self.path = path
        self.expected = expected
        self.found = found


def describe(value: object) -> str:
    if value is MISSING:
        return "nothing (the field is missing)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return f"the text {text!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        keys = ", ".join(list(value)[:6])
        return f"an object with keys {keys}" if keys else "an empty object"
    return type(value).__name__


# -- field readers -------------------------------------------------------------------------


def get_field(obj: Mapping, key: str, path: str, required: bool) -> object:
    value = obj.get(key, MISSING)
    if value is MISSING:
        if required:
            raise Malformed(f"{path}.{key}", "a value", MISSING)
        return None
    return value


def as_object(value: object, path: str) -> Mapping:
    if not isinstance(value, dict):
        raise Malformed(path, "an object", value)
    return value


def as_str(value: object, path: str, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise Malformed(path, "a string", value)
    return value


def as_opt_str(value: object, path: str) -> str | None:
    """Null and the empty string both mean 'none' (PowerShell emits either)."""
    if value is None or value == "":
        return None
    return as_str(value, path)


def as_int(value: object, path: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool):
        raise Malformed(path, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise Malformed(path, "an integer", value)


def as_seconds(value: object, path: str) -> int:
    """A duration in seconds; also a raw TimeSpan object (PS 5.1 emits Ticks, TotalSeconds, ...)."""
    if value is None:
        return 0
    if isinstance(value, dict) and "TotalSeconds" in value:
        value = value["TotalSeconds"]
        path = f"{path}.TotalSeconds"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise Malformed(path, "a number of seconds", value)
    return int(value)


def as_bool(value: object, path: str, default: bool | None = None) -> bool:
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        raise Malformed(path, "true or false", value)
    return value


def as_list(value: object, path: str) -> list:
    """A list, or one of the shapes PS 5.1 emits for one: empty output, one object, value/Count."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str | int | float):
        return [value]  # one scalar unrolled out of its array
    if isinstance(value, dict):
        if set(value) == {"value", "Count"} and isinstance(value["value"], list):
            if as_int(value["Count"], f"{path}.Count") != len(value["value"]):
                raise Malformed(f"{path}.Count", f"{len(value['value'])} (the length of value)", value["Count"])
            return value["value"]
        return [value]
    raise Malformed(path, "a list", value)


def as_enum(value: object, path: str, by_int: Mapping[int, str], what: str, default: str | None = None) -> str:
    """Enum names pass as sent (``.ToString()`` is authoritative); integers only if stable."""
    if (value is None or value == "") and default is not None:
        return default  # an optional enum PowerShell left empty (heartbeat of a VM that is off)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool) and value in by_int:
        return by_int[value]
    stable = ", ".join(str(key) for key in sorted(by_int))
    raise Malformed(path, f"a {what} name, or one of the stable integer values {stable}", value)
