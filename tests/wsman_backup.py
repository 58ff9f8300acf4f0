"""The backup operations for the loopback WS-Management server, answered from a lab host.

``LabBackupBackend`` answers ``backup.begin/changes/end/leftovers`` as the templates would on
Hyper-V: ``backup.begin`` opens a lab backup source (a Recovery checkpoint, renamed to the label),
reports its frozen files as Windows paths under drive ``D:`` (``D:\\`` is ``drive_root``, a folder
holding the lab host's), and keeps the source open until ``backup.end``; the lab's RCT ids stand
in for Hyper-V's.
``D:\\`` is the Samba share whose folder holds the lab: the data path is real SMB3
(``CountingFiles`` counts what it returns).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PureWindowsPath
from typing import Any, BinaryIO

from wsman_server import LabBackend

from hvtui.errors import HostError, NotFoundError
from hvtui.hosts.base import BACKUP_LABEL_PREFIX, BackupSource
from hvtui.hosts.lab.backup import backup_changes
from hvtui.hosts.vhdx import VhdxFile

DRIVE = "D:"


def to_windows(path: Path, root: Path) -> str:
    return str(PureWindowsPath(DRIVE + "\\", *path.relative_to(root).parts))


class _CountingReader(io.RawIOBase):
    def __init__(self, files: CountingFiles, inner: BinaryIO) -> None:
        self._files = files
        self._inner = inner

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        with self._files.lock:
            self._files.bytes_read += len(data)
        if self._files.on_read is not None:
            self._files.on_read(self._files.bytes_read)
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


class CountingFiles:
    """A ``RemoteFiles`` (the real SMB one) that counts the bytes its readers return: what
    crossed the data path.  ``on_read(total)`` runs after each read (a test stops the server)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.bytes_read = 0
        self.on_read: Callable[[int], None] | None = None

    def open_read(self, host_path: str) -> BinaryIO:
        # Small reads (VHDX headers) stay small: no read-ahead buffer of our own on top.
        return io.BufferedReader(_CountingReader(self, self.inner.open_read(host_path)), buffer_size=64 << 10)  # type: ignore[return-value]

    def open_write(self, host_path: str) -> BinaryIO:
        return self.inner.open_write(host_path)

    def size(self, host_path: str) -> int:
        return self.inner.size(host_path)

    def makedirs(self, host_path: str) -> None:
        self.inner.makedirs(host_path)

    def remove(self, host_path: str) -> None:
        self.inner.remove(host_path)

    def remove_folder(self, host_path: str) -> None:
        self.inner.remove_folder(host_path)

    def close(self) -> None:
        self.inner.close()


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


@dataclass
class _Open:
    vm_id: str
    source: BackupSource
    disks: dict[str, tuple[str, int]]  # windows path (lower) -> (lab identity, virtual size)
    rct: dict[str, str]  # windows path of a chain's top -> the lab's RCT id at begin


@dataclass
class BackupFaults:
    end_failures: int = 0  # this many backup.end calls fail before one works
    end_calls: list[dict] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    consistency_fails: bool = False  # the guest cannot do VSS
    missing_file: bool = False  # backup.begin lists a frozen file the share does not hold


class LabBackupBackend(LabBackend):
    """``LabBackend`` plus the backup operations (module docstring)."""

    def __init__(self, lab_host: Any, drive_root: Path) -> None:
        super().__init__(lab_host)
        self.root = drive_root
        self.open: dict[str, _Open] = {}  # checkpoint id -> the open lab source
        self.reference_points: dict[str, list[dict]] = {}  # vm id -> its reference points
        self.faults = BackupFaults()

    def handle(self, op: str, args: dict) -> dict:
        if not op.startswith("backup."):
            return super().handle(op, args)
        try:
            return getattr(self, "_" + op.split(".", 1)[1])(args)
        except NotFoundError as err:
            return {"ok": False, "error": err.detail, "fqid": "HvtuiKind-not-found", "kind": "not-found"}
        except HostError as err:
            kind = err.kind if err.kind in ("rct-invalid", "busy", "argument", "state") else None
            return {"ok": False, "error": err.detail, "fqid": f"HvtuiKind-{kind}" if kind else "HvtuiLabError",
                    **({"kind": kind} if kind else {})}  # fmt: skip

    # -- operations ----------------------------------------------------------------------------
    def _begin(self, args: dict) -> dict:
        vm_id = args["vm_id"]
        for cp in self.lab.vm(vm_id).checkpoints:
            if cp.type == "Recovery" and cp.name.startswith(BACKUP_LABEL_PREFIX):
                raise HostError("lab", "backup.begin", f"the VM already has the hvtui Recovery checkpoint {cp.name}", kind="busy")
        if args["consistency"] == "application" and self.faults.consistency_fails:
            return {"ok": False, "error": "the guest cannot make a VSS snapshot", "fqid": "HvtuiKind-consistency",
                    "kind": "consistency"}  # fmt: skip
        source = self.lab.open_backup_source(vm_id)
        self.lab.rename_checkpoint(vm_id, source.checkpoint_id, args["label"])
        disks: dict[str, tuple[str, int]] = {}
        rct: dict[str, str] = {}
        files: list[dict] = []
        folder = None
        parents: set[str] = set()
        for sf in source.files:
            assert sf.local_path is not None
            win = to_windows(sf.local_path, self.root)
            record: dict[str, Any] = {"role": "config", "path": win, "size": sf.size, "mtime": _iso(sf.mtime_ns)}
            if sf.rel_path.endswith("vhdx"):
                folder = folder or sf.local_path.parent
                with VhdxFile(sf.local_path) as disk:
                    parent = disk.parent_name
                    record.update(role="disk", disk_id=sf.identity, format="VHDX",
                                  vhd_type="Differencing" if parent else "Dynamic", virtual_size=disk.virtual_size,
                                  block_size=disk.block_size, logical_sector_size=disk.sector_size,
                                  parent_path=to_windows(sf.local_path.parent / parent, self.root) if parent else None,
                                  controller="SCSI", controller_number=0, controller_location=0)  # fmt: skip
                    if parent:
                        parents.add(record["parent_path"].lower())
                disks[win.lower()] = (sf.identity, disk.virtual_size)
                if sf.change_id:
                    rct[win] = sf.change_id
            elif not sf.rel_path.endswith(".vmcx"):
                record["role"] = "state"
            files.append(record)
        rct = {path: value for path, value in rct.items() if path.lower() not in parents}
        if self.faults.missing_file:
            files.append({"role": "state", "path": f"{DRIVE}\\gone\\vm.vmrs", "size": 1, "mtime": _iso(0)})
        self.open[source.checkpoint_id] = _Open(vm_id, source, disks, rct)
        config = next(f for f in files if f["role"] == "config")
        config_name = PureWindowsPath(config["path"]).name
        vm = self.lab.vm(vm_id)
        return {
            "ok": True,
            "checkpoint_id": source.checkpoint_id,
            "consistency": "crash" if self.faults.consistency_fails else "application",
            "warnings": ["the guest cannot make a VSS snapshot; the checkpoint is crash-consistent"]
            if self.faults.consistency_fails else [],
            "vm": {"id": vm.id, "name": vm.name, "generation": vm.generation, "version": vm.version, "state": vm.state,
                   "config_path": to_windows(folder, self.root) + "\\" + config_name if folder else config["path"]},
            "files": files,
            "reference_points": list(self.reference_points.get(vm_id, [])),
        }  # fmt: skip

    def _changes(self, args: dict) -> dict:
        for entry in self.open.values():
            if entry.vm_id == args["vm_id"] and args["disk_path"].lower() in entry.disks:
                identity, virtual_size = entry.disks[args["disk_path"].lower()]
                answer = backup_changes(self.lab.store, identity, virtual_size, args["since"], args["offset"], args["length"])
                return {"ok": True, **answer}
        raise NotFoundError("lab", "backup.changes", f"no frozen disk {args['disk_path']} of a running backup")

    def _end(self, args: dict) -> dict:
        self.faults.end_calls.append(dict(args))
        if self.faults.end_failures > 0:
            self.faults.end_failures -= 1
            return {"ok": False, "error": "Msvm_ConcreteJob failed: the merge could not start", "fqid": "HvtuiCimJobFailed"}
        vm_id, checkpoint_id, outcome = args["vm_id"], args["checkpoint_id"], args["outcome"]
        answer: dict[str, Any] = {"ok": True}
        entry = self.open.pop(checkpoint_id, None)
        points = self.reference_points.setdefault(vm_id, [])
        if entry is None:
            if self.lab.vm(vm_id).checkpoint(checkpoint_id) is None:
                answer["already_gone"] = True
            else:  # a checkpoint whose backup's source this server no longer holds
                self.lab.remove_checkpoint(vm_id, checkpoint_id)
                answer["removed"] = True
        else:
            entry.source.close()  # the lab merges the checkpoint
            if outcome == "success":
                point = {"id": f"rp-{checkpoint_id}", "created": _iso(0), "rct": dict(entry.rct)}
                points.append(point)
                answer.update(reference_point_id=point["id"], rct=point["rct"])
            else:
                answer["removed"] = True
        retired = [p["id"] for p in points if p["id"] in args.get("retire", [])]
        self.reference_points[vm_id] = [p for p in points if p["id"] not in retired]
        self.faults.retired += retired
        answer["retired"] = retired
        return answer

    def _leftovers(self, args: dict) -> dict:
        checkpoints = [
            {"vm_id": vm.id, "vm_name": vm.name, "checkpoint_id": cp.id, "name": cp.name, "created": _iso(0)}
            for vm in self.lab.inventory(30.0).vms
            for cp in vm.checkpoints
            if cp.type == "Recovery" and cp.name.startswith(BACKUP_LABEL_PREFIX)
        ]
        points = [{"vm_id": vm_id, "id": p["id"], "created": p["created"]} for vm_id, ps in self.reference_points.items() for p in ps]
        return {"ok": True, "checkpoints": checkpoints, "reference_points": points}
