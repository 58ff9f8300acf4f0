"""Fixed-size, offset-aligned chunking: which chunks of a file to read, which are holes.

Chunk ``i`` of a file covers bytes ``[i * size, min((i + 1) * size, file_size))``.  VM disk
files change in place, so aligned chunks keep their identity from one backup to the next;
a change touches only the chunks that overlap it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

# A repository's chunk size: a power of two in this range (config.json and every manifest).
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
# Chunk positions one restore point may list (all files together).  The engine holds a
# point's chunk list in memory (8 bytes a position), so this bounds what any manifest can
# cost to load: 512 MiB, and 64 TiB of disks at the default 1 MiB chunk (VHDX's own maximum
# size).  A backup that would exceed it is refused before reading anything.
MAX_POINT_CHUNKS = 1 << 26


def valid_chunk_size(size: object) -> bool:
    return (
        isinstance(size, int)
        and not isinstance(size, bool)
        and MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE
        and size & (size - 1) == 0
    )


def chunk_count(file_size: int, chunk_size: int) -> int:
    return -(-file_size // chunk_size)


def chunk_span(index: int, file_size: int, chunk_size: int) -> tuple[int, int]:
    """``(offset, length)`` of chunk ``index``."""
    offset = index * chunk_size
    return offset, min(chunk_size, file_size - offset)


def chunks_touching(ranges: Iterable[tuple[int, int]], file_size: int, chunk_size: int) -> set[int]:
    """Indexes of the chunks that overlap any ``(offset, length)`` range (clipped to the file)."""
    out: set[int] = set()
    last = chunk_count(file_size, chunk_size) - 1
    for offset, length in ranges:
        if length <= 0 or offset >= file_size or last < 0:
            continue
        first = max(0, offset) // chunk_size
        end = min(file_size, offset + length) - 1
        out.update(range(first, min(last, end // chunk_size) + 1))
    return out


class HoleMap:
    """Answers "is this span entirely a hole?" from a file's data extents (SEEK_DATA).

    With no extents known every span counts as data and is read (holes then read as zeros
    and are recognised by comparison instead).
    """

    def __init__(self, extents: list[tuple[int, int]] | None) -> None:
        self.known = extents is not None
        self._starts = [start for start, _ in extents or []]
        self._ends = [end for _, end in extents or []]

    def is_hole(self, offset: int, length: int) -> bool:
        if not self.known:
            return False
        end = offset + length
        # The last extent starting before ``end``; the span has data iff it reaches past ``offset``.
        i = bisect.bisect_left(self._starts, end) - 1
        return i < 0 or self._ends[i] <= offset
