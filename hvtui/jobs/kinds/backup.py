"""The ``backup`` job kind: submitting a backup of one VM, running it on the backup service,
before resuming one a killed process left, removing its Recovery checkpoint (only a
checkpoint hvtui can prove is its own: ``hvtui.backups.leftovers``), and for one killed
after its restore point was committed, telling whether the repository holds it."""

from __future__ import annotations

from typing import Any

import humanize

from hvtui.errors import ConfigError, HvtuiError
from hvtui.events import CancelToken, ProgressCallback
from hvtui.jobs.kinds.base import JobQueue, refuse_if_read_only, services_of
from hvtui.jobs.kinds.copy import submit_copy
from hvtui.jobs.model import Job, JobError, JobKind, RunFn
from hvtui.jobs.outcome import describe_error
from hvtui.model import BACKUP_MODES


def backup_kind(manager: JobQueue) -> JobKind:
    """The ``backup`` kind of ``manager`` (it runs on ``manager.services``)."""
    return JobKind(
        "backup",
        build=lambda job: _backup_run(manager, job),
        before_resume=lambda job: _before_backup_resume(manager, job),
        committed=lambda job, point_id: _committed_point(manager, job, point_id),
    )


def submit_backup(
    manager: JobQueue,
    host: str,
    vm_id: str,
    mode: str | None = None,
    repository: str | None = None,
    vm_name: str | None = None,
    consistency: str | None = None,
    limit_rate: int | None = None,
) -> Job:
    """Queue a backup of ``vm_id`` on ``host`` (see ``JobManager.submit_backup``).

    Refused at once (``ReadOnlyError``, audit-logged like the engine does) when the console
    or the host is read-only; an unknown host or repository is a ``ConfigError``.
    """
    services = services_of(manager)
    if mode is not None and mode not in BACKUP_MODES:
        raise ConfigError(f"unknown backup mode {mode!r} (expected {', '.join(BACKUP_MODES)})")
    host_object = services.hosts.host(host)  # unknown host: ConfigError now, not a failed job later
    if limit_rate is not None and limit_rate <= 0:
        raise ConfigError(f"--limit-rate must be above 0 bytes per second, not {limit_rate}")
    repo_name = services.backups.repository_config(repository).name
    auto = mode is None
    latest = services.backups.latest_point(host, vm_id, repo_name) if auto or vm_name is None else None
    if auto:
        # What the job will most likely do; decided again when it runs.
        mode = "incremental" if latest is not None else "full"
    if vm_name is None and latest is not None:
        vm_name = latest.vm_name
    refuse_if_read_only(services, "backup", host, vm_name or vm_id, {"mode": mode, "repository": repo_name, "vm_id": vm_id})
    params: dict[str, Any] = {"mode": mode, "auto_mode": auto, "repository": repo_name}
    if consistency is not None:
        params["consistency"] = consistency
    if limit_rate is not None:
        params["limit_rate"] = limit_rate  # applied to the host's reads when the job runs
    shown = limit_rate or host_object.read_rate_limit
    if shown:
        params["rate_limit"] = shown  # the jobs view shows it beside the rate
    return manager.submit("backup", host, vm_id, vm_name, params)


def _backup_run(manager: JobQueue, job: Job) -> RunFn:
    services = services_of(manager)
    params = dict(job.params)
    host, vm_id = job.host, job.vm_id
    if vm_id is None:
        raise JobError("a backup job needs a VM id")

    def run(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        if params.get("limit_rate") and services.hosts.host(host).limit_read_rate(int(params["limit_rate"])) is None:
            raise ConfigError(f"--limit-rate: host {host} reads local files (a lab host); there is no network read to limit")
        # Auto mode (None) asks for an incremental: the engine runs a full when the VM has no
        # earlier point in the repository, so a retried or resumed job still does right.
        mode = None if params.get("auto_mode") else str(params["mode"])
        result = services.backups.backup(
            host, vm_id, mode, params.get("repository"), progress=progress, cancel=cancel, job_id=job.id, vm_name=job.vm_name,
            consistency=params.get("consistency"),
        )
        summary = result.to_dict()
        summary["message"] = (
            f"{result.mode} point {result.point_id}: {humanize.naturalsize(result.new_bytes, binary=True)} new, "
            f"{humanize.naturalsize(result.stored_bytes, binary=True)} stored"
        )
        if result.fallback and mode is not None and mode != result.mode:
            summary["message"] += f" ({mode} asked for, but {result.fallback})"
        _follow_with_copy(manager, summary, result.repository, result.point_id, job.vm_name)
        return summary

    return run


def _follow_with_copy(manager: JobQueue, summary: dict[str, Any], repository: str, point_id: str, vm_name: str | None) -> None:
    """A repository naming ``copy_to:``: queue a copy job of the new point (its id goes into the
    summary as ``copy_job``); one that cannot be queued is a warning, the point stays good."""
    services = services_of(manager)
    target = services.backups.repository_config(repository).copy_to
    if target is None:
        return
    try:
        copy = submit_copy(manager, repository, target, point_ids=[point_id], vm_name=vm_name)
    except HvtuiError as err:
        summary.setdefault("warnings", []).append(f"the copy to {target} was not queued: {describe_error(err)}")
        return
    summary["copy_job"] = copy.id
    summary["copy_to"] = target
    summary["message"] += f"; copy to {target} queued (job {copy.id})"


def _before_backup_resume(manager: JobQueue, job: Job) -> None:
    """Remove the Recovery checkpoint a killed backup of hvtui's left on the VM.

    Only checkpoints the checkpoint journal proves are hvtui's, from a backup that is over
    (another product's stay; each removal is audited).  Done under the engine's per-VM
    backup lock for that repository, so it waits for (or is refused by) a backup of the
    same VM another process is running now.  The backup clears its leftovers again under
    the same lock when it starts.
    """
    from hvtui.engine.locks import VMLock

    services = services_of(manager)
    vm_label = job.vm or job.vm_id
    refuse_if_read_only(services, "backup", job.host, vm_label, {"resume": job.id})
    services.hosts.host(job.host)  # unknown host: a clear error before anything else
    if job.vm_id is None:
        return
    repo = services.backups.open_repository(job.params.get("repository"))
    lock = VMLock(repo.root, job.host, job.vm_id, job.vm_name).acquire() if repo is not None else None
    try:
        services.backups.clear_leftover_checkpoints(job.host, job.vm_id, vm_label or job.vm_id, extra_args={"resuming": job.id})
    finally:
        if lock is not None:
            lock.release()


def _committed_point(manager: JobQueue, job: Job, point_id: str) -> dict[str, Any]:
    """The summary of a backup killed after it committed ``point_id`` (during its clean-up):
    the point, if its repository still holds it."""
    from hvtui.engine.repository import PointNotFound  # here: the kinds load without the engine

    services = services_of(manager)
    repository = job.params.get("repository")
    where = f"repository {repository}" if repository else "the repository"
    try:
        repo, manifest = services.backups.find_point(point_id, repository)
    except PointNotFound:
        return {
            "missing_point_id": point_id,
            "message": f"restore point {point_id} was committed before the process ended, but {where} no longer holds it",
        }
    except (HvtuiError, OSError) as err:
        return {
            "unchecked_point_id": point_id,
            "message": f"restore point {point_id} was committed before the process ended ({where} could not be "
            f"read to check it: {describe_error(err)})",
        }
    return {
        "point_id": manifest.id,
        "repository": repo.name,
        "mode": manifest.mode,
        "message": f"{manifest.mode} restore point {manifest.id} is complete: it was committed before the process "
        "ended, only removing the backup checkpoint was cut short",
    }
