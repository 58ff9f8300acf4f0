"""The main view: every VM on every host in one table (k9s' pod list).

``space`` marks rows (k9s-style; marked names carry a ✔); ``b`` backs up the marked VMs,
or the one under the cursor when none is marked; ``c`` with VMs marked offers "checkpoint
all" (a change window), with none marked but a filter showing several VMs it asks "this
VM, or all N VMs of this filter?", else a checkpoint of the VM under the cursor.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable

from hvtui.tui.screens.base import ViewScreen, ViewTitle
from hvtui.tui.viewmodel.snapshot import Snapshot
from hvtui.tui.viewmodel.vm_rows import SORT_DESCENDING_FIRST, VM_COLUMN_IDS, VM_COLUMNS, VmRow, filter_rows, sort_rows
from hvtui.tui.widgets.table import ColumnsChanged, FastTable

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
    "X": "next",
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
    "next": "next backup",
}
MARK = "✔ "
_NAME_INDEX = VM_COLUMN_IDS.index("name")
_MARK_STYLE = Style(bold=True)


class VmsScreen(ViewScreen):
    view_name = "vms"
    view_title = "VMs"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_vm", "Open"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("c", "create_checkpoint", "New checkpoint"),
        Binding("b", "backup", "Backup"),
        Binding("space", "toggle_mark", "Mark"),
        Binding("ctrl+backslash", "clear_marks", "Clear marks", show=False),
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
        self.last_update = ""
        self._shown_count = 0
        self.marked: set[str] = set()  # row keys (host/VM id), kept across refreshes
        self._marked_texts: dict[str, tuple[tuple[Text, ...], tuple[Text, ...]]] = {}

    def compose_body(self) -> ComposeResult:
        yield ViewTitle("VMs")
        # NEXT BACKUP (the last column) only when schedules exist: a column of dashes says nothing.
        columns = VM_COLUMNS if self.hvtui.core.config.schedules else VM_COLUMNS[:-1]
        yield FastTable(columns, id="vm-table")

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
        self.marked &= self._rows.keys()  # VMs that are gone cannot stay marked
        self._resort()
        self._show_rows()

    def _resort(self) -> None:
        self._sorted = sort_rows(self._rows.values(), self.sort_column, self.sort_descending)

    def _show_rows(self) -> str:
        rows = filter_rows(self._sorted, self.filter_text)
        outcome = self.table.show([(row.key, self._texts(row)) for row in rows], self._widths)
        self.last_update = outcome  # what the table did: columns, rebuild, cells or none
        self._shown_count = len(rows)
        self._show_title()
        return outcome

    def _show_title(self) -> None:
        arrow = "↓" if self.sort_descending else "↑"
        title = f"VMs [{self._shown_count}/{len(self._rows)}]  sort: {_LABELS[self.sort_column].lower()} {arrow}"
        if self.filter_text:
            title += f"  filter: {self.filter_text}"
        if self.marked:
            title += f"  marked: {len(self.marked)} (b backs up, c checkpoints all, ctrl+\\ clears)"
        hidden = self.table.hidden_columns
        if hidden:  # said, not silently left out: a wider terminal or the VM's detail shows them
            title += f"  too narrow for: {', '.join(spec.label for spec in hidden)}"
        self.query_one(ViewTitle).show(title)

    def on_columns_changed(self, event: ColumnsChanged) -> None:
        event.stop()
        self._show_title()  # a resize: the rows are the table's business, the title is ours

    def _texts(self, row: VmRow) -> tuple[Text, ...]:
        """The row's cells; a marked row's name carries the mark (the same tuple while
        nothing changes, so the table sees no change)."""
        if row.key not in self.marked:
            return row.texts
        cached = self._marked_texts.get(row.key)
        if cached is not None and cached[0] is row.texts:
            return cached[1]
        texts = list(row.texts)
        name = texts[_NAME_INDEX]
        style = name.style if isinstance(name.style, Style) else Style.parse(name.style)
        texts[_NAME_INDEX] = Text(MARK + name.plain, style=_MARK_STYLE + style, no_wrap=True, overflow="ellipsis")
        marked = tuple(texts)
        self._marked_texts[row.key] = (row.texts, marked)
        return marked

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
        if self.marked:  # checkpoint all: a change window on the marked VMs
            rows = self.backup_targets
            self.hvtui.start_change_window([row.vm for row in rows], on_submitted=self.action_clear_marks)
            return
        row = self.selected_row
        if row is None:
            return
        filtered = self.filter_targets
        if len(filtered) > 1:  # checkpoint all, from the filter's result
            self.hvtui.offer_checkpoint_all(row.vm, [r.vm for r in filtered], f"the filter {self.filter_text!r}")
            return
        self.hvtui.start_create(row.host, row.vm.id)

    @property
    def filter_targets(self) -> list[VmRow]:
        """The rows a filter shows (display order); [] without a filter."""
        return filter_rows(self._sorted, self.filter_text) if self.filter_text else []

    # -- marks and backups ------------------------------------------------------------------------
    @property
    def backup_targets(self) -> list[VmRow]:
        """The marked rows (in display order), or the cursor row when none is marked."""
        if self.marked:
            return [row for row in self._sorted if row.key in self.marked]
        row = self.selected_row
        return [row] if row is not None else []

    def action_toggle_mark(self) -> None:
        row = self.selected_row
        if row is None:
            return
        self.marked.symmetric_difference_update({row.key})
        self._show_rows()
        self.table.action_cursor_down()  # k9s: mark, move on, mark the next
        self.refresh_bindings_if_changed()

    def action_clear_marks(self) -> None:
        if self.marked:
            self.marked.clear()
            self._show_rows()
            self.refresh_bindings_if_changed()

    def action_escape(self) -> None:
        # Escape clears what is typed or filtered first (the base class), then the marks.
        if not self.prompt.is_open and not self.filter_text and self.marked:
            self.action_clear_marks()
            return
        super().action_escape()

    def action_backup(self) -> None:
        rows = self.backup_targets
        if rows:
            self.hvtui.jobs_ui.start_backup([row.vm for row in rows], on_submitted=self.action_clear_marks)

    def why_unavailable(self, action: str) -> str | None:
        if action == "create_checkpoint" and (self.marked or len(self.filter_targets) > 1):
            rows = self.backup_targets if self.marked else self.filter_targets
            reasons = {self.hvtui.read_only_reason(row.host) for row in rows}
            if None in reasons:
                return None  # some marked VM can be checkpointed (the window reports the others)
            return "; ".join(sorted(reason for reason in reasons if reason is not None))
        if action == "create_checkpoint":
            row = self.selected_row
            if row is None:
                return "no VM under the cursor"
            return self.hvtui.read_only_reason(row.host)
        if action == "backup":
            rows = self.backup_targets
            if not rows:
                return "no VM under the cursor or marked"
            reasons = {self.hvtui.read_only_reason(row.host) for row in rows}
            if None in reasons:
                return None  # some target can be backed up (the core refuses the others)
            return "; ".join(sorted(reason for reason in reasons if reason is not None))
        return None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # Read-only hosts: the key bar greys "New checkpoint" out for the row under the cursor.
        self.refresh_bindings_if_changed()

