"""Retention (GFS, Proxmox Backup Server semantics) and prune.

Per VM, points are sorted newest first and the rules run in order keep-last, hourly,
daily, weekly (ISO week), monthly, yearly.  Each rule keeps the newest point of each of
its next N periods, considering only points no earlier rule has decided on (a point that
lost to a newer one in its period is not reconsidered by a later rule).  Periods are in
UTC.  With every rule at 0 nothing is removed.

Prune removes the expired manifests first, then, under the exclusive lock, every chunk no
remaining manifest references.  If any manifest is damaged, chunks are left alone: what it
references cannot be known.  Chunk objects a verify quarantined (``<id>.bad``) are never
removed: they are counted in the result for a person to examine and delete.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from hvtui.config import Retention
from hvtui.engine.layout import is_own_tmp_name, regular_file, require_real_dir
from hvtui.engine.locks import VMLock, vm_label
from hvtui.engine.manifest import Manifest
from hvtui.engine.packstore import PackStore
from hvtui.engine.parent import point_order
from hvtui.engine.progress import DEFAULT_INTERVAL, Meter
from hvtui.engine.repository import Repository
from hvtui.engine.store import ChunkStore
from hvtui.errors import Cancelled
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.files import fsync_dir

RULES: tuple[tuple[str, str | None], ...] = (
    ("keep_last", None),
    ("keep_hourly", "%Y-%m-%d %H"),
    ("keep_daily", "%Y-%m-%d"),
    ("keep_weekly", "%G-W%V"),
    ("keep_monthly", "%Y-%m"),
    ("keep_yearly", "%Y"),
)


@dataclass(frozen=True, slots=True)
class Decision:
    point: str
    host: str
    vm_id: str
    vm_name: str
    time: str
    mode: str
    keep: bool
    reason: str  # the rule that kept it ("keep_daily 2026-11-24"), or why it goes


def select_retention(points: list[Manifest], retention: Retention) -> list[Decision]:
    """Decide keep/remove for the points of one VM (any order in, newest first out)."""
    ordered = sorted(points, key=point_order, reverse=True)
    marks: dict[str, tuple[bool, str]] = {}
    if all(getattr(retention, name) <= 0 for name, _ in RULES):
        marks = {p.id: (True, "no retention rule set: keep all") for p in ordered}
    for name, fmt in RULES:
        keep_n = getattr(retention, name)
        if keep_n <= 0:
            continue

        def period(p: Manifest, fmt: str | None = fmt) -> str:
            return p.id if fmt is None else p.time.astimezone(UTC).strftime(fmt)

        already = {period(p) for p in ordered if marks.get(p.id, (False, ""))[0]}
        included: set[str] = set()
        for p in ordered:
            if p.id in marks:
                continue
            sel = period(p)
            if sel in already:
                continue
            if sel not in included:
                if len(included) >= keep_n:
                    break
                included.add(sel)
                marks[p.id] = (True, name if fmt is None else f"{name} {sel}")
            else:
                marks[p.id] = (False, f"a newer point covers {sel} ({name})")
    out = []
    for p in ordered:
        keep, reason = marks.get(p.id, (False, "beyond every retention rule"))
        out.append(Decision(p.id, p.host, p.vm_id, p.vm_name, p.time.isoformat(), p.mode, keep, reason))
    return out


def plan_retention(
    points: list[Manifest], retention: Retention, host: str | None = None, vm_id: str | None = None
) -> list[Decision]:
    groups: dict[tuple[str, str], list[Manifest]] = {}
    for p in points:
        if (host is None or p.host == host) and (vm_id is None or p.vm_id == vm_id):
            groups.setdefault((p.host, p.vm_id), []).append(p)
    decisions: list[Decision] = []
    for key in sorted(groups):
        decisions.extend(select_retention(groups[key], retention))
    return decisions


@dataclass(slots=True)
class PruneResult:
    repository: str
    dry_run: bool
    decisions: list[Decision] = field(default_factory=list)
    points_removed: int = 0
    chunks_removed: int = 0
    bytes_freed: int = 0
    chunks_unreferenced: int = 0  # dry run: what a real prune would remove (estimate)
    gc_skipped: str | None = None  # why unreferenced chunks were left alone
    quarantined_files: int = 0  # chunk objects verify quarantined (<id>.bad): kept, never removed by prune
    quarantined_bytes: int = 0
    quarantined_packs: int = 0  # format 2: packs holding a chunk verify found damaged (counted in the two above)
    waited_for: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def removed(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["removed"] = [d.point for d in self.removed]
        out["kept"] = [d.point for d in self.kept]
        out["duration"] = round(self.duration, 3)
        return out


def _count_quarantined(result: PruneResult, files: list[Path]) -> None:
    """Quarantined objects are evidence of damage: counted and reported, left for a person."""
    for path in files:
        with contextlib.suppress(OSError):
            result.quarantined_bytes += path.stat().st_size
            result.quarantined_files += 1


def _count_evidence(result: PruneResult, packs: dict[str, int | None]) -> None:
    """Format 2: packs holding a blob verify found damaged (on disk or in a bucket alike)."""
    result.quarantined_packs = len(packs)
    present = [size for size in packs.values() if size is not None]
    result.quarantined_files += len(present)
    result.quarantined_bytes += sum(present)


def forget_expired(
    repo: Repository,
    retention: Retention,
    host: str,
    vm_id: str,
    lock_timeout: float | None = 600.0,
    vm_name: str | None = None,
) -> list[str]:
    """Apply retention to one VM's points right after its backup (manifests only).

    Deleting manifests is safe under the shared lock: every point is self-contained, and
    chunks are only ever removed by ``run_prune`` under the exclusive lock.
    """
    lock = repo.lock("shared", "retention", vm_label(host, vm_id, vm_name))
    lock.acquire(lock_timeout)
    try:
        with VMLock(repo.root, host, vm_id, vm_name).acquire():
            points, _bad = repo.load_points()
            doomed = [d.point for d in plan_retention(points, retention, host, vm_id) if not d.keep]
            for point_id in doomed:
                repo.delete_point(point_id)
            if doomed:
                repo.sync_points_dir()
            return doomed
    finally:
        lock.release()


def run_prune(
    repo: Repository,
    retention: Retention,
    dry_run: bool = False,
    *,
    host: str | None = None,
    vm_id: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    progress_interval: float = DEFAULT_INTERVAL,
    lock_timeout: float | None = 3600.0,
) -> PruneResult:
    """Remove expired points, then unreferenced chunks.  A dry run changes nothing.

    The real run waits for the exclusive lock (running backups, restores and verifies
    finish first).
    """
    cancel = cancel or CancelToken()
    meter = Meter(progress, progress_interval)
    started = time.monotonic()
    result = PruneResult(repository=repo.name, dry_run=dry_run)

    def on_wait(message: str) -> None:
        if progress is not None:
            progress(Progress(phase="lock", message=message))

    lock = repo.lock("shared" if dry_run else "exclusive", "prune", "dry run" if dry_run else "")
    lock.acquire(lock_timeout, cancel, on_wait)
    result.waited_for = list(lock.waited_for)
    try:
        meter.start_phase("prune", message="reading restore points")
        points, bad = repo.load_points()
        result.decisions = plan_retention(points, retention, host, vm_id)
        doomed = {d.point for d in result.removed}
        kept = [p for p in points if p.id not in doomed]
        referenced: set[bytes] = set()
        for p in kept:
            referenced |= p.chunk_ids()
        if bad:
            names = ", ".join(e.point or "?" for e in bad)
            result.gc_skipped = (
                f"damaged manifest(s) {names}: their chunks cannot be told apart, so no chunk was removed"
            )
        quarantined: list[Path] = []
        if dry_run:
            if not bad:
                if isinstance(repo.store, PackStore):
                    result.chunks_unreferenced = repo.store.unreferenced(referenced)
                    _count_evidence(result, repo.store.evidence_packs())
                else:
                    result.chunks_unreferenced = sum(1 for d in repo.store.iter_ids(quarantined) if d not in referenced)
                _count_quarantined(result, quarantined)
            return result
        cancel.check()
        meter.start_phase("prune", total=len(doomed), message="removing expired restore points")
        for point_id in sorted(doomed):
            repo.delete_point(point_id)
            result.points_removed += 1
            meter.add(done=1)
            meter.emit()
        repo.sync_points_dir()
        if bad:
            return result
        meter.start_phase("gc", message="removing unreferenced chunks")
        touched: set[str] = set()
        if isinstance(repo.store, PackStore):
            result.chunks_removed, result.bytes_freed = repo.store.sweep(referenced, lock.id)
            _count_evidence(result, repo.store.evidence_packs())
        for digest in list(repo.store.iter_ids(quarantined)) if isinstance(repo.store, ChunkStore) else []:
            if cancel.cancelled:
                raise Cancelled("prune cancelled (expired points are gone; some unreferenced chunks remain)")
            if digest in referenced:
                continue
            result.bytes_freed += repo.store.delete(digest)
            result.chunks_removed += 1
            touched.add(digest.hex()[:2])
            meter.add(done=1)
            meter.emit()
        for prefix in sorted(touched):
            fsync_dir(repo.store.chunks_dir / prefix)
        _count_quarantined(result, quarantined)
        # Nobody else holds a lock: every temporary file hvtui named is a leftover (and
        # nothing else in tmp/ is hvtui's to delete).
        require_real_dir(repo.tmp_dir)
        with contextlib.suppress(OSError):
            for name in os.listdir(repo.tmp_dir):
                if is_own_tmp_name(name) and regular_file(repo.tmp_dir / name):
                    with contextlib.suppress(OSError):
                        os.unlink(repo.tmp_dir / name)
    finally:
        lock.release()
        result.duration = time.monotonic() - started
    meter.start_phase("done", message=f"removed {result.points_removed} points, {result.chunks_removed} chunks")
    return result
