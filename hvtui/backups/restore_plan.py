"""What a restore will do, before it runs: the plan the CLI prints, the console's confirmation
shows and the audit log records.

An in-place restore replaces the VM's whole folder with the restore point's files: files
of the same name are overwritten, the others are deleted, and every checkpoint the point
does not hold (made after it, typically) is lost with its differencing disks.  A restore
as a new VM or into a folder overwrites nothing; by default it flattens each drive's chain
into one disk and drops the point's checkpoints (``keep_checkpoints`` keeps the tree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import humanize

from hvtui.engine.manifest import Manifest
from hvtui.engine.restore import bytes_to_write
from hvtui.hosts.base import Host
from hvtui.hosts.formats import checkpoint_names
from hvtui.model import VM

WHOLE_FOLDER = "the whole VM folder"  # what an in-place restore replaces on a lab host


def size_text(num: int) -> str:
    return humanize.naturalsize(num, binary=True)


@dataclass(frozen=True, slots=True)
class PlannedFile:
    name: str
    bytes: int


@dataclass(frozen=True, slots=True)
class LostCheckpoint:
    id: str
    name: str
    created: datetime


@dataclass(slots=True)
class RestorePlan:
    point_id: str
    point_time: datetime
    host: str
    vm_name: str
    target: str  # in_place, new or directory
    destination: str  # "host/VM" or the directory
    files: int  # files the point holds
    logical_bytes: int
    write_bytes: int  # data the restore writes (holes excluded)
    keep_checkpoints: bool
    point_checkpoints: tuple[str, ...]  # checkpoints the point holds, by name
    replaced: tuple[PlannedFile, ...] = ()  # in place: the VM's files the point's overwrite
    deleted: tuple[PlannedFile, ...] = ()  # in place: the VM's files the point does not have
    lost_checkpoints: tuple[LostCheckpoint, ...] = ()  # in place: checkpoints the point does not hold
    replaces: str = WHOLE_FOLDER  # in place: what the host replaces (a WinRM host: the VM's disks)
    notes: list[str] = field(default_factory=list)

    @property
    def restored_checkpoints(self) -> tuple[str, ...]:
        return self.point_checkpoints if self.keep_checkpoints or self.target == "in_place" else ()

    @property
    def dropped_checkpoints(self) -> tuple[str, ...]:
        return () if self.keep_checkpoints or self.target == "in_place" else self.point_checkpoints

    @property
    def lost_bytes(self) -> int:
        """Bytes of the VM's current files an in-place restore overwrites or deletes."""
        return sum(f.bytes for f in self.replaced) + sum(f.bytes for f in self.deleted)

    def lines(self) -> list[str]:
        """The plan in words, one line each, for the terminal and the console."""
        when = self.point_time.astimezone().strftime("%Y-%m-%d %H:%M")
        out = [
            f"Restore point {self.point_id} of {self.vm_name} ({when}): {self.files} files, "
            f"{size_text(self.logical_bytes)} ({size_text(self.write_bytes)} of data to write) to {self.destination}."
        ]
        if self.target == "in_place":
            out.append(
                f"Replaced: {self.replaces}, {len(self.replaced) + len(self.deleted)} files, "
                f"{size_text(self.lost_bytes)}; everything written since the point is lost."
            )
            out += [f"  overwritten: {f.name} ({size_text(f.bytes)})" for f in self.replaced]
            out += [f"  deleted:     {f.name} ({size_text(f.bytes)})" for f in self.deleted]
            if self.lost_checkpoints:
                out.append(f"Checkpoints lost ({len(self.lost_checkpoints)}), with their differencing disks:")
                out += [
                    f"  {cp.name!r} (created {cp.created.astimezone():%Y-%m-%d %H:%M})" for cp in self.lost_checkpoints
                ]
            else:
                out.append("Checkpoints lost: none.")
        if self.restored_checkpoints:
            out.append("Checkpoints restored: " + ", ".join(repr(n) for n in self.restored_checkpoints) + ".")
        elif self.dropped_checkpoints:
            out.append(
                "One flattened disk per drive, no checkpoints (the point's "
                + ", ".join(repr(n) for n in self.dropped_checkpoints)
                + " not restored; --keep-checkpoints keeps them)."
            )
        out += self.notes
        return out

    def audit_args(self) -> dict[str, Any]:
        """What the audit entry records of the plan."""
        args: dict[str, Any] = {"keep_checkpoints": self.keep_checkpoints or self.target == "in_place"}
        if self.target == "in_place":
            args["lost_checkpoints"] = [cp.name for cp in self.lost_checkpoints]
            args["replaced_files"] = [f.name for f in self.replaced]
            args["deleted_files"] = [f.name for f in self.deleted]
            args["replaced_bytes"] = self.lost_bytes
        elif self.dropped_checkpoints:
            args["dropped_checkpoints"] = list(self.dropped_checkpoints)
        return args

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point_id,
            "target": self.target,
            "destination": self.destination,
            "files": self.files,
            "logical_bytes": self.logical_bytes,
            "write_bytes": self.write_bytes,
            "restored_checkpoints": list(self.restored_checkpoints),
            "dropped_checkpoints": list(self.dropped_checkpoints),
            "lost_checkpoints": [{"id": cp.id, "name": cp.name, "created": cp.created.isoformat()} for cp in self.lost_checkpoints],
            "overwritten_files": [{"name": f.name, "bytes": f.bytes} for f in self.replaced],
            "deleted_files": [{"name": f.name, "bytes": f.bytes} for f in self.deleted],
            "lost_bytes": self.lost_bytes,
        }


def build_plan(
    manifest: Manifest,
    target: str,
    destination: str,
    keep_checkpoints: bool,
    vm: VM | None = None,
    folder_files: list[tuple[str, int]] | None = None,
    replaces: str = WHOLE_FOLDER,
) -> RestorePlan:
    """The plan of restoring ``manifest``; in place, ``vm`` and ``folder_files`` are the VM now."""
    plan = RestorePlan(
        point_id=manifest.id,
        point_time=manifest.time,
        host=manifest.host,
        vm_name=manifest.vm_name,
        target=target,
        destination=destination,
        files=len(manifest.files),
        logical_bytes=manifest.logical_bytes,
        write_bytes=bytes_to_write(manifest),
        keep_checkpoints=keep_checkpoints,
        point_checkpoints=tuple(checkpoint_names(manifest.vm_config)),
        replaces=replaces,
    )
    if target == "in_place" and vm is not None:
        in_point = {entry.path for entry in manifest.files}
        files = [PlannedFile(name, size) for name, size in folder_files or []]
        plan.replaced = tuple(f for f in files if f.name in in_point)
        plan.deleted = tuple(f for f in files if f.name not in in_point)
        kept = {str(cp.get("id")) for cp in manifest.vm_config.get("checkpoints") or [] if isinstance(cp, dict)}
        plan.lost_checkpoints = tuple(
            LostCheckpoint(cp.id, cp.name, cp.created) for cp in vm.checkpoints if cp.id not in kept
        )
    return plan


def current_vm(host: Host, vm_id: str) -> VM | None:
    """The VM with ``vm_id`` on ``host`` now (a fresh inventory), or None."""
    for vm in host.inventory(30.0).vms:
        if vm.id == vm_id:
            return vm
    return None


def plan_for(
    manifest: Manifest,
    to_dir: Path | str | None,
    as_name: str | None,
    target_host: str,
    keep_checkpoints: bool,
    host: Host | None = None,
) -> RestorePlan:
    """The plan into ``to_dir``, as a new VM ``as_name`` on ``target_host``, or (``host``, the
    target host itself, given) in place over the point's VM there, read now."""
    if to_dir is not None:
        return build_plan(manifest, "directory", str(Path(to_dir).expanduser().absolute()), keep_checkpoints)
    if host is None:
        return build_plan(manifest, "new", f"new VM {as_name} on {target_host}", keep_checkpoints)
    vm = current_vm(host, manifest.vm_id)
    files = host.vm_folder_files(manifest.vm_id) if vm is not None else []
    destination = f"VM {manifest.vm_name} on {target_host}"
    return build_plan(manifest, "in_place", destination, True, vm, files, host.in_place_replaces)
