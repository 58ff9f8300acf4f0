"""A job's outcome in words and numbers: the reason it failed, its error kind, the CLI exit
code, its JSON form, and the small helpers the manager and the journal replay share."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hvtui.errors import ConfigError, HostError, HvtuiError, ReadOnlyError, RefusedError, RepositoryError
from hvtui.jobs.model import Job, JobError, JobState
from hvtui.journal import process_identity
from hvtui.logsetup import redact


def describe_error(err: BaseException) -> str:
    """The reason a job failed, in plain words (no traceback, no secrets)."""
    if isinstance(err, HvtuiError):
        text = str(err)
    elif isinstance(err, OSError):
        text = err.strerror or str(err) or type(err).__name__
        if err.filename is not None:
            text += f": {err.filename}"
        if err.filename2 is not None:
            text += f" -> {err.filename2}"
    elif isinstance(err, MemoryError):
        text = "out of memory"
    else:
        text = f"unexpected error: {type(err).__name__}: {err}" if str(err) else f"unexpected error: {type(err).__name__}"
    return redact(text)


def error_kind_of(err: BaseException) -> str:
    if isinstance(err, (ReadOnlyError, RefusedError)):
        return "refused"
    if isinstance(err, ConfigError):
        return "config"
    if isinstance(err, HostError):
        return "host"
    if isinstance(err, RepositoryError):
        return "repository"
    if isinstance(err, (HvtuiError, OSError)):
        return "failed"
    return "unexpected"


def exit_code_for(job: Job) -> int:
    """The CLI exit code for a final job (the codes of ``hvtui.cli``)."""
    from hvtui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE

    if job.state is JobState.SUCCEEDED:
        return EXIT_OK
    if job.state is JobState.CANCELLED:
        return EXIT_INTERRUPTED
    if job.error_kind == "refused":
        return EXIT_REFUSED
    if job.error_kind == "config":
        return EXIT_USAGE
    return EXIT_FAILED


def job_to_dict(job: Job) -> dict[str, Any]:
    """A job as plain JSON values (``hvtui jobs --json``, the CLI's ``--json`` outputs)."""

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    progress = job.progress
    return {
        "id": job.id,
        "kind": job.kind,
        "mode": job.mode,
        "state": job.state_word,
        "host": job.host,
        "vm_id": job.vm_id,
        "vm_name": job.vm_name,
        "params": dict(job.params),
        "created": when(job.created),
        "started": when(job.started),
        "finished": when(job.finished),
        "duration": job.duration,
        "progress": None
        if progress is None
        else {"phase": progress.phase, "message": progress.message, "done": progress.done, "total": progress.total},
        "summary": dict(job.summary) if job.summary is not None else None,
        "error": job.error,
        "error_kind": job.error_kind,
        "cancel_requested": job.cancel_requested,
        "retry_of": job.retry_of,
        "resumed_from": job.resumed_from,
        "resumed_by": job.resumed_by,
        "dismissed": job.dismissed,
        "owner_pid": job.owner_pid,
    }


def state_words(job: Job) -> str:
    if job.resumed_by:
        return f"already resumed as job {job.resumed_by}"
    if job.dismissed:
        return "dismissed"
    if job.state in (JobState.QUEUED, JobState.RUNNING) and job.owner_pid not in (None, os.getpid()):
        return f"{job.state} in another hvtui process (pid {job.owner_pid})"
    return job.state_word


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def check_jsonable(params: dict[str, Any]) -> None:
    try:
        json.dumps(params)
    except (TypeError, ValueError) as err:
        raise JobError(f"job parameters must be plain JSON values: {err}") from None


def jsonable_summary(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The job's summary as plain JSON values (the journal stores it)."""
    if result is None:
        return {}
    return json.loads(json.dumps(dict(result), default=str))


_process_start_cache: dict[int, str | None] = {}


def owner_fields() -> dict[str, Any]:
    """pid and process start time of this process (recomputed after a fork)."""
    pid = os.getpid()
    if pid not in _process_start_cache:
        _process_start_cache[pid] = process_identity(pid)
    return {"pid": pid, "proc_start": _process_start_cache[pid]}
