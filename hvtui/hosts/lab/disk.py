"""The lab's virtual disks: genuine dynamic VHDX base disks and differencing ``.avhdx`` chains.

The file format itself lives in ``hvtui.hosts.vhdx`` (MS-VHDX: identifier, two headers with
CRC-32C, two region tables, metadata, a BAT with interleaved sector-bitmap entries). This
module is what the lab does with such files:

- A base disk is dynamic: blocks absent from its BAT read as zeros; a write allocates a 1 MiB
  payload block at the end of the file (the rest of the block stays a hole).
- A checkpoint creates a differencing file whose parent locator names the parent (relative and
  absolute path) and records the parent's DataWriteGuid as its LinkageId. A write into a block
  the child does not hold allocates a partially present block and marks the written sectors in
  the chunk's sector bitmap; everything else reads through the parent, as on Hyper-V.
- Merges copy a child's present sectors into its parent ("overwrite"), or a parent's into a
  child that lacks them ("fill"); both are idempotent, so an interrupted merge can be re-run.

Block size is 1 MiB (VHDX's smallest): scattered guest writes stay small and payload blocks land
on the 1 MiB alignment offset-aligned backup chunking expects. Every function that modifies a
file returns the file byte ranges it wrote, for the lab's change-tracking log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hvtui.hosts.vhdx import format as fmt
from hvtui.hosts.vhdx.file import BLOCK_SIZE, Ranges, VhdxFile, align_up, bit_runs, create_vhdx, locator_for
from hvtui.hosts.vhdx.format import VhdxFormatError

__all__ = ["BLOCK_SIZE", "OLD_FORMAT_MAGIC", "PAGE", "DiskFormatError", "Ranges", "align_up", "is_old_lab_disk"]

PAGE = 4096
# The lab's own format before it wrote VHDX (hvtui ≤ 0.1 labs): detected so the lab can say so.
OLD_FORMAT_MAGIC = b"HVLABDSK"
DiskFormatError = VhdxFormatError


def is_old_lab_disk(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == OLD_FORMAT_MAGIC
    except OSError:
        return False


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
    parent_name: str | None

    @property
    def vhd_type(self) -> str:
        return "Differencing" if self.parent_name else "Dynamic"


class DiskFile(VhdxFile):
    """A lab disk file; its parent is named by file name in the same folder."""

    def set_parent(self, parent_name: str | None, folder: Path | None = None) -> Ranges:  # type: ignore[override]
        """Point the parent locator at ``parent_name`` beside this file (None: become a base disk);
        ``folder``: where the chain will live (a restore writes it in a staging folder first).

        The LinkageId is the parent's current DataWriteGuid when the parent is there; a restore
        renames a parent after its children, so then the old linkage (same content) is kept.
        """
        if parent_name is None:
            return super().set_parent(None)
        if (self.path.parent / parent_name).is_file():
            locator = locator_for(self.path, parent_name, folder=folder)
        elif self.parent is not None:
            locator = locator_for(self.path, parent_name, self.parent.linkage, folder)
        else:
            raise DiskFormatError(self.path, f"parent {parent_name} does not exist")
        return super().set_parent(locator)


def create_disk(
    path: Path,
    virtual_size: int,
    parent_name: str | None = None,
    block_size: int = BLOCK_SIZE,
    fsync: bool = True,
) -> DiskHeader:
    """Create an empty dynamic (no parent) or differencing disk file; fails if it exists."""
    locator = locator_for(path, parent_name) if parent_name else None
    create_vhdx(path, virtual_size, locator, block_size=block_size, fsync=fsync)
    return DiskHeader(block_size, virtual_size, parent_name)


def read_header(path: Path) -> DiskHeader:
    with DiskFile(path) as disk:
        return DiskHeader(disk.block_size, disk.virtual_size, disk.parent_name)


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
                files.append(disk)
                if len(files) > 1 and (disk.virtual_size, disk.block_size) != (files[0].virtual_size, files[0].block_size):
                    raise DiskFormatError(current, "parent's virtual size or block size differs from its child's")
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
        """The block as the guest sees it: each sector from the nearest file that holds it."""
        out: bytearray | None = None
        need = 0  # sectors still to find, once a partial block was met
        ss = self.top.sector_size
        for disk in self.files[1:] if below_top else self.files:
            mask = disk.sector_mask(index)
            if not mask:
                continue
            data = disk.read_block(index)
            assert data is not None
            if out is None:
                if disk.block_state(index) == fmt.PAYLOAD_FULLY_PRESENT:
                    return data
                out, need = bytearray(data), ((1 << disk.sectors_per_block) - 1) & ~mask
            else:
                for first, count in bit_runs(mask & need):
                    out[first * ss : (first + count) * ss] = data[first * ss : (first + count) * ss]
                need &= ~mask
            if not need:
                return bytes(out)
        if out is None:
            return bytes(self.block_size)
        for first, count in bit_runs(need):  # held nowhere: zeros
            out[first * ss : (first + count) * ss] = bytes(count * ss)
        return bytes(out)

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
        """Write into the top file; returns its changed ranges.

        A whole block is written as a fully present block; a part of one as whole 4 KiB pages,
        the physical sector size (the edges of an unaligned write are completed from what the
        guest reads there). Page granularity also keeps every sector-bitmap run 8-sector aligned,
        which dissect.hypervisor 3.21's reader needs (it misreads runs starting mid-byte).
        """
        if offset < 0 or offset + len(data) > self.virtual_size:
            raise ValueError(f"write of {len(data)} bytes at {offset} is outside the disk")
        top = self.top
        bs, ss = self.block_size, top.sector_size
        changed: Ranges = []
        pos = 0
        while pos < len(data):
            index, inner = divmod(offset + pos, bs)
            take = min(len(data) - pos, bs - inner)
            piece = data[pos : pos + take]
            if take == bs:
                changed += top.write_block(index, piece)
            else:
                first, end = inner // PAGE * PAGE, align_up(inner + take, PAGE)
                if first != inner or end != inner + take:
                    sectors = bytearray(self.read_block(index)[first:end])
                    sectors[inner - first : inner - first + take] = piece
                    piece = bytes(sectors)
                changed += top.write_sectors(index, first // ss, piece)
            pos += take
        return changed


def read_logical(path: Path, offset: int = 0, length: int | None = None) -> bytes:
    """The logical (guest-visible) content of the disk whose top file is ``path``."""
    with DiskChain.open(path) as chain:
        if length is None:
            length = chain.virtual_size - offset
        return chain.read(offset, length)


def _present_anywhere(chain: DiskChain) -> list[int]:
    present: set[int] = set()
    for disk in chain.files:
        present.update(disk.present_blocks())
    return sorted(present)


def iter_logical_blocks(path: Path) -> Iterator[tuple[int, bytes | None]]:
    """(block index, data) for every block present anywhere in the chain; data None = zeros."""
    with DiskChain.open(path) as chain:
        for index in _present_anywhere(chain):
            yield index, chain.read_block(index)


def logical_digest(path: Path) -> str:
    """A digest of the whole logical disk (cheap: skips blocks present nowhere)."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    with DiskChain.open(path) as chain:
        digest.update(chain.virtual_size.to_bytes(8, "little"))
        for index in _present_anywhere(chain):
            data = chain.read_block(index)
            if data == bytes(len(data)):
                continue  # a zero block reads the same as an absent one
            digest.update(index.to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()


def merge_cost(src: DiskFile, dst: DiskFile, mode: str) -> tuple[int, int]:
    """(bytes copied, bytes newly allocated in ``dst``) for ``merge_into``."""
    src_blocks = src.present_blocks()
    new = sum(1 for i in src_blocks if not dst.block_offset(i))
    copied = len(src_blocks) if mode == "overwrite" else new
    return copied * src.block_size, new * src.block_size


def merge_into(
    src: DiskFile,
    dst: DiskFile,
    mode: str,
    on_block: Callable[[int], None] | None = None,
) -> Ranges:
    """Copy ``src``'s sectors into ``dst``.

    ``mode`` "overwrite": every sector ``src`` holds replaces ``dst``'s (a child merged into its
    parent). "fill": only sectors ``dst`` lacks (a parent merged into its child, whose own
    sectors are newer; the child's guest-visible data is unchanged, so it keeps its
    DataWriteGuid). Both are idempotent, so an interrupted merge can be re-run.
    Returns ``dst``'s changed ranges.
    """
    if mode not in ("overwrite", "fill"):
        raise ValueError(f"unknown merge mode {mode!r}")
    if src.block_size != dst.block_size or src.virtual_size != dst.virtual_size or src.sector_size != dst.sector_size:
        raise DiskFormatError(dst.path, f"cannot merge {src.path.name}: different geometry")
    dst.preserve_data_guid = mode == "fill"
    ss = src.sector_size
    changed: Ranges = []
    for index in src.present_blocks():
        mask = src.sector_mask(index)
        if mode == "fill":
            mask &= ~dst.sector_mask(index)
            if not mask:
                continue
        data = src.read_block(index)
        assert data is not None
        if mask == (1 << src.sectors_per_block) - 1:
            changed += dst.write_block(index, data)
        else:
            for first, count in bit_runs(mask):
                changed += dst.write_sectors(index, first, data[first * ss : (first + count) * ss])
        if on_block is not None:
            on_block(len(data))
    dst.fsync()
    return coalesce(changed, PAGE)
