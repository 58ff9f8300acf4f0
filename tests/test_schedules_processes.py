"""``run-due`` in real processes: two at once never run the same backup twice (the second exits
at once, with its own exit code, through the real CLI), and one killed with SIGKILL half-way
through a run is continued by the next, which backs up only what the killed one had not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from schedule_support import HOST, berlin, make_core, make_lab, schedule
from test_jobs import DEADLINE, _wait_for

from hvtui.clock import FixedClock
from hvtui.errors import EXIT_BUSY
from hvtui.hosts.lab.host import LabHost
from hvtui.paths import Paths
from hvtui.schedules.journal import ScheduleJournal

TESTS_DIR = Path(__file__).parent
SLOT_TIME = (2026, 11, 23, 22, 1)

# A run-due in a child process on the fake clock: the backup of VM {block_vm!r}, in its data phase,
# writes the marker once the journal holds {after_results} VM result(s) of this run, then waits for the
# file {go!r} (forever when there is none: the parent kills the process there).
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from dataclasses import asdict
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from hvtui.clock import FixedClock
    from hvtui.jobs import JobKind
    from hvtui.paths import Paths
    from schedule_support import berlin, make_core, schedule

    clock = FixedClock(berlin(*{when!r}))
    core = make_core(Path({root!r}), Paths.default(), (schedule(),), clock)
    real = core.jobs.kind("backup")
    journal = Path(Paths.default().schedule_journal)

    def results():
        return journal.read_text().count('"type":"vm"') if journal.exists() else 0

    def build(job):
        run = real.build(job)

        def held(progress, cancel):
            def on_progress(event):
                # Mid-backup: its Recovery checkpoint is taken, data is being read.
                if job.vm_name == {block_vm!r} and event.phase == "backup":
                    while results() < {after_results}:
                        time.sleep(0.01)
                    Path({marker!r}).write_text(job.vm_name)
                    while not Path({go!r}).exists():
                        time.sleep(0.01)
                progress(event)

            return run(on_progress, cancel)

        return held

    core.jobs.register_kind(JobKind("backup", build=build, before_resume=real.before_resume))
    print(json.dumps([asdict(r) for r in core.schedules.run_due().reports]), flush=True)
    core.close()
    """
)


@pytest.fixture(autouse=True)
def berlin_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")


def start_child(root: Path, block_vm: str, marker: Path, go: Path, after_results: int = 0, when: tuple[int, ...] = SLOT_TIME) -> subprocess.Popen[str]:
    script = CHILD.format(
        tests=str(TESTS_DIR), root=str(root), block_vm=block_vm, marker=str(marker), go=str(go),
        after_results=after_results, when=when,
    )  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_config(root: Path) -> Path:
    config = root / "config.yaml"
    config.write_text(
        f"hosts:\n  - {{name: {HOST}, kind: lab}}\nlab: {{dir: {root}}}\n"
        f"repositories:\n  - {{name: default, path: {root / 'repo'}, default: true}}\n"
        f"schedules:\n  - {{name: nightly, vms: ['{HOST}/*'], at: '22:00', window: 2h}}\n",
        encoding="utf-8",
    )
    return config


def test_a_second_run_due_exits_at_once_and_no_backup_runs_twice(tmp_path: Path, paths: Paths) -> None:
    ids = make_lab(tmp_path, ("vm1", "vm2"))
    marker, go = tmp_path / "holding", tmp_path / "go"
    first = start_child(tmp_path, "vm1", marker, go)
    try:
        assert _wait_for(lambda: marker.exists() or first.poll() is not None), "the first run-due did not start its backup"
        assert marker.exists(), first.stderr.read() if first.stderr else first.poll()
        # The real CLI, while the first one is mid-backup: it exits at once, running nothing.
        second = subprocess.run(
            [sys.executable, "-m", "hvtui", "--config", str(write_config(tmp_path)), "schedule", "run-due"],
            capture_output=True, text=True, timeout=DEADLINE, env={**os.environ},
        )  # fmt: skip
        assert second.returncode == EXIT_BUSY, second.stderr
        assert "another hvtui schedule run is in progress (pid " in second.stderr
        assert "this one exits without running anything" in second.stderr and second.stdout == ""
        go.write_text("go")
        out, err = first.communicate(timeout=DEADLINE)
    finally:
        first.kill()
        first.wait(DEADLINE)
    assert first.returncode == 0, err
    (report,) = json.loads(out)
    assert report["event"] == "success" and sorted(r["vm"] for r in report["results"]) == ["vm1", "vm2"]
    # A third, on the same fake clock after the first ended: the slot is done, nothing runs.
    third = start_child(tmp_path, "none", tmp_path / "unused", go)
    out, err = third.communicate(timeout=DEADLINE)
    assert third.returncode == 0, err
    assert json.loads(out) == []
    core = make_core(tmp_path, paths, (schedule(),), FixedClock(berlin(*SLOT_TIME)))
    assert [len(core.backups.list_points(HOST, ids[name])) for name in ("vm1", "vm2")] == [1, 1]
    core.close()


def test_a_run_due_killed_half_way_is_continued_by_the_next(tmp_path: Path, paths: Paths) -> None:
    ids = make_lab(tmp_path, ("vm1", "vm2"))
    marker = tmp_path / "holding"
    child = start_child(tmp_path, "vm2", marker, tmp_path / "never", after_results=1)
    try:
        assert _wait_for(lambda: marker.exists() or child.poll() is not None), "the child did not reach its second backup"
        assert marker.exists(), child.stderr.read() if child.stderr else child.poll()
    finally:
        child.kill()
        child.wait(DEADLINE)
    lab = LabHost.open(tmp_path / HOST, HOST, FixedClock())
    assert [cp.type for cp in lab.vm(ids["vm2"]).checkpoints] == ["Recovery"]  # killed mid-backup
    (killed,) = ScheduleJournal(paths.schedule_journal).read()["nightly"].runs
    assert not killed.is_finished and [r.vm for r in killed.results.values()] == ["vm1"]

    clock = FixedClock(berlin(*SLOT_TIME) + timedelta(minutes=30))
    core = make_core(tmp_path, paths, (schedule(),), clock)
    (report,) = core.schedules.run_due().reports
    assert report.run_id == killed.run_id and report.event == "success"
    assert report.notes[0].startswith(f"continued run {killed.run_id}")
    assert sorted(r.vm for r in report.results) == ["vm1", "vm2"]
    # vm1 was not backed up again; vm2 once; no Recovery checkpoint left by the killed backup.
    assert [len(core.backups.list_points(HOST, ids[name])) for name in ("vm1", "vm2")] == [1, 1]
    lab = LabHost.open(tmp_path / HOST, HOST, clock)
    assert [cp.type for name in ("vm1", "vm2") for cp in lab.vm(ids[name]).checkpoints] == []
    (run,) = ScheduleJournal(paths.schedule_journal).read()["nightly"].runs
    assert run.is_finished
    # The killed backup job was resumed through the job manager, not left offered in the console.
    assert core.jobs.interrupted_jobs() == []
    assert [j.vm_name for j in core.jobs.history() if j.resumed_from] == ["vm2"]
    assert core.schedules.run_due().reports == []  # the slot is done
    core.close()
