"""Engine-specific error kinds, all ``RepositoryError`` (so callers may catch just that)."""

from __future__ import annotations

from hvtui.errors import RefusedError, RepositoryError


class RepositoryDamaged(RepositoryError):
    """Data the operation needs is missing or corrupt (a chunk, a manifest).

    The CLI exits with its own code for this, so a cron job can tell damage from a
    passing failure such as a full disk.
    """


class RepositoryBusy(RepositoryError):
    """A lock could not be had: another operation holds the repository or the VM."""


class OverwriteRefused(RepositoryError, RefusedError):
    """A restore would overwrite existing files: a refusal (exit 4, "refused" in the job
    list), still a ``RepositoryError`` for callers that catch the engine's errors."""
