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

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from textual.message import Message

from hvtui.errors import HvtuiError, ReadOnlyError, RefusedError
from hvtui.jobs import Job, JobEvent, JobState
from hvtui.tui.jobs_dialogs import JobDialogsMixin
from hvtui.tui.widgets.bars import ActionView
from hvtui.tui.widgets.job_row import awaits_decision, is_active, job_order

if TYPE_CHECKING:
    from hvtui.core import Core
    from hvtui.jobs import JobManager
    from hvtui.tui.screens.base import ViewScreen
    from hvtui.tui.viewmodel.snapshot import Snapshot

log = logging.getLogger(__name__)

REDRAW_SECONDS = 0.5  # the jobs view and the progress bar redraw at most twice a second
HISTORY_SHOWN = 50  # finished jobs of earlier sessions listed (from the journal), newest
STOP_TIMEOUT = 120.0  # quitting: how long to wait for cancelled jobs to clean up


class JobsChanged(Message):
    """Job events are waiting to be shown (posted from the manager's notifier thread)."""


class JobsConsole(Protocol):
    """What the jobs side uses of the console app (``hvtui.tui.app.HvtuiApp``): its
    services, and the parts of Textual's ``App`` API it calls."""

    core: Core
    snapshot: Snapshot | None
    is_running: bool
    screen: Any

    def request_refresh(self, hosts: Iterable[str] | None = None) -> None: ...
    def sync_screen(self, screen: ViewScreen, data: bool = True) -> None: ...
    def read_only_reason(self, host: str) -> str | None: ...
    def describe_error(self, error: BaseException, doing: str) -> str: ...
    # Textual's App:
    def run_worker(self, work: Any, name: str | None = "", group: str = "default", **options: Any) -> Any: ...
    def notify(self, message: str, **options: Any) -> None: ...
    def post_message(self, message: Message) -> bool: ...
    def set_timer(self, delay: float, callback: Callable[[], Any] | None = None, **options: Any) -> Any: ...
    def push_screen(self, screen: Any, callback: Callable[[Any], Any] | None = None, **options: Any) -> Any: ...
    async def push_screen_wait(self, screen: Any) -> Any: ...
    def call_from_thread(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...
    def exit(self, result: Any = None, **options: Any) -> None: ...


class JobsController(JobDialogsMixin):
    """Collects job events for the UI and runs the job-related flows of the console."""

    def __init__(self, app: JobsConsole) -> None:
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
        # A change window's job names its hosts joined by commas (host names hold none).
        hosts = {name for names in changed_hosts for name in names.split(",") if name in self.app.core.hosts}
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
        from hvtui.tui.screens.dialogs import ConfirmDialog

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
        from hvtui.tui.screens.dialogs import ConfirmDialog

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
