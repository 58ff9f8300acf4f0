"""What change windows run through the job manager: a promote backs each VM up as an ordinary
``backup`` job (journaled, limited, shown in the job list like any other) and waits for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hvtui.changes.service import BackupOutcome, BackupRunner
from hvtui.errors import HvtuiError, ReadOnlyError, RefusedError
from hvtui.jobs.model import Job, JobState
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
