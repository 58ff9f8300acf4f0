"""The console's side of the job manager: events in, views, dialogs and notifications out.

``core.jobs`` runs the jobs and delivers ``JobEvent``s on its notifier thread (already
throttled to a few per second per job).  Here they are only collected under a lock; the
UI thread is woken by one ``JobsChanged`` message and takes everything collected at most
every ``REDRAW_SECONDS``, so a console over a slow SSH link redraws the jobs at about
2 Hz however many jobs run, and not at all when nothing changes (no timer ticks idle).

Everything that may touch a disk or a host (building the manager, reading the journal,
looking up restore points, submitting, resuming) runs in thread workers; errors become
notifications, never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message

from hvtui.errors import HvtuiError, ReadOnlyError, RefusedError
from hvtui.jobs import Job, JobEvent, JobState
from hvtui.model import VM, RestorePointSummary
from hvtui.tui.screens.backup_dialog import BackupDialog, BackupRequest, BackupTarget
from hvtui.tui.screens.dialogs import ConfirmDialog
from hvtui.tui.screens.restore_dialog import RestoreDialog, RestoreRequest, default_restore_directory, point_label
from hvtui.tui.widgets.bars import ActionView
from hvtui.tui.widgets.job_row import awaits_decision, is_active, job_order

if TYPE_CHECKING:
    from hvtui.jobs import JobManager
    from hvtui.tui.app import HvtuiApp

log = logging.getLogger(__name__)

REDRAW_SECONDS = 0.5  # the jobs view and the progress bar redraw at most twice a second
HISTORY_SHOWN = 50  # finished jobs of earlier sessions listed (from the journal), newest
STOP_TIMEOUT = 120.0  # quitting: how long to wait for cancelled jobs to clean up


class JobsChanged(Message):
    """Job events are waiting to be shown (posted from the manager's notifier thread)."""


class JobsController:
    """Collects job events for the UI and runs the job-related flows of the console."""

    def __init__(self, app: HvtuiApp) -> None:
        self.app = app
        self.manager: JobManager | None = None
        self._lock = threading.Lock()
        self._pending: dict[str, Job] = {}
        self._finals: list[Job] = []
        self._posted = False
        self._unsubscribe: Callable[[], None] | None = None
        self._drain_timer: Any = None
        self._last_drain = float("-inf")
        self._stopping = False
        self.jobs: dict[str, Job] = {}  # what the UI shows (UI thread only)
        self.version = 0  # bumped on every change of ``jobs``
        self.connect_error: str | None = None

    # -- connecting -------------------------------------------------------------------------
    def start(self) -> None:
        """Build the job manager and read the journal, in a worker (called on mount)."""
        self.app.run_worker(self._connect, name="job manager", group="jobs", thread=True, exit_on_error=False)

    def _connect(self) -> None:
        try:
            manager = self.app.core.jobs
            unsubscribe = manager.subscribe(self._on_event)
            interrupted = manager.interrupted_jobs()
            # Earlier sessions' finished jobs (retry works on them too); jobs another live
            # hvtui runs are left out: they are not this console's to show or cancel.
            history = [job for job in manager.history(limit=HISTORY_SHOWN) if job.is_final]
            loaded = manager.jobs()
        except HvtuiError as err:
            self.connect_error = str(err)
            self.app.notify(f"jobs unavailable: {err}", title="Jobs", severity="error", timeout=15, markup=False)
            return
        except Exception as err:  # a broken journal must not take the console down
            log.error("starting the job manager failed", exc_info=err)
            self.connect_error = f"unexpected error: {type(err).__name__}: {err}"
            self.app.notify(
                f"jobs unavailable: {self.connect_error} (details in {self.app.core.paths.log_file})",
                title="Jobs",
                severity="error",
                timeout=15,
                markup=False,
            )
            return
        self.manager = manager
        self._unsubscribe = unsubscribe
        with self._lock:
            for job in [*history, *interrupted, *loaded]:
                self._pending.setdefault(job.id, job)  # events already collected are newer
        self._post()
        if interrupted:
            count = len(interrupted)
            names = ", ".join(f"{job.kind} of {job.vm or job.host}" for job in interrupted[:3])
            more = f" (+{count - 3} more)" if count > 3 else ""
            self.app.notify(
                f"{count} job{'s were' if count != 1 else ' was'} interrupted when an earlier hvtui ended without "
                f"finishing {'them' if count != 1 else 'it'}: {names}{more}.\n"
                "Press j for the jobs view: r resumes, x dismisses.",
                title="Interrupted jobs",
                severity="warning",
                timeout=30,
                markup=False,
            )

    def stop(self) -> None:
        """Stop listening (the console is closing)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- events -----------------------------------------------------------------------------
    def _on_event(self, event: JobEvent) -> None:
        """On the manager's notifier thread: collect, and wake the UI once."""
        with self._lock:
            self._pending[event.job.id] = event.job
            if event.type == "state" and event.job.is_final:
                self._finals.append(event.job)
        self._post()

    def _post(self) -> None:
        with self._lock:
            if self._posted:
                return
            self._posted = True
        if not self.app.post_message(JobsChanged()):
            with self._lock:
                self._posted = False  # the app is closing

    def on_changed(self) -> None:
        """UI thread: show what was collected, but no more often than ``REDRAW_SECONDS``."""
        if self._drain_timer is not None:
            return
        wait = self._last_drain + REDRAW_SECONDS - time.monotonic()
        if wait > 0:
            self._drain_timer = self.app.set_timer(wait, self._drain, name="jobs-redraw")
        else:
            self._drain()

    def _drain(self) -> None:
        self._drain_timer = None
        if not self.app.is_running:
            return  # shutting down: the screens are being taken down
        self._last_drain = time.monotonic()
        with self._lock:
            pending, self._pending = self._pending, {}
            finals, self._finals = self._finals, []
            self._posted = False
        if not pending and not finals:
            return
        self.jobs.update(pending)
        self.version += 1
        changed_hosts: set[str] = set()
        for job in finals:
            self._notify_final(job)
            if job.state is JobState.SUCCEEDED:
                changed_hosts.add(job.host)
        self._show()
        # Only the jobs' hosts (a folder restore's "local" is none): they are read at once,
        # even beside a full refresh waiting on a host that does not answer.  The new restore
        # point (last-backup column, checkpoint-not-backup, restore points) or the restored VM
        # shows now, not at the next poll.
        hosts = {name for name in changed_hosts if name in self.app.core.hosts}
        if hosts:
            self.app.request_refresh(hosts=hosts)

    def _show(self) -> None:
        from hvtui.tui.screens.base import ViewScreen
        from hvtui.tui.screens.jobs import JobsScreen

        screen = self.app.screen
        if isinstance(screen, JobsScreen):
            screen.show_jobs(self.ordered())
        if isinstance(screen, ViewScreen):
            self.app.sync_screen(screen, data=False)  # the running jobs' progress line

    def _notify_final(self, job: Job) -> None:
        if job.state is JobState.SUCCEEDED:
            message = (job.summary or {}).get("message")
            text = f"{job.title}: done" + (f" — {message}" if message else "")
            log.info("%s", text)
            self.app.notify(text, title="Job finished", timeout=8, markup=False)
        elif job.state is JobState.FAILED:
            title = "Job refused" if job.error_kind == "refused" else "Job failed"
            self.app.notify(f"{job.title}: {job.error}", title=title, severity="error", timeout=20, markup=False)
        elif job.state is JobState.CANCELLED:
            tail = " (its backup checkpoint was removed; no restore point was made)" if job.kind == "backup" and job.started else ""
            self.app.notify(f"{job.title}: cancelled{tail}", title="Job cancelled", severity="warning", markup=False)

    # -- looking ----------------------------------------------------------------------------
    def ordered(self) -> list[Job]:
        return sorted(self.jobs.values(), key=job_order)

    def job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def active_jobs(self) -> list[Job]:
        """Queued and running jobs of this console, as the manager has them now."""
        if self.manager is None:
            return []
        return [job for job in self.manager.jobs() if is_active(job)]

    def awaiting_decision(self) -> list[Job]:
        return [job for job in self.jobs.values() if awaits_decision(job)]

    def action_views(self) -> list[ActionView]:
        """Running jobs for the one-line progress bar under every view."""
        running = [job for job in self.jobs.values() if job.state is JobState.RUNNING]
        running.sort(key=job_order)
        return [ActionView(job.title, job.progress) for job in running]

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
                targets.append(BackupTarget(vm.host, vm.id, vm.name, frozenset(with_points)))
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
                submitted.append(manager.submit_backup(target.host, target.vm_id, mode=mode, repository=request.repository, vm_name=target.vm_name))
            except Exception as err:
                errors.append((target, err))
        return submitted, errors

    # -- restores ---------------------------------------------------------------------------
    def start_restore(self, point: RestorePointSummary) -> None:
        self.app.run_worker(self._restore_flow(point), name="restore", group="dialog", exit_on_error=False)

    async def _restore_flow(self, point: RestorePointSummary) -> None:
        app = self.app
        read_only = app.read_only_reason(point.host)
        vm = app.snapshot.inventory.vm(point.host, point.vm_id) if app.snapshot is not None else None
        dialog = RestoreDialog(
            point,
            vm_exists=vm is not None,
            vm_state=vm.state if vm is not None else None,
            read_only_reason=read_only,
            default_directory=str(default_restore_directory(point)),
        )
        request: RestoreRequest | None = await app.push_screen_wait(dialog)
        if request is None:
            return
        confirm = self.restore_confirmation(point, request, vm)
        if confirm is None:
            return
        if not await app.push_screen_wait(confirm):
            return

        def submit() -> Job:
            return app.core.jobs.submit_restore(
                point.id,
                request.target,
                new_name=request.new_name,
                directory=request.directory,
                repository=point.repository,
            )

        try:
            job = await asyncio.to_thread(submit)
        except Exception as err:
            title = "Refused" if isinstance(err, (ReadOnlyError, RefusedError)) else "Restore not started"
            app.notify(app.describe_error(err, "restore"), title=title, severity="error", timeout=15, markup=False)
            return
        app.notify(f"{job.title} started; j shows the jobs", title="Restore", timeout=6, markup=False)

    def restore_confirmation(self, point: RestorePointSummary, request: RestoreRequest, vm: VM | None) -> ConfirmDialog | None:
        """The confirmation for a restore, naming exactly what it overwrites (or None after
        telling the user why it cannot go ahead)."""
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
            checkpoints = ", ".join(repr(cp.name) for cp in vm.checkpoints)
            cps = f"  - its {vm.checkpoint_count} checkpoint{'s' if vm.checkpoint_count != 1 else ''} ({checkpoints}) and their differencing files\n" if vm.checkpoints else ""
            body = (
                f"Restoring {label} over VM {vm.name} on host {vm.host} replaces the VM's disks and configuration "
                "with the restore point's. These are lost:\n"
                f"  - its current disks and everything written to them since the point was taken:\n{disks}\n"
                f"{cps}"
                f"The VM is {vm.state}. This cannot be undone (back it up first if unsure)."
            )
            return ConfirmDialog(f"Overwrite VM {vm.name} on {vm.host}?", body, yes_label=f"Overwrite {vm.name}")
        if request.target == "new":
            body = (
                f"Creates a new VM {request.new_name!r} on host {point.host} from {label}. "
                f"Nothing existing is overwritten; {point.vm_name} is not touched."
            )
            return ConfirmDialog(f"Restore as new VM {request.new_name} on {point.host}?", body, yes_label="Restore", danger=False)
        directory = Path(request.directory or "").expanduser()
        body = (
            f"Writes the disk and configuration files of {label} into {directory} "
            "on this machine. Nothing is overwritten: the restore refuses if a file of the same name is there."
        )
        return ConfirmDialog(f"Restore {point.vm_name}'s files into a folder?", body, yes_label="Restore", danger=False)

    # -- job actions ------------------------------------------------------------------------
    def cancel(self, job: Job) -> None:
        if not is_active(job) or job.cancel_requested:
            return
        if job.state is JobState.QUEUED:
            body = "It has not started: it leaves the queue and never runs."
        elif job.kind == "backup":
            body = (
                f"The backup stops at the next safe point and removes its Recovery checkpoint from {job.vm} on "
                f"{job.host}; no restore point is made. Data it already stored is reused by the next backup."
            )
        else:
            body = "The restore stops at the next safe point and removes what it wrote; nothing is half-restored."
        dialog = ConfirmDialog(f"Cancel {job.title}?", body, yes_label="Cancel job", no_label="Keep it")

        def chosen(confirmed: bool | None) -> None:
            if confirmed:
                self._run(lambda manager: manager.cancel(job.id), "cancel")

        self.app.push_screen(dialog, callback=chosen)

    def retry(self, job: Job) -> None:
        if not job.is_final or job.state is JobState.INTERRUPTED:
            return
        self._maybe_confirm_overwrite(job, "Retry", lambda: self._run(lambda manager: manager.retry(job.id), "retry", started="retry"))

    def resume(self, job: Job) -> None:
        if not awaits_decision(job):
            return

        def go() -> None:
            def resume(manager: JobManager) -> Job:
                new = manager.resume(job.id)
                self._collect(dataclasses.replace(job, resumed_by=new.id))
                return new

            self._run(resume, "resume", started="resume")

        self._maybe_confirm_overwrite(job, "Resume", go)

    def dismiss(self, job: Job) -> None:
        if not awaits_decision(job):
            return
        self._run(lambda manager: self._collect(manager.dismiss_interrupted(job.id)), "dismiss")

    def _maybe_confirm_overwrite(self, job: Job, verb: str, go: Callable[[], None]) -> None:
        """Re-running an in-place restore overwrites the VM again: confirm it like the first time."""
        if job.kind != "restore" or job.mode != "in_place":
            go()
            return
        dialog = ConfirmDialog(
            f"{verb} the in-place restore of {job.vm} on {job.host}?",
            f"This restores point {job.params.get('point_id')} over VM {job.vm} on {job.host} again: its current "
            "disks, checkpoints and everything written since are lost. The VM must be off.",
            yes_label=f"{verb} and overwrite",
        )
        self.app.push_screen(dialog, callback=lambda confirmed: go() if confirmed else None)

    def _collect(self, job: Job) -> Job:
        """Show a job the manager sent no event for (journal changes: resumed, dismissed)."""
        with self._lock:
            self._pending[job.id] = job
        self._post()
        return job

    def _run(self, call: Callable[[JobManager], Any], doing: str, started: str | None = None) -> None:
        """Run a manager call in a worker (resume may merge a checkpoint on a host)."""

        def run() -> None:
            manager = self.manager
            if manager is None:
                self.app.notify("jobs are not available yet", title="Jobs", severity="warning")
                return
            try:
                result = call(manager)
            except Exception as err:
                title = "Refused" if isinstance(err, (ReadOnlyError, RefusedError)) else f"Could not {doing}"
                self.app.notify(self.app.describe_error(err, doing), title=title, severity="error", timeout=15, markup=False)
                return
            if started and isinstance(result, Job):
                self.app.notify(f"{result.title} started ({started} of an earlier job)", title="Jobs", timeout=6, markup=False)

        self.app.run_worker(run, name=f"job {doing}", group="jobs", thread=True, exit_on_error=False)

    # -- quitting ---------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        """Quitting: the jobs were cancelled and the console exits once they cleaned up."""
        return self._stopping

    def stop_all_then_exit(self) -> None:
        """Cancel every queued and running job, wait for their clean-up, then exit."""
        if self._stopping:
            return
        self._stopping = True
        manager = self.manager
        active = self.active_jobs()
        if manager is None or not active:
            self.app.exit(0)
            return
        self.app.notify(
            f"Stopping {len(active)} job{'s' if len(active) != 1 else ''} (a backup removes its checkpoint first)…",
            title="Quitting",
            timeout=STOP_TIMEOUT,
            markup=False,
        )

        def stop() -> None:
            if not manager.shutdown(cancel_running=True, timeout=STOP_TIMEOUT):
                log.warning("jobs still running at exit; the journal lists them as interrupted")
            self.app.call_from_thread(self.app.exit, 0)

        self.app.run_worker(stop, name="stopping jobs", group="jobs", thread=True, exit_on_error=False)
