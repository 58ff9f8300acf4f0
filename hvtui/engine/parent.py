"""Which earlier restore point a backup builds on: an incremental on the VM's latest point,
a differential on its latest full one; a full backup on none."""

from __future__ import annotations

from hvtui.engine.manifest import Manifest
from hvtui.engine.repository import Repository
from hvtui.errors import RepositoryError


def select_parent(points: list[Manifest], host: str, vm_id: str, mode: str) -> Manifest | None:
    """The point an incremental (latest of the VM) or differential (latest full) builds on."""
    mine = [p for p in points if p.host == host and p.vm_id == vm_id]
    if mode == "differential":
        mine = [p for p in mine if p.mode == "full"]
    if mode == "full" or not mine:
        return None
    return max(mine, key=point_order)


def find_parent(repo: Repository, host: str, vm_id: str, mode: str) -> Manifest | None:
    """``select_parent`` without reading every manifest: newest first, stop at the first match.

    Point ids start with their time to the second, so once a match is found only the other
    points of that same second can still be newer (``point_order`` breaks the tie).
    """
    if mode == "full":
        return None
    found: list[Manifest] = []
    second: str | None = None
    for point_id in reversed(repo.point_ids()):
        if second is not None and not point_id.startswith(second):
            break
        try:
            manifest = repo.load_point(point_id)
        except RepositoryError:
            continue  # damaged or pruned meanwhile: verify reports it, a backup goes on
        if select_parent([manifest], host, vm_id, mode) is not None:
            found.append(manifest)
            second = point_id.split("-", 1)[0]
    return max(found, key=point_order) if found else None


def point_order(point: Manifest) -> tuple:
    return (point.time, point.stats.get("committed_ns", 0), point.id)
