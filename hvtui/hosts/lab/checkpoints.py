"""Checkpoint operations of a lab host: create, apply, rename and remove (merge).

Checkpoint semantics follow Hyper-V (``merge.plan_removal`` has the merge rules):

- every checkpoint *freezes* the file the VM wrote to when it was taken (``files`` in the
  checkpoint record, one per disk) and the VM continues in a new differencing file
  (``<stem>_<GUID>.avhdx``), a child of the frozen one;
- applying a checkpoint discards the VM's current differencing file and starts a fresh one
  whose parent is the checkpoint's frozen file;
- removing a checkpoint merges, so that every remaining checkpoint and the running state
  read exactly the same logical bytes as before.

Each function takes the host's ``LabStore``; ``LabHost`` exposes them as its methods.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Any

from hvtui.errors import Cancelled, HostError
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.hosts.base import CHECKPOINT_TYPES_CREATABLE
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab import merge
from hvtui.hosts.lab.records import (
    MAX_CHECKPOINTS,
    checkpoint_model,
    default_checkpoint_name,
    iso,
    new_guid,
    validate_checkpoint_name,
)
from hvtui.hosts.lab.store import LabStore
from hvtui.model import Checkpoint


def create_checkpoint(store: LabStore, vm_id: str, name: str | None, checkpoint_type: str = "Standard") -> Checkpoint:
    store.require_writable("create checkpoint")
    real_id = store.resolve_vm_id(vm_id, "create checkpoint")
    with store.op_lock(real_id, "create checkpoint"), store.txn("create checkpoint") as txn:
        vm = store.vm_record(txn.state, real_id, "create checkpoint")
        cp = create_checkpoint_record(store, vm, name, checkpoint_type)
        txn.dirty = True
    return checkpoint_model(cp)



def create_checkpoint_record(store: LabStore, vm: dict[str, Any], name: str | None, checkpoint_type: str) -> dict[str, Any]:
    """Freeze the VM's current files into a new checkpoint (the caller holds the host lock and saves)."""
    operation = "create checkpoint"
    if checkpoint_type not in CHECKPOINT_TYPES_CREATABLE:
        raise HostError(
            store.name,
            operation,
            f"cannot create a {checkpoint_type!r} checkpoint (expected one of {', '.join(CHECKPOINT_TYPES_CREATABLE)})",
        )
    if vm.get("journal"):
        raise store.busy_error(vm, operation)
    if vm.get("checkpoint_type") == "Disabled" and checkpoint_type != "Recovery":
        raise HostError(store.name, operation, f"checkpoints are disabled for VM {vm['name']!r}")
    if len(vm["checkpoints"]) >= MAX_CHECKPOINTS:
        raise HostError(
            store.name, operation, f"VM {vm['name']!r} already has {MAX_CHECKPOINTS} checkpoints, Hyper-V's limit"
        )
    now = store.clock.now()
    name = validate_checkpoint_name(store.name, operation, name or default_checkpoint_name(vm["name"], now))
    folder = store.vm_folder(vm)
    cp = {
        "id": new_guid(),
        "name": name,
        "type": checkpoint_type,
        "created": iso(now),
        "parent_id": vm.get("parent_checkpoint_id"),
        "is_automatic": False,
        "vm_state": vm["state"],
        "files": [],
    }
    created: list[Path] = []
    try:
        for d in vm["disks"]:
            frozen = d["current"]
            size = vm["files"][frozen]["size"]
            child = f"{d['stem']}_{new_guid().upper()}.avhdx"
            vdisk.create_disk(folder / child, size, parent_name=frozen, fsync=store.fsync)
            created.append(folder / child)
            vm["files"][child] = {"parent": frozen, "size": size, "identity": new_guid()}
            cp["files"].append(frozen)
            d["current"] = child
    except OSError as err:
        for path in created:
            with contextlib.suppress(OSError):
                path.unlink()
        raise HostError(store.name, operation, f"cannot create the differencing file: {err}") from None
    vm["checkpoints"].append(cp)
    vm["parent_checkpoint_id"] = cp["id"]
    store.write_vm_config(vm)
    return cp


def apply_checkpoint(store: LabStore, vm_id: str, checkpoint_id: str, progress: ProgressCallback | None = None) -> None:
    store.require_writable("apply checkpoint")
    real_id = store.resolve_vm_id(vm_id, "apply checkpoint")
    with store.op_lock(real_id, "apply checkpoint"), store.txn("apply checkpoint") as txn:
        vm = store.vm_record(txn.state, real_id, "apply checkpoint")
        if vm.get("journal"):
            raise store.busy_error(vm, "apply checkpoint")
        cp = store.checkpoint_record(vm, checkpoint_id, "apply checkpoint")
        if progress:
            progress(Progress(phase="apply", message=f"applying {cp['name']}", done=0, total=1))
        folder = store.vm_folder(vm)
        frozen = {name for c in vm["checkpoints"] for name in c["files"]}
        for index, d in enumerate(vm["disks"]):
            old = d["current"]
            base = cp["files"][index]
            size = vm["files"][base]["size"]
            child = f"{d['stem']}_{new_guid().upper()}.avhdx"
            vdisk.create_disk(folder / child, size, parent_name=base, fsync=store.fsync)
            vm["files"][child] = {"parent": base, "size": size, "identity": new_guid()}
            d["current"] = child
            has_children = any(meta["parent"] == old for meta in vm["files"].values())
            if old not in frozen and not has_children:
                # The current state is discarded, as Hyper-V does on apply.
                store.delete_file(vm, old)
        vm["parent_checkpoint_id"] = cp["id"]
        # A production (or recovery) checkpoint has no memory state: the VM ends up off.
        # A standard one of a running VM restores its saved memory: the VM ends up saved.
        if cp["type"] == "Standard" and cp.get("vm_state", "Off") != "Off":
            vm["state"] = "Saved"
        else:
            vm["state"] = "Off"
        vm["started"] = None
        vm.setdefault("guest", {})["tick"] = None
        store.sync_runtime_file(vm)
        store.write_vm_config(vm)
        txn.dirty = True
        if progress:
            progress(Progress(phase="apply", message=f"applied {cp['name']}", done=1, total=1))


def rename_checkpoint(store: LabStore, vm_id: str, checkpoint_id: str, new_name: str) -> None:
    store.require_writable("rename checkpoint")
    validate_checkpoint_name(store.name, "rename checkpoint", new_name)
    with store.txn("rename checkpoint") as txn:
        vm = store.vm_record(txn.state, vm_id, "rename checkpoint")
        cp = store.checkpoint_record(vm, checkpoint_id, "rename checkpoint")
        cp["name"] = new_name
        store.write_vm_config(vm)
        txn.dirty = True


def remove_checkpoint(
    store: LabStore,
    vm_id: str,
    checkpoint_id: str,
    subtree: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> None:
    store.require_writable("remove checkpoint")
    real_id = store.resolve_vm_id(vm_id, "remove checkpoint")
    with store.op_lock(real_id, "remove checkpoint"):
        remove_checkpoints(store, real_id, [checkpoint_id], subtree, progress, cancel)


def recovery_checkpoints(store: LabStore, vm_id: str) -> list[Checkpoint]:
    """The VM's Recovery checkpoints, read from the host state alone (no inventory)."""
    real_id = store.resolve_vm_id(vm_id, "list recovery checkpoints")
    with store.txn("list recovery checkpoints") as txn:
        vm = store.vm_record(txn.state, real_id, "list recovery checkpoints")
        return [checkpoint_model(cp) for cp in vm["checkpoints"] if cp["type"] == "Recovery"]


def cleanup_recovery_checkpoints(store: LabStore, vm_id: str, progress: ProgressCallback | None = None) -> int:
    """Remove every Recovery checkpoint of the VM (left by a backup that died); returns how many."""
    store.require_writable("remove recovery checkpoints")
    real_id = store.resolve_vm_id(vm_id, "remove recovery checkpoints")
    with store.op_lock(real_id, "remove recovery checkpoints"):
        with store.txn("remove recovery checkpoints") as txn:
            vm = store.vm_record(txn.state, real_id, "remove recovery checkpoints")
            ids = [cp["id"] for cp in vm["checkpoints"] if cp["type"] == "Recovery"]
        if ids:
            remove_checkpoints(store, real_id, ids, False, progress, None)
        return len(ids)


def remove_checkpoints(
    store: LabStore,
    vm_id: str,
    checkpoint_ids: list[str],
    subtree: bool,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> None:
    """Remove checkpoints (the caller holds the VM's operation lock).

    Phase 1 (host lock): plan, check space, record the plan as a journal and drop the
    checkpoint records, as Hyper-V does at once.  Phase 2 (no host lock, so the console
    keeps refreshing): merge.  Phase 3 (host lock): commit the new file graph.
    A process that dies in phase 2 leaves the journal; the next process to take the
    host lock re-runs it (every step is idempotent).
    """
    operation = "remove checkpoint"
    with store.txn(operation) as txn:
        vm = store.vm_record(txn.state, vm_id, operation)
        if vm.get("journal"):
            raise store.busy_error(vm, operation)
        remove: set[str] = set()
        for cid in checkpoint_ids:
            cp = store.checkpoint_record(vm, cid, operation)
            if subtree:
                remove.update(_subtree_ids(vm, cp["id"]))
            else:
                remove.add(cp["id"])
        journal = merge.plan_removal(vm, store.vm_folder(vm), remove)
        needed = journal["allocate"]
        snapshot_free = store.free_bytes(txn.state)
        if needed > snapshot_free:
            raise HostError(
                store.name,
                operation,
                f"not enough space on the volume to merge: the merge needs {needed} bytes, {snapshot_free} are free",
                kind="failed",
            )
        if cancel is not None and cancel.cancelled:
            raise Cancelled()
        vm["journal"] = journal
        vm["checkpoints"] = journal["final"]["checkpoints"]
        vm["parent_checkpoint_id"] = journal["final"]["parent_checkpoint_id"]
        store.write_vm_config(vm)
        txn.dirty = True
    # Phase 2: merging can take a while; once started it runs to the end (a half-merged
    # parent is no longer the checkpoint it was), so ``cancel`` is only honoured above.
    merge.run_journal(store.root, store.vm_folder(vm), vm, journal, progress)
    with store.txn(operation, catch_up=False) as txn:
        vm = store.vm_record(txn.state, vm_id, operation)
        if vm.get("journal"):
            merge.finish_journal(vm)
            store.write_vm_config(vm)
        txn.dirty = True
    if progress:
        total = journal["copy"]
        progress(Progress(phase="merge", message="merge complete", done=total, total=total))


def _subtree_ids(vm: dict[str, Any], root_id: str) -> set[str]:
    out = {root_id}
    todo = [root_id]
    while todo:
        current = todo.pop()
        for cp in vm["checkpoints"]:
            if cp.get("parent_id") == current and cp["id"] not in out:
                out.add(cp["id"])
                todo.append(cp["id"])
    return out


def backdate_checkpoint(store: LabStore, vm_id: str, checkpoint_id: str, created: datetime) -> None:
    """Change a checkpoint's creation time (estate building, tests of ages)."""
    with store.txn("backdate checkpoint") as txn:
        vm = store.vm_record(txn.state, vm_id, "backdate checkpoint")
        cp = store.checkpoint_record(vm, checkpoint_id, "backdate checkpoint")
        cp["created"] = iso(created)
        txn.dirty = True

