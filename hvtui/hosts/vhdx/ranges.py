"""Virtual-disk byte ranges → the VHDX file byte ranges that can hold their changes.

Resilient Change Tracking reports what changed in the *virtual disk*. An incremental backup that
keeps each VHDX file byte for byte needs the *file* ranges to re-read: the payload blocks that
cover the changed virtual ranges, the sector-bitmap block of each such block's chunk in a
differencing file, and always the structures a write may touch (the 1 MiB header section, the
log region, the metadata region, the BAT region), plus everything past the size the file had
at the previous point (new blocks are appended). Every other byte is as it was.

Given the previous point's BAT (``previous_bat``), a block whose entry is unchanged (same state,
same file offset) is mapped piece by piece instead of whole: payload data lies linearly in its
block, so a 1 MiB write into a 32 MiB block (Hyper-V's default) costs 1 MiB, not 32. Pieces are
widened to 64 KiB: a host may rewrite whole physical sectors or pages around a smaller write
(the lab completes 4 KiB pages), and backup chunks are bigger anyway.

The engine (``hvtui.engine.vhdx_changes``) uses it for every incremental of a VHDX whose host
reports changes in virtual-disk bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from hvtui.hosts.vhdx import format as fmt
from hvtui.hosts.vhdx.file import VhdxFile

Ranges = list[tuple[int, int]]


def _coalesce(ranges: Iterable[tuple[int, int]]) -> Ranges:
    out: list[list[int]] = []
    for start, end in sorted((off, off + length) for off, length in ranges if length > 0):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(start, end - start) for start, end in out]


PIECE_ALIGNMENT = 64 * 1024


def file_ranges_for(
    path: Path | str,
    virtual_ranges: Iterable[tuple[int, int]],
    previous_file_size: int,
    previous_bat: Sequence[int] | None = None,
    reader: BinaryIO | None = None,
) -> Ranges:
    """The file ranges of ``path`` to re-read for these changed virtual ranges (sorted, merged).

    ``previous_bat``: every BAT entry of the file as the previous point holds it, or None (then
    each touched payload block is read whole).

    ``reader``: the file already open (a remote host's); ``path`` then only names it in errors.

    Raises VhdxFormatError for a file that is not VHDX or whose log is not empty (the caller then
    reads the whole file and says why).
    """
    with VhdxFile(path, reader=reader) as disk:
        size = disk.file_size()
        wanted: list[tuple[int, int]] = [
            (0, fmt.MiB),  # identifier, both headers, both region tables
            (disk.header.log_offset, disk.header.log_length),
            (disk.metadata_offset, fmt.METADATA_LENGTH),
            (disk.bat_offset, disk.bat_length),
        ]
        if size > previous_file_size:
            wanted.append((previous_file_size, size - previous_file_size))
        bs = disk.block_size
        pieces: dict[int, list[tuple[int, int]]] = {}  # block -> (start, end) within the block
        for offset, length in virtual_ranges:
            if length <= 0:
                continue
            if offset < 0 or offset + length > disk.virtual_size:
                raise ValueError(f"changed range {offset}+{length} lies outside the {disk.virtual_size}-byte disk")
            for block in range(offset // bs, (offset + length - 1) // bs + 1):
                start = max(offset, block * bs) - block * bs
                end = min(offset + length, (block + 1) * bs) - block * bs
                pieces.setdefault(block, []).append((start, end))
        for block in sorted(pieces):
            payload = disk.block_offset(block)
            if payload:
                index = disk.entry_index(block)
                same_place = previous_bat is not None and index < len(previous_bat) and previous_bat[index] == disk.load_bat()[index]
                if same_place:
                    for start, end in pieces[block]:
                        first = start // PIECE_ALIGNMENT * PIECE_ALIGNMENT
                        wanted.append((payload + first, min(bs, -(-end // PIECE_ALIGNMENT) * PIECE_ALIGNMENT) - first))
                else:
                    wanted.append((payload, bs))
            if disk.parent is not None:
                at = disk.bitmap_block_offset(block)
                if at:
                    wanted.append((at, fmt.SECTOR_BITMAP_BLOCK))
    return [(off, min(length, size - off)) for off, length in _coalesce(wanted) if off < size]
