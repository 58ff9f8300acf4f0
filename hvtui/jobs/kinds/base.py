"""What the engine job kinds run on: ``EngineServices`` (handed to ``JobManager`` by the
core), the ``JobQueue`` they submit to, and the read-only refusal they share.

The backup service (``hvtui.backups``) refuses read-only hosts and writes the audit entries
for backups and host restores itself; the kinds add nothing to the audit log except the
explicit leftover-checkpoint clean-up before a resumed backup, and the refusal of a job
at submit time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hvtui.audit import AuditLog
from hvtui.errors import ReadOnlyError
from hvtui.hosts.base import Host
from hvtui.jobs.model import Job, JobError, JobKind

if TYPE_CHECKING:
    from hvtui.backups.copies import RepositoryCopies
    from hvtui.backups.service import Backups

log = logging.getLogger(__name__)


class HostLookup(Protocol):
    """The configured hosts (``hvtui.hosts.registry.HostRegistry``)."""

    def host(self, name: str) -> Host: ...


@dataclass(frozen=True, slots=True)
class EngineServices:
    """The services the backup and restore kinds use.

    The backup service is asked for when a job first needs it (``backups_of``): the console
    builds the job manager before its first paint, and the backup service imports the engine.
    """

    backups_of: Callable[[], Backups]
    hosts: HostLookup
    audit: AuditLog
    copies_of: Callable[[], RepositoryCopies] | None = None  # the copy kind's service (None: no copy jobs)

    @property
    def backups(self) -> Backups:
        return self.backups_of()


class JobQueue(Protocol):
    """The job manager as the kinds see it."""

    services: EngineServices | None

    def submit(
        self,
        kind: str,
        host: str,
        vm_id: str | None,
        vm_name: str | None,
        params: Mapping[str, Any] | None = None,
    ) -> Job: ...

    def register_kind(self, kind: JobKind) -> None: ...

    def interrupted_jobs(self) -> list[Job]: ...


def services_of(manager: JobQueue) -> EngineServices:
    if manager.services is None:
        raise JobError("backup and restore jobs need a job manager built with the engine services")
    return manager.services


def refuse_if_read_only(services: EngineServices, action: str, host: str, vm: str | None, args: dict[str, Any]) -> None:
    reason = services.backups.read_only_reason(host)
    if reason is None:
        return
    try:
        services.audit.record(action, host, vm, args, "refused", 0.0, f"read-only: {reason}")
    except OSError as err:
        log.error("could not write the audit log: %s", err)
    raise ReadOnlyError(f"{action} refused: {reason}")
