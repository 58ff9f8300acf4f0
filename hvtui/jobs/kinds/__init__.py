"""Job kinds: one module per kind, each giving a ``JobKind`` (``hvtui.jobs.model``) that
``register_engine_kinds`` registers with a manager.  A new kind is a new module here plus
one line below."""

from __future__ import annotations

from hvtui.jobs.kinds.backup import backup_kind
from hvtui.jobs.kinds.base import JobQueue
from hvtui.jobs.kinds.copy import copy_kind
from hvtui.jobs.kinds.restore import restore_kind

ENGINE_KINDS = (backup_kind, restore_kind, copy_kind)


def register_engine_kinds(manager: JobQueue) -> None:
    """Register the ``backup``, ``restore`` and ``copy`` kinds (they run on ``manager.services``)."""
    if manager.services is None:
        return
    for make_kind in ENGINE_KINDS:
        manager.register_kind(make_kind(manager))
