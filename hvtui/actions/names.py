"""Checkpoint names and types as Hyper-V accepts them, and finding a checkpoint of a VM by name or id."""

from __future__ import annotations

import unicodedata

from hvtui.errors import UsageError
from hvtui.model import VM, Checkpoint

CREATABLE_TYPES = ("Standard", "Production")
MAX_NAME_LENGTH = 100  # Hyper-V Manager accepts 1-100 characters


def validate_checkpoint_name(name: str) -> str:
    """A checkpoint name as Hyper-V accepts it: 1-100 characters, no control characters."""
    cleaned = name.strip()
    if not cleaned:
        raise UsageError("a checkpoint name cannot be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise UsageError(f"a checkpoint name has at most {MAX_NAME_LENGTH} characters ({len(cleaned)} given)")
    if any(unicodedata.category(ch) == "Cc" for ch in cleaned):
        raise UsageError("a checkpoint name cannot contain control characters")
    return cleaned


def normalise_checkpoint_type(checkpoint_type: str) -> str:
    for known in CREATABLE_TYPES:
        if checkpoint_type.casefold() == known.casefold():
            return known
    raise UsageError(f"checkpoint type must be one of {', '.join(CREATABLE_TYPES)} (got {checkpoint_type!r})")


def find_checkpoint(vm: VM, name_or_id: str) -> Checkpoint:
    """A checkpoint of ``vm`` by id or name; ambiguous names list the ids to choose from."""
    wanted = name_or_id.strip()
    for cp in vm.checkpoints:
        if cp.id.casefold() == wanted.casefold():
            return cp
    matches = [cp for cp in vm.checkpoints if cp.name == wanted] or [
        cp for cp in vm.checkpoints if cp.name.casefold() == wanted.casefold()
    ]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        ids = "; ".join(f"{cp.id} ({cp.type}, created {cp.created.isoformat(timespec='seconds')})" for cp in matches)
        raise UsageError(f"{len(matches)} checkpoints of VM {vm.name!r} are named {wanted!r}: {ids}; pass the id")
    names = [cp.name for cp in vm.checkpoints]
    known = ", ".join(repr(n) for n in names[:10]) or "none"
    raise UsageError(f"{vm.host}: VM {vm.name!r} has no checkpoint {wanted!r} (it has: {known})")



def vm_checkpoint_type(vm: VM) -> str:
    """The checkpoint type to take for ``vm``: its configured one where creatable, else Standard."""
    kind = vm.checkpoint_type
    if kind in ("Production", "ProductionOnly"):
        return "Production"
    return "Standard"
