"""``hvtui repo migrate``: convert a format-1 repository (chunk files) to format 2 (packs), in place.

Every restore point stays readable at every moment, whatever kills the process
(docs/repository-format.md, "Migrating from version 1"):

1. **copy** (shared lock: restores, verifies and backups go on): every chunk file is read,
   checked against its id and appended as it is (header and codec kept) to pack files,
   published like a backup's packs (``tmp/``, fsync, rename); an index file is written every
   few packs and at the end.  The repository is still format 1 and its chunk files are
   untouched, so every reader reads them.  A killed copy resumes where it stopped: the packs
   already published are found from their trailers.
2. **switch** (exclusive lock, short): chunks written since the copy (a backup ran) are
   copied too, the index is made durable, then ``config.json`` is replaced in one rename by
   the same one with ``"version": 2`` and a pack size.  Before the rename the repository is
   format 1, after it format 2, complete either way.
3. **cleanup** (shared lock again): the chunk files are deleted (a ``.bad`` file a verify
   quarantined is kept, as ever).  A killed cleanup is finished by the next ``repo migrate``.

A process that had the repository open as format 1 notices the switch when it next takes
its lock (``Repository.format_changed``), so it never reads chunk files being deleted.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hvtui.engine.layout import PACK_SUBDIRS, make_private_dir, publish_config, require_real_dir
from hvtui.engine.packfile import DEFAULT_PACK_SIZE, PackWriter
from hvtui.engine.packstore import PackStore
from hvtui.engine.progress import DEFAULT_INTERVAL, Meter
from hvtui.engine.repo_config import check_pack_size
from hvtui.engine.repository import Repository
from hvtui.engine.store import DIGEST_SIZE, HEADER, ChunkDamaged, ChunkMissing, ChunkStore, decode_chunk, disk_error
from hvtui.errors import RepositoryError
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.files import fsync_dir

INDEX_EVERY = 32  # packs between index files during the copy (a killed copy re-reads at most these trailers)
SPACE_MARGIN = 64 * 1024 * 1024  # free space kept beyond the copy's need


@dataclass(slots=True)
class MigrationPlan:
    """What ``repo migrate`` would do now (changes nothing)."""

    repository: str
    path: Path
    version: int
    state: str  # "copy" (format 1), "cleanup" (format 2, chunk files left), "done" (format 2, nothing left)
    chunk_files: int = 0
    chunk_bytes: int = 0
    packed_bytes: int = 0  # of those, already in packs (a resumed migration)
    free_bytes: int = 0
    pack_size: int = DEFAULT_PACK_SIZE
    points: int = 0

    @property
    def needed_bytes(self) -> int:
        return max(0, self.chunk_bytes - self.packed_bytes)

    def problem(self) -> str | None:
        """Why it cannot start (None: it can)."""
        if self.state == "copy" and self.needed_bytes + SPACE_MARGIN > self.free_bytes:
            return (
                f"not enough free space on the repository's disk: the copy needs {_size(self.needed_bytes)} "
                f"while it runs, {_size(self.free_bytes)} is free"
            )
        return None

    def describe(self) -> str:
        if self.state == "done":
            return f"repository {self.repository!r} is already format 2; nothing to do"
        if self.state == "cleanup":
            return (
                f"repository {self.repository!r} is format 2 already; a migration left {self.chunk_files} format-1 "
                f"chunk files ({_size(self.chunk_bytes)}) behind, which will be deleted (its packs hold every chunk)"
            )
        resumed = f" ({_size(self.packed_bytes)} of it already copied by an earlier run)" if self.packed_bytes else ""
        return (
            f"convert repository {self.repository!r} at {self.path} from format 1 to format 2: its {self.chunk_files} "
            f"chunk files ({_size(self.chunk_bytes)}){resumed} are copied into pack files of {self.pack_size // 2**20} "
            f"MiB, which needs {_size(self.needed_bytes)} of free space while it runs ({_size(self.free_bytes)} free); "
            "then config.json switches to format 2 and the chunk files are deleted. Its "
            f"{self.points} restore point{'' if self.points == 1 else 's'} stay{'s' if self.points == 1 else ''} readable "
            "throughout; a migration that is "
            "stopped resumes where it stopped when run again"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "path": str(self.path),
            "format": self.version,
            "state": self.state,
            "chunk_files": self.chunk_files,
            "chunk_bytes": self.chunk_bytes,
            "packed_bytes": self.packed_bytes,
            "free_bytes": self.free_bytes,
            "pack_size": self.pack_size,
            "points": self.points,
        }


@dataclass(slots=True)
class MigrationResult:
    repository: str
    chunks_copied: int = 0
    bytes_copied: int = 0
    packs_written: int = 0
    chunk_files_deleted: int = 0
    damaged: list[str] = field(default_factory=list)  # hex ids of chunk files not copied: they fail their check
    switched: bool = False  # this run replaced config.json
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "chunks_copied": self.chunks_copied,
            "bytes_copied": self.bytes_copied,
            "packs_written": self.packs_written,
            "chunk_files_deleted": self.chunk_files_deleted,
            "damaged_chunks": self.damaged,
            "switched": self.switched,
            "duration": round(self.duration, 3),
        }


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _chunk_files(root: Path) -> list[tuple[bytes, Path, int]]:
    """(id, path, size) of every format-1 chunk file (never a ``.bad`` file, a link or a temporary)."""
    out = []
    store = ChunkStore(root)
    for digest in store.iter_ids():
        path = store.path(digest)
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if not os.path.islink(path):
                out.append((digest, path, st.st_size))
    return out


def _pack_store(repo: Repository, pack_size: int) -> PackStore:
    for sub in PACK_SUBDIRS:
        make_private_dir(repo.root / sub)
        require_real_dir(repo.root / sub)
    return PackStore(repo.root, repo.id, pack_size)


def plan_migration(repo: Repository, pack_size: int = DEFAULT_PACK_SIZE) -> MigrationPlan:
    check_pack_size(pack_size)
    files = _chunk_files(repo.root)
    plan = MigrationPlan(repo.name, repo.root, repo.version, "copy" if repo.version == 1 else "cleanup")
    plan.chunk_files = len(files)
    plan.chunk_bytes = sum(size for _d, _p, size in files)
    plan.points = len(repo.point_ids())
    plan.pack_size = repo.config.get("pack_size", pack_size)
    if repo.version >= 2 and not files:
        plan.state = "done"
    if repo.version == 1 and (repo.root / "packs").is_dir():
        located = PackStore(repo.root, repo.id, pack_size).index.refresh().locations
        plan.packed_bytes = sum(size for digest, _p, size in files if digest in located)
    with contextlib.suppress(OSError):
        st = os.statvfs(repo.root)
        plan.free_bytes = st.f_bavail * st.f_frsize
    return plan


class _Copier:
    """Copies chunk files into packs, publishing each pack and indexing every few."""

    def __init__(self, store: PackStore, owner: str, meter: Meter, result: MigrationResult, cancel: CancelToken) -> None:
        self.store = store
        self.owner = owner
        self.meter = meter
        self.result = result
        self.cancel = cancel
        self.writer: PackWriter | None = None
        self.since_index = 0

    def copy(self, files: list[tuple[bytes, Path, int]]) -> None:
        try:
            for digest, path, size in files:
                self.cancel.check()
                if not self.store.has(digest):
                    self._copy_one(digest, path)
                self.meter.add(done=size)
                self.meter.emit()
            self._publish()
            self.store.make_durable()
        finally:
            if self.writer is not None:
                self.writer.discard()
                self.writer = None

    def _copy_one(self, digest: bytes, path: Path) -> None:
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return  # removed since the listing (a verify quarantined it): nothing to copy
        except OSError as err:
            raise disk_error(err, f"reading chunk {digest.hex()[:16]}") from err
        try:
            decode_chunk(digest, blob)  # never carry a damaged chunk into a pack
        except ChunkDamaged:
            self.result.damaged.append(digest.hex())
            return
        if self.writer is None:
            self.writer = PackWriter(self.store.tmp_dir, self.owner)
        self.writer.add(digest, blob[: HEADER.size], memoryview(blob)[HEADER.size :])
        self.result.chunks_copied += 1
        self.result.bytes_copied += len(blob)
        if self.writer.size >= self.store.pack_size:
            self._publish()

    def _publish(self) -> None:
        if self.writer is None or not self.writer.entries:
            return
        writer, self.writer = self.writer, None
        self.store.publish_pack(writer)
        self.result.packs_written += 1
        self.since_index += 1
        if self.since_index >= INDEX_EVERY:
            self.store.make_durable()
            self.since_index = 0
        self.meter.emit(force=True)


def run_migration(
    repo: Repository,
    pack_size: int = DEFAULT_PACK_SIZE,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    progress_interval: float = DEFAULT_INTERVAL,
    lock_timeout: float | None = 3600.0,
) -> MigrationResult:
    """Convert ``repo`` to format 2, or finish a conversion a killed run left (see the module)."""
    check_pack_size(pack_size)
    cancel = cancel or CancelToken()
    meter = Meter(progress, progress_interval)
    started = time.monotonic()
    result = MigrationResult(repo.name)

    def on_wait(message: str) -> None:
        if progress is not None:
            progress(Progress(phase="lock", message=message))

    if repo.version == 1:
        with repo.lock("shared", "migrate", "copying chunks into packs").acquire(lock_timeout, cancel, on_wait) as lock:
            files = _chunk_files(repo.root)
            store = _pack_store(repo, pack_size)
            store.refresh()
            meter.start_phase("migrate-copy", total=sum(s for _d, _p, s in files), message="copying chunks into packs")
            _Copier(store, lock.id, meter, result, cancel).copy(files)
        with repo.lock("exclusive", "migrate", "switching to format 2").acquire(lock_timeout, cancel, on_wait) as lock:
            if Repository.read_config(repo.root)["version"] == 1:
                files = _chunk_files(repo.root)
                store.refresh()
                late = [f for f in files if not store.has(f[0]) and f[0].hex() not in result.damaged]
                meter.start_phase("migrate-switch", total=sum(s for _d, _p, s in late), message="copying the last chunks")
                _Copier(store, lock.id, meter, result, cancel).copy(late)
                cancel.check()
                _check_complete(repo, store)
                meter.start_phase("migrate-switch", message="switching config.json to format 2")
                config = {**repo.config, "version": 2, "pack_size": pack_size}
                try:
                    publish_config(repo.root, config, replace=True)
                except OSError as err:
                    raise disk_error(err, "replacing config.json") from err
                result.switched = True
    # Format 2 already (a cleanup, or nothing to do): the repository as opened, with its key and
    # backend (an encrypted one, one in a bucket); reopened only after this run's switch.
    migrated = repo if repo.version >= 2 else Repository.open(repo.root, repo.name, compressor=repo.compressor)
    if migrated.version < 2:
        raise RepositoryError(f"repository {repo.root} is still format 1 after the migration")  # never expected
    with migrated.lock("shared", "migrate", "deleting format-1 chunk files").acquire(lock_timeout, cancel, on_wait):
        migrated.point_summaries()  # builds the point index from the manifests
        files = _chunk_files(repo.root)
        meter.start_phase("migrate-cleanup", total=sum(s for _d, _p, s in files), message="deleting the format-1 chunk files")
        _cleanup(migrated, files, meter, result)
    meter.emit(force=True)
    result.duration = time.monotonic() - started
    return result


def _check_complete(repo: Repository, store: PackStore) -> None:
    """Every chunk a readable point references and the chunk files hold is in a pack, or the
    switch would lose it."""
    chunks = ChunkStore(repo.root)
    points, _bad = repo.load_points()
    for point in points:
        for digest in point.chunk_ids():
            if not store.has(digest) and chunks.has(digest):
                try:
                    decode_chunk(digest, chunks.read_blob(digest))
                except (ChunkDamaged, ChunkMissing):
                    continue  # damaged in format 1 already: verify names it either way
                raise RepositoryError(
                    f"chunk {digest.hex()[:16]} of restore point {point.id} was not copied into a pack; "
                    "nothing was switched: run `hvtui repo migrate` again"
                )


def _cleanup(repo: Repository, files: list[tuple[bytes, Path, int]], meter: Meter, result: MigrationResult) -> None:
    store = repo.store
    assert isinstance(store, PackStore)
    chunks = ChunkStore(repo.root)
    touched: set[Path] = set()
    for digest, path, size in files:
        if not store.has(digest):
            # Damaged when the copy read it: quarantined as a verify would (kept as evidence);
            # verify names the points it breaks.
            with contextlib.suppress(RepositoryError):
                chunks.quarantine(digest)
            continue
        if len(path.name) != 2 * DIGEST_SIZE:
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise disk_error(err, f"deleting chunk file {path.name[:16]}") from err
        touched.add(path.parent)
        result.chunk_files_deleted += 1
        meter.add(done=size)
        meter.emit()
    for directory in sorted(touched):
        fsync_dir(directory)
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty (a .bad file keeps it)
    if touched:
        fsync_dir(repo.root / "chunks")
