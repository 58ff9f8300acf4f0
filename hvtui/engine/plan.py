"""What a backup reads: per file, the chunks that changed since the parent point, and the rest taken from it.

Files are matched to the parent point by identity, then by path; unchanged files are
referenced whole, Resilient Change Tracking ranges narrow a changed file to the chunks
it touches, and chunks the parent lists but the repository lost are read again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from hvtui.engine.chunking import MAX_POINT_CHUNKS, chunk_count, chunk_span, chunks_touching
from hvtui.engine.manifest import FileEntry, Manifest, check_rel_path
from hvtui.engine.store import ChunkStore
from hvtui.engine.vhdx_changes import ReadChunk, file_ranges, virtual_size_of
from hvtui.errors import HvtuiError, RepositoryError
from hvtui.hosts.base import SourceFile

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FilePlan:
    source: SourceFile
    entry: FileEntry
    read: Sequence[int]  # chunk indexes to read, ascending
    how: str  # unchanged, changed-ranges, read
    reused_bytes: int = 0
    reread: int = 0  # chunks the parent lists but the repository lacks: read again
    # Why a tracked disk file that had a previous point was read whole (rct-invalid, resized, ...).
    whole_read_reason: str | None = None
    virtual_size: int | None = None  # of a VHDX file whose changes are tracked in virtual bytes


def reread_missing_chunks(plans: list[FilePlan], store: ChunkStore, chunk_size: int) -> int:
    """Read again what a plan would take from the parent but the repository no longer has.

    A chunk quarantined by verify (or lost) must not be referenced by a new point just
    because the parent listed it: each distinct reused chunk is looked up once (a stat,
    cheap next to reading data) and a missing one is added to the file's reads, which
    stores it again and heals the older points that reference it.  Returns the number of
    chunk positions added.
    """
    present: dict[bytes, bool] = {}
    added = 0
    for plan in plans:
        if plan.how == "read":
            continue
        reading = set(plan.read)
        missing: list[int] = []
        for index, digest in enumerate(plan.entry.chunks):
            if digest is None or index in reading:
                continue
            found = present.get(digest)
            if found is None:
                found = present[digest] = store.has(digest)
            if not found:
                missing.append(index)
        if not missing:
            continue
        for index in missing:
            plan.entry.chunks[index] = None  # the reader fills it in
            plan.reused_bytes -= chunk_span(index, plan.entry.size, chunk_size)[1]
        plan.read = sorted(reading.union(missing))
        plan.reread = len(missing)
        added += len(missing)
    return added


def plan_files(
    files: list[SourceFile], parent: Manifest | None, chunk_size: int, reuse: bool, read_chunk: ReadChunk | None = None
) -> list[FilePlan]:
    """Decide per file what must be read; everything else is taken from ``parent``.

    ``reuse`` False (a full backup) reads every file whole.  Files are matched to the parent
    by identity (a disk id survives a rename), then by path.  ``read_chunk`` (the repository's
    chunks by digest) lets a VHDX's changes be mapped finer than whole blocks.
    """
    by_identity: dict[str, FileEntry] = {}
    by_path: dict[str, FileEntry] = {}
    if parent is not None and parent.chunk_size == chunk_size:
        for old in parent.files:
            by_identity.setdefault(old.identity, old)
            by_path.setdefault(old.path, old)
    positions = sum(chunk_count(sf.size, chunk_size) for sf in files)
    if positions > MAX_POINT_CHUNKS:  # the same bound every reader applies to a manifest
        raise RepositoryError(
            f"the VM's files are {sum(sf.size for sf in files)} bytes, {positions} chunks of {chunk_size} bytes: "
            f"more than a restore point may hold ({MAX_POINT_CHUNKS} chunks); use a repository with bigger chunks"
        )
    plans: list[FilePlan] = []
    seen: set[str] = set()
    for sf in files:
        path = check_rel_path(sf.rel_path)
        if path in seen:
            raise RepositoryError(f"the backup source lists {path!r} twice")
        seen.add(path)
        n = chunk_count(sf.size, chunk_size)
        entry = FileEntry(path, sf.size, sf.mtime_ns, sf.identity, sf.change_id, [None] * n)
        old = (by_identity.get(sf.identity) or by_path.get(path)) if reuse else None
        virtual_size, vhdx_error = virtual_size_of(sf)
        if old is None:  # new to the VM (a checkpoint's new .avhdx, an added disk): nothing to build on
            plans.append(FilePlan(sf, entry, range(n), "read", virtual_size=virtual_size))
            continue
        same_change = old.change_id == sf.change_id or old.change_id is None or sf.change_id is None
        if old.identity == sf.identity and old.size == sf.size and old.mtime_ns == sf.mtime_ns and same_change:
            entry.chunks = list(old.chunks)
            plans.append(FilePlan(sf, entry, (), "unchanged", sf.size, virtual_size=virtual_size))
            continue
        ranges = None
        why: str | None = None
        if old.identity != sf.identity:
            why = "another disk than the previous point's at this path (the disk set changed)"
        elif not old.change_id:
            why = "the previous point recorded no change tracking (RCT) id for it"
        elif not sf.change_id:
            why = "the host tracks no changes for it now"
        else:
            try:
                ranges = sf.changed_ranges(old.change_id)
            except HvtuiError as err:
                kind = getattr(err, "kind", "failed")
                why = f"{kind}: {getattr(err, 'detail', err)}"
                ranges = None
            if ranges is None and why is None:
                why = "the host does not know what changed since the previous point"
        if ranges is not None and sf.virtual_ranges:
            ranges, why = file_ranges(sf, ranges, old, parent, virtual_size, vhdx_error, chunk_size, read_chunk)
        if ranges is None:
            if why is not None and sf.change_id is not None:
                log.info("%s: read whole: %s", path, why)
            plans.append(FilePlan(sf, entry, range(n), "read", whole_read_reason=why if sf.change_id else None,
                                  virtual_size=virtual_size))
            continue
        if sf.virtual_ranges and not ranges and old.size == sf.size and old.mtime_ns == sf.mtime_ns:
            entry.chunks = list(old.chunks)  # RCT says nothing changed and the file was not touched
            plans.append(FilePlan(sf, entry, (), "unchanged", sf.size, virtual_size=virtual_size))
            continue
        # Chunks past the shorter of the two sizes are read too: the last one changed length.
        common = min(old.size, sf.size) // chunk_size
        to_read = chunks_touching(ranges, sf.size, chunk_size) | set(range(common, n))
        for i in range(min(n, len(old.chunks))):
            if i not in to_read:
                entry.chunks[i] = old.chunks[i]
        reused = sum(chunk_span(i, sf.size, chunk_size)[1] for i in range(n) if i not in to_read)
        plans.append(FilePlan(sf, entry, sorted(to_read), "changed-ranges", reused, virtual_size=virtual_size))
    return plans
