"""Running jobs: starting queued jobs within the limits, one worker thread per job,
classifying its outcome, and delivering state and (throttled) progress events on the
notifier thread.  ``JobRunner`` is a part of ``JobManager`` (``manager.py``), which holds
the state it works on (the lock, the records, the queue, the subscribers)."""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from hvtui.clock import Clock
from hvtui.errors import Cancelled
from hvtui.events import Progress
from hvtui.jobs.model import Job, JobEvent, JobRecord, JobState
from hvtui.jobs.outcome import describe_error, error_kind_of, jsonable_summary, owner_fields
from hvtui.logsetup import redact

log = logging.getLogger(__name__)


class JobRunner:
    """Scheduling, worker threads and event delivery of ``JobManager``."""

    # Set by JobManager.__init__.
    max_concurrent: int
    per_host: int
    clock: Clock
    _throttle: float
    _monotonic: Callable[[], float]
    _cond: threading.Condition
    _records: dict[str, JobRecord]
    _queue: deque[JobRecord]
    _running_per_host: Counter[str]
    _threads: dict[str, threading.Thread]
    _closed: bool
    _subscribers: list[Callable[[JobEvent], None]]
    _events: deque[JobEvent]
    _enqueued: int
    _delivered: int
    _stop_notifier: bool
    _notifier: threading.Thread
    # Also uses JournalReplay._journal_append (both are parts of JobManager).

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

    def _work(self, record: JobRecord) -> None:
        """A job's worker thread: run the function, classify the outcome, journal it."""
        assert record.started is not None
        self._journal_append(record, "started", at=record.started.isoformat(), **owner_fields())
        summary: dict[str, Any] | None = None
        error: str | None = None
        error_kind: str | None = None
        try:
            result = record.run_fn(lambda event: self._on_progress(record, event), record.token)
            summary = jsonable_summary(result)
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
        record: JobRecord,
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

    def _on_progress(self, record: JobRecord, event: Progress) -> None:
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
    def _emit_state(self, record: JobRecord) -> None:
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
    def _snapshot(self, record: JobRecord) -> Job:
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

    def _log_line(self, record: JobRecord, text: str) -> None:
        """Append a log line (lock held)."""
        stamp = self.clock.now().astimezone().strftime("%H:%M:%S")
        record.log.append(f"{stamp} {redact(text)}")

    def _log_line_locked(self, record: JobRecord, text: str) -> None:
        with self._cond:
            self._log_line(record, text)
