"""`:schedules`: each backup schedule with its timing, next run, last run and result, missed runs;
below the table, the last run per VM and the missed slots.  ``n`` runs the schedule under the
cursor now (confirmed; refused read-only; audited), ``enter`` opens its VMs as a VM-table filter.

The schedules' state (their journal in the state directory) is read in a thread worker, again
with every refresh the app shows and after a run.
"""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from hvtui.config.timing import local_zone
from hvtui.errors import HvtuiError
from hvtui.text import display_lines
from hvtui.tui.screens.base import ViewTitle
from hvtui.tui.screens.listed import ListedView
from hvtui.tui.viewmodel.schedule_rows import (
    SCHEDULE_COLUMNS,
    ScheduleRow,
    build_schedule_rows,
    detail_text,
    schedule_column_widths,
)
from hvtui.tui.widgets.table import FastTable

SCHEDULE_FILTER = "schedule:"  # the VM table's filter for a schedule's VMs


class SchedulesScreen(ListedView):
    view_name = "schedules"
    view_title = "Schedules"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_vms", "Its VMs"),
        Binding("n", "run_now", "Run now"),
    ]
    KEY_BAR_SHORT: ClassVar[dict[str, str]] = {**ListedView.KEY_BAR_SHORT, "open_vms": "VMs"}

    DEFAULT_CSS = """
    SchedulesScreen #schedule-detail {
        height: auto;
        max-height: 12;
        padding: 0 1;
        background: $panel;
    }
    """

    TABLE_ID = "schedule-table"

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[ScheduleRow] = []

    def compose_body(self) -> ComposeResult:
        yield ViewTitle("Schedules")
        yield FastTable(SCHEDULE_COLUMNS, id="schedule-table")
        yield Static("", id="schedule-detail", markup=False)

    # -- data -------------------------------------------------------------------------------------
    def reload(self) -> None:
        self._read_schedules()

    @work(thread=True, group="schedules-read", exclusive=True, exit_on_error=False)
    def _read_schedules(self) -> None:
        app = self.hvtui
        try:
            statuses = app.core.schedules.statuses()
            error = None
        except HvtuiError as err:
            statuses, error = [], str(err)
        rows = build_schedule_rows(statuses, local_zone(), app.palette)
        self.app.call_from_thread(self._show_rows, rows, error)

    def _show_rows(self, rows: list[ScheduleRow], error: str | None) -> None:
        if not self.is_mounted:
            return
        rows, wanted = self.take_rows(rows, error)
        self._rows = rows
        self.table.show([(row.key, row.texts) for row in rows], schedule_column_widths(rows))
        missed = sum(len(r.status.missed) for r in rows)
        shown = f"  filter: {self.filter_text}" if wanted else ""
        self.query_one(ViewTitle).show(f"Schedules [{len(rows)}, {missed} missed runs]{shown}  n run now · enter its VMs")
        self._show_detail()
        self.refresh_bindings_if_changed()

    def _show_detail(self) -> None:
        detail = self.query_one("#schedule-detail", Static)
        if self.load_error is not None:
            detail.update(display_lines(f"The schedules cannot be read: {self.load_error}"))
            return
        row = self.selected
        if row is None:
            text = "No schedules configured: add schedules: to the config (see config.example.yaml)."
            detail.update(text if self.loaded else "")
            return
        detail.update(display_lines(detail_text(row.status, local_zone())))  # VM names come from hosts: escaped

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()
        self.refresh_bindings_if_changed()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_vms()

    # -- actions ---------------------------------------------------------------------------------
    def action_open_vms(self) -> None:
        row = self.selected
        if row is not None:
            self.hvtui.show_view("vms", f"{SCHEDULE_FILTER}{row.key}")

    def action_run_now(self) -> None:
        row = self.selected
        if row is not None:
            self.hvtui.start_schedule_run(row.key, on_done=self.reload)

    def why_unavailable(self, action: str) -> str | None:
        if action not in ("run_now", "open_vms"):
            return None
        if self.selected is None:
            return "no schedule under the cursor"
        if action == "run_now" and self.hvtui.core.read_only:
            return "hvtui runs read-only"
        return None
