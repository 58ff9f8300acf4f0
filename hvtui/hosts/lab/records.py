"""The records a lab host keeps in ``host.json``: names, times, ids, and the .vmcx they give.

A VM record holds the VM's settings, its checkpoint records (each naming the files it
froze) and its file graph (``files``: which disk file is whose parent).  Everything here
works on a record alone, without touching the disk, so every lab module can use it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from hvtui.errors import HostError
from hvtui.model import Checkpoint
from hvtui.text import is_display_safe

VM_STATES = ("Running", "Off", "Saved", "Paused")
MAX_CHECKPOINTS = 50  # Hyper-V's per-VM limit
CONFIG_FORMAT = "hvtui-lab-vm/1"
DISK_SUFFIXES = (".vhdx", ".avhdx")


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def default_checkpoint_name(vm_name: str, when: datetime) -> str:
    """Hyper-V's default: ``<vm> - (MM/DD/YYYY - hh:mm:ss AM/PM)``."""
    return f"{vm_name} - ({when:%m/%d/%Y - %I:%M:%S %p})"


def new_guid() -> str:
    return str(uuid.uuid4())


def validate_vm_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a VM name cannot be empty")
    if len(name) > 100:
        raise ValueError(f"a VM name is at most 100 characters (got {len(name)})")
    if not is_display_safe(name):  # Cc (C0, DEL, C1), bidi controls, line separators
        raise ValueError(f"{name!r} cannot be a VM name: it holds control or bidi-override characters")
    if any(ch in name for ch in '/\\:*?"<>|') or name in (".", "..") or name != name.strip():
        raise ValueError(f"{name!r} cannot be a VM name: no slashes, control or reserved characters, no edge spaces")
    return name


def validate_checkpoint_name(host: str, operation: str, name: str) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        length = len(name) if isinstance(name, str) else 0
        raise HostError(host, operation, f"a checkpoint name must be 1 to 100 characters (got {length})")
    if any(ord(ch) < 32 for ch in name):
        raise HostError(host, operation, "a checkpoint name cannot contain control characters")
    return name


def vm_config(vm: dict[str, Any]) -> dict[str, Any]:
    """The VM's configuration as the .vmcx holds it (JSON here; binary on Hyper-V)."""
    return {
        "format": CONFIG_FORMAT,
        "id": vm["id"],
        "name": vm["name"],
        "state": vm["state"],
        "generation": vm.get("generation", 2),
        "version": vm.get("version", "10.0"),
        "checkpoint_type": vm.get("checkpoint_type", "Production"),
        "cpus": vm.get("cpus", 2),
        "memory": vm.get("memory", 0),
        "config_file": vm["config_file"],
        "parent_checkpoint_id": vm.get("parent_checkpoint_id"),
        "disks": [dict(d) for d in vm["disks"]],
        "files": {name: {"parent": meta["parent"], "size": meta["size"]} for name, meta in vm["files"].items()},
        "checkpoints": [dict(cp) for cp in vm["checkpoints"]],
    }


def chain_names(vm: dict[str, Any], top: str) -> list[str]:
    """The files of the chain starting at ``top``, child first (base disk last)."""
    out: list[str] = []
    name: str | None = top
    while name is not None and name not in out:
        out.append(name)
        name = vm["files"][name]["parent"]
    return out


def checkpoint_model(cp: dict[str, Any]) -> Checkpoint:
    """A checkpoint record as the model shows it."""
    return Checkpoint(
        id=cp["id"],
        name=cp["name"],
        type=cp["type"],
        created=parse_time(cp["created"]),
        parent_id=cp.get("parent_id"),
        is_automatic=bool(cp.get("is_automatic", False)),
    )
