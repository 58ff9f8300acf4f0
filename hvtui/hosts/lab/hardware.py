"""Changes to a lab VM's disk set and registration: a drive added or removed, the VM re-imported
under a new id (as Hyper-V's Import-VM -GenerateNewId does) with the same disk files.

Each function takes the host's ``LabStore``; ``LabHost`` exposes them as its methods. The lab keeps
a checkpoint's files by drive index, so it changes the disk set only of a VM without checkpoints.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hvtui.errors import HostError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.records import chain_names, new_guid
from hvtui.hosts.lab.state import OpLock
from hvtui.hosts.lab.store import LabStore


def add_drive(store: LabStore, vm_id: str, size: int) -> int:
    """Attach a new empty dynamic VHDX of ``size`` virtual bytes; returns its drive index."""
    operation = "add disk"
    store.require_writable(operation)
    with store.txn(operation) as txn:
        vm = store.vm_record(txn.state, vm_id, operation)
        _check_no_checkpoints(store, vm, operation)
        folder = store.vm_folder(vm)
        number = len(vm["disks"])
        while f"{vm['name']}_disk{number}.vhdx" in vm["files"] or (folder / f"{vm['name']}_disk{number}.vhdx").exists():
            number += 1
        stem = f"{vm['name']}_disk{number}"
        vdisk.create_disk(folder / f"{stem}.vhdx", size, fsync=store.fsync)
        vm["files"][f"{stem}.vhdx"] = {"parent": None, "size": size, "identity": new_guid()}
        location = max((int(d.get("location", 0)) for d in vm["disks"]), default=-1) + 1
        controller = "SCSI" if vm.get("generation", 2) == 2 else "IDE"
        vm["disks"].append({"controller": controller, "number": 0, "location": location, "current": f"{stem}.vhdx", "stem": stem})
        store.write_vm_config(vm)
        txn.dirty = True
        return len(vm["disks"]) - 1


def remove_drive(store: LabStore, vm_id: str, disk_index: int) -> None:
    """Detach drive ``disk_index`` and delete its files (the VM no longer has that disk)."""
    operation = "remove disk"
    store.require_writable(operation)
    with store.txn(operation) as txn:
        vm = store.vm_record(txn.state, vm_id, operation)
        _check_no_checkpoints(store, vm, operation)
        drive = store.disk_record(vm, disk_index, operation)
        names = chain_names(vm, drive["current"])
        del vm["disks"][disk_index]
        for name in names:
            vm["files"].pop(name, None)
            with contextlib.suppress(FileNotFoundError):
                (store.vm_folder(vm) / name).unlink()
        store.write_vm_config(vm)
        txn.dirty = True


def reimport_vm(store: LabStore, vm_id: str, new_id: str | None = None) -> str:
    """Register the VM again under a new id, keeping its disk files (and their change tracking);
    returns the new id."""
    operation = "re-import VM"
    store.require_writable(operation)
    vm_id = store.resolve_vm_id(vm_id, operation)
    lock = OpLock(store.root, vm_id)
    if not lock.try_acquire():
        raise HostError(store.name, operation, "the VM is busy with a backup, merge or restore", kind="busy")
    try:
        with store.txn(operation) as txn:
            vm = store.vm_record(txn.state, vm_id, operation)
            if vm.get("journal") or vm.get("operation"):
                raise store.busy_error(vm, operation)
            new_id = new_id or new_guid()
            if new_id in txn.state["vms"]:
                raise HostError(store.name, operation, f"a VM with id {new_id} already exists")
            old_config, old_runtime = store.vm_folder(vm) / vm["config_file"], store.runtime_file(vm)
            del txn.state["vms"][vm["id"]]
            vm["id"] = new_id
            vm["config_file"] = f"{new_id.upper()}.vmcx"
            txn.state["vms"][new_id] = vm
            store.write_vm_config(vm)
            store.sync_runtime_file(vm)
            for stale in (old_config, old_runtime):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            txn.dirty = True
            return new_id
    finally:
        lock.release()


def _check_no_checkpoints(store: LabStore, vm: dict[str, Any], operation: str) -> None:
    if vm.get("journal") or vm.get("operation"):
        raise store.busy_error(vm, operation)
    if vm["checkpoints"]:
        raise HostError(
            store.name, operation, f"VM {vm['name']!r} has checkpoints: the lab changes the disk set only of a VM without any"
        )
