"""Content-addressed chunk store: one object per chunk under ``chunks/<2 hex>/<64 hex>``.

A chunk object is a 16-byte header followed by the payload::

    0  magic   b"HVC1"
    4  codec   u8   0 = raw, 1 = lz4 block, 2 = zstd frame (compression.py)
    5  reserved     3 zero bytes
    8  raw_len u32 LE  length of the chunk's data
    12 pay_len u32 LE  length of the payload that follows

The object's name is the SHA-256 of the uncompressed data, so every read can be verified.
Objects are written to ``tmp/`` first, fsynced, then renamed into place: an object that
exists under its final name is complete (see docs/repository-format.md).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from hvtui.engine.compression import CODEC_LZ4, CODEC_RAW, LZ4, CorruptPayload, decompress  # noqa: F401 - CODEC_LZ4 re-exported
from hvtui.errors import RepositoryError
from hvtui.files import fsync_dir, write_all

MAGIC = b"HVC1"
HEADER = struct.Struct("<4sB3xII")
HASH_NAME = "sha256"
DIGEST_SIZE = 32
# A chunk object a full verify found damaged is renamed <64 hex>.bad (never deleted: it is
# the evidence); with its final name gone, the next backup that reads the data stores it again.
QUARANTINE_SUFFIX = ".bad"


def chunk_id(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def compress_chunk(data: bytes | bytearray | memoryview) -> tuple[int, bytes | None]:
    """lz4 with the raw fallback (a repository's own choice is ``Repository.compressor``)."""
    return LZ4.compress(data)


class ChunkDamaged(Exception):
    """A chunk object exists but cannot be trusted; ``reason`` says why."""

    def __init__(self, digest: bytes, reason: str) -> None:
        self.digest = digest
        self.reason = reason
        super().__init__(f"chunk {digest.hex()[:16]}: {reason}")


class ChunkMissing(Exception):
    def __init__(self, digest: bytes) -> None:
        self.digest = digest
        super().__init__(f"chunk {digest.hex()[:16]} is missing")


class ChunkQuarantined(ChunkMissing):
    """The chunk is gone from its name because a verify found it damaged and renamed it ``.bad``."""

    def __init__(self, digest: bytes, bad_path: Path) -> None:
        super().__init__(digest)
        self.bad_path = bad_path
        self.args = (f"chunk {digest.hex()[:16]} was quarantined by verify (its data was damaged): {bad_path.name}",)


def decode_chunk(
    digest: bytes, blob: bytes, verify: bool = True, id_of: Callable[[bytes], bytes] = chunk_id
) -> bytes:
    """Header check, decompression and (by default) hash check of one chunk object
    (``id_of``: how the repository computes chunk ids; keyed when it is encrypted)."""
    if len(blob) < HEADER.size:
        raise ChunkDamaged(digest, f"truncated ({len(blob)} bytes, shorter than its header)")
    magic, codec, raw_len, pay_len = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise ChunkDamaged(digest, "bad header (not a chunk object)")
    if len(blob) != HEADER.size + pay_len:
        raise ChunkDamaged(digest, f"truncated ({len(blob) - HEADER.size} of {pay_len} payload bytes)")
    payload = memoryview(blob)[HEADER.size :]
    if codec == CODEC_RAW:
        data = bytes(payload) if pay_len == raw_len else None
        if data is None:
            raise ChunkDamaged(digest, "raw chunk with inconsistent lengths")
    else:
        try:
            data = decompress(codec, payload, raw_len)
        except CorruptPayload as err:
            raise ChunkDamaged(digest, str(err)) from None
        except KeyError:
            raise ChunkDamaged(digest, f"unknown codec {codec}") from None
        if len(data) != raw_len:
            raise ChunkDamaged(digest, "decompressed to the wrong length")
    if verify and id_of(data) != digest:
        raise ChunkDamaged(digest, "content does not match its hash (corrupt)")
    return data


def disk_error(err: OSError, what: str) -> RepositoryError:
    if err.errno == errno.ENOSPC:
        return RepositoryError(f"the repository's disk is full ({what})")
    if err.errno == errno.EDQUOT:
        return RepositoryError(f"disk quota exceeded on the repository ({what})")
    if err.errno in (errno.EACCES, errno.EPERM):
        return RepositoryError(f"permission denied: {what} ({err.strerror})")
    return RepositoryError(f"{what}: {err.strerror or err}")


class ChunkStore:
    """The ``chunks/`` and ``tmp/`` parts of a repository directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.chunks_dir = root / "chunks"
        self.tmp_dir = root / "tmp"
        self._dirs_made: set[str] = set()
        self._dirs_lock = threading.Lock()

    # -- names -------------------------------------------------------------------

    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes:
        """The id of a chunk in this store: SHA-256 of its data (format 1 is never encrypted)."""
        return chunk_id(data)

    def path(self, digest: bytes) -> Path:
        hexd = digest.hex()
        return self.chunks_dir / hexd[:2] / hexd

    def has(self, digest: bytes) -> bool:
        return os.path.exists(self.path(digest))

    def quarantine_path(self, digest: bytes) -> Path:
        """Where ``quarantine`` puts a damaged object (the first time; later ones get a number)."""
        final = self.path(digest)
        return final.with_name(final.name + QUARANTINE_SUFFIX)

    def quarantined(self, digest: bytes) -> Path | None:
        """The ``.bad`` file of a chunk a verify quarantined, or None."""
        bad = self.quarantine_path(digest)
        return bad if os.path.exists(bad) else None

    def quarantine(self, digest: bytes, inode: int | None = None) -> Path | None:
        """Rename a damaged chunk object to ``<name>.bad``; its new path, or None if it is gone.

        ``inode`` is the object that was found damaged: if the name now holds another file
        (re-stored meanwhile), it is left alone.  A name already taken by an earlier
        quarantine gets a number (``<name>.2.bad``): nothing is ever overwritten.
        """
        if len(digest) != DIGEST_SIZE:  # never anything but a chunk object's own name
            return None
        final = self.path(digest)
        try:
            st = os.lstat(final)
            if not stat.S_ISREG(st.st_mode) or (inode is not None and st.st_ino != inode):
                return None  # only a regular file is ever moved: not a directory, not a symlink
            target = self.quarantine_path(digest)
            number = 1
            while os.path.lexists(target):
                number += 1
                target = final.with_name(f"{final.name}.{number}{QUARANTINE_SUFFIX}")
            os.rename(final, target)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise disk_error(err, f"quarantining chunk {digest.hex()[:16]}") from err
        with contextlib.suppress(OSError):
            fsync_dir(final.parent)
        return target

    def iter_ids(self, quarantined: list[Path] | None = None) -> Iterator[bytes]:
        """Every complete chunk object's id (temporary and quarantined files are never listed).

        ``quarantined``, when given, collects the ``.bad`` files seen on the way.
        """
        if not self.chunks_dir.is_dir():
            return
        for sub in sorted(os.listdir(self.chunks_dir)):
            subdir = self.chunks_dir / sub
            if len(sub) != 2 or subdir.is_symlink() or not subdir.is_dir():
                continue  # a link is not the repository's: prune must not delete through it
            for name in os.listdir(subdir):
                if len(name) == 2 * DIGEST_SIZE:
                    try:
                        yield bytes.fromhex(name)
                    except ValueError:
                        continue
                elif quarantined is not None and name.endswith(QUARANTINE_SUFFIX):
                    quarantined.append(subdir / name)

    # -- writing -----------------------------------------------------------------
    def _ensure_dir(self, prefix: str) -> Path:
        directory = self.chunks_dir / prefix
        if prefix not in self._dirs_made:
            with self._dirs_lock:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._dirs_made.add(prefix)
        return directory

    def write_tmp(
        self, digest: bytes, codec: int, raw_len: int, payload: bytes | bytearray | memoryview, owner: str, fsync: bool
    ) -> Path | None:
        """Write one chunk object under a temporary name; None if the chunk already exists.

        ``owner`` tags the temporary file (the writer's lock id) so that a crashed writer's
        leftovers can be recognised and removed.  The caller publishes it (``publish``).
        """
        final = self.path(digest)
        if os.path.exists(final):
            return None
        tmp = self.tmp_dir / f"{final.name}.{owner}.{uuid.uuid4().hex[:8]}.tmp"
        header = HEADER.pack(MAGIC, codec, raw_len, len(payload))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # VM data: owner-only
        except OSError as err:
            raise disk_error(err, f"cannot create {tmp.name}") from err
        try:
            try:
                write_all(fd, header)
                write_all(fd, payload)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise disk_error(err, f"writing chunk {digest.hex()[:16]}") from err
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp

    def publish(self, batch: list[tuple[Path, bytes]], synced: bool = False) -> None:
        """Give written chunks their final names, after their bytes are on disk.

        Unless ``synced``, each object is fdatasynced first (by the backup's publisher
        thread, so the waiting overlaps hashing and compressing).  Measured faster than one
        ``syncfs`` per batch, which also waits for every other writer on the filesystem.
        No object is ever visible under its final name before its data is durable.
        """
        if not batch:
            return
        try:
            if not synced:
                for tmp, _ in batch:
                    fd = os.open(tmp, os.O_RDONLY)
                    try:
                        os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
                    finally:
                        os.close(fd)
            for tmp, digest in batch:
                final = self.path(digest)
                self._ensure_dir(final.parent.name)
                os.replace(tmp, final)
        except OSError as err:
            for tmp, _ in batch:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise disk_error(err, "publishing chunks") from err

    def discard(self, batch: list[tuple[Path, bytes]]) -> None:
        for tmp, _ in batch:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def put(self, digest: bytes, codec: int, raw_len: int, payload: bytes | bytearray | memoryview, owner: str) -> int:
        """Store one chunk durably unless it is already there; bytes written (0 if present)."""
        tmp = self.write_tmp(digest, codec, raw_len, payload, owner, fsync=True)
        if tmp is None:
            return 0
        self.publish([(tmp, digest)], synced=True)
        return HEADER.size + len(payload)

    def sink(self, owner: str, fsync: bool, batch_bytes: int, batch_seconds: float) -> FileSink:
        return FileSink(self, owner, fsync, batch_bytes, batch_seconds)

    def refresh(self) -> None:
        """Nothing to re-read: the directory is the index."""

    def make_durable(self) -> None:
        """Before a manifest: every chunk directory the backup touched, and ``chunks/``."""
        for directory in self.touched_dirs():
            fsync_dir(directory)
        fsync_dir(self.chunks_dir)

    def touched_dirs(self) -> list[Path]:
        return [self.chunks_dir / prefix for prefix in sorted(self._dirs_made)]

    # -- reading -----------------------------------------------------------------
    def read_blob(self, digest: bytes) -> bytes:
        return self.read_blob_inode(digest)[0]

    def read_blob_inode(self, digest: bytes) -> tuple[bytes, int]:
        """The object's bytes and its inode (to quarantine exactly the file that was read)."""
        try:
            with open(self.path(digest), "rb", buffering=0) as fh:
                return fh.read(), os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            raise self.missing(digest) from None
        except OSError as err:
            raise ChunkDamaged(digest, f"unreadable ({err.strerror})") from None

    def missing(self, digest: bytes) -> ChunkMissing:
        """The error for a chunk that is not under its name: quarantined, or just missing."""
        bad = self.quarantined(digest)
        return ChunkQuarantined(digest, bad) if bad is not None else ChunkMissing(digest)

    def get(self, digest: bytes, verify: bool = True) -> bytes:
        """The chunk's data, hash-checked; ``ChunkMissing`` / ``ChunkDamaged`` otherwise."""
        return decode_chunk(digest, self.read_blob(digest), verify)

    def stored_size(self, digest: bytes) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except OSError:
            return 0

    def delete(self, digest: bytes) -> int:
        path = self.path(digest)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return size


class FileSink:
    """Where the backup pipeline's writer thread puts new chunks: one object file each.

    Objects go to ``tmp/`` and are handed to the publisher thread in batches (``take``: 16 MiB
    or 1 s of work), which fdatasyncs and renames them into ``chunks/``.
    """

    def __init__(self, store: ChunkStore, owner: str, fsync: bool, batch_bytes: int, batch_seconds: float) -> None:
        self.store = store
        self.owner = owner
        self.fsync = fsync
        self.batch_bytes = batch_bytes
        self.batch_seconds = batch_seconds
        self.batch: list[tuple[Path, bytes]] = []
        self.size = 0
        self.started = time.monotonic()

    def add(self, digest: bytes, codec: int, raw_len: int, payload: bytes | bytearray | memoryview) -> int:
        tmp = self.store.write_tmp(digest, codec, raw_len, payload, self.owner, fsync=self.fsync)
        if tmp is None:
            return 0
        if not self.batch:
            self.started = time.monotonic()
        self.batch.append((tmp, digest))
        written = HEADER.size + len(payload)
        self.size += written
        return written

    def take(self, force: bool = False) -> list[tuple[Path, bytes]] | None:
        if not self.batch:
            return None
        if force or self.size >= self.batch_bytes or time.monotonic() - self.started >= self.batch_seconds:
            batch, self.batch, self.size = self.batch, [], 0
            return batch
        return None

    def publish(self, batch: list[tuple[Path, bytes]]) -> None:
        self.store.publish(batch, synced=self.fsync)

    def discard(self, batch: list[tuple[Path, bytes]] | None) -> None:
        if batch:
            self.store.discard(batch)

    def close(self) -> None:
        self.store.discard(self.batch)
        self.batch, self.size = [], 0
