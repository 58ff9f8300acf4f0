"""The schedules view's rows (one per schedule: timing, selection, next run, last run and its
result, missed runs), the text below them (the last run per VM, the missed slots), and the
schedule lines of the VM table and the VM detail."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo

from rich.cells import cell_len

from hvtui.config.schedules import ScheduleConfig
from hvtui.schedules.runner import ScheduleStatus
from hvtui.schedules.text import result_text, vm_result_line
from hvtui.tui.viewmodel.cells import NO_STYLE, Cell, ColumnSpec, Palette
from hvtui.tui.viewmodel.format import age_text, local_time_text

SCHEDULE_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("name", "SCHEDULE", 0, 24),
    ColumnSpec("when", "WHEN", 0, 24),
    ColumnSpec("next", "NEXT RUN", 0, 18),
    ColumnSpec("last", "LAST RUN", 1, 18),
    ColumnSpec("result", "RESULT", 0, 24),
    ColumnSpec("missed", "MISSED", 2, 6, right=True),
    ColumnSpec("selects", "SELECTS", 3, 200, flex=True),
)


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleRow:
    key: str
    status: ScheduleStatus
    plain: tuple[str, ...]
    texts: tuple[Cell, ...]



def build_schedule_rows(statuses: Sequence[ScheduleStatus], zone: tzinfo, palette: Palette) -> list[ScheduleRow]:
    rows = []
    for status in statuses:
        schedule = status.schedule
        plain = (
            schedule.name,
            schedule.timing.describe(),
            local_time_text(status.next_run, zone),
            local_time_text(status.last_run.started if status.last_run else None, zone),
            result_text(status),
            str(len(status.missed)),
            ", ".join(schedule.vms) + (f" except {', '.join(schedule.exclude)}" if schedule.exclude else ""),
        )
        event = status.last_run.event if status.last_run is not None else None
        style = palette.crit if event == "failure" else palette.warn if event in ("missed", "warning") or status.missed else NO_STYLE
        texts = tuple(Cell(value, style if spec.id in ("result", "missed") else NO_STYLE) for spec, value in zip(SCHEDULE_COLUMNS, plain, strict=True))
        rows.append(ScheduleRow(schedule.name, status, plain, texts))
    return rows


def schedule_column_widths(rows: Iterable[ScheduleRow]) -> dict[str, int]:
    widths = [cell_len(spec.label) for spec in SCHEDULE_COLUMNS]
    for row in rows:
        for index, value in enumerate(row.plain):
            widths[index] = max(widths[index], cell_len(value))
    return {spec.id: min(width, max(spec.max_width, cell_len(spec.label))) for spec, width in zip(SCHEDULE_COLUMNS, widths, strict=True)}


def detail_text(status: ScheduleStatus, zone: tzinfo) -> str:
    """The last run per VM and the missed runs, for the panel below the table."""
    schedule = status.schedule
    lines = [
        f"{schedule.name}: {schedule.timing.describe()}, window {age_text(schedule.window)}, {schedule.mode}"
        f" into {schedule.repository or 'the default repository'}; next run {local_time_text(status.next_run, zone)}"
    ]
    run = status.last_run
    if run is None:
        lines.append("No run yet.")
    else:
        when = local_time_text(run.started, zone)
        lines.append(f"Last run {run.run_id} at {when}: {result_text(status)}")
        lines.extend(vm_result_line(r) for r in run.results.values())
        lines.extend(f"  note: {note}" for note in run.notes)
    if status.missed:
        shown = ", ".join(local_time_text(slot, zone) for slot in status.missed[-5:])
        lines.append(f"Missed runs ({len(status.missed)}): {shown}")
    return "\n".join(lines)


def next_runs(schedules: Sequence[ScheduleConfig], now: datetime, zone: tzinfo) -> dict[str, datetime]:
    """Each schedule's next slot after ``now`` (once per refresh, not once per VM)."""
    return {s.name: s.timing.next(now.astimezone(UTC), zone) for s in schedules}


def vm_schedule_text(schedules: Sequence[ScheduleConfig], host: str, vm: str, group: str | None, now: datetime, zone: tzinfo) -> str:
    """The VM detail's line: the schedules that back this VM up, and when next."""
    mine = [s for s in schedules if s.selects(host, vm, group)]
    if not mine:
        return "no schedule backs this VM up" if schedules else "no schedules configured"
    upcoming = next_runs(mine, now, zone)
    return "; ".join(
        f"{s.name} ({s.timing.describe()}, {s.mode} into {s.repository or 'the default repository'}), next {local_time_text(upcoming[s.name], zone)}"
        for s in mine
    )
