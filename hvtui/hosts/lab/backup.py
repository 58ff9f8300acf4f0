"""Backup sources and restore targets of lab hosts.

A backup takes a Recovery checkpoint, exactly as Hyper-V backup software does: the VM's
current disk files are frozen (the VM keeps running on a new differencing file) and the
backup reads the frozen chain.  ``close`` removes the checkpoint, which merges whatever
the guest wrote meanwhile back into the frozen file, so the next backup sees those blocks
in that file's change log: the lab's Resilient Change Tracking.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from hvtui.errors import HostError, NotFoundError
from hvtui.events import Progress, ProgressCallback
from hvtui.files import atomic_write
from hvtui.hosts.base import BackupSource, RestoreTarget, SourceFile
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import CONFIG_FORMAT, LabHost, iso, new_guid, validate_vm_name
from hvtui.hosts.lab.state import STAGING_DIR, VM_ROOT, ChangeLog, OpLock, StagingLock
from hvtui.model import VM


def _backup_checkpoint_name(vm_name: str, when: Any) -> str:
    return f"{vm_name} - Backup - ({when:%m/%d/%Y - %I:%M:%S %p})"


class LabBackupSource(BackupSource):
    def __init__(
        self,
        host: LabHost,
        vm_id: str,
        checkpoint_id: str,
        lock: OpLock,
        vm: VM,
        config: dict[str, Any],
        files: list[SourceFile],
        frozen_dir: Path,
        progress: ProgressCallback | None,
    ) -> None:
        self.host = host
        self.vm_id = vm_id
        self.checkpoint_id = checkpoint_id
        self.vm = vm
        self.config = config
        self.files = files
        self._lock = lock
        self._frozen_dir = frozen_dir
        self._progress = progress
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Remove the Recovery checkpoint (a merge).  Idempotent.

        If the merge cannot run (say, the volume is full) the error is raised once and the
        checkpoint stays behind, as it would on Hyper-V; ``cleanup_recovery_checkpoints``
        removes it later.
        """
        if self._closed:
            return
        self._closed = True
        progress = self._progress

        def relay(event: Progress) -> None:
            if progress is not None:
                progress(dataclasses.replace(event, phase="cleanup", message="merging the backup checkpoint"))

        try:
            # NotFoundError: someone removed it already, nothing to merge.
            with contextlib.suppress(NotFoundError):
                self.host._remove_checkpoints(self.vm_id, [self.checkpoint_id], False, relay, None)
        finally:
            try:
                self._clear_marker()
            finally:
                shutil.rmtree(self._frozen_dir, ignore_errors=True)
                self._lock.release()

    def _clear_marker(self) -> None:
        with self.host._txn("backup") as txn:
            vm = txn.state["vms"].get(self.vm_id)
            if vm is not None and vm.get("operation"):
                vm["operation"] = None
                txn.dirty = True


def _frozen_config(host: LabHost, vm: dict[str, Any], checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The VM's configuration as of the checkpoint: the frozen chain and its checkpoints."""
    config = host._vm_config(vm)
    chain: list[str] = []
    for index, d in enumerate(config["disks"]):
        d["current"] = checkpoint["files"][index]
        chain += host._chain_names(vm, d["current"])
    config["files"] = {name: {"parent": vm["files"][name]["parent"], "size": vm["files"][name]["size"]} for name in chain}
    # The checkpoints whose frozen files are in the chain: the ancestors of the Recovery one.
    by_id = {cp["id"]: cp for cp in vm["checkpoints"]}
    ancestors: list[dict[str, Any]] = []
    parent = checkpoint.get("parent_id")
    while parent is not None and parent in by_id:
        cp = by_id[parent]
        if all(name in config["files"] for name in cp["files"]):
            ancestors.append({k: v for k, v in cp.items()})
        parent = cp.get("parent_id")
    config["checkpoints"] = list(reversed(ancestors))
    config["parent_checkpoint_id"] = checkpoint.get("parent_id")
    config["runtime_file"] = None
    return config


def open_backup_source(host: LabHost, vm_id: str, progress: ProgressCallback | None = None) -> LabBackupSource:
    operation = "backup"
    host._require_writable(operation)
    real_id = host._resolve_vm_id(vm_id, operation)
    lock = OpLock(host.root, real_id)
    if not lock.try_acquire():
        raise HostError(host.name, operation, "the VM is busy with another backup, merge or restore", kind="busy")
    frozen_dir: Path | None = None
    try:
        if progress:
            progress(Progress(phase="checkpoint", message="taking a Recovery checkpoint"))
        with host._txn(operation) as txn:
            vm = host._vm(txn.state, real_id, operation)
            if vm.get("journal"):
                raise host._busy_error(vm, operation)
            now = host.clock.now()
            cp = host._create_checkpoint(vm, _backup_checkpoint_name(vm["name"], now), "Recovery")
            vm["operation"] = {"kind": "backup", "checkpoint": cp["id"], "started": iso(now), "pid": os.getpid()}
            txn.dirty = True
            folder = host.vm_folder(vm)
            frozen_dir = host.root / STAGING_DIR / f"backup-{cp['id']}"
            frozen_dir.mkdir(parents=True, exist_ok=True)
            config = _frozen_config(host, vm, cp)
            files: list[SourceFile] = []
            # The configuration as of the checkpoint (the live .vmcx already names the new file).
            config_copy = frozen_dir / vm["config_file"]
            atomic_write(config_copy, json.dumps(config, indent=1, sort_keys=True).encode("utf-8"))
            files.append(_plain_file(vm["config_file"], config_copy, f"config:{vm['id']}"))
            runtime = host._runtime_file(vm)
            if runtime.exists():
                runtime_copy = frozen_dir / runtime.name
                shutil.copy2(runtime, runtime_copy)
                config["runtime_file"] = runtime.name
                files.append(_plain_file(runtime.name, runtime_copy, f"runtime:{vm['id']}"))
            for name in config["files"]:
                meta = vm["files"][name]
                files.append(_disk_file(host, folder / name, name, meta["identity"]))
            checkpoint_id = cp["id"]
            rec_state = txn.state
        snapshot = host._snapshot(rec_state, only_vm=real_id).vms[0]
        vm_model = _frozen_model(snapshot, checkpoint_id, config)
        if progress:
            progress(Progress(phase="checkpoint", message="Recovery checkpoint taken", done=1, total=1))
        return LabBackupSource(host, real_id, checkpoint_id, lock, vm_model, config, files, frozen_dir, progress)
    except BaseException:
        if frozen_dir is not None:
            shutil.rmtree(frozen_dir, ignore_errors=True)
        lock.release()
        raise


def _frozen_model(snapshot: VM, checkpoint_id: str, config: dict[str, Any]) -> VM:
    """The VM as the backup captures it: without its Recovery checkpoint, on the frozen chain."""
    disks = tuple(dataclasses.replace(d, path=d.chain[1].path, chain=d.chain[1:]) if len(d.chain) > 1 else d for d in snapshot.disks)
    return dataclasses.replace(
        snapshot,
        checkpoints=tuple(cp for cp in snapshot.checkpoints if cp.id != checkpoint_id),
        parent_checkpoint_id=config["parent_checkpoint_id"],
        disks=disks,
        status="Operating normally",
    )


def _plain_file(rel_path: str, path: Path, identity: str) -> SourceFile:
    st = path.stat()
    return SourceFile(
        rel_path=rel_path,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        identity=identity,
        change_id=None,
        opener=lambda p=path: open(p, "rb"),  # noqa: SIM115 - the caller closes it
    )


def _disk_file(host: LabHost, path: Path, rel_path: str, identity: str) -> SourceFile:
    st = path.stat()
    log = ChangeLog(host.root, identity)
    return SourceFile(
        rel_path=rel_path,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        identity=identity,
        change_id=log.change_id(),
        opener=lambda p=path: open(p, "rb"),  # noqa: SIM115 - the caller closes it
        changes=log.changes,
    )


# ----------------------------------------------------------------------------------
# restore
# ----------------------------------------------------------------------------------
class LabRestoreTarget(RestoreTarget):
    def __init__(
        self,
        host: LabHost,
        config: dict[str, Any],
        mode: str,
        staging_dir: Path,
        vm_id: str | None,
        new_name: str | None,
        lock: OpLock | None,
    ) -> None:
        self.host = host
        self.config = config
        self.mode = mode
        self.staging_dir = staging_dir
        self.vm_id = vm_id
        self.new_name = new_name
        self._lock = lock
        self._done = False
        # Held while the restore is alive: ``sweep_staging`` removes only dead ones.
        self._staging_lock = StagingLock(host.root, staging_dir.name)
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
                _clear_operation(self.host, self.vm_id)
        finally:
            self._release()

    def _check_staged(self) -> None:
        missing: list[str] = []
        for name, meta in self.config["files"].items():
            path = self.staging_dir / name
            if not path.is_file():
                missing.append(name)
                continue
            header = vdisk.read_header(path)
            if header.parent_name != meta.get("parent"):
                raise HostError(
                    self.host.name,
                    "restore",
                    f"restored disk {name} names parent {header.parent_name!r}, the backup's configuration says {meta.get('parent')!r}",
                )
        if missing:
            raise HostError(self.host.name, "restore", f"restore is incomplete: missing {', '.join(sorted(missing))}")

    def commit(self) -> VM:
        if self._done:
            raise HostError(self.host.name, "restore", "this restore was already committed or aborted")
        try:
            self._check_staged()
            vm_id = self._commit_new() if self.mode == "new" else self._commit_in_place()
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._release()
        return self.host.vm(vm_id)

    # -- new VM ----------------------------------------------------------------------
    def _commit_new(self) -> str:
        host, config = self.host, self.config
        assert self.new_name is not None
        old_name = config["name"]
        new_name = self.new_name

        def rename(file_name: str) -> str:
            return new_name + file_name[len(old_name) :] if file_name.startswith(old_name) else file_name

        mapping = {name: rename(name) for name in config["files"]}
        if len(set(mapping.values())) != len(mapping):
            mapping = {name: name for name in config["files"]}
        for old, new in mapping.items():
            parent = config["files"][old].get("parent")
            with vdisk.DiskFile(self.staging_dir / old, writable=True) as f:
                if parent is not None and mapping[parent] != parent:
                    f.set_parent(mapping[parent])
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
        with host._txn("restore") as txn:
            if any(rec["name"] == new_name for rec in txn.state["vms"].values()):
                raise HostError(host.name, "restore", f"a VM named {new_name!r} already exists")
            folder = Path(VM_ROOT) / new_name
            if (host.root / folder).exists():
                raise HostError(host.name, "restore", f"folder {host.root / folder} already exists")
            os.rename(self.staging_dir, host.root / folder)
            rec = _record_from_config(host, config, new_id, new_name, str(folder), mapping, cp_ids)
            for d in rec["disks"]:  # later checkpoints name their files after the new VM
                d["stem"] = rename(d.get("stem") or old_name)
            txn.state["vms"][new_id] = rec
            host._write_vm_config(rec)
            txn.dirty = True
        return new_id

    # -- in place --------------------------------------------------------------------
    def _commit_in_place(self) -> str:
        host, config = self.host, self.config
        assert self.vm_id is not None
        token = self.staging_dir.name
        with host._txn("restore") as txn:
            vm = host._vm(txn.state, self.vm_id, "restore")
            if vm["state"] != "Off":
                raise HostError(host.name, "restore", f"VM {vm['name']!r} is {vm['state']}: turn it off before restoring over it")
            folder = host.vm_folder(vm)
            keep = set(config["files"])
            for entry in list(self.staging_dir.iterdir()):
                if entry.name not in keep:
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            old_identities = [meta["identity"] for meta in vm["files"].values()]
            aside = host.root / STAGING_DIR / f"{token}-old"
            # Old files stay (aside) until the new ones are in place and registered; a
            # process killed in between leaves the operation marker, and the next one to
            # take the host lock puts the old files back (``LabHost._roll_back_restore``).
            os.rename(folder, aside)
            try:
                os.rename(self.staging_dir, folder)
                mapping = {name: name for name in config["files"]}
                cp_ids = {cp["id"]: cp["id"] for cp in config.get("checkpoints", [])}
                rec = _record_from_config(host, config, vm["id"], vm["name"], vm["folder"], mapping, cp_ids)
                rec["config_file"] = vm["config_file"]
                rec["seed"] = vm["seed"]
                host._write_vm_config(rec)
            except BaseException:
                if folder.exists():
                    shutil.rmtree(folder)
                os.rename(aside, folder)
                raise
            txn.state["vms"][vm["id"]] = rec
            txn.dirty = True
        shutil.rmtree(aside, ignore_errors=True)
        for identity in old_identities:
            ChangeLog(host.root, identity).delete()
        return self.vm_id


def _record_from_config(
    host: LabHost,
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
        "created": iso(host.clock.now()),
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


def _clear_operation(host: LabHost, vm_id: str) -> None:
    with contextlib.suppress(HostError), host._txn("restore") as txn:
        vm = txn.state["vms"].get(vm_id)
        if vm is not None and vm.get("operation"):
            vm["operation"] = None
            txn.dirty = True


def _validate_config(host: LabHost, config: Any) -> None:
    ok = (
        isinstance(config, dict)
        and config.get("format") == CONFIG_FORMAT
        and isinstance(config.get("files"), dict)
        and isinstance(config.get("disks"), list)
        and isinstance(config.get("name"), str)
    )
    if ok:
        for d in config["disks"]:
            ok = ok and isinstance(d, dict) and d.get("current") in config["files"]
        for name, meta in config["files"].items():
            ok = ok and isinstance(meta, dict) and "size" in meta and (meta.get("parent") in (None, *config["files"]))
            ok = ok and "/" not in name and "\\" not in name and name not in ("", ".", "..")
    if not ok:
        raise HostError(
            host.name, "restore", f"the backup's VM configuration is not a lab VM configuration ({CONFIG_FORMAT})"
        )


def prepare_restore(
    host: LabHost,
    config: dict,
    mode: str,
    vm_id: str | None = None,
    new_name: str | None = None,
) -> LabRestoreTarget:
    operation = "restore"
    host._require_writable(operation)
    host._check_exists(operation)
    _validate_config(host, config)
    lock: OpLock | None = None
    token = f"restore-{uuid.uuid4().hex[:12]}"
    if mode == "new":
        if not new_name:
            raise HostError(host.name, operation, "a restore as a new VM needs a name for it")
        try:
            validate_vm_name(new_name)
        except ValueError as err:
            raise HostError(host.name, operation, str(err)) from None
        state = host._read_state()
        if any(rec["name"] == new_name for rec in state["vms"].values()) or (host.root / VM_ROOT / new_name).exists():
            raise HostError(host.name, operation, f"a VM named {new_name!r} already exists on this host")
    elif mode == "in_place":
        if not vm_id:
            raise HostError(host.name, operation, "an in-place restore needs the VM to restore over")
        vm_id = host._resolve_vm_id(vm_id, operation)
        lock = OpLock(host.root, vm_id)
        if not lock.try_acquire():
            raise HostError(host.name, operation, "the VM is busy with a backup, merge or restore", kind="busy")
        try:
            with host._txn(operation) as txn:
                vm = host._vm(txn.state, vm_id, operation)
                if vm["state"] != "Off":
                    raise HostError(
                        host.name, operation, f"VM {vm['name']!r} is {vm['state']}: turn it off before restoring over it"
                    )
                vm["operation"] = {"kind": "restore", "staging": token, "started": iso(host.clock.now()), "pid": os.getpid()}
                txn.dirty = True
        except BaseException:
            lock.release()
            raise
    else:
        raise HostError(host.name, operation, f"unknown restore mode {mode!r} (expected new or in_place)")
    staging = host.root / STAGING_DIR / token
    target = LabRestoreTarget(host, config, mode, staging, vm_id, new_name, lock)
    host.sweep_staging()  # leftovers of restores whose process died
    return target
