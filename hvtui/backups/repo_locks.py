"""A repository's lock records: ``hvtui repo locks NAME [--clear-stale]``.

Listing says who holds what since when, the last heartbeat, and whether the holder is gone (a
dead process on this machine, an expired heartbeat elsewhere, a damaged record).  Clearing
removes only records nobody holds any more (``engine.locks.clear_stale_locks``: a live
holder's record is never touched), so it asks no confirmation; it is refused read-only and
audit-logged with each record it removed.  Works alike on folders and buckets: the records
are read through the repository's own seam (``Repository.lock_store``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hvtui.backups.guard import SafetyGuard
from hvtui.backups.repositories import RepositoryList
from hvtui.config import RepositoryConfig
from hvtui.engine.lock_records import LockRecord
from hvtui.engine.locks import clear_stale_locks, lock_records
from hvtui.errors import ReadOnlyError, RepositoryError

ACTION = "repo.locks.clear"


@dataclass(frozen=True, slots=True)
class LockState:
    record: LockRecord
    stale: str | None  # why nobody holds it any more (None: its holder may be alive)

    def to_dict(self) -> dict[str, Any]:
        r = self.record
        return {
            "id": r.id,
            "kind": r.kind,
            "operation": r.operation,
            "detail": r.detail,
            "pid": r.pid,
            "hostname": r.hostname,
            "since": _iso(r.created),
            "heartbeat": _iso(r.refreshed),
            "expires": _iso(r.expires),
            "stale": self.stale is not None,
            "stale_reason": self.stale,
            "problem": r.problem,
        }

    def line(self) -> str:
        r = self.record
        if r.problem is not None:
            return f"{r.id}: DAMAGED ({r.problem}): stale, `--clear-stale` removes it"
        state = f"STALE ({self.stale})" if self.stale else "held"
        return (
            f"{r.id}: {r.kind} {r.operation} {r.detail} by pid {r.pid} on {r.hostname}, since {_shown(r.created)}, "
            f"heartbeat {_shown(r.refreshed)}: {state}"
        ).replace("  ", " ")


def _iso(stamp: float | None) -> str | None:
    return datetime.fromtimestamp(stamp, UTC).isoformat() if stamp is not None else None


def _shown(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class RepositoryLocks:
    def __init__(self, repositories: RepositoryList, guard: SafetyGuard) -> None:
        self._repositories = repositories
        self._guard = guard

    def records(self, name: str | None) -> tuple[RepositoryConfig, list[LockState]]:
        """The repository's lock records, oldest first (an explicit action: its storage is asked now)."""
        rc = self._repositories.repository_config(name)
        self._repositories.retry_now(rc.name)
        repo = self._repositories.require_repository(rc.name)
        now = time.time()
        states = [LockState(r, r.stale_reason(now)) for r in lock_records(repo.root, repo.lock_store())]
        return rc, sorted(states, key=lambda s: (s.record.created, s.record.id))

    def clear_stale(self, name: str | None) -> tuple[RepositoryConfig, list[str]]:
        """Remove the records nobody holds; one line each (who held it, why it is stale)."""
        rc = self._repositories.repository_config(name)
        target = f"repository:{rc.name}"
        args: dict[str, Any] = {"repository": rc.name}
        reason = self._guard.read_only_reason()
        if reason is not None:
            self._guard.audit_record(ACTION, target, None, args, "refused", f"read-only: {reason}")
            raise ReadOnlyError(f"repo locks --clear-stale refused: {reason}")
        self._repositories.retry_now(rc.name)
        try:
            repo = self._repositories.require_repository(rc.name)
            lines = clear_stale_locks(repo.lock_store())
        except (OSError, RepositoryError) as err:
            self._guard.audit_record(ACTION, target, None, args, "failed", str(err))
            if isinstance(err, RepositoryError):
                raise
            raise RepositoryError(f"cannot clear the stale locks of repository {rc.name}: {err}") from None
        self._guard.audit_record(ACTION, target, None, {**args, "cleared": lines}, "ok", None)
        return rc, lines
