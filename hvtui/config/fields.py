"""The value types of the config models: each a constraint, its JSON Schema and the words of a
mistake, in one place; and ``Model``, the base of every mapping.

Apart from ``hvtui.config.models`` so that a section's models can live in a module of their own
(``hvtui.config.smb``) and still be a field of a model declared there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from msgspec import Meta, Struct

from hvtui.config.units import DURATION_HELP, DURATION_PATTERN, SIZE_HELP, SIZE_PATTERN

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


def meta(description: str, **extra: Any) -> Meta:
    return Meta(description=description, extra=extra)


def text(what: str, description: str, kind: str = "text", pattern: str = r"\S", **extra: Any) -> Any:
    """Non-empty text; ``what`` names it in messages ("expected a user name, found ...")."""
    return Annotated[str, Meta(min_length=1, pattern=pattern), meta(description, kind=kind, what=what, **extra)]


def name(what: str, description: str) -> Any:
    return Annotated[str, Meta(pattern=NAME_PATTERN), meta(description, kind="name", what=what)]


def duration(description: str, minimum: float = 0.0) -> Any:
    number = Annotated[float, Meta(ge=minimum)] if minimum else Annotated[float, Meta(gt=0)]
    return Annotated[
        Union[number, Annotated[str, Meta(pattern=DURATION_PATTERN)]],  # noqa: UP007 (a runtime union of Annotated)
        meta(f"{description}; {DURATION_HELP}", kind="duration", minimum=minimum),
    ]


def integer(low: int, high: int, description: str) -> Any:
    return Annotated[int, Meta(ge=low, le=high, description=description)]


def percent(low: float, high: float, description: str) -> Any:
    return Annotated[float, Meta(ge=low, le=high), meta(description, kind="number", what="a percentage")]


def choice(values: tuple[str, ...], what: str, description: str) -> Any:
    return Annotated[Literal[values], meta(description, kind="choice", what=what)]  # type: ignore[valid-type]


def path(description: str, must_exist: bool = False, **extra: Any) -> Any:
    return Annotated[
        str, Meta(min_length=1, pattern=r"\S"), meta(description, kind="path", what="a path", must_exist=must_exist, **extra)
    ]


def boolean(description: str) -> Any:
    return Annotated[bool, Meta(description=description)]


def collection(kind: type, what: str, description: str) -> Any:
    return Annotated[kind, meta(description, what=what)]


Duration = duration("a duration")
Size = Annotated[
    Union[Annotated[int, Meta(ge=1)], Annotated[str, Meta(pattern=SIZE_PATTERN)]],  # noqa: UP007
    meta(SIZE_HELP, kind="size"),
]


class Model(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A mapping of the file: unknown keys are mistakes; a key not given is UNSET."""


