"""The ``restore`` job kind: submitting a restore of one restore point (as a new VM, in
place, or into a directory), running it on the backup service, and before resuming one
into a directory, removing the staging directory a killed process left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hvtui.errors import ConfigError
from hvtui.events import CancelToken, ProgressCallback
from hvtui.jobs.kinds.base import JobQueue, refuse_if_read_only, services_of
from hvtui.jobs.model import Job, JobKind, RunFn

RESTORE_TARGETS = ("new", "in_place", "directory")
LOCAL_HOST = "local"  # the job "host" of a restore into a directory on this machine


def restore_kind(manager: JobQueue) -> JobKind:
    """The ``restore`` kind of ``manager`` (it runs on ``manager.services``)."""
    return JobKind("restore", build=lambda job: _restore_run(manager, job), before_resume=lambda job: _before_restore_resume(manager, job))


def submit_restore(
    manager: JobQueue,
    point_id: str,
    target: str,
    *,
    new_name: str | None = None,
    directory: str | Path | None = None,
    host: str | None = None,
    repository: str | None = None,
    keep_checkpoints: bool = False,
) -> Job:
    """Queue a restore of restore point ``point_id`` (see ``JobManager.submit_restore``).

    ``keep_checkpoints``: a new VM or a folder keeps the point's checkpoint tree (default:
    one flattened disk per drive); an in-place restore always restores the point's tree."""
    services = services_of(manager)
    if target not in RESTORE_TARGETS:
        raise ConfigError(f"unknown restore target {target!r} (expected {', '.join(RESTORE_TARGETS)})")
    if target == "new" and not new_name:
        raise ConfigError("a restore as a new VM needs the new VM's name")
    if target == "directory" and not directory:
        raise ConfigError("a restore into a directory needs the directory")
    repo, manifest = services.backups.find_point(point_id, repository)
    params: dict[str, Any] = {"mode": target, "point_id": manifest.id, "repository": repo.name}
    if keep_checkpoints and target != "in_place":
        params["keep_checkpoints"] = True
    if target == "directory":
        job_host = LOCAL_HOST
        params["directory"] = str(Path(directory).expanduser().absolute())  # type: ignore[arg-type]
    else:
        job_host = host or manifest.host
        services.hosts.host(job_host)
        if target == "new":
            params["new_name"] = new_name
            params["host"] = job_host
            label = new_name
        else:
            if job_host != manifest.host:
                raise ConfigError("an in-place restore goes back to the point's own host")
            label = manifest.vm_name
        action = "restore-as-new" if target == "new" else "restore-in-place"
        refuse_if_read_only(services, action, job_host, label, {"point": manifest.id, "repository": repo.name})
    return manager.submit("restore", job_host, manifest.vm_id, manifest.vm_name, params)


def _restore_run(manager: JobQueue, job: Job) -> RunFn:
    services = services_of(manager)
    params = dict(job.params)
    target = params.get("mode")

    def run(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "repository": params.get("repository"),
            "keep_checkpoints": bool(params.get("keep_checkpoints")),
            "progress": progress,
            "cancel": cancel,
        }
        if target == "directory":
            kwargs["to_dir"] = Path(params["directory"])
        elif target == "new":
            kwargs["as_name"] = params["new_name"]
            kwargs["host"] = params.get("host") or job.host
        else:
            kwargs["in_place"] = True
        result = services.backups.restore(params["point_id"], **kwargs)
        summary = result.to_dict()
        summary["message"] = f"point {result.point_id} restored to {result.target}"
        return summary

    return run


def _before_restore_resume(manager: JobQueue, job: Job) -> None:
    """A killed restore into a directory leaves its staging directory: remove it."""
    import shutil

    if job.params.get("mode") != "directory":
        return  # a host restore's staging is the host's (the lab aborts leftovers itself)
    target = Path(job.params["directory"])
    for leftover in target.glob(f".hvtui-restore-{job.params['point_id']}-*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
