"""Restore a point: to a directory, or through a host's ``RestoreTarget`` (new VM, in place).

Every chunk is hash-checked as it is read; all-zero chunks become holes (nothing written,
the file is truncated to its size at the end).  Files are written under temporary names
and renamed into place only once all of them are complete and fsynced; on any failure the
temporary files are removed (or the host's target aborted), so nothing half-written is
left looking good.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import humanize

from hvtui.engine.errors import OverwriteRefused, RepositoryDamaged
from hvtui.engine.fsutil import tune_allocator
from hvtui.engine.manifest import FileEntry, Manifest, UnsafePathError, check_rel_path
from hvtui.engine.progress import DEFAULT_INTERVAL, Meter
from hvtui.engine.repository import Repository
from hvtui.engine.store import ChunkDamaged, ChunkMissing, ChunkQuarantined, disk_error
from hvtui.errors import Cancelled, HvtuiError, RefusedError, RepositoryError
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.files import fsync_dir
from hvtui.hosts.base import Host, RestoreTarget
from hvtui.model import VM


@dataclass(slots=True)
class RestoreResult:
    point_id: str
    target: str  # a directory, or "host/VM name" for a VM restore
    files: int
    logical_bytes: int
    written_bytes: int  # data written (holes excluded)
    hole_bytes: int  # left as holes
    duration: float
    vm_id: str | None = None
    vm_name: str | None = None
    host: str | None = None
    warnings: list[str] = field(default_factory=list)  # what the host changed to register the VM

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RestoreTargetError(HvtuiError):
    """The place a restore writes to (a folder, a host's staging) failed: full, denied..."""


def target_error(err: OSError, what: str, where: Path | str) -> HvtuiError:
    """An error writing the restore target, blamed on the target's disk (not the repository's)."""
    if err.errno == errno.ENOSPC:
        return RestoreTargetError(f"the restore target's disk is full (the filesystem of {where}; {what})")
    if err.errno == errno.EDQUOT:
        return RestoreTargetError(f"disk quota exceeded on the restore target (the filesystem of {where}; {what})")
    if err.errno in (errno.EACCES, errno.EPERM):
        return RestoreTargetError(f"permission denied: {what} ({err.strerror})")
    return RestoreTargetError(f"{what}: {err.strerror or err}")


def bytes_to_write(manifest: Manifest) -> int:
    """Bytes a restore of ``manifest`` writes: every stored chunk (all-zero ones become holes)."""
    cs = manifest.chunk_size
    total = 0
    for entry in manifest.files:
        for index, digest in enumerate(entry.chunks):
            if digest is not None:
                total += min(cs, entry.size - index * cs)
    return total


def check_free_space(where: Path, manifest: Manifest) -> None:
    """Refuse before writing anything when the target's filesystem cannot hold the point."""
    needed = bytes_to_write(manifest)
    try:
        free = shutil.disk_usage(where).free
    except OSError as err:
        raise target_error(err, "reading its free space", where) from err
    if free < needed:
        size = humanize.naturalsize
        raise RefusedError(
            f"not enough free space for restore point {manifest.id} on the filesystem of {where}: "
            f"{size(needed, binary=True)} to write, {size(free, binary=True)} free; nothing was written"
        )


def resolve_inside(root: Path, rel_path: str) -> Path:
    """``root/rel_path`` after checking that it cannot land outside ``root``."""
    check_rel_path(rel_path)
    target = root.joinpath(*rel_path.split("/"))
    resolved_root = root.resolve()
    resolved = target.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UnsafePathError(f"refused file path {rel_path!r}: it resolves outside the restore target")
    return target


class _FdSink:
    """A local file: the workers ``pwrite`` their chunks at once."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write_at(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view = view[n:]
            offset += n

    def finish(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        os.fsync(self.fd)


class _StreamSink:
    """A target's writer (a file on a host, over SMB): one chunk at a time, seek then write.

    A file ending in a hole gets its last byte written, so it has its full size without
    relying on the writer's ``truncate``; holes inside read as zeros once written past."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.end = 0
        self._lock = threading.Lock()

    def write_at(self, offset: int, data: bytes) -> None:
        with self._lock:
            self.stream.seek(offset)
            self.stream.write(data)
            self.end = max(self.end, offset + len(data))

    def finish(self, size: int) -> None:
        with self._lock:
            if self.end < size:
                self.stream.seek(size - 1)
                self.stream.write(b"\0")
            self.stream.flush()


class _Writer:
    """Writes a point's files under a root, verifying chunks on a small thread pool."""

    def __init__(self, repo: Repository, manifest: Manifest, meter: Meter, cancel: CancelToken, workers: int) -> None:
        self.repo = repo
        self.manifest = manifest
        self.meter = meter
        self.cancel = cancel
        self.workers = workers
        self.written = 0
        self.holes = 0

    def check_paths(self, root: Path) -> None:
        for entry in self.manifest.files:
            resolve_inside(root, entry.path)

    def _chunk(self, digest: bytes, entry: FileEntry, index: int) -> bytes:
        try:
            return self.repo.store.get(digest)
        except ChunkQuarantined as err:
            raise RepositoryDamaged(
                f"restore point {self.manifest.id}: chunk {digest.hex()[:16]} of {entry.path} "
                f"(at offset {index * self.manifest.chunk_size}) was quarantined by verify: its data was damaged "
                f"(kept as {err.bad_path.relative_to(self.repo.root).as_posix()}); restore refused. "
                "A backup of the VM stores the chunk again if the VM still holds that data"
            ) from None
        except ChunkMissing:
            raise RepositoryDamaged(
                f"restore point {self.manifest.id}: chunk {digest.hex()[:16]} of {entry.path} "
                f"(at offset {index * self.manifest.chunk_size}) is missing from the repository; restore refused"
            ) from None
        except ChunkDamaged as err:
            raise RepositoryDamaged(
                f"restore point {self.manifest.id}: chunk {digest.hex()[:16]} of {entry.path} "
                f"(at offset {index * self.manifest.chunk_size}) is damaged: {err.reason}; restore refused"
            ) from None

    def write_all(self, paths: list[tuple[FileEntry, Path]]) -> None:
        with ThreadPoolExecutor(self.workers, thread_name_prefix="hvtui-restore") as pool:
            for entry, path in paths:
                self._write_local(pool, entry, path)

    def write_through(self, target: RestoreTarget) -> None:
        """Every file through the target's own writers (a host without a local staging folder)."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="hvtui-restore") as pool:
            for entry in self.manifest.files:
                self.meter.current = entry.path
                stream = target.open_file(entry.path)
                try:
                    self._write_chunks(pool, entry, _StreamSink(stream))
                finally:
                    stream.close()

    def _write_local(self, pool: ThreadPoolExecutor, entry: FileEntry, path: Path) -> None:
        self.meter.current = entry.path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # A VM's disk: owner-only, like the repository it came from (the admin widens it on purpose).
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as err:
            raise target_error(err, f"cannot create {path}", path.parent) from err
        try:
            self._write_chunks(pool, entry, _FdSink(fd))
        except OSError as err:
            raise target_error(err, f"writing {path}", path.parent) from err
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))

    def _write_chunks(self, pool: ThreadPoolExecutor, entry: FileEntry, sink: _FdSink | _StreamSink) -> None:
        cs = self.manifest.chunk_size
        # Workers read, verify, decompress and write their chunk (all GIL-free for a local
        # file); this thread keeps a bounded window of them in flight, collects errors and progress.
        window: deque[Future[int]] = deque()
        depth = self.workers * 2
        try:
            for index, digest in enumerate(entry.chunks):
                if digest is None:
                    length = min(cs, entry.size - index * cs)
                    self.holes += length
                    self.meter.add(done=length)
                    continue
                window.append(pool.submit(self._restore_chunk, sink, digest, entry, index))
                if len(window) >= depth:
                    self._drain_one(window)
            while window:
                self._drain_one(window)
            sink.finish(entry.size)
        finally:
            for future in window:
                future.cancel()
            for future in window:
                with contextlib.suppress(BaseException):
                    future.result()  # never close the file under a running write

    def _restore_chunk(self, sink: _FdSink | _StreamSink, digest: bytes, entry: FileEntry, index: int) -> int:
        if self.cancel.cancelled:
            raise Cancelled("restore cancelled")
        try:
            data = self._chunk(digest, entry, index)
        except OSError as err:  # reading the repository: its disk, not the target's
            raise disk_error(err, f"reading chunk {digest.hex()[:16]} of {entry.path}") from err
        sink.write_at(index * self.manifest.chunk_size, data)
        return len(data)

    def _drain_one(self, window: deque[Future[int]]) -> None:
        if self.cancel.cancelled:
            raise Cancelled("restore cancelled")
        written = window.popleft().result()
        self.written += written
        self.meter.add(done=written, data=written)
        self.meter.emit()


def _prepare(
    repo: Repository, point: str | Manifest, progress: ProgressCallback | None, cancel: CancelToken | None
) -> tuple[Manifest, CancelToken, Meter]:
    tune_allocator()
    cancel = cancel or CancelToken()
    manifest = point if isinstance(point, Manifest) else repo.load_point(point)
    return manifest, cancel, Meter(progress)


def restore_to_directory(
    repo: Repository,
    point: str | Manifest,
    target_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    progress_interval: float = DEFAULT_INTERVAL,
    lock_timeout: float | None = 3600.0,
    workers: int = 2,
    finish: Callable[[Path], object] | None = None,
    staging_name: str | None = None,
) -> RestoreResult:
    """Restore every file of ``point`` under ``target_dir`` (created if missing).

    Refuses when a file to restore already exists there.  Files appear under their final
    names only when every file of the point has been written and checked.  ``finish``
    runs on the staging directory before that (say, to flatten the disks); a file it
    removes is not moved into place.
    """
    if staging_name is not None and (not staging_name.startswith(".hvtui-restore-") or "/" in staging_name):
        raise RepositoryError(f"refused staging folder name {staging_name!r}: not a .hvtui-restore-… name")
    started = time.monotonic()
    cancel = cancel or CancelToken()
    lock = repo.lock("shared", "restore", str(point if isinstance(point, str) else point.id), reading=True)
    lock.acquire(lock_timeout, cancel, _lock_waiter(progress))
    try:
        manifest, cancel, meter = _prepare(repo, point, progress, cancel)
        meter.interval = progress_interval
        target_dir = Path(target_dir).expanduser().absolute()
        try:
            target_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise target_error(err, f"cannot create {target_dir}", target_dir) from err
        writer = _Writer(repo, manifest, meter, cancel, workers)
        finals = [(entry, resolve_inside(target_dir, entry.path)) for entry in manifest.files]
        existing = [str(path) for _, path in finals if path.exists() or path.is_symlink()]
        if existing:
            raise OverwriteRefused(
                f"refusing to overwrite {existing[0]}"
                + (f" and {len(existing) - 1} more" if len(existing) > 1 else "")
                + "; restore into an empty directory"
            )
        # The job names its staging folder up front (and journals it), so a killed
        # process leaves a folder the journal can name for clean-up.
        check_free_space(target_dir, manifest)
        staging = target_dir / (staging_name or f".hvtui-restore-{manifest.id}-{uuid.uuid4().hex[:8]}.tmp")
        meter.start_phase(
            "restore", total=manifest.logical_bytes, message=f"restoring {manifest.vm_name} to {target_dir}"
        )
        try:
            staged = [(entry, resolve_inside(staging, entry.path)) for entry in manifest.files]
            writer.write_all(staged)
            cancel.check()
            if finish is not None:
                meter.start_phase("finish", message="flattening the restored disks")
                finish(staging)
                cancel.check()
            meter.start_phase("commit", message="moving restored files into place")
            for (_, tmp_path), (_, final) in zip(staged, finals, strict=True):
                if not tmp_path.exists():
                    continue  # removed by ``finish`` (a differencing disk merged into its base)
                final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.rename(tmp_path, final)
                fsync_dir(final.parent)
        except OSError as err:
            raise target_error(err, f"restoring into {target_dir}", target_dir) from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        fsync_dir(target_dir)
    finally:
        lock.release()
    meter.start_phase("done", message=f"restored {manifest.id}")
    return RestoreResult(
        point_id=manifest.id,
        target=str(target_dir),
        files=len(manifest.files),
        logical_bytes=manifest.logical_bytes,
        written_bytes=writer.written,
        hole_bytes=writer.holes,
        duration=time.monotonic() - started,
    )


def restore_to_host(
    repo: Repository,
    point: str | Manifest,
    host: Host,
    mode: str,
    *,
    vm_id: str | None = None,
    new_name: str | None = None,
    keep_checkpoints: bool = True,
    staging_name: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    progress_interval: float = DEFAULT_INTERVAL,
    lock_timeout: float | None = 3600.0,
    workers: int = 2,
) -> RestoreResult:
    """Restore as a new VM (``mode="new"``, ``new_name``) or over ``vm_id`` (``"in_place"``).

    ``keep_checkpoints`` False: the host flattens a new VM's disks and drops its checkpoints.
    ``staging_name``: the name of the host's staging folder where it takes one (a WinRM host;
    the job names it after itself, so a killed run's folder can be found again).

    The host stages the files and registers the VM on ``commit``; any failure aborts the
    target, which removes everything staged and leaves the original VM as it was.
    """
    if mode not in ("new", "in_place"):
        raise RepositoryError(f"unknown restore mode {mode!r}")
    started = time.monotonic()
    cancel = cancel or CancelToken()
    lock = repo.lock("shared", "restore", str(point if isinstance(point, str) else point.id), reading=True)
    lock.acquire(lock_timeout, cancel, _lock_waiter(progress))
    try:
        manifest, cancel, meter = _prepare(repo, point, progress, cancel)
        meter.interval = progress_interval
        # Refuse unsafe paths before the host is asked to do anything.
        for entry in manifest.files:
            check_rel_path(entry.path)
        meter.start_phase("prepare", message="preparing the restore on the host")
        target = host.prepare_restore(
            dict(manifest.vm_config),
            mode,
            vm_id=vm_id,
            new_name=new_name,
            keep_checkpoints=keep_checkpoints,
            write_bytes=bytes_to_write(manifest),
            staging_name=staging_name,
        )
        vm: VM | None = None
        try:
            staging = Path(target.staging_dir) if target.staging_dir is not None else None
            if staging is not None:  # else the host checked its free space in prepare_restore
                check_free_space(staging, manifest)
            writer = _Writer(repo, manifest, meter, cancel, workers)
            meter.start_phase("restore", total=manifest.logical_bytes, message=f"restoring {manifest.vm_name}")
            if staging is not None:
                writer.write_all([(entry, resolve_inside(staging, entry.path)) for entry in manifest.files])
            else:
                writer.write_through(target)
            cancel.check()
            meter.start_phase("commit", message="registering the VM")
            vm = target.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                target.abort()
            raise
    except OSError as err:
        raise target_error(err, f"restoring to host {host.name}", host.name) from err
    finally:
        lock.release()
    meter.start_phase("done", message=f"restored {manifest.id}")
    return RestoreResult(
        point_id=manifest.id,
        target=f"{host.name}/{vm.name if vm else new_name or manifest.vm_name}",
        files=len(manifest.files),
        logical_bytes=manifest.logical_bytes,
        written_bytes=writer.written,
        hole_bytes=writer.holes,
        duration=time.monotonic() - started,
        vm_id=vm.id if vm else None,
        vm_name=vm.name if vm else None,
        host=host.name,
        warnings=list(target.warnings),
    )


def _lock_waiter(progress: ProgressCallback | None):  # -> Callable[[str], None]
    def on_wait(message: str) -> None:
        if progress is not None:
            progress(Progress(phase="lock", message=message))

    return on_wait
