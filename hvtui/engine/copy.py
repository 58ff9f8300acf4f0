"""``hvtui copy``: restore points copied from one repository into another (a backup copy job).

Works at the Repository level, so any two repositories (format 1 or 2, plain or encrypted)
pair up:

- the target gets the points it lacks (by point id), chunk by chunk: a chunk the target
  already holds is not sent again, so a copy killed halfway resumes where it stopped (the
  chunks that arrived are published objects or packs; a pack whose index was not written yet
  is found from its trailer);
- every chunk is checked against its id when read from the source, and on arrival before any
  manifest: an object store checks what it receives (it refuses a PUT whose body does not match
  its Content-MD5: backends/s3.py); into a storage that checks nothing (a local folder), or with
  ``read_back``, every chunk sent is read back from the target and checked (twice the storage's
  work);
- the manifest is written last, so a point exists in the target only once all its chunks do;
- chunk ids are computed per repository (SHA-256, or HMAC-SHA256 under an encrypted
  repository's id key): when the two schemes differ, each chunk gets the target's id and the
  copied manifest names those ids; an encrypted target seals the chunk under its own key.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hvtui.config import Retention
from hvtui.engine.locks import VMLock, vm_label
from hvtui.engine.manifest import Manifest
from hvtui.engine.packstore import PackStore
from hvtui.engine.progress import DEFAULT_INTERVAL, Meter
from hvtui.engine.prune import plan_retention
from hvtui.engine.repository import Repository
from hvtui.engine.store import HEADER, ChunkDamaged, ChunkMissing, decode_chunk
from hvtui.errors import RepositoryError
from hvtui.events import CancelToken, Progress, ProgressCallback

BATCH_BYTES = 16 * 1024 * 1024  # chunk files published (and read back) per batch in a format-1 target
BATCH_SECONDS = 1.0
# Threads doing the per-chunk work of a copy, and the chunk bytes in flight ahead of the one being
# written (at least 2 chunks): memory holds that much (each chunk opened and sealed: about twice
# its size), whatever the points' size; 8 chunks of the default 1 MiB.
COPY_WORKERS = 3
COPY_AHEAD_BYTES = 8 * 1024 * 1024


def copy_ahead(chunk_size: int) -> int:
    """How many chunks a copy works on ahead of the one it writes."""
    return max(2, COPY_AHEAD_BYTES // chunk_size)
_ID_PROBE = b"hvtui chunk id scheme probe"

# How a copy made sure what it sent arrived intact (CopyResult.arrival_check):
ARRIVAL_READ_BACK = "read-back"  # every chunk sent read back from the target and checked
ARRIVAL_STORE = "store-content-md5"  # the object store refused any PUT whose body did not match its Content-MD5
ARRIVAL_CHECKS = {
    ARRIVAL_READ_BACK: "every chunk read back from the target and checked",
    ARRIVAL_STORE: "the storage checked each upload's Content-MD5",
}


def arrival_check(target: Repository, read_back: bool) -> str:
    """The check a copy into ``target`` makes of what arrives (see ARRIVAL_CHECKS): the storage's
    own when it checks every put and no read-back was asked for, else a read-back (a local
    folder checks nothing, so a copy into one always reads back what it wrote)."""
    store = target.store
    if not read_back and isinstance(store, PackStore) and store.packs.verifies_puts:
        return ARRIVAL_STORE
    return ARRIVAL_READ_BACK


@dataclass(slots=True)
class CopyResult:
    source: str
    target: str
    copied: list[str] = field(default_factory=list)  # point ids written into the target
    present: list[str] = field(default_factory=list)  # already in the target: not copied
    skipped: list[str] = field(default_factory=list)  # the target's retention would drop them at once
    chunks_sent: int = 0
    bytes_sent: int = 0  # stored bytes written into the target
    chunks_present: int = 0  # already in the target (an earlier copy, a shared chunk)
    reids: bool = False  # the two repositories compute chunk ids differently
    arrival_check: str = ""  # set by copy_points: how what was sent was checked on arrival: ARRIVAL_CHECKS
    removed_by_retention: list[str] = field(default_factory=list)
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "copied": self.copied,
            "present": self.present,
            "skipped": self.skipped,
            "chunks_sent": self.chunks_sent,
            "bytes_sent": self.bytes_sent,
            "chunks_present": self.chunks_present,
            "reids_chunks": self.reids,
            "arrival_check": self.arrival_check,
            "removed_by_retention": self.removed_by_retention,
            "duration": round(self.duration, 3),
        }


PointFilter = Callable[[Manifest], bool]


def plan_copy(
    source: Repository, target: Repository, wanted: PointFilter, retention: Retention | None = None
) -> tuple[list[Manifest], list[str], list[str]]:
    """(points to copy oldest first, ids the target holds already, ids its retention would drop
    at once): only points ``wanted`` says yes to."""
    check_pair(source, target)
    points, _bad = source.load_points()
    points = [p for p in points if wanted(p)]
    have = set(target.point_ids())
    present = [p.id for p in points if p.id in have]
    missing = [p for p in points if p.id not in have]
    skipped: list[str] = []
    if retention is not None and missing:
        theirs, _bad = target.load_points()
        ids = {p.id for p in missing}
        kept = {d.point for d in plan_retention(theirs + missing, retention) if d.keep}
        skipped = [i for i in sorted(ids) if i not in kept]
        missing = [p for p in missing if p.id in kept]
    return missing, present, skipped


def check_pair(source: Repository, target: Repository) -> None:
    if source.root.resolve() == target.root.resolve():
        raise RepositoryError(f"repositories {source.name} and {target.name} are the same folder ({source.root})")
    if source.chunk_size != target.chunk_size:
        raise RepositoryError(
            f"cannot copy from {source.name} to {target.name}: their chunk sizes differ "
            f"({source.chunk_size // 1024} KiB and {target.chunk_size // 1024} KiB); a copy keeps the chunks as they are"
        )


def same_id_scheme(source: Repository, target: Repository) -> bool:
    return source.store.chunk_id(_ID_PROBE) == target.store.chunk_id(_ID_PROBE)


def _plain_blob(repo: Repository, digest: bytes) -> bytes:
    """The chunk object (header and payload) as a format-1 file holds it: opened when encrypted."""
    store = repo.store
    if isinstance(store, PackStore):
        blob, pack_id = store.read_blob(digest)
        if store.cipher is None:
            return blob
        try:
            return store.cipher.open(blob, digest)
        except ValueError as err:  # NotAuthentic
            raise ChunkDamaged(digest, f"{err} (pack {pack_id[:16]})") from None
    return store.read_blob(digest)


@dataclass(slots=True)
class _Transformed:
    """A chunk made ready for the target on a worker thread."""

    new_id: bytes  # its id in the target
    plain: bytes | None  # header and payload as a format-1 file holds them; None: the target has it
    sealed: bytes | bytearray | None  # sealed under the target's key for ``new_id`` (an encrypted target)


def _check_span(store: PackStore, span: list[tuple[str, int, int, bytes]]) -> int:
    """On a worker thread: one span of what a copy sent, read back and checked; its chunks."""
    return sum(1 for _ in store.read_span(span, verify=True if store.cipher is None else None))


class _PointCopier:
    """Copies points chunk by chunk: the per-chunk work (read, open, decompress and hash to
    check it, the target's id, seal) runs on ``COPY_WORKERS`` threads, at most ``copy_ahead``
    chunks ahead of the one being written; chunks go into the target's packs in the
    manifest's order, from this (the copy's) thread."""

    def __init__(
        self,
        source: Repository,
        target: Repository,
        owner: str,
        meter: Meter,
        cancel: CancelToken,
        result: CopyResult,
        workers: ThreadPoolExecutor,
        read_back: bool = False,
    ) -> None:
        self.source = source
        self.read_back = read_back
        self.target = target
        self.meter = meter
        self.cancel = cancel
        self.result = result
        self.workers = workers
        self.same_ids = same_id_scheme(source, target)
        self.ids: dict[bytes, bytes] = {}  # source id -> target id, for the chunks seen in this run
        self.sink: Any = target.store.sink(owner, True, BATCH_BYTES, BATCH_SECONDS)
        self.pending: list[bytes] = []  # target ids added to the sink since its last hand-over

    def copy(self, manifest: Manifest) -> Manifest:
        """Send the chunks of ``manifest`` the target lacks; the manifest as the target names them."""
        ahead: deque[tuple[bytes, Future[_Transformed] | None]] = deque()
        window = copy_ahead(manifest.chunk_size)
        on_the_way: set[bytes] = set()  # source ids submitted and not yet written
        try:
            for entry in manifest.files:
                for digest in entry.chunks:
                    if digest is None:
                        continue
                    self.cancel.check()
                    ahead.append((digest, self._submit(manifest, digest, on_the_way)))
                    if len(ahead) >= window:
                        self._finish(manifest, *ahead.popleft(), on_the_way)
            while ahead:
                self.cancel.check()
                self._finish(manifest, *ahead.popleft(), on_the_way)
            batch = self.sink.take(force=True)
            if batch is not None:
                self._publish(batch)
            self._verify_arrived()
        finally:
            for _digest, future in ahead:  # a failure: chunks not written yet are dropped, not waited for
                if future is not None:
                    future.cancel()
            self.sink.close()  # a chunk never handed over is never left looking good
        if self.same_ids:
            return manifest
        files = [dataclasses.replace(f, chunks=[None if c is None else self.ids[c] for c in f.chunks]) for f in manifest.files]
        return dataclasses.replace(manifest, files=files)

    def _submit(self, manifest: Manifest, digest: bytes, on_the_way: set[bytes]) -> Future[_Transformed] | None:
        """Start the work on a chunk; None when there is none (seen already, or in the target)."""
        if digest in self.ids or digest in on_the_way:
            return None
        if self.same_ids and self.target.store.has(digest):
            self.ids[digest] = digest
            self.result.chunks_present += 1
            return None
        on_the_way.add(digest)
        return self.workers.submit(self._transform, manifest, digest)

    def _transform(self, manifest: Manifest, digest: bytes) -> _Transformed:
        """On a worker thread: the chunk read and checked, with its target id, sealed if need be."""
        try:
            plain = _plain_blob(self.source, digest)
            data = decode_chunk(digest, plain, True, self.source.store.chunk_id)
        except (ChunkDamaged, ChunkMissing) as err:
            raise RepositoryError(
                f"restore point {manifest.id} cannot be copied: {err} in repository {self.source.name} "
                f"(run `hvtui verify --repository {self.source.name}`)"
            ) from None
        store = self.target.store
        new_id = digest if self.same_ids else store.chunk_id(data)
        if store.has(new_id):
            return _Transformed(new_id, None, None)
        # The opened object is header and payload as the target writes them: sealed whole.
        sealed = store.cipher.seal(plain, new_id) if isinstance(store, PackStore) and store.cipher is not None else None
        return _Transformed(new_id, plain, sealed)

    def _finish(self, manifest: Manifest, digest: bytes, future: Future[_Transformed] | None, on_the_way: set[bytes]) -> None:
        """Write one chunk (in the manifest's order) into the target's sink, then hand over a full pack."""
        if future is not None:
            done = future.result()  # a worker's failure fails the copy here, before any manifest
            on_the_way.discard(digest)
            self.ids[digest] = done.new_id
            if done.plain is None:
                self.result.chunks_present += 1
            else:
                _magic, codec, raw_len, _pay_len = HEADER.unpack_from(done.plain)
                if done.sealed is not None:
                    written = self.sink.add_sealed(done.new_id, done.sealed)
                else:
                    written = self.sink.add(done.new_id, codec, raw_len, memoryview(done.plain)[HEADER.size :])
                self.pending.append(done.new_id)
                self.result.chunks_sent += 1
                self.result.bytes_sent += written
                self.meter.add(new=raw_len, stored=written)
        self.meter.add(done=manifest.chunk_size)
        self.meter.emit()
        batch = self.sink.take()
        if batch is not None:
            self._publish(batch)

    def _publish(self, batch: Any) -> None:
        self.sink.publish(batch)  # to an object store: uploading while the next pack fills
        self.meter.emit(force=True)

    def _verify_arrived(self) -> None:
        """Once every pack handed over is stored (an upload the storage refused fails here), with
        ``read_back``: read back what was sent; both before any manifest."""
        self.target.store.make_durable()
        arrived, self.pending = self.pending, []
        if not self.read_back:
            return
        store = self.target.store
        try:
            if isinstance(store, PackStore):
                # A pack's chunks in a few ranged reads, not one each, COPY_WORKERS at once (at
                # most that many spans in memory). Sealed blobs that authenticate under their id
                # are exactly what was sent: no hash to redo.
                checking: deque[Future[int]] = deque()
                for span in store.spans(arrived):
                    if len(checking) >= COPY_WORKERS:
                        checking.popleft().result()
                    checking.append(self.workers.submit(_check_span, store, span))
                while checking:
                    checking.popleft().result()
            else:
                for new_id in arrived:
                    store.get(new_id)
        except (ChunkDamaged, ChunkMissing) as err:
            raise RepositoryError(f"a copied chunk arrived damaged in repository {self.target.name}: {err}") from None


def copy_points(
    source: Repository,
    target: Repository,
    points: list[Manifest],
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    progress_interval: float = DEFAULT_INTERVAL,
    lock_timeout: float | None = 3600.0,
    read_back: bool = False,
) -> CopyResult:
    """Copy ``points`` (from ``plan_copy``) from ``source`` into ``target``, manifests last;
    ``read_back``: every chunk sent is read back from the target and checked first even when the
    target's storage checks what it receives (``arrival_check``)."""
    check_pair(source, target)
    cancel = cancel or CancelToken()
    meter = Meter(progress, progress_interval)
    started = time.monotonic()
    check = arrival_check(target, read_back)
    read_back = check == ARRIVAL_READ_BACK
    result = CopyResult(source.name, target.name, reids=not same_id_scheme(source, target), arrival_check=check)

    def on_wait(message: str) -> None:
        if progress is not None:
            progress(Progress(phase="lock", message=message))

    total = sum(f.data_chunks * p.chunk_size for p in points for f in p.files)
    reading = source.lock("shared", "copy", f"copy to {target.name}", reading=True)
    writing = target.lock("shared", "copy", f"copy from {source.name}")
    with reading.acquire(lock_timeout, cancel, on_wait), writing.acquire(lock_timeout, cancel, on_wait) as lock:
        meter.start_phase("copy", total=total, message=f"copying {len(points)} restore point(s) to {target.name}")
        with ThreadPoolExecutor(COPY_WORKERS, thread_name_prefix="hvtui-copy") as workers:
            copier = _PointCopier(source, target, lock.id, meter, cancel, result, workers, read_back)
            try:
                for manifest in points:
                    meter.current = manifest.id
                    with VMLock(target.root, manifest.host, manifest.vm_id, manifest.vm_name).acquire():
                        if target.manifests.stamp(manifest.id) is not None:
                            result.present.append(manifest.id)  # another copy wrote it meanwhile
                            meter.add(done=sum(f.data_chunks for f in manifest.files) * manifest.chunk_size)
                            continue
                        copied = copier.copy(manifest)
                        cancel.check()
                        target.commit_point(copied)
                    result.copied.append(manifest.id)
                    label = vm_label(manifest.host, manifest.vm_id, manifest.vm_name)
                    meter.emit(force=True, message=f"restore point {manifest.id} copied ({label})")
            except BaseException:
                workers.shutdown(wait=True, cancel_futures=True)  # no worker outlives a failed copy
                raise
    meter.start_phase("done", message=f"{len(result.copied)} restore point(s) copied to {target.name}")
    result.duration = time.monotonic() - started
    return result
