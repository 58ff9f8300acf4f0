"""What a job is: ``Job`` snapshots, their ``JobState``, the ``JobEvent`` subscribers get,
the ``JobKind`` a job is (re)built from, and ``JobRecord``, the manager's mutable state of one job."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from hvtui.errors import HvtuiError
from hvtui.events import CancelToken, Progress, ProgressCallback

RunFn = Callable[[ProgressCallback, CancelToken], Mapping[str, Any] | None]

DEFAULT_THROTTLE_SECONDS = 0.25  # at most four progress deliveries a second per job
DEFAULT_LOG_LINES = 200
JOURNAL_COMPACT_BYTES = 4 * 1024 * 1024  # rewrite the journal on start beyond this size
JOURNAL_KEEP_FINISHED = 1000


class JobError(HvtuiError):
    """A job request that cannot be honoured (unknown id, wrong state, unknown kind)."""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # from the journal: its process died before it finished

    @property
    def final(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True, slots=True, eq=False)
class Job:
    """An immutable snapshot of one job; ask the manager again for a fresher one."""

    id: str
    kind: str  # backup, restore, ... (a registered JobKind or any name for an explicit run_fn)
    host: str
    vm_id: str | None
    vm_name: str | None
    params: Mapping[str, Any]  # JSON-serialisable; everything needed to re-run the job
    state: JobState
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    progress: Progress | None = None  # the latest progress event
    log: tuple[str, ...] = ()  # bounded, oldest first, each "HH:MM:SS text"
    summary: Mapping[str, Any] | None = None  # what the job function returned (on success)
    error: str | None = None  # the reason in plain words (failed jobs)
    # refused, config, host, repository, failed, unexpected (maps to an exit code)
    error_kind: str | None = None
    cancel_requested: bool = False
    retry_of: str | None = None
    resumed_from: str | None = None
    resumed_by: str | None = None  # journal jobs: the job that resumed this one
    dismissed: bool = False  # journal jobs: the user chose not to resume it
    owner_pid: int | None = None  # journal jobs: the process that submitted or ran it

    @property
    def mode(self) -> str | None:
        """The backup mode made once known (a differential with no full point makes a full),
        else the one asked for; a restore's target mode."""
        made = (self.summary or {}).get("mode") if self.kind == "backup" else None
        mode = made if made is not None else self.params.get("mode")
        return str(mode) if mode is not None else None

    @property
    def state_word(self) -> str:
        """The state as every listing says it: a job a safety rule or read-only mode refused
        is "refused" (as in the audit log), not "failed"."""
        if self.state is JobState.FAILED and self.error_kind == "refused":
            return "refused"
        return str(self.state)

    @property
    def vm(self) -> str | None:
        """The VM's name where known, else its id."""
        return self.vm_name or self.vm_id

    @property
    def is_final(self) -> bool:
        return self.state.final

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (or until now's snapshot time for running jobs)."""
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()

    @property
    def title(self) -> str:
        """A short description: "backup (incremental) of web01 on hv1"; a restore into a folder
        "restore (directory) from hv1/web01 into /srv/restores"."""
        what = f"{self.kind} ({self.mode})" if self.mode else self.kind
        if self.kind == "copy":
            of = f" of {self.vm}" if self.vm else ""
            return f"copy{of} from {self.params.get('from')} to {self.params.get('to')}"
        route = self.restore_route
        if route is not None:
            return f"{what} {route}"
        target = f" of {self.vm}" if self.vm else ""
        return f"{what}{target} on {self.host}"

    @property
    def restore_folder(self) -> str | None:
        """The folder a restore into a directory writes to (its job host is this machine's)."""
        if self.kind != "restore" or self.params.get("mode") != "directory":
            return None
        folder = self.params.get("directory")
        return str(folder) if folder else None

    @property
    def restore_route(self) -> str | None:
        """A restore into a folder: "from hv1/web01 into /srv/restores" (None for other jobs)."""
        folder = self.restore_folder
        if folder is None:
            return None
        source, vm = self.params.get("source_host"), self.vm or "?"
        return f"from {source}/{vm} into {folder}" if source else f"of {vm} into {folder}"

    @property
    def shown_host(self) -> str:
        """The host a listing names: a restore into a folder runs here, but its point's host is
        the one that says what it restores (a job journaled before that was kept: ``host``)."""
        source = self.params.get("source_host") if self.restore_folder is not None else None
        return str(source) if source else self.host


@dataclass(frozen=True, slots=True)
class JobEvent:
    """What subscribers receive: a state change or (throttled) progress of one job."""

    type: Literal["state", "progress"]
    job: Job


@dataclass(frozen=True, slots=True)
class JobKind:
    """How to (re)build a job's function from its journaled description.

    ``build(job)`` returns the ``RunFn`` for ``job`` (its kind, host, VM and params).
    ``before_resume(job)``, if given, runs before an interrupted job is resumed (for a
    backup: remove the Recovery checkpoint a killed process left on the VM); an error
    there stops the resume and is shown to the user.  ``committed(job, result)``, if
    given, says what an interrupted job had made durable before its process died
    (``result``: what its ``committed`` progress event named, for a backup its restore
    point), looking whether it is still there; it returns the summary shown for the job,
    with a ``message`` in words.  ``on_dismiss(job)`` runs when an
    interrupted job is dismissed (a restore: remove what it staged).  ``leftovers(job)``
    describes what an interrupted job left behind (a restore: its staged files and their
    size), or None; it is one of the job's log lines until cleaned.
    """

    name: str
    build: Callable[[Job], RunFn]
    before_resume: Callable[[Job], None] | None = None
    committed: Callable[[Job, str], dict[str, Any]] | None = None
    on_dismiss: Callable[[Job], None] | None = None
    leftovers: Callable[[Job], str | None] | None = None


@dataclass(slots=True, eq=False)
class JobRecord:
    """The manager's mutable state of one job (guarded by the manager's lock)."""

    id: str
    kind: str
    host: str
    vm_id: str | None
    vm_name: str | None
    params: dict[str, Any]
    run_fn: RunFn
    explicit_run_fn: bool  # given by the caller (reused by retry) rather than built from a kind
    created: datetime
    retry_of: str | None = None
    resumed_from: str | None = None
    state: JobState = JobState.QUEUED
    started: datetime | None = None
    finished: datetime | None = None
    progress: Progress | None = None
    log: deque[str] = field(default_factory=deque)
    summary: dict[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = None
    token: CancelToken = field(default_factory=CancelToken)
    done: threading.Event = field(default_factory=threading.Event)
    progress_dirty: bool = False  # a progress event not yet delivered (throttled)
    next_progress_due: float = float("-inf")
    last_phase: str | None = None
    last_message: str | None = None
