"""Changed virtual-disk ranges map to the VHDX file ranges that hold every changed file byte."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from hvtui.errors import HostError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.vhdx import format as fmt
from hvtui.hosts.vhdx.ranges import file_ranges_for

MiB = 1 << 20
SIZE = 96 * MiB


def changed_bytes_outside(old: bytes, new: bytes, ranges: list[tuple[int, int]]) -> list[int]:
    """Offsets where ``new`` differs from ``old`` (or is new) that no range covers."""
    covered = bytearray(len(new))
    for off, length in ranges:
        covered[off : off + length] = b"\1" * length
    old = old.ljust(len(new), b"\0")
    missed = []
    for page in range(0, len(new), 4096):
        if old[page : page + 4096] != new[page : page + 4096] or page >= len(old):
            missed += [i for i in range(page, min(page + 4096, len(new))) if old[i] != new[i] and not covered[i]]
    return missed


@pytest.mark.parametrize("differencing", [False, True])
def test_every_changed_file_byte_lies_in_the_mapped_ranges(tmp_path: Path, differencing: bool) -> None:
    rng = random.Random(4 + differencing)
    base = tmp_path / "d.vhdx"
    vdisk.create_disk(base, SIZE)
    with vdisk.DiskChain.open(base, writable_top=True) as chain:
        for _ in range(20):
            chain.write(rng.randrange(0, SIZE - 300_000), rng.randbytes(rng.randint(1, 300_000)))
    top = base
    if differencing:
        top = tmp_path / "d_1.avhdx"
        vdisk.create_disk(top, SIZE, parent_name=base.name)
        with vdisk.DiskChain.open(top, writable_top=True) as chain:
            chain.write(3 * MiB + 700, rng.randbytes(9000))
    for round_ in range(3):
        before = top.read_bytes()
        virtual: list[tuple[int, int]] = []
        with vdisk.DiskChain.open(top, writable_top=True) as chain:
            for _ in range(6):
                offset, length = rng.randrange(0, SIZE - 2 * MiB), rng.randint(1, 2 * MiB)
                chain.write(offset, rng.randbytes(length))
                virtual.append((offset, length))
        after = top.read_bytes()
        ranges = file_ranges_for(top, virtual, len(before))
        assert changed_bytes_outside(before, after, ranges) == [], f"round {round_}"
        # Only what can hold a change is read: the fixed structures plus the touched blocks.
        touched = {b for off, n in virtual for b in range(off // MiB, (off + n - 1) // MiB + 1)}
        fixed = 1 + 1 + 1 + 1  # header section, log, metadata, BAT (1 MiB each here)
        bitmaps = 1 if differencing else 0
        assert sum(n for _, n in ranges) <= (fixed + bitmaps + len(touched)) * MiB + max(0, len(after) - len(before))


def test_no_change_reads_only_the_structures_and_a_refused_log_is_named(tmp_path: Path) -> None:
    path = tmp_path / "d.vhdx"
    vdisk.create_disk(path, SIZE)
    size = path.stat().st_size
    assert sum(n for _, n in file_ranges_for(path, [], size)) == 4 * MiB  # headers, log, metadata, BAT
    with pytest.raises(ValueError, match="outside"):
        file_ranges_for(path, [(SIZE - 10, 20)], size)
    import uuid

    with open(path, "r+b") as fh:
        fh.seek(fmt.HEADER_OFFSETS[1])
        fh.write(fmt.Header(9, uuid.uuid4(), uuid.uuid4(), log_guid=uuid.uuid4()).pack())
    with pytest.raises(HostError, match="log is not empty"):
        file_ranges_for(path, [(0, 10)], size)
