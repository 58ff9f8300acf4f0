"""What is due: a schedule, its journal history and the time -> the slot to run now, the run to
continue, the slots missed.  Pure: the runner acts on the answer, the list and the console show it.

Only the latest slot can be run: a slot whose window has passed is missed, once (the journal
then lists it), and so is any earlier slot nobody handled since the schedule was first seen
(the jump box was off for days: each of those nights is reported, never run late).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from hvtui.config.schedules import ScheduleConfig
from hvtui.schedules.journal import RunRecord, ScheduleHistory


@dataclass(frozen=True, slots=True)
class DueState:
    schedule: ScheduleConfig
    next_run: datetime  # the next slot after now, in the local zone
    last_run: RunRecord | None
    first_look: bool  # never seen before: the runner records that it has now
    resume: RunRecord | None = None  # a run that never finished (its process is gone)
    due_slot: datetime | None = None  # the slot to run now
    newly_missed: tuple[datetime, ...] = field(default_factory=tuple)  # slots to record as missed


def work_out(schedule: ScheduleConfig, history: ScheduleHistory | None, now: datetime, zone: tzinfo) -> DueState:
    """The due state of ``schedule`` at ``now``; the caller holds the run-due lock, so a run
    that never finished has no process left running it."""
    history = history or ScheduleHistory()
    timing = schedule.timing
    now_utc = now.astimezone(UTC)
    window = timedelta(seconds=schedule.window)
    unfinished = [run for run in history.runs if not run.is_finished]
    resume = unfinished[-1] if unfinished else None
    handled = {slot.astimezone(UTC) for slot in history.handled_slots()}
    # Slots before the schedule was first seen are nobody's business; a first look may still
    # run the slot whose window is open now.
    floor = history.seen.astimezone(UTC) if history.seen is not None else now_utc - window
    latest_handled = max(handled, default=None)
    if latest_handled is not None and latest_handled > floor:
        floor = latest_handled
    due: datetime | None = None
    missed: list[datetime] = []
    for slot in timing.slots_between(floor, now_utc, zone):
        if slot.astimezone(UTC) in handled:
            continue
        if now_utc - slot.astimezone(UTC) <= window:
            due = slot
        else:
            missed.append(slot)
    if due is not None and resume is not None and resume.slot is not None and resume.slot.astimezone(UTC) == due.astimezone(UTC):
        due = None  # continuing that run is running this slot
    return DueState(
        schedule=schedule,
        next_run=timing.next(now_utc, zone),
        last_run=history.last_run,
        first_look=history.seen is None,
        resume=resume,
        due_slot=due,
        newly_missed=tuple(missed),
    )
