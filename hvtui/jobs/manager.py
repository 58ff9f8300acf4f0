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

Where the parts live: ``model`` (what a job is), ``table`` (this process's jobs and the
lock guarding them, shared by the parts), ``runner`` (threads, cancel, progress events),
``replay`` (the journal, resuming interrupted jobs), ``outcome`` (errors, exit codes, JSON),
``headless`` (``run_job_blocking``) and ``kinds/`` (one module per kind).  ``JobManager``
builds a table, a runner and a replay, and delegates to them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hvtui.clock import Clock, SystemClock
from hvtui.jobs.kinds.backup import submit_backup
from hvtui.jobs.kinds.base import EngineServices
from hvtui.jobs.kinds.copy import submit_copy
from hvtui.jobs.kinds.restore import submit_restore
from hvtui.jobs.model import (
    DEFAULT_LOG_LINES,
    DEFAULT_THROTTLE_SECONDS,
    Job,
    JobError,
    JobEvent,
    JobKind,
    JobRecord,
    JobState,
    RunFn,
)
from hvtui.jobs.outcome import check_jsonable
from hvtui.jobs.replay import JournalReplay
from hvtui.jobs.runner import JobRunner
from hvtui.jobs.table import JobTable
from hvtui.journal import JournalProblem

log = logging.getLogger(__name__)


class JobManager:
    """Queue, run and journal jobs (see the module docstring).

    The parts: ``JobTable`` (the jobs and their lock), ``JobRunner`` (threads, events) and
    ``JournalReplay`` (the journal); the manager builds them and delegates to them.
    """

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
        self.clock: Clock = clock or SystemClock()
        self.services = services  # for the backup and restore kinds
        self._log_lines = max(1, int(log_lines))
        self._kinds: dict[str, JobKind] = {}
        self._table = JobTable(self.clock)
        self._replay = JournalReplay(self._table, journal_path, self.kind)
        self._runner = JobRunner(
            self._table,
            self._replay,
            max_concurrent=max_concurrent,
            per_host=per_host,
            throttle_seconds=throttle_seconds,
            monotonic=monotonic,
        )

    @property
    def max_concurrent(self) -> int:
        return self._runner.max_concurrent

    @property
    def per_host(self) -> int:
        return self._runner.per_host

    # -- kinds ---------------------------------------------------------------------------
    def register_kind(self, kind: JobKind) -> None:
        self._kinds[kind.name] = kind

    def kind(self, name: str) -> JobKind | None:
        """The registered kind ``name`` (to wrap it, or to check a job can be resumed)."""
        return self._kinds.get(name)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    # -- events ----------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[JobEvent], None]) -> Callable[[], None]:
        """Deliver every later ``JobEvent`` to ``callback`` (on the notifier thread).

        Returns a function that unsubscribes.
        """
        return self._runner.subscribe(callback)

    def flush_events(self, timeout: float | None = None) -> bool:
        """Wait until every event enqueued so far has been delivered; False on timeout."""
        return self._runner.flush_events(timeout)

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
        with self._table.cond:
            if self._table.closed:
                raise JobError("the job manager is shut down; no new jobs")
            job_id = job_id or self._table.new_id()
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
            record.run_fn = job_kind.build(self._table.snapshot(record))
        # Journal before the job can start, so "started" never precedes "submitted".
        self._replay.write_submitted(record)
        with self._table.cond:
            if self._table.closed:
                raise JobError("the job manager is shut down; no new jobs")
            self._table.records[record.id] = record
            self._table.queue.append(record)
            self._table.log_line(record, "queued" + (f" (retry of {retry_of})" if retry_of else "") + (f" (resuming {resumed_from})" if resumed_from else ""))
            self._runner.emit_state(record)
            self._runner.pump()
            return self._table.snapshot(record)

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job (it never starts) or ask a running one to stop.

        A running job stays ``running`` (with ``cancel_requested``) until its function has
        cleaned up and returned; then it is ``cancelled``.  Cancelling a finished job
        changes nothing.
        """
        with self._table.cond:
            record = self._table.record(job_id)
            if record.state is JobState.QUEUED:
                if record.token.cancelled:
                    return self._table.snapshot(record)  # another caller is cancelling it right now
                self._table.queue.remove(record)
                record.token.cancel()
                self._table.log_line(record, "cancelled before it started")
                finish_now = True
            elif record.state is JobState.RUNNING:
                if not record.token.cancelled:
                    record.token.cancel()
                    self._table.log_line(record, "cancel requested")
                    self._runner.emit_state(record)
                return self._table.snapshot(record)
            else:
                return self._table.snapshot(record)
        if finish_now:
            self._runner.finish(record, JobState.CANCELLED, None, None, None)
        return self.job(record.id)

    def retry(self, job_id: str) -> Job:
        """Run a finished job again as a new job (``retry_of`` names the original).

        Works for this process's jobs and for finished jobs in the journal; an
        interrupted job is resumed instead (see ``resume``).
        """
        with self._table.cond:
            record = self._table.find(job_id)
            if record is not None:
                if not record.state.final:
                    raise JobError(f"job {record.id} is still {record.state}; cancel it first or wait")
                spec = (record.kind, record.host, record.vm_id, record.vm_name, dict(record.params))
                run_fn = record.run_fn if record.explicit_run_fn else None
                original = record.id
        if record is None:
            entry = self._replay.entry(job_id)
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
        with self._table.cond:
            return [self._table.snapshot(r) for r in self._table.records.values()]

    def job(self, job_id: str) -> Job:
        with self._table.cond:
            return self._table.snapshot(self._table.record(job_id))

    @property
    def running_count(self) -> int:
        with self._table.cond:
            return self._table.running_count

    @property
    def queued_count(self) -> int:
        with self._table.cond:
            return len(self._table.queue)

    @property
    def active_count(self) -> int:
        """Jobs queued or running (what "quit with jobs running?" asks about)."""
        with self._table.cond:
            return len(self._table.queue) + self._table.running_count

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is final (or ``timeout`` passes); return its snapshot.

        Check ``job.is_final`` when a timeout was given.
        """
        with self._table.cond:
            record = self._table.record(job_id)
        record.done.wait(timeout)
        return self.job(record.id)

    # -- the journal -----------------------------------------------------------------------
    @property
    def journal_path(self) -> Path | None:
        return self._replay.journal_path

    @property
    def journal_problems(self) -> list[JournalProblem]:
        """Damaged journal lines found by the latest read (they were skipped)."""
        return self._replay.journal_problems

    def history(self, limit: int | None = None) -> list[Job]:
        """Every job in the journal (oldest first; the newest ``limit`` if given), with
        this process's live jobs as they are now.  Jobs of another live process show as
        queued or running with ``owner_pid`` set."""
        return self._replay.history(limit)

    def interrupted_jobs(self) -> list[Job]:
        """Jobs the journal shows submitted or started but never finished, whose process is
        gone (killed, or lost with an SSH session), not yet resumed or dismissed."""
        return self._replay.interrupted_jobs()

    def resume(self, job_id: str) -> Job:
        """Re-submit an interrupted job as a new job (``resumed_from`` names the old one).

        The kind's ``before_resume`` runs first (a backup: remove any Recovery checkpoint
        left on the VM); the old job is then marked resumed so it is not offered again.
        """
        job = self._replay.awaiting_resume(job_id)
        job_kind = self._kinds.get(job.kind)
        if job_kind is None:
            raise JobError(f"cannot resume job {job.id}: this hvtui does not know how to run a {job.kind!r} job")
        if job_kind.before_resume is not None:
            job_kind.before_resume(job)
        with self._table.cond:
            new_id = self._table.new_id()
        self._replay.mark(job.id, "resumed", by=new_id)
        return self.submit(job.kind, job.host, job.vm_id, job.vm_name, dict(job.params), resumed_from=job.id, job_id=new_id)

    def dismiss_interrupted(self, job_id: str) -> Job:
        """Mark an interrupted job so it is no longer offered for resuming."""
        return self._replay.dismiss_interrupted(job_id)

    # -- stopping ------------------------------------------------------------------------
    def shutdown(self, cancel_running: bool, timeout: float | None = None) -> bool:
        """Stop accepting jobs; queued jobs are cancelled (they never start).

        ``cancel_running`` True asks running jobs to stop (they still clean up: a backup
        removes its checkpoint); False lets them finish.  Waits up to ``timeout`` for the
        running jobs and the event deliveries; returns True if everything stopped.
        """
        with self._table.cond:
            self._table.closed = True
            queued = list(self._table.queue)
            running = [r for r in self._table.records.values() if r.state is JobState.RUNNING]
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
            self._runner.stop_notifier()
        return all_done

    # -- backup and restore --------------------------------------------------------------
    def submit_backup(
        self,
        host: str,
        vm_id: str,
        mode: str | None = None,
        repository: str | None = None,
        vm_name: str | None = None,
        consistency: str | None = None,
        limit_rate: int | None = None,
    ) -> Job:
        """Queue a backup of one VM.

        ``mode`` None: incremental when the repository holds a previous point of this VM,
        else full (asked again when the job runs, so a resumed or retried job still does
        the right thing).  ``repository`` None: the default one.  Refused at once in
        read-only mode.  Needs a manager built with ``services``.  ``consistency``: the
        checkpoint's (a WinRM host's); None: the host's setting.  ``limit_rate``: bytes per
        second read from the host at most (a WinRM host's files over SMB3).
        """
        return submit_backup(
            self, host, vm_id, mode=mode, repository=repository, vm_name=vm_name, consistency=consistency, limit_rate=limit_rate
        )

    def submit_copy(
        self, source: str, target: str, vms: list[str] | None = None, point_ids: list[str] | None = None, vm_name: str | None = None,
        read_back: bool = False,
    ) -> Job:
        """Queue a copy job (``hvtui.jobs.kinds.copy``): the points ``source`` holds and ``target`` lacks
        (``read_back``: every chunk sent is also read back from the target and checked)."""
        return submit_copy(self, source, target, vms, point_ids, vm_name, read_back)

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
