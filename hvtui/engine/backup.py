"""Backup: a consistent source, a plan per file, and a pipeline that keeps both cores busy.

``run_backup`` takes the repository and VM locks, picks the parent point (``parent``),
opens the host's backup source (a Recovery checkpoint), plans what to read per file
(``plan``), runs the chunk pipeline (``pipeline``: read, hash, compress, store) and commits
the manifest last, after every chunk it names is durable; the Recovery checkpoint is
removed afterwards, also on failure or cancel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from hvtui.clock import Clock, SystemClock
from hvtui.engine import disk_set
from hvtui.engine.fsutil import tune_allocator
from hvtui.engine.locks import VMLock, vm_label
from hvtui.engine.manifest import Manifest, new_point_id
from hvtui.engine.parent import find_parent, point_order, select_parent
from hvtui.engine.pipeline import ChunkPipeline
from hvtui.engine.plan import FilePlan, plan_files, reread_missing_chunks
from hvtui.engine.progress import DEFAULT_INTERVAL, Meter
from hvtui.engine.repository import Repository
from hvtui.errors import HvtuiError, RepositoryError
from hvtui.events import COMMITTED_PHASE, CancelToken, Progress, ProgressCallback
from hvtui.hosts.base import BackupSource, CheckpointTaken, Host

# Re-exported: callers (hvtui.backups) import these from here.
__all__ = [
    "MODES",
    "BackupResult",
    "FilePlan",
    "find_parent",
    "plan_files",
    "point_order",
    "reread_missing_chunks",
    "run_backup",
    "select_parent",
]

log = logging.getLogger(__name__)

MODES = ("full", "incremental", "differential")


@dataclass(slots=True)
class BackupResult:
    point_id: str
    repository: str
    host: str
    vm_id: str
    vm_name: str
    mode: str  # what was done
    requested_mode: str  # what was asked (an incremental with no earlier point runs as a full)
    parent: str | None
    time: datetime
    duration: float
    logical_bytes: int  # sum of the files' sizes
    read_bytes: int  # bytes read from the source
    zero_bytes: int  # in all-zero chunks and holes: stored as nothing
    reused_bytes: int  # referenced from the parent point without reading
    new_bytes: int  # data the repository did not have yet
    stored_bytes: int  # written to the repository (compressed, with headers)
    chunks: int  # distinct non-zero chunks the point references
    new_chunks: int  # chunk objects written
    files: int
    files_unchanged: int
    files_changed_ranges: int
    files_read: int
    chunks_reread: int = 0  # chunks the parent lists but the repository lacked (quarantined, lost): read again
    pruned: list[str] = field(default_factory=list)  # points removed by retention afterwards
    warnings: list[str] = field(default_factory=list)
    # "<file>: <why>" for each tracked disk file read whole although a previous point had it
    # (rct-invalid, resized, not VHDX, log not empty, disk set changed): never a silent full read.
    whole_reads: list[str] = field(default_factory=list)
    # What the host said while freezing the VM (a WinRM host's fall back to crash consistency);
    # also in ``warnings``.
    host_warnings: list[str] = field(default_factory=list)
    # Why a full was made when another mode was asked for ("no full restore point of web01
    # in repository default yet"); None when the mode asked for was made.
    fallback: str | None = None
    # "the disk set changed since restore point P: added ...; removed ..." (None when it did not)
    disk_set_changed: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["time"] = self.time.isoformat()
        return out



def _vm_facts(source: BackupSource, plans: list[FilePlan], drives: list[disk_set.Drive]) -> dict[str, Any]:
    vm = source.vm
    # Virtual sizes of the VHDX files: the next incremental tells a resized disk by them.
    sizes = {p.entry.path: p.virtual_size for p in plans if p.virtual_size is not None}
    return {
        **({"virtual_sizes": sizes} if sizes else {}),
        "drives": disk_set.record(drives),  # the next backup tells a disk added, removed or replaced by them
        "id": vm.id,
        "name": vm.name,
        "state": vm.state,
        "generation": vm.generation,
        "version": vm.version,
        "checkpoint_type": vm.checkpoint_type,
        "memory_assigned": vm.memory_assigned,
        "path": vm.path,
        "disks": [disk.path for disk in vm.disks],
    }


def _explain_disk_set(plans: list[FilePlan], drives: list[disk_set.Drive], parent: Manifest | None) -> str | None:
    """Name the disk set's change as the reason each added drive's files are read whole; the
    sentence saying what changed (None when nothing did, or there is no point to compare with)."""
    change = disk_set.compare(drives, parent) if parent is not None else None
    if change is None or parent is None:
        return None
    added = {path: drive for drive in change.added for path in drive.files}
    for plan in plans:
        drive = added.get(plan.entry.path)
        if drive is not None and plan.how == "read" and plan.whole_read_reason is None:
            what = "replaced by another disk" if drive.path in change.replaced else "a disk added"
            plan.whole_read_reason = f"disk set changed ({what} since restore point {parent.id})"
    return change.sentence(parent.id)


def run_backup(
    repo: Repository,
    host: Host,
    vm_id: str,
    mode: str = "incremental",
    *,
    clock: Clock | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    progress_interval: float = DEFAULT_INTERVAL,
    lock_timeout: float | None = 3600.0,
    workers: int | None = None,
    clear_leftovers: Callable[[ProgressCallback | None], None] | None = None,
    on_checkpoint: CheckpointTaken | None = None,
    vm_name: str | None = None,
    consistency: str | None = None,
    label: str | None = None,
) -> BackupResult:
    """Back up one VM into ``repo``; the new point is committed or nothing is.

    ``clear_leftovers`` runs under the VM's backup lock before the checkpoint is taken
    (the caller removes what earlier backups of its own left); ``on_checkpoint(id, name)``
    is handed to the host, which calls it as it takes the checkpoint (the caller records it).
    ``vm_name``: the VM's name as the caller knows it, for messages (locks held, busy).
    ``consistency``: asked of the host's checkpoint (None: the host's configured one);
    ``label``: the checkpoint's name where the host names it (a WinRM host: "hvtui backup <job id>").

    Raises ``Cancelled``, ``RepositoryError`` (disk full, lock busy, unsafe source) or the
    host's ``HostError``; in every case the Recovery checkpoint is gone afterwards (the
    source is closed) and no manifest was written.
    """
    if mode not in MODES:
        raise RepositoryError(f"unknown backup mode {mode!r} (expected full, incremental or differential)")
    tune_allocator()
    clock = clock or SystemClock()
    cancel = cancel or CancelToken()
    meter = Meter(progress, progress_interval)
    n_workers = workers or max(2, min(4, os.cpu_count() or 2))
    started = time.monotonic()

    def on_wait(message: str) -> None:
        if progress is not None:
            progress(Progress(phase="lock", message=message))

    lock = repo.lock("shared", "backup", vm_label(host.name, vm_id, vm_name))
    lock.acquire(lock_timeout, cancel, on_wait)
    try:
        with VMLock(repo.root, host.name, vm_id, vm_name).acquire():
            return _backup_locked(
                repo, host, vm_id, mode, clock, cancel, meter, lock.id, n_workers, started, clear_leftovers, on_checkpoint,
                {k: v for k, v in (("consistency", consistency), ("label", label)) if v is not None},
            )
    finally:
        lock.release()


def _backup_locked(
    repo: Repository,
    host: Host,
    vm_id: str,
    mode: str,
    clock: Clock,
    cancel: CancelToken,
    meter: Meter,
    owner: str,
    n_workers: int,
    started: float,
    clear_leftovers: Callable[[ProgressCallback | None], None] | None,
    on_checkpoint: CheckpointTaken | None,
    extra: dict[str, Any],
) -> BackupResult:
    parent = find_parent(repo, host.name, vm_id, mode)
    effective_mode = mode if parent is not None or mode == "full" else "full"
    fallback = None
    if effective_mode != mode:
        what = "full restore point" if mode == "differential" else "restore point"
        fallback = f"there is no {what} of this VM in repository {repo.name} yet"
    cancel.check()

    # A backup of ours that died (kill -9) may have left its Recovery checkpoint.
    if clear_leftovers is not None:
        clear_leftovers(meter.callback)
    cancel.check()

    meter.start_phase("checkpoint", message="taking a Recovery checkpoint")
    warnings: list[str] = []
    # ``extra`` holds only the arguments given (consistency, label): hosts written before them keep working.
    if on_checkpoint is not None:
        source = host.open_backup_source(vm_id, meter.callback, on_checkpoint, **extra)
    else:
        source = host.open_backup_source(vm_id, meter.callback, **extra)
    try:
        when = clock.now()
        cancel.check()
        plans = plan_files(
            list(source.files), parent, repo.chunk_size, reuse=effective_mode != "full", read_chunk=repo.store.get
        )
        reread = reread_missing_chunks(plans, repo.store, repo.chunk_size)
        if reread and parent is not None:
            warnings.append(
                f"{reread} chunk(s) of the parent point {parent.id} were missing from the repository "
                "(quarantined by verify, or lost); they were read again from the VM and stored"
            )
        drives = disk_set.drives_of(source)
        changed_set = _explain_disk_set(plans, drives, parent if effective_mode != "full" else None)
        whole_reads = [f"{p.entry.path}: {p.whole_read_reason}" for p in plans if p.whole_read_reason and p.how == "read"]
        if parent is not None and effective_mode != "full":
            if changed_set is not None:
                warnings.append(changed_set)
            warnings.extend(f"{item} — read whole" for item in whole_reads)
        else:
            whole_reads = []
        if parent is None and mode != "full":
            # No point under this VM id: was the VM re-imported (a new id, the same disks)?
            earlier = disk_set.find_reimported(repo, host.name, source.vm.id, list(source.files))
            if earlier is not None:
                fallback = (
                    f"the VM was re-imported: its id changed from {earlier.vm_id} to {source.vm.id} since restore "
                    f"point {earlier.id} (the same disks); its points start again here, as points never build on "
                    "another VM id's"
                )
                reimported = f"VM re-imported (id {earlier.vm_id} → {source.vm.id} since restore point {earlier.id})"
                disks = disk_set.disk_identities(list(source.files))
                whole_reads = [f"{p.entry.path}: {reimported}" for p in plans if p.source.identity in disks]
                warnings.extend(f"{item} — read whole" for item in whole_reads)
        total = sum(p.entry.size for p in plans)
        why = f" ({mode} asked for, but {fallback})" if fallback else ""
        meter.start_phase("backup", total=total, message=f"{effective_mode} backup of {source.vm.name}{why}")
        reused = sum(p.reused_bytes for p in plans)
        meter.add(done=reused)
        pipeline = ChunkPipeline(repo, owner, meter, cancel, n_workers)
        pipeline.run(plans)
        cancel.check()
        # Release the freeze as a success (a WinRM host's checkpoint becomes a reference point,
        # naming the disks' new RCT ids) before the point that records those ids is committed.
        needed = {f.change_id for f in parent.files if f.change_id} if parent is not None else set()
        final_ids = source.finish(needed)
        for plan in plans:
            if plan.entry.path in final_ids:
                plan.entry.change_id = final_ids[plan.entry.path]
        warnings.extend(source.warnings)
        host_warnings = list(source.warnings)

        files = [p.entry for p in plans]
        point_id = new_point_id(when, uuid.uuid4().hex)
        chunk_set = {c for f in files for c in f.chunks if c is not None}
        result = BackupResult(
            point_id=point_id,
            repository=repo.name,
            host=host.name,
            vm_id=source.vm.id,
            vm_name=source.vm.name,
            mode=effective_mode,
            requested_mode=mode,
            parent=parent.id if parent is not None and effective_mode != "full" else None,
            time=when,
            duration=0.0,
            logical_bytes=total,
            read_bytes=pipeline.read_bytes,
            zero_bytes=pipeline.zero_bytes,
            reused_bytes=reused,
            new_bytes=meter.bytes_new,
            stored_bytes=meter.bytes_stored,
            chunks=len(chunk_set),
            new_chunks=pipeline.new_chunks,
            files=len(plans),
            files_unchanged=sum(1 for p in plans if p.how == "unchanged"),
            files_changed_ranges=sum(1 for p in plans if p.how == "changed-ranges"),
            files_read=sum(1 for p in plans if p.how == "read"),
            chunks_reread=reread,
            fallback=fallback,
            whole_reads=whole_reads,
            disk_set_changed=changed_set,
            host_warnings=host_warnings,
        )
        meter.start_phase("commit", message="writing the restore point")
        stats = {
            k: v
            for k, v in result.to_dict().items()
            if k
            not in (
                "point_id", "repository", "host", "vm_id", "vm_name", "mode", "requested_mode", "parent", "time", "fallback",
                "disk_set_changed",
            )
            and not isinstance(v, list)
        }
        stats["committed_ns"] = time.time_ns()
        stats["duration"] = round(time.monotonic() - started, 3)
        manifest = Manifest(
            id=point_id,
            time=when,
            host=host.name,
            vm_id=source.vm.id,
            vm_name=source.vm.name,
            mode=effective_mode,
            requested_mode=mode,
            chunk_size=repo.chunk_size,
            files=files,
            parent=result.parent,
            vm=_vm_facts(source, plans, drives),
            vm_config=dict(source.config or {}),
            stats=stats,
        )
        repo.commit_point(manifest)
    except BaseException as err:
        with contextlib.suppress(Exception):
            meter.start_phase("cleanup", message="removing the backup checkpoint")
        try:
            source.close()
        except Exception as close_err:  # the backup's own failure stays the error reported
            log.warning("backup of %s/%s: removing the checkpoint failed: %s", host.name, vm_id, close_err)
            if isinstance(err, HvtuiError):
                err.args = (f"{err}; removing the backup checkpoint failed too ({close_err})",)
        raise
    meter.start_phase(COMMITTED_PHASE, message=f"restore point {point_id} committed", current=point_id)
    meter.start_phase("cleanup", message="removing the backup checkpoint")
    try:
        source.close()
    except HvtuiError as err:
        # The point is committed and good; the checkpoint will be cleared by the next backup.
        warnings.append(f"the restore point is complete, but removing the backup checkpoint failed: {err}")
        log.warning("backup of %s/%s: %s", host.name, vm_id, err)
    result.duration = time.monotonic() - started
    result.warnings = warnings
    meter.start_phase("done", message=f"restore point {result.point_id}")
    return result
