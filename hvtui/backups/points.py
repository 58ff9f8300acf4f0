"""Restore points as the backup service lists them: ``PointInfo``, ``DamagedManifest``,
``PointListing``, ``VMPoints`` (which points are a VM's), and ``PointIndex``, the per-repository listing cache behind them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hvtui.engine.manifest import POINT_ID_RE
from hvtui.engine.pointindex import PointSummary
from hvtui.engine.repository import Repository
from hvtui.errors import RepositoryError
from hvtui.model import RestorePointSummary


@dataclass(frozen=True, slots=True)
class DamagedManifest:
    """A manifest under ``points/`` that cannot be read, so its point is neither listed nor restorable.

    It cannot be attributed to a VM (its contents cannot be trusted), so callers show it
    whatever VM they list.
    """

    id: str  # the file name without ".json": a point id, unless a stray file
    repository: str
    error: str  # the problem, e.g. "checksum mismatch: the file was altered or truncated"

    @property
    def time(self) -> datetime | None:
        """The point's time to the second (point ids start with it); None for a stray name."""
        if not POINT_ID_RE.match(self.id):
            return None
        try:
            return datetime.strptime(self.id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "repository": self.repository, "error": self.error}


@dataclass(slots=True)
class PointInfo:
    """A point with the repository it lives in (``summary`` is what the console shows)."""

    summary: RestorePointSummary
    repository: str
    parent: str | None
    files: int
    committed_ns: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PointListing:
    """Readable restore points (oldest first) and every damaged manifest of the same repositories."""

    points: list[PointInfo]
    damaged: list[DamagedManifest]
    unreadable: list[tuple[str, RepositoryError]] = field(default_factory=list)  # (repository, why)
    format_1: list[str] = field(default_factory=list)  # repositories searched that `repo migrate` would convert

    def damaged_newer_than(self, point: PointInfo) -> list[DamagedManifest]:
        """Damaged manifests that may be a newer point than ``point`` (same second counts).

        Ids carry the time only to the second, so a damaged point taken in the same second
        may be the newer one; a stray name without a time is not a point and not counted.
        """
        floor = point.summary.time.astimezone(UTC).replace(microsecond=0)
        return [d for d in self.damaged if d.id != point.summary.id and (when := d.time) is not None and when >= floor]


def earlier_id_note(vm_id: str) -> str:
    """How a point of the same host and VM name under another VM id is marked wherever it is shown."""
    return f"same name, earlier VM id {vm_id}"


@dataclass(slots=True)
class VMPoints:
    """A VM's restore points by the one rule (README, "Which restore points are a VM's").

    Id first: the points under the VM's id are its own, and only they are ever built on.  The
    points of the same host and VM name under an id no VM on the host has now (a lab reset, a
    re-imported or re-registered VM) may be the same VM: when it has no point of its own they
    are offered in their place ("the same VM?"), listed and restorable, each marked
    ``earlier_id_note``, never the parent of an incremental; when it has, they are only named.
    """

    vm_id: str
    own: list[PointInfo]  # oldest first
    same_name: list[PointInfo]  # oldest first: same host and name, an id no VM on the host has now
    listing: PointListing  # the host's listing they came from (damaged manifests, unreadable repositories)

    @property
    def points(self) -> list[PointInfo]:
        """What to show and offer for restore: the own points, else the same-name ones."""
        return self.own or self.same_name

    @property
    def offers_earlier(self) -> bool:
        """True when the points shown are the same-name ones of earlier ids."""
        return not self.own and bool(self.same_name)

    @property
    def earlier_ids(self) -> list[str]:
        return sorted({i.summary.vm_id for i in self.same_name})

    def note(self, info: PointInfo | RestorePointSummary) -> str | None:
        """``earlier_id_note`` for a point under another id than the VM's, None for its own."""
        summary = info.summary if isinstance(info, PointInfo) else info
        return None if summary.vm_id == self.vm_id else earlier_id_note(summary.vm_id)

    def earlier_text(self) -> str:
        """One line on the same-name points: "2 points of the same name, earlier VM id X"."""
        count = len(self.same_name)
        ids = ", ".join(self.earlier_ids)
        return f"{count} point{'s' if count != 1 else ''} of the same name, earlier VM id {ids}"


def vm_points(listing: PointListing, vm_id: str, vm_name: str, current_ids: set[str]) -> VMPoints:
    """``VMPoints`` of one VM from its host's ``listing``; ``current_ids``: the ids the host has now."""
    own = [i for i in listing.points if i.summary.vm_id == vm_id]
    wanted = vm_name.casefold()
    same_name = [
        i
        for i in listing.points
        if i.summary.vm_name.casefold() == wanted and i.summary.vm_id != vm_id and i.summary.vm_id not in current_ids
    ]
    return VMPoints(vm_id, own, same_name, listing)


class PointIndex:
    """Each repository's points and damaged manifests, re-read only when something changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Per repository: (manifest names, verification records) -> (summaries oldest first, damaged).
        self._index: dict[str, tuple[tuple, list[PointInfo], list[DamagedManifest]]] = {}
        self._latest: dict[str, dict[tuple[str, str], datetime]] = {}  # newest point time per (host, VM id)
        self._checked: dict[str, float] = {}  # when each repository's listing was last compared

    def points_of(self, repo: Repository) -> tuple[list[PointInfo], list[DamagedManifest]]:
        """The repository's points (oldest first) and damaged manifests, re-read only when something changed.

        The key is ``Repository.listing_key``: each manifest's name and stamp (on object storage one
        LIST of the bucket, so another machine's point shows) plus the verification records' times;
        directory mtimes alone are too coarse (two commits within one clock tick look the same).
        """
        key = repo.listing_key()
        with self._lock:
            cached = self._index.get(repo.name)
        if cached is not None and cached[0] == key:
            with self._lock:
                self._checked[repo.name] = time.monotonic()
            return cached[1], cached[2]
        summaries, bad = repo.point_summaries()  # format 2: one small object, not every manifest
        infos = [self._info(repo, m) for m in summaries]
        damaged = sorted((DamagedManifest(err.point or "?", repo.name, err.reason) for err in bad), key=lambda d: d.id)
        latest: dict[tuple[str, str], datetime] = {}
        for info in infos:
            vm_key = (info.summary.host, info.summary.vm_id)
            if vm_key not in latest or info.summary.time > latest[vm_key]:
                latest[vm_key] = info.summary.time
        with self._lock:
            self._index[repo.name] = (key, infos, damaged)
            self._latest[repo.name] = latest
            self._checked[repo.name] = time.monotonic()
        return infos, damaged

    def fresh_points_of(
        self, repo: Repository, recheck_seconds: float
    ) -> tuple[list[PointInfo], list[DamagedManifest]]:
        """``points_of``, trusting a listing checked less than ``recheck_seconds`` ago.

        The console asks for every VM's last backup on every refresh; re-listing the
        repository for each VM would cost O(VMs x points).  This process's own changes
        invalidate at once; other processes' show within ``recheck_seconds``.
        """
        with self._lock:
            checked = self._checked.get(repo.name)
            cached = self._index.get(repo.name)
        if cached is not None and checked is not None and time.monotonic() - checked < recheck_seconds:
            return cached[1], cached[2]
        return self.points_of(repo)

    def latest(self, repo_name: str, host: str, vm_id: str) -> datetime | None:
        """The newest point time of the VM in the repository as last listed."""
        with self._lock:
            return self._latest.get(repo_name, {}).get((host, vm_id))

    def invalidate(self, repo_name: str) -> None:
        with self._lock:
            self._checked.pop(repo_name, None)

    @staticmethod
    def _info(repo: Repository, m: PointSummary) -> PointInfo:
        record = repo.verification(m.id)
        return PointInfo(
            summary=RestorePointSummary(
                id=m.id,
                host=m.host,
                vm_id=m.vm_id,
                vm_name=m.vm_name,
                time=m.time,
                mode=m.mode,
                logical_bytes=m.logical_bytes,
                stored_bytes=m.stored_bytes,
                verified=None if record is None else bool(record.get("ok")),
                repository=repo.name,
            ),
            repository=repo.name,
            parent=m.parent,
            files=m.files,
            committed_ns=m.committed_ns,
        )
