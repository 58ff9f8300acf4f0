"""`:changes`: every change window, one row per VM (its checkpoint, the window's age, the VM's
state, the step it is at and what remains); ``r`` rolls back, ``p`` promotes, ``d``
discards the window under the cursor (its VMs that still hold the checkpoint); ``R``, ``P``,
``D`` the VM under the cursor only.  Each is confirmed.

The windows are read in a thread worker (a file in the state directory), again with every
refresh the app shows and after each step.
"""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from hvtui.errors import HvtuiError
from hvtui.text import display_lines
from hvtui.tui.screens.base import ViewTitle
from hvtui.tui.screens.listed import ListedView
from hvtui.tui.viewmodel.change_rows import CHANGE_COLUMNS, ChangeRow, build_change_rows, change_column_widths
from hvtui.tui.widgets.table import FastTable

STEP_ACTIONS = {"rollback": "roll back", "promote": "promote", "discard": "discard"}


class ChangesScreen(ListedView):
    view_name = "changes"
    view_title = "Change windows"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_vm", "Go to VM"),
        Binding("r", "step('rollback')", "Roll back"),
        Binding("p", "step('promote')", "Promote"),
        Binding("d", "step('discard')", "Discard"),
        Binding("R", "step_vm('rollback')", "Roll back this VM only", show=False),
        Binding("P", "step_vm('promote')", "Promote this VM only", show=False),
        Binding("D", "step_vm('discard')", "Discard this VM only", show=False),
    ]
    KEY_BAR_SHORT: ClassVar[dict[str, str]] = {**ListedView.KEY_BAR_SHORT, "open_vm": "VM"}

    DEFAULT_CSS = """
    ChangesScreen #change-detail {
        height: auto;
        max-height: 3;
        padding: 0 1;
        background: $panel;
    }
    """

    TABLE_ID = "change-table"

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[ChangeRow] = []
        self._all_rows: list[ChangeRow] = []  # before the filter

    def compose_body(self) -> ComposeResult:
        yield ViewTitle("Change windows")
        yield FastTable(CHANGE_COLUMNS, id="change-table")
        yield Static("", id="change-detail", markup=False)

    # -- data -------------------------------------------------------------------------------------
    def reload(self) -> None:
        self._read_windows()

    @work(thread=True, group="changes-read", exclusive=True, exit_on_error=False)
    def _read_windows(self) -> None:
        app = self.hvtui
        snapshot = app.snapshot
        try:
            windows = app.core.changes.windows()
            error = None
        except HvtuiError as err:
            windows, error = [], str(err)
        rows = build_change_rows(windows, snapshot.inventory if snapshot else None, app.core.clock.now(), app.palette)
        self.app.call_from_thread(self._show_rows, rows, error)

    def apply_filter(self, text: str) -> None:
        """Narrow the list to windows or VMs whose name contains ``text`` (the findings view's
        enter on a change window's finding lands here with its name)."""
        self.filter_text = text
        if self.loaded:
            self._show_rows(self._all_rows, self.load_error)

    def _show_rows(self, rows: list[ChangeRow], error: str | None) -> None:
        if not self.is_mounted:
            return
        self._all_rows = rows
        rows, wanted = self.take_rows(rows, error)
        self._rows = rows
        self.table.show([(row.key, row.texts) for row in rows], change_column_widths(rows))
        open_count = len({row.window.name for row in rows if row.window.is_open})
        shown = f"  filter: {self.filter_text}" if wanted else ""
        self.query_one(ViewTitle).show(
            f"Change windows [{open_count} open / {len({r.window.name for r in rows})}]{shown}  r roll back · p promote · d discard"
        )
        self._show_detail()
        self.refresh_bindings_if_changed()

    def keeps(self, row: ChangeRow, wanted: str) -> bool:
        return wanted in row.window.name.casefold() or wanted in f"{row.vm.host}/{row.vm.vm_name}".casefold()

    def _show_detail(self) -> None:
        detail = self.query_one("#change-detail", Static)
        if self.load_error is not None:
            detail.update(display_lines(f"The change windows cannot be read: {self.load_error}"))
            return
        row = self.selected
        if row is None:
            detail.update("No change windows. Mark VMs in the VM list (space), then c: checkpoint all." if self.loaded else "")
            return
        window, vm = row.window, row.vm
        holding = len(window.holding)
        age, vm_state = row.plain[4], row.plain[5]  # said here too: narrow terminals drop their columns
        text = (
            f"{window.label}: {window.checkpoint_type}, opened {age} ago by {window.user}; "
            f"{holding} of {len(window.vms)} VMs hold its checkpoint"
        )
        text += f"\n{vm.host}/{vm.vm_name}: VM {vm_state}, checkpoint {vm.checkpoint_id or 'none'}"
        if vm.error:
            text += f"; {vm.error}"
        detail.update(display_lines(text))  # VM names and errors come from hosts: shown escaped

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()
        self.refresh_bindings_if_changed()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_vm()

    # -- actions ---------------------------------------------------------------------------------
    def action_open_vm(self) -> None:
        row = self.selected
        if row is not None:
            self.hvtui.open_vm(row.vm.host, row.vm.vm_id, row.vm.checkpoint_id)

    def action_step(self, step: str) -> None:
        row = self.selected
        if row is not None:
            self.hvtui.start_change_step(row.window.name, step, on_done=self.reload)

    def action_step_vm(self, step: str) -> None:
        row = self.selected
        if row is not None:
            vm = f"{row.vm.host}/{row.vm.vm_name}"
            self.hvtui.start_change_step(row.window.name, step, on_done=self.reload, vms=[vm])

    def why_unavailable(self, action: str) -> str | None:
        if action not in ("step", "step_vm"):
            return None
        row = self.selected
        if row is None:
            return "no change window under the cursor"
        if not row.window.is_open:
            return f"{row.window.label} is closed"
        if action == "step_vm":
            if not row.vm.state.holds_checkpoint:
                return f"{row.vm.host}/{row.vm.vm_name} holds no checkpoint of {row.window.label} (it is {row.vm.state})"
            return self.hvtui.read_only_reason(row.vm.host)
        reasons = {self.hvtui.read_only_reason(vm.host) for vm in row.window.holding}
        if None in reasons:
            return None
        return "; ".join(sorted(r for r in reasons if r is not None))
