"""Headless runs: ``run_job_blocking`` waits for a submitted job for the CLI (cron runs and
console runs write the same journal and audit entries), cancelling it on Ctrl-C, SIGTERM, SIGHUP."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, TextIO

from hvtui.events import ProgressCallback
from hvtui.jobs.manager import JobManager
from hvtui.jobs.model import Job, JobEvent, JobState
from hvtui.jobs.outcome import exit_code_for
from hvtui.text import display_text


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
        print(display_text(f"hvtui: {prefix}: {final.error}"), file=error_stream)
    elif final.state is JobState.CANCELLED and error_stream is not None:
        print(display_text(f"hvtui: {final.title} cancelled"), file=error_stream)
    return exit_code_for(final)
