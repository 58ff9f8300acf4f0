"""``hvtui repo migrate``: convert a configured format-1 repository to format 2 (``engine/migrate.py``).

A change to the repository, so it is refused read-only and audit-logged (``repo.migrate``,
with what was copied and deleted); the caller asks for the confirmation, with the plan's
``describe()`` as the question.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hvtui.audit import AuditLog
from hvtui.engine.migrate import MigrationPlan, MigrationResult, plan_migration, run_migration
from hvtui.engine.repository import Repository
from hvtui.errors import ReadOnlyError, RepositoryError
from hvtui.events import CancelToken, ProgressCallback

if TYPE_CHECKING:
    from hvtui.backups.service import Backups

ACTION = "repo.migrate"


class RepositoryMigrations:
    def __init__(self, backups: Backups, audit: AuditLog) -> None:
        self._backups = backups
        self._audit = audit

    def _repository(self, name: str | None) -> tuple[str, Repository, int]:
        rc = self._backups.repository_config(name)
        repo = self._backups.open_repository(rc.name)
        if repo is None:
            raise RepositoryError(f"repository {rc.name!r} at {rc.where} does not exist yet (nothing to migrate)")
        return rc.name, repo, rc.pack_size_mib * 1024 * 1024

    def plan(self, name: str | None = None) -> MigrationPlan:
        """What a migration would do now (changes nothing; allowed read-only)."""
        _name, repo, pack_size = self._repository(name)
        return plan_migration(repo, pack_size)

    def migrate(
        self, name: str | None = None, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> MigrationResult:
        """Convert (or finish converting) the repository to format 2; refused read-only, audited."""
        repo_name, repo, pack_size = self._repository(name)
        args = {"repository": repo_name, "path": str(repo.root), "pack_size": pack_size}
        target = f"repository:{repo_name}"
        reason = self._backups.read_only_reason()
        if reason is not None:
            self._audit.record(ACTION, target, None, args, "refused", 0.0, f"read-only: {reason}")
            raise ReadOnlyError(f"repo migrate refused: {reason}")
        plan = plan_migration(repo, pack_size)
        with self._audit.action(ACTION, target, None, {**args, "state": plan.state}) as entry:
            if plan.state != "done" and (problem := plan.problem()) is not None:
                raise RepositoryError(f"repo migrate of {repo_name!r} not started: {problem}")
            result = run_migration(
                repo,
                pack_size,
                progress=progress,
                cancel=cancel,
                progress_interval=self._backups.progress_interval,
                lock_timeout=self._backups.lock_timeout,
            )
            entry.args.update(result.to_dict())
        return result
