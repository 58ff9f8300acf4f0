"""``hvtui copy``: restore points copied from one configured repository into another
(``engine/copy.py``), then the target's own retention applied to the VMs copied.

Writes into the target, so it is refused read-only and audit-logged (``copy``, with the
points copied and the chunks sent); retention's deletions get their own ``copy.retention``
entry, as a backup's do.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from hvtui.audit import AuditLog
from hvtui.backups.catalog import RepositoryInfo
from hvtui.config import RepositoryConfig
from hvtui.engine.copy import CopyResult, copy_points, plan_copy
from hvtui.engine.manifest import Manifest
from hvtui.engine.prune import forget_expired
from hvtui.engine.repository import Repository
from hvtui.errors import HvtuiError, ReadOnlyError, RepositoryError
from hvtui.events import CancelToken, ProgressCallback
from hvtui.model import VM

if TYPE_CHECKING:
    from hvtui.backups.service import Backups

ACTION = "copy"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RepositoryOverview:
    """A repository as the console's ``:repos`` view shows it."""

    info: RepositoryInfo
    copy_to: str | None  # where each successful backup into it is copied
    last_copy: datetime | None = None  # the newest successful copy into it (audit log)
    last_copy_from: str | None = None


def vm_filter(vms: list[str]) -> tuple[Callable[[Manifest], bool], set[str]]:
    """A point filter for VM names or ids (case-insensitive; empty: every VM) and the set of
    names it matched, to name the ones that matched nothing."""
    wanted = {v.casefold() for v in vms}
    matched: set[str] = set()

    def keep(point: Manifest) -> bool:
        if not wanted:
            return True
        hits = wanted & {point.vm_name.casefold(), point.vm_id.casefold()}
        matched.update(hits)
        return bool(hits)

    return keep, matched


class RepositoryCopies:
    def __init__(self, backups: Backups, audit: AuditLog) -> None:
        self._backups = backups
        self._audit = audit

    def copy(
        self,
        source: str,
        target: str,
        vms: list[str] | None = None,
        point_ids: list[str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        read_back: bool = False,
    ) -> CopyResult:
        """Copy the points of ``source`` the target lacks (only those of ``vms``, or only
        ``point_ids``, when given) into ``target``; then the target's retention.  ``read_back``:
        every chunk sent is read back from the target and checked even when its storage checks
        each upload itself (``engine.copy.arrival_check``; a folder is always read back).  Refused read-only; audited."""
        src_rc = self._backups.repository_config(source)
        dst_rc = self._backups.repository_config(target)
        if src_rc.name == dst_rc.name:
            raise RepositoryError(f"copy: --from and --to name the same repository ({src_rc.name})")
        args: dict[str, object] = {"from": src_rc.name, "to": dst_rc.name, "vms": list(vms or []), "points": list(point_ids or [])}
        if read_back:
            args["read_back"] = True
        reason = self._backups.read_only_reason()
        if reason is not None:
            self._audit.record(ACTION, f"repository:{dst_rc.name}", None, args, "refused", 0.0, f"read-only: {reason}")
            raise ReadOnlyError(f"copy refused: {reason}")
        with self._audit.action(ACTION, f"repository:{dst_rc.name}", None, args) as entry:
            self._backups.retry_now(src_rc.name)  # an explicit action: storages held as unreachable are asked again
            self._backups.retry_now(dst_rc.name)
            src = self._backups.open_repository(src_rc.name)
            if src is None:
                raise RepositoryError(f"repository {src_rc.name!r} at {src_rc.where} does not exist yet (nothing to copy)")
            dst = self._backups.open_repository(dst_rc.name, create=True)
            assert dst is not None
            keep, matched = vm_filter(list(vms or []))
            ids = set(point_ids or [])
            points, present, skipped = plan_copy(
                src, dst, lambda p: keep(p) and (not ids or p.id in ids), dst_rc.retention
            )
            unknown = [v for v in vms or [] if v.casefold() not in matched]
            if unknown:
                raise RepositoryError(f"repository {src_rc.name} holds no restore point of {', '.join(unknown)}")
            try:
                result = copy_points(
                    src, dst, points, progress=progress, cancel=cancel,
                    progress_interval=self._backups.progress_interval, lock_timeout=self._backups.lock_timeout,
                    read_back=read_back,
                )  # fmt: skip
            finally:
                self._backups.points_changed(dst_rc.name)
            result.present = present + result.present
            result.skipped = skipped
            entry.args.update(result.to_dict())
        self._apply_retention(dst, dst_rc, points, result)
        return result

    def overview(self, retry: bool = False) -> list[RepositoryOverview]:
        """Every configured repository (``repository_infos``) with its ``copy_to`` and its last copy
        (``retry``: asked by the user, storages held as unreachable are asked again now)."""
        last: dict[str, tuple[datetime, str]] = {}
        for entry in self._audit.read():
            host = str(entry.get("host") or "")
            if entry.get("action") != ACTION or entry.get("result") != "ok" or not host.startswith("repository:"):
                continue
            try:
                when = datetime.fromisoformat(str(entry.get("time")).replace("Z", "+00:00"))
            except ValueError:
                continue
            name = host.removeprefix("repository:")
            if name not in last or when >= last[name][0]:
                last[name] = (when, str((entry.get("args") or {}).get("from") or ""))
        out = []
        for info in self._backups.repository_infos(retry=retry):
            copy_to = self._backups.repository_config(info.name).copy_to
            when, source = last.get(info.name, (None, None))
            out.append(RepositoryOverview(info, copy_to, when, source or None))
        return out

    def offsite_state(self, vm: VM) -> tuple[datetime, tuple[str, ...]] | None:
        """For the no-offsite-copy rule: the newest point of ``vm`` in the repositories that name
        ``copy_to:`` and the targets lacking a copy of it; None when none of its points is in
        such a repository (or the repositories cannot be read: the log says why)."""
        copy_to = {rc.name: rc.copy_to for rc in self._backups.repository_configs() if rc.copy_to}
        if not copy_to:
            return None
        try:
            points = [i.summary for i in self._backups.point_infos(host=vm.host) if i.summary.vm_id == vm.id]
        except HvtuiError as err:
            log.warning("copies of %s/%s unknown: %s", vm.host, vm.name, err)
            return None
        sources = [p for p in points if p.repository in copy_to]
        if not sources:
            return None
        newest = max(sources, key=lambda p: p.time)
        held = {p.repository for p in points if p.id == newest.id}
        wanted = sorted({copy_to[p.repository] for p in sources if p.id == newest.id})
        return newest.time, tuple(t for t in wanted if t not in held)

    def _apply_retention(self, repo: Repository, rc: RepositoryConfig, points: list[Manifest], result: CopyResult) -> None:
        """The target's own retention for each VM a point was copied of; a failure is a warning."""
        copied = set(result.copied)
        vms = sorted({(p.host, p.vm_id, p.vm_name) for p in points if p.id in copied})
        rules = dataclasses.asdict(rc.retention).items()
        keep = ", ".join(f"{name.removeprefix('keep_')} {value}" for name, value in rules if value > 0) or "all"
        for host, vm_id, vm_name in vms:
            args = {"repository": rc.name, "vm_id": vm_id, "keep": keep}
            started = time.monotonic()
            try:
                removed = forget_expired(repo, rc.retention, host, vm_id, vm_name=vm_name)
            except (HvtuiError, OSError) as err:  # the copied points are committed: a warning
                self._audit.record("copy.retention", host, vm_name, args, "failed", time.monotonic() - started, str(err))
                continue
            finally:
                self._backups.points_changed(rc.name)
            if removed:
                result.removed_by_retention.extend(removed)
                self._audit.record("copy.retention", host, vm_name, {**args, "removed": removed}, "ok", time.monotonic() - started)
