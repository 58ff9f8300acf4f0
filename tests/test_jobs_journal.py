"""The job journal across processes: a job killed with SIGKILL is offered for resuming on
the next start and resumes to a correct result; damaged journal lines are tolerated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hvtui.jobs import JobError, JobManager, JobState
from hvtui.journal import JobJournal, process_identity

sys.path.insert(0, str(Path(__file__).parent))
from test_jobs import COPY_KIND, DEADLINE, _wait_for, make_source  # noqa: E402

CHUNK = 64 * 1024

# The "console" that gets killed: it starts a copy job through the manager and waits.
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import test_jobs
    from hvtui.jobs import JobManager, run_job_blocking

    test_jobs.PAUSE = ({pause_at}, Path({marker!r}))
    manager = JobManager(Path({journal!r}), max_concurrent=1)
    manager.register_kind(test_jobs.COPY_KIND)
    job = manager.submit("copy", "hv1", "vm-1", "web01", {params!r})
    print(job.id, flush=True)
    if {blocking!r}:
        sys.exit(run_job_blocking(manager, job, None))
    manager.wait(job.id)
    """
)


def start_killable_copy(
    tmp_path: Path, journal: Path, pause_at: int, blocking: bool = False
) -> tuple[subprocess.Popen[str], str, dict[str, str | int]]:
    src, dst = tmp_path / "disk.vhdx", tmp_path / "restored" / "disk.vhdx"
    dst.parent.mkdir(exist_ok=True)
    marker = tmp_path / "paused"
    params: dict[str, str | int] = {"src": str(src), "dst": str(dst), "chunk": CHUNK}
    script = CHILD.format(tests=str(Path(__file__).parent), pause_at=pause_at, marker=str(marker), journal=str(journal), params=params, blocking=blocking)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    job_id = child.stdout.readline().strip()
    assert job_id, "the child process did not start its job"
    assert _wait_for(marker.exists), "the child's job never reached its pause point"
    return child, job_id, params


def test_job_killed_with_sigkill_is_interrupted_and_resumes_correctly(tmp_path: Path) -> None:
    journal = tmp_path / "state" / "jobs.jsonl"
    source = make_source(tmp_path / "disk.vhdx", 10 * CHUNK + 1234)
    child, job_id, params = start_killable_copy(tmp_path, journal, pause_at=6)
    dst = Path(str(params["dst"]))

    # While its process lives, the job is not "interrupted": another hvtui is running it.
    watcher = JobManager(journal)
    try:
        assert watcher.interrupted_jobs() == []
        (live,) = [job for job in watcher.history() if job.id == job_id]
        assert live.state is JobState.RUNNING and live.owner_pid == child.pid
        with pytest.raises(JobError, match="not interrupted"):
            watcher.resume(job_id)
    finally:
        watcher.shutdown(cancel_running=True)

    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(DEADLINE) == -signal.SIGKILL
    # What a kill leaves behind: a partial file and the run's lock (like a checkpoint).
    assert not dst.exists()
    assert Path(str(dst) + ".part").stat().st_size == 6 * CHUNK
    assert Path(str(dst) + ".lock").exists()

    manager = JobManager(journal)
    try:
        manager.register_kind(COPY_KIND)
        (interrupted,) = manager.interrupted_jobs()
        assert interrupted.id == job_id and interrupted.state is JobState.INTERRUPTED
        assert (interrupted.kind, interrupted.host, interrupted.vm_name, dict(interrupted.params)) == ("copy", "hv1", "web01", params)
        assert interrupted.started is not None and interrupted.finished is None
        assert interrupted.owner_pid == child.pid

        resumed = manager.resume(job_id[:4])
        assert resumed.resumed_from == job_id and resumed.id != job_id
        done = manager.wait(resumed.id, DEADLINE)
        assert done.state is JobState.SUCCEEDED, done.error
        assert dst.read_bytes() == source
        # The resume reused what the killed run had already written.
        assert done.summary == {"chunks_written": 5, "chunks_reused": 6, "bytes": len(source)}
        assert not Path(str(dst) + ".lock").exists()  # before_resume removed the stale lock

        assert manager.interrupted_jobs() == []
        old = {job.id: job for job in manager.history()}[job_id]
        assert old.state is JobState.INTERRUPTED and old.resumed_by == resumed.id
        with pytest.raises(JobError, match="already resumed"):
            manager.resume(job_id)
    finally:
        manager.shutdown(cancel_running=True)


def test_sigterm_cancels_a_blocking_headless_job_cleanly(tmp_path: Path) -> None:
    """A cron run stopped with SIGTERM (or an SSH session dropped: SIGHUP) cancels its job,
    lets it clean up, journals it as cancelled and exits 130 — nothing left to resume."""
    journal = tmp_path / "jobs.jsonl"
    make_source(tmp_path / "disk.vhdx", 8 * CHUNK)
    child, job_id, params = start_killable_copy(tmp_path, journal, pause_at=3, blocking=True)
    os.kill(child.pid, signal.SIGTERM)
    assert child.wait(DEADLINE) == 130
    dst = Path(str(params["dst"]))
    assert not Path(str(dst) + ".part").exists() and not Path(str(dst) + ".lock").exists()
    finals = [json.loads(line) for line in journal.read_text().splitlines() if '"finished"' in line]
    assert [(r["job"], r["state"]) for r in finals] == [(job_id, "cancelled")]
    manager = JobManager(journal)
    try:
        assert manager.interrupted_jobs() == []
    finally:
        manager.shutdown(cancel_running=True)


def test_a_job_killed_before_it_started_is_interrupted_too(tmp_path: Path) -> None:
    journal = tmp_path / "jobs.jsonl"
    dead_pid = _dead_pid()
    writer = JobJournal(journal)
    writer.append("submitted", "feedbeef", at="2026-11-24T12:00:00+00:00", kind="copy", host="hv2", vm_id="vm-2", vm_name="db01",
                  params={"src": "a", "dst": "b", "chunk": 1}, pid=dead_pid, proc_start="1")
    manager = JobManager(journal)
    try:
        (job,) = manager.interrupted_jobs()
        assert job.id == "feedbeef" and job.started is None
        assert "before it started" in job.log[0]
        with pytest.raises(JobError, match="does not know how to run a 'copy' job"):
            manager.resume("feedbeef")
        dismissed = manager.dismiss_interrupted("feed")
        assert dismissed.dismissed
        assert manager.interrupted_jobs() == []
        with pytest.raises(JobError, match="dismissed"):
            manager.dismiss_interrupted("feedbeef")
    finally:
        manager.shutdown(cancel_running=True)


def test_damaged_journal_lines_are_reported_and_the_rest_kept(tmp_path: Path) -> None:
    journal = tmp_path / "jobs.jsonl"
    writer = JobJournal(journal)
    common = {"host": "hv1", "vm_id": "vm-1", "vm_name": "web01", "params": {"mode": "full"}, "pid": _dead_pid(), "proc_start": "1"}
    writer.append("submitted", "aaaa0001", at="2026-11-24T10:00:00+00:00", kind="backup", **common)
    writer.append("started", "aaaa0001", at="2026-11-24T10:00:01+00:00", pid=common["pid"], proc_start="1")
    with open(journal, "ab") as out:
        out.write(b"\x00\x00garbage from a bad disk sector\n")
    writer.append("submitted", "bbbb0002", at="2026-11-24T11:00:00+00:00", kind="backup", **common)
    writer.append("finished", "bbbb0002", at="2026-11-24T11:05:00+00:00", state="succeeded", summary={"points": 1})
    writer.append("submitted", "cccc0003", at="2026-11-24T12:00:00+00:00", kind="backup", **common)
    with open(journal, "ab") as out:  # killed mid-write: half a record, no newline
        out.write(b'{"v":1,"event":"finished","job":"cccc0003","at":"2026-11-24T12:0')

    manager = JobManager(journal)
    try:
        interrupted = manager.interrupted_jobs()
        assert sorted(job.id for job in interrupted) == ["aaaa0001", "cccc0003"]
        problems = manager.journal_problems
        assert [(p.line, p.reason) for p in problems] == [
            (3, "not valid JSON"),
            (7, "truncated last line (a process was killed while writing it)"),
        ]
        history = {job.id: job for job in manager.history()}
        assert history["bbbb0002"].state is JobState.SUCCEEDED and history["bbbb0002"].summary == {"points": 1}

        # The next record starts on a fresh line: the damage stays confined to its line.
        manager.dismiss_interrupted("cccc0003")
        lines = journal.read_bytes().split(b"\n")
        assert json.loads(lines[-2])["event"] == "dismissed"
        assert [job.id for job in manager.interrupted_jobs()] == ["aaaa0001"]
        assert len(manager.journal_problems) == 2
    finally:
        manager.shutdown(cancel_running=True)


def test_compaction_keeps_unfinished_jobs(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "jobs.jsonl")
    base = {"host": "hv1", "vm_id": None, "vm_name": None, "params": {}, "pid": _dead_pid(), "proc_start": "1"}
    for index in range(10):
        journal.append("submitted", f"job{index}", at=f"2026-11-24T10:00:{index:02d}+00:00", kind="x", **base)
        if index != 3:
            journal.append("finished", f"job{index}", state="succeeded", summary={})
    assert journal.compact(keep_finished=2) == 7
    entries = journal.read().entries
    assert list(entries) == ["job3", "job8", "job9"]
    assert not entries["job3"].is_finished


def test_process_identity_tells_reused_pids_apart() -> None:
    from hvtui.journal import process_alive

    me = os.getpid()
    assert process_alive(me, process_identity(me))
    assert not process_alive(me, "not-my-start-time")
    assert not process_alive(_dead_pid(), None)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
