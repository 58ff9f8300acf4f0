"""The VM table's rows: columns, sort keys, filtering, widths (built in the refresh worker)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from rich.cells import cell_len

from hvtui.model import VM, HostInventory, Severity
from hvtui.tui.viewmodel.cells import NO_STYLE, Cell, ColumnSpec, Palette
from hvtui.tui.viewmodel.format import age_text, seconds_between, size_text

# On a narrow terminal the highest priority numbers go first: uptime, then chain depth (it
# mostly follows the checkpoint count), then the differencing size.  LAST BACKUP stays beside
# the checkpoints at 80 columns: "a checkpoint is not a backup" is the console's main message.
VM_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("health", "HEALTH", 0, 6),
    ColumnSpec("host", "HOST", 0, 20),
    ColumnSpec("name", "VM", 0, 32),
    ColumnSpec("state", "STATE", 0, 10),
    ColumnSpec("uptime", "UPTIME", 5, 16),
    ColumnSpec("checkpoints", "CPS", 0, 4, right=True),
    ColumnSpec("oldest", "OLDEST CP", 2, 18),
    ColumnSpec("depth", "DEPTH", 4, 5, right=True),
    ColumnSpec("diff", "DIFF", 3, 10, right=True),
    ColumnSpec("backup", "LAST BACKUP", 1, 18),
    # Dropped first on a narrow terminal (the :schedules view and the VM detail say it too), and
    # last, so that the VM list can leave it out when no schedule is configured.
    ColumnSpec("next", "NEXT BACKUP", 6, 18),
)
NO_BACKUP = "never"
NO_SCHEDULE = "-"  # no schedule selects the VM
SCHEDULE_FILTER = "schedule:"  # "/schedule:nightly": the VMs a schedule selects
VM_COLUMN_IDS = tuple(spec.id for spec in VM_COLUMNS)

# Sort keys: which column, and whether the first press sorts descending (worst, oldest,
# biggest first: what an admin looks for).
SORT_DESCENDING_FIRST = {
    "health": True,
    "host": False,
    "name": False,
    "state": False,
    "uptime": True,
    "checkpoints": True,
    "oldest": True,
    "depth": True,
    "diff": True,
    "backup": False,
    "next": False,
}

HEALTH_TEXT = {Severity.CRIT: "CRIT", Severity.WARN: "WARN", Severity.OK: "OK"}
_STATE_ORDER = {"Running": 0, "Paused": 1, "Saved": 2, "Off": 3}


@dataclasses.dataclass(frozen=True, slots=True)
class VmRow:
    key: str  # VM.key: host/id
    host: str
    vm: VM
    health: Severity
    stale: bool
    plain: tuple[str, ...]  # display text per column of VM_COLUMNS
    sort: tuple[Any, ...]  # sort key per column of VM_COLUMNS
    haystack: str  # what the / filter matches: host and VM name, folded
    texts: tuple[Cell, ...]  # styled cells for the palette they were built with
    palette_generation: int
    schedules: tuple[str, ...] = ()  # the schedules that select the VM (folded names)

    def restyled(self, palette: Palette) -> VmRow:
        return dataclasses.replace(
            self,
            texts=_vm_texts(self.plain, self.health, self.stale, palette),
            palette_generation=palette.generation,
        )


def _vm_texts(plain: tuple[str, ...], health: Severity, stale: bool, palette: Palette) -> tuple[Cell, ...]:
    base = palette.muted if stale else NO_STYLE
    severity = palette.severity(health)
    return tuple(
        Cell(value, severity if spec.id == "health" else base, "right" if spec.right else "left")
        for spec, value in zip(VM_COLUMNS, plain, strict=True)
    )


LastBackup = Callable[[VM], datetime | None]


def build_vm_row(
    vm: VM,
    host: HostInventory | None,
    health: Severity,
    now: datetime,
    palette: Palette,
    last_backup: datetime | None = None,
    previous: VmRow | None = None,
    next_in: float | None = None,
    schedules: tuple[str, ...] = (),
) -> VmRow:
    """One VM's row; reuses ``previous``'s styled cells when they would come out the same
    (the table then skips the row entirely, and no Text objects are built).  ``next_in``: seconds
    until a schedule backs the VM up next; ``schedules``: their folded names (the ``schedule:`` filter)."""
    stale = bool(host is not None and host.stale)
    oldest = vm.oldest_checkpoint
    oldest_age = seconds_between(now, oldest.created) if oldest is not None else None
    # Whatever Hyper-V reports: a Paused VM keeps its uptime, an Off or Saved one reports 0.
    uptime = vm.uptime_seconds or None
    backup_age = seconds_between(now, last_backup) if last_backup is not None else None
    host_text = f"{vm.host} (stale)" if stale else vm.host
    plain = (
        HEALTH_TEXT.get(health, "OK"),
        host_text,
        vm.name,
        vm.state,
        age_text(uptime) if uptime else "",
        str(vm.checkpoint_count),
        age_text(oldest_age),
        str(vm.chain_depth),
        size_text(vm.differencing_bytes) if vm.differencing_bytes else "0",
        f"{age_text(backup_age)} ago" if backup_age is not None else NO_BACKUP,
        (f"in {age_text(next_in)}" if next_in >= 60 else "now") if next_in is not None else NO_SCHEDULE,
    )
    name_key = (vm.host.casefold(), vm.name.casefold())
    sort = (
        int(health),
        name_key,
        (vm.name.casefold(), vm.host.casefold()),
        _STATE_ORDER.get(vm.state, 9),
        uptime or 0,
        vm.checkpoint_count,
        oldest_age if oldest_age is not None else -1.0,
        vm.chain_depth,
        vm.differencing_bytes,
        # No backup sorts as the oldest possible (the worst).
        -(backup_age if backup_age is not None else float("inf")),
        next_in if next_in is not None else float("inf"),  # no schedule sorts last
    )
    if (
        previous is not None
        and previous.plain == plain
        and previous.health == health
        and previous.stale == stale
        and previous.palette_generation == palette.generation
    ):
        texts = previous.texts
    else:
        texts = _vm_texts(plain, health, stale, palette)
    return VmRow(
        key=vm.key,
        host=vm.host,
        vm=vm,
        health=health,
        stale=stale,
        plain=plain,
        sort=sort,
        haystack=f"{vm.host}\t{vm.name}".casefold(),
        texts=texts,
        palette_generation=palette.generation,
        schedules=schedules,
    )


def column_widths(rows: Iterable[VmRow]) -> dict[str, int]:
    """Content width per column: the widest cell (capped), at least the label."""
    widths = [cell_len(spec.label) for spec in VM_COLUMNS]
    for row in rows:
        for index, value in enumerate(row.plain):
            length = len(value) if value.isascii() else cell_len(value)
            if length > widths[index]:
                widths[index] = length
    return {spec.id: min(max(width, cell_len(spec.label)), max(spec.max_width, cell_len(spec.label))) for spec, width in zip(VM_COLUMNS, widths, strict=True)}


def filter_rows(rows: Iterable[VmRow], query: str) -> list[VmRow]:
    """Rows whose host or VM name contains ``query`` (case-insensitive); all when empty.
    ``schedule:NAME``: the VMs schedule NAME selects."""
    folded = query.strip().casefold()
    if not folded:
        return list(rows)
    if folded.startswith(SCHEDULE_FILTER):
        name = folded[len(SCHEDULE_FILTER) :].strip()
        return [row for row in rows if name in row.schedules]
    return [row for row in rows if folded in row.haystack]


def sort_rows(rows: Iterable[VmRow], column: str, descending: bool) -> list[VmRow]:
    """Rows ordered by the real values of ``column``; host and VM name break ties."""
    index = VM_COLUMN_IDS.index(column)
    name_index = VM_COLUMN_IDS.index("host")
    # Two stable sorts: ties keep host/name order whichever way the main key goes.
    ordered = sorted(rows, key=lambda row: row.sort[name_index])
    return sorted(ordered, key=lambda row: row.sort[index], reverse=descending)
