"""A schedule's status in words, the same for ``hvtui schedule`` and the console's schedules view:
the last run's result (its event, how many of its VMs came out ok) and one line per VM of a run."""

from __future__ import annotations

from hvtui.notify.report import VMResult
from hvtui.policy.text import size_text
from hvtui.schedules.runner import ScheduleStatus, failure_severity

# The VM outcomes that count as ok in "(3/4 ok)": a missed or failed VM does not.
OK_OUTCOMES = ("succeeded", "warning")


def result_text(status: ScheduleStatus) -> str:
    """The last run's result: "never ran", "running or stopped" (a run that never finished:
    running now, or killed and waiting to be continued), or its event and "(ok/all ok)"."""
    if status.running:
        return "running or stopped"
    run = status.last_run
    if run is None:
        return "never ran"
    text = run.event or "-"
    if run.results:
        ok = sum(1 for r in run.results.values() if r.outcome in OK_OUTCOMES)
        text += f" ({ok}/{len(run.results)} ok)"
    return text


def vm_result_line(result: VMResult) -> str:
    """One VM of a run: outcome, host/VM, mode, size stored, point, failed runs in a row, why."""
    line = f"  {result.outcome:<9} {result.host}/{result.vm}"
    if result.mode:
        line += f" {result.mode}"
    if result.size_bytes:
        line += f", {size_text(result.size_bytes)}"
    if result.point_id:
        line += f", point {result.point_id}"
    severity = failure_severity(result)
    if severity is not None:
        runs = "run" if result.failures_in_a_row == 1 else "runs"
        line += f" ({severity}: {result.failures_in_a_row} failed {runs} in a row)"
    if result.reason:
        line += f": {result.reason}"
    return line
