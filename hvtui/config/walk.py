"""Reads the YAML node tree against the models of ``hvtui.config.models``.

The walker goes through the file once, mapping by mapping, and reports every mistake it
finds (unknown, refused, missing and duplicate keys, wrong types, values out of range)
with the words the model gives each value.  A mapping with no mistake inside is then
converted to its model with ``msgspec.convert`` — the declared constraints are the final
gate, so the walker cannot accept what the schema refuses.
"""

from __future__ import annotations

import math
import re
import shlex
import types
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec
import yaml
from msgspec import Meta, Struct, UnsetType

from hvtui.config.document import Document, Located, child_path, describe
from hvtui.config.errors import close_match, unknown_key_message
from hvtui.config.models import REFUSED_KEYS
from hvtui.config.units import (
    DURATION_HELP,
    RATE_HELP,
    SIZE_HELP,
    format_duration,
    parse_duration,
    parse_rate,
    parse_size,
)

NAME_RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 characters"


@dataclass(slots=True)
class Read:
    """One value as read: where it is, its plain data, whether it is free of mistakes,
    its entries (a mapping) or items (a list), and its model (a mapping without mistakes)."""

    at: Located
    data: Any = None
    ok: bool = True
    keys: dict[str, Read] = field(default_factory=dict)
    items: list[Read] = field(default_factory=list)
    model: Any = None

    def where(self, key: str) -> Located:
        """The entry ``key``'s location, or this value's when the key is not given."""
        return self.keys[key].at if key in self.keys else self.at


def _bad(at: Located) -> Read:
    return Read(at, ok=False)


@dataclass(slots=True)
class Spec:
    """A field's type, unwrapped: its base type, constraints and the model's words for it."""

    base: Any
    nullable: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    pattern: str | None = None


def spec_of(annotation: Any) -> Spec:
    spec = Spec(base=annotation)
    tp = annotation
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            base, *metadata = get_args(tp)
            for meta in metadata:
                if isinstance(meta, Meta):
                    spec.extra = {**(meta.extra or {}), **spec.extra}  # the outer words win
                    for name in ("ge", "gt", "le", "pattern"):
                        if getattr(meta, name) is not None and getattr(spec, name) is None:
                            setattr(spec, name, getattr(meta, name))
            tp = base
            continue
        if origin in (Union, types.UnionType):
            args = [arg for arg in get_args(tp) if arg is not UnsetType]
            if type(None) in args:
                spec.nullable = True
                args.remove(type(None))
            if len(args) == 1:
                tp = args[0]
                continue
            tp = Union[tuple(args)]  # noqa: UP007
        break
    spec.base = tp
    return spec


def struct_fields(model: type[Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    """By the key the file uses (``from:`` for a field ``from_``)."""
    return {info.encode_name: info for info in msgspec.structs.fields(model)}


def read(doc: Document, at: Located, annotation: Any) -> Read:
    """``at``'s value read as ``annotation`` (a model field's type); mistakes go to ``doc``."""
    spec = spec_of(annotation)
    if spec.nullable and doc.is_null(at):
        return Read(at, None)
    base, extra = spec.base, spec.extra
    origin = get_origin(base)
    if "plain_secret" in extra and isinstance(at.node, yaml.ScalarNode):
        doc.report(at, extra["plain_secret"])  # the value is likely a secret: not repeated
        return _bad(at)
    if isinstance(base, type) and issubclass(base, Struct):
        return read_model(doc, at, base, extra.get("what", "a mapping"))
    if origin in (Union, types.UnionType) and all(isinstance(arg, type) and issubclass(arg, Struct) for arg in get_args(base)):
        return _read_tagged(doc, at, get_args(base), extra)
    if origin is list:
        return _read_list(doc, at, get_args(base)[0], extra.get("what", "a list"))
    if origin is dict:
        return _read_dict(doc, at, get_args(base)[1], spec_of(get_args(base)[0]), extra.get("what", "a mapping"))
    kind = extra.get("kind")
    if base is bool:
        return _read_boolean(doc, at)
    if base is int and kind is None:
        return _read_integer(doc, at, spec)
    if origin is Literal:
        return _read_choice(doc, at, get_args(base), extra["what"])
    reader = _SCALAR_READERS.get(kind or "")
    if reader is None:
        raise TypeError(f"hvtui.config.walk cannot read {annotation!r}")  # a model declared without the words
    return reader(doc, at, spec)


def read_model(doc: Document, at: Located, model: type[Struct], what: str = "a mapping") -> Read:
    entries = doc.entries(at, what)
    if entries is None:
        return _bad(at)
    fields = struct_fields(model)
    config = model.__struct_config__
    tag_field = config.tag_field
    allowed = list(fields)
    if tag_field is not None:
        allowed.insert(1, tag_field)
    refused = REFUSED_KEYS.get(model, {})
    result = Read(at, data={})
    suggested: set[str] = set()  # a misspelt key: its "did you mean" says the rest
    for key, (key_node, value_node) in entries.items():
        where = Located(value_node, child_path(at.path, key))
        if key == tag_field:  # checked by the caller, which chose the model by it
            result.data[key] = config.tag
            continue
        if key not in fields:
            key_at = Located(key_node, where.path)
            doc.report(key_at, refused[key] if key in refused else unknown_key_message(key, allowed))
            suggested.add(close_match(key, allowed) or "")
            result.ok = False
            continue
        child = read(doc, where, fields[key].type)
        result.keys[key] = child
        if child.ok:
            result.data[key] = child.data
        else:
            result.ok = False
    for key, info in fields.items():
        if info.required and key not in entries and key not in suggested:
            hint = spec_of(info.type).extra.get("missing")
            doc.report(at, f"missing required key '{key}'" + (f" ({hint})" if hint else ""))
            result.ok = False
    if result.ok:
        try:
            result.model = msgspec.convert(result.data, model)
        except msgspec.ValidationError as err:  # the walker let through what the schema refuses
            doc.report(at, f"does not match the schema: {err}")
            result.ok = False
    return result


def _read_tagged(doc: Document, at: Located, models: tuple[type[Struct], ...], extra: dict[str, Any]) -> Read:
    """A mapping whose tag key (``kind``) decides its model; the tag is read first."""
    entries = doc.entries(at, extra.get("what", "a mapping"))
    if entries is None:
        return _bad(at)
    by_tag = {model.__struct_config__.tag: model for model in models}
    tag_field = models[0].__struct_config__.tag_field
    assert tag_field is not None
    if tag_field not in entries:
        hint = extra.get("missing_tag")
        doc.report(at, f"missing required key '{tag_field}'" + (f" ({hint})" if hint else ""))
        return _bad(at)
    tag = _read_choice(doc, Located(entries[tag_field][1], child_path(at.path, tag_field)), tuple(by_tag), extra["tag_what"])
    if not tag.ok:
        return _bad(at)
    return read_model(doc, at, by_tag[tag.data], extra.get("what", "a mapping"))


def _read_list(doc: Document, at: Located, item_type: Any, what: str) -> Read:
    items = doc.sequence(at, what)
    if items is None:
        return _bad(at)
    result = Read(at, data=[])
    for item in items:
        child = read(doc, item, item_type)
        result.items.append(child)
        result.data.append(child.data)
        result.ok = result.ok and child.ok
    return result


def _read_dict(doc: Document, at: Located, value_type: Any, key_spec: Spec, what: str) -> Read:
    entries = doc.entries(at, what)
    if entries is None:
        return _bad(at)
    result = Read(at, data={})
    for key, (key_node, value_node) in entries.items():
        where = Located(value_node, child_path(at.path, key))
        if key_spec.pattern is not None and not re.search(key_spec.pattern, key):
            doc.report(Located(key_node, where.path), f"expected {key_spec.extra.get('what', 'a valid key')}")
            result.ok = False
            continue
        child = read(doc, where, value_type)
        result.keys[key] = child
        result.data[key] = child.data
        result.ok = result.ok and child.ok
    return result


# -- scalars --------------------------------------------------------------------------------


def _read_boolean(doc: Document, at: Located) -> Read:
    value = doc.scalar(at)
    if not isinstance(value, bool):
        doc.expected(at, "true or false")
        return _bad(at)
    return Read(at, value)


def _read_integer(doc: Document, at: Located, spec: Spec) -> Read:
    low, high = int(spec.ge or 0), (int(spec.le) if spec.le is not None else None)
    what = f"an integer {low}-{high}" if high is not None else f"an integer of at least {low}"
    value = doc.scalar(at)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        doc.expected(at, what)
        return _bad(at)
    return Read(at, value)


def _read_number(doc: Document, at: Located, spec: Spec) -> Read:
    low, high = spec.ge or 0.0, spec.le if spec.le is not None else math.inf
    description = f"{spec.extra.get('what', 'a number')} from {low:g} to {high:g}"
    value = doc.scalar(at)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        doc.expected(at, description)
        return _bad(at)
    return Read(at, float(value))


def _read_choice(doc: Document, at: Located, options: tuple[str, ...], what: str) -> Read:
    value = doc.scalar(at)
    if not isinstance(value, str) or value not in options:
        message = f"expected {what} ({', '.join(options)}), found {describe(at.node)}"
        close = close_match(value.lower(), options) if isinstance(value, str) else None
        doc.report(at, message + (f"; did you mean '{close}'?" if close else ""))
        return _bad(at)
    return Read(at, value)


def _text(doc: Document, at: Located, what: str) -> str | None:
    value = doc.scalar(at)
    if not isinstance(value, str):
        hint = " (put it in quotes if it is meant as text)" if isinstance(value, int | float) else ""
        doc.expected(at, what, hint)
        return None
    if not value.strip():
        doc.report(at, f"expected {what}, found an empty string")
        return None
    return value


def _read_text(doc: Document, at: Located, spec: Spec) -> Read:
    what = spec.extra["what"]
    value = _text(doc, at, what)
    if value is None:
        return _bad(at)
    if spec.pattern is not None and not re.search(spec.pattern, value):
        doc.expected(at, what, spec.extra.get("pattern_hint", ""))
        return _bad(at)
    return Read(at, value)


def _read_name(doc: Document, at: Located, spec: Spec) -> Read:
    description = f"{spec.extra['what']}: {NAME_RULE}"
    value = _text(doc, at, description)
    if value is None:
        return _bad(at)
    if spec.pattern is not None and not re.search(spec.pattern, value):
        doc.expected(at, description)
        return _bad(at)
    return Read(at, value)


def _read_env_name(doc: Document, at: Located, spec: Spec) -> Read:
    value = _text(doc, at, spec.extra["what"])
    if value is None:
        return _bad(at)
    if spec.pattern is not None and not re.search(spec.pattern, value):
        doc.expected(at, f"{spec.extra['what']} (letters, digits and _)")
        return _bad(at)
    return Read(at, value)


def _read_command(doc: Document, at: Located, spec: Spec) -> Read:
    value = _text(doc, at, spec.extra["what"])
    if value is None:
        return _bad(at)
    try:
        shlex.split(value)
    except ValueError as err:
        doc.report(at, f"cannot split the command line: {err}")
        return _bad(at)
    return Read(at, value)


def _read_path(doc: Document, at: Located, spec: Spec) -> Read:
    value = _text(doc, at, "a path")
    if value is None:
        return _bad(at)
    if spec.extra.get("must_exist"):
        resolved = doc.resolve_path(value)
        if not resolved.is_file():
            doc.report(at, f"expected an existing file, found no file at {resolved}")
            return _bad(at)
    return Read(at, value)


def _read_duration(doc: Document, at: Located, spec: Spec) -> Read:
    """Kept as written (``"3d"`` or a number): ``duration_seconds`` converts it."""
    minimum = float(spec.extra.get("minimum", 0.0))
    value = doc.scalar(at)
    seconds = duration_seconds(value)
    if seconds is None or not math.isfinite(seconds):
        doc.expected(at, DURATION_HELP)
        return _bad(at)
    if seconds < minimum or (minimum == 0.0 and seconds <= 0):
        floor = f"of at least {format_duration(minimum)}" if minimum else "above zero"
        doc.report(at, f"expected a duration {floor}, found {describe(at.node)}")
        return _bad(at)
    return Read(at, value)


def duration_seconds(value: object) -> float | None:
    """A duration as the file gives it (``"3d"``, ``90``) in seconds; None when it is none."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    return None


def size_bytes(value: object) -> int | None:
    """A size as the file gives it (``"20G"``, ``512``) in bytes; None when it is none."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_size(value)
    return None


def rate_bytes(value: object) -> int | None:
    """A rate as the file gives it (``"200MB/s"``, ``1000000``) in bytes per second; None when it is none."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_rate(value)
    return None


def _read_rate(doc: Document, at: Located, spec: Spec) -> Read:
    value = doc.scalar(at)
    rate = rate_bytes(value)
    if rate is None:
        doc.expected(at, RATE_HELP)
        return _bad(at)
    if rate <= 0:
        doc.expected(at, "a rate above zero")
        return _bad(at)
    return Read(at, value)


def _read_size(doc: Document, at: Located, spec: Spec) -> Read:
    value = doc.scalar(at)
    size = size_bytes(value)
    if size is None:
        doc.expected(at, SIZE_HELP)
        return _bad(at)
    if size <= 0:
        doc.expected(at, "a size above zero")
        return _bad(at)
    return Read(at, value)


_SCALAR_READERS = {
    "number": _read_number,
    "text": _read_text,
    "name": _read_name,
    "envname": _read_env_name,
    "command": _read_command,
    "path": _read_path,
    "duration": _read_duration,
    "size": _read_size,
    "rate": _read_rate,
}


def first_of_each_name(doc: Document, items: list[Read], what: str) -> list[Read]:
    """The list's items less those repeating an earlier item's ``name`` (each repeat reported
    with the first one's line, as "duplicate ``what`` name"); an item whose name is missing or
    wrong stays, its own mistakes already reported."""
    kept: list[Read] = []
    first_line: dict[str, int] = {}
    for item in items:
        name = item.keys.get("name")
        if name is not None and name.ok:
            if name.data in first_line:
                doc.report(name.at, f"duplicate {what} name '{name.data}' (first defined on line {first_line[name.data]})")
                continue
            first_line[name.data] = item.at.line
        kept.append(item)
    return kept
