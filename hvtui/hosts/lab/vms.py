"""The VM registry of a lab host: adding VMs, their power state, guest writes, and the knobs
estates and tests turn (volume size, stray files, a failed merge).

Each function takes the host's ``LabStore``; ``LabHost`` exposes them as its methods.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hvtui.errors import HostError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab import guest
from hvtui.hosts.lab.records import VM_STATES, chain_names, iso, new_guid, validate_vm_name
from hvtui.hosts.lab.state import VM_ROOT
from hvtui.hosts.lab.store import LabStore


def add_vm(
    store: LabStore,
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
    store.require_writable("add VM")
    try:
        validate_vm_name(name)
    except ValueError as err:
        raise HostError(store.name, "add VM", str(err)) from None
    if state not in VM_STATES:
        raise HostError(store.name, "add VM", f"unknown VM state {state!r} (expected one of {', '.join(VM_STATES)})")
    vm_id = vm_id or new_guid()
    with store.txn("add VM") as txn:
        if any(rec["name"] == name for rec in txn.state["vms"].values()):
            raise HostError(store.name, "add VM", f"a VM named {name!r} already exists")
        folder = Path(VM_ROOT) / name
        abs_folder = store.root / folder
        if abs_folder.exists():
            raise HostError(store.name, "add VM", f"folder {abs_folder} already exists")
        abs_folder.mkdir(parents=True)
        now = store.clock.now()
        files: dict[str, Any] = {}
        disks: list[dict[str, Any]] = []
        for index, size in enumerate(disk_sizes):
            stem = name if index == 0 else f"{name}_disk{index}"
            file_name = f"{stem}.vhdx"
            vdisk.create_disk(abs_folder / file_name, size, fsync=fsync and store.fsync)
            files[file_name] = {"parent": None, "size": size, "identity": new_guid()}
            disks.append(
                {
                    "controller": "SCSI" if generation == 2 else "IDE",
                    "number": 0,
                    "location": index,
                    "current": file_name,
                    "stem": stem,
                }
            )
        rec = {
            "id": vm_id,
            "name": name,
            "state": state,
            "generation": generation,
            "version": version,
            "checkpoint_type": checkpoint_type,
            "cpus": cpus,
            "memory": memory,
            "created": iso(now),
            "started": iso(now) if state in ("Running", "Paused") else None,
            "seed": seed if seed is not None else uuid.UUID(vm_id).int % (1 << 31),
            "guest": {
                "tick": guest.tick_of(now.timestamp()) if state == "Running" else None,
                "profile": guest.GuestProfile(kib_per_minute=guest_kib_per_minute).to_dict(),
            },
            "folder": str(folder),
            "config_file": f"{vm_id.upper()}.vmcx",
            "parent_checkpoint_id": None,
            "checkpoints": [],
            "disks": disks,
            "files": files,
            "journal": None,
            "operation": None,
        }
        txn.state["vms"][vm_id] = rec
        store.write_vm_config(rec)
        store.sync_runtime_file(rec)
        txn.dirty = True
    return vm_id


def set_vm_state(store: LabStore, vm_id: str, state: str) -> None:
    """Start, stop, save or pause a VM (estate building and tests)."""
    if state not in VM_STATES:
        raise HostError(store.name, "set state", f"unknown VM state {state!r} (expected one of {', '.join(VM_STATES)})")
    with store.txn("set state") as txn:
        vm = store.vm_record(txn.state, vm_id, "set state")
        if vm["state"] == state:
            return
        now = store.clock.now()
        was_running = vm["state"] in ("Running", "Paused")
        vm["state"] = state
        if state in ("Running", "Paused") and not was_running:
            vm["started"] = iso(now)
        elif state not in ("Running", "Paused"):
            vm["started"] = None
        vm.setdefault("guest", {})["tick"] = guest.tick_of(now.timestamp()) if state == "Running" else None
        store.sync_runtime_file(vm)
        store.write_vm_config(vm)
        txn.dirty = True


def start_vm(store: LabStore, vm_id: str) -> None:
    """Start (or resume) a VM, as Start-VM does: refused on a read-only host or while a merge runs."""
    store.require_writable("start VM")
    with store.txn("start VM") as txn:
        vm = store.vm_record(txn.state, vm_id, "start VM")
        if vm.get("journal"):
            raise store.busy_error(vm, "start VM")
    set_vm_state(store, vm_id, "Running")


def set_guest_activity(store: LabStore, vm_id: str, kib_per_minute: int, **profile: Any) -> None:
    with store.txn("set guest activity") as txn:
        vm = store.vm_record(txn.state, vm_id, "set guest activity")
        current = guest.GuestProfile.from_dict(vm.setdefault("guest", {}).get("profile")).to_dict()
        current.update(profile, kib_per_minute=kib_per_minute)
        vm["guest"]["profile"] = guest.GuestProfile.from_dict(current).to_dict()
        txn.dirty = True


def write_guest_data(store: LabStore, vm_id: str, disk_index: int, offset: int, data: bytes) -> None:
    """Write into the VM's current disk file as the guest would (change-tracked)."""
    with store.txn("write") as txn:
        vm = store.vm_record(txn.state, vm_id, "write")
        if vm.get("journal"):
            raise store.busy_error(vm, "write")
        store.disk_record(vm, disk_index, "write")
        store.write_disk(vm, disk_index, offset, data)
        vm["writes"] = vm.get("writes", 0) + 1  # the state changes with the files
        txn.dirty = True


def write_guest_blocks(store: LabStore, vm_id: str, disk_index: int, blocks: Iterator[tuple[int, bytes]]) -> int:
    """Write whole blocks ``(block index, payload)`` into the current file; returns bytes."""
    with store.txn("write") as txn:
        vm = store.vm_record(txn.state, vm_id, "write")
        store.disk_record(vm, disk_index, "write")
        written = store.write_blocks(vm, disk_index, blocks)
        vm["writes"] = vm.get("writes", 0) + 1  # the state changes with the files
        txn.dirty = True
        return written


def read_disk(store: LabStore, vm_id: str, disk_index: int, offset: int, length: int) -> bytes:
    """Read the VM's logical disk (the running state) through its chain."""
    store.check_exists("read disk")
    state = store.read_state()
    vm = store.vm_record(state, vm_id, "read disk")
    d = store.disk_record(vm, disk_index, "read disk")
    return vdisk.read_logical(store.vm_folder(vm) / d["current"], offset, length)


def disk_path(store: LabStore, vm_id: str, disk_index: int = 0) -> Path:
    """The file the VM writes to now."""
    state = store.read_state()
    vm = store.vm_record(state, vm_id, "locate disk")
    return store.vm_folder(vm) / store.disk_record(vm, disk_index, "locate disk")["current"]


def checkpoint_disk_path(store: LabStore, vm_id: str, checkpoint_id: str, disk_index: int = 0) -> Path:
    """The file a checkpoint froze (its state is that file's logical disk)."""
    state = store.read_state()
    vm = store.vm_record(state, vm_id, "locate disk")
    cp = store.checkpoint_record(vm, checkpoint_id, "locate disk")
    return store.vm_folder(vm) / cp["files"][disk_index]


# -- volume and failure knobs ------------------------------------------------------
def set_volume(store: LabStore, size: int | None = None, free: int | None = None, other: int | None = None) -> None:
    """Resize the simulated volume; ``free`` sets the "other data" so that this much is free."""
    with store.txn("set volume") as txn:
        vol = txn.state["volume"]
        if size is not None:
            vol["size"] = int(size)
        if other is not None:
            vol["other"] = max(0, int(other))
        if free is not None:
            used = store.used_bytes(txn.state)
            vol["other"] = max(0, int(vol["size"]) - used - int(free))
        txn.dirty = True


def add_stray_file(store: LabStore, vm_id: str, name: str | None = None, data_bytes: int = 4 << 20) -> Path:
    """Leave an unregistered ``.avhdx`` in the VM's folder (an orphan from a failed merge)."""
    with store.txn("add stray file") as txn:
        vm = store.vm_record(txn.state, vm_id, "add stray file")
        d = vm["disks"][0]
        base = chain_names(vm, d["current"])[-1]
        name = name or f"{d.get('stem', vm['name'])}_{new_guid().upper()}.avhdx"
        path = store.vm_folder(vm) / name
        vdisk.create_disk(path, vm["files"][base]["size"], parent_name=base, fsync=store.fsync)
        source = guest.BlockSource(f"stray:{vm['seed']}:{name}")
        with vdisk.DiskFile(path, writable=True) as f:
            count = min(f.block_count, -(-data_bytes // vdisk.BLOCK_SIZE))
            first = max(0, min(100, f.block_count - count))
            for i in range(count):
                f.write_block(first + i, source.mixed_block(i))
        txn.dirty = True
        return path


def simulate_failed_merge(store: LabStore, vm_id: str) -> None:
    """Leave the VM running on an .avhdx with no checkpoint, as a merge that failed does.

    The checkpoint records vanish (Hyper-V already forgot them) but no file is merged;
    files of other branches stay on disk unregistered (stray).
    """
    with store.txn("simulate failed merge") as txn:
        vm = store.vm_record(txn.state, vm_id, "simulate failed merge")
        if vm.get("journal"):
            raise store.busy_error(vm, "simulate failed merge")
        folder = store.vm_folder(vm)
        for d in vm["disks"]:
            if vm["files"][d["current"]]["parent"] is None:
                new = f"{d['stem']}_{new_guid().upper()}.avhdx"
                vdisk.create_disk(folder / new, vm["files"][d["current"]]["size"], parent_name=d["current"], fsync=store.fsync)
                vm["files"][new] = {"parent": d["current"], "size": vm["files"][d["current"]]["size"], "identity": new_guid()}
                d["current"] = new
        keep: set[str] = set()
        for d in vm["disks"]:
            keep.update(chain_names(vm, d["current"]))
        vm["files"] = {name: meta for name, meta in vm["files"].items() if name in keep}
        vm["checkpoints"] = []
        vm["parent_checkpoint_id"] = None
        store.write_vm_config(vm)
        txn.dirty = True

