"""A view of rows read on a worker thread: a table, a detail line under it, a filter.

The change windows, schedules and repositories views share this: each reads its rows through
Core on a worker (``reload``) and shows them with ``take_rows``; what differs (the columns,
the title, the detail, which rows a filter keeps) stays in the view.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.widget import Widget

from hvtui.tui.screens.base import ViewScreen
from hvtui.tui.viewmodel.snapshot import Snapshot
from hvtui.tui.widgets.table import FastTable


class ListedView(ViewScreen):
    TABLE_ID: ClassVar[str]  # the FastTable's id, without '#'

    def __init__(self) -> None:
        super().__init__()
        self._by_key: dict[str, Any] = {}
        self.load_error: str | None = None
        self.loaded = False

    @property
    def table(self) -> FastTable:
        return self.query_one(f"#{self.TABLE_ID}", FastTable)

    @property
    def main_widget(self) -> Widget | None:
        return self.table

    @property
    def selected(self) -> Any:
        key = self.table.cursor_key
        return self._by_key.get(key) if key is not None else None

    def on_mount(self) -> None:
        self.reload()

    def show_snapshot(self, snapshot: Snapshot) -> None:
        self.reload()  # a refresh after a step: what the view lists may have changed too

    def reload(self) -> None:
        raise NotImplementedError

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        if self.loaded:
            self.reload()

    def keeps(self, row: Any, wanted: str) -> bool:
        """Whether the filter ``wanted`` (casefolded, not empty) keeps ``row``."""
        return wanted in row.key.casefold()

    def take_rows(self, rows: list[Any], error: str | None) -> tuple[list[Any], str]:
        """The rows the filter keeps, now the view's (by key), and the casefolded filter."""
        wanted = self.filter_text.strip().casefold()
        if wanted:
            rows = [row for row in rows if self.keeps(row, wanted)]
        self._by_key = {row.key: row for row in rows}
        self.load_error = error
        self.loaded = True
        return rows, wanted
