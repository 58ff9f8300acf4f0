"""Backup: a consistent source, a plan per file, and a pipeline that keeps both cores busy.

::

    reader thread --(bounded queue of pooled 4 MiB buffers)--> N hash+lz4 workers
        --(bounded queue)--> writer thread (tmp, fsync, rename into chunks/)

The reader skips holes without reading them (SEEK_DATA) and reads only the chunks the plan
names; workers drop all-zero chunks, hash (SHA-256), skip chunks the repository already has
and compress the rest; the writer stores them.  Memory is the buffer pool plus the bounded
queues, whatever the disk size.  The manifest is committed last, after every chunk it names
is durable; the Recovery checkpoint is removed afterwards, also on failure or cancel.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hvtui.clock import Clock, SystemClock
from hvtui.engine.chunking import HoleMap, chunk_count, chunk_span, chunks_touching
from hvtui.engine.fsutil import data_extents, fadvise, tune_allocator
from hvtui.engine.locks import VMLock
from hvtui.engine.manifest import FileEntry, Manifest, check_rel_path, new_point_id
from hvtui.engine.progress import DEFAULT_INTERVAL, Meter
from hvtui.engine.repository import Repository
from hvtui.engine.store import CODEC_RAW, HEADER, ChunkStore, compress_chunk
from hvtui.errors import Cancelled, HvtuiError, RepositoryError
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.hosts.base import BackupSource, Host, SourceFile

log = logging.getLogger(__name__)

MODES = ("full", "incremental", "differential")
_POLL = 0.05
BATCH_BYTES = 16 * 1024 * 1024
BATCH_SECONDS = 1.0  # a killed backup loses at most about this much work


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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["time"] = self.time.isoformat()
        return out


@dataclass(slots=True)
class FilePlan:
    source: SourceFile
    entry: FileEntry
    read: Sequence[int]  # chunk indexes to read, ascending
    how: str  # unchanged, changed-ranges, read
    reused_bytes: int = 0
    reread: int = 0  # chunks the parent lists but the repository lacks: read again


def reread_missing_chunks(plans: list[FilePlan], store: ChunkStore, chunk_size: int) -> int:
    """Read again what a plan would take from the parent but the repository no longer has.

    A chunk quarantined by verify (or lost) must not be referenced by a new point just
    because the parent listed it: each distinct reused chunk is looked up once (a stat,
    cheap next to reading data) and a missing one is added to the file's reads, which
    stores it again and heals the older points that reference it.  Returns the number of
    chunk positions added.
    """
    present: dict[bytes, bool] = {}
    added = 0
    for plan in plans:
        if plan.how == "read":
            continue
        reading = set(plan.read)
        missing: list[int] = []
        for index, digest in enumerate(plan.entry.chunks):
            if digest is None or index in reading:
                continue
            found = present.get(digest)
            if found is None:
                found = present[digest] = store.has(digest)
            if not found:
                missing.append(index)
        if not missing:
            continue
        for index in missing:
            plan.entry.chunks[index] = None  # the reader fills it in
            plan.reused_bytes -= chunk_span(index, plan.entry.size, chunk_size)[1]
        plan.read = sorted(reading.union(missing))
        plan.reread = len(missing)
        added += len(missing)
    return added


def plan_files(files: list[SourceFile], parent: Manifest | None, chunk_size: int, reuse: bool) -> list[FilePlan]:
    """Decide per file what must be read; everything else is taken from ``parent``.

    ``reuse`` False (a full backup) reads every file whole.  Files are matched to the parent
    by identity (a disk id survives a rename), then by path.
    """
    by_identity: dict[str, FileEntry] = {}
    by_path: dict[str, FileEntry] = {}
    if parent is not None and parent.chunk_size == chunk_size:
        for old in parent.files:
            by_identity.setdefault(old.identity, old)
            by_path.setdefault(old.path, old)
    plans: list[FilePlan] = []
    seen: set[str] = set()
    for sf in files:
        path = check_rel_path(sf.rel_path)
        if path in seen:
            raise RepositoryError(f"the backup source lists {path!r} twice")
        seen.add(path)
        n = chunk_count(sf.size, chunk_size)
        entry = FileEntry(path, sf.size, sf.mtime_ns, sf.identity, sf.change_id, [None] * n)
        old = (by_identity.get(sf.identity) or by_path.get(path)) if reuse else None
        if old is None:
            plans.append(FilePlan(sf, entry, range(n), "read"))
            continue
        same_change = old.change_id == sf.change_id or old.change_id is None or sf.change_id is None
        if old.identity == sf.identity and old.size == sf.size and old.mtime_ns == sf.mtime_ns and same_change:
            entry.chunks = list(old.chunks)
            plans.append(FilePlan(sf, entry, (), "unchanged", sf.size))
            continue
        ranges = None
        if old.identity == sf.identity and old.change_id and sf.change_id:
            try:
                ranges = sf.changed_ranges(old.change_id)
            except HvtuiError as err:
                log.info("%s: change tracking unavailable (%s); reading it whole", path, err)
                ranges = None
        if ranges is None:
            plans.append(FilePlan(sf, entry, range(n), "read"))
            continue
        # Chunks past the shorter of the two sizes are read too: the last one changed length.
        common = min(old.size, sf.size) // chunk_size
        to_read = chunks_touching(ranges, sf.size, chunk_size) | set(range(common, n))
        for i in range(min(n, len(old.chunks))):
            if i not in to_read:
                entry.chunks[i] = old.chunks[i]
        reused = sum(chunk_span(i, sf.size, chunk_size)[1] for i in range(n) if i not in to_read)
        plans.append(FilePlan(sf, entry, sorted(to_read), "changed-ranges", reused))
    return plans


class _Pipeline:
    """Reader -> workers -> writer over bounded queues; errors and cancel stop all threads."""

    def __init__(
        self,
        repo: Repository,
        owner: str,
        meter: Meter,
        cancel: CancelToken,
        workers: int,
        buffers: int | None = None,
    ) -> None:
        self.repo = repo
        self.store = repo.store
        self.chunk_size = repo.chunk_size
        self.owner = owner
        self.meter = meter
        self.cancel = cancel
        self.n_workers = workers
        n_buffers = buffers or workers * 2 + 2
        self.pool: queue.Queue[bytearray] = queue.Queue()
        for _ in range(n_buffers):
            self.pool.put(bytearray(self.chunk_size))
        self.work_q: queue.Queue[tuple[int, int, bytearray, int] | None] = queue.Queue(maxsize=n_buffers)
        self.write_q: queue.Queue[tuple[bytes, int, int, Any, bytearray | None] | None] = queue.Queue(maxsize=4)
        self.publish_q: queue.Queue[list[tuple[Path, bytes]] | None] = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.zero = bytes(self.chunk_size)
        self.pending: set[bytes] = set()
        self.pending_lock = threading.Lock()
        self.stats_lock = threading.Lock()
        self.read_bytes = 0
        self.zero_bytes = 0
        self.new_chunks = 0
        self.plans: list[FilePlan] = []
        # Chunks are published (synced, then renamed) in batches; a killed backup loses at
        # most one batch of work, the rest is reused by the next run.
        self.batch_bytes = BATCH_BYTES
        self.batch_seconds = BATCH_SECONDS
        self.fsync_each = False

    # -- queue helpers that give up when the pipeline stops ---------------------------------
    def _put(self, q: queue.Queue, item: object) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> Any:
        while not self.stop.is_set():
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                continue
        return None

    def _fail(self, err: BaseException) -> None:
        if self.error is None:
            self.error = err
        self.stop.set()

    # -- threads -----------------------------------------------------------------------------
    def _reader(self) -> None:
        try:
            for plan_no, plan in enumerate(self.plans):
                if not plan.read:
                    continue
                if self.stop.is_set():
                    return
                self._read_file(plan_no, plan)
            for _ in range(self.n_workers):
                self._put(self.work_q, None)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            self._fail(err)

    def _read_file(self, plan_no: int, plan: FilePlan) -> None:
        size = plan.entry.size
        cs = self.chunk_size
        self.meter.current = plan.entry.path
        try:
            fh = plan.source.open()
        except OSError as err:
            raise RepositoryError(f"cannot open {plan.entry.path} on the source: {err.strerror or err}") from err
        with fh:
            try:
                fd: int | None = fh.fileno()
            except (OSError, AttributeError, ValueError):
                fd = None
            self._check_size(fd, plan)
            holes = HoleMap(data_extents(fd, size) if fd is not None else None)
            if fd is not None:
                fadvise(fd, 0, 0, "SEQUENTIAL")
            for idx in plan.read:
                if self.stop.is_set():
                    return
                offset, length = chunk_span(idx, size, cs)
                if holes.is_hole(offset, length):
                    plan.entry.chunks[idx] = None
                    with self.stats_lock:
                        self.zero_bytes += length
                    self.meter.add(done=length)
                    continue
                buf = self._get(self.pool)
                if buf is None:
                    return
                view = memoryview(buf)
                got = 0
                try:
                    while got < length:
                        if fd is not None:
                            n = os.preadv(fd, [view[got:length]], offset + got)
                        else:
                            fh.seek(offset + got)
                            n = fh.readinto(view[got:length]) or 0
                        if n == 0:
                            raise RepositoryError(
                                f"{plan.entry.path} on the source ended at {offset + got} bytes, expected {size}: "
                                "it changed during the backup"
                            )
                        got += n
                except OSError as err:
                    raise RepositoryError(
                        f"reading {plan.entry.path} from the source failed: {err.strerror or err}"
                    ) from err
                finally:
                    view.release()
                with self.stats_lock:
                    self.read_bytes += length
                if not self._put(self.work_q, (plan_no, idx, buf, length)):
                    return
            self._check_size(fd, plan)

    @staticmethod
    def _check_size(fd: int | None, plan: FilePlan) -> None:
        """A frozen file must keep its size; holes past a shrunk end would read as zeros."""
        if fd is None:
            return
        actual = os.fstat(fd).st_size
        if actual != plan.entry.size:
            raise RepositoryError(
                f"{plan.entry.path} on the source is {actual} bytes, expected {plan.entry.size}: "
                "it changed during the backup"
            )

    def _worker(self) -> None:
        try:
            zero, cs = self.zero, self.chunk_size
            while True:
                item = self._get(self.work_q)
                if item is None:
                    return
                plan_no, idx, buf, length = item
                chunks = self.plans[plan_no].entry.chunks
                is_zero = buf == zero if length == cs else buf[:length] == zero[:length]
                if is_zero:
                    chunks[idx] = None
                    self.pool.put(buf)
                    with self.stats_lock:
                        self.zero_bytes += length
                    self.meter.add(done=length)
                    continue
                view = memoryview(buf)[:length]
                digest = hashlib.sha256(view).digest()
                chunks[idx] = digest
                with self.pending_lock:
                    known = digest in self.pending
                    self.pending.add(digest)
                if known or self.store.has(digest):
                    view.release()
                    self.pool.put(buf)
                    self.meter.add(done=length, data=length)
                    continue
                codec, packed = compress_chunk(view)
                if packed is not None:
                    view.release()
                    self.pool.put(buf)
                    job = (digest, codec, length, packed, None)
                else:
                    job = (digest, CODEC_RAW, length, view, buf)  # the writer returns the buffer
                self.meter.add(done=length, data=length, new=length)
                if not self._put(self.write_q, job):
                    return
        except BaseException as err:  # noqa: BLE001
            self._fail(err)

    def _writer(self) -> None:
        """Write chunk objects under temporary names; hand them over in batches."""
        batch: list[tuple[Path, bytes]] = []
        batch_bytes = 0
        batch_started = time.monotonic()
        try:
            while True:
                job = self._get(self.write_q)
                if job is None:
                    break
                digest, codec, length, payload, buf = job
                tmp = self.store.write_tmp(digest, codec, length, payload, self.owner, fsync=self.fsync_each)
                written = HEADER.size + len(payload)
                if buf is not None:
                    payload.release()
                    self.pool.put(buf)
                if tmp is None:
                    continue
                batch.append((tmp, digest))
                batch_bytes += written
                with self.stats_lock:
                    self.new_chunks += 1
                self.meter.add(stored=written)
                if batch_bytes >= self.batch_bytes or time.monotonic() - batch_started >= self.batch_seconds:
                    if not self._put(self.publish_q, batch):
                        break
                    batch, batch_bytes, batch_started = [], 0, time.monotonic()
            if not self.stop.is_set() and self._put(self.publish_q, batch):
                batch = []
                self._put(self.publish_q, None)
        except BaseException as err:  # noqa: BLE001
            self._fail(err)
        finally:
            self.store.discard(batch)  # never handed over: never left looking good

    def _publisher(self) -> None:
        """Sync each batch to disk, then give its objects their final names.

        A thread of its own so that waiting for the disk overlaps hashing and compressing.
        """
        try:
            while True:
                batch = self._get(self.publish_q)
                if batch is None:
                    return
                self.store.publish(batch, synced=self.fsync_each)
        except BaseException as err:  # noqa: BLE001
            self._fail(err)
        finally:
            if self.stop.is_set():
                self._discard_unpublished()

    def _discard_unpublished(self) -> None:
        while True:
            try:
                leftover = self.publish_q.get_nowait()
            except queue.Empty:
                return
            if leftover:
                self.store.discard(leftover)

    # -- driver ---------------------------------------------------------------------------------
    def run(self, plans: list[FilePlan]) -> None:
        self.plans = plans
        reader = threading.Thread(target=self._reader, name="hvtui-backup-reader", daemon=True)
        workers = [
            threading.Thread(target=self._worker, name=f"hvtui-backup-worker-{i}", daemon=True)
            for i in range(self.n_workers)
        ]
        writer = threading.Thread(target=self._writer, name="hvtui-backup-writer", daemon=True)
        publisher = threading.Thread(target=self._publisher, name="hvtui-backup-publisher", daemon=True)
        for thread in (reader, *workers, writer, publisher):
            thread.start()
        try:
            self._wait([reader, *workers])
            if not self.stop.is_set():
                self._put(self.write_q, None)
            self._wait([writer, publisher])
        except BaseException as err:  # KeyboardInterrupt in the calling thread: stop everything
            self._fail(err)
            for thread in (reader, *workers, writer, publisher):
                thread.join()
            raise
        if self.stop.is_set():
            self._discard_unpublished()
        cancelled = self.cancel.cancelled
        if self.error is not None:
            raise self.error
        if cancelled:
            raise Cancelled("backup cancelled")

    def _wait(self, threads: list[threading.Thread]) -> None:
        for thread in threads:
            while thread.is_alive():
                thread.join(_POLL)
                if self.cancel.cancelled and not self.stop.is_set():
                    self.stop.set()
                self.meter.emit()


def _vm_facts(source: BackupSource) -> dict[str, Any]:
    vm = source.vm
    return {
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


def select_parent(points: list[Manifest], host: str, vm_id: str, mode: str) -> Manifest | None:
    """The point an incremental (latest of the VM) or differential (latest full) builds on."""
    mine = [p for p in points if p.host == host and p.vm_id == vm_id]
    if mode == "differential":
        mine = [p for p in mine if p.mode == "full"]
    if mode == "full" or not mine:
        return None
    return max(mine, key=point_order)


def find_parent(repo: Repository, host: str, vm_id: str, mode: str) -> Manifest | None:
    """``select_parent`` without reading every manifest: newest first, stop at the first match.

    Point ids start with their time to the second, so once a match is found only the other
    points of that same second can still be newer (``point_order`` breaks the tie).
    """
    if mode == "full":
        return None
    found: list[Manifest] = []
    second: str | None = None
    for point_id in reversed(repo.point_ids()):
        if second is not None and not point_id.startswith(second):
            break
        try:
            manifest = repo.load_point(point_id)
        except RepositoryError:
            continue  # damaged or pruned meanwhile: verify reports it, a backup goes on
        if select_parent([manifest], host, vm_id, mode) is not None:
            found.append(manifest)
            second = point_id.split("-", 1)[0]
    return max(found, key=point_order) if found else None


def point_order(point: Manifest) -> tuple:
    return (point.time, point.stats.get("committed_ns", 0), point.id)


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
) -> BackupResult:
    """Back up one VM into ``repo``; the new point is committed or nothing is.

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

    lock = repo.lock("shared", "backup", f"{host.name}/{vm_id}")
    lock.acquire(lock_timeout, cancel, on_wait)
    try:
        with VMLock(repo.root, host.name, vm_id).acquire():
            return _backup_locked(repo, host, vm_id, mode, clock, cancel, meter, lock.id, n_workers, started)
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
) -> BackupResult:
    parent = find_parent(repo, host.name, vm_id, mode)
    effective_mode = mode if parent is not None or mode == "full" else "full"
    cancel.check()

    # A backup that died (kill -9) may have left its Recovery checkpoint: clear it first.
    cleanup = getattr(host, "cleanup_recovery_checkpoints", None)
    if callable(cleanup):
        meter.start_phase("cleanup", message="removing leftover backup checkpoints")
        cleanup(vm_id)
    cancel.check()

    meter.start_phase("checkpoint", message="taking a Recovery checkpoint")
    warnings: list[str] = []
    source = host.open_backup_source(vm_id, meter.callback)
    try:
        when = clock.now()
        cancel.check()
        plans = plan_files(list(source.files), parent, repo.chunk_size, reuse=effective_mode != "full")
        reread = reread_missing_chunks(plans, repo.store, repo.chunk_size)
        if reread and parent is not None:
            warnings.append(
                f"{reread} chunk(s) of the parent point {parent.id} were missing from the repository "
                "(quarantined by verify, or lost); they were read again from the VM and stored"
            )
        total = sum(p.entry.size for p in plans)
        meter.start_phase("backup", total=total, message=f"{effective_mode} backup of {source.vm.name}")
        reused = sum(p.reused_bytes for p in plans)
        meter.add(done=reused)
        pipeline = _Pipeline(repo, owner, meter, cancel, n_workers)
        pipeline.run(plans)
        cancel.check()

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
        )
        meter.start_phase("commit", message="writing the restore point")
        stats = {
            k: v
            for k, v in result.to_dict().items()
            if k
            not in ("point_id", "repository", "host", "vm_id", "vm_name", "mode", "requested_mode", "parent", "time")
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
            vm=_vm_facts(source),
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
