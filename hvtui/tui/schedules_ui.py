"""Backup schedules in the console: "run now" from the ``:schedules`` view (confirmed, refused in
read-only mode, audited), run as an action in a thread worker through ``Core.schedules``.

``SchedulesMixin`` is one of the parts ``hvtui.tui.app.HvtuiApp`` is made of.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work

from hvtui.audit import RESULT_DECLINED, RESULT_REFUSED

if TYPE_CHECKING:
    from hvtui.notify.report import RunReport


def run_summary(report: RunReport) -> str:
    failed = [r for r in report.results if r.outcome == "failed"]
    text = f"schedule {report.schedule}: {report.event}, {len(report.results) - len(failed)} of {len(report.results)} VMs backed up"
    if failed:
        text += "; failed: " + "; ".join(f"{r.host}/{r.vm} ({r.reason})" for r in failed)
    return text


class SchedulesMixin:
    """The app's schedule flows (mixed into the app)."""

    def start_schedule_run(self, name: str, on_done: Callable[[], None] | None = None) -> None:
        """Run schedule ``name`` now: say what it will back up, confirm, run."""
        self._schedule_run_flow(name, on_done)

    @work(group="dialog", exit_on_error=False)
    async def _schedule_run_flow(self, name: str, on_done: Callable[[], None] | None) -> None:
        from hvtui.tui.screens.dialogs import ConfirmDialog

        core = self.core
        target = f"schedule:{name}"
        args = {"schedule": name, "now": True}
        if core.read_only:
            reason = "hvtui runs read-only"
            await asyncio.to_thread(core.audit.record, "schedule.run", target, None, args, RESULT_REFUSED, 0.0, reason)
            self.notify(f"run schedule {name} refused: {reason}", title="Refused: read-only", severity="error", markup=False)
            return
        runner = core.schedules
        schedule = runner.schedule(name)
        selection = await asyncio.to_thread(runner.selection, schedule)
        repository = schedule.repository or core.config.default_repository().name
        listing = "\n".join(f"  {s.vm.host}/{s.vm.name}" for s in selection.selected) or "  (none: its selectors match no VM now)"
        count = len(selection.selected)
        text = (
            f"Back up {count} VM{'s' if count != 1 else ''} now into repository {repository} "
            f"({schedule.mode}; a full where none exists{' or full_every is due' if schedule.full_every else ''}):\n{listing}\n"
            "Each backup takes a Recovery checkpoint and removes it when done; retention is applied after each "
            "success only. The run is recorded with the schedule's runs; its slot time is not used up."
        )
        confirmed = await self.push_screen_wait(ConfirmDialog(f"Run schedule {name} now?", text, yes_label="Run now"))
        if not confirmed:
            await asyncio.to_thread(core.audit.record, "schedule.run", target, None, args, RESULT_DECLINED, 0.0, "not confirmed")
            return

        def run(_progress: Any, _cancel: Any) -> RunReport:
            with core.audit.action("schedule.run", target, None, args) as entry:
                report = runner.run_now(name)
                entry.args["event"] = report.event
            return report

        def finished(report: RunReport) -> str:
            if on_done is not None:
                self.call_later(on_done)
            if report.event == "failure":
                self.notify(run_summary(report), title=f"Schedule {name}: not every VM", severity="error", timeout=20, markup=False)
            return run_summary(report)

        self.start_action(f"Running schedule {name}", run, done=finished)
