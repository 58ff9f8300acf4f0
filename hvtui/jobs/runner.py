"""Running jobs: starting queued jobs within the limits, one worker thread per job,
classifying its outcome, and delivering state and (throttled) progress events on the
notifier thread.  ``JobRunner`` works on the ``JobTable`` it shares with the manager and
the journal replay; the subscribers, the event queue and the threads are its own."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from hvtui.errors import Cancelled
from hvtui.events import COMMITTED_PHASE, Progress
from hvtui.jobs.model import JobEvent, JobRecord, JobState
from hvtui.jobs.outcome import describe_error, error_kind_of, jsonable_summary, owner_fields
from hvtui.jobs.table import JobTable

log = logging.getLogger(__name__)


class JournalWriter(Protocol):
    """Where the runner journals a job's start and finish (``replay.JournalReplay``)."""

    def write(self, record: JobRecord, event: str, **fields: Any) -> None: ...


class JobRunner:
    """Scheduling, worker threads and event delivery for ``JobManager``."""

    def __init__(
        self,
        table: JobTable,
        journal: JournalWriter,
        *,
        max_concurrent: int,
        per_host: int,
        throttle_seconds: float,
        monotonic: Callable[[], float],
    ) -> None:
        self.max_concurrent = max(1, int(max_concurrent))
        self.per_host = max(1, int(per_host))
        self._table = table
        self._journal = journal
        self._throttle = float(throttle_seconds)
        self._monotonic = monotonic
        self._threads: dict[str, threading.Thread] = {}
        self._subscribers: list[Callable[[JobEvent], None]] = []
        self._events: deque[JobEvent] = deque()
        self._enqueued = 0
        self._delivered = 0
        self._stop_notifier = False
        self._notifier = threading.Thread(target=self._notify_loop, name="hvtui-job-events", daemon=True)
        self._notifier.start()

    # -- events --------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[JobEvent], None]) -> Callable[[], None]:
        """Deliver every later ``JobEvent`` to ``callback`` (on the notifier thread).

        Returns a function that unsubscribes.
        """
        with self._table.cond:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._table.cond:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def flush_events(self, timeout: float | None = None) -> bool:
        """Wait until every event enqueued so far has been delivered; False on timeout."""
        with self._table.cond:
            target = self._enqueued
            return self._table.cond.wait_for(lambda: self._delivered >= target or not self._notifier.is_alive(), timeout)

    def stop_notifier(self) -> None:
        """End the notifier thread once the events queued so far are delivered."""
        with self._table.cond:
            self._stop_notifier = True
            self._table.cond.notify_all()

    # -- running ---------------------------------------------------------------------------
    def pump(self) -> None:
        """Start queued jobs while the limits allow (called with the lock held)."""
        running = self._table.running_count
        for record in list(self._table.queue):
            if running >= self.max_concurrent:
                break
            if self._table.running_per_host[record.host] >= self.per_host:
                continue
            self._table.queue.remove(record)
            self._table.running_per_host[record.host] += 1
            running += 1
            record.state = JobState.RUNNING
            record.started = self._table.clock.now()
            self._table.log_line(record, "started")
            self.emit_state(record)
            thread = threading.Thread(target=self._work, args=(record,), name=f"hvtui-job-{record.id}", daemon=True)
            self._threads[record.id] = thread
            thread.start()

    def _work(self, record: JobRecord) -> None:
        """A job's worker thread: run the function, classify the outcome, journal it."""
        assert record.started is not None
        self._journal.write(record, "started", at=record.started.isoformat(), **owner_fields())
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
                self._table.log_line_locked(record, f"stopped with: {describe_error(err)}")
            else:
                state, error, error_kind = JobState.FAILED, describe_error(err), error_kind_of(err)
                if error_kind == "unexpected":
                    log.error("job %s (%s) failed unexpectedly", record.id, record.kind, exc_info=True)
                else:
                    log.warning("job %s (%s) failed: %s", record.id, record.kind, error)
        self.finish(record, state, summary, error, error_kind)

    def finish(
        self,
        record: JobRecord,
        state: JobState,
        summary: dict[str, Any] | None,
        error: str | None,
        error_kind: str | None,
    ) -> None:
        """End a job: journal it, record its outcome, free its slot, start the next job."""
        finished = self._table.clock.now()
        # Journal first: once a waiter sees the final state, the journal already says so
        # (the CLI exits right after).
        self._journal.write(
            record,
            "finished",
            at=finished.isoformat(),
            state=str(state),
            summary=summary,
            error=error,
            error_kind=error_kind,
        )
        with self._table.cond:
            was_running = record.state is JobState.RUNNING
            record.state = state
            record.finished = finished
            record.summary = summary
            record.error = error
            record.error_kind = error_kind
            if state is JobState.FAILED:
                self._table.log_line(record, f"failed: {error}")
            elif state is JobState.SUCCEEDED and summary and summary.get("message"):
                self._table.log_line(record, f"succeeded: {summary['message']}")
            else:
                self._table.log_line(record, str(state))
            if was_running:
                self._table.running_per_host[record.host] -= 1
                if self._table.running_per_host[record.host] <= 0:
                    del self._table.running_per_host[record.host]
                self._threads.pop(record.id, None)
            self.emit_state(record)
            if not self._table.closed:
                self.pump()  # before waking waiters: they see the next job already started
            record.done.set()

    def _on_progress(self, record: JobRecord, event: Progress) -> None:
        if not isinstance(event, Progress):
            return
        if event.phase == COMMITTED_PHASE and event.current and record.state is JobState.RUNNING:
            # Journaled before the job goes on (on its own thread, not under the lock): a
            # kill during its clean-up then still shows the result it had committed.
            self._journal.write(record, "committed", at=self._table.clock.now().isoformat(), result=event.current)
        with self._table.cond:
            if record.state is not JobState.RUNNING:
                return  # a late event from an engine thread after the job ended
            record.progress = event
            if event.phase != record.last_phase:
                record.last_phase = event.phase
                record.last_message = event.message or None
                self._table.log_line(record, f"{event.phase}: {event.message}" if event.message else event.phase)
            elif event.message and event.message != record.last_message:
                record.last_message = event.message
                self._table.log_line(record, event.message)
            now = self._monotonic()
            if now >= record.next_progress_due:
                record.next_progress_due = now + self._throttle
                record.progress_dirty = False
                self._enqueue(JobEvent("progress", self._table.snapshot(record)))
            elif not record.progress_dirty:
                record.progress_dirty = True
                self._table.cond.notify_all()  # the notifier delivers it when it falls due

    # -- events, with the lock held -----------------------------------------------------------------
    def emit_state(self, record: JobRecord) -> None:
        """Queue a state event (lock held); undelivered progress goes first, so the final
        progress always arrives, and before the final state."""
        if record.progress_dirty:
            record.progress_dirty = False
            record.next_progress_due = self._monotonic() + self._throttle
            self._enqueue(JobEvent("progress", self._table.snapshot(record)))
        self._enqueue(JobEvent("state", self._table.snapshot(record)))

    def _enqueue(self, event: JobEvent) -> None:
        self._events.append(event)
        self._enqueued += 1
        self._table.cond.notify_all()

    def _flush_due_progress(self) -> float | None:
        """Queue throttled progress that has fallen due (lock held); return how long until
        the next one falls due, None if nothing is pending."""
        now = self._monotonic()
        wait: float | None = None
        for record in self._table.records.values():
            if not record.progress_dirty:
                continue
            if now >= record.next_progress_due:
                record.progress_dirty = False
                record.next_progress_due = now + self._throttle
                self._enqueue(JobEvent("progress", self._table.snapshot(record)))
            else:
                remaining = record.next_progress_due - now
                wait = remaining if wait is None else min(wait, remaining)
        return wait

    def _notify_loop(self) -> None:
        while True:
            with self._table.cond:
                while not self._events:
                    if self._stop_notifier:
                        return
                    wait = self._flush_due_progress()
                    if self._events:
                        break
                    # Bounded by the throttle interval in real time, so an injected
                    # monotonic clock that never moves cannot stall the loop.
                    self._table.cond.wait(None if wait is None else min(max(wait, 0.001), self._throttle))
                batch = list(self._events)
                self._events.clear()
                subscribers = list(self._subscribers)
            for event in batch:
                for callback in subscribers:
                    try:
                        callback(event)
                    except Exception:
                        log.exception("a job event subscriber failed (ignored)")
            with self._table.cond:
                self._delivered += len(batch)
                self._table.cond.notify_all()
