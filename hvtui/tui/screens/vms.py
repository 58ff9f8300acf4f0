"""The main view: every VM on every host in one table (k9s' pod list)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable

from hvtui.tui.screens.base import ViewScreen, ViewTitle
from hvtui.tui.viewmodel import SORT_DESCENDING_FIRST, VM_COLUMNS, Snapshot, VmRow, filter_rows, sort_rows
from hvtui.tui.widgets.table import FastTable

# key -> column: pressing the key sorts by the column; pressing it again reverses.
SORT_KEYS: dict[str, str] = {
    "H": "health",
    "O": "host",
    "N": "name",
    "S": "state",
    "U": "uptime",
    "C": "checkpoints",
    "A": "oldest",
    "D": "depth",
    "Z": "diff",
    "B": "backup",
}
_LABELS = {spec.id: spec.label for spec in VM_COLUMNS}
_SORT_NAMES = {
    "health": "health",
    "host": "host",
    "name": "VM name",
    "state": "state",
    "uptime": "uptime",
    "checkpoints": "checkpoint count",
    "oldest": "oldest checkpoint age",
    "depth": "chain depth",
    "diff": "differencing size",
    "backup": "last backup",
}


class VmsScreen(ViewScreen):
    view_name = "vms"
    view_title = "VMs"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_vm", "Open"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("c", "create_checkpoint", "New checkpoint"),
        *[
            Binding(key, f"sort('{column}')", f"Sort by {_SORT_NAMES[column]} (again: reverse)", show=False)
            for key, column in SORT_KEYS.items()
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort_column = "health"
        self.sort_descending = True
        self._rows: dict[str, VmRow] = {}
        self._sorted: list[VmRow] = []
        self._widths: dict[str, int] = {}
        self._hosts_total = 0

    def compose_body(self) -> ComposeResult:
        yield ViewTitle("VMs")
        yield FastTable(VM_COLUMNS, id="vm-table")

    @property
    def table(self) -> FastTable:
        return self.query_one("#vm-table", FastTable)

    @property
    def main_widget(self) -> Widget | None:
        return self.table

    # -- data ------------------------------------------------------------------------------------
    def show_snapshot(self, snapshot: Snapshot) -> None:
        self._rows = snapshot.rows
        self._widths = snapshot.widths
        self._hosts_total = snapshot.hosts_total
        self._resort()
        self._show_rows()

    def _resort(self) -> None:
        self._sorted = sort_rows(self._rows.values(), self.sort_column, self.sort_descending)

    def _show_rows(self) -> str:
        rows = filter_rows(self._sorted, self.filter_text)
        outcome = self.table.show([(row.key, row.texts) for row in rows], self._widths)
        arrow = "↓" if self.sort_descending else "↑"
        title = f"VMs [{len(rows)}/{len(self._rows)}]  sort: {_LABELS[self.sort_column].lower()} {arrow}"
        if self.filter_text:
            title += f"  filter: {self.filter_text}"
        self.query_one(ViewTitle).show(title)
        return outcome

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        self._show_rows()

    @property
    def selected_row(self) -> VmRow | None:
        key = self.table.cursor_key
        return self._rows.get(key) if key is not None else None

    # -- actions ----------------------------------------------------------------------------------
    def action_sort(self, column: str) -> None:
        if column == self.sort_column:
            self.sort_descending = not self.sort_descending
        else:
            self.sort_column = column
            self.sort_descending = SORT_DESCENDING_FIRST[column]
        self._resort()
        self._show_rows()

    def action_open_vm(self) -> None:
        row = self.selected_row
        if row is not None:
            self.hvtui.open_vm(row.host, row.vm.id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_vm()

    def action_create_checkpoint(self) -> None:
        row = self.selected_row
        if row is not None:
            self.hvtui.start_create(row.host, row.vm.id)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # Read-only hosts: the footer greys "New checkpoint" out for the row under the cursor.
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "create_checkpoint":
            row = self.selected_row
            if row is None:
                return None
            return None if self.hvtui.read_only_reason(row.host) else True
        return True
