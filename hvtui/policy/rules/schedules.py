"""Backup schedules kept: a VM a schedule selects whose newest restore point is older than the
schedule promises (the time between two runs plus the run's window)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hvtui.config.schedules import ScheduleConfig
from hvtui.config.timing import local_zone
from hvtui.model import Severity
from hvtui.policy.context import VMContext, VMRule
from hvtui.policy.text import age_seconds, age_text

BACKUP_OVERDUE = "backup-overdue"


def promise(schedule: ScheduleConfig, now: datetime) -> float:
    """The oldest a VM's newest point may be at ``now`` under ``schedule``: the interval before
    the latest slot whose window has closed, plus the window (a weekday cron promises three
    days over a weekend; a slot in a DST change is measured in real time)."""
    zone = local_zone()
    closed = schedule.timing.previous(now.astimezone(UTC) - timedelta(seconds=schedule.window), zone)
    return schedule.timing.interval_before(closed, zone) + schedule.window


def backup_overdue(ctx: VMContext) -> None:
    mine = [s for s in ctx.schedules if s.selects(ctx.vm.host, ctx.vm.name, ctx.host.group)]
    if not mine:
        return
    now = ctx.facts.now
    # The strictest schedule is the one the VM is held to.
    schedule, promised = min(((s, promise(s, now)) for s in mine), key=lambda pair: pair[1])
    when = ctx.last_backup(ctx.vm) if ctx.last_backup is not None else None
    what = f"schedule {schedule.name} ({schedule.timing.describe()}, window {age_text(schedule.window)})"
    action = f"See why its runs fail or do not start: `hvtui schedule show {schedule.name}`, the :schedules view"
    if when is None:
        ctx.add(Severity.WARN, BACKUP_OVERDUE, f"selected by {what} and has no restore point yet", action)
        return
    age = age_seconds(now, when)
    late = age - promised
    if late < ctx.t.backup_overdue_warn:
        return
    severity = Severity.CRIT if late >= ctx.t.backup_overdue_crit else Severity.WARN
    ctx.add(
        severity,
        BACKUP_OVERDUE,
        f"newest restore point is {age_text(age)} old; {what} promises {age_text(promised)} "
        f"(crit {age_text(ctx.t.backup_overdue_crit)} past that)",
        action,
        age=age,
        backup_age_s=age,
    )


RULES = (VMRule((BACKUP_OVERDUE,), backup_overdue),)
