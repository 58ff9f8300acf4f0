"""Repository maintenance for the backup service: verify, prune, repair, and the retention
applied after each backup.

``Backups`` resolves which repository (and point) is meant and hands the work here; the
same safety rules hold (``guard``): read-only refuses prune and repair and keeps verify
from quarantining, and every change is audit-logged.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from hvtui.audit import AuditLog
from hvtui.backups.guard import SafetyGuard
from hvtui.backups.points import PointIndex
from hvtui.backups.repositories import RepositoryList
from hvtui.clock import Clock
from hvtui.config import RepositoryConfig, Retention
from hvtui.engine.backup import BackupResult
from hvtui.engine.prune import PruneResult, forget_expired, run_prune
from hvtui.engine.repair import ConfigRepairPlan, plan_config_repair, repair_config
from hvtui.engine.repository import Repository
from hvtui.engine.verify import VerifyReport, run_verify
from hvtui.errors import HvtuiError
from hvtui.events import CancelToken, ProgressCallback


@dataclass(frozen=True, slots=True)
class Timing:
    progress_interval: float
    lock_timeout: float | None


class RepositoryMaintenance:
    def __init__(
        self, repositories: RepositoryList, points: PointIndex, guard: SafetyGuard, audit: AuditLog, clock: Clock
    ) -> None:
        self._repositories = repositories
        self._points = points
        self._guard = guard
        self._audit = audit
        self._clock = clock

    def verify(
        self,
        repo: Repository,
        point_id: str | None,
        quick: bool,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
        timing: Timing,
        read_share: float = 1.0,
    ) -> VerifyReport:
        """Check ``repo`` (or its point ``point_id``); ``read_share``: ``run_verify``'s.

        A full check quarantines each damaged chunk (renamed ``<id>.bad``, never deleted) so
        the next backup stores it again; audit-logged.  Read-only: it only reports (and the
        report says the repair was not done).
        """
        writable = not self._guard.read_only
        try:
            report = run_verify(
                repo,
                point_id,
                quick,
                progress=progress,
                cancel=cancel,
                clock=self._clock,
                record=writable,
                repair=writable,
                progress_interval=timing.progress_interval,
                lock_timeout=timing.lock_timeout,
                read_share=read_share,
            )
        finally:
            self._points.invalidate(repo.name)  # verification records changed
        if report.quarantined:
            args = {
                "repository": repo.name,
                "chunks": report.quarantined,
                "points": sorted({p for c in report.chunk_problems if c.quarantined_as for p in c.points}),
            }
            self._guard.audit_record("verify.quarantine", f"repository:{repo.name}", None, args, "ok", None)
        return report

    def prune(
        self,
        rc: RepositoryConfig,
        dry_run: bool,
        host: str | None,
        vm_id: str | None,
        retention: Retention | None,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
        timing: Timing,
    ) -> PruneResult:
        """Apply the repository's retention, then remove unreferenced chunks (waits for backups)."""
        repo = self._repositories.require_repository(rc.name)
        keep = retention or rc.retention
        args = {"repository": rc.name, "dry_run": dry_run, "host": host, "vm_id": vm_id}
        if not dry_run:
            self._guard.refuse_if_read_only("prune", None, None, args)
        call = {
            "host": host,
            "vm_id": vm_id,
            "progress": progress,
            "cancel": cancel,
            "progress_interval": timing.progress_interval,
            "lock_timeout": timing.lock_timeout,
        }
        if dry_run:
            return run_prune(repo, keep, True, **call)
        with self._audit.action("prune", f"repository:{rc.name}", None, args) as entry:
            try:
                result = run_prune(repo, keep, False, **call)
            finally:
                self._points.invalidate(rc.name)
            entry.args.update(
                points_removed=result.points_removed,
                removed=[d.point for d in result.removed],
                chunks_removed=result.chunks_removed,
                bytes_freed=result.bytes_freed,
            )
        return result

    def repair(self, rc: RepositoryConfig) -> tuple[ConfigRepairPlan, str | None]:
        """Rebuild the lost or damaged ``config.json`` of a repository from its points and chunks.

        Refused read-only; audit-logged.  Returns the plan carried out and the name the
        damaged config.json was kept under (None when it was missing).
        """
        args: dict[str, Any] = {"repository": rc.name, "path": str(rc.path)}
        self._guard.refuse_if_read_only("repair-repository", None, None, args)
        plan = plan_config_repair(rc.path)
        with self._audit.action("repair-repository", f"repository:{rc.name}", None, {**args, **plan.to_dict()}) as entry:
            kept = repair_config(plan)
            if kept is not None:
                entry.args["kept_as"] = kept
        self._repositories.forget(rc.name)
        self._points.invalidate(rc.name)
        return plan, kept

    def apply_retention(self, repo: Repository, rc: RepositoryConfig, host_name: str, result: BackupResult) -> None:
        """Retention for the VM just backed up; deleted points (or a failure) get their own audit entry."""
        rules = dataclasses.asdict(rc.retention).items()
        keep = ", ".join(f"{name.removeprefix('keep_')} {value}" for name, value in rules if value > 0) or "all"
        args: dict[str, Any] = {"repository": rc.name, "vm_id": result.vm_id, "after": result.point_id, "keep": keep}
        started = time.monotonic()
        try:
            result.pruned = forget_expired(repo, rc.retention, host_name, result.vm_id, vm_name=result.vm_name)
        except (HvtuiError, OSError) as err:  # the new point is committed: a warning, not a failure
            result.warnings.append(f"retention was not applied: {err}")
            self._guard.audit_record(
                "backup.retention", host_name, result.vm_name, args, "failed", str(err), time.monotonic() - started
            )
            return
        if result.pruned:
            args["removed"] = list(result.pruned)
            self._guard.audit_record(
                "backup.retention", host_name, result.vm_name, args, "ok", None, time.monotonic() - started
            )
