"""The ``copy`` job kind: restore points copied from one repository into another
(``hvtui.backups.copies``), with progress, rate and cancel like a backup.

A copy killed with its process is resumed by running it again: the chunks that arrived are
in the target, so only the rest is sent.  The job's host is the target repository
(``repository:NAME``), as in the audit log.
"""

from __future__ import annotations

from typing import Any

import humanize

from hvtui.engine.copy import ARRIVAL_CHECKS
from hvtui.errors import ReadOnlyError
from hvtui.events import CancelToken, ProgressCallback
from hvtui.jobs.kinds.base import JobQueue, services_of
from hvtui.jobs.model import Job, JobError, JobKind, RunFn

KIND = "copy"


def copy_kind(manager: JobQueue) -> JobKind:
    """The ``copy`` kind of ``manager`` (it runs on ``manager.services``)."""
    return JobKind(KIND, build=lambda job: _copy_run(manager, job))


def submit_copy(
    manager: JobQueue,
    source: str,
    target: str,
    vms: list[str] | None = None,
    point_ids: list[str] | None = None,
    vm_name: str | None = None,
    read_back: bool = False,
) -> Job:
    """Queue a copy of the points ``source`` holds and ``target`` lacks (of ``vms`` only, or
    only ``point_ids``, when given); ``read_back``: every chunk sent is read back and checked.
    Unknown repositories: ``ConfigError`` now; read-only: ``ReadOnlyError`` now (audited by the
    service when the job would run)."""
    services = services_of(manager)
    src = services.backups.repository_config(source).name
    dst = services.backups.repository_config(target).name
    reason = services.backups.read_only_reason()
    if reason is not None:
        services.audit.record("copy", f"repository:{dst}", vm_name, {"from": src, "to": dst}, "refused", 0.0, f"read-only: {reason}")
        raise ReadOnlyError(f"copy refused: {reason}")
    params: dict[str, Any] = {"from": src, "to": dst, "vms": list(vms or []), "points": list(point_ids or [])}
    if read_back:
        params["read_back"] = True
    return manager.submit(KIND, f"repository:{dst}", None, vm_name, params)


def _copy_run(manager: JobQueue, job: Job) -> RunFn:
    services = services_of(manager)
    params = dict(job.params)

    def run(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        if services.copies_of is None:
            raise JobError("copy jobs need a job manager built with the copy service")
        copies = services.copies_of()
        done = copies.copy(
            str(params["from"]), str(params["to"]), list(params.get("vms") or []), list(params.get("points") or []),
            progress=progress, cancel=cancel, read_back=bool(params.get("read_back")),
        )  # fmt: skip
        summary = done.to_dict()
        check = ARRIVAL_CHECKS.get(done.arrival_check, done.arrival_check)
        summary["message"] = (
            f"{len(done.copied)} restore point(s) copied from {done.source} to {done.target}: {done.chunks_sent} chunks "
            f"sent ({humanize.naturalsize(done.bytes_sent, binary=True)}), {done.chunks_present} already there; "
            f"on arrival: {check}"
        )
        return summary

    return run
