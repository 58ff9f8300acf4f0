"""Hyper-V's 32 MiB blocks: an incremental maps a virtual change to the bytes inside the block
(when the previous point's BAT shows the block where it was), not to the whole block."""

from __future__ import annotations

import dataclasses
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from engine_support import DirHost
from test_vhdx_ranges import changed_bytes_outside

from hvtui.engine.backup import run_backup
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.hosts.base import SourceFile
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.vhdx import VhdxFile
from hvtui.hosts.vhdx.ranges import file_ranges_for

MiB = 1 << 20
BIG_BLOCK = 32 * MiB  # Hyper-V's default for a new VHDX
SIZE = 256 * MiB
FIXED = 4 * MiB  # header section, log, metadata, BAT


@pytest.mark.parametrize("differencing", [False, True])
def test_with_the_previous_bat_only_the_changed_pieces_are_read_and_every_changed_byte_is(
    tmp_path: Path, differencing: bool
) -> None:
    rng = random.Random(11 + differencing)
    base = tmp_path / "d.vhdx"
    vdisk.create_disk(base, SIZE, block_size=BIG_BLOCK)
    with vdisk.DiskChain.open(base, writable_top=True) as chain:
        for block in range(0, SIZE // BIG_BLOCK, 2):
            chain.write(block * BIG_BLOCK, rng.randbytes(BIG_BLOCK))
    top = base
    if differencing:
        top = tmp_path / "d_1.avhdx"
        vdisk.create_disk(top, SIZE, parent_name=base.name, block_size=BIG_BLOCK)
        with vdisk.DiskChain.open(top, writable_top=True) as chain:
            for block in range(0, SIZE // BIG_BLOCK, 3):
                chain.write(block * BIG_BLOCK + 5 * MiB + 100, rng.randbytes(3 * MiB))
    for round_ in range(3):
        before = top.read_bytes()
        with VhdxFile(top) as disk:
            previous = list(disk.load_bat())
        virtual: list[tuple[int, int]] = []
        with vdisk.DiskChain.open(top, writable_top=True) as chain:
            for _ in range(8):  # small and odd writes too: a host rewrites whole pages around them
                offset, length = rng.randrange(0, SIZE - 2 * MiB), rng.choice([1, 700, 4096, 70_000, MiB])
                chain.write(offset, rng.randbytes(length))
                virtual.append((offset, length))
        after = top.read_bytes()
        fine = file_ranges_for(top, virtual, len(before), previous)
        assert changed_bytes_outside(before, after, fine) == [], f"round {round_}"
        coarse = file_ranges_for(top, virtual, len(before))
        assert changed_bytes_outside(before, after, coarse) == []
        grown = max(0, len(after) - len(before))
        bitmaps = MiB if differencing else 0
        # 64 KiB pieces (two where a write crosses a boundary), plus what blocks newly allocated appended
        assert sum(n for _, n in fine) <= FIXED + bitmaps + sum(n + 2 * 64 * 1024 for _, n in virtual) + grown
        assert sum(n for _, n in fine) < sum(n for _, n in coarse)


class VhdxHost(DirHost):
    """The engine tests' directory host, its disk a genuine VHDX whose changes it reports in
    virtual-disk bytes, as Hyper-V's RCT does (recorded by ``guest_write``)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.virtual_log: list[tuple[int, int, int]] = []  # (reference point, offset, length)
        self.frozen: list[bytes] = []

    def guest_write(self, vm_id: str, offset: int, data: bytes) -> None:
        with vdisk.DiskChain.open(self.vm_dir(vm_id) / "disk.vhdx", writable_top=True) as chain:
            chain.write(offset, data)
        self.virtual_log.append((len(self.frozen), offset, len(data)))

    def open_backup_source(self, vm_id: str, progress=None, on_checkpoint=None, **options):  # noqa: ANN001, ANN003, ANN201
        source = super().open_backup_source(vm_id, progress, on_checkpoint, **options)
        path = self.vm_dir(vm_id) / "disk.vhdx"
        reference = len(self.frozen)
        self.frozen.append(path.read_bytes())

        def changes(since: str) -> list[tuple[int, int]]:
            return [(off, n) for ref, off, n in self.virtual_log if ref > int(since)]

        source.files = [
            dataclasses.replace(f, change_id=str(reference), changes=changes, virtual_ranges=True, local_path=path)
            if f.rel_path == "disk.vhdx"
            else f
            for f in source.files
        ]
        assert any(isinstance(f, SourceFile) and f.virtual_ranges for f in source.files)
        return source


def test_an_incremental_of_32_mib_blocks_reads_about_what_changed_and_restores_byte_identical(tmp_path: Path) -> None:
    host = VhdxHost(tmp_path / "host")
    vm_dir = host.add_vm("vm1", "vm1")
    disk = vm_dir / "disk.vhdx"
    vdisk.create_disk(disk, SIZE, block_size=BIG_BLOCK)
    rng = random.Random(5)
    for block in range(SIZE // BIG_BLOCK):  # every block allocated: 256 MiB of data
        host.guest_write("vm1", block * BIG_BLOCK, rng.randbytes(BIG_BLOCK))
    repo = Repository.open(tmp_path / "repo", create=True)
    full = run_backup(repo, host, "vm1", "full")
    changed = 0
    for i in range(3):  # about 1% of the data in scattered 1 MiB writes, each in another 32 MiB block
        host.guest_write("vm1", (3 * i + 1) * BIG_BLOCK + 7 * MiB, rng.randbytes(MiB))
        changed += MiB
    inc = run_backup(repo, host, "vm1", "incremental")
    assert inc.mode == "incremental" and inc.whole_reads == [] and inc.files_changed_ranges >= 1
    others = sum(p.stat().st_size for p in vm_dir.iterdir() if p.name != "disk.vhdx")
    assert inc.read_bytes <= 2 * changed + FIXED + others, (inc.read_bytes, changed)
    assert inc.read_bytes < full.read_bytes / 20
    out = tmp_path / "out"
    restore_to_directory(repo, inc.point_id, out)
    assert (out / "disk.vhdx").read_bytes() == host.frozen[-1]
    if shutil.which("qemu-img"):
        raw = tmp_path / "disk.raw"
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(out / "disk.vhdx"), str(raw)], check=True)
        assert raw.read_bytes() == vdisk.read_logical(disk)
