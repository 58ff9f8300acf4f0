"""The jobs of one ``JobManager`` and the lock that guards them: ``JobTable``, the state the
manager (``manager.py``), the runner (``runner.py``) and the journal replay (``replay.py``)
share.  Each of them receives the same table in its constructor; everything else they hold
is their own."""

from __future__ import annotations

import os
import secrets
import threading
from collections import Counter, deque

from hvtui.clock import Clock
from hvtui.jobs.model import Job, JobError, JobRecord
from hvtui.logsetup import redact


class JobTable:
    """This process's jobs: every record, the queue, the running count per host, and
    ``cond``, the one lock (and condition) that guards them all and every ``JobRecord``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.cond = threading.Condition(threading.Lock())
        self.records: dict[str, JobRecord] = {}  # submission order
        self.queue: deque[JobRecord] = deque()
        self.running_per_host: Counter[str] = Counter()
        self.closed = False  # no new jobs (the manager is shutting down)

    @property
    def running_count(self) -> int:
        """Jobs running now (lock held)."""
        return sum(self.running_per_host.values())

    def new_id(self) -> str:
        while True:
            job_id = secrets.token_hex(4)
            if job_id not in self.records:
                return job_id

    def record(self, job_id: str) -> JobRecord:
        """The record of ``job_id`` or of the one job whose id starts with it (lock held)."""
        record = self.find(job_id)
        if record is None:
            raise JobError(f"no job {job_id!r} in this session")
        return record

    def find(self, job_id: str) -> JobRecord | None:
        """Like ``record``, None when no job matches (lock held)."""
        record = self.records.get(job_id)
        if record is not None:
            return record
        matches = [r for key, r in self.records.items() if key.startswith(job_id)] if job_id else []
        if len(matches) > 1:
            raise JobError(f"job id {job_id!r} is ambiguous ({', '.join(r.id for r in matches)})")
        return matches[0] if matches else None

    def snapshot(self, record: JobRecord) -> Job:
        """An immutable ``Job`` of the record as it is now (lock held)."""
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

    def log_line(self, record: JobRecord, text: str) -> None:
        """Append a line to the job's log (lock held)."""
        stamp = self.clock.now().astimezone().strftime("%H:%M:%S")
        record.log.append(f"{stamp} {redact(text)}")

    def log_line_locked(self, record: JobRecord, text: str) -> None:
        """``log_line`` for a caller that does not hold the lock."""
        with self.cond:
            self.log_line(record, text)
