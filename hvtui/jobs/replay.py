"""The job journal from the manager's side: writing each job's events, and reading them
back (``history``, ``interrupted_jobs``: jobs a killed console left behind) to resume or
dismiss them.  ``JournalReplay`` owns the journal; it sees this process's live jobs through
the ``JobTable`` it shares with the manager and the runner."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from hvtui.jobs.model import JOURNAL_COMPACT_BYTES, JOURNAL_KEEP_FINISHED, Job, JobError, JobKind, JobRecord, JobState
from hvtui.jobs.outcome import owner_fields, parse_time, state_words
from hvtui.jobs.table import JobTable
from hvtui.journal import UNFINISHED_EVENTS, JobJournal, JournalEntry, JournalProblem, process_alive

log = logging.getLogger(__name__)


class JournalReplay:
    """The journal side of ``JobManager``: None as ``journal_path`` keeps no journal;
    ``kind_of`` looks up a registered ``JobKind`` (to describe what an interrupted job had
    committed)."""

    def __init__(self, table: JobTable, journal_path: Path | None, kind_of: Callable[[str], JobKind | None]) -> None:
        self._table = table
        self._kind_of = kind_of
        self._journal = JobJournal(journal_path) if journal_path is not None else None
        self._problems: list[JournalProblem] = []
        if self._journal is not None and self._journal.size() > JOURNAL_COMPACT_BYTES:
            try:
                dropped = self._journal.compact(JOURNAL_KEEP_FINISHED)
                log.info("job journal compacted: %d old jobs dropped", dropped)
            except OSError as err:
                log.warning("could not compact the job journal %s: %s", self._journal.path, err)

    # -- the journal ---------------------------------------------------------------------
    @property
    def journal_path(self) -> Path | None:
        return self._journal.path if self._journal is not None else None

    @property
    def journal_problems(self) -> list[JournalProblem]:
        """Damaged journal lines found by the latest read (they were skipped)."""
        return list(self._problems)

    def interrupted_jobs(self) -> list[Job]:
        """Jobs the journal shows submitted or started but never finished, whose process is
        gone (killed, or lost with an SSH session), not yet resumed or dismissed."""
        return [job for job in self.history() if job.state is JobState.INTERRUPTED and not job.resumed_by and not job.dismissed]

    def history(self, limit: int | None = None) -> list[Job]:
        """Every job in the journal (oldest first; the newest ``limit`` if given), with
        this process's live jobs as they are now.  Jobs of another live process show as
        queued or running with ``owner_pid`` set."""
        entries = self._read()
        with self._table.cond:
            live = {job_id: self._table.snapshot(r) for job_id, r in self._table.records.items()}
        jobs = [live.pop(e.job_id) if e.job_id in live else self.job_of(e) for e in entries.values()]
        jobs.extend(live.values())  # jobs whose journal writes failed
        jobs.sort(key=lambda j: j.created)
        return jobs[-limit:] if limit else jobs

    def awaiting_resume(self, job_id: str) -> Job:
        """The interrupted job ``job_id`` (a unique prefix is enough), refused unless it still
        awaits a decision (not resumed, not dismissed)."""
        job = self.job_of(self.entry(job_id))
        if job.state is not JobState.INTERRUPTED or job.resumed_by or job.dismissed:
            raise JobError(f"job {job.id} is not interrupted (it is {state_words(job)}); nothing to resume")
        return job

    def dismiss_interrupted(self, job_id: str) -> Job:
        """Mark an interrupted job so it is no longer offered for resuming."""
        entry = self.entry(job_id)
        job = self.job_of(entry)
        if job.state is not JobState.INTERRUPTED or job.resumed_by or job.dismissed:
            raise JobError(f"job {entry.job_id} is not an interrupted job awaiting a decision (it is {state_words(job)})")
        job_kind = self._kind_of(job.kind)
        if job_kind is not None and job_kind.on_dismiss is not None:
            job_kind.on_dismiss(job)
        self.mark(entry.job_id, "dismissed")
        return self.job_of(self.entry(entry.job_id))

    # -- reading and writing ----------------------------------------------------------------
    def write(self, record: JobRecord, event: str, **fields: Any) -> None:
        """Journal one event of a job of this process; a failed write is logged, not raised."""
        if self._journal is None:
            return
        try:
            self._journal.append(event, record.id, **fields)
        except OSError as err:
            # The job itself can still run; the user is told it will not be resumable.
            message = f"could not write the job journal {self._journal.path}: {err.strerror or err}"
            log.error("%s", message)
            with self._table.cond:
                self._table.log_line(record, message)

    def write_submitted(self, record: JobRecord) -> None:
        """Journal a new job with everything needed to run it again, and its owner process."""
        self.write(
            record,
            "submitted",
            at=record.created.isoformat(),
            kind=record.kind,
            host=record.host,
            vm_id=record.vm_id,
            vm_name=record.vm_name,
            params=record.params,
            retry_of=record.retry_of,
            resumed_from=record.resumed_from,
            **owner_fields(),
        )

    def _read(self) -> dict[str, JournalEntry]:
        if self._journal is None:
            return {}
        try:
            contents = self._journal.read()
        except OSError as err:
            raise JobError(f"cannot read the job journal {self._journal.path}: {err.strerror or err}") from err
        if contents.problems != self._problems:
            for problem in contents.problems:
                log.warning("%s (skipped)", problem)
        self._problems = contents.problems
        return contents.entries

    def entry(self, job_id: str) -> JournalEntry:
        """What the journal says about ``job_id`` (a unique prefix is enough)."""
        entries = self._read()
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

    def mark(self, job_id: str, event: str, **fields: Any) -> None:
        """Journal ``resumed`` or ``dismissed`` for a job that never finished, unless another
        hvtui did so meanwhile."""
        assert self._journal is not None
        try:
            self._journal.append_if(job_id, UNFINISHED_EVENTS, event, at=self._table.clock.now().isoformat(), **fields)
        except ValueError as err:
            raise JobError(f"job {job_id} was {err} meanwhile (by another hvtui?)") from None
        except OSError as err:
            raise JobError(f"cannot write the job journal {self._journal.path}: {err.strerror or err}") from err

    def job_of(self, entry: JournalEntry) -> Job:
        """The job a journal entry describes (the live one when it is this process's)."""
        sub = entry.submitted
        pid, proc_start = entry.owner
        finished = entry.finished
        log_lines: list[str] = []
        if finished is not None:
            state = JobState(finished["state"])
        else:
            with self._table.cond:
                live = self._table.records.get(entry.job_id)
                if live is not None:
                    return self._table.snapshot(live)
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
        job = Job(
            id=entry.job_id,
            kind=sub["kind"],
            host=str(sub.get("host") or ""),
            vm_id=sub.get("vm_id"),
            vm_name=sub.get("vm_name"),
            params=dict(sub["params"]),
            state=state,
            created=parse_time(sub.get("at")) or datetime.fromtimestamp(0).astimezone(),
            started=parse_time(entry.started.get("at")) if entry.started else None,
            finished=parse_time(finished.get("at")) if finished else None,
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
        job_kind = self._kind_of(job.kind)
        if state is JobState.INTERRUPTED and job_kind is not None and job_kind.leftovers is not None:
            left = job_kind.leftovers(job)  # until the resume, the dismissal or the next restore cleans it
            if left:
                job = dataclasses.replace(job, log=(*job.log, left))
        result = entry.committed.get("result") if entry.committed else None
        if state is not JobState.INTERRUPTED or not result:
            return job
        # Killed after its result was durable (a backup during its clean-up): say what it
        # had done, checked against what is there now.
        committed = self._committed_summary(job, str(result))
        return dataclasses.replace(job, summary=committed, log=(*job.log[:1], str(committed["message"]), *job.log[1:]))

    def _committed_summary(self, job: Job, result: str) -> dict[str, Any]:
        job_kind = self._kind_of(job.kind)
        if job_kind is not None and job_kind.committed is not None:
            try:
                summary = dict(job_kind.committed(job, result))
                if summary.get("message"):
                    return summary
            except Exception as err:  # a failed look must not hide the journal
                log.warning("job %s: could not check what it had committed (%s): %s", job.id, result, err)
        return {"committed": result, "message": f"it had committed {result} before its process ended"}
