"""The value types the config's models are declared with: each one's constraint, its JSON Schema
and the words a mistake message uses for it (``Meta(extra={"what": ...})``), in one place.

Shared by ``hvtui.config.models`` and the models of each newer section in its own module
(``hvtui.config.notify_models``, ``hvtui.config.schedule_models``, ``hvtui.config.smb``), which ``models.ConfigModel`` then imports.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from msgspec import Meta, Struct

from hvtui.config.units import DURATION_HELP, DURATION_PATTERN, SIZE_HELP, SIZE_PATTERN

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# A host/VM override key: "host/vm" or "vm".
VM_KEY_PATTERN = r"^([^/]+/[^/]+|[^/]*)$"
PLAIN_PASSWORD_MESSAGE = (
    "a plain-text password is not accepted in the config file; use password_env (an environment "
    "variable's name), password_command (a command that prints it) or password_prompt: true"
)


# -- value types: the constraint, the JSON Schema and the words of a mistake, in one place ----


def described(description: str, **extra: Any) -> Meta:
    return Meta(description=description, extra=extra)


def text(what: str, description: str, kind: str = "text", pattern: str = r"\S", **extra: Any) -> Any:
    """Non-empty text; ``what`` names it in messages ("expected a user name, found ...")."""
    return Annotated[str, Meta(min_length=1, pattern=pattern), described(description, kind=kind, what=what, **extra)]


def name(what: str, description: str) -> Any:
    return Annotated[str, Meta(pattern=NAME_PATTERN), described(description, kind="name", what=what)]


def duration(description: str, minimum: float = 0.0) -> Any:
    number = Annotated[float, Meta(ge=minimum)] if minimum else Annotated[float, Meta(gt=0)]
    return Annotated[
        Union[number, Annotated[str, Meta(pattern=DURATION_PATTERN)]],  # noqa: UP007 (a runtime union of Annotated)
        described(f"{description}; {DURATION_HELP}", kind="duration", minimum=minimum),
    ]


def integer(low: int, high: int, description: str) -> Any:
    return Annotated[int, Meta(ge=low, le=high, description=description)]


def percent(low: float, high: float, description: str) -> Any:
    return Annotated[float, Meta(ge=low, le=high), described(description, kind="number", what="a percentage")]


def choice(values: tuple[str, ...], what: str, description: str) -> Any:
    return Annotated[Literal[values], described(description, kind="choice", what=what)]  # type: ignore[valid-type]


def path(description: str, must_exist: bool = False, **extra: Any) -> Any:
    return Annotated[
        str, Meta(min_length=1, pattern=r"\S"), described(description, kind="path", what="a path", must_exist=must_exist, **extra)
    ]


def boolean(description: str) -> Any:
    return Annotated[bool, Meta(description=description)]


def collection(kind: type, what: str, description: str) -> Any:
    return Annotated[kind, described(description, what=what)]


Duration = duration("a duration")
Size = Annotated[
    Union[Annotated[int, Meta(ge=1)], Annotated[str, Meta(pattern=SIZE_PATTERN)]],  # noqa: UP007
    described(SIZE_HELP, kind="size"),
]


class Model(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A mapping of the file: unknown keys are mistakes; a key not given is UNSET."""
