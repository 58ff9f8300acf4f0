"""MS-VHDX on-disk structures: the file identifier, headers, region tables, metadata, BAT geometry.

Layout the lab writes (every offset 1 MiB aligned as MS-VHDX requires for regions):

    0        file type identifier ("vhdxfile" + creator)
    64 KiB   header 1          128 KiB  header 2      (4 KiB each, CRC-32C, sequence numbers)
    192 KiB  region table 1    256 KiB  region table 2 (64 KiB each, CRC-32C)
    1 MiB    log (1 MiB, never used: LogGuid stays zero, so there is nothing to replay)
    2 MiB    metadata region (1 MiB): table, then items from 64 KiB on
    3 MiB    BAT region, rounded up to 1 MiB; payload and sector-bitmap blocks follow, 1 MiB aligned

Parsing is strict where a wrong value would mean misreading data (CRC, signatures, unknown
required items, a non-empty log) and says which check failed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from uuid import UUID

import crc32c

from hvtui.errors import HostError

KiB = 1 << 10
MiB = 1 << 20

FILE_SIGNATURE = b"vhdxfile"
CREATOR = "hvtui lab"
HEADER_OFFSETS = (64 * KiB, 128 * KiB)
HEADER_SIZE = 4 * KiB
REGION_TABLE_OFFSETS = (192 * KiB, 256 * KiB)
REGION_TABLE_SIZE = 64 * KiB
LOG_OFFSET = 1 * MiB
LOG_LENGTH = 1 * MiB
METADATA_OFFSET = 2 * MiB
METADATA_LENGTH = 1 * MiB
METADATA_ITEMS_AT = 64 * KiB  # items start after the 64 KiB table (MS-VHDX 2.6.1)
BAT_OFFSET = 3 * MiB
SECTOR_BITMAP_BLOCK = 1 * MiB
MAX_SECTORS_PER_CHUNK = 1 << 23  # one 1 MiB sector-bitmap block covers 2^23 sectors
NIL = UUID(int=0)

BAT_REGION = UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION = UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
FILE_PARAMETERS = UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE = UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
VIRTUAL_DISK_ID = UUID("BECA12AB-B2E6-4523-93EF-C309E000C746")  # the page 83 data
LOGICAL_SECTOR_SIZE = UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE = UUID("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOCATOR = UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
VHDX_LOCATOR_TYPE = UUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")

# BAT entry states (MS-VHDX 2.5.1)
PAYLOAD_NOT_PRESENT = 0
PAYLOAD_UNDEFINED = 1
PAYLOAD_ZERO = 2
PAYLOAD_UNMAPPED = 3
PAYLOAD_FULLY_PRESENT = 6
PAYLOAD_PARTIALLY_PRESENT = 7
SB_NOT_PRESENT = 0
SB_PRESENT = 6
STATE_MASK = 0x7
OFFSET_SHIFT = 20  # FileOffsetMB sits in bits 20..63: entry & ~0xFFFFF is the byte offset

_HEADER = struct.Struct("<4sIQ16s16s16sHHIQ")
_REGION_HEADER = struct.Struct("<4sII4x")
_REGION_ENTRY = struct.Struct("<16sQII")
_META_HEADER = struct.Struct("<8s2xH20x")
_META_ENTRY = struct.Struct("<16sIII4x")
_LOCATOR_HEADER = struct.Struct("<16s2xH")
_LOCATOR_ENTRY = struct.Struct("<IIHH")
_META_USER, _META_VIRTUAL_DISK, _META_REQUIRED = 1, 2, 4


class VhdxFormatError(HostError):
    """A file is missing, damaged or not a VHDX this code can read."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__("vhdx", "read disk", f"{path}: {message}", kind="failed")


def crc(data: bytes | bytearray) -> int:
    return crc32c.crc32c(data)


def with_crc(body: bytes, at: int = 4) -> bytes:
    """``body`` (checksum field zero) with its CRC-32C stored at ``at``."""
    return body[:at] + struct.pack("<I", crc(body)) + body[at + 4 :]


def crc_ok(raw: bytes, at: int = 4) -> bool:
    (stored,) = struct.unpack_from("<I", raw, at)
    return crc(raw[:at] + b"\0\0\0\0" + raw[at + 4 :]) == stored


def file_identifier() -> bytes:
    return FILE_SIGNATURE + CREATOR.encode("utf-16-le")


@dataclass(frozen=True, slots=True)
class Header:
    sequence: int
    file_write_guid: UUID
    data_write_guid: UUID
    log_guid: UUID = NIL
    log_offset: int = LOG_OFFSET
    log_length: int = LOG_LENGTH

    def pack(self) -> bytes:
        body = _HEADER.pack(
            b"head",
            0,
            self.sequence,
            self.file_write_guid.bytes_le,
            self.data_write_guid.bytes_le,
            self.log_guid.bytes_le,
            0,  # LogVersion
            1,  # Version
            self.log_length,
            self.log_offset,
        )
        return with_crc(body.ljust(HEADER_SIZE, b"\0"))

    @classmethod
    def parse(cls, raw: bytes) -> Header | None:
        """The header in ``raw``, or None when its signature or checksum is wrong."""
        if len(raw) < HEADER_SIZE or raw[:4] != b"head" or not crc_ok(raw[:HEADER_SIZE]):
            return None
        _sig, _crc, seq, fwg, dwg, lg, _log_version, version, log_length, log_offset = _HEADER.unpack_from(raw)
        if version != 1:
            return None
        return cls(seq, UUID(bytes_le=fwg), UUID(bytes_le=dwg), UUID(bytes_le=lg), log_offset, log_length)


def bat_entry_count(virtual_size: int, block_size: int, logical_sector_size: int, differencing: bool) -> int:
    """BAT entries (MS-VHDX 2.5): a differencing file has every chunk's sector-bitmap entry."""
    blocks = -(-virtual_size // block_size)
    ratio = chunk_ratio(block_size, logical_sector_size)
    if differencing:
        return -(-blocks // ratio) * (ratio + 1)
    return blocks + (blocks - 1) // ratio


def bat_region_length(virtual_size: int, block_size: int, logical_sector_size: int, differencing: bool) -> int:
    entries = bat_entry_count(virtual_size, block_size, logical_sector_size, differencing)
    return max(MiB, -(-entries * 8 // MiB) * MiB)


def chunk_ratio(block_size: int, logical_sector_size: int) -> int:
    return MAX_SECTORS_PER_CHUNK * logical_sector_size // block_size


@lru_cache(maxsize=64)
def pack_region_table(bat_length: int) -> bytes:
    body = _REGION_HEADER.pack(b"regi", 0, 2) + b"".join(
        _REGION_ENTRY.pack(guid.bytes_le, offset, length, 1)
        for guid, offset, length in (
            (BAT_REGION, BAT_OFFSET, bat_length),
            (METADATA_REGION, METADATA_OFFSET, METADATA_LENGTH),
        )
    )
    full = with_crc(body.ljust(REGION_TABLE_SIZE, b"\0"))
    return full.rstrip(b"\0")  # the rest of the 64 KiB stays a hole (reads as the zeros the CRC covered)


def parse_region_table(raw: bytes) -> dict[UUID, tuple[int, int]] | None:
    """{region GUID: (file offset, length)}, or None when the table is damaged."""
    raw = raw.ljust(REGION_TABLE_SIZE, b"\0")
    if raw[:4] != b"regi" or not crc_ok(raw):
        return None
    _sig, _crc, count = _REGION_HEADER.unpack_from(raw)
    if count > 2047:
        return None
    regions: dict[UUID, tuple[int, int]] = {}
    for i in range(count):
        guid, offset, length, required = _REGION_ENTRY.unpack_from(raw, _REGION_HEADER.size + i * _REGION_ENTRY.size)
        uid = UUID(bytes_le=guid)
        if uid not in (BAT_REGION, METADATA_REGION) and required & 1:
            return None  # a required region this reader does not know
        regions[uid] = (offset, length)
    return regions


@dataclass(frozen=True, slots=True)
class ParentLocator:
    """Where a differencing file's parent is, and which content of it (LinkageId) it was made on."""

    linkage: UUID
    relative_path: str  # Windows form, from the child's folder: ".\\parent.vhdx"
    absolute_path: str = ""  # a Windows path ("C:\\VMs\\parent.vhdx"); "" writes no absolute_win32_path

    @property
    def file_name(self) -> str:
        return self.relative_path.replace("\\", "/").rsplit("/", 1)[-1]

    def pack(self) -> bytes:
        pairs = [
            ("parent_linkage", "{" + str(self.linkage) + "}"),
            ("relative_path", self.relative_path),
            ("absolute_win32_path", self.absolute_path),
        ]
        pairs = [(key, value) for key, value in pairs if value]  # MS-VHDX: any one path entry will do
        table = _LOCATOR_HEADER.size + len(pairs) * _LOCATOR_ENTRY.size
        entries, strings = b"", b""
        for key, value in pairs:
            k, v = key.encode("utf-16-le"), value.encode("utf-16-le")
            key_at = table + len(strings)
            strings += k
            entries += _LOCATOR_ENTRY.pack(key_at, table + len(strings), len(k), len(v))
            strings += v
        return _LOCATOR_HEADER.pack(VHDX_LOCATOR_TYPE.bytes_le, len(pairs)) + entries + strings

    @classmethod
    def parse(cls, raw: bytes) -> ParentLocator:
        kind, count = _LOCATOR_HEADER.unpack_from(raw)
        if UUID(bytes_le=kind) != VHDX_LOCATOR_TYPE:
            raise ValueError("unknown parent locator type")
        pairs: dict[str, str] = {}
        for i in range(count):
            key_at, value_at, key_len, value_len = _LOCATOR_ENTRY.unpack_from(
                raw, _LOCATOR_HEADER.size + i * _LOCATOR_ENTRY.size
            )
            key = raw[key_at : key_at + key_len].decode("utf-16-le")
            pairs[key] = raw[value_at : value_at + value_len].decode("utf-16-le")
        if "parent_linkage" not in pairs or not ("relative_path" in pairs or "absolute_win32_path" in pairs):
            raise ValueError("parent locator lacks parent_linkage or a path")
        relative = pairs.get("relative_path") or pairs["absolute_win32_path"]
        return cls(UUID(pairs["parent_linkage"].strip("{}")), relative, pairs.get("absolute_win32_path", ""))


@dataclass(frozen=True, slots=True)
class Metadata:
    block_size: int
    virtual_size: int
    logical_sector_size: int
    physical_sector_size: int
    disk_id: UUID
    parent: ParentLocator | None = None

    def pack(self) -> bytes:
        """The metadata region's used bytes: the table, then the items from 64 KiB on."""
        table, data = self.pack_parts()
        return table.ljust(METADATA_ITEMS_AT, b"\0") + data

    def pack_parts(self) -> tuple[bytes, bytes]:
        """(the table, unpadded; the items, which go at METADATA_ITEMS_AT)."""
        items: list[tuple[UUID, bytes, int]] = [
            (FILE_PARAMETERS, struct.pack("<II", self.block_size, 2 if self.parent else 0), _META_REQUIRED),
            (VIRTUAL_DISK_SIZE, struct.pack("<Q", self.virtual_size), _META_REQUIRED | _META_VIRTUAL_DISK),
            (VIRTUAL_DISK_ID, self.disk_id.bytes_le, _META_REQUIRED | _META_VIRTUAL_DISK),
            (LOGICAL_SECTOR_SIZE, struct.pack("<I", self.logical_sector_size), _META_REQUIRED | _META_VIRTUAL_DISK),
            (PHYSICAL_SECTOR_SIZE, struct.pack("<I", self.physical_sector_size), _META_REQUIRED | _META_VIRTUAL_DISK),
        ]
        if self.parent is not None:
            items.append((PARENT_LOCATOR, self.parent.pack(), _META_REQUIRED))
        table = _META_HEADER.pack(b"metadata", len(items))
        data = b""
        for guid, value, flags in items:
            table += _META_ENTRY.pack(guid.bytes_le, METADATA_ITEMS_AT + len(data), len(value), flags)
            data += value.ljust(-(-len(value) // 8) * 8, b"\0")
        return table, data

    @classmethod
    def parse(cls, raw: bytes) -> Metadata:
        """Parse the metadata region's first bytes (table and items); ValueError says what is wrong."""
        if raw[:8] != b"metadata":
            raise ValueError("metadata table signature is wrong")
        (count,) = _META_HEADER.unpack_from(raw)[1:]
        values: dict[UUID, bytes] = {}
        for i in range(min(count, 2047)):
            guid, offset, length, flags = _META_ENTRY.unpack_from(raw, _META_HEADER.size + i * _META_ENTRY.size)
            uid = UUID(bytes_le=guid)
            if offset + length > len(raw):
                raise ValueError(f"metadata item {uid} lies outside the part read")
            known = uid in (
                FILE_PARAMETERS,
                VIRTUAL_DISK_SIZE,
                VIRTUAL_DISK_ID,
                LOGICAL_SECTOR_SIZE,
                PHYSICAL_SECTOR_SIZE,
                PARENT_LOCATOR,
            )
            if not known and flags & _META_REQUIRED:
                raise ValueError(f"unknown required metadata item {uid}")
            values[uid] = raw[offset : offset + length]
        try:
            block_size, bits = struct.unpack("<II", values[FILE_PARAMETERS])
            (virtual_size,) = struct.unpack("<Q", values[VIRTUAL_DISK_SIZE])
            disk_id = UUID(bytes_le=values[VIRTUAL_DISK_ID])
            (logical,) = struct.unpack("<I", values[LOGICAL_SECTOR_SIZE])
            (physical,) = struct.unpack("<I", values[PHYSICAL_SECTOR_SIZE])
        except (KeyError, struct.error) as err:
            raise ValueError(f"a required metadata item is missing or short ({err})") from None
        if block_size < MiB or block_size > 256 * MiB or block_size & (block_size - 1):
            raise ValueError(f"block size {block_size} is not a power of two between 1 and 256 MiB")
        if logical not in (512, 4096) or physical not in (512, 4096):
            raise ValueError(f"sector sizes {logical}/{physical} are not 512 or 4096")
        parent = None
        if bits & 2:
            if PARENT_LOCATOR not in values:
                raise ValueError("a differencing disk without a parent locator")
            parent = ParentLocator.parse(values[PARENT_LOCATOR])
        return cls(block_size, virtual_size, logical, physical, disk_id, parent)
