"""Restore targets of lab hosts: a new VM, or in place over an existing (turned off) one.

The engine writes the backup's files into ``.staging/<token>``; ``commit`` checks them
against the backup's VM configuration and registers them.  An in-place restore moves the
old files aside until the new ones are registered, so a process killed in between leaves
an operation marker and the next one to take the host lock puts the old files back
(``LabStore`` recovery).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from hvtui.errors import HostError, HostRefused
from hvtui.hosts.base import RestoreTarget
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.flatten import flatten_restored, old_format_disks, old_format_message
from hvtui.hosts.lab.inventory import InventoryReader
from hvtui.hosts.lab.records import iso, new_guid, validate_vm_name
from hvtui.hosts.lab.restore_config import check_restore_config
from hvtui.hosts.lab.state import STAGING_DIR, VM_ROOT, ChangeLog, OpLock, StagingLock
from hvtui.hosts.lab.store import LabStore
from hvtui.model import VM


class LabRestoreTarget(RestoreTarget):
    def __init__(
        self,
        store: LabStore,
        reader: InventoryReader,
        config: dict[str, Any],
        mode: str,
        staging_dir: Path,
        vm_id: str | None,
        new_name: str | None,
        lock: OpLock | None,
        keep_checkpoints: bool = True,
    ) -> None:
        self.store = store
        self.reader = reader
        self.config = config
        self.mode = mode
        self.staging_dir = staging_dir
        self.vm_id = vm_id
        self.new_name = new_name
        self.keep_checkpoints = keep_checkpoints
        self._lock = lock
        self._done = False
        # Held while the restore is alive: ``sweep_staging`` removes only dead ones.
        self._staging_lock = StagingLock(store.root, staging_dir.name)
        self._staging_lock.try_acquire()
        staging_dir.mkdir(parents=True, exist_ok=True)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._staging_lock.held:
            self._staging_lock.release()
            with contextlib.suppress(FileNotFoundError):
                self._staging_lock.path.unlink()

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            shutil.rmtree(self.staging_dir, ignore_errors=True)
            if self.mode == "in_place" and self.vm_id is not None:
                _clear_operation(self.store, self.vm_id)
        finally:
            self._release()

    def _check_staged(self) -> None:
        old = old_format_disks(self.config, self.staging_dir)
        if old:
            raise HostRefused(self.store.name, "restore", old_format_message(old))
        missing: list[str] = []
        for name, meta in self.config["files"].items():
            path = self.staging_dir / name
            if not path.is_file():
                missing.append(name)
                continue
            header = vdisk.read_header(path)
            if header.parent_name != meta.get("parent"):
                raise HostError(
                    self.store.name,
                    "restore",
                    f"restored disk {name} names parent {header.parent_name!r}, the backup's configuration says {meta.get('parent')!r}",
                )
        if missing:
            raise HostError(self.store.name, "restore", f"restore is incomplete: missing {', '.join(sorted(missing))}")

    def commit(self) -> VM:
        if self._done:
            raise HostError(self.store.name, "restore", "this restore was already committed or aborted")
        try:
            self._check_staged()
            if not self.keep_checkpoints and self.mode == "new":
                self.config = flatten_restored(self.config, self.staging_dir)
            vm_id = self._commit_new() if self.mode == "new" else self._commit_in_place()
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._release()
        return self.reader.vm(vm_id)

    # -- new VM ----------------------------------------------------------------------
    def _commit_new(self) -> str:
        store, config = self.store, self.config
        assert self.new_name is not None
        old_name = config["name"]
        new_name = self.new_name

        def rename(file_name: str) -> str:
            return new_name + file_name[len(old_name) :] if file_name.startswith(old_name) else file_name

        mapping = {name: rename(name) for name in config["files"]}
        if len(set(mapping.values())) != len(mapping):
            mapping = {name: name for name in config["files"]}
        final = store.root / VM_ROOT / new_name
        for old, new in mapping.items():
            parent = config["files"][old].get("parent")
            with vdisk.DiskFile(self.staging_dir / old, writable=True) as f:
                if parent is not None:  # renamed, and its absolute path names the VM's folder, not the old one
                    f.set_parent(mapping[parent], folder=final)
                f.fsync()
            if new != old:
                os.rename(self.staging_dir / old, self.staging_dir / new)
        # Only disk files move into the VM: the configuration is written from the record.
        for entry in list(self.staging_dir.iterdir()):
            if entry.name not in mapping.values():
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        new_id = new_guid()
        cp_ids = {cp["id"]: new_guid() for cp in config.get("checkpoints", [])}
        with store.txn("restore") as txn:
            if any(rec["name"] == new_name for rec in txn.state["vms"].values()):
                raise HostRefused(store.name, "restore", f"a VM named {new_name!r} already exists on this host")
            folder = Path(VM_ROOT) / new_name
            if (store.root / folder).exists():
                raise HostError(store.name, "restore", f"folder {store.root / folder} already exists")
            os.rename(self.staging_dir, store.root / folder)
            rec = _record_from_config(store, config, new_id, new_name, str(folder), mapping, cp_ids)
            for d in rec["disks"]:  # later checkpoints name their files after the new VM
                d["stem"] = rename(d.get("stem") or old_name)
            txn.state["vms"][new_id] = rec
            store.write_vm_config(rec)
            txn.dirty = True
        return new_id

    # -- in place --------------------------------------------------------------------
    def _commit_in_place(self) -> str:
        store, config = self.store, self.config
        assert self.vm_id is not None
        token = self.staging_dir.name
        with store.txn("restore") as txn:
            vm = store.vm_record(txn.state, self.vm_id, "restore")
            if vm["state"] != "Off":
                raise HostError(store.name, "restore", f"VM {vm['name']!r} is {vm['state']}: turn it off before restoring over it")
            folder = store.vm_folder(vm)
            keep = set(config["files"])
            for entry in list(self.staging_dir.iterdir()):
                if entry.name not in keep:
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            old_identities = [meta["identity"] for meta in vm["files"].values()]
            aside = store.root / STAGING_DIR / f"{token}-old"
            # Old files stay (aside) until the new ones are in place and registered; a
            # process killed in between leaves the operation marker, and the next one to
            # take the host lock puts the old files back (``LabStore`` recovery).
            os.rename(folder, aside)
            try:
                os.rename(self.staging_dir, folder)
                mapping = {name: name for name in config["files"]}
                cp_ids = {cp["id"]: cp["id"] for cp in config.get("checkpoints", [])}
                rec = _record_from_config(store, config, vm["id"], vm["name"], vm["folder"], mapping, cp_ids)
                rec["config_file"] = vm["config_file"]
                rec["seed"] = vm["seed"]
                store.write_vm_config(rec)
            except BaseException:
                if folder.exists():
                    shutil.rmtree(folder)
                os.rename(aside, folder)
                raise
            txn.state["vms"][vm["id"]] = rec
            txn.dirty = True
        shutil.rmtree(aside, ignore_errors=True)
        for identity in old_identities:
            ChangeLog(store.root, identity).delete()
        return self.vm_id


def _record_from_config(
    store: LabStore,
    config: dict[str, Any],
    vm_id: str,
    name: str,
    folder: str,
    mapping: dict[str, str],
    cp_ids: dict[str, str],
) -> dict[str, Any]:
    files = {
        mapping[n]: {
            "parent": mapping[meta["parent"]] if meta.get("parent") else None,
            "size": int(meta["size"]),
            "identity": new_guid(),
        }
        for n, meta in config["files"].items()
    }
    checkpoints = []
    for cp in config.get("checkpoints", []):
        rec = dict(cp)
        rec["id"] = cp_ids[cp["id"]]
        rec["parent_id"] = cp_ids.get(cp.get("parent_id")) if cp.get("parent_id") else None
        rec["files"] = [mapping[f] for f in cp["files"]]
        checkpoints.append(rec)
    disks = [dict(d, current=mapping[d["current"]]) for d in config["disks"]]
    pcp = config.get("parent_checkpoint_id")
    return {
        "id": vm_id,
        "name": name,
        "state": "Off",
        "generation": config.get("generation", 2),
        "version": config.get("version", "10.0"),
        "checkpoint_type": config.get("checkpoint_type", "Production"),
        "cpus": config.get("cpus", 2),
        "memory": config.get("memory", 0),
        "created": iso(store.clock.now()),
        "started": None,
        "seed": uuid.UUID(vm_id).int % (1 << 31),
        "guest": {"tick": None, "profile": None},
        "folder": folder,
        "config_file": f"{vm_id.upper()}.vmcx",
        "parent_checkpoint_id": cp_ids.get(pcp) if pcp else None,
        "checkpoints": checkpoints,
        "disks": disks,
        "files": files,
        "journal": None,
        "operation": None,
    }


def _clear_operation(store: LabStore, vm_id: str) -> None:
    with contextlib.suppress(HostError), store.txn("restore") as txn:
        vm = txn.state["vms"].get(vm_id)
        if vm is not None and vm.get("operation"):
            vm["operation"] = None
            txn.dirty = True


def prepare_restore(
    store: LabStore,
    reader: InventoryReader,
    config: dict,
    mode: str,
    vm_id: str | None = None,
    new_name: str | None = None,
    keep_checkpoints: bool = True,
) -> LabRestoreTarget:
    """``keep_checkpoints`` False (a new VM only): one flattened disk per drive, no checkpoints."""
    operation = "restore"
    store.require_writable(operation)
    store.check_exists(operation)
    config = check_restore_config(store.name, config)
    lock: OpLock | None = None
    token = f"restore-{uuid.uuid4().hex[:12]}"
    if mode == "new":
        if not new_name:
            raise HostError(store.name, operation, "a restore as a new VM needs a name for it")
        try:
            validate_vm_name(new_name)
        except ValueError as err:
            raise HostError(store.name, operation, str(err)) from None
        state = store.read_state()
        if any(rec["name"] == new_name for rec in state["vms"].values()) or (store.root / VM_ROOT / new_name).exists():
            # A refusal, not a failure: nothing is wrong, the name is taken (exit 4, audited as refused).
            raise HostRefused(store.name, operation, f"a VM named {new_name!r} already exists on this host")
    elif mode == "in_place":
        if not vm_id:
            raise HostError(store.name, operation, "an in-place restore needs the VM to restore over")
        vm_id = store.resolve_vm_id(vm_id, operation)
        lock = OpLock(store.root, vm_id)
        if not lock.try_acquire():
            raise HostError(store.name, operation, "the VM is busy with a backup, merge or restore", kind="busy")
        try:
            with store.txn(operation) as txn:
                vm = store.vm_record(txn.state, vm_id, operation)
                if vm["state"] != "Off":
                    raise HostError(
                        store.name, operation, f"VM {vm['name']!r} is {vm['state']}: turn it off before restoring over it"
                    )
                vm["operation"] = {"kind": "restore", "staging": token, "started": iso(store.clock.now()), "pid": os.getpid()}
                txn.dirty = True
        except BaseException:
            lock.release()
            raise
    else:
        raise HostError(store.name, operation, f"unknown restore mode {mode!r} (expected new or in_place)")
    staging = store.root / STAGING_DIR / token
    target = LabRestoreTarget(store, reader, config, mode, staging, vm_id, new_name, lock, keep_checkpoints)
    store.sweep_staging()  # leftovers of restores whose process died
    return target


def vm_folder_files(store: LabStore, vm_id: str) -> list[tuple[str, int]]:
    """Every file in the VM's folder (name, bytes): what an in-place restore replaces."""
    vm = store.vm_record(store.read_state(), store.resolve_vm_id(vm_id, "restore"), "restore")
    folder = store.vm_folder(vm)
    out: list[tuple[str, int]] = []
    for path in sorted(folder.rglob("*")):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file():
                out.append((path.relative_to(folder).as_posix(), path.stat().st_size))
    return out
