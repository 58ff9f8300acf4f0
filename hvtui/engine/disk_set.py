"""The VM's drives as a backup sees them, and what changed in them since the previous point.

A drive is known by the identity of its chain's base file (a new checkpoint adds a differencing
file to a drive, not a drive). Each point records its drives; the next backup compares, so a disk
added, removed or replaced, or a VM re-imported under a new id with the same disks, is named as the
reason for what it reads whole instead of passing for an ordinary new file or a first backup.
"""

from __future__ import annotations

from dataclasses import dataclass

from hvtui.engine.manifest import Manifest
from hvtui.engine.pointindex import PointSummary, summary_order
from hvtui.engine.repository import Repository
from hvtui.errors import RepositoryError
from hvtui.hosts.base import BackupSource, SourceFile

DISK_SUFFIXES = (".vhdx", ".avhdx", ".vhd", ".avhd")


@dataclass(frozen=True, slots=True)
class Drive:
    identity: str  # of the base file of its chain
    path: str  # the base file, relative to the VM's folder
    files: tuple[str, ...]  # every file of its chain the backup holds (relative paths)


@dataclass(frozen=True, slots=True)
class DiskSetChange:
    added: tuple[Drive, ...]
    removed: tuple[str, ...]  # base files of drives gone since the previous point
    replaced: tuple[str, ...]  # a drive whose base file at the same path is another disk

    def sentence(self, point_id: str) -> str:
        parts = [f"{verb} {', '.join(paths)}" for verb, paths in (
            ("added", [d.path for d in self.added if d.path not in self.replaced]),
            ("removed", [p for p in self.removed if p not in self.replaced]),
            ("replaced", list(self.replaced)),
        ) if paths]
        return f"the disk set changed since restore point {point_id}: {'; '.join(parts)}"


def drives_of(source: BackupSource) -> list[Drive]:
    """The VM's drives whose files the backup holds, each by its base file's identity."""
    by_rel = {sf.rel_path: sf for sf in source.files}
    drives: list[Drive] = []
    for disk in source.vm.disks:
        links = [link.path for link in disk.chain] or [disk.path]
        files = [sf for sf in (_file_at(by_rel, path) for path in links) if sf is not None]
        base = _file_at(by_rel, links[-1])
        if base is not None:
            drives.append(Drive(base.identity, base.rel_path, tuple(sf.rel_path for sf in files)))
    return drives


def record(drives: list[Drive]) -> list[dict[str, str]]:
    """The drives as a point's VM facts keep them."""
    return [{"identity": d.identity, "path": d.path} for d in drives]


def recorded(point: Manifest) -> dict[str, str] | None:
    """{identity: base path} of the drives ``point`` recorded; None for a point from before drives
    were recorded, or a damaged record (then nothing is claimed about the disk set)."""
    items = point.vm.get("drives") if isinstance(point.vm, dict) else None
    if not isinstance(items, list):
        return None
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("identity"), str) or not isinstance(item.get("path"), str):
            return None
        out[item["identity"]] = item["path"]
    return out


def compare(drives: list[Drive], parent: Manifest) -> DiskSetChange | None:
    """What changed in the drives since ``parent``; None when nothing did (or it cannot tell)."""
    before = recorded(parent)
    if before is None:
        return None
    now = {d.identity for d in drives}
    added = tuple(d for d in drives if d.identity not in before)
    removed = tuple(sorted(path for identity, path in before.items() if identity not in now))
    replaced = tuple(sorted({d.path for d in added} & set(removed)))
    if not added and not removed:
        return None
    return DiskSetChange(added, removed, replaced)


def disk_identities(files: list[SourceFile]) -> set[str]:
    return {sf.identity for sf in files if sf.rel_path.lower().endswith(DISK_SUFFIXES)}


def find_reimported(repo: Repository, host: str, vm_id: str, files: list[SourceFile]) -> Manifest | None:
    """The newest point of this host under another VM id that holds one of these disks: the VM
    was re-imported (Hyper-V gave it a new id; its disks are the same)."""
    mine = disk_identities(files)
    if not mine:
        return None
    try:
        summaries, _damaged = repo.point_summaries()
    except (RepositoryError, OSError):
        return None
    latest: dict[str, PointSummary] = {}  # per other VM id: only its newest point is looked at
    for summary in summaries:
        if summary.host == host and summary.vm_id != vm_id:
            known = latest.get(summary.vm_id)
            if known is None or summary_order(summary) > summary_order(known):
                latest[summary.vm_id] = summary
    for summary in sorted(latest.values(), key=summary_order, reverse=True):
        try:
            point = repo.load_point(summary.id)
        except RepositoryError:
            continue
        if mine & {f.identity for f in point.files}:
            return point
    return None


def _file_at(by_rel: dict[str, SourceFile], host_path: str) -> SourceFile | None:
    """The backup's file at ``host_path`` (a host path; the file's path is relative to the VM's folder)."""
    path = host_path.replace("\\", "/")
    for rel, sf in by_rel.items():
        if path == rel or path.endswith("/" + rel):
            return sf
    return None
