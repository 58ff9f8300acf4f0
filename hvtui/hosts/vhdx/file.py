"""One VHDX file: create, open, its BAT and sector bitmaps, block reads and writes.

Writes follow MS-VHDX without a log: payload first, then its sector-bitmap bits, then the BAT
entry, so a crash leaves unused space, never an entry pointing at garbage. Before the first
change after opening, the non-current header is rewritten with the next sequence number and a
new FileWriteGuid (and a new DataWriteGuid when the guest-visible data changes), as the
specification requires. Every modifying method returns the file byte ranges it wrote, so a
host can keep its change log.
"""

from __future__ import annotations

import os
import struct
import uuid
from pathlib import Path
from typing import BinaryIO
from uuid import UUID

from hvtui.hosts.vhdx import format as fmt
from hvtui.hosts.vhdx.format import MiB, VhdxFormatError

Ranges = list[tuple[int, int]]
BLOCK_SIZE = 1 * MiB  # the lab's block size: small writes stay small, payload on 1 MiB alignment
SECTOR = 512
_ENTRY = struct.Struct("<Q")


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def bit_runs(mask: int) -> list[tuple[int, int]]:
    """(first bit, count) for every run of set bits in ``mask``."""
    runs: list[tuple[int, int]] = []
    while mask:
        low = (mask & -mask).bit_length() - 1
        shifted = mask >> low
        count = ((shifted + 1) & ~shifted).bit_length() - 1
        runs.append((low, count))
        mask &= ~(((1 << count) - 1) << low)
    return runs


def create_vhdx(
    path: Path,
    virtual_size: int,
    parent: fmt.ParentLocator | None = None,
    block_size: int = BLOCK_SIZE,
    fsync: bool = True,
) -> fmt.Metadata:
    """Create an empty dynamic (no parent) or differencing VHDX; fails if ``path`` exists."""
    if virtual_size <= 0 or virtual_size % SECTOR:
        raise ValueError(f"virtual size {virtual_size} is not a positive multiple of {SECTOR} bytes")
    meta = fmt.Metadata(block_size, virtual_size, SECTOR, 4096, uuid.uuid4(), parent)
    bat_length = fmt.bat_region_length(virtual_size, block_size, SECTOR, parent is not None)
    data_write = uuid.uuid4()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.pwrite(fd, fmt.file_identifier(), 0)
        for seq, at in enumerate(fmt.HEADER_OFFSETS):
            os.pwrite(fd, fmt.Header(seq, uuid.uuid4(), data_write).pack(), at)
        for at in fmt.REGION_TABLE_OFFSETS:
            os.pwrite(fd, fmt.pack_region_table(bat_length), at)
        table, items = meta.pack_parts()  # the zeros between the table and the items stay a hole
        os.pwrite(fd, table, fmt.METADATA_OFFSET)
        os.pwrite(fd, items, fmt.METADATA_OFFSET + fmt.METADATA_ITEMS_AT)
        os.ftruncate(fd, fmt.BAT_OFFSET + bat_length)  # log and BAT are holes: empty log, every block absent
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return meta


class VhdxFile:
    """One open VHDX file (read-only or writable)."""

    def __init__(self, path: Path | str, writable: bool = False, reader: BinaryIO | None = None) -> None:
        """``reader``: parse an already open seekable file (a remote host's, read over SMB)
        instead of opening ``path``, which then only names it in errors; read-only, and the
        caller closes the reader."""
        self.path = Path(path)
        self.writable = writable
        # A merge that only fills in what a child read through its parent keeps the child's
        # guest-visible data, so it keeps its DataWriteGuid (and its children's linkage).
        self.preserve_data_guid = False
        self._reader = reader
        if reader is not None:
            if writable:
                raise ValueError("a VHDX read through a reader cannot be written")
            self.fd = -1
            self._load()
        else:
            try:
                self.fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)
            except FileNotFoundError:
                raise VhdxFormatError(self.path, "disk file does not exist") from None
            try:
                self._load()
            except BaseException:
                os.close(self.fd)
                raise
        self._bat: list[int] | None = None
        self._touched_file = False
        self._touched_data = False

    def _load(self) -> None:
        if self._pread(8, 0) != fmt.FILE_SIGNATURE:
            raise VhdxFormatError(self.path, "not a VHDX file (no 'vhdxfile' identifier)")
        headers = [(fmt.Header.parse(self._pread(fmt.HEADER_SIZE, at)), slot) for slot, at in enumerate(fmt.HEADER_OFFSETS)]
        valid = [(h, slot) for h, slot in headers if h is not None]
        if not valid:
            raise VhdxFormatError(self.path, "both VHDX headers are damaged (signature or CRC-32C)")
        self.header, self._slot = max(valid, key=lambda pair: pair[0].sequence)
        if self.header.log_guid != fmt.NIL:
            raise VhdxFormatError(self.path, "the VHDX log is not empty: the file needs a log replay first")
        regions = None
        for at in fmt.REGION_TABLE_OFFSETS:
            regions = fmt.parse_region_table(self._pread(fmt.REGION_TABLE_SIZE, at))
            if regions is not None:
                break
        if regions is None or fmt.BAT_REGION not in regions or fmt.METADATA_REGION not in regions:
            raise VhdxFormatError(self.path, "both VHDX region tables are damaged or lack the BAT and metadata")
        self.bat_offset, self.bat_length = regions[fmt.BAT_REGION]
        self.metadata_offset, _length = regions[fmt.METADATA_REGION]
        try:
            self.meta = fmt.Metadata.parse(self._pread(fmt.METADATA_ITEMS_AT * 2, self.metadata_offset))
        except ValueError as err:
            raise VhdxFormatError(self.path, f"VHDX metadata: {err}") from None
        self.sectors_per_block = self.meta.block_size // self.meta.logical_sector_size
        self.chunk_ratio = fmt.chunk_ratio(self.meta.block_size, self.meta.logical_sector_size)
        self.block_count = -(-self.meta.virtual_size // self.meta.block_size)
        self.entry_count = fmt.bat_entry_count(self.virtual_size, self.block_size, self.sector_size, self.parent is not None)
        if self.entry_count * 8 > self.bat_length:
            raise VhdxFormatError(self.path, "the BAT region is too small for the virtual size")

    def _pread(self, length: int, offset: int) -> bytes:
        if self._reader is None:
            return os.pread(self.fd, length, offset)
        self._reader.seek(offset)
        return self._reader.read(length)  # short only at the end of the file

    def file_size(self) -> int:
        if self._reader is None:
            return os.fstat(self.fd).st_size
        return self._reader.seek(0, os.SEEK_END)

    # -- lifetime ----------------------------------------------------------------
    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> VhdxFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fsync(self) -> None:
        os.fsync(self.fd)

    # -- geometry ----------------------------------------------------------------
    @property
    def block_size(self) -> int:
        return self.meta.block_size

    @property
    def virtual_size(self) -> int:
        return self.meta.virtual_size

    @property
    def sector_size(self) -> int:
        return self.meta.logical_sector_size

    @property
    def parent(self) -> fmt.ParentLocator | None:
        return self.meta.parent

    @property
    def parent_name(self) -> str | None:
        return self.meta.parent.file_name if self.meta.parent else None

    @property
    def vhd_type(self) -> str:
        return "Differencing" if self.meta.parent else "Dynamic"

    def entry_index(self, block: int) -> int:
        """The BAT index of payload block ``block`` (a bitmap entry follows every chunk_ratio)."""
        return block + block // self.chunk_ratio

    def bitmap_entry_index(self, block: int) -> int:
        chunk = block // self.chunk_ratio
        return (chunk + 1) * self.chunk_ratio + chunk

    # -- the BAT -------------------------------------------------------------------
    def load_bat(self) -> list[int]:
        """Every BAT entry (payload and sector bitmap), as stored."""
        if self._bat is None:
            count = self.entry_count
            raw = self._pread(count * 8, self.bat_offset).ljust(count * 8, b"\0")
            self._bat = list(memoryview(raw).cast("Q"))
            end = self.file_size()
            for index, entry in enumerate(self._bat):
                offset = entry & ~0xFFFFF
                if entry & fmt.STATE_MASK in (6, 7) and (offset < self.bat_offset + self.bat_length or offset + MiB > end):
                    raise VhdxFormatError(self.path, f"BAT entry {index} points outside the file (offset {offset})")
        return self._bat

    def _entry(self, index: int) -> int:
        if self._bat is not None:
            return self._bat[index]
        return _ENTRY.unpack(self._pread(8, self.bat_offset + index * 8).ljust(8, b"\0"))[0]

    def block_state(self, block: int) -> int:
        return self._entry(self.entry_index(block)) & fmt.STATE_MASK

    def block_offset(self, block: int) -> int:
        """File offset of payload block ``block``, 0 when this file does not hold it."""
        entry = self._entry(self.entry_index(block))
        return entry & ~0xFFFFF if entry & fmt.STATE_MASK in (6, 7) else 0

    def present_blocks(self) -> list[int]:
        """Payload blocks this file holds, fully or partially."""
        bat = self.load_bat()
        return [b for b in range(self.block_count) if bat[self.entry_index(b)] & fmt.STATE_MASK in (6, 7)]

    def allocated_bytes(self) -> int:
        return len(self.present_blocks()) * self.block_size

    # -- reading -----------------------------------------------------------------
    def read_block(self, block: int) -> bytes | None:
        """The block's payload as stored (sectors a bitmap does not mark read as zeros), or None."""
        offset = self.block_offset(block)
        if not offset:
            return None
        data = self._pread(self.block_size, offset)
        if len(data) != self.block_size:
            raise VhdxFormatError(self.path, f"block {block} is truncated")
        return data

    def sector_mask(self, block: int) -> int:
        """Which of the block's sectors this file holds, bit i = sector i (all set when fully present)."""
        state = self.block_state(block)
        if state == fmt.PAYLOAD_FULLY_PRESENT:
            return (1 << self.sectors_per_block) - 1
        if state != fmt.PAYLOAD_PARTIALLY_PRESENT:
            return 0
        at, length = self._bitmap_bytes(block)
        return int.from_bytes(self._pread(length, at), "little") if at else 0

    def bitmap_block_offset(self, block: int) -> int:
        """File offset of the sector-bitmap block of ``block``'s chunk, 0 when there is none."""
        entry = self._entry(self.bitmap_entry_index(block)) if self.parent is not None else 0
        return entry & ~0xFFFFF if entry & fmt.STATE_MASK == fmt.SB_PRESENT else 0

    def _bitmap_bytes(self, block: int) -> tuple[int, int]:
        """(file offset, length) of the block's bits in its chunk's sector bitmap; offset 0 = no bitmap."""
        entry = self._entry(self.bitmap_entry_index(block))
        if entry & fmt.STATE_MASK != fmt.SB_PRESENT:
            return 0, 0
        length = self.sectors_per_block // 8
        return (entry & ~0xFFFFF) + (block % self.chunk_ratio) * length, length

    # -- writing -----------------------------------------------------------------
    def _require_writable(self) -> None:
        if not self.writable:
            raise VhdxFormatError(self.path, "opened read-only")

    def _touch(self, data: bool) -> Ranges:
        """Before the first change: a new header in the other slot (MS-VHDX 2.2.2.1)."""
        data = data and not self.preserve_data_guid
        if self._touched_file and (self._touched_data or not data):
            return []
        header = fmt.Header(
            self.header.sequence + 1,
            uuid.uuid4(),
            uuid.uuid4() if data else self.header.data_write_guid,
            self.header.log_guid,
            self.header.log_offset,
            self.header.log_length,
        )
        slot = 1 - self._slot
        at = fmt.HEADER_OFFSETS[slot]
        os.pwrite(self.fd, header.pack(), at)
        self.header, self._slot = header, slot
        self._touched_file = True
        self._touched_data = self._touched_data or data
        return [(at, fmt.HEADER_SIZE)]

    def _set_entry(self, index: int, entry: int) -> tuple[int, int]:
        at = self.bat_offset + index * 8
        os.pwrite(self.fd, _ENTRY.pack(entry), at)
        if self._bat is not None:
            self._bat[index] = entry
        return (at, 8)

    def _append_block(self, length: int) -> int:
        """Room for a new 1 MiB-aligned block at the end of the file (a hole until written)."""
        end = align_up(os.fstat(self.fd).st_size, MiB)
        os.ftruncate(self.fd, end + length)
        return end

    def write_block(self, block: int, data: bytes) -> Ranges:
        """Write a whole block: in place if held, else appended; the block is then fully present."""
        self._require_writable()
        if len(data) != self.block_size:
            raise ValueError("write_block needs exactly one block of data")
        if not 0 <= block < self.block_count:
            raise ValueError(f"block {block} outside the disk")
        changed = self._touch(data=True)
        offset = self.block_offset(block)
        if offset and self.block_state(block) == fmt.PAYLOAD_FULLY_PRESENT:
            os.pwrite(self.fd, data, offset)
            return [*changed, (offset, len(data))]
        if not offset:
            offset = align_up(os.fstat(self.fd).st_size, MiB)
        os.pwrite(self.fd, data, offset)  # payload first: a crash leaves unused space, never a bad entry
        entry = offset | fmt.PAYLOAD_FULLY_PRESENT
        return [*changed, (offset, len(data)), self._set_entry(self.entry_index(block), entry)]

    def write_sectors(self, block: int, first_sector: int, data: bytes) -> Ranges:
        """Write whole sectors inside a block, allocating it if needed.

        In a differencing file a new block is partially present and its sector bitmap marks the
        sectors written; in a base file a new block is fully present (the rest reads as zeros).
        """
        self._require_writable()
        count = len(data) // self.sector_size
        if len(data) % self.sector_size or first_sector < 0 or first_sector + count > self.sectors_per_block:
            raise ValueError("write_sectors needs whole sectors inside one block")
        changed = self._touch(data=True)
        state = self.block_state(block)
        offset = self.block_offset(block)
        new = not offset
        if new:
            offset = self._append_block(self.block_size)
        at = offset + first_sector * self.sector_size
        os.pwrite(self.fd, data, at)
        changed.append((at, len(data)))
        if self.parent is None:
            if new:
                changed.append(self._set_entry(self.entry_index(block), offset | fmt.PAYLOAD_FULLY_PRESENT))
            return changed
        if state == fmt.PAYLOAD_FULLY_PRESENT:
            return changed
        changed += self._mark_sectors(block, ((1 << count) - 1) << first_sector)
        if new:
            changed.append(self._set_entry(self.entry_index(block), offset | fmt.PAYLOAD_PARTIALLY_PRESENT))
        return changed

    def _mark_sectors(self, block: int, mask: int) -> Ranges:
        changed: Ranges = []
        at, length = self._bitmap_bytes(block)
        if not at:
            bitmap = self._append_block(fmt.SECTOR_BITMAP_BLOCK)
            changed.append(self._set_entry(self.bitmap_entry_index(block), bitmap | fmt.SB_PRESENT))
            at, length = self._bitmap_bytes(block)
        bits = int.from_bytes(self._pread(length, at), "little") | mask
        os.pwrite(self.fd, bits.to_bytes(length, "little"), at)
        return [(at, length), *changed]

    def set_parent(self, locator: fmt.ParentLocator | None) -> Ranges:
        """Rewrite the parent locator (a merge or a restore moved the parent); None makes a base disk."""
        self._require_writable()
        if locator is not None and self.parent is None:
            needed = fmt.bat_entry_count(self.virtual_size, self.block_size, self.sector_size, True) * 8
            if needed > self.bat_length:
                raise VhdxFormatError(self.path, "the BAT region has no room for sector bitmaps: cannot add a parent")
        changed = self._touch(data=False)
        if locator is None and self.parent is not None:
            changed += self._fill_partial_blocks()
        meta = fmt.Metadata(
            self.meta.block_size,
            self.meta.virtual_size,
            self.meta.logical_sector_size,
            self.meta.physical_sector_size,
            self.meta.disk_id,
            locator,
        )
        packed = meta.pack()
        os.pwrite(self.fd, packed, self.metadata_offset)
        self.meta = meta
        return [*changed, (self.metadata_offset, len(packed))]

    def _fill_partial_blocks(self) -> Ranges:
        """Before a differencing file loses its parent: unmarked sectors become zeros, blocks full."""
        changed: Ranges = []
        for block in self.present_blocks():
            if self.block_state(block) != fmt.PAYLOAD_PARTIALLY_PRESENT:
                continue
            offset = self.block_offset(block)
            full = (1 << self.sectors_per_block) - 1
            for first, count in bit_runs(full & ~self.sector_mask(block)):
                at = offset + first * self.sector_size
                os.pwrite(self.fd, bytes(count * self.sector_size), at)
                changed.append((at, count * self.sector_size))
            changed.append(self._set_entry(self.entry_index(block), offset | fmt.PAYLOAD_FULLY_PRESENT))
        return changed


def current_header(path: Path) -> fmt.Header:
    """The valid header with the higher sequence number (all a child's linkage needs of its parent)."""
    try:
        with open(path, "rb", buffering=0) as fh:
            if fh.read(8) != fmt.FILE_SIGNATURE:
                raise VhdxFormatError(path, "not a VHDX file (no 'vhdxfile' identifier)")
            headers = [fmt.Header.parse(os.pread(fh.fileno(), fmt.HEADER_SIZE, at)) for at in fmt.HEADER_OFFSETS]
    except FileNotFoundError:
        raise VhdxFormatError(path, "disk file does not exist") from None
    valid = [h for h in headers if h is not None]
    if not valid:
        raise VhdxFormatError(path, "both VHDX headers are damaged (signature or CRC-32C)")
    return max(valid, key=lambda h: h.sequence)


def locator_for(
    child: Path, parent_name: str, linkage: UUID | None = None, folder: Path | None = None
) -> fmt.ParentLocator:
    """A parent locator naming ``parent_name`` beside ``child``; the linkage is read from the parent.

    relative_path finds the parent wherever the chain's folder is copied (a restore to a folder, a
    VM moved); absolute_win32_path must be a Windows path, so it gets this machine's path as Windows
    sees it (Wine's Z: drive is the root), for readers that look only there (libvhdi). ``folder``:
    where the chain will live, when it is written elsewhere first (a restore's staging folder)."""
    parent = child.parent / parent_name
    if linkage is None:
        linkage = current_header(parent).data_write_guid
    return fmt.ParentLocator(linkage, ".\\" + parent_name, windows_path((folder or child.parent) / parent_name))


_NOT_IN_WINDOWS_PATHS = frozenset('<>:"\\|?*') | {chr(c) for c in range(32)}


def windows_path(path: Path) -> str:
    """``path`` in Windows form on the Z: drive ("Z:\\srv\\vm1\\vm1.vhdx"), or "" when it has
    no such form (a character Windows refuses, or longer than MAX_PATH)."""
    parts = path.absolute().parts[1:]
    if any(ch in _NOT_IN_WINDOWS_PATHS for part in parts for ch in part):
        return ""
    text = "Z:\\" + "\\".join(parts)
    return text if len(text) < 260 else ""
