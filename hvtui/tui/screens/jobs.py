"""The jobs view (`:jobs`, `j`): queued, running and finished backup and restore jobs.

One row per job (state, VM, mode, a progress bar, bytes, rate, ETA, dedup and
compression ratios): this console's jobs, interrupted jobs from the journal first, and
the latest finished jobs of earlier sessions (retry works on them); a detail pane with
the highlighted job's log and summary.  The rows come from ``JobsController`` at most
twice a second; the table only re-sends the cells that changed.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Static

from hvtui.jobs import LOCAL_HOST, Job, JobState
from hvtui.text import display_lines
from hvtui.tui.screens.base import ViewScreen, ViewTitle
from hvtui.tui.viewmodel.snapshot import Snapshot
from hvtui.tui.widgets.job_row import (
    JOB_COLUMNS,
    awaits_decision,
    is_active,
    job_detail,
    job_haystack,
    job_plain,
    job_texts,
    job_widths,
)
from hvtui.tui.widgets.table import FastTable

EMPTY_TEXT = (
    "No jobs yet.\n\n"
    "On the VM list, b backs up the VM under the cursor (space marks several first).\n"
    "A VM's detail (enter) lists its restore points; t restores the highlighted one."
)
# Actions that start work on a host (unavailable in read-only mode).
CHANGING_JOB_ACTIONS = ("retry_job", "resume_job")


class JobsScreen(ViewScreen):
    view_name = "jobs"
    view_title = "Jobs"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel_job", "Cancel job"),
        Binding("R", "retry_job", "Retry"),
        Binding("r", "resume_job", "Resume interrupted"),
        Binding("x", "dismiss_job", "Dismiss interrupted"),
        Binding("enter", "open_vm", "Open VM"),
        Binding("slash", "filter", "Filter", key_display="/"),
    ]
    KEY_BAR_SHORT: ClassVar[dict[str, str]] = {
        **ViewScreen.KEY_BAR_SHORT,
        "cancel_job": "Cancel",
        "resume_job": "Resume",
        "dismiss_job": "Dismiss",
    }

    DEFAULT_CSS = """
    JobsScreen #job-table {
        height: 1fr;
        min-height: 4;
    }
    JobsScreen #job-detail-scroll {
        height: 1fr;
        border-top: solid $panel;
    }
    JobsScreen #job-detail {
        padding: 0 1;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._jobs: dict[str, Job] = {}
        self._ordered: list[Job] = []
        self._detail_text = ""
        self._bindings_for: tuple[object, ...] | None = None

    def compose_body(self) -> ComposeResult:
        yield ViewTitle("Jobs")
        yield FastTable(JOB_COLUMNS, id="job-table")
        with VerticalScroll(id="job-detail-scroll"):
            yield Static(EMPTY_TEXT, id="job-detail", markup=False)

    @property
    def table(self) -> FastTable:
        return self.query_one("#job-table", FastTable)

    @property
    def main_widget(self) -> Widget | None:
        return self.table

    @property
    def detail_text(self) -> str:
        return self._detail_text

    # -- data ------------------------------------------------------------------------------------
    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.show_jobs(self.hvtui.jobs_ui.ordered())

    def show_snapshot(self, snapshot: Snapshot) -> None:
        # A refresh or a theme change: the jobs are the controller's, re-shown with the palette.
        self._bindings_for = None  # "open VM" depends on the inventory
        self.show_jobs(self.hvtui.jobs_ui.ordered())

    def show_jobs(self, jobs: list[Job]) -> None:
        if not self.is_mounted:
            return
        self._ordered = jobs
        self._jobs = {job.id: job for job in jobs}
        self._show_rows()

    def _show_rows(self) -> None:
        wanted = self.filter_text.strip().casefold()
        shown = [job for job in self._ordered if not wanted or wanted in job_haystack(job)]
        palette = self.hvtui.palette
        plains = [job_plain(job) for job in shown]
        self.table.show([(job.id, job_texts(job, palette)) for job in shown], job_widths(plains))
        counts = []
        for label, test in (
            ("interrupted", awaits_decision),
            ("running", lambda j: j.state is JobState.RUNNING),
            ("queued", lambda j: j.state is JobState.QUEUED),
            ("failed", lambda j: j.state is JobState.FAILED),
        ):
            count = sum(1 for job in self._ordered if test(job))
            if count:
                counts.append(f"{count} {label}")
        title = f"Jobs [{len(shown)}/{len(self._ordered)}]"
        if counts:
            title += "  " + " · ".join(counts)
        if self.filter_text:
            title += f"  filter: {self.filter_text}"
        self.query_one(ViewTitle).show(title)
        self._show_detail()
        self._refresh_bindings_if_needed()

    def _show_detail(self) -> None:
        job = self.selected_job
        text = display_lines(job_detail(job)) if job is not None else EMPTY_TEXT
        if text != self._detail_text:
            self._detail_text = text
            self.query_one("#job-detail", Static).update(text)

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        self._show_rows()

    @property
    def selected_job(self) -> Job | None:
        if not self.is_mounted:
            return None
        key = self.table.cursor_key
        return self._jobs.get(key) if key is not None else None

    def _refresh_bindings_if_needed(self) -> None:
        """Grey the key bar's keys for the highlighted job, re-sent only when that changes
        (not on every progress update)."""
        job = self.selected_job
        key = None if job is None else (job.id, job.state, job.cancel_requested, awaits_decision(job))
        if key != self._bindings_for:
            self._bindings_for = key
            self.refresh_bindings()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()
        self._refresh_bindings_if_needed()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_vm()

    # -- actions -----------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_vm":  # greyed out without a word: enter also selects the row
            job = self.selected_job
            snapshot = self.hvtui.snapshot
            if job is None or job.vm_id is None or snapshot is None or snapshot.inventory.vm(job.host, job.vm_id) is None:
                return None
            return True
        return super().check_action(action, parameters)

    def why_unavailable(self, action: str) -> str | None:
        if action not in ("cancel_job", "retry_job", "resume_job", "dismiss_job"):
            return None
        job = self.selected_job
        if job is None:
            return "no job selected"
        if action in CHANGING_JOB_ACTIONS and job.host != LOCAL_HOST:
            reason = self.hvtui.read_only_reason(job.host)
            if reason is not None:
                return reason
        state = job.state.value.lower()
        if action == "cancel_job":
            if job.cancel_requested:
                return "cancelling already"
            return None if is_active(job) else f"the job is not running (it is {state})"
        if action == "retry_job":
            if job.state is JobState.INTERRUPTED:
                return "an interrupted job is resumed (r) or dismissed (x), not retried"
            return None if job.is_final else f"only a finished job can be retried (this one is {state})"
        if awaits_decision(job):  # resume or dismiss
            return None
        return "only a job interrupted in an earlier session can be resumed or dismissed"

    def action_cancel_job(self) -> None:
        job = self.selected_job
        if job is not None:
            self.hvtui.jobs_ui.cancel(job)

    def action_retry_job(self) -> None:
        job = self.selected_job
        if job is not None:
            self.hvtui.jobs_ui.retry(job)

    def action_resume_job(self) -> None:
        job = self.selected_job
        if job is not None:
            self.hvtui.jobs_ui.resume(job)

    def action_dismiss_job(self) -> None:
        job = self.selected_job
        if job is not None:
            self.hvtui.jobs_ui.dismiss(job)

    def action_open_vm(self) -> None:
        job = self.selected_job
        if job is not None and job.vm_id is not None and self.check_action("open_vm", ()):
            self.hvtui.open_vm(job.host, job.vm_id)
