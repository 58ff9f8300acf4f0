"""What the repository commands share: exit codes, the JSON document, and turning errors
into both (``reported``)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hvtui.commands import show, show_json
from hvtui.engine.layout import RepositoryNeedsRepair
from hvtui.errors import (
    EXIT_DAMAGED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    Cancelled,
    ConfigError,
    HvtuiError,
    ReadOnlyError,
    RefusedError,
    UsageError,
)

if TYPE_CHECKING:
    from hvtui.core import Core

__all__ = [
    "EXIT_DAMAGED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "emit_json",
    "fail",
    "reported",
]


def emit_json(doc: dict[str, Any]) -> None:
    show_json(json.dumps(doc, indent=2, default=str, sort_keys=False))
    sys.stdout.flush()


def fail(args: argparse.Namespace, message: str, code: int, **extra: Any) -> int:
    prefix = "refused" if code == EXIT_REFUSED else "error"
    show(f"hvtui: {prefix}: {message}", stream=sys.stderr)
    if getattr(args, "json", False):
        emit_json({"ok": False, "error": message, "exit_code": code, **extra})
    return code


def reported(handler: Callable[[argparse.Namespace, Core], int]) -> Callable[[argparse.Namespace, Core], int]:
    """Turn errors into the documented exit codes, with a JSON document under ``--json``."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace, core: Core) -> int:
        try:
            return handler(args, core)
        except (ConfigError, UsageError) as err:  # a bad config, an unknown or ambiguous VM
            return fail(args, str(err), EXIT_USAGE)
        except (ReadOnlyError, RefusedError) as err:
            return fail(args, str(err), EXIT_REFUSED)
        except Cancelled as err:
            return fail(args, str(err), EXIT_INTERRUPTED)
        except RepositoryNeedsRepair as err:
            return fail(args, str(err), EXIT_DAMAGED, needs_repair=True)
        except HvtuiError as err:
            return fail(args, str(err), EXIT_FAILED)

    return run
