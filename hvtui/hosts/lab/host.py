"""``LabHost``: a simulated Hyper-V host whose VMs are real files on disk.

The host state (``host.json``) is the registry Hyper-V keeps in its VMMS database: VMs,
their checkpoint tree, and the graph of disk files (which file is whose parent).

``LabHost`` is the facade implementing ``hvtui.hosts.base.Host``; the work is done by:

- ``store.LabStore``             state transactions, records, locks, VM files, crash recovery;
- ``inventory.InventoryReader``  the VMs and checkpoints as the console's model shows them;
- ``checkpoints``                create/apply/rename/remove (``merge`` plans and runs merges);
- ``vms``                        adding VMs, power state, guest writes, test and estate knobs;
- ``backup`` / ``restore``       backup sources (a Recovery checkpoint) and restore targets.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from hvtui.clock import Clock
from hvtui.errors import HostError
from hvtui.events import CancelToken, ProgressCallback
from hvtui.hosts.base import BackupSource, CheckpointTaken, Host, HostSnapshot, RestoreTarget, SourceFile
from hvtui.hosts.lab import backup, checkpoints, hardware, restore, vms
from hvtui.hosts.lab.inventory import InventoryReader
from hvtui.hosts.lab.records import default_checkpoint_name, iso
from hvtui.hosts.lab.state import STATE_FORMAT, VM_ROOT, save_state
from hvtui.hosts.lab.store import LOCK_TIMEOUT, LabStore
from hvtui.model import VM, Checkpoint


class LabHost(Host):
    kind = "lab"

    def __init__(self, root: Path, name: str, clock: Clock, group: str | None = None, read_only: bool = False) -> None:
        self.store = LabStore(root, name, clock, read_only=read_only)
        self.reader = InventoryReader(self.store)
        self.root = self.store.root
        self.name = name
        self.group = group

    # The store keeps these (every operation reads them there); estates and tests set them here.
    @property
    def clock(self) -> Clock:
        return self.store.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.store.clock = clock

    @property
    def read_only(self) -> bool:  # type: ignore[override]  # a plain attribute in Host
        return self.store.read_only

    @read_only.setter
    def read_only(self, read_only: bool) -> None:
        self.store.read_only = read_only

    @property
    def guest_activity(self) -> bool:
        """Off while an estate is built with a clock jumping through the past."""
        return self.store.guest_activity

    @guest_activity.setter
    def guest_activity(self, on: bool) -> None:
        self.store.guest_activity = on

    # ------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, root: Path, name: str, clock: Clock, group: str | None = None, read_only: bool = False
    ) -> LabHost:
        """Never fails: a missing directory is reported by ``inventory``.

        Without a configured group, the group recorded in the lab host's state is used.
        """
        if group is None:
            with contextlib.suppress(Exception):
                group = json.loads((Path(root) / "host.json").read_bytes()).get("group")
        return cls(root, name, clock, group=group, read_only=read_only)

    @classmethod
    def create(
        cls,
        root: Path,
        name: str,
        clock: Clock,
        *,
        os_name: str = "Windows Server 2022 Datacenter",
        build: str = "20348",
        logical_processors: int = 32,
        memory_bytes: int = 256 << 30,
        volume_size: int = 2 << 40,
        volume_label: str = "VMs",
        other_data: int = 0,
        profile: str = "custom",
        group: str | None = None,
    ) -> LabHost:
        """Create an empty lab host directory (fails if one exists)."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        if (root / "host.json").exists():
            raise HostError(name, "create host", f"{root} already holds a lab host")
        (root / VM_ROOT).mkdir(exist_ok=True)
        state = {
            "format": STATE_FORMAT,
            "name": name,
            "profile": profile,
            "group": group,
            "created": iso(clock.now()),
            "facts": {
                "os": os_name,
                "build": build,
                "logical_processors": logical_processors,
                "memory_bytes": memory_bytes,
            },
            "volume": {"label": volume_label, "size": volume_size, "other": other_data},
            "vms": {},
        }
        save_state(root, state)
        return cls(root, name, clock, group=group)

    @contextlib.contextmanager
    def batch(self, fsync: bool = False) -> Iterator[dict[str, Any]]:
        """Many changes under one lock and one state write (see ``LabStore.batch``)."""
        with self.store.batch(fsync) as state:
            yield state

    def vm_folder(self, vm: dict[str, Any] | str) -> Path:
        return self.store.vm_folder(vm)

    def sweep_staging(self) -> int:
        """Remove staging left by dead processes (restores and backups); returns how many."""
        return self.store.sweep_staging()

    # ------------------------------------------------------------------------------
    # inventory
    # ------------------------------------------------------------------------------
    def inventory(self, timeout: float = LOCK_TIMEOUT) -> HostSnapshot:
        return self.reader.inventory(timeout)

    def vm(self, vm_id: str) -> VM:
        """One VM as the inventory shows it (catching up guest activity first)."""
        return self.reader.vm(vm_id)

    def find_vm(self, name: str) -> str:
        """The id of the VM called ``name``."""
        return self.reader.find_vm(name)

    # ------------------------------------------------------------------------------
    # VM registry (estate building, restore, tests)
    # ------------------------------------------------------------------------------
    def add_vm(
        self,
        name: str,
        *,
        state: str = "Off",
        disk_sizes: tuple[int, ...] = (127 << 30,),
        generation: int = 2,
        version: str = "10.0",
        checkpoint_type: str = "Production",
        cpus: int = 2,
        memory: int = 4 << 30,
        seed: int | None = None,
        guest_kib_per_minute: int = 0,
        vm_id: str | None = None,
        fsync: bool = True,
    ) -> str:
        """Register a new VM with empty base disks; returns its id."""
        return vms.add_vm(
            self.store,
            name,
            state=state,
            disk_sizes=disk_sizes,
            generation=generation,
            version=version,
            checkpoint_type=checkpoint_type,
            cpus=cpus,
            memory=memory,
            seed=seed,
            guest_kib_per_minute=guest_kib_per_minute,
            vm_id=vm_id,
            fsync=fsync,
        )

    def set_vm_state(self, vm_id: str, state: str) -> None:
        """Start, stop, save or pause a VM (estate building and tests)."""
        vms.set_vm_state(self.store, vm_id, state)

    def start_vm(self, vm_id: str) -> None:
        """Start (or resume) the VM: its state becomes Running."""
        vms.start_vm(self.store, vm_id)

    def set_guest_activity(self, vm_id: str, kib_per_minute: int, **profile: Any) -> None:
        vms.set_guest_activity(self.store, vm_id, kib_per_minute, **profile)

    def write_guest_data(self, vm_id: str, disk_index: int, offset: int, data: bytes) -> None:
        """Write into the VM's current disk file as the guest would (change-tracked)."""
        vms.write_guest_data(self.store, vm_id, disk_index, offset, data)

    def write_guest_blocks(self, vm_id: str, disk_index: int, blocks: Iterator[tuple[int, bytes]]) -> int:
        """Write whole blocks ``(block index, payload)`` into the current file; returns bytes."""
        return vms.write_guest_blocks(self.store, vm_id, disk_index, blocks)

    def read_disk(self, vm_id: str, disk_index: int, offset: int, length: int) -> bytes:
        """Read the VM's logical disk (the running state) through its chain."""
        return vms.read_disk(self.store, vm_id, disk_index, offset, length)

    def disk_path(self, vm_id: str, disk_index: int = 0) -> Path:
        """The file the VM writes to now."""
        return vms.disk_path(self.store, vm_id, disk_index)

    def checkpoint_disk_path(self, vm_id: str, checkpoint_id: str, disk_index: int = 0) -> Path:
        """The file a checkpoint froze (its state is that file's logical disk)."""
        return vms.checkpoint_disk_path(self.store, vm_id, checkpoint_id, disk_index)

    # -- volume and failure knobs ------------------------------------------------------
    def set_volume(self, size: int | None = None, free: int | None = None, other: int | None = None) -> None:
        """Resize the simulated volume; ``free`` sets the "other data" so that this much is free."""
        vms.set_volume(self.store, size=size, free=free, other=other)

    def add_stray_file(self, vm_id: str, name: str | None = None, data_bytes: int = 4 << 20) -> Path:
        """Leave an unregistered ``.avhdx`` in the VM's folder (an orphan from a failed merge)."""
        return vms.add_stray_file(self.store, vm_id, name=name, data_bytes=data_bytes)

    def simulate_failed_merge(self, vm_id: str) -> None:
        """Leave the VM running on an .avhdx with no checkpoint, as a merge that failed does."""
        vms.simulate_failed_merge(self.store, vm_id)

    def add_drive(self, vm_id: str, size: int) -> int:
        """Attach a new empty disk (a VM without checkpoints); returns its drive index."""
        return hardware.add_drive(self.store, vm_id, size)

    def remove_drive(self, vm_id: str, disk_index: int) -> None:
        """Detach a drive and delete its files (a VM without checkpoints)."""
        hardware.remove_drive(self.store, vm_id, disk_index)

    def reimport_vm(self, vm_id: str, new_id: str | None = None) -> str:
        """Register the VM again under a new id with the same disks; returns the new id."""
        return hardware.reimport_vm(self.store, vm_id, new_id)

    def backdate_checkpoint(self, vm_id: str, checkpoint_id: str, created: datetime) -> None:
        """Change a checkpoint's creation time (estate building, tests of ages)."""
        checkpoints.backdate_checkpoint(self.store, vm_id, checkpoint_id, created)

    # ------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------
    def create_checkpoint(self, vm_id: str, name: str | None, checkpoint_type: str = "Standard") -> Checkpoint:
        return checkpoints.create_checkpoint(self.store, vm_id, name, checkpoint_type)

    def apply_checkpoint(self, vm_id: str, checkpoint_id: str, progress: ProgressCallback | None = None) -> None:
        checkpoints.apply_checkpoint(self.store, vm_id, checkpoint_id, progress)

    def rename_checkpoint(self, vm_id: str, checkpoint_id: str, new_name: str) -> None:
        checkpoints.rename_checkpoint(self.store, vm_id, checkpoint_id, new_name)

    def remove_checkpoint(
        self,
        vm_id: str,
        checkpoint_id: str,
        subtree: bool = False,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> None:
        checkpoints.remove_checkpoint(self.store, vm_id, checkpoint_id, subtree, progress, cancel)

    def recovery_checkpoints(self, vm_id: str, timeout: float = 60.0) -> list[Checkpoint]:
        return checkpoints.recovery_checkpoints(self.store, vm_id)

    def cleanup_recovery_checkpoints(self, vm_id: str, progress: ProgressCallback | None = None) -> int:
        """Remove every Recovery checkpoint of the VM, whoever made it; returns how many.

        A lab tool (tests, estates): hvtui's backups remove only the ones they can prove
        are their own (``hvtui.backups.leftovers``)."""
        return checkpoints.cleanup_recovery_checkpoints(self.store, vm_id, progress)

    # ------------------------------------------------------------------------------
    # backup and restore
    # ------------------------------------------------------------------------------
    def open_backup_source(
        self,
        vm_id: str,
        progress: ProgressCallback | None = None,
        on_checkpoint: CheckpointTaken | None = None,
        consistency: str | None = None,  # the lab's checkpoints need no guest VSS: always consistent
        label: str | None = None,  # the lab names its checkpoint as Hyper-V does
    ) -> BackupSource:
        return backup.open_backup_source(self.store, self.reader, vm_id, progress, on_checkpoint)

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
        # The engine checks the staging folder's free space itself (it is local): write_bytes unused;
        # the lab names and sweeps its own staging folders: staging_name unused.
        return restore.prepare_restore(
            self.store, self.reader, config, mode, vm_id=vm_id, new_name=new_name, keep_checkpoints=keep_checkpoints
        )

    def vm_folder_files(self, vm_id: str) -> list[tuple[str, int]]:
        return restore.vm_folder_files(self.store, vm_id)


def open_file(path: Path) -> BinaryIO:
    return open(path, "rb")


__all__ = ["LabHost", "SourceFile", "default_checkpoint_name", "open_file"]
