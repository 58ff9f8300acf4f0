"""A DataTable that stays fast with thousands of rows.

Textual's DataTable measures every new cell when rows are added (about 0.13 ms per
10-column row: 0.65 s for 5,000 rows) and ``add_row`` itself costs ~18 us a row; a
filter keystroke that re-adds 5,000 rows would block the console for most of a second.
This subclass

* takes its column widths from the caller (measured once per refresh from the plain
  text, in the worker thread) instead of measuring every cell on the UI thread;
* replaces all rows in one pass (``replace_rows``) when the row set changes, keeping
  the cursor on the same row key, instead of ``remove_row`` one by one (O(n) each);
* updates only the cells whose text or style changed when the row set is the same.

It relies on DataTable internals (``_data``, ``rows``, ``_row_locations``,
``_update_dimensions``) of the pinned Textual range (>=8.2.8,<8.3); the console tests
exercise every path through them.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual._types import SegmentLines
from textual.coordinate import Coordinate
from textual.geometry import Size
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets._data_table import ColumnKey, Row, RowKey

from hvtui.tui.viewmodel.cells import Cell, ColumnSpec

FLEX_MIN = 30  # a flex column (a message) is never squeezed below this


CellType = Cell | Text


class ColumnsChanged(Message):
    """The table now shows another set of columns (a resize, or wider data)."""

    def __init__(self, table: FastTable) -> None:
        super().__init__()
        self.table = table


class FastTable(DataTable[CellType]):
    """Row-cursor table fed with ``(key, cells)`` rows and caller-measured widths.

    Cells are ``viewmodel.cells.Cell`` (light) or one-line ``rich.text.Text``.
    """

    DEFAULT_CSS = """
    FastTable {
        height: 1fr;
    }
    """

    def __init__(self, specs: Sequence[ColumnSpec], **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.specs = tuple(specs)
        self._shown_columns: tuple[str, ...] = ()  # column ids currently in the table
        self._widths: dict[str, int] = {}
        self._keys: list[str] = []  # row keys in display order
        self._cells: dict[str, tuple[CellType, ...]] = {}  # what each row shows, full column set
        self._row_cache: dict[str, tuple[tuple[CellType, ...], RowKey, Row, dict]] = {}
        self._row_cache_columns: tuple[str, ...] = ()

    # -- columns -----------------------------------------------------------------------------
    def _natural(self, spec: ColumnSpec, widths: dict[str, int]) -> int:
        width = widths.get(spec.id, len(spec.label))
        return min(width, FLEX_MIN) if spec.flex else width

    def columns_for_width(self, widths: dict[str, int], available: int) -> tuple[str, ...]:
        """The columns that fit in ``available`` cells, dropping the least important first."""
        padding = 2 * self.cell_padding
        shown = list(self.specs)
        total = sum(self._natural(spec, widths) + padding for spec in shown)
        for spec in sorted(self.specs, key=lambda s: -s.priority):
            if total <= available or spec.priority == 0:
                break
            shown.remove(spec)
            total -= self._natural(spec, widths) + padding
        return tuple(spec.id for spec in shown)

    def effective_widths(self, columns: tuple[str, ...], widths: dict[str, int], available: int) -> dict[str, int]:
        """Content widths for ``columns``; a flex column gets what the others leave over."""
        padding = 2 * self.cell_padding
        by_id = {spec.id: spec for spec in self.specs}
        out = {column: widths.get(column, len(by_id[column].label)) for column in columns}
        for column in columns:
            spec = by_id[column]
            if spec.flex:
                others = sum(out[c] + padding for c in columns if c != column)
                room = available - others - padding
                out[column] = max(min(out[column], FLEX_MIN), min(out[column], room))
        return out

    @property
    def shown_columns(self) -> tuple[str, ...]:
        return self._shown_columns

    @property
    def hidden_columns(self) -> tuple[ColumnSpec, ...]:
        """The columns left out because the terminal is too narrow for them."""
        if not self._shown_columns:
            return ()
        return tuple(spec for spec in self.specs if spec.id not in self._shown_columns)

    def _available_width(self) -> int:
        width = self.content_region.width or self.size.width or self.app.size.width
        return max(20, width - 1)  # leave room for the vertical scrollbar

    def _set_columns(self, columns: tuple[str, ...], widths: dict[str, int]) -> None:
        self.clear(columns=True)
        self._keys = []
        by_id = {spec.id: spec for spec in self.specs}
        effective = self.effective_widths(columns, widths, self._available_width())
        for column_id in columns:
            spec = by_id[column_id]
            label = Text(spec.label, justify="right" if spec.right else "left")
            self.add_column(label, key=column_id, width=effective[column_id])
        changed = columns != self._shown_columns
        self._shown_columns = columns
        self._widths = dict(widths)
        if changed:
            self.post_message(ColumnsChanged(self))

    def _update_widths(self, widths: dict[str, int]) -> bool:
        """Apply new content widths to the shown columns; True if any changed."""
        changed = False
        effective = self.effective_widths(self._shown_columns, widths, self._available_width())
        for column_id in self._shown_columns:
            width = effective.get(column_id)
            column = self.columns.get(ColumnKey(column_id))
            if column is None or width is None or column.width == width:
                continue
            column.width = width
            column.content_width = width
            changed = True
        self._widths = dict(widths)
        if changed:
            self._set_virtual_size()
            self._clear_caches()
            self.refresh(layout=True)
        return changed

    # -- rows ---------------------------------------------------------------------------------
    def show(self, rows: Sequence[tuple[str, tuple[CellType, ...]]], widths: dict[str, int]) -> str:
        """Make the table show ``rows`` (key, one Text per spec), touching as little as possible.

        Returns what it did: "columns", "rebuild", "cells" or "none" (for tests and benches).
        """
        columns = self.columns_for_width(widths, self._available_width())
        keys = [key for key, _cells in rows]
        if columns != self._shown_columns or not self.columns:
            self._set_columns(columns, widths)
            self._replace_rows(rows)
            return "columns"
        self._update_widths(widths)
        if keys != self._keys:
            self._replace_rows(rows)
            return "rebuild"
        return "cells" if self._update_changed_cells(rows) else "none"

    def relayout(self) -> None:
        """Re-pick the columns and flex width for the current width (after a resize)."""
        if not self._widths:
            return
        rows = [(key, self._cells[key]) for key in self._keys]
        columns = self.columns_for_width(self._widths, self._available_width())
        if columns != self._shown_columns:
            self._set_columns(columns, self._widths)
            self._replace_rows(rows)
        else:
            self._update_widths(self._widths)

    def _column_indexes(self) -> list[int]:
        ids = [spec.id for spec in self.specs]
        return [ids.index(column_id) for column_id in self._shown_columns]

    def _update_changed_cells(self, rows: Sequence[tuple[str, tuple[CellType, ...]]]) -> bool:
        indexes = self._column_indexes()
        changed = False
        with self.app.batch_update():
            for key, cells in rows:
                old = self._cells.get(key)
                if old is cells:
                    continue
                self._cells[key] = cells
                if old is None:
                    continue
                cached = self._row_cache.get(key)
                if cached is not None:  # update_cell below edits this row's dict in place
                    self._row_cache[key] = (cells, *cached[1:])
                for index, column_id in zip(indexes, self._shown_columns, strict=True):
                    new_cell, old_cell = cells[index], old[index]
                    if new_cell.plain != old_cell.plain or new_cell.style != old_cell.style:
                        self.update_cell(key, column_id, new_cell)
                        changed = True
        return changed

    def _replace_rows(self, rows: Sequence[tuple[str, tuple[CellType, ...]]]) -> None:
        """Swap in a whole new row set in one pass, keeping the cursor on its row key."""
        previous_key = self.cursor_key
        previous_row = self.cursor_row
        scroll_y = self.scroll_y
        # What DataTable.clear() resets, minus its rebuild of the old rows' offsets.
        self._clear_caches()
        self._data.clear()
        self.rows.clear()
        indexes = self._column_indexes()
        column_keys = [ColumnKey(column_id) for column_id in self._shown_columns]
        data = self._data
        meta = self.rows
        locations: dict[RowKey, int] = {}
        # Rows that come back (a filter typed, then erased) reuse their key, metadata and
        # cell dict: the same cells tuple means the same row data.
        cache = self._row_cache if self._row_cache_columns == self._shown_columns else {}
        new_cache: dict[str, tuple[tuple[CellType, ...], RowKey, Row, dict]] = {}
        cells_by_key: dict[str, tuple[CellType, ...]] = {}
        keys: list[str] = []
        for position, (key, cells) in enumerate(rows):
            cached = cache.get(key)
            if cached is not None and cached[0] is cells:
                _cells, row_key, row, row_data = cached
            else:
                row_key = RowKey(key)
                row = Row(row_key, 1)
                row_data = {column_key: cells[index] for column_key, index in zip(column_keys, indexes, strict=True)}
            new_cache[key] = (cells, row_key, row, row_data)
            locations[row_key] = position
            data[row_key] = row_data
            meta[row_key] = row
            cells_by_key[key] = cells
            keys.append(key)
        # Keep the cache of rows filtered out too, so erasing a filter is as cheap as typing it.
        if cache:
            for key, entry in cache.items():
                new_cache.setdefault(key, entry)
        self._row_cache = new_cache
        self._row_cache_columns = self._shown_columns
        self._cells = cells_by_key
        self._keys = keys
        self._row_locations = TwoWayDict(locations)
        self._update_count += 1
        self._set_virtual_size()
        self._require_update_dimensions = False
        self.refresh()
        if not keys:
            self.cursor_coordinate = Coordinate(0, 0)
            self.scroll_to(y=0, animate=False, immediate=True)
            return
        target = keys.index(previous_key) if previous_key in cells_by_key else min(previous_row, len(keys) - 1)
        self.scroll_to(y=scroll_y, animate=False, immediate=True)
        if target == self.cursor_row:
            # The cursor did not move, so DataTable posts no RowHighlighted: post it here so
            # views following the highlighted row see the row now under it.
            self.refresh_row(target)
            self._highlight_row(target)
        self.move_cursor(row=target, animate=False)

    # -- DataTable hooks ------------------------------------------------------------------------
    def _set_virtual_size(self) -> None:
        data_cells_width = sum(column.get_render_width(self) for column in self.columns.values())
        header_height = self.header_height if self.show_header else 0
        self.virtual_size = Size(data_cells_width, len(self.rows) + header_height)

    def _update_dimensions(self, new_rows) -> None:  # noqa: ANN001 - DataTable's signature
        # Widths come from ``show`` (measured from the plain text); every row is one line
        # high, so the virtual size needs no per-cell measuring at all.
        self._new_rows.clear()
        self._set_virtual_size()

    def _update_column_widths(self, updated_cells) -> None:  # noqa: ANN001
        self._require_update_dimensions = True

    def _get_offsets(self, y: int) -> tuple[RowKey, int]:
        # Every row is one line: the row under line y is a lookup, not a list DataTable
        # rebuilds over all rows after each change.
        if self.show_header:
            if y < self.header_height:
                return self._header_row_key, y
            y -= self.header_height
        row_key = self._row_locations.get_key(y)
        if row_key is None:
            raise LookupError(f"Y coord {y!r} is greater than total height")
        return row_key, 0

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> SegmentLines:
        # The same segments as DataTable's ``Styled(Padding(cell))`` through Rich's full
        # render pipeline, built directly for one-line, single-style Text cells (all of
        # ours): a repaint of a 50-line table drops from ~60 ms to a few ms.
        if row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        cache_key = (
            row_key,
            column_key,
            base_style,
            cursor,
            hover,
            self._show_hover_cursor,
            self._update_count,
            self._pseudo_class_state,
        )
        cached = self._cell_render_cache.get(cache_key)
        if cached is not None:
            return cached
        cell = self._data.get(row_key, {}).get(column_key) if row_key is not None else None
        if isinstance(cell, Text):
            if cell.spans or "\n" in cell.plain or "\t" in cell.plain:
                return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        elif not isinstance(cell, Cell) or "\n" in cell.plain or "\t" in cell.plain:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        is_fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
        component_style, post_style = self._get_styles_to_render_cell(
            False,
            False,
            is_fixed,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        pre_style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        padding = self.cell_padding
        inner = max(0, width - 2 * padding)
        plain = cell.plain
        length = cell_len(plain)
        if length > inner:
            plain = set_cell_size(plain, inner - 1) + "…" if inner > 0 else ""
            length = cell_len(plain)
        gap = " " * (inner - length)
        plain = gap + plain if cell.justify == "right" else plain + gap
        text_style = cell.style if isinstance(cell.style, Style) else self.app.console.get_style(cell.style)
        pad = " " * padding
        line = [Segment(pad), Segment(plain, text_style), Segment(pad)]
        lines = [list(Segment.apply_style(line, style=pre_style, post_style=post_style))]
        self._cell_render_cache[cache_key] = lines
        return lines

    # -- lookups ----------------------------------------------------------------------------------
    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor, or None when the table is empty."""
        if not self._keys or not 0 <= self.cursor_row < len(self._keys):
            return None
        row_key = self._row_locations.get_key(self.cursor_row)
        return row_key.value if row_key is not None else None

    @property
    def keys(self) -> list[str]:
        """Row keys in display order."""
        return list(self._keys)

    def plain_row(self, key: str) -> dict[str, str]:
        """What a row shows, column id -> text (for tests and the help of screen readers)."""
        cells = self._cells[key]
        return {spec.id: cells[index].plain for index, spec in enumerate(self.specs)}

    def move_to_key(self, key: str) -> bool:
        if key not in self._cells:
            return False
        self.move_cursor(row=self._keys.index(key), animate=False)
        return True

    def on_resize(self) -> None:
        self.relayout()
