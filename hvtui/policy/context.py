"""The interface every sprawl rule implements, and what a rule sees while it runs.

A VM rule is a ``VMRule``: the rule ids it may report and a ``check(context)`` that calls
``context.add(...)`` for each finding.  ``VMContext`` holds the VM, its host's facts (ages
are measured against ``facts.now``, the host's own clock), the thresholds that apply to it
and the last-backup and backup-left lookups, and builds the ``Finding`` records.  A host rule is a
``HostRule``: a ``check(host)`` that returns the host-level findings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime

from hvtui.config import Thresholds
from hvtui.config.schedules import ScheduleConfig
from hvtui.model import REPLICA_CHECKPOINT_TYPES, VM, Checkpoint, Finding, HostFacts, HostInventory, Severity
from hvtui.policy.text import age_seconds

LastBackup = Callable[[VM], datetime | None]
# no-offsite-copy: for a VM backed up into a repository that names copy_to, its newest point's
# time and the copy_to targets that hold no copy of it (empty: copied); None when no repository
# of its points copies anywhere.  The caller passes the copy service's (``RepositoryCopies.offsite_state``).
OffsiteState = Callable[[VM], tuple[datetime, tuple[str, ...]] | None]
# Who left a Recovery checkpoint, in words ("hvtui backup job 1a2b"), when it is the leftover
# of one of hvtui's own backups that is over (its journal knows); None otherwise.  The caller
# passes the backup service's (``Backups.backup_checkpoint_left``).
BackupLeft = Callable[[VM, Checkpoint], str | None]


@dataclasses.dataclass(frozen=True, slots=True)
class OpenWindow:
    """An open change window as the policy sees it (plain data: the caller reads the windows)."""

    name: str
    ticket: str | None
    opened: datetime
    vm_count: int  # VMs that still hold the window's checkpoint


# The open change windows' checkpoints: (host, vm id, checkpoint id) -> the window.  The
# caller passes them from the change-window service (``ChangeWindows.open_checkpoints``).
WindowCheckpoints = Mapping[tuple[str, str, str], OpenWindow]


class VMContext:
    """One VM under evaluation; keeps the shared context in one place and collects its findings."""

    def __init__(
        self,
        vm: VM,
        host: HostInventory,
        facts: HostFacts,
        thresholds: Thresholds,
        stale: bool,
        last_backup: LastBackup | None = None,
        backup_left: BackupLeft | None = None,
        windows: WindowCheckpoints | None = None,
        schedules: tuple[ScheduleConfig, ...] = (),
        offsite: OffsiteState | None = None,
    ) -> None:
        self.vm = vm
        self.offsite = offsite
        self.host = host
        self.facts = facts
        self.t = thresholds
        self.stale = stale
        self.last_backup = last_backup
        self.backup_left = backup_left
        self.windows: WindowCheckpoints = windows or {}
        self.schedules = schedules  # the configured backup schedules (backup-overdue)
        self.out: list[tuple[Finding, Checkpoint | None]] = []
        self._oldest_age: float | None = None
        if thresholds.replica_alerts:
            self.sprawl_checkpoints = list(vm.checkpoints)
        else:
            self.sprawl_checkpoints = [cp for cp in vm.checkpoints if cp.type not in REPLICA_CHECKPOINT_TYPES]

    def add(
        self,
        severity: Severity,
        rule: str,
        message: str,
        action: str,
        *,
        checkpoint: Checkpoint | None = None,
        file: str | None = None,
        age: float | None = None,
        **data: float | int | str,
    ) -> None:
        if self.stale:
            message += " (stale data: host unreachable)"
        if checkpoint is not None:
            data.setdefault("checkpoint_name", checkpoint.name)
            data.setdefault("checkpoint_type", checkpoint.type)
        finding = Finding(
            severity=severity,
            rule=rule,
            host=self.vm.host,
            vm_id=self.vm.id,
            vm_name=self.vm.name,
            message=message,
            action=action,
            checkpoint_id=checkpoint.id if checkpoint is not None else None,
            file=file,
            age_seconds=age,
            data=data,
        )
        self.out.append((finding, checkpoint))

    def window_of(self, checkpoint: Checkpoint) -> OpenWindow | None:
        """The open change window ``checkpoint`` was taken for, if any."""
        return self.windows.get((self.vm.host, self.vm.id, checkpoint.id))

    @property
    def oldest_age(self) -> float | None:
        if not self.sprawl_checkpoints:
            return None
        if self._oldest_age is None:
            self._oldest_age = max(age_seconds(self.facts.now, cp.created) for cp in self.sprawl_checkpoints)
        return self._oldest_age


@dataclasses.dataclass(frozen=True, slots=True)
class VMRule:
    """A check run on every VM of a readable host."""

    ids: tuple[str, ...]  # the rule ids its findings carry (exemptions name these)
    check: Callable[[VMContext], None]
    # Skipped for a VM without sprawl checkpoints: replica-only VMs (a replica server's
    # copies) have chains Hyper-V Replica manages.
    sprawl_only: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class HostRule:
    """A check run once per host, readable or not."""

    ids: tuple[str, ...]
    check: Callable[[HostInventory], list[Finding]]
