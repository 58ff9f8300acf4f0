"""What a change window is: a name, a checkpoint type, an optional ticket, who opened it and
when, and per VM the checkpoint taken for it and where that VM stands now.

A window is *open* while any of its VMs still holds the window's checkpoint (taken, or
applied by a roll back); promoting or discarding every such VM closes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from hvtui.errors import HvtuiError


class VMRef(Protocol):
    """A VM to take a checkpoint of (``hvtui.model.VM``, or a job's record of one)."""

    @property
    def host(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...


class VMState(StrEnum):
    PENDING = "pending"  # not attempted: the process opening the window ended first
    OPEN = "open"  # the checkpoint is taken; the change goes on
    FAILED = "failed"  # no checkpoint could be taken (``error`` says why)
    ROLLED_BACK = "rolled back"  # the checkpoint was applied; it still exists
    PROMOTED = "promoted"  # backed up, then the checkpoint was deleted
    DISCARDED = "discarded"  # the checkpoint was deleted without a backup

    @property
    def holds_checkpoint(self) -> bool:
        return self in (VMState.OPEN, VMState.ROLLED_BACK)


REMAINING = {
    VMState.PENDING: "nothing taken: open a new window for this VM",
    VMState.OPEN: "roll back, promote or discard",
    VMState.FAILED: "nothing taken",
    VMState.ROLLED_BACK: "promote or discard the checkpoint",
    VMState.PROMOTED: "done",
    VMState.DISCARDED: "done",
}


@dataclass(frozen=True, slots=True)
class WindowVM:
    host: str
    vm_id: str
    vm_name: str
    state: VMState = VMState.PENDING
    checkpoint_id: str | None = None
    checkpoint_name: str | None = None
    error: str | None = None  # why the latest step on this VM failed (kept until one succeeds)
    point_id: str | None = None  # the restore point a promote made

    @property
    def remaining(self) -> str:
        """What is left to do, in words (with the latest failure, if any)."""
        text = REMAINING[self.state]
        return f"{text} (last step failed: {self.error})" if self.error and self.state.holds_checkpoint else text

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "state": str(self.state)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowVM:
        return cls(
            host=str(data["host"]),
            vm_id=str(data["vm_id"]),
            vm_name=str(data["vm_name"]),
            state=VMState(data.get("state", "pending")),
            checkpoint_id=_optional(data.get("checkpoint_id")),
            checkpoint_name=_optional(data.get("checkpoint_name")),
            error=_optional(data.get("error")),
            point_id=_optional(data.get("point_id")),
        )


@dataclass(frozen=True, slots=True)
class ChangeWindow:
    name: str
    checkpoint_type: str  # Standard or Production
    created: datetime
    user: str
    vms: tuple[WindowVM, ...]
    ticket: str | None = None

    @property
    def is_open(self) -> bool:
        return any(vm.state.holds_checkpoint for vm in self.vms)

    @property
    def holding(self) -> tuple[WindowVM, ...]:
        """The VMs that still hold the window's checkpoint."""
        return tuple(vm for vm in self.vms if vm.state.holds_checkpoint)

    @property
    def label(self) -> str:
        """"window NAME (ticket T)", as messages and findings name it."""
        return f"window {self.name}" + (f" (ticket {self.ticket})" if self.ticket else "")

    def vm(self, host: str, vm_id: str) -> WindowVM | None:
        return next((v for v in self.vms if v.host == host and v.vm_id == vm_id), None)

    def with_vm(self, updated: WindowVM) -> ChangeWindow:
        vms = tuple(updated if (v.host, v.vm_id) == (updated.host, updated.vm_id) else v for v in self.vms)
        return dataclasses.replace(self, vms=vms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "checkpoint_type": self.checkpoint_type,
            "ticket": self.ticket,
            "user": self.user,
            "created": self.created.isoformat(),
            "vms": [vm.to_dict() for vm in self.vms],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeWindow:
        created = datetime.fromisoformat(str(data["created"]))
        if created.tzinfo is None:
            raise HvtuiError(f"window {data.get('name')!r}: its time has no time zone")
        return cls(
            name=str(data["name"]),
            checkpoint_type=str(data.get("checkpoint_type", "Standard")),
            created=created,
            user=str(data.get("user", "")),
            vms=tuple(WindowVM.from_dict(vm) for vm in data.get("vms", [])),
            ticket=_optional(data.get("ticket")),
        )


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)
