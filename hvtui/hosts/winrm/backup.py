"""Backups of VMs on a WinRM host (docs/winrm-wire.md, "Backup and restore operations").

``backup.begin`` takes the Recovery checkpoint and lists the frozen files; their bytes are read
through the host's ``RemoteFiles`` (SMB3), never over WinRM; a disk's changes since the previous
point come from ``backup.changes`` in windows of at most 1 GiB over its virtual size (virtual-disk
bytes, which the engine maps to file ranges by parsing the frozen VHDX through the same reader).
``finish`` (every file read) calls ``backup.end`` with outcome ``success``: the checkpoint becomes
a reference point whose RCT ids the point records, and reference points the VM's previous point
does not use are retired.  ``close`` on any other path (failure, cancel) calls ``backup.end``
with outcome ``failed``, retried once; if that fails too the checkpoint is a leftover, which the
checkpoint journal proves hvtui's, and the next backup of the VM (or the console) releases it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Protocol

from hvtui.errors import HostError
from hvtui.events import Progress, ProgressCallback
from hvtui.hosts.base import BACKUP_LABEL_PREFIX, BackupSource, CheckpointTaken, SourceFile
from hvtui.hosts.remote_files import RemoteFiles
from hvtui.model import VM, Checkpoint
from hvtui.wire.backup import BeginAnswer, FrozenFile, parse_begin, parse_changes, parse_end, parse_leftovers

log = logging.getLogger(__name__)

CHANGES_WINDOW = 1 << 30  # the most one backup.changes call may cover (the contract)
END_ATTEMPTS = 2  # backup.end failed is tried twice before the checkpoint counts as a leftover
CONSISTENCY_CHOICES = ("prefer-application", "application", "crash")
_PENDING = "pending:"  # a disk's change id until backup.end names its RCT id


class WireCaller(Protocol):
    """What this module needs of ``WinRMHost``: its name and one operation call."""

    name: str

    def call_operation(self, op: str, arguments: dict, timeout: float, operation: str | None = None) -> object: ...


def rel_path_for(host_path: str, vm_folder: str | None) -> str:
    """A frozen file's path inside the restore point: relative to the VM's folder when it is
    under it (``Virtual Machines/X.vmcx``), else ``volumes/<drive>/<path>`` (a disk elsewhere)."""
    parts = [p for p in host_path.replace("/", "\\").split("\\") if p]
    if vm_folder:
        folder = [p for p in vm_folder.replace("/", "\\").split("\\") if p]
        if len(parts) > len(folder) and [p.lower() for p in parts[: len(folder)]] == [p.lower() for p in folder]:
            return "/".join(parts[len(folder) :])
    if parts and parts[0].endswith(":"):
        parts[0] = parts[0][:-1]
    return "/".join(["volumes", *parts])


def _vm_folder(answer: BeginAnswer) -> str | None:
    """The VM's folder: above ``Virtual Machines\\<id>.vmcx``, else the first disk's folder."""
    config = answer.vm.config_path
    if config:
        parts = config.replace("/", "\\").split("\\")
        if len(parts) >= 3 and parts[-2].lower() == "virtual machines":
            return "\\".join(parts[:-2])
        return "\\".join(parts[:-1])
    disks = [f for f in answer.files if f.role == "disk"]
    return "\\".join(disks[0].path.split("\\")[:-1]) if disks else None


def _mtime_ns(when: datetime | None) -> int:
    return int(when.timestamp() * 1_000_000_000) if when is not None else 0


class WinRMBackupSource(BackupSource):
    def __init__(
        self,
        host: WireCaller,
        remote_files: RemoteFiles,
        answer: BeginAnswer,
        label: str,
        timeout: float,
        consistency: str,
        progress: ProgressCallback | None,
    ) -> None:
        self._host = host
        self._files = remote_files
        self._answer = answer
        self._timeout = timeout
        self._progress = progress
        self._finished = False
        self._closed = False
        self.vm_id = answer.vm.id
        self.checkpoint_id = answer.checkpoint_id
        self.checkpoint_name = label
        folder = _vm_folder(answer)
        self.vm = VM(
            host=host.name,
            id=answer.vm.id,
            name=answer.vm.name,
            state=answer.vm.state,
            generation=answer.vm.generation,
            version=answer.vm.version,
            path=folder or "",
        )
        warnings = list(answer.warnings)
        if answer.consistency == "crash" and consistency != "crash" and not warnings:
            warnings.append("the checkpoint is crash-consistent: the guest could not make an application-consistent one")
        self.warnings = tuple(f"{answer.vm.name}: {w}" for w in warnings)
        parents = {f.parent_path.lower() for f in answer.files if f.role == "disk" and f.parent_path}
        self._tops = {f.path.lower() for f in answer.files if f.role == "disk" and f.path.lower() not in parents}
        self._rel = {f.path: rel_path_for(f.path, folder) for f in answer.files}
        self.files = [self._source_file(f) for f in answer.files]
        # What a restore needs to put each file back where it was, and to register the VM.
        self.config = {
            "kind": "winrm",
            "vm": {
                "id": answer.vm.id,
                "name": answer.vm.name,
                "generation": answer.vm.generation,
                "version": answer.vm.version,
                "config_path": answer.vm.config_path,
            },
            "consistency": answer.consistency,
            "files": [
                {
                    "role": f.role,
                    "path": f.path,
                    "rel_path": self._rel[f.path],
                    **({"parent_path": f.parent_path, "virtual_size": f.virtual_size, "vhd_type": f.vhd_type,
                        "controller": f.controller, "controller_number": f.controller_number,
                        "controller_location": f.controller_location} if f.role == "disk" else {}),
                }
                for f in answer.files
            ],
        }  # fmt: skip

    # -- files -------------------------------------------------------------------------------
    def _source_file(self, frozen: FrozenFile) -> SourceFile:
        path = frozen.path
        size = self._files.size(path)  # through the share map: a path outside it fails here, clearly
        tracked = frozen.path.lower() in self._tops and (frozen.format or "VHDX").upper() == "VHDX"
        identity = f"vhd:{frozen.disk_id or ''}:{path.lower()}" if frozen.role == "disk" else f"{frozen.role}:{self.vm_id}"
        return SourceFile(
            rel_path=self._rel[path],
            size=size,
            mtime_ns=_mtime_ns(frozen.mtime),
            identity=identity,
            change_id=f"{_PENDING}{self.checkpoint_id}" if tracked else None,
            opener=lambda p=path: self._files.open_read(p),
            changes=(lambda since, f=frozen: self._changes(f, since)) if tracked else (lambda _since: None),
            virtual_ranges=tracked,
        )

    def _changes(self, frozen: FrozenFile, since: str) -> list[tuple[int, int]]:
        """Every changed virtual range since ``since``, window by window over the virtual size."""
        operation = "backup.changes"
        if since.startswith(_PENDING):
            raise HostError(self._host.name, operation, "the previous point recorded no RCT id for it", kind="rct-invalid")
        virtual_size = frozen.virtual_size or 0
        out: list[tuple[int, int]] = []
        offset = 0
        while offset < virtual_size:
            length = min(CHANGES_WINDOW, virtual_size - offset)
            arguments = {"vm_id": self.vm_id, "disk_path": frozen.path, "since": since, "offset": offset, "length": length}
            doc = self._host.call_operation("backup.changes", arguments, self._timeout, operation)
            answer = parse_changes(doc, self._host.name, offset, length, operation)
            out += answer.ranges
            offset += answer.processed
        return out

    # -- ending ------------------------------------------------------------------------------
    def finish(self, needed_change_ids: set[str]) -> dict[str, str | None]:
        """``backup.end`` success: the checkpoint becomes a reference point; returns each tracked
        disk's new RCT id by rel_path (None where the host named none: the next backup reads it whole)."""
        retire = [rp.id for rp in self._answer.reference_points if not set(rp.rct.values()) & needed_change_ids]
        self._announce("turning the backup checkpoint into a reference point")
        answer = self._end("success", retire)
        if answer.already_gone:
            raise HostError(
                self._host.name,
                "backup.end",
                f"the Recovery checkpoint {self.checkpoint_name!r} was removed while the backup read its files; "
                "they may have changed under the read, so no restore point is made",
                kind="failed",
            )
        self._finished = True
        rct = {path.lower(): value for path, value in answer.rct.items()}
        return {self._rel[f.path]: rct.get(f.path.lower()) for f in self._answer.files if f.path.lower() in self._tops}

    def close(self) -> None:
        """``backup.end`` failed (no point came of it), retried once; idempotent.  After
        ``finish`` there is nothing left to release."""
        if self._closed:
            return
        self._closed = True
        if self._finished:
            return
        self._announce("removing the backup checkpoint")
        release(self._host, self.vm_id, self.checkpoint_id, self.checkpoint_name, self.vm.name, self._timeout)

    def _end(self, outcome: str, retire: list[str]):  # noqa: ANN202 - EndAnswer
        arguments = {"vm_id": self.vm_id, "checkpoint_id": self.checkpoint_id, "outcome": outcome, "retire": retire}
        doc = self._host.call_operation("backup.end", arguments, self._timeout, "backup.end")
        return parse_end(doc, self._host.name, outcome)

    def _announce(self, message: str) -> None:
        if self._progress is not None:
            self._progress(Progress(phase="cleanup", message=message))


def open_backup_source(
    host: WireCaller,
    remote_files: RemoteFiles,
    vm_id: str,
    consistency: str,
    timeout: float,
    progress: ProgressCallback | None = None,
    on_checkpoint: CheckpointTaken | None = None,
    label: str | None = None,
) -> WinRMBackupSource:
    """``backup.begin``, then the frozen files through ``remote_files``; if anything fails once
    the checkpoint exists, it is released (``backup.end`` failed) before the error goes up.
    ``label``: the checkpoint's name, ``hvtui backup <job id>`` (default: an id of its own)."""
    if consistency not in CONSISTENCY_CHOICES:
        raise HostError(
            host.name, "backup.begin", f"unknown consistency {consistency!r} (expected {', '.join(CONSISTENCY_CHOICES)})",
            kind="argument",
        )  # fmt: skip
    if label is None or not label.startswith(BACKUP_LABEL_PREFIX):
        label = BACKUP_LABEL_PREFIX + (label or uuid.uuid4().hex[:12])
    if progress is not None:
        progress(Progress(phase="checkpoint", message=f"taking a Recovery checkpoint ({consistency})"))
    doc = host.call_operation("backup.begin", {"vm_id": vm_id, "consistency": consistency, "label": label}, timeout)
    answer = parse_begin(doc, host.name)
    if on_checkpoint is not None:
        on_checkpoint(answer.checkpoint_id, label)
    try:
        source = WinRMBackupSource(host, remote_files, answer, label, timeout, consistency, progress)
    except BaseException as err:
        try:
            release(host, answer.vm.id, answer.checkpoint_id, label, answer.vm.name, timeout)
        except HostError as release_err:
            log.warning("%s: %s", host.name, release_err)
            if isinstance(err, HostError):
                err.args = (f"{err}; removing the backup checkpoint failed too ({release_err})",)
        raise
    if progress is not None:
        progress(Progress(phase="checkpoint", message="Recovery checkpoint taken", done=1, total=1))
    return source


def release(host: WireCaller, vm_id: str, checkpoint_id: str, label: str, vm_name: str, timeout: float) -> None:
    """``backup.end`` with outcome failed, tried ``END_ATTEMPTS`` times; the last error names the
    checkpoint left behind and who removes it."""
    error: HostError | None = None
    arguments = {"vm_id": vm_id, "checkpoint_id": checkpoint_id, "outcome": "failed", "retire": []}
    for attempt in range(END_ATTEMPTS):
        try:
            parse_end(host.call_operation("backup.end", arguments, timeout, "backup.end"), host.name, "failed")
            return
        except HostError as err:
            error = err
            log.warning("%s: backup.end (attempt %d of %d) failed: %s", host.name, attempt + 1, END_ATTEMPTS, err)
    assert error is not None
    raise HostError(
        host.name,
        "backup.end",
        f"{error.detail}; the Recovery checkpoint {label!r} stays on {vm_name}: "
        "the next backup of the VM removes it, or clean it up from the findings",
        kind=error.kind,
    )


def leftover_checkpoints(host: WireCaller, vm_id: str, timeout: float) -> list[Checkpoint]:
    """The VM's Recovery checkpoints labelled by hvtui's backups (``backup.leftovers``): what the
    leftover clean-up looks at, without reading the host's whole inventory."""
    answer = parse_leftovers(host.call_operation("backup.leftovers", {}, timeout), host.name)
    epoch = datetime.fromtimestamp(0, UTC)  # a leftover whose time the host did not give
    return [
        Checkpoint(id=c.checkpoint_id, name=c.name, type="Recovery", created=c.created or epoch, parent_id=None)
        for c in answer.checkpoints
        if c.vm_id.lower() == vm_id.lower()
    ]
