"""Every finding of the sprawl policy, worst and oldest first; enter jumps to the culprit."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Static

from hvtui.model import Finding
from hvtui.tui.display import markup_text
from hvtui.tui.screens.base import ViewScreen, ViewTitle
from hvtui.tui.viewmodel.finding_rows import FINDING_COLUMNS, FindingRow, filter_finding_rows, finding_severity_text
from hvtui.tui.viewmodel.snapshot import Snapshot
from hvtui.tui.widgets.table import FastTable


class FindingsScreen(ViewScreen):
    view_name = "findings"
    view_title = "Findings"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_culprit", "Go to VM"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("d", "delete_culprit", "Delete checkpoint"),
    ]
    KEY_BAR_SHORT: ClassVar[dict[str, str]] = {**ViewScreen.KEY_BAR_SHORT, "delete_culprit": "Delete cp"}

    DEFAULT_CSS = """
    FindingsScreen #finding-detail {
        height: auto;
        max-height: 4;
        padding: 0 1;
        background: $panel;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[FindingRow] = []
        self._by_key: dict[str, FindingRow] = {}
        self._widths: dict[str, int] = {}

    def compose_body(self) -> ComposeResult:
        yield ViewTitle("Findings")
        yield FastTable(FINDING_COLUMNS, id="finding-table")
        yield Static("", id="finding-detail")

    @property
    def table(self) -> FastTable:
        return self.query_one("#finding-table", FastTable)

    @property
    def main_widget(self) -> Widget | None:
        return self.table

    def show_snapshot(self, snapshot: Snapshot) -> None:
        self._rows = snapshot.finding_rows
        self._by_key = {row.key: row for row in self._rows}
        self._widths = snapshot.finding_widths
        self._show_rows()

    def _show_rows(self) -> None:
        rows = filter_finding_rows(self._rows, self.filter_text)
        self.table.show([(row.key, row.texts) for row in rows], self._widths)
        title = f"Findings [{len(rows)}/{len(self._rows)}]  sorted by severity, then age"
        if self.filter_text:
            title += f"  filter: {self.filter_text}"
        self.query_one(ViewTitle).show(title)
        self._show_detail()

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        self._show_rows()

    @property
    def selected(self) -> Finding | None:
        key = self.table.cursor_key
        row = self._by_key.get(key) if key is not None else None
        return row.finding if row is not None else None

    def _show_detail(self) -> None:
        finding = self.selected
        detail = self.query_one("#finding-detail", Static)
        if finding is None:
            detail.update("No findings: nothing flagged." if not self._rows else "")
            return
        where = markup_text(finding.host + (f" / {finding.vm_name}" if finding.vm_name else ""))
        text = f"[b]{finding_severity_text(finding)}[/] {markup_text(finding.rule)} on {where}: {markup_text(finding.message)}"
        if finding.exempt_reason:
            text += f"\n[$sev-muted]exempt: {markup_text(finding.exempt_reason)}[/]"
        if finding.action:
            text += f"\n→ {markup_text(finding.action)}"
        detail.update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()
        self.refresh_bindings_if_changed()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_culprit()

    def action_open_culprit(self) -> None:
        finding = self.selected
        if finding is None:
            return
        if finding.vm_id is None and "window" in finding.data:
            # A change window's one finding covers several VMs: its view lists them.
            self.hvtui.show_view("changes", str(finding.data["window"]))
            return
        if finding.vm_id is None:
            self.app.notify(f"{finding.host}: {finding.message}", title="Host finding: no VM to open", severity="warning")
            return
        self.hvtui.open_vm(finding.host, finding.vm_id, finding.checkpoint_id)

    def action_delete_culprit(self) -> None:
        finding = self.selected
        if finding is not None and finding.vm_id is not None and finding.checkpoint_id is not None:
            self.hvtui.start_delete(finding.host, finding.vm_id, finding.checkpoint_id, subtree=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "delete_culprit":
            finding = self.selected
            if finding is None or finding.vm_id is None or finding.checkpoint_id is None:
                return None
            return None if self.hvtui.read_only_reason(finding.host) else True
        return True
