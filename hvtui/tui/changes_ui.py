"""Change windows in the console: "checkpoint all" on the marked VMs (one ``change-open`` job,
a row in the jobs view, a progress step and a log line per VM), and the confirmed steps of the
``:changes`` view (roll back, promote, discard), run as actions in thread workers.

``ChangeWindowsMixin`` is one of the parts ``hvtui.tui.app.HvtuiApp`` is made of.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from textual import work

from hvtui.audit import RESULT_DECLINED, RESULT_REFUSED

if TYPE_CHECKING:
    from hvtui.changes import StepReport
    from hvtui.model import VM
    from hvtui.tui.screens.dialogs import ChangeWindowRequest

log = logging.getLogger(__name__)

STEP_WORDS = {
    "rollback": ("Roll back", "Rolling back", "rolled back"),
    "promote": ("Promote", "Promoting", "promoted"),
    "discard": ("Discard", "Discarding", "discarded"),
}


def default_window_name(when: Any) -> str:
    """``pre-change 2026-11-24 12:00`` (local time): one name for every VM's checkpoint."""
    return f"pre-change {when.astimezone():%Y-%m-%d %H:%M}"


def report_text(report: StepReport, done: str) -> str:
    ok = len(report.outcomes) - len(report.failed)
    text = f"{report.window.label}: {done} {ok} of {len(report.outcomes)} VMs"
    if report.failed:
        text += "; not: " + "; ".join(f"{o.host}/{o.vm_name} ({o.message})" for o in report.failed)
    return text


class ChangeWindowsMixin:
    """The app's change-window flows (mixed into the app)."""

    def start_change_window(self, vms: Sequence[VM], on_submitted: Callable[[], None] | None = None) -> None:
        """Ask name, type and ticket, then queue one job taking a checkpoint of each VM."""
        if not vms:
            return
        if all(self.read_only_reason(vm.host) is not None for vm in vms):
            reason = self.read_only_reason(vms[0].host)
            self.notify(f"checkpoint all refused: {reason}", title="Refused: read-only", severity="error", markup=False)
            return
        from hvtui.actions import vm_checkpoint_type
        from hvtui.tui.screens.dialogs import ChangeWindowDialog

        targets = list(vms)
        dialog = ChangeWindowDialog(
            [f"{vm.host}/{vm.name}" for vm in targets], default_window_name(self.core.clock.now()), vm_checkpoint_type(targets[0])
        )

        def chosen(request: ChangeWindowRequest | None) -> None:
            if request is None:
                return
            if on_submitted is not None:
                on_submitted()
            self.run_worker(
                lambda: self._submit_change_window(request, targets), name="checkpoint all", group="dialog", thread=True, exit_on_error=False
            )

        self.push_screen(dialog, callback=chosen)

    def offer_checkpoint_all(self, vm: VM, vms: Sequence[VM], source: str) -> None:
        """``c`` with nothing marked but ``source`` (a filter) showing several VMs: this VM, or
        "checkpoint all" on every VM it shows (focus on "No")."""
        from hvtui.tui.screens.dialogs import ChoiceDialog

        targets = list(vms)
        listing = "\n".join(f"  {v.host}/{v.name}" for v in targets)
        dialog = ChoiceDialog(
            f"Checkpoint {vm.name}, or all {len(targets)} VMs of this filter?",
            f"{source} shows {len(targets)} VMs:\n{listing}",
            [("one", "This VM"), ("all", f"All {len(targets)} VMs")],
            danger=False,
            summary=f"This VM: one checkpoint of {vm.host}/{vm.name}. All {len(targets)} VMs: a change window "
            "(one checkpoint each, one name); its name, type and ticket are asked next.",
        )

        def chosen(choice: str | None) -> None:
            if choice == "one":
                self.start_create(vm.host, vm.id)
            elif choice == "all":
                self.start_change_window(targets)

        self.push_screen(dialog, callback=chosen)

    def _submit_change_window(self, request: ChangeWindowRequest, vms: list[VM]) -> None:
        """Worker thread: the job manager may still be starting; its errors reach the user."""
        from hvtui.jobs.kinds.change import submit_change_open

        job = submit_change_open(self.core.jobs, request.name, vms, request.type, request.ticket)
        self.notify(
            f"{job.title} started: one checkpoint per VM ({len(vms)}); j shows the job, :changes the window",
            title="Checkpoint all",
            timeout=6,
            markup=False,
        )

    def start_change_step(
        self, name: str, step: str, on_done: Callable[[], None] | None = None, vms: list[str] | None = None
    ) -> None:
        """Roll back, promote or discard change window ``name`` (its ``vms`` only, given as
        host/name): plan, confirm, run."""
        self._change_step_flow(name, step, on_done, vms)

    @work(group="dialog", exit_on_error=False)
    async def _change_step_flow(self, name: str, step: str, on_done: Callable[[], None] | None, vms: list[str] | None) -> None:
        from hvtui.tui.screens.dialogs import ConfirmDialog, RollbackDialog

        changes = self.core.changes
        plan = await asyncio.to_thread(changes.plan, name, step, vms)
        verb, doing, done = STEP_WORDS[step]
        if not plan.vms:
            reason = "; ".join(sorted({r for _, r in plan.refused}))
            await asyncio.to_thread(changes.refuse, plan, RESULT_REFUSED, f"read-only: {reason}")
            self.notify(f"{verb} {plan.window.label} refused: {reason}", title="Refused: read-only", severity="error", markup=False)
            return
        count = len(plan.vms)
        title = f"{verb} {plan.window.label} on {count} VM{'s' if count != 1 else ''}?"
        dialog = RollbackDialog(title, plan.text, yes_label=verb) if step == "rollback" else ConfirmDialog(title, plan.text, yes_label=verb)
        confirmed = await self.push_screen_wait(dialog)
        if not confirmed:
            await asyncio.to_thread(changes.refuse, plan, RESULT_DECLINED, "not confirmed")
            return
        chosen = [f"{vm.host}/{vm.vm_name}" for vm in plan.vms]
        start = isinstance(dialog, RollbackDialog) and dialog.start_after
        if start:
            verb, doing, done = "Roll back and start", "Rolling back and starting", "rolled back and started"

        def run(progress: Any, _cancel: Any) -> StepReport:
            if step == "rollback":
                return changes.rollback(name, chosen, progress=progress, start=start)
            if step == "promote":
                return changes.promote(name, chosen, progress=progress)
            return changes.discard(name, chosen, progress=progress)

        def finished(report: StepReport) -> str:
            if on_done is not None:
                self.call_later(on_done)
            if report.failed:
                # Said as an error too: a VM that kept its checkpoint must not look done.
                self.notify(report_text(report, done), title=f"{verb}: not every VM", severity="error", timeout=20, markup=False)
            return report_text(report, done)

        self.start_action(f"{doing} {plan.window.label}", run, done=finished)
