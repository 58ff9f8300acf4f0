"""Jobs: long operations (backups, restores, ...) queued and run in-process; see ``manager``.

- ``model``: ``Job``, ``JobState``, ``JobEvent``, ``JobKind``, ``JobError``.
- ``manager``: ``JobManager``, the queue and its limits.
- ``table``: ``JobTable``, this process's jobs and their lock, shared by the parts below.
- ``runner``: worker threads, cancel, progress events.
- ``replay``: the job journal, and resuming jobs a killed console left behind.
- ``outcome``: error words, exit codes, the JSON form of a job.
- ``headless``: ``run_job_blocking`` for the CLI.
- ``kinds/``: one module per job kind (backup, restore).
"""

from hvtui.jobs.headless import run_job_blocking
from hvtui.jobs.kinds import register_engine_kinds
from hvtui.jobs.kinds.backup import submit_backup
from hvtui.jobs.kinds.base import EngineServices
from hvtui.jobs.kinds.restore import LOCAL_HOST, RESTORE_TARGETS, submit_restore
from hvtui.jobs.manager import JobManager
from hvtui.jobs.model import Job, JobError, JobEvent, JobKind, JobState, RunFn
from hvtui.jobs.outcome import describe_error, error_kind_of, exit_code_for, job_to_dict

__all__ = [
    "LOCAL_HOST",
    "RESTORE_TARGETS",
    "EngineServices",
    "Job",
    "JobError",
    "JobEvent",
    "JobKind",
    "JobManager",
    "JobState",
    "RunFn",
    "describe_error",
    "error_kind_of",
    "exit_code_for",
    "job_to_dict",
    "register_engine_kinds",
    "run_job_blocking",
    "submit_backup",
    "submit_restore",
]
