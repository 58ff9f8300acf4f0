"""The job manager: a queue of long operations (backups, restores, ...) run in-process.

Layering: the console and the CLI submit jobs here and render the events; jobs call the
engine (``hvtui.backups``) which talks to hosts and repositories.  Nothing here touches
Textual.

- **Limits.**  At most ``max_concurrent`` jobs run at once, and at most ``per_host`` on
  one host (``core.config.jobs``).  Queued jobs start in submission order, except that a
  job whose host is busy lets later jobs for other hosts go first.  The limits apply
  within one process: a cron run and a console do not share them.
- **Threads.**  Each running job has its own worker thread; the job's function is
  ``run(progress, cancel) -> dict`` (the summary).  It reports ``Progress`` through the
  callback and must honour the ``CancelToken``; raising ``Cancelled`` (or any error once
  cancel was requested) ends the job as cancelled.
- **Events.**  ``subscribe(callback)`` delivers ``JobEvent`` values: every state change
  (queued, running, cancel requested, finished) and progress, the latter throttled per
  job to one delivery per ``throttle_seconds`` (a console over a slow SSH link must not
  be flooded by a job emitting thousands of events a second).  The latest progress is
  always delivered before the job's final state.  **Callbacks run on the manager's
  notifier thread, never on the caller's thread and never on the UI thread**: a Textual
  app must hop back with ``app.call_from_thread`` or ``widget.post_message``.  A slow
  callback delays later events but never slows a job; an exception in a callback is
  logged and ignored.
- **Journal.**  Every job is written to the job journal (``hvtui.journal``) when it is
  submitted, started and finished, so the next start can list the jobs a killed process
  left behind (``interrupted_jobs``) and ``resume`` them.

Backup and restore jobs (``submit_backup``/``submit_restore``) are built on
``hvtui.backups``; ``run_job_blocking`` runs a job to completion for the headless CLI,
so cron runs and console runs write the same journal and audit entries.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TextIO

import humanize

from hvtui.clock import Clock, SystemClock
from hvtui.errors import Cancelled, ConfigError, HostError, HvtuiError, ReadOnlyError, RefusedError, RepositoryError
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.journal import JobJournal, JournalEntry, JournalProblem, process_alive, process_identity
from hvtui.logsetup import redact

log = logging.getLogger(__name__)

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
        mode = self.params.get("mode")
        return str(mode) if mode is not None else None

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
        """A short description: "backup (incremental) of web01 on hv1"."""
        what = f"{self.kind} ({self.mode})" if self.mode else self.kind
        target = f" of {self.vm}" if self.vm else ""
        return f"{what}{target} on {self.host}"


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
    there stops the resume and is shown to the user.
    """

    name: str
    build: Callable[[Job], RunFn]
    before_resume: Callable[[Job], None] | None = None


@dataclass(slots=True, eq=False)
class _Record:
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


class JobManager:
    """Queue, run and journal jobs (see the module docstring)."""

    def __init__(
        self,
        journal_path: Path | None = None,
        *,
        max_concurrent: int = 2,
        per_host: int = 1,
        clock: Clock | None = None,
        throttle_seconds: float = DEFAULT_THROTTLE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        log_lines: int = DEFAULT_LOG_LINES,
        core: Any = None,
    ) -> None:
        self.max_concurrent = max(1, int(max_concurrent))
        self.per_host = max(1, int(per_host))
        self.clock: Clock = clock or SystemClock()
        self.core = core  # hvtui.core.Core, for the backup and restore kinds
        self._throttle = float(throttle_seconds)
        self._monotonic = monotonic
        self._log_lines = max(1, int(log_lines))
        self._journal = JobJournal(journal_path) if journal_path is not None else None
        self._journal_problems: list[JournalProblem] = []
        self._kinds: dict[str, JobKind] = {}

        self._cond = threading.Condition(threading.Lock())
        self._records: dict[str, _Record] = {}  # submission order
        self._queue: deque[_Record] = deque()
        self._running_per_host: Counter[str] = Counter()
        self._threads: dict[str, threading.Thread] = {}
        self._closed = False

        self._subscribers: list[Callable[[JobEvent], None]] = []
        self._events: deque[JobEvent] = deque()
        self._enqueued = 0
        self._delivered = 0
        self._stop_notifier = False
        self._notifier = threading.Thread(target=self._notify_loop, name="hvtui-job-events", daemon=True)
        self._notifier.start()

        if self._journal is not None and self._journal.size() > JOURNAL_COMPACT_BYTES:
            try:
                dropped = self._journal.compact(JOURNAL_KEEP_FINISHED)
                log.info("job journal compacted: %d old jobs dropped", dropped)
            except OSError as err:
                log.warning("could not compact the job journal %s: %s", self._journal.path, err)

    @classmethod
    def from_core(cls, core: Any) -> JobManager:
        """The manager the console and the CLI share: limits from ``core.config.jobs``,
        the journal under the user state directory, backup and restore kinds registered."""
        limits = core.config.jobs
        manager = cls(
            core.paths.job_journal,
            max_concurrent=limits.max_concurrent,
            per_host=limits.per_host,
            clock=core.clock,
            core=core,
        )
        register_engine_kinds(manager)
        return manager

    # -- kinds ---------------------------------------------------------------------------
    def register_kind(self, kind: JobKind) -> None:
        self._kinds[kind.name] = kind

    def kind(self, name: str) -> JobKind | None:
        """The registered kind ``name`` (to wrap it, or to check a job can be resumed)."""
        return self._kinds.get(name)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    # -- events --------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[JobEvent], None]) -> Callable[[], None]:
        """Deliver every later ``JobEvent`` to ``callback`` (on the notifier thread).

        Returns a function that unsubscribes.
        """
        with self._cond:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._cond:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def flush_events(self, timeout: float | None = None) -> bool:
        """Wait until every event enqueued so far has been delivered; False on timeout."""
        with self._cond:
            target = self._enqueued
            return self._cond.wait_for(lambda: self._delivered >= target or not self._notifier.is_alive(), timeout)

    # -- submitting ----------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        host: str,
        vm_id: str | None,
        vm_name: str | None,
        params: Mapping[str, Any] | None = None,
        run_fn: RunFn | None = None,
        *,
        retry_of: str | None = None,
        resumed_from: str | None = None,
        job_id: str | None = None,
    ) -> Job:
        """Queue a job and return its snapshot (queued, or already running).

        Without ``run_fn`` the function is built from the registered ``JobKind``.  With
        one, the job runs it, but it can only be resumed after a crash if a kind of that
        name is registered in the next process.  ``params`` must be JSON-serialisable.
        """
        params = dict(params or {})
        _check_jsonable(params)
        explicit = run_fn is not None
        with self._cond:
            if self._closed:
                raise JobError("the job manager is shut down; no new jobs")
            job_id = job_id or self._new_id()
        record = _Record(
            id=job_id,
            kind=kind,
            host=host,
            vm_id=vm_id,
            vm_name=vm_name,
            params=params,
            run_fn=run_fn,  # type: ignore[arg-type]  # set below when built from the kind
            explicit_run_fn=explicit,
            created=self.clock.now(),
            retry_of=retry_of,
            resumed_from=resumed_from,
            log=deque(maxlen=self._log_lines),
        )
        if run_fn is None:
            job_kind = self._kinds.get(kind)
            if job_kind is None:
                known = ", ".join(sorted(self._kinds)) or "none"
                raise JobError(f"unknown job kind {kind!r} (known: {known})")
            record.run_fn = job_kind.build(self._snapshot(record))
        # Journal before the job can start, so "started" never precedes "submitted".
        self._journal_append(
            record,
            "submitted",
            at=record.created.isoformat(),
            kind=kind,
            host=host,
            vm_id=vm_id,
            vm_name=vm_name,
            params=params,
            retry_of=retry_of,
            resumed_from=resumed_from,
            **_owner(),
        )
        with self._cond:
            if self._closed:
                raise JobError("the job manager is shut down; no new jobs")
            self._records[record.id] = record
            self._queue.append(record)
            self._log_line(record, "queued" + (f" (retry of {retry_of})" if retry_of else "") + (f" (resuming {resumed_from})" if resumed_from else ""))
            self._emit_state(record)
            self._pump()
            return self._snapshot(record)

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job (it never starts) or ask a running one to stop.

        A running job stays ``running`` (with ``cancel_requested``) until its function has
        cleaned up and returned; then it is ``cancelled``.  Cancelling a finished job
        changes nothing.
        """
        with self._cond:
            record = self._record(job_id)
            if record.state is JobState.QUEUED:
                if record.token.cancelled:
                    return self._snapshot(record)  # another caller is cancelling it right now
                self._queue.remove(record)
                record.token.cancel()
                self._log_line(record, "cancelled before it started")
                finish_now = True
            elif record.state is JobState.RUNNING:
                if not record.token.cancelled:
                    record.token.cancel()
                    self._log_line(record, "cancel requested")
                    self._emit_state(record)
                return self._snapshot(record)
            else:
                return self._snapshot(record)
        if finish_now:
            self._finish(record, JobState.CANCELLED, None, None, None)
        return self.job(record.id)

    def retry(self, job_id: str) -> Job:
        """Run a finished job again as a new job (``retry_of`` names the original).

        Works for this process's jobs and for finished jobs in the journal; an
        interrupted job is resumed instead (see ``resume``).
        """
        with self._cond:
            record = self._find_record(job_id)
            if record is not None:
                if not record.state.final:
                    raise JobError(f"job {record.id} is still {record.state}; cancel it first or wait")
                spec = (record.kind, record.host, record.vm_id, record.vm_name, dict(record.params))
                run_fn = record.run_fn if record.explicit_run_fn else None
                original = record.id
        if record is None:
            entry = self._journal_entry(job_id)
            if not entry.is_finished:
                raise JobError(f"job {entry.job_id} did not finish; resume it instead")
            sub = entry.submitted
            spec = (sub["kind"], sub["host"], sub.get("vm_id"), sub.get("vm_name"), dict(sub["params"]))
            run_fn = None
            original = entry.job_id
        kind, host, vm_id, vm_name, params = spec
        return self.submit(kind, host, vm_id, vm_name, params, run_fn, retry_of=original)

    # -- looking -------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """Snapshots of this process's jobs, in submission order."""
        with self._cond:
            return [self._snapshot(r) for r in self._records.values()]

    def job(self, job_id: str) -> Job:
        with self._cond:
            return self._snapshot(self._record(job_id))

    @property
    def running_count(self) -> int:
        with self._cond:
            return sum(self._running_per_host.values())

    @property
    def queued_count(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def active_count(self) -> int:
        """Jobs queued or running (what "quit with jobs running?" asks about)."""
        with self._cond:
            return len(self._queue) + sum(self._running_per_host.values())

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is final (or ``timeout`` passes); return its snapshot.

        Check ``job.is_final`` when a timeout was given.
        """
        with self._cond:
            record = self._record(job_id)
        record.done.wait(timeout)
        return self.job(record.id)

    # -- stopping ------------------------------------------------------------------------
    def shutdown(self, cancel_running: bool, timeout: float | None = None) -> bool:
        """Stop accepting jobs; queued jobs are cancelled (they never start).

        ``cancel_running`` True asks running jobs to stop (they still clean up: a backup
        removes its checkpoint); False lets them finish.  Waits up to ``timeout`` for the
        running jobs and the event deliveries; returns True if everything stopped.
        """
        with self._cond:
            self._closed = True
            queued = list(self._queue)
            running = [r for r in self._records.values() if r.state is JobState.RUNNING]
        for record in queued:
            self.cancel(record.id)
        if cancel_running:
            for record in running:
                self.cancel(record.id)
        deadline = None if timeout is None else time.monotonic() + timeout
        all_done = True
        for record in running:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            all_done = record.done.wait(remaining) and all_done
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.flush_events(remaining)
        if all_done:
            with self._cond:
                self._stop_notifier = True
                self._cond.notify_all()
        return all_done

    # -- the journal ---------------------------------------------------------------------
    @property
    def journal_path(self) -> Path | None:
        return self._journal.path if self._journal is not None else None

    @property
    def journal_problems(self) -> list[JournalProblem]:
        """Damaged journal lines found by the latest read (they were skipped)."""
        return list(self._journal_problems)

    def interrupted_jobs(self) -> list[Job]:
        """Jobs the journal shows submitted or started but never finished, whose process is
        gone (killed, or lost with an SSH session), not yet resumed or dismissed."""
        return [job for job in self.history() if job.state is JobState.INTERRUPTED and not job.resumed_by and not job.dismissed]

    def history(self, limit: int | None = None) -> list[Job]:
        """Every job in the journal (oldest first; the newest ``limit`` if given), with
        this process's live jobs as they are now.  Jobs of another live process show as
        queued or running with ``owner_pid`` set."""
        entries = self._read_journal()
        with self._cond:
            live = {job_id: self._snapshot(r) for job_id, r in self._records.items()}
        jobs = [live.pop(e.job_id) if e.job_id in live else self._job_from_entry(e) for e in entries.values()]
        jobs.extend(live.values())  # jobs whose journal writes failed
        jobs.sort(key=lambda j: j.created)
        return jobs[-limit:] if limit else jobs

    def resume(self, job_id: str) -> Job:
        """Re-submit an interrupted job as a new job (``resumed_from`` names the old one).

        The kind's ``before_resume`` runs first (a backup: remove any Recovery checkpoint
        left on the VM); the old job is then marked resumed so it is not offered again.
        """
        entry = self._journal_entry(job_id)
        job = self._job_from_entry(entry)
        if job.state is not JobState.INTERRUPTED or job.resumed_by or job.dismissed:
            raise JobError(f"job {entry.job_id} is not interrupted (it is {_state_words(job)}); nothing to resume")
        job_kind = self._kinds.get(job.kind)
        if job_kind is None:
            raise JobError(f"cannot resume job {job.id}: this hvtui does not know how to run a {job.kind!r} job")
        if job_kind.before_resume is not None:
            job_kind.before_resume(job)
        new_id = self._new_id()
        self._mark_journal(entry.job_id, "resumed", by=new_id)
        return self.submit(job.kind, job.host, job.vm_id, job.vm_name, dict(job.params), retry_of=None, resumed_from=job.id, job_id=new_id)

    def dismiss_interrupted(self, job_id: str) -> Job:
        """Mark an interrupted job so it is no longer offered for resuming."""
        entry = self._journal_entry(job_id)
        job = self._job_from_entry(entry)
        if job.state is not JobState.INTERRUPTED or job.resumed_by or job.dismissed:
            raise JobError(f"job {entry.job_id} is not an interrupted job awaiting a decision (it is {_state_words(job)})")
        self._mark_journal(entry.job_id, "dismissed")
        return self._job_from_entry(self._journal_entry(entry.job_id))

    # -- backup and restore --------------------------------------------------------------
    def submit_backup(
        self,
        host: str,
        vm_id: str,
        mode: str | None = None,
        repository: str | None = None,
        vm_name: str | None = None,
    ) -> Job:
        """Queue a backup of one VM.

        ``mode`` None: incremental when the repository holds a previous point of this VM,
        else full (asked again when the job runs, so a resumed or retried job still does
        the right thing).  ``repository`` None: the default one.  Refused at once in
        read-only mode.  Needs a manager built with ``from_core``.
        """
        return submit_backup(self, host, vm_id, mode=mode, repository=repository, vm_name=vm_name)

    def submit_restore(
        self,
        point_id: str,
        target: str,
        *,
        new_name: str | None = None,
        directory: str | Path | None = None,
        host: str | None = None,
        repository: str | None = None,
    ) -> Job:
        """Queue a restore of one restore point.

        ``target``: "new" (a new VM called ``new_name``, on ``host`` or the point's host),
        "in_place" (over the original VM, which must be off when the job runs; confirm
        first) or "directory" (the files into ``directory``; the job's host is "local").
        The job's ``mode`` is the target.  Refused at once in read-only mode for host
        targets.
        """
        return submit_restore(self, point_id, target, new_name=new_name, directory=directory, host=host, repository=repository)

    # -- internals: scheduling and running -------------------------------------------------
    def _new_id(self) -> str:
        while True:
            job_id = secrets.token_hex(4)
            if job_id not in self._records:
                return job_id

    def _record(self, job_id: str) -> _Record:
        record = self._find_record(job_id)
        if record is None:
            raise JobError(f"no job {job_id!r} in this session")
        return record

    def _find_record(self, job_id: str) -> _Record | None:
        record = self._records.get(job_id)
        if record is not None:
            return record
        matches = [r for key, r in self._records.items() if key.startswith(job_id)] if job_id else []
        if len(matches) > 1:
            raise JobError(f"job id {job_id!r} is ambiguous ({', '.join(r.id for r in matches)})")
        return matches[0] if matches else None

    def _pump(self) -> None:
        """Start queued jobs while the limits allow (called with the lock held)."""
        running = sum(self._running_per_host.values())
        for record in list(self._queue):
            if running >= self.max_concurrent:
                break
            if self._running_per_host[record.host] >= self.per_host:
                continue
            self._queue.remove(record)
            self._running_per_host[record.host] += 1
            running += 1
            record.state = JobState.RUNNING
            record.started = self.clock.now()
            self._log_line(record, "started")
            self._emit_state(record)
            thread = threading.Thread(target=self._work, args=(record,), name=f"hvtui-job-{record.id}", daemon=True)
            self._threads[record.id] = thread
            thread.start()

    def _work(self, record: _Record) -> None:
        """A job's worker thread: run the function, classify the outcome, journal it."""
        assert record.started is not None
        self._journal_append(record, "started", at=record.started.isoformat(), **_owner())
        summary: dict[str, Any] | None = None
        error: str | None = None
        error_kind: str | None = None
        try:
            result = record.run_fn(lambda event: self._on_progress(record, event), record.token)
            summary = _jsonable_summary(result)
            state = JobState.SUCCEEDED
        except Cancelled:
            state = JobState.CANCELLED
        except Exception as err:
            if record.token.cancelled:
                # Stopping mid-way often surfaces as some other error (a closed stream):
                # the user asked for it, so it is a cancellation, with the detail logged.
                state = JobState.CANCELLED
                self._log_line_locked(record, f"stopped with: {describe_error(err)}")
            else:
                state, error, error_kind = JobState.FAILED, describe_error(err), error_kind_of(err)
                if error_kind == "unexpected":
                    log.error("job %s (%s) failed unexpectedly", record.id, record.kind, exc_info=True)
                else:
                    log.warning("job %s (%s) failed: %s", record.id, record.kind, error)
        self._finish(record, state, summary, error, error_kind)

    def _finish(
        self,
        record: _Record,
        state: JobState,
        summary: dict[str, Any] | None,
        error: str | None,
        error_kind: str | None,
    ) -> None:
        finished = self.clock.now()
        # Journal first: once a waiter sees the final state, the journal already says so
        # (the CLI exits right after).
        self._journal_append(
            record,
            "finished",
            at=finished.isoformat(),
            state=str(state),
            summary=summary,
            error=error,
            error_kind=error_kind,
        )
        with self._cond:
            was_running = record.state is JobState.RUNNING
            record.state = state
            record.finished = finished
            record.summary = summary
            record.error = error
            record.error_kind = error_kind
            if state is JobState.FAILED:
                self._log_line(record, f"failed: {error}")
            elif state is JobState.SUCCEEDED and summary and summary.get("message"):
                self._log_line(record, f"succeeded: {summary['message']}")
            else:
                self._log_line(record, str(state))
            if was_running:
                self._running_per_host[record.host] -= 1
                if self._running_per_host[record.host] <= 0:
                    del self._running_per_host[record.host]
                self._threads.pop(record.id, None)
            self._emit_state(record)
            if not self._closed:
                self._pump()  # before waking waiters: they see the next job already started
            record.done.set()

    def _on_progress(self, record: _Record, event: Progress) -> None:
        if not isinstance(event, Progress):
            return
        with self._cond:
            if record.state is not JobState.RUNNING:
                return  # a late event from an engine thread after the job ended
            record.progress = event
            if event.phase != record.last_phase:
                record.last_phase = event.phase
                record.last_message = event.message or None
                self._log_line(record, f"{event.phase}: {event.message}" if event.message else event.phase)
            elif event.message and event.message != record.last_message:
                record.last_message = event.message
                self._log_line(record, event.message)
            now = self._monotonic()
            if now >= record.next_progress_due:
                record.next_progress_due = now + self._throttle
                record.progress_dirty = False
                self._enqueue(JobEvent("progress", self._snapshot(record)))
            elif not record.progress_dirty:
                record.progress_dirty = True
                self._cond.notify_all()  # the notifier delivers it when it falls due

    # -- internals: events -----------------------------------------------------------------
    def _emit_state(self, record: _Record) -> None:
        """Queue a state event (lock held); undelivered progress goes first, so the final
        progress always arrives, and before the final state."""
        if record.progress_dirty:
            record.progress_dirty = False
            record.next_progress_due = self._monotonic() + self._throttle
            self._enqueue(JobEvent("progress", self._snapshot(record)))
        self._enqueue(JobEvent("state", self._snapshot(record)))

    def _enqueue(self, event: JobEvent) -> None:
        self._events.append(event)
        self._enqueued += 1
        self._cond.notify_all()

    def _flush_due_progress(self) -> float | None:
        """Queue throttled progress that has fallen due (lock held); return how long until
        the next one falls due, None if nothing is pending."""
        now = self._monotonic()
        wait: float | None = None
        for record in self._records.values():
            if not record.progress_dirty:
                continue
            if now >= record.next_progress_due:
                record.progress_dirty = False
                record.next_progress_due = now + self._throttle
                self._enqueue(JobEvent("progress", self._snapshot(record)))
            else:
                remaining = record.next_progress_due - now
                wait = remaining if wait is None else min(wait, remaining)
        return wait

    def _notify_loop(self) -> None:
        while True:
            with self._cond:
                while not self._events:
                    if self._stop_notifier:
                        return
                    wait = self._flush_due_progress()
                    if self._events:
                        break
                    # Bounded by the throttle interval in real time, so an injected
                    # monotonic clock that never moves cannot stall the loop.
                    self._cond.wait(None if wait is None else min(max(wait, 0.001), self._throttle))
                batch = list(self._events)
                self._events.clear()
                subscribers = list(self._subscribers)
            for event in batch:
                for callback in subscribers:
                    try:
                        callback(event)
                    except Exception:
                        log.exception("a job event subscriber failed (ignored)")
            with self._cond:
                self._delivered += len(batch)
                self._cond.notify_all()

    # -- internals: snapshots and logs ----------------------------------------------------
    def _snapshot(self, record: _Record) -> Job:
        return Job(
            id=record.id,
            kind=record.kind,
            host=record.host,
            vm_id=record.vm_id,
            vm_name=record.vm_name,
            params=dict(record.params),
            state=record.state,
            created=record.created,
            started=record.started,
            finished=record.finished,
            progress=record.progress,
            log=tuple(record.log),
            summary=dict(record.summary) if record.summary is not None else None,
            error=record.error,
            error_kind=record.error_kind,
            cancel_requested=record.token.cancelled,
            retry_of=record.retry_of,
            resumed_from=record.resumed_from,
            owner_pid=os.getpid(),
        )

    def _log_line(self, record: _Record, text: str) -> None:
        """Append a log line (lock held)."""
        stamp = self.clock.now().astimezone().strftime("%H:%M:%S")
        record.log.append(f"{stamp} {redact(text)}")

    def _log_line_locked(self, record: _Record, text: str) -> None:
        with self._cond:
            self._log_line(record, text)

    # -- internals: journal ----------------------------------------------------------------
    def _journal_append(self, record: _Record, event: str, **fields: Any) -> None:
        if self._journal is None:
            return
        try:
            self._journal.append(event, record.id, **fields)
        except OSError as err:
            # The job itself can still run; the user is told it will not be resumable.
            message = f"could not write the job journal {self._journal.path}: {err.strerror or err}"
            log.error("%s", message)
            with self._cond:
                self._log_line(record, message)

    def _read_journal(self) -> dict[str, JournalEntry]:
        if self._journal is None:
            return {}
        try:
            contents = self._journal.read()
        except OSError as err:
            raise JobError(f"cannot read the job journal {self._journal.path}: {err.strerror or err}") from err
        if contents.problems != self._journal_problems:
            for problem in contents.problems:
                log.warning("%s (skipped)", problem)
        self._journal_problems = contents.problems
        return contents.entries

    def _journal_entry(self, job_id: str) -> JournalEntry:
        entries = self._read_journal()
        entry = entries.get(job_id)
        if entry is None:
            matches = [e for key, e in entries.items() if job_id and key.startswith(job_id)]
            if len(matches) > 1:
                raise JobError(f"job id {job_id!r} is ambiguous ({', '.join(e.job_id for e in matches)})")
            if not matches:
                where = f" in {self._journal.path}" if self._journal is not None else " (no job journal)"
                raise JobError(f"no job {job_id!r}{where}")
            entry = matches[0]
        return entry

    def _mark_journal(self, job_id: str, event: str, **fields: Any) -> None:
        assert self._journal is not None
        try:
            self._journal.append_if(job_id, ("submitted", "started"), event, at=self.clock.now().isoformat(), **fields)
        except ValueError as err:
            raise JobError(f"job {job_id} was {err} meanwhile (by another hvtui?)") from None
        except OSError as err:
            raise JobError(f"cannot write the job journal {self._journal.path}: {err.strerror or err}") from err

    def _job_from_entry(self, entry: JournalEntry) -> Job:
        sub = entry.submitted
        pid, proc_start = entry.owner
        finished = entry.finished
        log_lines: list[str] = []
        if finished is not None:
            state = JobState(finished["state"])
        else:
            with self._cond:
                live = self._records.get(entry.job_id)
                if live is not None:
                    return self._snapshot(live)
            if process_alive(pid, proc_start):
                state = JobState.RUNNING if entry.started else JobState.QUEUED
            else:
                state = JobState.INTERRUPTED
                stage = "while running" if entry.started else "before it started"
                log_lines.append(f"interrupted {stage}: its process (pid {pid}) ended without finishing it")
        if entry.resumed:
            log_lines.append(f"resumed as job {entry.resumed.get('by')}")
        if entry.dismissed:
            log_lines.append("dismissed")
        summary = finished.get("summary") if finished else None
        return Job(
            id=entry.job_id,
            kind=sub["kind"],
            host=str(sub.get("host") or ""),
            vm_id=sub.get("vm_id"),
            vm_name=sub.get("vm_name"),
            params=dict(sub["params"]),
            state=state,
            created=_parse_time(sub.get("at")) or datetime.fromtimestamp(0).astimezone(),
            started=_parse_time(entry.started.get("at")) if entry.started else None,
            finished=_parse_time(finished.get("at")) if finished else None,
            log=tuple(log_lines),
            summary=summary if isinstance(summary, dict) else None,
            error=finished.get("error") if finished else None,
            error_kind=finished.get("error_kind") if finished else None,
            retry_of=sub.get("retry_of"),
            resumed_from=sub.get("resumed_from"),
            resumed_by=entry.resumed.get("by") if entry.resumed else None,
            dismissed=entry.dismissed is not None,
            owner_pid=pid,
        )


# -- outcome words ------------------------------------------------------------------------
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
        "state": str(job.state),
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


def _state_words(job: Job) -> str:
    if job.resumed_by:
        return f"already resumed as job {job.resumed_by}"
    if job.dismissed:
        return "dismissed"
    if job.state in (JobState.QUEUED, JobState.RUNNING) and job.owner_pid not in (None, os.getpid()):
        return f"{job.state} in another hvtui process (pid {job.owner_pid})"
    return str(job.state)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _check_jsonable(params: dict[str, Any]) -> None:
    try:
        json.dumps(params)
    except (TypeError, ValueError) as err:
        raise JobError(f"job parameters must be plain JSON values: {err}") from None


def _jsonable_summary(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The job's summary as plain JSON values (the journal stores it)."""
    if result is None:
        return {}
    return json.loads(json.dumps(dict(result), default=str))


_process_start_cache: dict[int, str | None] = {}


def _owner() -> dict[str, Any]:
    """pid and process start time of this process (recomputed after a fork)."""
    pid = os.getpid()
    if pid not in _process_start_cache:
        _process_start_cache[pid] = process_identity(pid)
    return {"pid": pid, "proc_start": _process_start_cache[pid]}


# -- headless runs ------------------------------------------------------------------------
def run_job_blocking(
    manager: JobManager,
    job: Job | str,
    progress_printer: ProgressCallback | None = None,
    *,
    error_stream: TextIO | None = sys.stderr,
) -> int:
    """Wait for ``job`` (already submitted), feed its progress to ``progress_printer``,
    and return the CLI exit code (0 ok, 1 failed, 2 config, 4 refused, 130 cancelled).

    Ctrl-C, SIGTERM and SIGHUP (a dropped SSH session) cancel the job; this waits for
    its clean-up (a backup removes its checkpoint) before returning 130.  On failure
    the reason is printed to ``error_stream`` as ``hvtui: error: <reason>``.
    ``progress_printer`` is called on the manager's notifier thread.
    """
    job_id = job if isinstance(job, str) else job.id
    job_id = manager.job(job_id).id

    def on_event(event: JobEvent) -> None:
        if progress_printer is not None and event.job.id == job_id and event.job.progress is not None and event.type == "progress":
            progress_printer(event.job.progress)

    unsubscribe = manager.subscribe(on_event)
    # A signal handler must not take the manager's lock (the main thread may hold it):
    # it only raises a flag that the wait loop below acts on.
    stop_requested: list[int] = []
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                previous[signum] = signal.signal(signum, lambda number, _frame: stop_requested.append(number))
    try:
        while True:
            try:
                if stop_requested:
                    stop_requested.clear()
                    manager.cancel(job_id)
                final = manager.wait(job_id, timeout=0.2)
            except KeyboardInterrupt:
                stop_requested.append(signal.SIGINT)
                continue
            if final.is_final:
                break
    finally:
        manager.flush_events(timeout=5)
        unsubscribe()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    end_line = getattr(progress_printer, "close", None)
    if callable(end_line):  # the reason goes on a line of its own, not over a progress line
        end_line()
    if final.state is JobState.FAILED and error_stream is not None:
        prefix = "refused" if final.error_kind == "refused" else "error"
        print(f"hvtui: {prefix}: {final.error}", file=error_stream)
    elif final.state is JobState.CANCELLED and error_stream is not None:
        print(f"hvtui: {final.title} cancelled", file=error_stream)
    return exit_code_for(final)


# -- backup and restore kinds (on hvtui.backups) --------------------------------------------
# The engine service (``core.backups``) refuses read-only hosts and writes the audit
# entries for backups and host restores itself; the kinds below add nothing to the audit
# log except the explicit leftover-checkpoint clean-up before a resumed backup.

RESTORE_TARGETS = ("new", "in_place", "directory")
LOCAL_HOST = "local"  # the job "host" of a restore into a directory on this machine


def register_engine_kinds(manager: JobManager) -> None:
    """Register the ``backup`` and ``restore`` kinds (they run on ``manager.core.backups``)."""
    if manager.core is None:
        return
    manager.register_kind(JobKind("backup", build=lambda job: _backup_run(manager, job), before_resume=lambda job: _before_backup_resume(manager, job)))
    manager.register_kind(JobKind("restore", build=lambda job: _restore_run(manager, job), before_resume=lambda job: _before_restore_resume(manager, job)))


def _core_of(manager: JobManager) -> Any:
    if manager.core is None:
        raise JobError("backup and restore jobs need a job manager built from the core (JobManager.from_core)")
    return manager.core


def submit_backup(
    manager: JobManager,
    host: str,
    vm_id: str,
    mode: str | None = None,
    repository: str | None = None,
    vm_name: str | None = None,
) -> Job:
    """Queue a backup of ``vm_id`` on ``host`` (see ``JobManager.submit_backup``).

    Refused at once (``ReadOnlyError``, audit-logged like the engine does) when the console
    or the host is read-only; an unknown host or repository is a ``ConfigError``.
    """
    from hvtui.backups import BACKUP_MODES

    core = _core_of(manager)
    if mode is not None and mode not in BACKUP_MODES:
        raise ConfigError(f"unknown backup mode {mode!r} (expected {', '.join(BACKUP_MODES)})")
    core.host(host)  # unknown host: ConfigError now, not a failed job later
    repo_name = core.backups.repository_config(repository).name
    auto = mode is None
    latest = core.backups.latest_point(host, vm_id, repo_name) if auto or vm_name is None else None
    if auto:
        # What the job will most likely do; decided again when it runs.
        mode = "incremental" if latest is not None else "full"
    if vm_name is None and latest is not None:
        vm_name = latest.vm_name
    _refuse_if_read_only(core, "backup", host, vm_name or vm_id, {"mode": mode, "repository": repo_name, "vm_id": vm_id})
    params = {"mode": mode, "auto_mode": auto, "repository": repo_name}
    return manager.submit("backup", host, vm_id, vm_name, params)


def submit_restore(
    manager: JobManager,
    point_id: str,
    target: str,
    *,
    new_name: str | None = None,
    directory: str | Path | None = None,
    host: str | None = None,
    repository: str | None = None,
) -> Job:
    """Queue a restore of restore point ``point_id`` (see ``JobManager.submit_restore``)."""
    core = _core_of(manager)
    if target not in RESTORE_TARGETS:
        raise ConfigError(f"unknown restore target {target!r} (expected {', '.join(RESTORE_TARGETS)})")
    if target == "new" and not new_name:
        raise ConfigError("a restore as a new VM needs the new VM's name")
    if target == "directory" and not directory:
        raise ConfigError("a restore into a directory needs the directory")
    repo, manifest = core.backups.find_point(point_id, repository)
    params: dict[str, Any] = {"mode": target, "point_id": manifest.id, "repository": repo.name}
    if target == "directory":
        job_host = LOCAL_HOST
        params["directory"] = str(Path(directory).expanduser().absolute())  # type: ignore[arg-type]
    else:
        job_host = host or manifest.host
        core.host(job_host)
        if target == "new":
            params["new_name"] = new_name
            params["host"] = job_host
            label = new_name
        else:
            if job_host != manifest.host:
                raise ConfigError("an in-place restore goes back to the point's own host")
            label = manifest.vm_name
        action = "restore-as-new" if target == "new" else "restore-in-place"
        _refuse_if_read_only(core, action, job_host, label, {"point": manifest.id, "repository": repo.name})
    return manager.submit("restore", job_host, manifest.vm_id, manifest.vm_name, params)


def _refuse_if_read_only(core: Any, action: str, host: str, vm: str | None, args: dict[str, Any]) -> None:
    reason = core.backups.read_only_reason(host)
    if reason is None:
        return
    try:
        core.audit.record(action, host, vm, args, "refused", 0.0, f"read-only: {reason}")
    except OSError as err:
        log.error("could not write the audit log: %s", err)
    raise ReadOnlyError(f"{action} refused: {reason}")


def _backup_run(manager: JobManager, job: Job) -> RunFn:
    core = _core_of(manager)
    params = dict(job.params)
    host, vm_id = job.host, job.vm_id
    if vm_id is None:
        raise JobError("a backup job needs a VM id")

    def run(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        # Auto mode asks for an incremental: the engine runs a full when the VM has no
        # earlier point in the repository, so a retried or resumed job still does right.
        mode = "incremental" if params.get("auto_mode") else str(params["mode"])
        result = core.backups.backup(host, vm_id, mode, params.get("repository"), progress=progress, cancel=cancel)
        summary = result.to_dict()
        summary["message"] = (
            f"{result.mode} point {result.point_id}: {humanize.naturalsize(result.new_bytes, binary=True)} new, "
            f"{humanize.naturalsize(result.stored_bytes, binary=True)} stored"
        )
        return summary

    return run


def _restore_run(manager: JobManager, job: Job) -> RunFn:
    core = _core_of(manager)
    params = dict(job.params)
    target = params.get("mode")

    def run(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"repository": params.get("repository"), "progress": progress, "cancel": cancel}
        if target == "directory":
            kwargs["to_dir"] = Path(params["directory"])
        elif target == "new":
            kwargs["as_name"] = params["new_name"]
            kwargs["host"] = params.get("host") or job.host
        else:
            kwargs["in_place"] = True
        result = core.backups.restore(params["point_id"], **kwargs)
        summary = result.to_dict()
        summary["message"] = f"point {result.point_id} restored to {result.target}"
        return summary

    return run


def _before_backup_resume(manager: JobManager, job: Job) -> None:
    """Remove the Recovery checkpoint a killed backup left on the VM.

    Done under the engine's per-VM backup lock for that repository, so it can never
    remove the checkpoint of a backup of the same VM another process is running now
    (that one is refused instead, and the job is not resumed).  The engine clears
    leftovers again under the same lock when the backup starts.
    """
    from hvtui.engine.locks import VMLock

    core = _core_of(manager)
    vm_label = job.vm or job.vm_id
    _refuse_if_read_only(core, "backup", job.host, vm_label, {"resume": job.id})
    host = core.host(job.host)
    cleanup = getattr(host, "cleanup_recovery_checkpoints", None)
    if not callable(cleanup) or job.vm_id is None:
        return
    repo = core.backups.open_repository(job.params.get("repository"))
    lock = VMLock(repo.root, job.host, job.vm_id).acquire() if repo is not None else None
    try:
        with core.audit.action("remove-recovery-checkpoints", job.host, vm_label, {"vm_id": job.vm_id, "resuming": job.id}) as entry:
            removed = cleanup(job.vm_id)
            entry.args["removed"] = removed
    finally:
        if lock is not None:
            lock.release()


def _before_restore_resume(manager: JobManager, job: Job) -> None:
    """A killed restore into a directory leaves its staging directory: remove it."""
    import shutil

    if job.params.get("mode") != "directory":
        return  # a host restore's staging is the host's (the lab aborts leftovers itself)
    target = Path(job.params["directory"])
    for leftover in target.glob(f".hvtui-restore-{job.params['point_id']}-*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
