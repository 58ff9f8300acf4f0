"""``ChangeWindows``: open a window (one checkpoint per VM, through the checkpoint actions),
then close it per VM by rolling back, promoting (a backup first, the checkpoint deleted only
once that backup succeeded) or discarding.

Every step goes through ``hvtui.actions`` (read-only refusal, the merge-headroom rule, an
audit entry carrying the window's name and ticket); a VM that fails is reported and the
others go on.  The window is written to the store after each VM, so a process killed in the
middle leaves a record of what it had done.  Everything blocks: call it from a worker thread.
"""

from __future__ import annotations

import dataclasses
import logging
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from hvtui.actions.names import normalise_checkpoint_type, validate_checkpoint_name
from hvtui.audit import RESULT_REFUSED, local_user
from hvtui.changes.guard import WindowBusyError
from hvtui.changes.plans import StepPlan, StepPlanner, plan_step
from hvtui.changes.record import ChangeWindow, VMRef, VMState, WindowVM
from hvtui.changes.store import WindowStore
from hvtui.clock import Clock
from hvtui.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    Cancelled,
    HvtuiError,
    ReadOnlyError,
    RefusedError,
    UsageError,
)
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.policy import OpenWindow, WindowCheckpoints

if TYPE_CHECKING:
    from hvtui.actions.plans import RemovePlan
    from hvtui.audit import AuditLog
    from hvtui.model import VM, Checkpoint

log = logging.getLogger(__name__)

MAX_TICKET_LENGTH = 100
# A host's clock may run behind ours: a checkpoint "taken before the window opened" by this much
# is still the window's when a resumed open looks for one a killed run took.
CLOCK_SLACK = timedelta(minutes=10)


class CheckpointSteps(StepPlanner, Protocol):
    """The checkpoint actions a window uses (``hvtui.actions.service.CheckpointActions``)."""

    def create(
        self, host: str, vm_id: str, name: str | None = None, type: str = "Standard", context: dict | None = None  # noqa: A002
    ) -> Checkpoint: ...

    def apply(
        self,
        host: str,
        vm_id: str,
        checkpoint_id: str,
        checkpoint_first: bool = False,
        progress: ProgressCallback | None = None,
        context: dict | None = None,
    ) -> Checkpoint | None: ...

    def remove(
        self,
        host: str,
        vm_id: str,
        checkpoint_id: str,
        subtree: bool = False,
        force: bool = False,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        context: dict | None = None,
    ) -> RemovePlan: ...

    def start(self, host: str, vm_id: str, context: dict | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class BackupOutcome:
    """What a backup of one VM ended with (``ok`` with its point, or the reason it did not)."""

    ok: bool
    point_id: str | None = None
    error: str | None = None
    refused: bool = False


# (host, vm_id, vm_name, mode or None for the usual choice) -> outcome; the core runs it
# through the job manager, so a promote's backups are jobs like any other.
BackupRunner = Callable[[str, str, str, "str | None"], BackupOutcome]


@dataclass(frozen=True, slots=True)
class StepOutcome:
    host: str
    vm_name: str
    ok: bool
    message: str
    refused: bool = False


@dataclass(frozen=True, slots=True)
class StepReport:
    """One step on a window: the window as it now stands and what happened per VM."""

    window: ChangeWindow
    outcomes: tuple[StepOutcome, ...]

    @property
    def failed(self) -> tuple[StepOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    @property
    def exit_code(self) -> int:
        """0 when every VM went through; 4 when the only failures were refusals; else 1."""
        if not self.failed:
            return EXIT_OK
        return EXIT_REFUSED if all(o.refused for o in self.failed) else EXIT_FAILED


def validate_ticket(ticket: str | None) -> str | None:
    if ticket is None or not ticket.strip():
        return None
    cleaned = ticket.strip()
    if len(cleaned) > MAX_TICKET_LENGTH or any(unicodedata.category(ch) == "Cc" for ch in cleaned):
        raise UsageError(f"a ticket reference has at most {MAX_TICKET_LENGTH} characters and no control characters")
    return cleaned


class ChangeWindows:
    def __init__(
        self,
        store: WindowStore,
        actions: CheckpointSteps,
        audit: AuditLog,
        clock: Clock,
        backup: BackupRunner | None = None,
        find_vm: Callable[[str, str], VM | None] | None = None,
    ) -> None:
        """``backup``: how a promote backs a VM up (the core's runs a backup job and waits);
        ``find_vm(host, vm_id)``: the VM as its host has it now (resuming an open)."""
        self._store = store
        self._actions = actions
        self._audit = audit
        self._clock = clock
        self._backup = backup
        self._find_vm = find_vm

    # -- reading -------------------------------------------------------------------------------
    def windows(self) -> list[ChangeWindow]:
        return self._store.windows()

    def open_windows(self) -> list[ChangeWindow]:
        return [w for w in self._store.windows() if w.is_open]

    def open_checkpoints(self) -> WindowCheckpoints:
        """The open windows' checkpoints, for the policy's change-window-open rule."""
        out: dict[tuple[str, str, str], OpenWindow] = {}
        for window in self.open_windows():
            info = OpenWindow(window.name, window.ticket, window.created, len(window.holding))
            for vm in window.holding:
                if vm.checkpoint_id is not None:
                    out[(vm.host, vm.vm_id, vm.checkpoint_id)] = info
        return out

    def window(self, name: str) -> ChangeWindow:
        windows = self._store.windows()
        found = next((w for w in windows if w.name == name.strip()), None)
        if found is None:
            known = ", ".join(repr(w.name) for w in windows) or "none"
            raise UsageError(f"no change window named {name.strip()!r} (known: {known})")
        return found

    def select(self, window: ChangeWindow, vms: Iterable[str] | None = None) -> list[WindowVM]:
        """The window's VMs that hold its checkpoint, all or those named (name, id or host/name)."""
        if not vms:
            chosen = list(window.holding)
        else:
            chosen = []
            for wanted in vms:
                key = wanted.strip().casefold()
                match = [v for v in window.vms if key in (v.vm_name.casefold(), v.vm_id.casefold(), f"{v.host}/{v.vm_name}".casefold())]
                if len(match) != 1:
                    names = ", ".join(f"{v.host}/{v.vm_name}" for v in window.vms)
                    what = "is on several hosts; name it host/VM" if match else "is not in it"
                    raise UsageError(f"VM {wanted.strip()!r} {what} ({window.label}: {names})")
                if not match[0].state.holds_checkpoint:
                    raise UsageError(f"VM {match[0].vm_name!r} of {window.label} holds no checkpoint (it is {match[0].state})")
                if match[0] not in chosen:
                    chosen.append(match[0])
        if not chosen:
            raise UsageError(f"{window.label} is closed: no VM holds its checkpoint any more")
        return chosen

    def plan(self, name: str, step: str, vms: Iterable[str] | None = None, start: bool = False) -> StepPlan:
        """What ``step`` (rollback, promote, discard) would do on the chosen VMs, to confirm;
        ``start``: a rollback starts each VM afterwards."""
        window = self.window(name)
        return plan_step(self._actions, window, self.select(window, vms), step, start)

    def refuse(self, plan: StepPlan, result: str, reason: str) -> None:
        """Audit a step that was declined or refused before it began, one entry per VM."""
        for vm in [*plan.vms, *(v for v, _ in plan.refused)]:
            args = {**self._context(plan.window), "checkpoint_id": vm.checkpoint_id}
            self._audit.record(f"change.{plan.step}", vm.host, vm.vm_name, args, result, 0.0, reason)

    # -- opening -------------------------------------------------------------------------------
    def open(
        self,
        name: str,
        vms: Sequence[VMRef],
        checkpoint_type: str = "Standard",
        ticket: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> StepReport:
        """Take one checkpoint called ``name`` of each VM in ``vms`` and record the window."""
        clean_name = validate_checkpoint_name(name)
        kind = normalise_checkpoint_type(checkpoint_type)
        clean_ticket = validate_ticket(ticket)
        unique: dict[tuple[str, str], VMRef] = {(vm.host, vm.id): vm for vm in vms}
        if not unique:
            raise UsageError("a change window needs at least one VM")
        window = ChangeWindow(
            name=clean_name,
            checkpoint_type=kind,
            created=self._clock.now(),
            user=local_user(),
            vms=tuple(WindowVM(vm.host, vm.id, vm.name) for vm in unique.values()),
            ticket=clean_ticket,
        )

        def add(windows: list[ChangeWindow]) -> list[ChangeWindow]:
            if any(w.name == clean_name and w.is_open for w in windows):
                raise UsageError(f"a change window named {clean_name!r} is open already; close it or pick another name")
            # A closed window of the same name makes way: names identify windows.
            return [w for w in windows if w.name != clean_name] + [window]

        with self._one_step(clean_name, "open", window_vms=window.vms):
            self._store.update(add)
            return self._take_pending(window, progress, cancel, resuming=False)

    def resume_open(
        self, name: str, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> StepReport:
        """Go on opening window ``name`` where a killed process left it: each VM still pending
        gets its checkpoint, or keeps the one that process took but had not recorded yet (a
        checkpoint of the window's name taken since the window was opened), never a second."""
        with self._one_step(name, "open"):
            return self._take_pending(self.window(name), progress, cancel, resuming=True)

    def _take_pending(
        self, window: ChangeWindow, progress: ProgressCallback | None, cancel: CancelToken | None, resuming: bool
    ) -> StepReport:
        context = self._context(window)
        outcomes: list[StepOutcome] = []
        pending = [vm for vm in window.vms if vm.state is VMState.PENDING]
        total = len(pending)
        for index, entry in enumerate(pending):
            if cancel is not None and cancel.cancelled:
                outcomes.append(StepOutcome(entry.host, entry.vm_name, False, "not attempted: cancelled"))
                continue
            _report(progress, "checkpoint", f"checkpoint of {entry.vm_name} on {entry.host}", entry.vm_name, index, total)
            try:
                taken = self._left_by_a_killed_run(window, entry) if resuming else None
                created = taken or self._actions.create(entry.host, entry.vm_id, window.name, window.checkpoint_type, context=context)
            except HvtuiError as err:
                self._save(window.name, dataclasses.replace(entry, state=VMState.FAILED, error=str(err)))
                outcomes.append(StepOutcome(entry.host, entry.vm_name, False, str(err), isinstance(err, RefusedError | ReadOnlyError)))
                _report(progress, "checkpoint", f"{entry.host}/{entry.vm_name}: failed: {err}", entry.vm_name, index + 1, total)
                continue
            self._save(
                window.name,
                dataclasses.replace(entry, state=VMState.OPEN, checkpoint_id=created.id, checkpoint_name=created.name),
            )
            what = f"checkpoint {created.name!r} (id {created.id})"
            how = "kept the checkpoint taken before the process ended" if taken else "checkpoint taken"
            outcomes.append(StepOutcome(entry.host, entry.vm_name, True, f"{what}, taken before the process ended" if taken else what))
            _report(progress, "checkpoint", f"{entry.host}/{entry.vm_name}: {how}", entry.vm_name, index + 1, total)
        _report(progress, "done", "", None, total, total)
        return StepReport(self.window(window.name), tuple(outcomes))

    def _left_by_a_killed_run(self, window: ChangeWindow, entry: WindowVM) -> Checkpoint | None:
        """The checkpoint of the window's name a killed run took of this VM (and audited) but did
        not record, if the VM has one taken since the window was opened."""
        if self._find_vm is None:
            return None
        vm = self._find_vm(entry.host, entry.vm_id)
        if vm is None:
            raise HvtuiError(f"{entry.host}: VM {entry.vm_name!r} (id {entry.vm_id}) is not there any more")
        since = window.created - CLOCK_SLACK
        taken = [cp for cp in vm.checkpoints if cp.name == window.name and cp.created >= since]
        if not taken:
            return None
        cp = max(taken, key=lambda c: c.created)
        args = {**self._context(window), "checkpoint_id": cp.id, "adopted": True}
        self._audit.record("change.open", entry.host, entry.vm_name, args, "ok", 0.0)
        return cp

    # -- closing -------------------------------------------------------------------------------
    def rollback(
        self, name: str, vms: Iterable[str] | None = None, progress: ProgressCallback | None = None, start: bool = False
    ) -> StepReport:
        """Apply the window's checkpoint to each chosen VM (its state since is lost); ``start``:
        then start each VM (a VM rolled back but not started is reported as failed, saying why)."""
        with self._one_step(name, "rollback", vms):
            return self._rollback(self.window(name), vms, progress, start)

    def _rollback(
        self, window: ChangeWindow, vms: Iterable[str] | None, progress: ProgressCallback | None, start: bool
    ) -> StepReport:
        def step(entry: WindowVM) -> tuple[WindowVM, str]:
            assert entry.checkpoint_id is not None
            self._actions.apply(entry.host, entry.vm_id, entry.checkpoint_id, context=self._context(window))
            rolled = dataclasses.replace(entry, state=VMState.ROLLED_BACK, error=None)
            if not start:
                return rolled, "rolled back"
            self._save(window.name, rolled)  # rolled back, whatever the start does
            try:
                self._actions.start(entry.host, entry.vm_id, context=self._context(window))
            except Cancelled:
                raise
            except HvtuiError as err:  # the VM keeps its rolled-back state; the step says it did not start
                raise _prefixed(err, "rolled back, but not started") from err
            return rolled, "rolled back and started"

        return self._each(window, self.select(window, vms), "rollback", step, progress)

    def discard(
        self, name: str, vms: Iterable[str] | None = None, force: bool = False, progress: ProgressCallback | None = None
    ) -> StepReport:
        """Delete the window's checkpoint of each chosen VM, without a backup (a merge)."""
        with self._one_step(name, "discard", vms):
            return self._discard(self.window(name), vms, force, progress)

    def _discard(
        self, window: ChangeWindow, vms: Iterable[str] | None, force: bool, progress: ProgressCallback | None
    ) -> StepReport:
        def step(entry: WindowVM) -> tuple[WindowVM, str]:
            assert entry.checkpoint_id is not None
            self._actions.remove(entry.host, entry.vm_id, entry.checkpoint_id, force=force, context=self._context(window))
            return dataclasses.replace(entry, state=VMState.DISCARDED, error=None), "checkpoint deleted"

        return self._each(window, self.select(window, vms), "discard", step, progress)

    def promote(
        self,
        name: str,
        vms: Iterable[str] | None = None,
        mode: str | None = None,
        progress: ProgressCallback | None = None,
        backup: BackupRunner | None = None,
    ) -> StepReport:
        """Back up each chosen VM; only once its backup succeeded, delete its window checkpoint.

        The merge headroom is checked before the backup (a merge that cannot fit is refused
        and nothing is done on that VM) and again by the deletion.  A VM whose backup failed
        keeps its checkpoint, and the reason is kept in the window.
        """
        runner = backup or self._backup
        if runner is None:
            raise HvtuiError("promoting needs the backup service, which this hvtui was built without")
        with self._one_step(name, "promote", vms):
            return self._promote(self.window(name), vms, mode, progress, runner)

    def _promote(
        self,
        window: ChangeWindow,
        vms: Iterable[str] | None,
        mode: str | None,
        progress: ProgressCallback | None,
        runner: BackupRunner,
    ) -> StepReport:
        context = self._context(window)

        def step(entry: WindowVM) -> tuple[WindowVM, str]:
            assert entry.checkpoint_id is not None
            args = {**context, "checkpoint_id": entry.checkpoint_id, "mode": mode}
            with self._audit.action("change.promote", entry.host, entry.vm_name, args) as audit_entry:
                refusal = self._actions.plan_remove(entry.host, entry.vm_id, entry.checkpoint_id).refusal()
                if refusal is not None:
                    raise RefusedError(f"not backed up, checkpoint kept: {refusal}")
                outcome = runner(entry.host, entry.vm_id, entry.vm_name, mode)
                if not outcome.ok:
                    reason = f"backup failed, checkpoint kept: {outcome.error}"
                    raise RefusedError(reason) if outcome.refused else HvtuiError(reason)
                audit_entry.args["point_id"] = outcome.point_id
                backed_up = dataclasses.replace(entry, point_id=outcome.point_id)
                self._save(window.name, backed_up)
                try:
                    self._actions.remove(entry.host, entry.vm_id, entry.checkpoint_id, context=context)
                except HvtuiError as err:
                    raise _prefixed(err, f"backed up as point {outcome.point_id}, but the checkpoint was kept") from err
            return (
                dataclasses.replace(backed_up, state=VMState.PROMOTED, error=None),
                f"backed up as point {outcome.point_id}; checkpoint deleted",
            )

        return self._each(window, self.select(window, vms), "promote", step, progress)

    # -- helpers -------------------------------------------------------------------------------
    @contextmanager
    def _one_step(
        self, name: str, step: str, vms: Iterable[str] | None = None, *, window_vms: Sequence[WindowVM] = ()
    ) -> Iterator[None]:
        """Hold window ``name`` while ``step`` runs; a step refused because another holds it is
        audited (one entry per VM it named) and raised."""
        try:
            with self._store.step(name.strip(), step):
                yield
        except WindowBusyError as err:
            try:
                window = self.window(name)
                named = window_vms or self.select(window, vms)
                context = self._context(window)
            except HvtuiError:  # a window still to be opened, or VMs it does not have
                named, context = window_vms, {"window": name.strip()}
            for vm in named:
                args = {**context, "checkpoint_id": vm.checkpoint_id}
                self._audit.record(f"change.{step}", vm.host, vm.vm_name, args, RESULT_REFUSED, 0.0, str(err))
            if not named:
                self._audit.record(f"change.{step}", "", None, context, RESULT_REFUSED, 0.0, str(err))
            raise

    @staticmethod
    def _context(window: ChangeWindow) -> dict:
        return {"window": window.name, **({"ticket": window.ticket} if window.ticket else {})}

    def _each(
        self,
        window: ChangeWindow,
        chosen: list[WindowVM],
        what: str,
        step: Callable[[WindowVM], tuple[WindowVM, str]],
        progress: ProgressCallback | None,
    ) -> StepReport:
        outcomes: list[StepOutcome] = []
        for index, entry in enumerate(chosen):
            _report(progress, what, f"{what} {entry.vm_name} on {entry.host}", entry.vm_name, index, len(chosen))
            try:
                updated, message = step(entry)
            except Cancelled:
                raise
            except HvtuiError as err:
                self._save(window.name, dataclasses.replace(self._current(window.name, entry), error=str(err)))
                outcomes.append(StepOutcome(entry.host, entry.vm_name, False, str(err), isinstance(err, RefusedError | ReadOnlyError)))
                continue
            self._save(window.name, updated)
            outcomes.append(StepOutcome(entry.host, entry.vm_name, True, message))
        _report(progress, "done", "", None, len(chosen), len(chosen))
        return StepReport(self.window(window.name), tuple(outcomes))

    def _current(self, name: str, entry: WindowVM) -> WindowVM:
        return self.window(name).vm(entry.host, entry.vm_id) or entry

    def _save(self, name: str, entry: WindowVM) -> None:
        def change(windows: list[ChangeWindow]) -> list[ChangeWindow]:
            return [w.with_vm(entry) if w.name == name else w for w in windows]

        self._store.update(change)


def _prefixed(err: HvtuiError, prefix: str) -> HvtuiError:
    """``err``'s message after ``prefix``, still a refusal when it was one (``type(err)(...)``
    cannot be used: a HostError's constructor wants host and operation too)."""
    kind = RefusedError if isinstance(err, RefusedError | ReadOnlyError) else HvtuiError
    return kind(f"{prefix}: {err}")


def _report(progress: ProgressCallback | None, phase: str, message: str, current: str | None, done: int, total: int) -> None:
    if progress is not None:
        progress(Progress(phase, message=message, current=current, done=done, total=total))

