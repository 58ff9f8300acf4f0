"""Recovery checkpoints hvtui's own dead backups left behind: telling them apart, removing them.

A checkpoint is hvtui's own only when both say so: its name has the backup pattern
(``hosts.base.is_backup_checkpoint_name``) and the checkpoint journal (``ledger``) records
that an hvtui backup took this very checkpoint (by id, on this VM), and that backup is over
(ended, or its process is gone).  A WinRM backup's checkpoint is named ``hvtui backup <job
id>`` by the host before the console learns its id: one whose console died in that moment is
missing from the checkpoint journal, and the job journal proves it instead (that backup job of
this host and VM is over, or its process is gone).  Only those are removed before a backup and before a
killed backup is resumed, each one named on the progress line and audit-logged.  Any other
Recovery checkpoint (another product's, whose running backup removing it would break) is
left alone: the policy reports it, and the findings view deletes it after asking.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hvtui.audit import AuditLog
from hvtui.backups.guard import HostLookup
from hvtui.backups.ledger import CheckpointJournal, TakenCheckpoint
from hvtui.errors import NotFoundError
from hvtui.events import Progress, ProgressCallback
from hvtui.hosts.base import BACKUP_LABEL_PREFIX, CheckpointTaken, is_backup_checkpoint_name
from hvtui.journal import JobJournal, process_alive
from hvtui.model import VM, Checkpoint

AUDIT_ACTION = "remove-recovery-checkpoints"


class LeftoverCheckpoints:
    """Knows (through the checkpoint journal) which Recovery checkpoints are hvtui's."""

    def __init__(
        self, journal: CheckpointJournal | None, hosts: HostLookup, audit: AuditLog, jobs: JobJournal | None = None
    ) -> None:
        """``journal`` None: nothing is recorded, so nothing is ever proven hvtui's; ``jobs``: the
        job journal, proof for a WinRM backup's checkpoint the checkpoint journal missed."""
        self._journal = journal
        self._hosts = hosts
        self._audit = audit
        self._jobs = jobs

    @classmethod
    def from_paths(
        cls, checkpoint_journal: Path | None, job_journal: Path | None, hosts: HostLookup, audit: AuditLog
    ) -> LeftoverCheckpoints:
        return cls(
            CheckpointJournal(checkpoint_journal) if checkpoint_journal is not None else None,
            hosts,
            audit,
            JobJournal(job_journal) if job_journal is not None else None,
        )

    # -- recording -------------------------------------------------------------------------------
    def recorder(self, host: str, vm_id: str, job_id: str | None, now: Callable[[], str]) -> CheckpointTaken:
        """What the host calls as it takes the backup's checkpoint (``Host.open_backup_source``)."""

        def taken(checkpoint_id: str, checkpoint_name: str) -> None:
            if self._journal is not None:
                self._journal.taken(host, vm_id, checkpoint_id, checkpoint_name, job_id, now())

        return taken

    def ended(self, checkpoint_ids: list[str]) -> None:
        if self._journal is not None:
            for checkpoint_id in checkpoint_ids:
                self._journal.ended(checkpoint_id)

    # -- knowing -----------------------------------------------------------------------------------
    def left_by_dead_backup(self, host: str, vm_id: str, checkpoint: Checkpoint) -> TakenCheckpoint | None:
        """The journal's record when ``checkpoint`` is a leftover of one of hvtui's backups that is over."""
        if self._journal is None or checkpoint.type != "Recovery" or not is_backup_checkpoint_name(checkpoint.name):
            return None
        taken = self._journal.find(host, vm_id, checkpoint.id)
        if taken is None:
            taken = self._taken_by_dead_job(host, vm_id, checkpoint)
        return taken if taken is not None and taken.backup_is_over else None

    def _taken_by_dead_job(self, host: str, vm_id: str, checkpoint: Checkpoint) -> TakenCheckpoint | None:
        """A checkpoint named ``hvtui backup <job id>`` by a backup job of this host and VM that
        the job journal knows (see the module docstring)."""
        if self._jobs is None or not checkpoint.name.startswith(BACKUP_LABEL_PREFIX):
            return None
        job_id = checkpoint.name[len(BACKUP_LABEL_PREFIX) :]
        try:
            entry = self._jobs.read().entries.get(job_id)
        except OSError:
            return None  # unreadable: not proven
        submitted = entry.submitted if entry is not None else {}
        if entry is None or (submitted.get("kind"), submitted.get("host"), submitted.get("vm_id")) != ("backup", host, vm_id):
            return None
        pid, start = entry.owner
        over = entry.is_finished or not process_alive(pid, start)
        return TakenCheckpoint(host, vm_id, checkpoint.id, checkpoint.name, job_id, pid, start, str(submitted.get("at") or ""), over)

    def made_by_dead_job(self, vm: VM, checkpoint: Checkpoint) -> str | None:
        """For the policy (``policy.context.BackupLeft``): who left it, in words, or None."""
        taken = self.left_by_dead_backup(vm.host, vm.id, checkpoint)
        return taken.made_by if taken is not None else None

    # -- removing ----------------------------------------------------------------------------------
    def clear(
        self,
        host_name: str,
        vm_id: str,
        vm_label: str,
        progress: ProgressCallback | None = None,
        extra_args: dict[str, Any] | None = None,
    ) -> list[str]:
        """Remove the VM's Recovery checkpoints proven hvtui's (see the module docstring).

        The caller holds the VM's backup lock and has checked read-only.  Each removal is
        announced and audit-logged; returns the names removed.  A failed removal raises
        (and is audited as failed): the backup would otherwise run on top of it.
        """
        host = self._hosts.host(host_name)
        removed: list[str] = []
        for checkpoint in host.recovery_checkpoints(vm_id):
            taken = self.left_by_dead_backup(host_name, vm_id, checkpoint)
            if taken is None:
                continue
            if progress is not None:
                progress(
                    Progress(
                        phase="cleanup",
                        message=f"removing leftover backup checkpoint {checkpoint.name!r} (left by {taken.made_by})",
                    )
                )
            args = {
                "vm_id": vm_id,
                "checkpoint_id": checkpoint.id,
                "checkpoint_name": checkpoint.name,
                "left_by": taken.job_id or f"pid {taken.pid}",
                **(extra_args or {}),
            }
            with self._audit.action(AUDIT_ACTION, host_name, vm_label, args) as entry:
                try:
                    host.release_backup_checkpoint(vm_id, checkpoint.id)
                    entry.args["removed"] = 1
                except NotFoundError:
                    entry.args["removed"] = 0  # removed meanwhile (by another console)
            self.ended([checkpoint.id])
            removed.append(checkpoint.name)
        return removed
