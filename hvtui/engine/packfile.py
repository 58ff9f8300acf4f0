"""Pack files of a format-2 repository: many chunk objects in one file, with a trailer.

::

    blob 0 | blob 1 | ... | trailer entries | footer

Each blob is a chunk object exactly as format 1 stores it in a file of its own (16-byte
``HVC1`` header, then the payload: store.py), so one decoder reads both formats.  The
trailer lists every blob, ``count`` × (32-byte chunk id, u64 offset, u32 length), and the
footer closes the file: ``count`` u32, SHA-256 of the trailer entries, magic ``HVP2``.
A pack is written whole under ``tmp/``, fsynced, then renamed to ``packs/<2 hex>/<64 hex>``
(a random id): like a format-1 chunk object, a final name means a complete, durable pack.
The trailer makes every pack self-describing, so a lost or damaged index is rebuilt from
the packs alone (restic's pack header, kept at the end so a pack is written in one pass).

In an encrypted repository each blob is the sealed chunk object (crypto.py: nonce,
ciphertext, tag; its chunk id as associated data) and the trailer entries are sealed too
(``pack-trailer:<pack id>`` as associated data, so a renamed pack is detected); the
footer's checksum then covers the sealed trailer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hvtui.config.settings import DEFAULT_PACK_SIZE_MIB
from hvtui.engine.crypto import OVERHEAD, NotAuthentic, RepositoryCipher
from hvtui.engine.store import HEADER, disk_error
from hvtui.files import write_all

PACK_MAGIC = b"HVP2"
ENTRY = struct.Struct("<32sQI")
FOOTER = struct.Struct("<I32s4s")
MIN_PACK_SIZE = 16 * 1024 * 1024
MAX_PACK_SIZE = 128 * 1024 * 1024
DEFAULT_PACK_SIZE = DEFAULT_PACK_SIZE_MIB * 1024 * 1024  # the config's default
# Far more blobs than a 128 MiB pack of 64 KiB chunks can hold: a bigger count is damage.
MAX_ENTRIES = 1 << 16


class PackDamaged(Exception):
    """A pack's trailer cannot be trusted; ``reason`` says why."""

    def __init__(self, pack_id: str, reason: str) -> None:
        self.pack_id = pack_id
        self.reason = reason
        super().__init__(f"pack {pack_id[:16]}: {reason}")


@dataclass(frozen=True, slots=True)
class BlobEntry:
    digest: bytes
    offset: int
    length: int


def new_pack_id() -> str:
    return secrets.token_hex(32)


def is_pack_id(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _trailer_aad(pack_id: str) -> bytes:
    return f"pack-trailer:{pack_id}".encode()


def encode_trailer(entries: list[BlobEntry], cipher: RepositoryCipher | None = None, pack_id: str = "") -> bytes:
    body = b"".join(ENTRY.pack(e.digest, e.offset, e.length) for e in entries)
    if cipher is not None:
        body = cipher.seal(body, _trailer_aad(pack_id))
    return body + FOOTER.pack(len(entries), hashlib.sha256(body).digest(), PACK_MAGIC)


def read_trailer(path: Path, pack_id: str, cipher: RepositoryCipher | None = None) -> list[BlobEntry]:
    """The blobs a pack file lists, checked against the pack's size; ``PackDamaged`` otherwise."""
    try:
        with open(path, "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            return parse_trailer(lambda offset, length: os.pread(fh.fileno(), length, offset), size, pack_id, cipher)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise PackDamaged(pack_id, f"unreadable ({err.strerror})") from None


def parse_trailer(
    read_at: Callable[[int, int], bytes], size: int, pack_id: str, cipher: RepositoryCipher | None = None
) -> list[BlobEntry]:
    """The blobs a pack of ``size`` bytes lists, reading through ``read_at(offset, length)``
    (a file or a ranged GET: two small reads, the footer then the trailer)."""
    if size < FOOTER.size:
        raise PackDamaged(pack_id, f"truncated ({size} bytes, shorter than its footer)")
    footer = read_at(size - FOOTER.size, FOOTER.size)
    if len(footer) != FOOTER.size:
        raise PackDamaged(pack_id, "truncated while reading its footer")
    count, checksum, magic = FOOTER.unpack(footer)
    if magic != PACK_MAGIC:
        raise PackDamaged(pack_id, "no pack footer (truncated or not a pack)")
    body_len = count * ENTRY.size + (OVERHEAD if cipher is not None else 0)
    if count > MAX_ENTRIES or body_len + FOOTER.size > size:
        raise PackDamaged(pack_id, f"its trailer claims {count} blobs, more than the file holds")
    body = read_at(size - FOOTER.size - body_len, body_len)
    if hashlib.sha256(body).digest() != checksum:
        raise PackDamaged(pack_id, "its trailer does not match its checksum (corrupt)")
    data_end = size - FOOTER.size - body_len
    if cipher is not None:
        try:
            body = cipher.open(body, _trailer_aad(pack_id))
        except NotAuthentic as err:
            raise PackDamaged(pack_id, f"its trailer {err}") from None
    entries = []
    for digest, offset, length in ENTRY.iter_unpack(body):
        if length < HEADER.size or offset + length > data_end:
            raise PackDamaged(pack_id, f"its trailer lists a blob outside the pack's data ({offset}+{length})")
        entries.append(BlobEntry(digest, offset, length))
    return entries


@dataclass(slots=True)
class PackWriter:
    """One pack being written under ``tmp/`` by one backup (``owner``: its lock id)."""

    tmp_dir: Path
    owner: str
    cipher: RepositoryCipher | None = None
    pack_id: str = field(default_factory=new_pack_id)
    entries: list[BlobEntry] = field(default_factory=list)
    size: int = 0
    fd: int | None = None
    tmp: Path | None = None

    def _open(self) -> int:
        if self.fd is None:
            # Named like a format-1 chunk temporary (<64 hex>.<lock id>.<8 hex>.tmp) so that a
            # dead writer's leftover is recognised and removed by the same rule.
            self.tmp = self.tmp_dir / f"{self.pack_id}.{self.owner}.{secrets.token_hex(4)}.tmp"
            try:
                self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # VM data: owner-only
            except OSError as err:
                raise disk_error(err, f"cannot create {self.tmp.name}") from err
        return self.fd

    def add(self, digest: bytes, header: bytes, payload: bytes | bytearray | memoryview) -> int:
        fd = self._open()
        length = len(header) + len(payload)
        try:
            write_all(fd, header)
            write_all(fd, payload)
        except OSError as err:
            raise disk_error(err, f"writing pack {self.pack_id[:16]}") from err
        self.entries.append(BlobEntry(digest, self.size, length))
        self.size += length
        return length

    def complete(self, fsync: bool = True) -> int:
        """Append the trailer and close the temporary file (``tmp``), made durable; its size."""
        fd = self._open()
        trailer = encode_trailer(self.entries, self.cipher, self.pack_id)
        try:
            write_all(fd, trailer)
            if fsync:
                os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
            os.close(fd)
            self.fd = None
        except OSError as err:
            self.discard()
            raise disk_error(err, f"publishing pack {self.pack_id[:16]}") from err
        return self.size + len(trailer)

    def finish(self, final: Path, fsync: bool = True) -> int:
        """Append the trailer, make the pack durable, give it its final name; its size."""
        size = self.complete(fsync)
        try:
            final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            assert self.tmp is not None
            os.replace(self.tmp, final)
        except OSError as err:
            self.discard()
            raise disk_error(err, f"publishing pack {self.pack_id[:16]}") from err
        return size

    def discard(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
