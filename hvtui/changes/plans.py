"""What a step on a change window will do, VM by VM, before it runs: the text a confirmation
shows (every VM named, and what is lost or merged), and which VMs a read-only host refuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hvtui.errors import HvtuiError
from hvtui.policy import age_text, size_text

if TYPE_CHECKING:
    from hvtui.actions.plans import ApplyPlan, RemovePlan
    from hvtui.changes.record import ChangeWindow, WindowVM

STEPS = ("rollback", "promote", "discard")


class StepPlanner(Protocol):
    """The checkpoint actions' plans (``hvtui.actions.service.CheckpointActions``)."""

    def read_only_reason(self, host: str) -> str | None: ...

    def plan_apply(self, host: str, vm_id: str, checkpoint_id: str) -> ApplyPlan: ...

    def plan_remove(self, host: str, vm_id: str, checkpoint_id: str, subtree: bool = False) -> RemovePlan: ...


@dataclass(frozen=True, slots=True)
class StepPlan:
    step: str  # rollback, promote or discard
    window: ChangeWindow
    vms: tuple[WindowVM, ...]
    lines: tuple[str, ...]  # one per VM
    refused: tuple[tuple[WindowVM, str], ...]  # VMs on a read-only host, and why
    start: bool = False  # a rollback that starts each VM afterwards

    @property
    def headline(self) -> str:
        count = f"{len(self.vms)} VM{'s' if len(self.vms) != 1 else ''}"
        label = self.window.label
        if self.step == "rollback":
            then = ", then START each VM" if self.start else ""
            return f"Roll back {count} of {label} to its checkpoint {self.window.name!r}{then}. Each VM's state since is LOST:"
        if self.step == "promote":
            return (
                f"Promote {count} of {label}: back each VM up, then (only once its backup succeeded) delete its "
                f"checkpoint {self.window.name!r}, merging its differencing data:"
            )
        return f"Discard {count} of {label}: delete each VM's checkpoint {self.window.name!r} WITHOUT a backup:"

    @property
    def text(self) -> str:
        lines = [self.headline, *self.lines]
        if self.refused:
            lines.append("Refused (read-only), nothing happens on:")
            lines.extend(f"  - {vm.host}/{vm.vm_name}: {reason}" for vm, reason in self.refused)
        if self.step != "promote" or self.vms:
            lines.append("This cannot be undone.")
        return "\n".join(lines)


def plan_step(planner: StepPlanner, window: ChangeWindow, chosen: list[WindowVM], step: str, start: bool = False) -> StepPlan:
    if step not in STEPS:
        raise HvtuiError(f"unknown change-window step {step!r}")
    going: list[WindowVM] = []
    lines: list[str] = []
    refused: list[tuple[WindowVM, str]] = []
    for vm in chosen:
        reason = planner.read_only_reason(vm.host)
        if reason is not None:
            refused.append((vm, reason))
            continue
        going.append(vm)
        lines.append(f"  - {vm.host}/{vm.vm_name}: {_vm_line(planner, vm, step)}")
    return StepPlan(step, window, tuple(going), tuple(lines), tuple(refused), start and step == "rollback")


def _vm_line(planner: StepPlanner, vm: WindowVM, step: str) -> str:
    assert vm.checkpoint_id is not None
    try:
        if step == "rollback":
            apply = planner.plan_apply(vm.host, vm.vm_id, vm.checkpoint_id)
            return (
                f"now {apply.vm_state}; {size_text(apply.bytes_lost)} written since the checkpoint "
                f"({age_text(apply.age_seconds)} ago) is discarded"
            )
        remove = planner.plan_remove(vm.host, vm.vm_id, vm.checkpoint_id)
    except HvtuiError as err:
        return f"cannot be planned now ({err}); it will be tried and reported"
    verdict = "enough room" if remove.headroom_ok else "NOT ENOUGH ROOM: refused for this VM"
    return f"about {size_text(remove.bytes_to_move)} merges ({verdict})"
