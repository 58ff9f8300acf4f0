"""The chunk pipeline a backup runs its file plans through; keeps both cores busy.

::

    reader thread --(bounded queue of pooled 4 MiB buffers)--> N hash+lz4 workers
        --(bounded queue)--> writer thread (tmp names) --> publisher thread (fsync, rename into chunks/)

The reader skips holes without reading them (SEEK_DATA) and reads only the chunks the plan
names; workers drop all-zero chunks, hash (SHA-256), skip chunks the repository already has
and compress the rest; the writer stores them and the publisher makes them durable in
batches.  Memory is the buffer pool plus the bounded queues, whatever the disk size.

A source that lends its bytes (``read_view``, e.g. the SMB reader: each chunk is a view of the
answer it arrived in) is not copied into the pool's buffers; a pool buffer is still taken per
chunk in flight, so the same bound holds, and each lent view is released when its chunk is done.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

from hvtui.engine.chunking import HoleMap, chunk_span
from hvtui.engine.fsutil import data_extents, fadvise
from hvtui.engine.plan import FilePlan
from hvtui.engine.progress import Meter
from hvtui.engine.repository import Repository
from hvtui.engine.store import CODEC_RAW
from hvtui.errors import Cancelled, RepositoryError
from hvtui.events import CancelToken

_POLL = 0.05
BATCH_BYTES = 16 * 1024 * 1024
BATCH_SECONDS = 1.0  # a killed backup loses at most about this much work


class ChunkPipeline:
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
        self.compressor = repo.compressor
        self.owner = owner
        self.meter = meter
        self.cancel = cancel
        self.n_workers = workers
        n_buffers = buffers or workers * 2 + 2
        self.pool: queue.Queue[bytearray] = queue.Queue()
        for _ in range(n_buffers):
            self.pool.put(bytearray(self.chunk_size))
        # (file plan, chunk index, pool buffer, length, the chunk's bytes when lent by the source)
        self.work_q: queue.Queue[tuple[int, int, bytearray, int, memoryview | None] | None] = queue.Queue(maxsize=n_buffers)
        self.write_q: queue.Queue[tuple[bytes, int, int, Any, bytearray | None] | None] = queue.Queue(maxsize=4)
        self.publish_q: queue.Queue[Any] = queue.Queue(maxsize=2)
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
        self.sink: Any = None  # the store's sink, made by run() (v1 FileSink, v2 PackSink)

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
            lend = getattr(fh, "read_view", None) if fd is None else None
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
                lent = self._lent(fh, lend, plan, offset, length) if lend is not None else None
                if lent is None:
                    self._read_into(fh, fd, plan, buf, offset, length)
                with self.stats_lock:
                    self.read_bytes += length
                if not self._put(self.work_q, (plan_no, idx, buf, length, lent)):
                    if lent is not None:
                        lent.release()
                    return
            self._check_size(fd, plan)

    @staticmethod
    def _read_into(fh: Any, fd: int | None, plan: FilePlan, buf: bytearray, offset: int, length: int) -> None:
        """Fill ``buf[:length]`` with the source's bytes at ``offset``."""
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
                    raise _ended(plan, offset + got)
                got += n
        except OSError as err:
            raise _failed(plan, err) from err
        finally:
            view.release()

    @staticmethod
    def _lent(fh: Any, lend: Any, plan: FilePlan, offset: int, length: int) -> memoryview:
        """The source's bytes at ``offset``, lent by it (no copy); released by whoever finishes the chunk."""
        try:
            fh.seek(offset)
            data = memoryview(lend(length))
        except OSError as err:
            raise _failed(plan, err) from err
        if len(data) < length:
            got = len(data)
            data.release()
            raise _ended(plan, offset + got)
        return data

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
                plan_no, idx, buf, length, lent = item
                chunks = self.plans[plan_no].entry.chunks
                view = memoryview(buf)[:length] if lent is None else lent
                if lent is None:
                    is_zero = buf == zero if length == cs else buf[:length] == zero[:length]
                else:  # a view compares byte by byte: look at its start first, most chunks differ there
                    is_zero = view[:64] == zero[: min(64, length)] and view.tobytes() == zero[:length]
                if is_zero:
                    chunks[idx] = None
                    view.release()
                    self.pool.put(buf)
                    with self.stats_lock:
                        self.zero_bytes += length
                    self.meter.add(done=length)
                    continue
                digest = self.store.chunk_id(view)  # keyed in an encrypted repository
                chunks[idx] = digest
                with self.pending_lock:
                    known = digest in self.pending
                    self.pending.add(digest)
                if known or self.store.has(digest):
                    view.release()
                    self.pool.put(buf)
                    self.meter.add(done=length, data=length)
                    continue
                codec, packed = self.compressor.compress(view)
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
        """Write new chunks through the store's sink; hand them over in batches (v1: 16 MiB or
        1 s of chunk objects; v2: one pack of the target size)."""
        sink = self.sink
        try:
            while True:
                job = self._get(self.write_q)
                if job is None:
                    break
                digest, codec, length, payload, buf = job
                written = sink.add(digest, codec, length, payload)
                if buf is not None:
                    payload.release()
                    self.pool.put(buf)
                if not written:
                    continue
                with self.stats_lock:
                    self.new_chunks += 1
                self.meter.add(stored=written)
                batch = sink.take()
                if batch is not None and not self._put(self.publish_q, batch):
                    sink.discard(batch)
                    break
            if not self.stop.is_set():
                batch = sink.take(force=True)
                if batch is not None and not self._put(self.publish_q, batch):
                    sink.discard(batch)
                else:
                    self._put(self.publish_q, None)
        except BaseException as err:  # noqa: BLE001
            self._fail(err)
        finally:
            sink.close()  # never handed over: never left looking good

    def _publisher(self) -> None:
        """Make each batch durable, then give it its final name(s).

        A thread of its own so that waiting for the disk overlaps hashing and compressing.
        """
        try:
            while True:
                batch = self._get(self.publish_q)
                if batch is None:
                    return
                self.sink.publish(batch)
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
            if leftover is not None:
                self.sink.discard(leftover)

    # -- driver ---------------------------------------------------------------------------------
    def run(self, plans: list[FilePlan]) -> None:
        self.plans = plans
        self.sink = self.store.sink(self.owner, self.fsync_each, self.batch_bytes, self.batch_seconds)
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


def _ended(plan: FilePlan, at: int) -> RepositoryError:
    return RepositoryError(
        f"{plan.entry.path} on the source ended at {at} bytes, expected {plan.entry.size}: it changed during the backup"
    )


def _failed(plan: FilePlan, err: OSError) -> RepositoryError:
    return RepositoryError(f"reading {plan.entry.path} from the source failed: {err.strerror or err}")
