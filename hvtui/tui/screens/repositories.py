"""`:repos`: each configured repository: backend, format, encryption, size, restore points, last
backup, last copy into it and where it copies to.  The rows are built on a worker thread through
the core's copy service (the console never opens a repository on the UI thread), again with every
refresh the app shows.  A bucket that did not answer is left alone for a while (its row says when it
was last tried and when it is tried again); `r` asks every repository again now.
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
from hvtui.tui.viewmodel.repository_rows import (
    REPOSITORY_COLUMNS,
    RepositoryRow,
    build_repository_rows,
    repository_column_widths,
    repository_detail,
)
from hvtui.tui.widgets.table import FastTable


class RepositoriesScreen(ListedView):
    view_name = "repos"
    view_title = "Repositories"
    TABLE_ID = "repository-table"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "retry", "Retry now")]

    DEFAULT_CSS = """
    RepositoriesScreen #repository-detail {
        height: auto;
        max-height: 8;
        padding: 0 1;
        background: $panel;
    }
    """

    def compose_body(self) -> ComposeResult:
        yield ViewTitle("Repositories")
        yield FastTable(REPOSITORY_COLUMNS, id="repository-table")
        yield Static("", id="repository-detail", markup=False)

    def reload(self) -> None:
        self._read_repositories()

    def action_retry(self) -> None:
        """Ask every repository again now, an unreachable one too (the refreshes leave it alone for a while)."""
        self._read_repositories(retry=True)

    @work(thread=True, group="repositories-read", exclusive=True, exit_on_error=False)
    def _read_repositories(self, retry: bool = False) -> None:
        app = self.hvtui
        try:
            repos, error = app.core.copies.overview(retry), None
        except HvtuiError as err:
            repos, error = [], str(err)
        rows = build_repository_rows(repos, local_zone(), app.palette)
        self.app.call_from_thread(self._show_rows, rows, error)

    def _show_rows(self, rows: list[RepositoryRow], error: str | None) -> None:
        if not self.is_mounted:
            return
        rows, wanted = self.take_rows(rows, error)
        self.table.show([(row.key, row.texts) for row in rows], repository_column_widths(rows))
        shown = f"  filter: {self.filter_text}" if wanted else ""
        self.query_one(ViewTitle).show(f"Repositories [{len(rows)}]{shown}")
        self._show_detail()
        self.refresh_bindings_if_changed()

    def _show_detail(self) -> None:
        detail = self.query_one("#repository-detail", Static)
        if self.load_error is not None:
            detail.update(display_lines(f"The repositories cannot be read: {self.load_error}"))
            return
        row = self.selected
        detail.update(display_lines(repository_detail(row)) if row is not None else "")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()
