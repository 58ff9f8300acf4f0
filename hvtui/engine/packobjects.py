"""Where a format-2 repository's pack files live: the storage seam of ``PackStore``.

``LocalPacks`` keeps today's files (``packs/<2 hex>/<64 hex>``, renamed into place, directories
fsynced).  ``BackendPacks`` keeps the same names as objects of a ``Backend`` (an S3 bucket): a
finished pack is uploaded whole from its temporary file (multipart by the backend), chunks are
read with ranged GETs, a trailer with two small ranged reads.  Both raise ``FileNotFoundError``
for a pack that does not exist, so callers treat a lost pack alike; a storage failure is the
backend's ``BackendError`` (a clear ``RepositoryError``), never mistaken for damage.

A backup hands its finished packs over with ``publish_background``: ``BackendPacks`` uploads
several at once (``PackUploads``) while the backup goes on; the packs waiting are their local
temporary files, bounded in bytes, so memory stays flat whatever the disk size.
``make_durable`` (before any index or manifest names them) waits until every one is stored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hvtui.engine.backends.base import Backend, ObjectMissing
from hvtui.engine.crypto import RepositoryCipher
from hvtui.engine.packfile import BlobEntry, PackWriter, is_pack_id, parse_trailer, read_trailer
from hvtui.files import atomic_write, fsync_dir

log = logging.getLogger(__name__)


def is_index_name(name: str) -> bool:
    return name.endswith(".json") and is_pack_id(name[:-5])


def pack_key(pack_id: str) -> str:
    return f"packs/{pack_id[:2]}/{pack_id}"


# Uploads at once, and bytes of finished packs (local files) allowed to wait for one: with
# 32 MiB packs, 3 uploading and about one more ready. Each upload holds at most boto3's
# multipart concurrency x part size in memory (backends/s3.py), so memory is bounded by these
# figures, never by the disk's size.
UPLOAD_WORKERS = 3
UPLOAD_BACKLOG = 128 * 1024 * 1024
# A chunk read near where the previous read of the same pack ended (a restore or a verify walking
# through a pack; its workers and the backup's reorder chunks a little) also fetches this much
# beyond it; a few such spans are kept. Scattered reads (an incremental's chunks in many packs,
# a quick check's 16-byte headers) fetch only what they asked for.
READ_AHEAD = 8 * 1024 * 1024
READ_AHEAD_SPANS = 4


class PackObjects(ABC):
    """The pack files of one repository, by pack id."""

    # The storage refuses a pack whose bytes differ from those sent (an S3 PUT's Content-MD5):
    # a copy need not read its packs back to know they arrived intact.
    verifies_puts = False

    @abstractmethod
    def ids(self) -> set[str]:
        """Every pack present."""

    @abstractmethod
    def read(self, pack_id: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer when the pack ends first)."""

    @abstractmethod
    def trailer(self, pack_id: str, cipher: RepositoryCipher | None) -> list[BlobEntry]:
        """The blobs the pack lists; ``PackDamaged`` when its trailer cannot be trusted."""

    @abstractmethod
    def size(self, pack_id: str) -> int | None:
        """The pack's size, or None when it does not exist."""

    @abstractmethod
    def publish(self, writer: PackWriter, fsync: bool = True) -> int:
        """Give a finished pack its final name; its size."""

    def publish_background(self, writer: PackWriter, done: Callable[[int], None]) -> None:
        """Publish a finished pack, perhaps later; ``done(size)`` once it is stored. A failure is
        raised by a later ``publish_background`` or by ``make_durable``. Here: at once."""
        done(self.publish(writer))

    def settle(self) -> None:  # noqa: B027 - nothing runs in the background here
        """Wait for background publications an earlier operation left (one that failed before
        its ``make_durable``); their failure was that operation's and is not raised."""

    @abstractmethod
    def make_durable(self) -> None:
        """Make every pack published since the last call survive a crash (background
        publications included: it waits for them, and raises the first that failed)."""

    @abstractmethod
    def delete(self, pack_ids: list[str]) -> int:
        """Remove packs (no error for one already gone); the bytes freed."""

    # Index files (``index/<64 hex>.json``): written once under a random name, never changed.
    @abstractmethod
    def index_names(self) -> list[str]:
        """Every index file's name, sorted."""

    @abstractmethod
    def read_index(self, name: str) -> bytes:
        """An index file's bytes; ``FileNotFoundError`` when it is gone."""

    @abstractmethod
    def write_index(self, name: str, data: bytes) -> None:
        """Create an index file, durably."""

    @abstractmethod
    def delete_indexes(self, names: list[str]) -> None:
        """Remove index files (no error for one already gone), durably."""


class LocalPacks(PackObjects):
    """Pack files under ``<root>/packs``."""

    def __init__(self, root: Path) -> None:
        self.packs_dir = root / "packs"
        self.index_dir = root / "index"
        self.tmp_dir = root / "tmp"
        self._touched: set[str] = set()
        self._touched_lock = threading.Lock()

    def path(self, pack_id: str) -> Path:
        return self.packs_dir / pack_id[:2] / pack_id

    def ids(self) -> set[str]:
        found: set[str] = set()
        with contextlib.suppress(OSError):
            for sub in os.listdir(self.packs_dir):
                subdir = self.packs_dir / sub
                if len(sub) != 2 or subdir.is_symlink() or not subdir.is_dir():
                    continue
                found.update(n for n in os.listdir(subdir) if is_pack_id(n) and n.startswith(sub))
        return found

    def read(self, pack_id: str, offset: int, length: int) -> bytes:
        with open(self.path(pack_id), "rb", buffering=0) as fh:
            return os.pread(fh.fileno(), length, offset)

    def trailer(self, pack_id: str, cipher: RepositoryCipher | None) -> list[BlobEntry]:
        return read_trailer(self.path(pack_id), pack_id, cipher)

    def size(self, pack_id: str) -> int | None:
        try:
            return os.stat(self.path(pack_id)).st_size
        except OSError:
            return None

    def publish(self, writer: PackWriter, fsync: bool = True) -> int:
        size = writer.finish(self.path(writer.pack_id), fsync)
        with self._touched_lock:
            self._touched.add(writer.pack_id[:2])
        return size

    def make_durable(self) -> None:
        with self._touched_lock:
            touched = sorted(self._touched)
            self._touched.clear()
        for prefix in touched:
            fsync_dir(self.packs_dir / prefix)
        if touched:
            fsync_dir(self.packs_dir)

    def delete(self, pack_ids: list[str]) -> int:
        freed = 0
        for pack_id in pack_ids:
            path = self.path(pack_id)
            with contextlib.suppress(FileNotFoundError):
                freed += os.stat(path).st_size
                os.unlink(path)
        for prefix in sorted({pid[:2] for pid in pack_ids}):
            fsync_dir(self.packs_dir / prefix)
        return freed

    def index_names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.index_dir) if is_index_name(n))
        except OSError:
            return []

    def read_index(self, name: str) -> bytes:
        return (self.index_dir / name).read_bytes()

    def write_index(self, name: str, data: bytes) -> None:
        self.index_dir.mkdir(mode=0o700, exist_ok=True)
        atomic_write(self.index_dir / name, data, tmp_dir=self.tmp_dir)
        fsync_dir(self.index_dir)

    def delete_indexes(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.index_dir / name)
        fsync_dir(self.index_dir)


class PackUploads:
    """Finished packs stored by a small pool of threads, ``workers`` at a time.

    ``submit`` blocks while the packs not yet stored would exceed ``max_waiting`` bytes (one
    pack is always admitted), so a fast backup waits for a slow store instead of piling up
    files. The first failure stops the uploads still queued and is raised, once, by the next
    ``submit`` or ``wait``; a pack is only reported ``done`` once it is stored."""

    def __init__(self, store: Callable[[PackWriter], None], workers: int, max_waiting: int) -> None:
        self.store = store
        self.workers = workers
        self.max_waiting = max_waiting
        self.waiting = 0  # packs submitted and not yet stored or failed
        self.waiting_bytes = 0
        self._failure: BaseException | None = None
        self._cond = threading.Condition()
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, writer: PackWriter, size: int, done: Callable[[int], None]) -> None:
        with self._cond:
            try:
                self._raise_failure()
                while self.waiting and self.waiting_bytes + size > self.max_waiting:
                    self._cond.wait()
                    self._raise_failure()
            except BaseException:
                writer.discard()
                raise
            self.waiting += 1
            self.waiting_bytes += size
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="hvtui-pack-upload")
            self._pool.submit(self._run, writer, size, done)

    def _run(self, writer: PackWriter, size: int, done: Callable[[int], None]) -> None:
        try:
            if self._failure is None:  # after a failure the backup is failing: store nothing more
                self.store(writer)
                done(size)
        except BaseException as err:  # noqa: BLE001 - handed to the backup's thread
            with self._cond:
                if self._failure is None:
                    self._failure = err
        finally:
            writer.discard()
            with self._cond:
                self.waiting -= 1
                self.waiting_bytes -= size
                self._cond.notify_all()

    def wait(self) -> None:
        """Until every pack submitted is stored or failed; raises the first failure."""
        self._idle()
        with self._cond:
            self._raise_failure()

    def _idle(self) -> None:
        """Wait until nothing is uploading, then end the threads: a console process opens
        repositories for years and must not keep three idle threads per opening."""
        with self._cond:
            while self.waiting:
                self._cond.wait()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def settle(self) -> None:
        """Until every pack submitted is stored or failed; a failure is dropped (logged)."""
        self._idle()
        with self._cond:
            failure, self._failure = self._failure, None
        if failure is not None:
            log.info("a pack upload of an earlier operation had failed: %s", failure)

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure


class BackendPacks(PackObjects):
    """Pack objects ``packs/<2 hex>/<64 hex>`` in a ``Backend``; temporary files stay local."""

    def __init__(self, backend: Backend, workers: int | None = None, backlog: int | None = None) -> None:
        self.backend = backend
        self.verifies_puts = backend.verifies_puts
        self.uploads = PackUploads(self._upload, workers or UPLOAD_WORKERS, backlog or UPLOAD_BACKLOG)
        self._spans: OrderedDict[tuple[str, int], bytes] = OrderedDict()  # (pack, start) -> bytes; newest last
        self._read_ends: dict[str, int] = {}  # pack -> where its last read ended
        self._fetching: dict[tuple[str, int], tuple[int, threading.Event]] = {}  # spans on their way
        self._spans_lock = threading.Lock()

    def ids(self) -> set[str]:
        found: set[str] = set()
        for info in self.backend.list("packs/"):
            parts = info.key.split("/")
            if len(parts) == 3 and is_pack_id(parts[2]) and parts[2].startswith(parts[1]) and len(parts[1]) == 2:
                found.add(parts[2])
        return found

    def read(self, pack_id: str, offset: int, length: int) -> bytes:
        while True:
            with self._spans_lock:
                for (pid, start), span in reversed(self._spans.items()):
                    if pid == pack_id and start <= offset and offset + length <= start + len(span):
                        self._read_ends[pack_id] = offset + length
                        return span[offset - start : offset - start + length]
                coming = next(
                    (ev for (pid, start), (end, ev) in self._fetching.items()
                     if pid == pack_id and start <= offset and offset + length <= end),
                    None,
                )  # fmt: skip
                if coming is None:
                    last_end = self._read_ends.get(pack_id)
                    walking = last_end is not None and abs(offset - last_end) <= READ_AHEAD and length >= 4096
                    self._read_ends[pack_id] = offset + length
                    if len(self._read_ends) > 64:
                        self._read_ends.pop(next(iter(self._read_ends)))
                    fetch = length + READ_AHEAD if walking and length < READ_AHEAD else length
                    done = threading.Event()
                    if fetch != length:  # another thread wanting a piece of it waits for it
                        self._fetching[(pack_id, offset)] = (offset + fetch, done)
                    break
            coming.wait()  # then from the cache (or, had it failed or been evicted, fetched here)
        try:
            data = self.backend.get(pack_key(pack_id), offset, fetch)
        except ObjectMissing:
            raise FileNotFoundError(pack_key(pack_id)) from None
        else:
            if fetch != length:
                with self._spans_lock:
                    self._spans[(pack_id, offset)] = data
                    while len(self._spans) > READ_AHEAD_SPANS:
                        self._spans.popitem(last=False)
        finally:
            if fetch != length:
                with self._spans_lock:
                    self._fetching.pop((pack_id, offset), None)
                done.set()
        return data[:length]

    def trailer(self, pack_id: str, cipher: RepositoryCipher | None) -> list[BlobEntry]:
        info = self.backend.stat(pack_key(pack_id))
        if info is None:
            raise FileNotFoundError(pack_key(pack_id))
        return parse_trailer(lambda offset, length: self.read(pack_id, offset, length), info.size, pack_id, cipher)

    def size(self, pack_id: str) -> int | None:
        info = self.backend.stat(pack_key(pack_id))
        return None if info is None else info.size

    def publish(self, writer: PackWriter, fsync: bool = True) -> int:
        # The upload is the commit point: an object exists whole or not at all; no local fsync
        # is needed for a file that is deleted once uploaded.
        size = writer.complete(fsync=False)
        try:
            self._upload(writer)
        finally:
            writer.discard()
        return size

    def publish_background(self, writer: PackWriter, done: Callable[[int], None]) -> None:
        self.uploads.submit(writer, writer.complete(fsync=False), done)

    def _upload(self, writer: PackWriter) -> None:
        assert writer.tmp is not None
        with open(writer.tmp, "rb") as data:
            self.backend.put(pack_key(writer.pack_id), data)

    def make_durable(self) -> None:
        """Wait for the uploads: an object store acknowledges a put once it is durable."""
        self.uploads.wait()

    def settle(self) -> None:
        self.uploads.settle()

    def delete(self, pack_ids: list[str]) -> int:
        with self._spans_lock:
            self._spans.clear()
        freed = 0
        for pack_id in pack_ids:
            info = self.backend.stat(pack_key(pack_id))
            if info is not None:
                self.backend.delete(pack_key(pack_id))
                freed += info.size
        return freed

    def index_names(self) -> list[str]:
        names = (info.key.split("/", 1)[1] for info in self.backend.list("index/") if info.key.count("/") == 1)
        return sorted(n for n in names if is_index_name(n))

    def read_index(self, name: str) -> bytes:
        try:
            return self.backend.get(f"index/{name}")
        except ObjectMissing:
            raise FileNotFoundError(f"index/{name}") from None

    def write_index(self, name: str, data: bytes) -> None:
        self.backend.put_if_absent(f"index/{name}", data)  # a random name: an existing one is a bug, not a race

    def delete_indexes(self, names: list[str]) -> None:
        for name in names:
            self.backend.delete(f"index/{name}")
