"""Backup sources of lab hosts.

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
from pathlib import Path
from typing import Any

from hvtui.errors import HostError, NotFoundError
from hvtui.events import Progress, ProgressCallback
from hvtui.files import atomic_write
from hvtui.hosts.base import BackupSource, CheckpointTaken, SourceFile, backup_checkpoint_name
from hvtui.hosts.lab import checkpoints
from hvtui.hosts.lab.disk import read_header
from hvtui.hosts.lab.inventory import InventoryReader
from hvtui.hosts.lab.records import chain_names, iso, vm_config
from hvtui.hosts.lab.state import STAGING_DIR, ChangeLog, OpLock, RctInvalid
from hvtui.hosts.lab.store import LabStore
from hvtui.model import VM


class LabBackupSource(BackupSource):
    def __init__(
        self,
        store: LabStore,
        vm_id: str,
        checkpoint_id: str,
        checkpoint_name: str,
        lock: OpLock,
        vm: VM,
        config: dict[str, Any],
        files: list[SourceFile],
        frozen_dir: Path,
        progress: ProgressCallback | None,
    ) -> None:
        self.store = store
        self.vm_id = vm_id
        self.checkpoint_id = checkpoint_id
        self.checkpoint_name = checkpoint_name
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
                checkpoints.remove_checkpoints(self.store, self.vm_id, [self.checkpoint_id], False, relay, None)
        finally:
            try:
                self._clear_marker()
            finally:
                shutil.rmtree(self._frozen_dir, ignore_errors=True)
                self._lock.release()

    def _clear_marker(self) -> None:
        with self.store.txn("backup") as txn:
            vm = txn.state["vms"].get(self.vm_id)
            if vm is not None and vm.get("operation"):
                vm["operation"] = None
                txn.dirty = True


def _frozen_config(vm: dict[str, Any], checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The VM's configuration as of the checkpoint: the frozen chain and its checkpoints."""
    config = vm_config(vm)
    chain: list[str] = []
    for index, d in enumerate(config["disks"]):
        d["current"] = checkpoint["files"][index]
        chain += chain_names(vm, d["current"])
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


def open_backup_source(
    store: LabStore,
    reader: InventoryReader,
    vm_id: str,
    progress: ProgressCallback | None = None,
    on_checkpoint: CheckpointTaken | None = None,
) -> LabBackupSource:
    """Take a Recovery checkpoint of the VM and offer its frozen files (``LabHost.open_backup_source``).

    ``on_checkpoint`` runs before the host state naming the checkpoint is saved: a process
    killed at any moment leaves either no checkpoint or one its caller has recorded."""
    operation = "backup"
    store.require_writable(operation)
    real_id = store.resolve_vm_id(vm_id, operation)
    lock = OpLock(store.root, real_id)
    if not lock.try_acquire():
        raise HostError(store.name, operation, "the VM is busy with another backup, merge or restore", kind="busy")
    frozen_dir: Path | None = None
    try:
        if progress:
            progress(Progress(phase="checkpoint", message="taking a Recovery checkpoint"))
        with store.txn(operation) as txn:
            vm = store.vm_record(txn.state, real_id, operation)
            if vm.get("journal"):
                raise store.busy_error(vm, operation)
            now = store.clock.now()
            cp = checkpoints.create_checkpoint_record(store, vm, backup_checkpoint_name(vm["name"], now), "Recovery")
            vm["operation"] = {"kind": "backup", "checkpoint": cp["id"], "started": iso(now), "pid": os.getpid()}
            if on_checkpoint is not None:
                on_checkpoint(cp["id"], cp["name"])
            txn.dirty = True
            folder = store.vm_folder(vm)
            frozen_dir = store.root / STAGING_DIR / f"backup-{cp['id']}"
            frozen_dir.mkdir(parents=True, exist_ok=True)
            config = _frozen_config(vm, cp)
            files: list[SourceFile] = []
            # The configuration as of the checkpoint (the live .vmcx already names the new file).
            config_copy = frozen_dir / vm["config_file"]
            atomic_write(config_copy, json.dumps(config, indent=1, sort_keys=True).encode("utf-8"))
            files.append(_plain_file(vm["config_file"], config_copy, f"config:{vm['id']}"))
            runtime = store.runtime_file(vm)
            if runtime.exists():
                runtime_copy = frozen_dir / runtime.name
                shutil.copy2(runtime, runtime_copy)
                config["runtime_file"] = runtime.name
                files.append(_plain_file(runtime.name, runtime_copy, f"runtime:{vm['id']}"))
            for name in config["files"]:
                meta = vm["files"][name]
                files.append(_disk_file(store, folder / name, name, meta["identity"]))
            checkpoint_id, checkpoint_name = cp["id"], cp["name"]
            rec_state = txn.state
        snapshot = reader.snapshot(rec_state, only_vm=real_id).vms[0]
        vm_model = _frozen_model(snapshot, checkpoint_id, config)
        if progress:
            progress(Progress(phase="checkpoint", message="Recovery checkpoint taken", done=1, total=1))
        return LabBackupSource(store, real_id, checkpoint_id, checkpoint_name, lock, vm_model, config, files, frozen_dir, progress)
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
        local_path=path,
    )


CHANGES_WINDOW = 1 << 30  # the most one ``backup.changes`` call covers, as on the wire


def backup_changes(
    store: LabStore, identity: str, virtual_size: int, since: str, offset: int = 0, length: int = CHANGES_WINDOW
) -> dict[str, Any]:
    """The lab's answer to the wire contract's ``backup.changes`` for one disk file.

    ``{"ranges": [[offset, length], ...], "processed": bytes}`` in virtual-disk bytes, clipped to
    the window; an unknown, another disk's or too old ``since`` raises HostError kind ``rct-invalid``.
    """
    _check_window(store, virtual_size, offset, length)
    return _window(_changes_since(store, identity, since), offset, length)


def _check_window(store: LabStore, virtual_size: int, offset: int, length: int) -> None:
    if offset < 0 or length <= 0 or length > CHANGES_WINDOW or offset + length > virtual_size:
        raise HostError(
            store.name,
            "backup.changes",
            f"window {offset}+{length} is not within the {virtual_size}-byte disk in at most {CHANGES_WINDOW} bytes",
            kind="argument",
        )


def _changes_since(store: LabStore, identity: str, since: str) -> list[tuple[int, int]]:
    try:
        return ChangeLog(store.root, identity).changes(since)
    except RctInvalid as err:
        raise HostError(store.name, "backup.changes", str(err), kind="rct-invalid") from None


def _window(ranges: list[tuple[int, int]], offset: int, length: int) -> dict[str, Any]:
    end = offset + length
    clipped = [[max(off, offset), min(off + n, end) - max(off, offset)] for off, n in ranges if off < end and off + n > offset]
    return {"ranges": clipped, "processed": length}


def _disk_file(store: LabStore, path: Path, rel_path: str, identity: str) -> SourceFile:
    st = path.stat()
    virtual_size = read_header(path).virtual_size

    def changes(since: str) -> list[tuple[int, int]]:
        # Window by window over the whole disk, as a caller of ``backup.changes`` does (the log
        # is read once: a 127 GiB disk is 127 windows).
        every = _changes_since(store, identity, since)
        out: list[tuple[int, int]] = []
        offset = 0
        while offset < virtual_size:
            length = min(CHANGES_WINDOW, virtual_size - offset)
            _check_window(store, virtual_size, offset, length)
            answer = _window(every, offset, length)
            out += [(off, n) for off, n in answer["ranges"]]
            offset += answer["processed"]
        return out

    return SourceFile(
        rel_path=rel_path,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        identity=identity,
        change_id=ChangeLog(store.root, identity).reference_point(),
        opener=lambda p=path: open(p, "rb"),  # noqa: SIM115 - the caller closes it
        changes=changes,
        virtual_ranges=True,
        local_path=path,
    )

