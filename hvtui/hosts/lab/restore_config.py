"""Checking a VM configuration that comes back from a backup before a lab restore uses it.

The configuration is read from a repository manifest, and anyone who can write the
repository can write it: every field a restore turns into a file name, a record or a
checkpoint is checked here like user input (file names are plain names in the VM's
folder, stems and checkpoint names follow the rules of the commands that make them).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import datetime
from typing import Any

from hvtui.errors import HostError
from hvtui.hosts.lab.records import CONFIG_FORMAT, DISK_SUFFIXES, MAX_CHECKPOINTS, VM_STATES, validate_vm_name

# Types are Hyper-V's words (Standard, Production, Recovery, Replica, Planned ...): letters only.
TYPE_RE = re.compile(r"[A-Za-z]{1,40}")
MAX_FILE_NAME = 255
MAX_CHECKPOINT_NAME = 100  # Hyper-V Manager's limit, as for checkpoints created here


class _Bad(ValueError):
    pass


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _plain_name(value: object, what: str) -> str:
    """A single file-name component: no separators, no control characters, not . or .."""
    if not isinstance(value, str) or not value or len(value) > MAX_FILE_NAME:
        raise _Bad(f"{what} must be a file name of 1 to {MAX_FILE_NAME} characters, not {value!r}")
    if any(ch in value for ch in "/\\:") or _has_control(value) or value in (".", ".."):
        raise _Bad(f"{what} {value!r} is not a plain file name (separators, control characters, '.' or '..')")
    return value


def _count(value: object, what: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise _Bad(f"{what} must be an integer {bound}, not {value!r}")
    return value


def _guid(value: object, what: str) -> str:
    try:
        uuid.UUID(str(value))
    except ValueError:
        raise _Bad(f"{what} {value!r} is not a GUID") from None
    if not isinstance(value, str):
        raise _Bad(f"{what} {value!r} is not a GUID")
    return value


def _check_files(files: object) -> dict[str, Any]:
    if not isinstance(files, dict) or not files:
        raise _Bad("files must be a non-empty mapping of disk file names")
    for name, meta in files.items():
        _plain_name(name, "disk file name")
        if not name.lower().endswith(DISK_SUFFIXES):
            raise _Bad(f"disk file {name!r} is not a .vhdx or .avhdx file")
        if not isinstance(meta, dict):
            raise _Bad(f"disk file {name!r} has no description")
        _count(meta.get("size"), f"size of {name}")
        parent = meta.get("parent")
        if parent is not None and parent not in files:
            raise _Bad(f"disk file {name!r} names an unknown parent {parent!r}")
    for name in files:  # every chain ends: no file is its own ancestor
        seen: set[str] = set()
        current: str | None = name
        while current is not None:
            if current in seen:
                raise _Bad(f"the parents of disk file {name!r} form a loop")
            seen.add(current)
            current = files[current].get("parent")
    return files


def _check_disks(disks: object, files: dict[str, Any]) -> None:
    if not isinstance(disks, list) or not disks:
        raise _Bad("disks must be a non-empty list")
    for index, d in enumerate(disks):
        if not isinstance(d, dict):
            raise _Bad(f"disk {index} has no description")
        if d.get("current") not in files:
            raise _Bad(f"disk {index} names an unknown current file {d.get('current')!r}")
        stem = d.get("stem")
        if stem is not None:  # differencing files are named <stem>_<GUID>.avhdx in the VM's folder
            try:
                validate_vm_name(stem)
            except ValueError as err:
                raise _Bad(f"disk {index} has an unsafe file stem {stem!r}: {err}") from None
        if not isinstance(d.get("controller", "SCSI"), str):
            raise _Bad(f"disk {index} has a bad controller {d.get('controller')!r}")
        _count(d.get("number", 0), f"controller number of disk {index}", 0, 3)
        _count(d.get("location", 0), f"controller location of disk {index}", 0, 63)


def _check_checkpoints(checkpoints: object, files: dict[str, Any], parent_id: object) -> None:
    if not isinstance(checkpoints, list) or len(checkpoints) > MAX_CHECKPOINTS:
        raise _Bad(f"checkpoints must be a list of at most {MAX_CHECKPOINTS}")
    ids: set[str] = set()
    for cp in checkpoints:
        if not isinstance(cp, dict):
            raise _Bad("a checkpoint has no description")
        cp_id = _guid(cp.get("id"), "checkpoint id")
        if cp_id in ids:
            raise _Bad(f"checkpoint id {cp_id} appears twice")
        ids.add(cp_id)
        name = cp.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_CHECKPOINT_NAME or _has_control(name):
            raise _Bad(f"checkpoint {cp_id} has a name that is not 1 to 100 printable characters: {name!r:.120}")
        if not isinstance(cp.get("type"), str) or not TYPE_RE.fullmatch(cp["type"]):
            raise _Bad(f"checkpoint {cp_id} has an unknown type {cp.get('type')!r}")
        try:
            datetime.fromisoformat(cp.get("created"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _Bad(f"checkpoint {cp_id} has a bad creation time {cp.get('created')!r}") from None
        if cp.get("vm_state", "Off") not in VM_STATES:
            raise _Bad(f"checkpoint {cp_id} has an unknown VM state {cp.get('vm_state')!r}")
        frozen = cp.get("files")
        if not isinstance(frozen, list) or any(not isinstance(f, str) or f not in files for f in frozen):
            raise _Bad(f"checkpoint {cp_id} names files that are not in the configuration")
    for cp in checkpoints:
        if cp.get("parent_id") is not None and cp["parent_id"] not in ids:
            raise _Bad(f"checkpoint {cp['id']} names an unknown parent {cp['parent_id']!r}")
    if parent_id is not None and parent_id not in ids:
        raise _Bad(f"parent_checkpoint_id {parent_id!r} is not one of the checkpoints")


def _from_winrm(config: dict[str, Any]) -> dict[str, Any]:
    """A WinRM point's configuration (hosts/winrm/backup.py) as a lab one: its disk files, by their
    names in the VM's folder, each with its parent and virtual size; the tops of the chains are the
    VM's drives.  Hyper-V's own configuration file stays behind (the lab writes its record)."""
    vm, entries = config.get("vm"), config.get("files")
    if not isinstance(vm, dict) or not isinstance(entries, list):
        raise _Bad("the WinRM configuration has no VM or file list")
    disks = [f for f in entries if isinstance(f, dict) and f.get("role") == "disk"]
    names: dict[str, str] = {}
    for f in disks:
        rel = f.get("rel_path")
        if not isinstance(rel, str) or "/" in rel or "\\" in rel:
            raise _Bad(f"disk {f.get('path')} lies outside the VM's folder: a lab restore takes disks of that folder only")
        names[str(f.get("path", "")).lower()] = rel
    files: dict[str, Any] = {}
    parents: set[str] = set()
    for f in disks:
        parent = f.get("parent_path")
        parent_name = names.get(str(parent).lower()) if parent else None
        if parent and parent_name is None:
            raise _Bad(f"disk {f['rel_path']!r} names a parent that is not in the backup: {parent!r}")
        if parent_name:
            parents.add(parent_name)
        files[f["rel_path"]] = {"parent": parent_name, "size": f.get("virtual_size")}
    drives = [
        {"current": f["rel_path"], "controller": f.get("controller") or "SCSI",
         "number": f.get("controller_number") or 0, "location": f.get("controller_location") or 0}
        for f in disks if f["rel_path"] not in parents
    ]  # fmt: skip
    name = vm.get("name")
    return {
        "format": CONFIG_FORMAT,
        "name": name,
        "generation": vm.get("generation", 2),
        "version": vm.get("version") or "10.0",
        "files": files,
        "disks": drives,
        "checkpoints": [],
    }


def check_restore_config(host: str, config: object) -> dict[str, Any]:
    """``config`` when a lab restore may use it; otherwise a HostError naming the bad field.
    A WinRM point's configuration is translated first (``_from_winrm``)."""
    try:
        if isinstance(config, dict) and config.get("kind") == "winrm":
            try:
                config = _from_winrm(config)
            except _Bad as err:
                raise HostError(host, "restore", f"this backup of a Hyper-V host cannot be restored on a lab host: {err}") from None
        if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
            raise _Bad("it has no lab configuration format marker")
        try:
            validate_vm_name(config.get("name"))  # type: ignore[arg-type]
        except ValueError as err:
            raise _Bad(f"VM name: {err}") from None
        files = _check_files(config.get("files"))
        _check_disks(config.get("disks"), files)
        _check_checkpoints(config.get("checkpoints", []), files, config.get("parent_checkpoint_id"))
        if config.get("generation", 2) not in (1, 2) or isinstance(config.get("generation"), bool):
            raise _Bad(f"generation must be 1 or 2, not {config.get('generation')!r}")
        if not isinstance(config.get("version", "10.0"), str):
            raise _Bad(f"version must be text, not {config.get('version')!r}")
        kind = config.get("checkpoint_type", "Production")
        if not isinstance(kind, str) or not TYPE_RE.fullmatch(kind):
            raise _Bad(f"unknown checkpoint type {config.get('checkpoint_type')!r}")
        _count(config.get("cpus", 2), "cpus", 1, 2048)
        _count(config.get("memory", 0), "memory")
    except _Bad as err:
        problem = f"the backup's VM configuration is not a lab VM configuration ({CONFIG_FORMAT}) that can be restored"
        raise HostError(host, "restore", f"{problem}: {err}") from None
    return config
