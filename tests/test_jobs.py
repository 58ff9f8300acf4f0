"""The job manager with real job functions: limits, cancel, failures, retry, throttling, journal.

The job functions here do real work (copy real files in steps) and use events and
barriers to observe how many run at once; waits carry generous deadlines that only
guard against a hang, never measure speed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hvtui.errors import Cancelled, RefusedError, RepositoryError
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.jobs import Job, JobError, JobEvent, JobKind, JobManager, JobState, RunFn, exit_code_for, run_job_blocking

DEADLINE = 30.0  # seconds; a hang guard, not a timing assertion

# -- a real job: copy a file in chunks, honour cancel, reuse what a killed run already wrote --

# Set by a test (or the subprocess of the kill test): (chunk index, marker path).  The copy
# writes the marker when it reaches that chunk, then blocks until cancelled or killed.
PAUSE: tuple[int, Path] | None = None


def copy_run(params: dict[str, Any]) -> RunFn:
    """Copy ``src`` to ``dst`` through ``dst.part``, ``chunk`` bytes a step.

    Like a backup: a lock file marks the run (a killed run leaves it behind, as a killed
    backup leaves its checkpoint); chunks already in ``dst.part`` with the right bytes are
    kept, not rewritten (as the repository reuses stored chunks); cancelling removes the
    partial file and the lock.
    """
    src, dst, chunk = Path(params["src"]), Path(params["dst"]), int(params["chunk"])
    part, lock = dst.with_name(dst.name + ".part"), dst.with_name(dst.name + ".lock")

    def run(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise RefusedError(f"{lock} exists: another copy is running, or a killed one left it") from None
        os.close(fd)
        written = reused = 0
        try:
            total = src.stat().st_size
            with open(src, "rb") as source, open(part, "r+b" if part.exists() else "w+b") as out:
                index = 0
                while True:
                    cancel.check()
                    if PAUSE is not None and index == PAUSE[0]:
                        PAUSE[1].write_text(str(os.getpid()))
                        while not cancel.wait(0.05):
                            pass
                        cancel.check()
                    data = source.read(chunk)
                    if not data:
                        break
                    out.seek(index * chunk)
                    if out.read(len(data)) == data:
                        reused += 1
                    else:
                        out.seek(index * chunk)
                        out.write(data)
                        out.flush()
                        os.fsync(out.fileno())
                        written += 1
                    index += 1
                    progress(Progress("copy", f"chunk {index}", current=src.name, done=min(total, index * chunk), total=total))
                out.truncate(total)
            os.replace(part, dst)
        except BaseException:
            if cancel.cancelled:
                part.unlink(missing_ok=True)
            raise
        finally:
            lock.unlink(missing_ok=True)
        progress(Progress("done", "copied", done=total, total=total))
        return {"chunks_written": written, "chunks_reused": reused, "bytes": total}

    return run


def remove_stale_lock(job: Job) -> None:
    Path(job.params["dst"] + ".lock").unlink(missing_ok=True)


COPY_KIND = JobKind("copy", build=lambda job: copy_run(dict(job.params)), before_resume=remove_stale_lock)


def make_source(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


# -- observing concurrency ------------------------------------------------------------------------


class Gate:
    """Job functions that record how many run at once and block until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: Counter[str] = Counter()
        self.max_total = 0
        self.max_per_host: Counter[str] = Counter()
        self.started: dict[str, threading.Event] = {}
        self.release: dict[str, threading.Event] = {}
        self.order: list[str] = []

    def job(self, name: str, host: str, barrier: threading.Barrier | None = None) -> RunFn:
        self.started[name] = threading.Event()
        self.release[name] = threading.Event()

        def run(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
            with self.lock:
                self.running[host] += 1
                self.order.append(name)
                self.max_total = max(self.max_total, sum(self.running.values()))
                self.max_per_host[host] = max(self.max_per_host[host], self.running[host])
            try:
                self.started[name].set()
                if barrier is not None:
                    barrier.wait(DEADLINE)  # proves these jobs really run at the same time
                while not self.release[name].wait(0.02):
                    cancel.check()
                return {"name": name}
            finally:
                with self.lock:
                    self.running[host] -= 1

        return run


def states(manager: JobManager) -> dict[str, JobState]:
    return {job.vm_name or job.id: job.state for job in manager.jobs()}


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "state" / "jobs.jsonl"


@pytest.fixture
def make_manager(journal: Path):
    managers: list[JobManager] = []

    def make(**kwargs: Any) -> JobManager:
        manager = JobManager(kwargs.pop("journal_path", journal), **kwargs)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.shutdown(cancel_running=True, timeout=DEADLINE)


# -- limits ----------------------------------------------------------------------------------------


def test_global_and_per_host_limits_hold(make_manager: Callable[..., JobManager]) -> None:
    manager = make_manager(max_concurrent=2, per_host=1)
    gate = Gate()
    jobs = {}
    for name, host in (("a1", "hvA"), ("a2", "hvA"), ("b1", "hvB"), ("c1", "hvC")):
        jobs[name] = manager.submit("test", host, f"id-{name}", name, {}, gate.job(name, host))

    # a2 waits for its host, c1 for a global slot.
    assert states(manager) == {"a1": "running", "a2": "queued", "b1": "running", "c1": "queued"}
    assert manager.running_count == 2 and manager.queued_count == 2
    assert gate.started["a1"].wait(DEADLINE) and gate.started["b1"].wait(DEADLINE)

    gate.release["a1"].set()
    assert manager.wait(jobs["a1"].id, DEADLINE).state is JobState.SUCCEEDED
    # a1's slot goes to a2 (first in line, and its host is now free); c1 still waits.
    assert states(manager) == {"a1": "succeeded", "a2": "running", "b1": "running", "c1": "queued"}

    gate.release["b1"].set()
    assert manager.wait(jobs["b1"].id, DEADLINE).state is JobState.SUCCEEDED
    assert states(manager)["c1"] is JobState.RUNNING
    gate.release["a2"].set()
    gate.release["c1"].set()
    for job in jobs.values():
        assert manager.wait(job.id, DEADLINE).state is JobState.SUCCEEDED
    assert gate.max_total == 2
    assert max(gate.max_per_host.values()) == 1
    assert gate.order == ["a1", "b1", "a2", "c1"]
    assert manager.running_count == 0


def test_per_host_limit_above_one_runs_jobs_together(make_manager: Callable[..., JobManager]) -> None:
    manager = make_manager(max_concurrent=3, per_host=2)
    gate = Gate()
    together = threading.Barrier(3)  # a1, a2 and b1 must all be running at once to pass
    submitted = [
        manager.submit("test", "hvA", "1", "a1", {}, gate.job("a1", "hvA", together)),
        manager.submit("test", "hvA", "2", "a2", {}, gate.job("a2", "hvA", together)),
        manager.submit("test", "hvA", "3", "a3", {}, gate.job("a3", "hvA")),
        manager.submit("test", "hvB", "4", "b1", {}, gate.job("b1", "hvB", together)),
    ]
    assert states(manager) == {"a1": "running", "a2": "running", "a3": "queued", "b1": "running"}
    for name in ("a1", "a2", "b1"):
        assert gate.started[name].wait(DEADLINE)
    for event in gate.release.values():
        event.set()
    for job in submitted:
        assert manager.wait(job.id, DEADLINE).state is JobState.SUCCEEDED, manager.job(job.id).error
    assert gate.max_total == 3
    assert gate.max_per_host["hvA"] == 2


# -- cancel, failure, retry ----------------------------------------------------------------------------


def test_cancel_running_job_runs_its_cleanup(make_manager: Callable[..., JobManager], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = tmp_path / "disk.vhdx", tmp_path / "out" / "disk.vhdx"
    dst.parent.mkdir()
    make_source(src, 256 * 1024)
    marker = tmp_path / "paused"
    monkeypatch.setattr(sys.modules[__name__], "PAUSE", (2, marker))
    manager = make_manager()
    manager.register_kind(COPY_KIND)
    seen: list[JobEvent] = []
    manager.subscribe(seen.append)
    job = manager.submit("copy", "hv1", "vm-1", "web01", {"src": str(src), "dst": str(dst), "chunk": 65536})

    deadline_hit = not _wait_for(marker.exists)
    assert not deadline_hit, "the copy never reached its pause point"
    assert Path(str(dst) + ".part").exists() and Path(str(dst) + ".lock").exists()

    after_request = manager.cancel(job.id)
    assert after_request.state is JobState.RUNNING and after_request.cancel_requested
    final = manager.wait(job.id, DEADLINE)
    assert final.state is JobState.CANCELLED
    assert final.error is None
    # The job's own clean-up ran: no partial file, no lock, no half result.
    assert not Path(str(dst) + ".part").exists()
    assert not Path(str(dst) + ".lock").exists()
    assert not dst.exists()
    assert any("cancel requested" in line for line in final.log)
    manager.flush_events(DEADLINE)
    job_states = [e.job.state for e in seen if e.type == "state" and e.job.id == job.id]
    assert job_states[0] is JobState.QUEUED and job_states[-1] is JobState.CANCELLED
    assert any(e.job.cancel_requested and e.job.state is JobState.RUNNING for e in seen if e.type == "state")


def test_cancel_queued_job_never_runs_it(make_manager: Callable[..., JobManager]) -> None:
    manager = make_manager(max_concurrent=1)
    gate = Gate()
    first = manager.submit("test", "hv1", "1", "first", {}, gate.job("first", "hv1"))
    second = manager.submit("test", "hv2", "2", "second", {}, gate.job("second", "hv2"))
    assert manager.job(second.id).state is JobState.QUEUED
    assert manager.cancel(second.id).state is JobState.CANCELLED
    gate.release["first"].set()
    assert manager.wait(first.id, DEADLINE).state is JobState.SUCCEEDED
    assert manager.wait(second.id, DEADLINE).state is JobState.CANCELLED
    assert "second" not in gate.order
    assert manager.job(second.id).started is None


def test_failure_carries_the_reason_in_plain_words(make_manager: Callable[..., JobManager]) -> None:
    manager = make_manager(max_concurrent=3, per_host=3)

    def disk_full(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        with open("/dev/full", "wb", buffering=0) as out:  # a real ENOSPC from the kernel
            out.write(b"x" * 4096)
        return {}

    def repository_damaged(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        raise RepositoryError("chunk 3f2a… is missing from repository 'default'")

    def bug(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        return {"ratio": 1 / 0}

    full = manager.wait(manager.submit("test", "hv1", "1", "a", {}, disk_full).id, DEADLINE)
    damaged = manager.wait(manager.submit("test", "hv1", "2", "b", {}, repository_damaged).id, DEADLINE)
    crashed = manager.wait(manager.submit("test", "hv1", "3", "c", {}, bug).id, DEADLINE)

    assert full.state is JobState.FAILED
    assert full.error == "No space left on device" and full.error_kind == "failed"
    assert damaged.error == "chunk 3f2a… is missing from repository 'default'"
    assert damaged.error_kind == "repository"
    assert crashed.error == "unexpected error: ZeroDivisionError: division by zero"
    assert crashed.error_kind == "unexpected"
    assert any("failed: No space left on device" in line for line in full.log)
    assert exit_code_for(full) == 1


def test_refused_job_maps_to_the_refused_exit_code(make_manager: Callable[..., JobManager]) -> None:
    manager = make_manager()

    def refuse(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        raise RefusedError("restoring over web01 needs it switched off")

    job = manager.wait(manager.submit("restore", "hv1", "1", "web01", {}, refuse).id, DEADLINE)
    assert job.error_kind == "refused" and exit_code_for(job) == 4


def test_retry_runs_the_job_again_as_a_new_job(make_manager: Callable[..., JobManager], tmp_path: Path) -> None:
    manager = make_manager()
    attempts: list[int] = []

    def flaky(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError(5, "Input/output error", "/repo/chunks/ab")
        return {"attempt": len(attempts)}

    first = manager.wait(manager.submit("test", "hv1", "vm-1", "web01", {"mode": "full"}, flaky).id, DEADLINE)
    assert first.state is JobState.FAILED and first.error == "Input/output error: /repo/chunks/ab"
    retried = manager.retry(first.id[:5])  # a unique prefix is enough
    assert retried.id != first.id and retried.retry_of == first.id
    assert (retried.kind, retried.host, retried.vm_id, retried.vm_name, retried.mode) == ("test", "hv1", "vm-1", "web01", "full")
    done = manager.wait(retried.id, DEADLINE)
    assert done.state is JobState.SUCCEEDED and done.summary == {"attempt": 2}
    assert manager.job(first.id).state is JobState.FAILED  # the original keeps its outcome


def test_retry_refuses_an_unfinished_job(make_manager: Callable[..., JobManager]) -> None:
    manager = make_manager()
    gate = Gate()
    job = manager.submit("test", "hv1", "1", "a", {}, gate.job("a", "hv1"))
    with pytest.raises(JobError, match="still running"):
        manager.retry(job.id)
    gate.release["a"].set()
    manager.wait(job.id, DEADLINE)


def test_retry_from_the_journal_in_a_new_process(make_manager: Callable[..., JobManager], tmp_path: Path) -> None:
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    data = make_source(src, 100_000)
    params = {"src": str(src), "dst": str(dst), "chunk": 30_000}
    first = make_manager()
    first.register_kind(COPY_KIND)
    dst.with_name("dst.bin.lock").write_text("left behind")  # makes the first run fail
    failed = first.wait(first.submit("copy", "hv1", "vm-1", "web01", params).id, DEADLINE)
    assert failed.state is JobState.FAILED and "another copy is running" in (failed.error or "")
    first.shutdown(cancel_running=False, timeout=DEADLINE)

    dst.with_name("dst.bin.lock").unlink()
    second = make_manager()
    second.register_kind(COPY_KIND)
    retried = second.retry(failed.id)
    assert second.wait(retried.id, DEADLINE).state is JobState.SUCCEEDED
    assert dst.read_bytes() == data


# -- events and throttling -------------------------------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chatty(count: int, clock: FakeMonotonic, step: float) -> RunFn:
    def run(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        for index in range(count):
            clock.now += step
            progress(Progress("backup", done=index + 1, total=count, current=f"block {index}"))
        return {"events": count}

    return run


def test_progress_is_throttled_but_final_progress_and_states_arrive(make_manager: Callable[..., JobManager]) -> None:
    clock = FakeMonotonic()
    manager = make_manager(throttle_seconds=0.25, monotonic=clock)
    events: list[JobEvent] = []
    manager.subscribe(events.append)
    # 10,000 events over 10 s of (fake) job time: at most one delivery per 0.25 s.
    job = manager.submit("test", "hv1", "1", "a", {}, chatty(10_000, clock, 0.001))
    assert manager.wait(job.id, DEADLINE).state is JobState.SUCCEEDED
    assert manager.flush_events(DEADLINE)

    mine = [e for e in events if e.job.id == job.id]
    progress = [e for e in mine if e.type == "progress"]
    assert 2 <= len(progress) <= 10 / 0.25 + 2
    assert [e.job.state for e in mine if e.type == "state"] == [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED]
    # The last progress delivered is the last one emitted, and it precedes the final state.
    assert progress[-1].job.progress is not None and progress[-1].job.progress.done == 10_000
    assert mine.index(progress[-1]) < len(mine) - 1 and mine[-1].type == "state"
    # Deliveries are spaced by the interval in job time.
    dones = [e.job.progress.done for e in progress[:-1] if e.job.progress]
    assert all(b - a >= 250 for a, b in zip(dones, dones[1:], strict=False))


def test_burst_without_time_passing_delivers_first_and_last(make_manager: Callable[..., JobManager]) -> None:
    clock = FakeMonotonic()
    manager = make_manager(monotonic=clock)
    events: list[JobEvent] = []
    manager.subscribe(events.append)
    job = manager.submit("test", "hv1", "1", "a", {}, chatty(10_000, clock, 0.0))
    manager.wait(job.id, DEADLINE)
    manager.flush_events(DEADLINE)
    progress = [e.job.progress.done for e in events if e.type == "progress" and e.job.progress]
    assert progress == [1, 10_000]


def test_pending_progress_is_delivered_while_a_job_stalls(make_manager: Callable[..., JobManager]) -> None:
    clock = FakeMonotonic()
    manager = make_manager(throttle_seconds=0.25, monotonic=clock)
    delivered_second = threading.Event()

    def on_event(event: JobEvent) -> None:
        if event.type == "progress" and event.job.progress and event.job.progress.done == 2:
            delivered_second.set()

    manager.subscribe(on_event)

    def stalling(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        progress(Progress("scan", done=1, total=10))  # delivered at once
        progress(Progress("scan", done=2, total=10))  # throttled
        clock.now += 1.0  # its turn comes while the job emits nothing more
        if not delivered_second.wait(DEADLINE):
            raise AssertionError("the throttled progress was never delivered during the stall")
        return {}

    job = manager.submit("test", "hv1", "1", "a", {}, stalling)
    assert manager.wait(job.id, DEADLINE).state is JobState.SUCCEEDED


def test_failing_subscriber_does_not_stop_others(make_manager: Callable[..., JobManager]) -> None:
    manager = make_manager()
    received: list[JobEvent] = []

    def broken(event: JobEvent) -> None:
        raise RuntimeError("console went away")

    manager.subscribe(broken)
    unsubscribe = manager.subscribe(received.append)
    job = manager.submit("test", "hv1", "1", "a", {}, lambda progress, cancel: {"ok": True})
    manager.wait(job.id, DEADLINE)
    manager.flush_events(DEADLINE)
    assert [e.job.state for e in received if e.type == "state"][-1] is JobState.SUCCEEDED
    unsubscribe()
    count = len(received)
    manager.wait(manager.submit("test", "hv1", "2", "b", {}, lambda progress, cancel: {}).id, DEADLINE)
    manager.flush_events(DEADLINE)
    assert len(received) == count


def test_log_lines_are_bounded(make_manager: Callable[..., JobManager]) -> None:
    manager = make_manager(log_lines=50)

    def talkative(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        for index in range(500):
            progress(Progress(f"phase-{index}", message=f"step {index}"))
        return {}

    job = manager.wait(manager.submit("test", "hv1", "1", "a", {}, talkative).id, DEADLINE)
    assert len(job.log) == 50
    assert job.log[-1].endswith("succeeded") and "phase-499: step 499" in job.log[-2]


# -- the journal -----------------------------------------------------------------------------------------------


def read_journal(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_journal_records_submission_start_and_finish(make_manager: Callable[..., JobManager], journal: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "a.bin", tmp_path / "b.bin"
    make_source(src, 50_000)
    manager = make_manager()
    manager.register_kind(COPY_KIND)
    params = {"src": str(src), "dst": str(dst), "chunk": 16_384}
    job = manager.wait(manager.submit("copy", "hv1", "vm-7", "db01", params).id, DEADLINE)
    assert job.state is JobState.SUCCEEDED

    records = [r for r in read_journal(journal) if r["job"] == job.id]
    assert [r["event"] for r in records] == ["submitted", "started", "finished"]
    submitted, started, finished = records
    assert (submitted["kind"], submitted["host"], submitted["vm_id"], submitted["vm_name"]) == ("copy", "hv1", "vm-7", "db01")
    assert submitted["params"] == params
    assert submitted["pid"] == os.getpid() == started["pid"]
    assert finished["state"] == "succeeded"
    assert finished["summary"] == {"chunks_written": 4, "chunks_reused": 0, "bytes": 50_000}
    assert manager.interrupted_jobs() == []


def test_journal_records_failure_and_cancel(make_manager: Callable[..., JobManager], journal: Path) -> None:
    manager = make_manager(max_concurrent=1)
    gate = Gate()
    blocker = manager.submit("test", "hv1", "1", "a", {}, gate.job("a", "hv1"))
    queued = manager.submit("test", "hv1", "2", "b", {}, gate.job("b", "hv1"))
    manager.cancel(queued.id)
    manager.cancel(blocker.id)
    manager.wait(blocker.id, DEADLINE)

    def fail(progress: ProgressCallback, cancel: CancelToken) -> dict[str, Any]:
        raise Cancelled("never mind") if cancel.cancelled else RepositoryError("repository 'offsite' is locked by prune")

    failed = manager.wait(manager.submit("test", "hv1", "3", "c", {}, fail).id, DEADLINE)
    finals = {r["job"]: r for r in read_journal(journal) if r["event"] == "finished"}
    assert finals[blocker.id]["state"] == "cancelled"
    assert finals[queued.id]["state"] == "cancelled"
    assert finals[failed.id]["state"] == "failed"
    assert finals[failed.id]["error"] == "repository 'offsite' is locked by prune"
    history = {job.id: job for job in make_manager().history()}
    assert history[failed.id].state is JobState.FAILED and history[failed.id].error == finals[failed.id]["error"]


def test_shutdown_cancels_queued_and_optionally_running(make_manager: Callable[..., JobManager]) -> None:
    manager = make_manager(max_concurrent=1)
    gate = Gate()
    running = manager.submit("test", "hv1", "1", "a", {}, gate.job("a", "hv1"))
    queued = manager.submit("test", "hv1", "2", "b", {}, gate.job("b", "hv1"))
    assert gate.started["a"].wait(DEADLINE)
    assert manager.active_count == 2
    assert manager.shutdown(cancel_running=True, timeout=DEADLINE)
    assert manager.job(running.id).state is JobState.CANCELLED
    assert manager.job(queued.id).state is JobState.CANCELLED
    with pytest.raises(JobError, match="shut down"):
        manager.submit("test", "hv1", "3", "c", {}, gate.job("c", "hv1"))


def test_run_job_blocking_prints_progress_and_returns_exit_codes(make_manager: Callable[..., JobManager], tmp_path: Path) -> None:
    import io

    src, dst = tmp_path / "a.bin", tmp_path / "b.bin"
    make_source(src, 70_000)
    manager = make_manager(throttle_seconds=0)
    manager.register_kind(COPY_KIND)
    printed: list[Progress] = []
    job = manager.submit("copy", "hv1", "vm-1", "web01", {"src": str(src), "dst": str(dst), "chunk": 10_000})
    assert run_job_blocking(manager, job, printed.append, error_stream=None) == 0
    assert [p.done for p in printed if p.phase == "copy"] == [10_000 * i for i in range(1, 7)] + [70_000]
    assert printed[-1].phase == "done"

    errors = io.StringIO()
    failing = manager.submit("copy", "hv1", "vm-1", "web01", {"src": str(tmp_path / "missing"), "dst": str(dst), "chunk": 10})
    assert run_job_blocking(manager, failing, None, error_stream=errors) == 1
    assert errors.getvalue().startswith("hvtui: error: No such file or directory: ")


def test_run_job_blocking_ends_the_progress_line_before_the_failure_reason(
    make_manager: Callable[..., JobManager], tmp_path: Path
) -> None:
    import io

    from hvtui.commands.progress import ProgressLine

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    src, dst = tmp_path / "a.bin", tmp_path / "taken"
    make_source(src, 70_000)
    dst.mkdir()
    (dst / "keep").write_text("a non-empty directory: the copy runs, then its final rename fails")
    manager = make_manager(throttle_seconds=0)
    manager.register_kind(COPY_KIND)
    terminal = Terminal()  # progress and errors on one terminal, as on stderr
    failing = manager.submit("copy", "hv1", "vm-1", "web01", {"src": str(src), "dst": str(dst), "chunk": 10_000})
    assert run_job_blocking(manager, failing, ProgressLine(terminal), error_stream=terminal) == 1
    out = terminal.getvalue()
    assert "\r\x1b[Kcopy" in out  # the progress line was drawn
    assert "\nhvtui: error: " in out and out.index("hvtui: error: ") > out.rindex("\r")  # on a line of its own


def _wait_for(predicate: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    event = threading.Event()
    while not predicate():
        if event.wait(0.01) or timeout <= 0:
            return False
        timeout -= 0.01
    return True
