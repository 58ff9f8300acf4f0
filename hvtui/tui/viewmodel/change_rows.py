"""The change-window view's rows: one per VM of each window (window, VM, its checkpoint, the
window's age, the VM's state now, the step it is at, what remains to do)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime

from rich.cells import cell_len

from hvtui.changes import ChangeWindow, WindowVM
from hvtui.model import Inventory
from hvtui.tui.viewmodel.cells import NO_STYLE, Cell, ColumnSpec, Palette
from hvtui.tui.viewmodel.format import age_text, seconds_between

CHANGE_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("window", "WINDOW", 0, 28),
    ColumnSpec("ticket", "TICKET", 3, 16),
    ColumnSpec("vm", "VM", 0, 28),
    ColumnSpec("checkpoint", "CHECKPOINT", 4, 12),
    ColumnSpec("age", "AGE", 1, 10),
    ColumnSpec("vm_state", "VM STATE", 2, 10),
    ColumnSpec("state", "STATE", 0, 11),
    ColumnSpec("remaining", "REMAINING", 0, 200, flex=True),
)


@dataclasses.dataclass(frozen=True, slots=True)
class ChangeRow:
    key: str
    window: ChangeWindow
    vm: WindowVM
    plain: tuple[str, ...]
    texts: tuple[Cell, ...]


def build_change_rows(
    windows: Sequence[ChangeWindow], inventory: Inventory | None, now: datetime, palette: Palette
) -> list[ChangeRow]:
    """Open windows first (newest first), then closed ones; each window's VMs in its order."""
    ordered = sorted(windows, key=lambda w: (not w.is_open, -w.created.timestamp()))
    rows: list[ChangeRow] = []
    for window in ordered:
        age = age_text(seconds_between(now, window.created))
        for vm in window.vms:
            live = inventory.vm(vm.host, vm.vm_id) if inventory is not None else None
            plain = (
                window.name,
                window.ticket or "",
                f"{vm.host}/{vm.vm_name}",
                (vm.checkpoint_id or "-")[:12],
                age,
                live.state if live is not None else "?",
                str(vm.state),
                vm.remaining,
            )
            style = palette.warn if vm.error and vm.state.holds_checkpoint else NO_STYLE if vm.state.holds_checkpoint else palette.muted
            texts = tuple(Cell(value, style) for value in plain)
            rows.append(ChangeRow(f"{window.name}|{vm.host}|{vm.vm_id}", window, vm, plain, texts))
    return rows


def change_column_widths(rows: Iterable[ChangeRow]) -> dict[str, int]:
    widths = [cell_len(spec.label) for spec in CHANGE_COLUMNS]
    for row in rows:
        for index, value in enumerate(row.plain):
            widths[index] = max(widths[index], cell_len(value))
    return {spec.id: min(width, max(spec.max_width, cell_len(spec.label))) for spec, width in zip(CHANGE_COLUMNS, widths, strict=True)}
