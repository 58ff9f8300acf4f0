"""The job manager: a queue of long operations (backups, restores, ...) run in-process.

Layering: the console and the CLI submit jobs here and render the events; jobs call the
backup service (``hvtui.backups``) which talks to hosts and repositories.  Nothing here touches
Textual.

- **Limits.**  At most ``max_concurrent`` jobs run at once, and at most ``per_host`` on
  one host (``config.jobs``).  Queued jobs start in submission order, except that a
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

Where the parts live: ``model`` (what a job is), ``runner`` (threads, cancel, progress
events), ``replay`` (the journal, resuming interrupted jobs), ``outcome`` (errors, exit
codes, JSON), ``headless`` (``run_job_blocking``) and ``kinds/`` (one module per kind).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hvtui.clock import Clock, SystemClock
from hvtui.jobs.kinds.backup import submit_backup
from hvtui.jobs.kinds.base import EngineServices
from hvtui.jobs.kinds.restore import submit_restore
from hvtui.jobs.model import (
    DEFAULT_LOG_LINES,
    DEFAULT_THROTTLE_SECONDS,
    JOURNAL_COMPACT_BYTES,
    JOURNAL_KEEP_FINISHED,
    Job,
    JobError,
    JobEvent,
    JobKind,
    JobRecord,
    JobState,
    RunFn,
)
from hvtui.jobs.outcome import check_jsonable, owner_fields
from hvtui.jobs.replay import JournalReplay
from hvtui.jobs.runner import JobRunner
from hvtui.journal import JobJournal, JournalProblem

log = logging.getLogger(__name__)


class JobManager(JobRunner, JournalReplay):
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
        services: EngineServices | None = None,
    ) -> None:
        """``services``: what the backup and restore kinds run on (``register_engine_kinds``)."""
        self.max_concurrent = max(1, int(max_concurrent))
        self.per_host = max(1, int(per_host))
        self.clock: Clock = clock or SystemClock()
        self.services = services  # for the backup and restore kinds
        self._throttle = float(throttle_seconds)
        self._monotonic = monotonic
        self._log_lines = max(1, int(log_lines))
        self._journal = JobJournal(journal_path) if journal_path is not None else None
        self._journal_problems: list[JournalProblem] = []
        self._kinds: dict[str, JobKind] = {}

        self._cond = threading.Condition(threading.Lock())
        self._records: dict[str, JobRecord] = {}  # submission order
        self._queue: deque[JobRecord] = deque()
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

    # -- kinds ---------------------------------------------------------------------------
    def register_kind(self, kind: JobKind) -> None:
        self._kinds[kind.name] = kind

    def kind(self, name: str) -> JobKind | None:
        """The registered kind ``name`` (to wrap it, or to check a job can be resumed)."""
        return self._kinds.get(name)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._kinds)

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
        check_jsonable(params)
        explicit = run_fn is not None
        with self._cond:
            if self._closed:
                raise JobError("the job manager is shut down; no new jobs")
            job_id = job_id or self._new_id()
        record = JobRecord(
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
            **owner_fields(),
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
        read-only mode.  Needs a manager built with ``services``.
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
        keep_checkpoints: bool = False,
    ) -> Job:
        """Queue a restore of one restore point.

        ``target``: "new" (a new VM called ``new_name``, on ``host`` or the point's host),
        "in_place" (over the original VM, which must be off when the job runs; confirm
        first) or "directory" (the files into ``directory``; the job's host is "local").
        The job's ``mode`` is the target.  Refused at once in read-only mode for host
        targets.  A new VM or a folder gets one flattened disk per drive and no
        checkpoints unless ``keep_checkpoints``.
        """
        return submit_restore(
            self, point_id, target, new_name=new_name, directory=directory, host=host, repository=repository,
            keep_checkpoints=keep_checkpoints,
        )  # fmt: skip

    # -- internals: scheduling and running -------------------------------------------------
    def _new_id(self) -> str:
        while True:
            job_id = secrets.token_hex(4)
            if job_id not in self._records:
                return job_id

    def _record(self, job_id: str) -> JobRecord:
        record = self._find_record(job_id)
        if record is None:
            raise JobError(f"no job {job_id!r} in this session")
        return record

    def _find_record(self, job_id: str) -> JobRecord | None:
        record = self._records.get(job_id)
        if record is not None:
            return record
        matches = [r for key, r in self._records.items() if key.startswith(job_id)] if job_id else []
        if len(matches) > 1:
            raise JobError(f"job id {job_id!r} is ambiguous ({', '.join(r.id for r in matches)})")
        return matches[0] if matches else None
