"""The job journal from the manager's side: writing each job's events, and reading them
back (``history``, ``interrupted_jobs``: jobs a killed console left behind) to ``resume``
or dismiss them.  ``JournalReplay`` is a part of ``JobManager`` (``manager.py``)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from hvtui.clock import Clock
from hvtui.jobs.model import Job, JobError, JobKind, JobRecord, JobState
from hvtui.jobs.outcome import parse_time, state_words
from hvtui.journal import JobJournal, JournalEntry, JournalProblem, process_alive

log = logging.getLogger(__name__)


class JournalReplay:
    """The journal side of ``JobManager``."""

    # Set by JobManager.__init__.
    clock: Clock
    _cond: threading.Condition
    _records: dict[str, JobRecord]
    _journal: JobJournal | None
    _journal_problems: list[JournalProblem]
    _kinds: dict[str, JobKind]
    # Also uses JobManager.submit and _new_id, and JobRunner._snapshot and _log_line.

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
            raise JobError(f"job {entry.job_id} is not interrupted (it is {state_words(job)}); nothing to resume")
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
            raise JobError(f"job {entry.job_id} is not an interrupted job awaiting a decision (it is {state_words(job)})")
        job_kind = self._kinds.get(job.kind)
        if job_kind is not None and job_kind.on_dismiss is not None:
            job_kind.on_dismiss(job)
        self._mark_journal(entry.job_id, "dismissed")
        return self._job_from_entry(self._journal_entry(entry.job_id))

    # -- internals: journal ----------------------------------------------------------------
    def _journal_append(self, record: JobRecord, event: str, **fields: Any) -> None:
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
        job_kind = self._kinds.get(job.kind)
        if job.state is JobState.INTERRUPTED and job_kind is not None and job_kind.leftovers is not None:
            left = job_kind.leftovers(job)  # until the resume, the dismissal or the next restore cleans it
            if left:
                job = dataclasses.replace(job, log=(*job.log, left))
        return job
