"""Running schedules: ``run_due`` (the one entry point for the host's scheduler) and ``run_now``.

Single instance: ``run_due`` holds an exclusive ``flock`` on ``schedule-run.lock`` in the state
directory for its whole run, so a second one (a timer firing while a long run goes on) exits
at once with ``ScheduleBusy``.  Backups go through the job manager like any other (its limits,
journal and audit); each VM's result is journaled as it ends, so a run killed half-way is
continued by the next start without backing up its finished VMs again.  A failed VM never
stops the others and its older points stay (retention is applied by the backup service only
after a success).  One ``RunReport`` per run is handed to the notifier.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Protocol

from hvtui.clock import Clock
from hvtui.config.schedules import ScheduleConfig
from hvtui.config.timing import local_zone
from hvtui.config.units import format_duration
from hvtui.errors import HvtuiError, UsageError
from hvtui.model import VM, Inventory, RestorePointSummary
from hvtui.notify.report import RunReport, VMResult
from hvtui.schedules.due import DueState, work_out
from hvtui.schedules.journal import RunRecord, ScheduleHistory, ScheduleJournal

log = logging.getLogger(__name__)

# A VM failing this many runs in a row is critical, not a warning (VMResult.failures_in_a_row).
CRITICAL_AFTER_FAILURES = 3
NO_NOTIFIER = "no notifier: notifications are not configured in this build"
# The run's overall event, worst first (notify.report.EVENTS).
_EVENT_ORDER = ("failure", "missed", "warning", "success")

Notifier = Callable[[RunReport, tuple[str, ...]], list[str]]


class ScheduleBusy(HvtuiError):
    """Another ``run-due`` holds the schedule lock."""


def failure_severity(result: VMResult) -> str | None:
    """"critical" for a VM failing ``CRITICAL_AFTER_FAILURES`` runs in a row, "warning" for a
    failure before that, None when it did not fail."""
    if result.outcome != "failed":
        return None
    return "critical" if result.failures_in_a_row >= CRITICAL_AFTER_FAILURES else "warning"


class BackupJobs(Protocol):
    """The job manager as the runner uses it."""

    def submit_backup(
        self, host: str, vm_id: str, mode: str | None = None, repository: str | None = None, vm_name: str | None = None
    ) -> Any: ...

    def submit_copy(
        self, source: str, target: str, vms: list[str] | None = None, point_ids: list[str] | None = None, vm_name: str | None = None
    ) -> Any: ...

    def wait(self, job_id: str, timeout: float | None = None) -> Any: ...

    def interrupted_jobs(self) -> list[Any]: ...

    def resume(self, job_id: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class SelectedVM:
    vm: VM
    group: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class SelectionReport:
    """The VMs a schedule selects now, the ones it does not (with why), and the selectors
    matching no VM."""

    selected: tuple[SelectedVM, ...]
    left_out: tuple[SelectedVM, ...]
    unmatched: tuple[str, ...]
    unreachable: tuple[str, ...]  # hosts it may select VMs of that could not be read: their VMs are unknown


@dataclass(slots=True)
class RunDueResult:
    reports: list[RunReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(report.event in ("success", "warning") for report in self.reports)


@dataclass(frozen=True, slots=True)
class ScheduleStatus:
    """A schedule as ``schedule list`` and the console show it."""

    schedule: ScheduleConfig
    next_run: datetime
    last_run: RunRecord | None
    missed: tuple[datetime, ...]  # recorded missed slots, newest last
    running: bool  # a run that never finished (running now, or killed and waiting to be continued)


class ScheduleRunner:
    def __init__(
        self,
        schedules: tuple[ScheduleConfig, ...],
        journal: ScheduleJournal,
        lock_path: Path,
        inventory: Callable[[], Inventory],
        points: Callable[[str, str, str | None], list[RestorePointSummary]],
        jobs: Callable[[], BackupJobs],
        clock: Clock,
        notifier: Notifier | None = None,
        zone: Callable[[], tzinfo] = local_zone,
    ) -> None:
        self.schedules = schedules
        self.journal = journal
        self.lock_path = lock_path
        self._inventory = inventory
        self._points = points
        self._jobs = jobs
        self._clock = clock
        self._notifier = notifier
        self._zone = zone

    # -- looking -----------------------------------------------------------------------------
    def schedule(self, name: str) -> ScheduleConfig:
        for schedule in self.schedules:
            if schedule.name == name:
                return schedule
        import difflib

        names = [s.name for s in self.schedules]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (configured: {', '.join(names) or 'none'})"
        raise UsageError(f"no schedule named {name!r}{hint}")

    def statuses(self) -> list[ScheduleStatus]:
        histories = self.journal.read()
        now, zone = self._clock.now(), self._zone()
        out = []
        for schedule in self.schedules:
            history = histories.get(schedule.name) or ScheduleHistory()
            state = work_out(schedule, history, now, zone)
            running = any(not run.is_finished for run in history.runs)
            out.append(ScheduleStatus(schedule, state.next_run, history.last_run, tuple(history.missed), running))
        return out

    def selection(self, schedule: ScheduleConfig, inventory: Inventory | None = None) -> SelectionReport:
        inventory = inventory or self._inventory()
        selected, left_out, seen = [], [], []
        unreachable = []
        for host in inventory.hosts:
            if host.error is not None and not host.vms and schedule.may_select_host(host.name, host.group):
                unreachable.append(host.name)
            for vm in host.vms:
                seen.append((vm.host, vm.name, host.group))
                choice = schedule.selection(vm.host, vm.name, host.group)
                (selected if choice.selected else left_out).append(SelectedVM(vm, host.group, choice.reason))
        return SelectionReport(tuple(selected), tuple(left_out), tuple(schedule.unmatched_selectors(seen)), tuple(unreachable))

    # -- running ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the run lock, or raise ``ScheduleBusy`` at once."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise ScheduleBusy(
                    f"another hvtui schedule run is in progress (pid {holder}); this one exits without running anything"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def run_due(self, only: str | None = None) -> RunDueResult:
        """Record missed slots (once), continue runs a killed process left, run what is due
        (of every schedule, or of the one named ``only``)."""
        result = RunDueResult()
        wanted = self.schedules if only is None else (self.schedule(only),)
        with self.exclusive():
            histories = self.journal.read()
            zone = self._zone()
            for schedule in wanted:
                now = self._clock.now()
                history = histories.get(schedule.name) or ScheduleHistory()
                state = work_out(schedule, history, now, zone)
                if state.first_look:
                    self.journal.seen(schedule.name, now)
                missed_vms = self._missed_selection(schedule) if state.newly_missed else None
                for slot in state.newly_missed:
                    self.journal.missed(schedule.name, slot, now)
                    result.reports.append(self._missed_report(schedule, slot, missed_vms))
                if state.resume is not None:
                    result.reports.append(self._execute(schedule, state.resume, history, resumed=True))
                if state.due_slot is not None:
                    run = self.journal.start(schedule.name, _run_id(), state.due_slot, self._clock.now())
                    history.runs.append(run)
                    result.reports.append(self._execute(schedule, run, history))
        return result

    def run_now(self, name: str) -> RunReport:
        """Run ``name`` at once, whatever its timing (``schedule run NAME --now``, the console's key)."""
        schedule = self.schedule(name)
        with self.exclusive():
            history = self.journal.read().get(schedule.name) or ScheduleHistory()
            run = self.journal.start(schedule.name, _run_id(), None, self._clock.now())
            history.runs.append(run)
            return self._execute(schedule, run, history)

    def due_state(self, name: str) -> DueState:
        schedule = self.schedule(name)
        return work_out(schedule, self.journal.read().get(name), self._clock.now(), self._zone())

    def _missed_selection(self, schedule: ScheduleConfig) -> SelectionReport | str:
        """The VMs a missed run would have backed up (as selected now), or why they are unknown."""
        try:
            return self.selection(schedule)
        except HvtuiError as err:
            return f"the VMs could not be listed: {err}"

    def _missed_report(self, schedule: ScheduleConfig, slot: datetime, selection: SelectionReport | str | None) -> RunReport:
        reason = f"the run due at {slot.isoformat(timespec='minutes')} did not start within its {format_duration(schedule.window)} window"
        results: tuple[VMResult, ...] = ()
        notes = [reason]
        if isinstance(selection, SelectionReport):
            results = tuple(VMResult(host=s.vm.host, vm=s.vm.name, outcome="missed", reason=reason) for s in selection.selected)
        elif selection is not None:
            notes.append(selection)
        report = RunReport(
            schedule=schedule.name,
            run_id=f"missed-{slot.astimezone(UTC).strftime('%Y%m%dT%H%M')}",
            started=slot.isoformat(),
            finished=None,
            event="missed",
            results=results,
            notes=tuple(notes),
        )
        return self._notify(schedule, report)

    def _execute(self, schedule: ScheduleConfig, run: RunRecord, history: ScheduleHistory, resumed: bool = False) -> RunReport:
        notes: list[str] = []
        if resumed:
            notes.append(f"continued run {run.run_id} (started {run.started.isoformat(timespec='seconds')}), which a stopped process left unfinished")
        try:
            selection = self.selection(schedule)
        except HvtuiError as err:
            selection = SelectionReport((), (), (), ())
            notes.append(f"the VMs could not be listed: {err}")
        for selector in selection.unmatched:
            notes.append(f"warning: selector {selector!r} selects no VM")
        for host in selection.unreachable:
            notes.append(f"host {host} could not be read: its VMs were not backed up")
        jobs = self._jobs()
        # A continued run resumes the backups the stopped process left (the job manager removes
        # their Recovery checkpoints first and stops offering them in the console).
        left = {(j.host, j.vm_id): j for j in jobs.interrupted_jobs() if j.kind == "backup"} if resumed else {}
        submitted: list[tuple[SelectedVM, Any, str | None]] = []
        for item in selection.selected:
            vm = item.vm
            if (vm.host, vm.id) in run.results:
                continue  # done before the process running it was stopped
            mode = None
            try:
                mode = self._mode_for(schedule, vm)  # reads the repository: may fail like the backup would
                if (vm.host, vm.id) in left:
                    job = jobs.resume(left[(vm.host, vm.id)].id)
                    mode = job.params.get("mode") if not job.params.get("auto_mode") else mode
                else:
                    job = jobs.submit_backup(vm.host, vm.id, mode=mode, repository=schedule.repository, vm_name=vm.name)
            except HvtuiError as err:
                self._record(run, history, vm, "failed", mode, reason=str(err))
                continue
            submitted.append((item, job, mode))
        for item, job, mode in submitted:
            final = jobs.wait(job.id)
            self._record_job(run, history, item.vm, final, mode)
            notes.extend(self._copies_after(schedule, jobs, item.vm, final))
        results = tuple(run.results.values())
        event = _event_of(results, notes)
        now = self._clock.now()
        report = RunReport(
            schedule=schedule.name,
            run_id=run.run_id,
            started=run.started.isoformat(),
            finished=now.isoformat(),
            event=event,
            results=results,
            notes=tuple(notes),
        )
        report = self._notify(schedule, report)
        self.journal.end(run, event, report.notes, now)
        return report

    def _notify(self, schedule: ScheduleConfig, report: RunReport) -> RunReport:
        if not schedule.notify:
            return report
        if self._notifier is None:
            return _with_notes(report, NO_NOTIFIER)
        try:
            errors = self._notifier(report, schedule.notify)
        except Exception as err:  # a notification never fails the backup  # noqa: BLE001
            errors = [f"notification failed: {type(err).__name__}: {err}"]
        return _with_notes(report, *errors) if errors else report

    def _mode_for(self, schedule: ScheduleConfig, vm: VM) -> str | None:
        """The mode to ask for: a full when ``full_every`` is due (a fresh base for a differential);
        None (incremental, or a full for a VM's first point, without a warning) otherwise."""
        if schedule.mode == "full":
            return "full"
        points = self._points(vm.host, vm.id, schedule.repository)
        mine = [p for p in points if p.vm_id == vm.id]
        fulls = [p for p in mine if p.mode == "full"]
        if not fulls:
            return "full" if schedule.mode == "differential" or mine else None
        if schedule.full_every is not None:
            age = (self._clock.now() - max(p.time for p in fulls)).total_seconds()
            # The window's slack: a full made a little after its slot is still "every 7d".
            if age + schedule.window >= schedule.full_every:
                return "full"
        return None if schedule.mode == "incremental" else schedule.mode

    def _copies_after(self, schedule: ScheduleConfig, jobs: BackupJobs, vm: VM, final: Any) -> list[str]:
        """Wait for the copies of a successful backup's point: the copy job its repository's
        ``copy_to:`` queued, and the schedule's own ``copy_to:`` (unless it is the same target).
        A copy that fails is a warning note; the backup stays a success."""
        summary = dict(final.summary or {})
        point = summary.get("point_id")
        if str(getattr(final.state, "value", final.state)) != "succeeded" or not point:
            return []
        waits: list[tuple[str, Any]] = []
        if summary.get("copy_job"):
            waits.append((str(summary.get("copy_to")), summary["copy_job"]))
        if schedule.copy_to is not None and schedule.copy_to != summary.get("copy_to"):
            try:
                copy = jobs.submit_copy(summary.get("repository"), schedule.copy_to, point_ids=[point], vm_name=vm.name)
            except HvtuiError as err:
                return [f"warning: the copy of {vm.host}/{vm.name} to {schedule.copy_to} was not started: {err}"]
            waits.append((schedule.copy_to, copy.id))
        notes = []
        for target, job_id in waits:
            copied = jobs.wait(job_id)
            if str(getattr(copied.state, "value", copied.state)) != "succeeded":
                notes.append(f"warning: the copy of {vm.host}/{vm.name} to {target} failed: {copied.error or copied.state}")
        return notes

    def _record_job(self, run: RunRecord, history: ScheduleHistory, vm: VM, final: Any, mode: str | None) -> None:
        summary = dict(final.summary or {})
        if str(getattr(final.state, "value", final.state)) == "succeeded":
            warnings = [str(w) for w in summary.get("warnings") or []]
            self._record(
                run,
                history,
                vm,
                "warning" if warnings else "succeeded",
                summary.get("mode") or mode,
                size_bytes=summary.get("stored_bytes"),
                duration=final.duration,
                reason="; ".join(warnings) or None,
                point_id=summary.get("point_id"),
            )
        else:
            self._record(run, history, vm, "failed", mode, duration=final.duration, reason=final.error or str(final.state))

    def _record(
        self,
        run: RunRecord,
        history: ScheduleHistory,
        vm: VM,
        outcome: str,
        mode: str | None,
        size_bytes: int | None = None,
        duration: float | None = None,
        reason: str | None = None,
        point_id: str | None = None,
    ) -> None:
        in_a_row = history.failures_in_a_row(vm.host, vm.id) + 1 if outcome == "failed" else 0
        result = VMResult(
            host=vm.host,
            vm=vm.name,
            outcome=outcome,
            mode=mode,
            size_bytes=size_bytes,
            duration_seconds=duration,
            reason=reason,
            point_id=point_id,
            failures_in_a_row=in_a_row,
        )
        self.journal.vm_result(run, vm.id, result)


def _run_id() -> str:
    return secrets.token_hex(4)


def _with_notes(report: RunReport, *notes: str) -> RunReport:
    return replace(report, notes=(*report.notes, *notes))


def _event_of(results: tuple[VMResult, ...], notes: list[str]) -> str:
    outcomes = {r.outcome for r in results}
    if "failed" in outcomes or any(n.startswith(("the VMs could not be listed", "host ")) for n in notes):
        return "failure"
    if "missed" in outcomes:
        return "missed"
    if "warning" in outcomes or any(n.startswith("warning:") for n in notes):
        return "warning"
    return "success"


def local_text(when: datetime, zone: tzinfo) -> str:
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


__all__ = [
    "CRITICAL_AFTER_FAILURES",
    "DueState",
    "RunDueResult",
    "ScheduleBusy",
    "ScheduleRunner",
    "ScheduleStatus",
    "SelectionReport",
    "failure_severity",
    "local_text",
]
