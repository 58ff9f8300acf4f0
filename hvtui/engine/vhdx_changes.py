"""Which bytes of a frozen VHDX file an incremental reads, from the virtual-disk changes its host reports.

Hyper-V's RCT (and the lab's) says what changed in the *virtual disk*; the repository keeps the
*file* byte for byte. ``hvtui.hosts.vhdx.ranges.file_ranges_for`` maps one to the other; this
module gives it the frozen file and the previous point's BAT (read back from the repository, so a
block still at the same place is read piece by piece), and turns every reason it cannot into a
sentence the backup reports (never a silent whole-file read).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from hvtui.engine.manifest import FileEntry, Manifest
from hvtui.errors import HvtuiError
from hvtui.hosts.base import SourceFile
from hvtui.hosts.vhdx import VhdxFile, VhdxFormatError
from hvtui.hosts.vhdx import format as fmt
from hvtui.hosts.vhdx.ranges import file_ranges_for

ReadChunk = Callable[[bytes], bytes]  # a chunk's data by its digest (the repository's store)


def virtual_size_of(sf: SourceFile) -> tuple[int | None, str | None]:
    """(virtual size, None) of a VHDX source file tracked in virtual bytes, or (None, why it cannot
    be parsed here); (None, None) for other files.  The file is read through ``sf.open()``, so a
    remote host's file (over SMB) parses like a local one."""
    if not sf.virtual_ranges:
        return None, None
    try:
        with sf.open() as reader, VhdxFile(sf.rel_path, reader=reader) as disk:
            return disk.virtual_size, None
    except VhdxFormatError as err:
        return None, f"not a VHDX the engine can map: {_without_name(err, sf)}"
    except OSError as err:
        return None, f"the frozen file could not be parsed ({err.strerror or err})"
    except HvtuiError as err:  # the host could not open it (a share gone, a refused session)
        return None, f"the frozen file could not be opened to map its changes ({getattr(err, 'detail', err)})"


def _without_name(err: VhdxFormatError, sf: SourceFile) -> str:
    prefix = f"{Path(sf.rel_path)}: "
    return err.detail[len(prefix) :] if err.detail.startswith(prefix) else err.detail


def file_ranges(
    sf: SourceFile,
    virtual: list[tuple[int, int]],
    old: FileEntry,
    parent: Manifest | None,
    virtual_size: int | None,
    vhdx_error: str | None,
    chunk_size: int,
    read_chunk: ReadChunk | None,
) -> tuple[list[tuple[int, int]] | None, str | None]:
    """(file ranges to read, None) for a VHDX file's changed virtual ranges, or (None, why it
    must be read whole)."""
    if virtual_size is None:
        return None, vhdx_error or "the frozen file cannot be parsed here"
    before = _recorded_virtual_size(parent, old.path)
    if before is not None and before != virtual_size:
        return None, f"the disk was resized ({before} → {virtual_size} virtual bytes)"
    try:
        with sf.open() as reader:
            previous = previous_bat(sf, old, chunk_size, read_chunk, reader)
            return file_ranges_for(sf.rel_path, virtual, old.size, previous, reader=reader), None
    except VhdxFormatError as err:
        return None, f"not a VHDX the engine can map: {_without_name(err, sf)}"
    except ValueError as err:  # a changed range outside the disk: its size changed
        return None, f"the disk was resized ({err})"
    except OSError as err:
        return None, f"the frozen file could not be parsed ({err.strerror or err})"


def previous_bat(
    sf: SourceFile, old: FileEntry, chunk_size: int, read_chunk: ReadChunk | None, reader: BinaryIO
) -> list[int] | None:
    """The file's BAT as the previous point holds it, or None when it cannot be trusted (other
    BAT location, a non-empty log, a chunk that cannot be read): then blocks are read whole."""
    if read_chunk is None:
        return None
    with VhdxFile(sf.rel_path, reader=reader) as disk:
        bat_at, bat_length, count = disk.bat_offset, disk.bat_length, disk.entry_count
    if old.size < bat_at + count * 8:
        return None
    try:
        head = _old_bytes(old, 0, fmt.MiB, chunk_size, read_chunk)  # identifier, headers, region tables
        headers = [fmt.Header.parse(head[at : at + fmt.HEADER_SIZE]) for at in fmt.HEADER_OFFSETS]
        current = max((h for h in headers if h is not None), key=lambda h: h.sequence, default=None)
        if current is None or current.log_guid != fmt.NIL:
            return None
        regions = None
        for at in fmt.REGION_TABLE_OFFSETS:
            regions = fmt.parse_region_table(head[at : at + fmt.REGION_TABLE_SIZE])
            if regions is not None:
                break
        if regions is None or regions.get(fmt.BAT_REGION) != (bat_at, bat_length):
            return None
        raw = _old_bytes(old, bat_at, count * 8, chunk_size, read_chunk)
    except (HvtuiError, OSError, ValueError, IndexError):
        return None  # the repository lost or damaged a chunk: read the touched blocks whole
    return list(memoryview(raw).cast("Q"))


def _recorded_virtual_size(parent: Manifest | None, path: str) -> int | None:
    """The virtual size the previous point recorded for ``path`` (None if it has none, or a
    damaged one: then only a change outside the disk tells a resize)."""
    sizes = parent.vm.get("virtual_sizes") if parent is not None and isinstance(parent.vm, dict) else None
    size = sizes.get(path) if isinstance(sizes, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def _old_bytes(old: FileEntry, offset: int, length: int, chunk_size: int, read_chunk: ReadChunk) -> bytes:
    first, last = offset // chunk_size, (offset + length - 1) // chunk_size
    parts = []
    for index in range(first, last + 1):
        digest = old.chunks[index]
        span = min(chunk_size, old.size - index * chunk_size)
        data = bytes(span) if digest is None else read_chunk(digest)
        if len(data) != span:
            raise ValueError(f"chunk {index} of {old.path} has {len(data)} bytes, not {span}")
        parts.append(data)
    joined = b"".join(parts)
    start = offset - first * chunk_size
    return joined[start : start + length]
