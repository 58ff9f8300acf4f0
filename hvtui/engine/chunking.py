"""Fixed-size, offset-aligned chunking: which chunks of a file to read, which are holes.

Chunk ``i`` of a file covers bytes ``[i * size, min((i + 1) * size, file_size))``.  VM disk
files change in place, so aligned chunks keep their identity from one backup to the next;
a change touches only the chunks that overlap it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable


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
