"""The lab's virtual disk file format: a sparse block disk with differencing chains.

Not genuine VHDX, but it behaves like a dynamic VHDX wherever the console or a backup
can tell:

- A fixed 64 KiB header area, then a block allocation table (BAT, one little-endian
  u64 per block: the file offset of the block's payload, 0 = not present), then payload
  blocks appended at the end of the file, each aligned to 1 MiB like VHDX payload blocks.
  A new file is header + BAT only and is extended with ``truncate`` so the BAT region is
  a hole: the file's length is small and its allocation smaller still.
- A differencing file names its parent (a file name in the same folder, like the VHDX
  parent locator's relative path) and stores only blocks written since it was created;
  a block not present is read from the parent, and from the base it reads as zeros.
- Writes are copy-on-write per block: the first write into a block a differencing file
  does not have copies the block's logical content from the chain and appends it.

Block size is 1 MiB: small enough that scattered guest writes do not balloon the
differencing files (Hyper-V avoids that with sector bitmaps we do not model), large
enough that the BAT stays tiny (1 MiB of BAT for a 127 GiB disk), and payload blocks land
on the same 1 MiB alignment as in VHDX, so offset-aligned backup chunking sees the same
layout it would see on a real host.

Every function that modifies a file returns the physical byte ranges it wrote, so the
host can keep a change-tracking log per file (the lab's Resilient Change Tracking).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hvtui.errors import HostError

MAGIC = b"HVLABDSK"
FORMAT_VERSION = 1
BLOCK_SIZE = 1 << 20
BAT_OFFSET = 64 * 1024
PARENT_FIELD = 1024
# magic, version, block_size, virtual_size, bat_offset, block_count, data_start, has_parent, parent_len
_HEADER = struct.Struct("<8sIIQQQQII")
_HEADER_CRC = struct.Struct("<I")
_PARENT_AT = _HEADER.size
_CRC_AT = _PARENT_AT + PARENT_FIELD
HEADER_BYTES = _CRC_AT + _HEADER_CRC.size
_ENTRY = struct.Struct("<Q")
PAGE = 4096

Ranges = list[tuple[int, int]]


class DiskFormatError(HostError):
    """A lab disk file is missing, damaged or not a lab disk."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__("lab", "read disk", f"{path}: {message}", kind="failed")


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def data_start_for(virtual_size: int, block_size: int = BLOCK_SIZE) -> int:
    blocks = -(-virtual_size // block_size)
    return align_up(BAT_OFFSET + blocks * _ENTRY.size, BLOCK_SIZE)


def coalesce(ranges: Iterable[tuple[int, int]], page: int = 1) -> Ranges:
    """Sort and merge overlapping or touching ranges (optionally widened to ``page``)."""
    spans = sorted(
        (off // page * page, align_up(off + length, page)) for off, length in ranges if length > 0
    )
    out: list[list[int]] = []
    for start, end in spans:
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(start, end - start) for start, end in out]


@dataclass(frozen=True, slots=True)
class DiskHeader:
    block_size: int
    virtual_size: int
    bat_offset: int
    block_count: int
    data_start: int
    parent_name: str | None

    @property
    def vhd_type(self) -> str:
        return "Differencing" if self.parent_name else "Dynamic"

    def pack(self) -> bytes:
        parent = (self.parent_name or "").encode("utf-8")
        if len(parent) > PARENT_FIELD:
            raise ValueError(f"parent file name too long ({len(parent)} bytes)")
        body = _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            self.block_size,
            self.virtual_size,
            self.bat_offset,
            self.block_count,
            self.data_start,
            1 if self.parent_name else 0,
            len(parent),
        ) + parent.ljust(PARENT_FIELD, b"\0")
        return body + _HEADER_CRC.pack(zlib.crc32(body))

    @classmethod
    def unpack(cls, path: Path | str, raw: bytes) -> DiskHeader:
        if len(raw) < HEADER_BYTES or raw[:8] != MAGIC:
            raise DiskFormatError(path, "not a lab disk file (bad signature)")
        body = raw[:_CRC_AT]
        (crc,) = _HEADER_CRC.unpack_from(raw, _CRC_AT)
        if zlib.crc32(body) != crc:
            raise DiskFormatError(path, "disk header is damaged (checksum mismatch)")
        _magic, version, block_size, virtual_size, bat_offset, block_count, data_start, has_parent, plen = (
            _HEADER.unpack_from(raw)
        )
        if version != FORMAT_VERSION:
            raise DiskFormatError(path, f"unsupported lab disk format version {version}")
        parent = raw[_PARENT_AT : _PARENT_AT + plen].decode("utf-8") if has_parent else None
        return cls(block_size, virtual_size, bat_offset, block_count, data_start, parent)


def create_disk(
    path: Path,
    virtual_size: int,
    parent_name: str | None = None,
    block_size: int = BLOCK_SIZE,
    fsync: bool = True,
) -> DiskHeader:
    """Create an empty dynamic (no parent) or differencing disk file; fails if it exists."""
    header = DiskHeader(
        block_size=block_size,
        virtual_size=virtual_size,
        bat_offset=BAT_OFFSET,
        block_count=-(-virtual_size // block_size),
        data_start=data_start_for(virtual_size, block_size),
        parent_name=parent_name,
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.pwrite(fd, header.pack(), 0)
        os.ftruncate(fd, header.data_start)  # the BAT is a hole: all entries "not present"
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return header


def read_header(path: Path) -> DiskHeader:
    try:
        with open(path, "rb") as fh:
            return DiskHeader.unpack(path, fh.read(HEADER_BYTES))
    except FileNotFoundError:
        raise DiskFormatError(path, "disk file does not exist") from None


class DiskFile:
    """One open disk file (read-only or writable)."""

    def __init__(self, path: Path, writable: bool = False) -> None:
        self.path = Path(path)
        self.writable = writable
        try:
            self.fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)
        except FileNotFoundError:
            raise DiskFormatError(self.path, "disk file does not exist") from None
        try:
            self.header = DiskHeader.unpack(self.path, os.pread(self.fd, HEADER_BYTES, 0))
        except BaseException:
            os.close(self.fd)
            raise
        self._bat: list[int] | None = None

    # -- lifetime ----------------------------------------------------------------
    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> DiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fsync(self) -> None:
        os.fsync(self.fd)

    # -- geometry ----------------------------------------------------------------
    @property
    def block_size(self) -> int:
        return self.header.block_size

    @property
    def virtual_size(self) -> int:
        return self.header.virtual_size

    @property
    def parent_name(self) -> str | None:
        return self.header.parent_name

    @property
    def block_count(self) -> int:
        return self.header.block_count

    # -- the BAT -------------------------------------------------------------------
    def load_bat(self) -> list[int]:
        if self._bat is None:
            raw = os.pread(self.fd, self.block_count * _ENTRY.size, self.header.bat_offset)
            raw = raw.ljust(self.block_count * _ENTRY.size, b"\0")
            self._bat = list(memoryview(raw).cast("Q"))
            end = os.fstat(self.fd).st_size
            for index, offset in enumerate(self._bat):
                if offset and (offset < self.header.data_start or offset + self.block_size > end):
                    raise DiskFormatError(self.path, f"block {index} points outside the file (offset {offset})")
        return self._bat

    def block_offset(self, index: int) -> int:
        """File offset of block ``index``'s payload, 0 when not present here."""
        if self._bat is not None:
            return self._bat[index]
        raw = os.pread(self.fd, _ENTRY.size, self.header.bat_offset + index * _ENTRY.size)
        return _ENTRY.unpack(raw.ljust(_ENTRY.size, b"\0"))[0]

    def present_blocks(self) -> list[int]:
        return [i for i, off in enumerate(self.load_bat()) if off]

    def allocated_bytes(self) -> int:
        return len(self.present_blocks()) * self.block_size

    # -- reading -----------------------------------------------------------------
    def read_block(self, index: int) -> bytes | None:
        """The block's payload, or None when this file does not have it."""
        offset = self.block_offset(index)
        if not offset:
            return None
        data = os.pread(self.fd, self.block_size, offset)
        if len(data) != self.block_size:
            raise DiskFormatError(self.path, f"block {index} is truncated")
        return data

    # -- writing -----------------------------------------------------------------
    def _set_entry(self, index: int, offset: int) -> tuple[int, int]:
        at = self.header.bat_offset + index * _ENTRY.size
        os.pwrite(self.fd, _ENTRY.pack(offset), at)
        if self._bat is not None:
            self._bat[index] = offset
        return (at, _ENTRY.size)

    def write_block(self, index: int, data: bytes) -> Ranges:
        """Write a whole block: in place if present, else appended at the end of the file."""
        if not self.writable:
            raise DiskFormatError(self.path, "opened read-only")
        if len(data) != self.block_size:
            raise ValueError("write_block needs exactly one block of data")
        if not 0 <= index < self.block_count:
            raise ValueError(f"block {index} outside the disk")
        offset = self.block_offset(index)
        if offset:
            os.pwrite(self.fd, data, offset)
            return [(offset, len(data))]
        end = align_up(os.fstat(self.fd).st_size, BLOCK_SIZE)
        os.pwrite(self.fd, data, end)  # payload first: a crash leaves unused space, never a bad entry
        return [(end, len(data)), self._set_entry(index, end)]

    def write_within_block(self, index: int, inner: int, data: bytes) -> Ranges:
        """Write inside a block this file already has."""
        offset = self.block_offset(index)
        if not offset:
            raise ValueError(f"block {index} is not present in {self.path.name}")
        os.pwrite(self.fd, data, offset + inner)
        return [(offset + inner, len(data))]

    def set_parent(self, parent_name: str | None) -> Ranges:
        """Rewrite the parent locator (a merge or a restore moved the parent)."""
        header = DiskHeader(
            self.header.block_size,
            self.header.virtual_size,
            self.header.bat_offset,
            self.header.block_count,
            self.header.data_start,
            parent_name,
        )
        packed = header.pack()
        os.pwrite(self.fd, packed, 0)
        self.header = header
        return [(0, len(packed))]


class DiskChain:
    """A disk as the guest sees it: the top file and its ancestors down to the base."""

    def __init__(self, files: list[DiskFile]) -> None:
        self.files = files

    @classmethod
    def open(cls, path: Path, writable_top: bool = False, max_depth: int = 256) -> DiskChain:
        files: list[DiskFile] = []
        try:
            current: Path | None = Path(path)
            seen: set[Path] = set()
            while current is not None:
                if current in seen or len(files) > max_depth:
                    raise DiskFormatError(path, "disk chain loops or is too deep")
                seen.add(current)
                disk = DiskFile(current, writable=writable_top and not files)
                if files and disk.virtual_size != files[0].virtual_size:
                    raise DiskFormatError(current, "parent's virtual size differs from its child's")
                files.append(disk)
                current = current.parent / disk.parent_name if disk.parent_name else None
        except BaseException:
            for disk in files:
                disk.close()
            raise
        return cls(files)

    def close(self) -> None:
        for disk in self.files:
            disk.close()

    def __enter__(self) -> DiskChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def top(self) -> DiskFile:
        return self.files[0]

    @property
    def virtual_size(self) -> int:
        return self.top.virtual_size

    @property
    def block_size(self) -> int:
        return self.top.block_size

    def read_block(self, index: int, below_top: bool = False) -> bytes:
        for disk in self.files[1:] if below_top else self.files:
            data = disk.read_block(index)
            if data is not None:
                return data
        return bytes(self.block_size)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.virtual_size:
            raise ValueError(f"read of {length} bytes at {offset} is outside the {self.virtual_size}-byte disk")
        out = bytearray()
        bs = self.block_size
        while length > 0:
            index, inner = divmod(offset, bs)
            take = min(length, bs - inner)
            out += self.read_block(index)[inner : inner + take]
            offset += take
            length -= take
        return bytes(out)

    def write(self, offset: int, data: bytes) -> Ranges:
        """Write into the top file (copy-on-write per block); returns its changed ranges."""
        if offset < 0 or offset + len(data) > self.virtual_size:
            raise ValueError(f"write of {len(data)} bytes at {offset} is outside the disk")
        top = self.top
        bs = self.block_size
        changed: Ranges = []
        pos = 0
        while pos < len(data):
            index, inner = divmod(offset + pos, bs)
            take = min(len(data) - pos, bs - inner)
            piece = data[pos : pos + take]
            if top.block_offset(index):
                changed += top.write_within_block(index, inner, piece)
            elif take == bs:
                changed += top.write_block(index, piece)
            else:
                block = bytearray(self.read_block(index, below_top=True))
                block[inner : inner + take] = piece
                changed += top.write_block(index, bytes(block))
            pos += take
        return changed


def read_logical(path: Path, offset: int = 0, length: int | None = None) -> bytes:
    """The logical (guest-visible) content of the disk whose top file is ``path``."""
    with DiskChain.open(path) as chain:
        if length is None:
            length = chain.virtual_size - offset
        return chain.read(offset, length)


def iter_logical_blocks(path: Path) -> Iterator[tuple[int, bytes | None]]:
    """(block index, data) for every block present anywhere in the chain; data None = zeros."""
    with DiskChain.open(path) as chain:
        present: set[int] = set()
        for disk in chain.files:
            present.update(disk.present_blocks())
        for index in sorted(present):
            yield index, chain.read_block(index)


def logical_digest(path: Path) -> str:
    """A digest of the whole logical disk (cheap: skips blocks present nowhere)."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    with DiskChain.open(path) as chain:
        present: set[int] = set()
        for disk in chain.files:
            present.update(disk.present_blocks())
        digest.update(chain.virtual_size.to_bytes(8, "little"))
        for index in sorted(present):
            data = chain.read_block(index)
            if data == bytes(len(data)):
                continue  # a zero block reads the same as an absent one
            digest.update(index.to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()


def merge_cost(src: DiskFile, dst: DiskFile, mode: str) -> tuple[int, int]:
    """(bytes copied, bytes newly allocated in ``dst``) for ``merge_into``."""
    src_blocks = src.present_blocks()
    dst_bat = dst.load_bat()
    new = sum(1 for i in src_blocks if not dst_bat[i])
    copied = len(src_blocks) if mode == "overwrite" else new
    return copied * src.block_size, new * src.block_size


def merge_into(
    src: DiskFile,
    dst: DiskFile,
    mode: str,
    on_block: Callable[[int], None] | None = None,
) -> Ranges:
    """Copy ``src``'s blocks into ``dst``.

    ``mode`` "overwrite": every block of ``src`` replaces ``dst``'s (a child merged into
    its parent). "fill": only blocks ``dst`` lacks (a parent merged into its child, whose
    own blocks are newer). Both are idempotent, so an interrupted merge can be re-run.
    Returns ``dst``'s changed ranges.
    """
    if mode not in ("overwrite", "fill"):
        raise ValueError(f"unknown merge mode {mode!r}")
    if src.block_size != dst.block_size or src.virtual_size != dst.virtual_size:
        raise DiskFormatError(dst.path, f"cannot merge {src.path.name}: different geometry")
    dst_bat = dst.load_bat()
    changed: Ranges = []
    for index in src.present_blocks():
        if mode == "fill" and dst_bat[index]:
            continue
        data = src.read_block(index)
        assert data is not None
        changed += dst.write_block(index, data)
        if on_block is not None:
            on_block(len(data))
    dst.fsync()
    return coalesce(changed, PAGE)
