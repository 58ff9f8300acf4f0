"""What change windows run through the job manager: opening a window on many VMs is one
``change-open`` job (a progress step and a log line per VM, cancel between VMs), and a promote
backs each VM up as an ordinary ``backup`` job (journaled, limited, listed like any other) and
waits for it.  A ``change-open`` job killed mid-way is listed as interrupted; the window records
what it did (VMs not reached stay "pending"), and resuming the job goes on with those VMs, keeping
a checkpoint the killed run had taken but not yet recorded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hvtui.actions.names import normalise_checkpoint_type, validate_checkpoint_name
from hvtui.changes.record import VMRef
from hvtui.changes.service import BackupOutcome, BackupRunner, StepReport, validate_ticket
from hvtui.errors import HvtuiError, ReadOnlyError, RefusedError, UsageError
from hvtui.events import CancelToken, ProgressCallback
from hvtui.jobs.kinds.base import JobQueue
from hvtui.jobs.model import Job, JobKind, JobState, RunFn
from hvtui.jobs.outcome import describe_error


class BackupJobs(Protocol):
    """The part of the job manager a promote uses (``hvtui.jobs.manager.JobManager``)."""

    def submit_backup(
        self, host: str, vm_id: str, mode: str | None = None, repository: str | None = None, vm_name: str | None = None
    ) -> Job: ...

    def wait(self, job_id: str, timeout: float | None = None) -> Job: ...


def backup_runner(manager: Callable[[], BackupJobs]) -> BackupRunner:
    """Back a VM up through the job manager ``manager()`` returns, wait, and say how it went."""

    def run(host: str, vm_id: str, vm_name: str, mode: str | None) -> BackupOutcome:
        jobs = manager()
        try:
            job = jobs.submit_backup(host, vm_id, mode=mode, vm_name=vm_name)
        except (ReadOnlyError, RefusedError) as err:
            return BackupOutcome(False, error=str(err), refused=True)
        except HvtuiError as err:
            return BackupOutcome(False, error=describe_error(err))
        final = jobs.wait(job.id)
        if final.state is JobState.SUCCEEDED:
            return BackupOutcome(True, point_id=(final.summary or {}).get("point_id"))
        reason = final.error or str(final.state)
        return BackupOutcome(False, error=f"job {final.id}: {reason}", refused=final.error_kind == "refused")

    return run


# -- "checkpoint all": opening a window as one job ---------------------------------------------------
CHANGE_OPEN = "change-open"


@dataclass(frozen=True, slots=True)
class TargetVM:
    """A VM as the job's parameters name it (host, id, name)."""

    host: str
    id: str
    name: str


class WindowOpener(Protocol):
    """The change-window service as the job uses it (``hvtui.changes.ChangeWindows``)."""

    def open(
        self,
        name: str,
        vms: Sequence[VMRef],
        checkpoint_type: str = "Standard",
        ticket: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> StepReport: ...

    def resume_open(
        self, name: str, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> StepReport: ...


def change_open_kind(changes: Callable[[], WindowOpener]) -> JobKind:
    """The ``change-open`` kind: a window's checkpoints, one progress step (and log line) per VM."""
    return JobKind(CHANGE_OPEN, build=lambda job: _open_run(changes, job))


def submit_change_open(
    manager: JobQueue, name: str, vms: Sequence[VMRef], checkpoint_type: str = "Standard", ticket: str | None = None
) -> Job:
    """Queue the opening of change window ``name`` on ``vms`` (checked first: a bad name or
    ticket is refused here, not in a failed job)."""
    validate_checkpoint_name(name)
    normalise_checkpoint_type(checkpoint_type)
    validate_ticket(ticket)
    if not vms:
        raise UsageError("a change window needs at least one VM")
    hosts = sorted({vm.host for vm in vms})
    params = {
        "name": name.strip(),
        "checkpoint_type": checkpoint_type,
        "ticket": ticket,
        "vms": [[vm.host, vm.id, vm.name] for vm in vms],
    }
    # The job's "host" names every host it touches: it takes no per-host slot from backups.
    return manager.submit(CHANGE_OPEN, ",".join(hosts), None, name.strip(), params)


def _open_run(changes: Callable[[], WindowOpener], job: Job) -> RunFn:
    params = dict(job.params)
    targets = [TargetVM(str(h), str(i), str(n)) for h, i, n in params["vms"]]

    def run(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        if job.resumed_from is not None:
            # The killed run recorded the window and what it did: go on with the VMs it left.
            report = changes().resume_open(str(params["name"]), progress=progress, cancel=cancel)
            if not report.outcomes:
                return {"message": f"{report.window.label}: nothing was left to do", "window": report.window.name, "vms": []}
        else:
            report = changes().open(
                str(params["name"]), targets, str(params["checkpoint_type"]), params.get("ticket"), progress=progress, cancel=cancel
            )
        ok = [o for o in report.outcomes if o.ok]
        if not ok:
            reasons = "; ".join(f"{o.host}/{o.vm_name}: {o.message}" for o in report.outcomes)
            failure = RefusedError if all(o.refused for o in report.outcomes) else HvtuiError
            raise failure(f"no checkpoint taken for {report.window.label}: {reasons}")
        message = f"{report.window.label}: {len(ok)} of {len(report.outcomes)} VMs checkpointed"
        if report.failed:
            message += "; not: " + "; ".join(f"{o.host}/{o.vm_name} ({o.message})" for o in report.failed)
        return {
            "message": message,
            "window": report.window.name,
            "vms": [{"host": o.host, "vm": o.vm_name, "ok": o.ok, "message": o.message} for o in report.outcomes],
        }

    return run
