"""Error types shared by every layer.

Every error a user can see derives from ``HvtuiError`` and carries a message that is
already fit to print: the CLI and the console show ``str(err)`` and never a traceback.
"""

from __future__ import annotations

# Exit codes of the CLI, beside the errors they map: the jobs layer and the commands both
# use them, so they live at the bottom, not in the CLI.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # bad arguments or a bad config file
EXIT_DAMAGED = 3  # verify found damage, or the repository needs `hvtui repair-repository`
EXIT_REFUSED = 4  # read-only or a safety rule said no
EXIT_BUSY = 5  # another `hvtui schedule run-due` is running: this one ran nothing
EXIT_INTERRUPTED = 130


class HvtuiError(Exception):
    """An error whose message is meant for the user."""


class ConfigError(HvtuiError):
    """The config file (or a theme file) is invalid."""


class UsageError(HvtuiError):
    """What was asked for is wrong: an unknown or ambiguous VM or checkpoint name, an
    invalid checkpoint name.  The CLI exits 2 (usage), not 1 (failed)."""


class HostError(HvtuiError):
    """A host could not do what was asked.

    ``kind`` is a short machine-readable reason: unreachable, tls, auth, timeout,
    module-missing, not-found, access-denied, protocol, failed.
    """

    def __init__(self, host: str, operation: str, message: str, kind: str = "failed") -> None:
        self.host = host
        self.operation = operation
        self.kind = kind
        self.detail = message
        super().__init__(f"{host}: {operation}: {message}")


class NotFoundError(HostError):
    """A VM or checkpoint does not exist on the host."""

    def __init__(self, host: str, operation: str, message: str) -> None:
        super().__init__(host, operation, message, kind="not-found")


class ReadOnlyError(HvtuiError):
    """A change was refused because the console, config or host is read-only."""


class RefusedError(HvtuiError):
    """A change was refused by a safety rule (for example merge headroom)."""


class HostRefused(HostError, RefusedError):
    """A host said no for a reason that is not a fault (a VM name already taken): a
    refusal (exit 4, audited as refused) that callers catching ``HostError`` still see."""

    def __init__(self, host: str, operation: str, message: str) -> None:
        super().__init__(host, operation, message, kind="refused")


class RepositoryError(HvtuiError):
    """The backup repository is missing, locked, damaged or full."""


class Cancelled(HvtuiError):
    """A long operation was cancelled by the user."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)
