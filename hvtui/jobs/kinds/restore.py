"""The ``restore`` job kind: submitting a restore of one restore point (as a new VM, in
place, or into a directory) and running it on the backup service.

A restore into a directory stages its files in ``<directory>/<staging>``, a name chosen at
submission and journaled with the job's parameters, so a process killed mid-way leaves a
folder the journal names exactly.  It is removed by resuming or dismissing that job, and by
the next restore of any process; until then the job's log says what is left and its size.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from pathlib import Path
from typing import Any

import humanize

from hvtui.errors import ConfigError
from hvtui.events import CancelToken, ProgressCallback
from hvtui.jobs.kinds.base import JobQueue, refuse_if_read_only, services_of
from hvtui.jobs.model import Job, JobKind, RunFn

RESTORE_TARGETS = ("new", "in_place", "directory")
LOCAL_HOST = "local"  # the job "host" of a restore into a directory on this machine

log = logging.getLogger(__name__)


def restore_kind(manager: JobQueue) -> JobKind:
    """The ``restore`` kind of ``manager`` (it runs on ``manager.services``)."""
    return JobKind(
        "restore",
        build=lambda job: _restore_run(manager, job),
        before_resume=lambda job: _remove_all_staged(manager, job),
        on_dismiss=lambda job: _remove_all_staged(manager, job),
        leftovers=staged_leftovers,
    )


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
    services.backups.retry_now(repository)  # an explicit action: a storage held as unreachable is asked again
    repo, manifest = services.backups.find_point(point_id, repository)
    params: dict[str, Any] = {"mode": target, "point_id": manifest.id, "repository": repo.name}
    if keep_checkpoints and target != "in_place":
        params["keep_checkpoints"] = True
    if target == "directory":
        job_host = LOCAL_HOST
        params["directory"] = str(Path(directory).expanduser().absolute())  # type: ignore[arg-type]
        params["staging"] = f".hvtui-restore-{manifest.id}-{secrets.token_hex(4)}.tmp"
        # The job runs here, not on a host; what it restores is named by its point's host.
        params["source_host"] = manifest.host
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
        _clean_interrupted(manager)
        kwargs: dict[str, Any] = {
            "repository": params.get("repository"),
            "keep_checkpoints": bool(params.get("keep_checkpoints")),
            "progress": progress,
            "cancel": cancel,
        }
        if target == "directory":
            kwargs["to_dir"] = Path(params["directory"])
            kwargs["staging_name"] = params.get("staging")
        elif target == "new":
            kwargs["as_name"] = params["new_name"]
            kwargs["host"] = params.get("host") or job.host
        else:
            kwargs["in_place"] = True
        if target != "directory":  # a WinRM host stages under the job's name: found again if it dies
            kwargs["staging_name"] = host_staging_name(job.id)
        result = services.backups.restore(params["point_id"], **kwargs)
        summary = result.to_dict()
        summary["message"] = f"point {result.point_id} restored to {result.target}"
        return summary

    return run


def host_staging_name(job_id: str) -> str:
    """The staging folder a host restore job uses on a WinRM host (under its ``restore_dir``)."""
    return f"hvtui-restore-{job_id}"


def staged_path(job: Job) -> Path | None:
    """The staging folder the journal says ``job`` used (restores into a directory)."""
    if job.kind != "restore" or job.params.get("mode") != "directory":
        return None  # a host restore's staging is the host's (the lab sweeps dead ones itself)
    name, directory = job.params.get("staging"), job.params.get("directory")
    if not isinstance(name, str) or not isinstance(directory, str) or "/" in name or not name.startswith(".hvtui-restore-"):
        return None
    return Path(directory) / name


def remove_staged(job: Job) -> None:
    """Remove what ``job`` staged (before resuming or on dismissing it)."""
    path = staged_path(job)
    if path is None and job.kind == "restore" and job.params.get("mode") == "directory":
        # A job journaled before the staging name was: its point's staging folders.
        for leftover in Path(job.params["directory"]).glob(f".hvtui-restore-{job.params['point_id']}-*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)
    elif path is not None:
        shutil.rmtree(path, ignore_errors=True)


def staged_leftovers(job: Job) -> str | None:
    """``left 367.0 MiB staged in DIR/.hvtui-restore-…`` while it is there, else None."""
    path = staged_path(job)
    if path is None or not path.is_dir():
        return None
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file():
                total += item.stat().st_blocks * 512  # what it takes on disk: the files are sparse
        except OSError:
            continue
    return (
        f"left {humanize.naturalsize(total, binary=True)} staged in {path}; "
        "removed by resuming or dismissing this job, or by the next restore"
    )


def _clean_interrupted(manager: JobQueue) -> None:
    """Remove the staging of every restore whose process died (the journal names it)."""
    try:
        jobs = manager.interrupted_jobs()
    except Exception as err:  # a broken journal must not stop this restore
        log.warning("leftover restore staging not checked: %s", err)
        return
    for job in jobs:
        path = staged_path(job)
        if path is not None and path.exists():
            log.info("removing %s, staged by interrupted job %s", path, job.id)
            shutil.rmtree(path, ignore_errors=True)
        elif job.kind == "restore" and job.params.get("mode") in ("new", "in_place"):
            _discard_host_staging(manager, job)


def _remove_all_staged(manager: JobQueue, job: Job) -> None:
    """What ``job`` staged, here (a folder restore) or on its host (a WinRM host's folder)."""
    remove_staged(job)
    if job.kind == "restore" and job.params.get("mode") in ("new", "in_place"):
        _discard_host_staging(manager, job)


def _discard_host_staging(manager: JobQueue, job: Job) -> None:
    """What an interrupted restore staged on its host (a WinRM host's staging folder; the lab
    sweeps its own): the point's files, removed by name.  Best effort: a host that cannot be
    reached now is tried again by the next restore."""
    services = services_of(manager)
    try:
        _repo, manifest = services.backups.find_point(job.params["point_id"], job.params.get("repository"))
        host = services.hosts.host(job.host)
        host.discard_restore(host_staging_name(job.id), [entry.path for entry in manifest.files])
    except Exception as err:
        log.warning("staging of interrupted restore %s on %s not removed: %s", job.id, job.host, err)
