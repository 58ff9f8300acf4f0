"""The backup and restore dialogs' flows of the console: from a key in a view to queued jobs.

Restore points and repositories are looked up, and jobs submitted, in threads; the
dialogs themselves are imported when a flow first opens one (the first screen needs
none).  ``JobDialogsMixin`` is one of the parts of ``hvtui.tui.jobs_ui.JobsController``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hvtui.errors import HvtuiError, ReadOnlyError, RefusedError
from hvtui.jobs import Job, JobState
from hvtui.model import VM, RestorePointSummary

if TYPE_CHECKING:
    from hvtui.backups.restore_plan import RestorePlan
    from hvtui.tui.screens.backup_dialog import BackupRequest, BackupTarget
    from hvtui.tui.screens.dialogs import ChoiceDialog, ConfirmDialog
    from hvtui.tui.screens.restore_dialog import RestoreRequest

log = logging.getLogger(__name__)

BACKUP_FIRST = "backup-first"  # the in-place restore's "Back up first" choice


class JobDialogsMixin:
    """Backup and restore flows (mixed into ``JobsController``; ``self.app`` is the console)."""

    # -- backups ----------------------------------------------------------------------------
    def start_backup(self, vms: Sequence[VM], on_submitted: Callable[[], None] | None = None) -> None:
        """Ask mode and repository for a backup of ``vms``, then queue one job per VM;
        ``on_submitted`` runs (on the UI thread) once the user confirmed the dialog."""
        if not vms:
            return
        writable = [vm for vm in vms if self.app.read_only_reason(vm.host) is None]
        if not writable:
            reason = self.app.read_only_reason(vms[0].host)
            self.app.notify(f"backup refused: {reason}", title="Refused: read-only", severity="error", markup=False)
            return
        skipped = [vm for vm in vms if vm not in writable]
        if skipped:
            names = ", ".join(f"{vm.host}/{vm.name}" for vm in skipped)
            self.app.notify(f"not backed up (read-only host): {names}", title="Read-only", severity="warning", markup=False)
        self.app.run_worker(self._backup_flow(list(writable), on_submitted), name="backup", group="dialog", exit_on_error=False)

    async def _backup_flow(self, vms: list[VM], on_submitted: Callable[[], None] | None) -> None:
        from hvtui.tui.screens.backup_dialog import BackupDialog, BackupTarget

        backups = self.app.core.backups

        def look_up() -> tuple[list[str], str, list[BackupTarget]]:
            configs = backups.repository_configs()
            default = backups.repository_config(None).name
            targets = []
            for vm in vms:
                with_points = set()
                for config in configs:
                    try:
                        if backups.latest_point(vm.host, vm.id, config.name) is not None:
                            with_points.add(config.name)
                    except HvtuiError as err:  # an unreadable repository: treated as "no point"
                        log.warning("restore points of %s/%s in %s: %s", vm.host, vm.name, config.name, err)
                host_config = self.app.core.config.host(vm.host)
                winrm = host_config.winrm if host_config is not None and host_config.kind == "winrm" else None
                consistency = winrm.consistency if winrm is not None else None
                targets.append(BackupTarget(vm.host, vm.id, vm.name, frozenset(with_points), consistency))
            return [config.name for config in configs], default, targets

        repositories, default, targets = await asyncio.to_thread(look_up)
        request: BackupRequest | None = await self.app.push_screen_wait(BackupDialog(targets, repositories, default))
        if request is None:
            return
        if on_submitted is not None:
            on_submitted()
        submitted, errors = await asyncio.to_thread(self._submit_backups, targets, request)
        if submitted:
            what = submitted[0].title if len(submitted) == 1 else f"{len(submitted)} backups"
            queued = sum(1 for job in submitted if job.state is JobState.QUEUED)
            tail = f" ({queued} waiting for a free slot)" if queued and len(submitted) > 1 else ""
            self.app.notify(f"{what} started{tail}; j shows the jobs", title="Backup", timeout=6, markup=False)
        for target, error in errors:
            title = "Refused" if isinstance(error, (ReadOnlyError, RefusedError)) else "Backup not started"
            self.app.notify(
                f"{target.host}/{target.vm_name}: {self.app.describe_error(error, 'backup')}",
                title=title,
                severity="error",
                timeout=15,
                markup=False,
            )

    def _submit_backups(self, targets: list[BackupTarget], request: BackupRequest) -> tuple[list[Job], list[tuple[BackupTarget, Exception]]]:
        manager = self.app.core.jobs
        submitted: list[Job] = []
        errors: list[tuple[BackupTarget, Exception]] = []
        for target in targets:
            # An incremental or differential of a VM with no point in that repository runs
            # as a full anyway: say so in the job's mode from the start.
            mode = request.mode if request.repository in target.repositories_with_points else "full"
            try:
                # The consistency choice is for checkpoints on WinRM hosts only (None: the host's setting).
                consistency = request.consistency if target.consistency is not None else None
                submitted.append(
                    manager.submit_backup(
                        target.host, target.vm_id, mode=mode, repository=request.repository, vm_name=target.vm_name,
                        consistency=consistency,
                    )
                )
            except Exception as err:
                errors.append((target, err))
        return submitted, errors

    # -- restores ---------------------------------------------------------------------------
    def start_restore(self, point: RestorePointSummary) -> None:
        self.app.run_worker(self._restore_flow(point), name="restore", group="dialog", exit_on_error=False)

    async def _restore_flow(self, point: RestorePointSummary) -> None:
        from hvtui.tui.screens.restore_dialog import RestoreDialog, default_restore_directory

        app = self.app
        read_only = app.read_only_reason(point.host)
        vm = app.snapshot.inventory.vm(point.host, point.vm_id) if app.snapshot is not None else None
        dialog = RestoreDialog(
            point,
            vm_exists=vm is not None,
            vm_state=vm.state if vm is not None else None,
            read_only_reason=read_only,
            default_directory=str(default_restore_directory(point)),
            target_hosts=self._restore_hosts(point.host),
            volume_of=app.core.restore_volume,  # called on the dialog's worker thread
            read_only_of=app.read_only_reason,
        )
        request: RestoreRequest | None = await app.push_screen_wait(dialog)
        if request is None:
            return
        def plan() -> RestorePlan | None:
            try:
                return app.core.backups.plan_restore(
                    point.id,
                    to_dir=request.directory if request.target == "directory" else None,
                    as_name=request.new_name if request.target == "new" else None,
                    in_place=request.target == "in_place",
                    host=request.host,
                    repository=point.repository,
                    keep_checkpoints=request.keep_checkpoints,
                )
            except HvtuiError as err:  # said in the confirmation: the restore itself says it again
                log.warning("restore plan of %s: %s", point.id, err)
                return None

        confirm = self.restore_confirmation(point, request, vm, await asyncio.to_thread(plan))
        if confirm is None:
            return
        answer = await app.push_screen_wait(confirm)  # True (a ConfirmDialog) or a ChoiceDialog's choice
        if answer in (None, False):
            return

        def submit() -> Job:
            return app.core.jobs.submit_restore(
                point.id,
                request.target,
                new_name=request.new_name,
                directory=request.directory,
                host=request.host,
                repository=point.repository,
                keep_checkpoints=request.keep_checkpoints,
            )

        try:
            if answer == BACKUP_FIRST and vm is not None:
                app.notify(
                    f"backing up {vm.name} first; the restore starts only if that backup succeeds",
                    title="Restore",
                    timeout=6,
                    markup=False,
                )
                backup = await asyncio.to_thread(
                    app.core.jobs.submit_backup, vm.host, vm.id, repository=point.repository, vm_name=vm.name
                )
                done = await asyncio.to_thread(app.core.jobs.wait, backup.id)
                if done.state is not JobState.SUCCEEDED:
                    app.notify(
                        f"the backup of {vm.name} before the restore {done.state_word}: nothing was restored",
                        title="Restore not started",
                        severity="error",
                        timeout=15,
                        markup=False,
                    )
                    return
            job = await asyncio.to_thread(submit)
        except Exception as err:
            title = "Refused" if isinstance(err, (ReadOnlyError, RefusedError)) else "Restore not started"
            app.notify(app.describe_error(err, "restore"), title=title, severity="error", timeout=15, markup=False)
            return
        app.notify(f"{job.title} started; j shows the jobs", title="Restore", timeout=6, markup=False)

    def _restore_hosts(self, own: str) -> tuple[str, ...]:
        """Where a new VM may go: the point's host first, then every other host of the last
        refresh that is not read-only."""
        snapshot = self.app.snapshot
        names = [host.name for host in snapshot.inventory.hosts] if snapshot is not None else []
        return (own, *[name for name in names if name != own and not self.app.read_only_reason(name)])

    def restore_confirmation(
        self, point: RestorePointSummary, request: RestoreRequest, vm: VM | None, plan: RestorePlan | None = None
    ) -> ConfirmDialog | ChoiceDialog | None:
        """The confirmation for a restore, naming exactly what it overwrites and loses (the
        ``plan``: checkpoints by name, files and bytes), or None after telling the user why
        it cannot go ahead.  In place it offers to back the VM up first (a checkpoint would
        not do: the restore replaces the whole VM folder, checkpoints included)."""
        from hvtui.backups.restore_plan import WHOLE_FOLDER
        from hvtui.tui.screens.dialogs import ChoiceDialog, ConfirmDialog
        from hvtui.tui.screens.restore_dialog import point_label

        label = point_label(point)
        if request.target == "in_place":
            if vm is None:
                self.app.notify(
                    f"VM {point.vm_name} (id {point.vm_id}) is not on {point.host} any more: restore it as a new VM",
                    title="Restore",
                    severity="error",
                    markup=False,
                )
                return None
            if vm.state.lower() not in ("off", "stopped"):
                self.app.notify(
                    f"{vm.name} on {vm.host} is {vm.state}: turn it off before restoring over it",
                    title="Restore refused",
                    severity="error",
                    markup=False,
                )
                return None
            disks = "\n".join(f"    {disk.path}" for disk in vm.disks) or "    (none listed)"
            if plan is None:
                details = "  - (what else is replaced could not be read: the restore replaces the whole VM folder)\n"
            else:
                details = "".join(f"  {line}\n" for line in plan.lines()[1:])
            replaced = "disks, configuration and checkpoints"
            if plan is not None and plan.replaces != WHOLE_FOLDER:
                replaced = "disks (its configuration stays)"
            body = (
                f"Restoring {label} over VM {vm.name} on host {vm.host} replaces the VM's {replaced} "
                "with the restore point's. These are lost:\n"
                f"  - its current disks and everything written to them since the point was taken:\n{disks}\n"
                f"{details}"
                f"The VM is {vm.state}. This cannot be undone. \"Back up first\" backs the VM up as it is "
                "now and restores only if that backup succeeds."
            )
            choices = [(BACKUP_FIRST, "Back up first"), ("overwrite", f"Overwrite {vm.name}")]
            return ChoiceDialog(f"Overwrite VM {vm.name} on {vm.host}?", body, choices)
        if request.target == "new":
            host = request.host or point.host
            body = (
                f"Creates a new VM {request.new_name!r} on host {host} from {label}. "
                f"Nothing existing is overwritten; {point.vm_name} is not touched."
                + _checkpoint_note(plan)
            )
            return ConfirmDialog(f"Restore as new VM {request.new_name} on {host}?", body, yes_label="Restore", danger=False)
        directory = Path(request.directory or "").expanduser()
        body = (
            f"Writes the disk and configuration files of {label} into {directory} "
            "on this machine. Nothing is overwritten: the restore refuses if a file of the same name is there."
            + _checkpoint_note(plan)
        )
        return ConfirmDialog(f"Restore {point.vm_name}'s files into a folder?", body, yes_label="Restore", danger=False)


def _checkpoint_note(plan: RestorePlan | None) -> str:
    if plan is None or not (plan.restored_checkpoints or plan.dropped_checkpoints):
        return ""
    if plan.restored_checkpoints:
        return "\nCheckpoints restored with it: " + ", ".join(repr(n) for n in plan.restored_checkpoints) + "."
    names = ", ".join(repr(n) for n in plan.dropped_checkpoints)
    return f"\nOne flattened disk per drive, no checkpoints (the point's {names} are not restored)."
