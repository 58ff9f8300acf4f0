"""The interface every host backend implements (lab and WinRM).

Everything here is blocking: callers run it in worker threads, never on the UI thread.
Errors are ``hvtui.errors.HostError`` (or ``NotFoundError``) with a readable message.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from hvtui.errors import HostError
from hvtui.events import CancelToken, ProgressCallback
from hvtui.model import VM, Checkpoint, HostFacts, Volume

CHECKPOINT_TYPES_CREATABLE = ("Standard", "Production", "Recovery")

# The name of the Recovery checkpoint a backup takes, as Hyper-V names it:
# "<vm> - Backup - (MM/DD/YYYY - hh:mm:ss AM)".  Other backup products' checkpoints carry
# the same pattern, so a name alone never proves a checkpoint is hvtui's.
_BACKUP_CHECKPOINT_NAME = re.compile(r".+ - Backup - \(\d\d/\d\d/\d{4} - \d\d:\d\d:\d\d [AP]M\)")


CheckpointTaken = Callable[[str, str], None]  # (checkpoint id, checkpoint name)


def backup_checkpoint_name(vm_name: str, when: datetime) -> str:
    return f"{vm_name} - Backup - ({when:%m/%d/%Y - %I:%M:%S %p})"


# The label a WinRM host's backup gives its Recovery checkpoint (wire contract, backup.begin).
BACKUP_LABEL_PREFIX = "hvtui backup "


def is_backup_checkpoint_name(name: str) -> bool:
    """True for a name of the pattern ``backup_checkpoint_name`` makes, or a WinRM backup's label."""
    return _BACKUP_CHECKPOINT_NAME.fullmatch(name) is not None or name.startswith(BACKUP_LABEL_PREFIX)


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """One inventory read of one host."""

    facts: HostFacts
    vms: tuple[VM, ...]


@dataclass(frozen=True, slots=True)
class RemoveOutcome:
    """What removing a checkpoint left running on the host.

    Hyper-V merges a deleted checkpoint's differencing data in the background; a backend
    waits for that merge up to its deadline.  ``merge_pending`` True means the host was
    still merging when the call returned: the checkpoint is gone, but the disk chain shrinks
    (and the space comes back) only when the merge is done; the next inventory shows it.
    """

    removed: tuple[str, ...] = ()  # ids of the checkpoints the host removed
    merge_pending: bool = False


@dataclass(slots=True)
class SourceFile:
    """One file of a VM as frozen for a backup.

    ``rel_path`` is relative to the VM's folder, with forward slashes; ``identity``
    identifies the file across backups (a disk id or inode, not the name);
    ``change_id`` names the change-tracking state the file is at (Hyper-V RCT id, the lab
    keeps the same record), ``None`` when the host tracks no changes for it.
    ``virtual_ranges`` True: ``changes`` answers in virtual-disk bytes (RCT on a VHDX), which
    the engine maps to file bytes by parsing the frozen file through ``open()`` (local or read
    over SMB); False: in file bytes.  ``local_path``: where the frozen file is on this machine,
    when it is (the lab's); None for a remote host's.
    """

    rel_path: str
    size: int
    mtime_ns: int
    identity: str
    change_id: str | None
    opener: Callable[[], BinaryIO] = field(repr=False)
    changes: Callable[[str], list[tuple[int, int]] | None] = field(repr=False, default=lambda _since: None)
    virtual_ranges: bool = False
    local_path: Path | None = None

    def open(self) -> BinaryIO:
        """Open the frozen file for reading (binary, seekable)."""
        return self.opener()

    def changed_ranges(self, since_change_id: str) -> list[tuple[int, int]] | None:
        """Byte ranges ``(offset, length)`` changed since ``since_change_id`` (virtual-disk
        bytes when ``virtual_ranges``).

        ``None`` means unknown (not tracked): the caller must read the whole file.  A host
        that knows why raises ``HostError`` instead (kind ``rct-invalid``: the id is unknown,
        another disk's or too old), and the caller says so.
        """
        return self.changes(since_change_id)


class BackupSource(ABC):
    """A consistent, frozen view of a VM for the duration of one backup.

    Opening takes a Recovery checkpoint; ``close`` removes it (a merge), also when the
    backup failed or was cancelled.  Use as a context manager.
    """

    vm: VM
    config: dict  # the VM's configuration, JSON-serialisable, enough to re-create it
    files: list[SourceFile]
    # The Recovery checkpoint this source took (hvtui records it, to prove later that a
    # leftover one is its own); None for a source without one.
    checkpoint_id: str | None = None
    checkpoint_name: str | None = None
    # What the host said while freezing the VM that the job must show (a fall back to crash
    # consistency); the engine copies them into the backup's warnings.
    warnings: tuple[str, ...] = ()

    def finish(self, needed_change_ids: set[str]) -> dict[str, str | None]:
        """Every file is read: release the freeze as a successful backup does, before the point is
        committed.  Returns final change ids by ``rel_path`` for the files whose id the host only
        knows now (Hyper-V names a disk's RCT id when the checkpoint becomes a reference point);
        ``needed_change_ids`` are the ids the VM's previous point recorded, which the host keeps.
        This default (the lab, whose ids are known at open) has nothing to do."""
        return {}

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> BackupSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RestoreTarget(ABC):
    """Where a restore writes files before they are handed to the host.

    The engine writes each file of the point (same relative paths as the backup's
    ``rel_path``) through ``open_file``, then calls ``commit``; on any failure it calls
    ``abort``, which removes everything staged.  A target with a local ``staging_dir`` (the
    lab) has the engine write there directly, several chunks at once; a target without one (a
    WinRM host, whose files travel over SMB) gets each file through its own ``open_file``.
    """

    staging_dir: Path | None = None
    warnings: tuple[str, ...] = ()  # after commit: what the host changed to register the VM

    def open_file(self, rel_path: str) -> BinaryIO:
        """A writer for one file of the restore, created new (``seek``, ``write``, ``close``).

        This default creates the file under ``staging_dir``, owner-only like the repository
        it comes from; ``rel_path`` was checked by the engine (no ``..``, not absolute)."""
        if self.staging_dir is None:
            raise NotImplementedError(f"{type(self).__name__} has neither a staging folder nor its own open_file")
        path = Path(self.staging_dir).joinpath(*rel_path.split("/"))
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")

    @abstractmethod
    def commit(self) -> VM | None:
        """Register the restored VM (new or in place); return it."""

    @abstractmethod
    def abort(self) -> None: ...


class Host(ABC):
    """A Hyper-V host, real (WinRM) or simulated (lab)."""

    name: str
    kind: str  # "lab" or "winrm"
    group: str | None = None
    read_only: bool = False
    in_place_replaces = "the whole VM folder"  # what an in-place restore replaces (the plan says it)

    # -- inventory -------------------------------------------------------------------
    @abstractmethod
    def inventory(self, timeout: float) -> HostSnapshot:
        """Everything the console shows about this host, in one call."""

    # -- checkpoints -------------------------------------------------------------------
    @abstractmethod
    def create_checkpoint(self, vm_id: str, name: str | None, checkpoint_type: str = "Standard") -> Checkpoint:
        """Create a checkpoint; ``name`` None gives Hyper-V's default name."""

    @abstractmethod
    def apply_checkpoint(self, vm_id: str, checkpoint_id: str, progress: ProgressCallback | None = None) -> None: ...

    @abstractmethod
    def remove_checkpoint(
        self,
        vm_id: str,
        checkpoint_id: str,
        subtree: bool = False,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> RemoveOutcome | None:
        """Delete a checkpoint (merging its differencing data), or a whole subtree.

        Returns ``None`` when the merge is done (backends that merge before returning, such
        as the lab), or a ``RemoveOutcome`` saying whether the host is still merging."""

    @abstractmethod
    def rename_checkpoint(self, vm_id: str, checkpoint_id: str, new_name: str) -> None: ...

    # -- power -----------------------------------------------------------------------------
    def start_vm(self, vm_id: str) -> None:
        """Start the VM (resume it when it is saved or paused); a running VM stays as it is.
        Hosts that cannot raise HostError kind ``unsupported`` saying what to do instead."""
        raise HostError(self.name, "start VM", f"{self.kind} hosts cannot start VMs", kind="unsupported")

    def recovery_checkpoints(self, vm_id: str, timeout: float = 60.0) -> list[Checkpoint]:
        """The VM's Recovery checkpoints (a backup's, running or left behind).

        This default reads the whole host's inventory; a backend may answer more cheaply."""
        for vm in self.inventory(timeout).vms:
            if vm.id == vm_id:
                return [cp for cp in vm.checkpoints if cp.type == "Recovery"]
        return []

    # -- backup and restore (hosts that cannot yet do this raise HostError) -------------
    def open_backup_source(
        self,
        vm_id: str,
        progress: ProgressCallback | None = None,
        on_checkpoint: CheckpointTaken | None = None,
        consistency: str | None = None,
        label: str | None = None,
    ) -> BackupSource:
        """Take a Recovery checkpoint and offer its frozen files.  ``on_checkpoint(id, name)``
        is called as soon as the checkpoint's id is known, before it is committed where the
        backend can (the caller records it: a leftover must be provably hvtui's).
        ``consistency``: ``prefer-application``, ``application`` or ``crash``; None: the
        host's configured one.  A host without guest VSS (the lab) ignores it.  ``label``: the
        checkpoint's name where the host names it (WinRM: ``hvtui backup <job id>``)."""
        raise HostError(self.name, "backup", f"{self.kind} hosts cannot be backed up yet", kind="unsupported")

    def release_backup_checkpoint(self, vm_id: str, checkpoint_id: str) -> None:
        """Remove the Recovery checkpoint a dead backup left (no restore point came of it).
        This default deletes it like any checkpoint; a host with its own release operation
        (WinRM: ``backup.end`` with outcome failed) uses that.  NotFoundError when it is gone."""
        self.remove_checkpoint(vm_id, checkpoint_id)

    def limit_read_rate(self, rate: int) -> object | None:
        """Read this host's files at most ``rate`` bytes per second from now on (``--limit-rate``).
        None: this host's files are not read over a network (the lab's are local): no limit."""
        return None

    @property
    def read_rate_limit(self) -> int | None:
        """The read-rate limit in force, bytes per second; None: unlimited."""
        return None

    def prepare_restore(
        self,
        config: dict,
        mode: str,
        vm_id: str | None = None,
        new_name: str | None = None,
        keep_checkpoints: bool = True,
        write_bytes: int = 0,
        staging_name: str | None = None,
    ) -> RestoreTarget:
        """``mode`` is "new" (a new VM named ``new_name``, new id) or "in_place"
        (over ``vm_id``, which must be off).  ``keep_checkpoints`` False (new VMs): one
        flattened disk per drive and no checkpoints.  ``write_bytes``: what the restore will
        write, for a host that checks its free space before anything is written.
        ``staging_name``: the staging folder's name, for a host whose staging a later run must
        find again (``discard_restore``); hosts that sweep their own ignore it."""
        raise HostError(self.name, "restore", f"{self.kind} hosts cannot be restored to yet", kind="unsupported")

    def discard_restore(self, staging_name: str, rel_paths: list[str]) -> None:
        """Remove what a restore that died (a killed process) staged as ``staging_name``: the
        files ``rel_paths`` of its point.  This default does nothing: the lab sweeps its own."""
        return None

    def restore_volume(self, timeout: float = 30.0) -> Volume | None:
        """The volume a restore to this host writes to, read now (the restore dialog shows its
        free space).  This default: the host's first volume."""
        volumes = self.inventory(timeout).facts.volumes
        return volumes[0] if volumes else None

    def vm_folder_files(self, vm_id: str) -> list[tuple[str, int]]:
        """Every file an in-place restore of ``vm_id`` replaces or removes: (name, bytes).

        This default lists the disk chains the inventory shows; hosts that know the VM's
        folder (the lab) list all of it."""
        for vm in self.inventory(30.0).vms:
            if vm.id == vm_id:
                links = {link.path: link.file_size for disk in vm.disks for link in disk.chain}
                return sorted(links.items())
        raise HostError(self.name, "restore", f"no VM with id {vm_id}", kind="not-found")

    def close(self) -> None:
        """Release connections; backends without any keep this default."""
        return None
