"""Schedule runs on a real lab host, driven by a fake clock through days of schedule in seconds:
due runs happen once, missed runs are recorded (and reported) once, DST changes neither skip
nor double a run, full_every yields fulls, a failing VM neither stops the others nor loses its
older points (retention runs only after a success) and escalates after runs in a row."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

import pytest
from schedule_support import HOST, berlin, drive, make_core, make_lab, runner_with_notifier, schedule

from hvtui.clock import FixedClock
from hvtui.config import RepositoryConfig, Retention
from hvtui.config.timing import parse_timing
from hvtui.engine.repository import Repository
from hvtui.hosts.lab.host import LabHost
from hvtui.notify.report import RunReport
from hvtui.paths import Paths
from hvtui.schedules.journal import ScheduleJournal
from hvtui.schedules.runner import NO_NOTIFIER, failure_severity


@pytest.fixture(autouse=True)
def berlin_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")


def slots_run(paths: Paths, name: str = "nightly") -> list[str]:
    history = ScheduleJournal(paths.schedule_journal).read()[name]
    return [run.slot.astimezone(history.runs[0].slot.tzinfo).isoformat() for run in history.runs if run.slot is not None]


def test_due_runs_happen_once_each_and_back_up_every_selected_vm(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 12, 0))
    ids = make_lab(tmp_path, ("vm1", "vm2", "vm3-test"), clock)
    core = make_core(tmp_path, paths, (schedule(exclude=("*-test",)),), clock)
    reports = drive(core.schedules, clock, berlin(2026, 11, 26, 12, 0))
    assert slots_run(paths) == ["2026-11-23T22:00:00+01:00", "2026-11-24T22:00:00+01:00", "2026-11-25T22:00:00+01:00"]
    assert [r.event for r in reports] == ["success"] * 3
    assert all(sorted(v.vm for v in r.results) == ["vm1", "vm2"] for r in reports)
    for name in ("vm1", "vm2"):
        points = core.backups.list_points(HOST, ids[name])
        assert len(points) == 3
        # Each run starts at its slot (the 15-minute step of the fake clock): never early.
        assert [p.time.astimezone(UTC).hour for p in points] == [21, 21, 21]
    assert core.backups.list_points(HOST, ids["vm3-test"]) == []  # excluded
    assert [r.mode for r in reports[0].results] == ["full", "full"]  # a VM's first point is a full
    assert [r.mode for r in reports[1].results] == ["incremental", "incremental"]
    core.close()


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # spring: 02:30 does not exist on 29 March; the run happens once, when the clock passes it
        ((2026, 3, 27, 12), (2026, 3, 31, 12), ["03-28T02:30+01:00", "03-29T03:00+02:00", "03-30T02:30+02:00", "03-31T02:30+02:00"]),
        # autumn: 02:30 happens twice on 25 October; the run happens once
        ((2026, 10, 23, 12), (2026, 10, 27, 12), ["10-24T02:30+02:00", "10-25T02:30+02:00", "10-26T02:30+01:00", "10-27T02:30+01:00"]),
    ],
)
def test_dst_changes_neither_skip_nor_double_a_run(
    tmp_path: Path, paths: Paths, start: tuple[int, ...], end: tuple[int, ...], expected: list[str]
) -> None:
    clock = FixedClock(berlin(*start))
    make_lab(tmp_path, ("vm1",), clock)
    core = make_core(tmp_path, paths, (schedule(at="02:30", window=3600.0),), clock)
    reports = drive(core.schedules, clock, berlin(*end), step=timedelta(minutes=5))
    history = ScheduleJournal(paths.schedule_journal).read()["nightly"]
    started = [run.started.astimezone(berlin(2026, 1, 1).tzinfo).strftime("%m-%dT%H:%M%z") for run in history.runs]
    assert [s[:-2] + ":" + s[-2:] for s in started] == expected
    assert [r.event for r in reports] == ["success"] * 4 and history.missed == []
    core.close()


def test_missed_runs_are_recorded_and_reported_once(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 12, 0))
    make_lab(tmp_path, ("vm1",), clock)
    core = make_core(tmp_path, paths, (schedule(notify=("ops-mail",)),), clock)
    sent: list[tuple[RunReport, tuple[str, ...]]] = []
    runner = runner_with_notifier(core, sent)
    assert runner.run_due().reports == []  # first look: nothing due, nothing missed
    clock.set(berlin(2026, 11, 26, 9, 0))  # the jump box was off for three nights
    missed = runner.run_due().reports
    assert [(r.event, r.started) for r in missed] == [
        ("missed", "2026-11-23T22:00:00+01:00"),
        ("missed", "2026-11-24T22:00:00+01:00"),
        ("missed", "2026-11-25T22:00:00+01:00"),
    ]
    assert "did not start within its 2h window" in missed[0].notes[0]
    # Each missed run lists the VMs it would have backed up.
    assert [(v.host, v.vm, v.outcome, v.reason) for v in missed[0].results] == [(HOST, "vm1", "missed", missed[0].notes[0])]
    assert [(r.event, targets) for r, targets in sent] == [("missed", ("ops-mail",))] * 3
    drive(runner, clock, berlin(2026, 11, 26, 21, 0))  # looking again and again records nothing new
    assert len(sent) == 3
    history = ScheduleJournal(paths.schedule_journal).read()["nightly"]
    assert len(history.missed) == 3 and history.runs == []
    # A run late but inside its window is not missed: it runs.
    clock.set(berlin(2026, 11, 26, 23, 30))
    (late,) = runner.run_due().reports
    assert late.event == "success" and len(sent) == 4
    core.close()


def test_full_every_yields_fulls(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 12, 0))
    make_lab(tmp_path, ("vm1",), clock)
    core = make_core(tmp_path, paths, (schedule("inc", full_every=3 * 86400.0),), clock)
    reports = drive(core.schedules, clock, berlin(2026, 11, 30, 12, 0))
    assert [r.results[0].mode for r in reports] == ["full", "incremental", "incremental", "full", "incremental", "incremental", "full"]
    core.close()


def test_differential_schedule_builds_on_fresh_fulls(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 12, 0))
    make_lab(tmp_path, ("vm1",), clock)
    core = make_core(tmp_path, paths, (schedule(mode="differential", full_every=2 * 86400.0),), clock)
    reports = drive(core.schedules, clock, berlin(2026, 11, 28, 12, 0))
    assert [r.results[0].mode for r in reports] == ["full", "differential", "full", "differential", "full"]
    assert all(r.event == "success" for r in reports)  # no "differential asked for but ..." warning
    core.close()


def test_a_failing_vm_stops_nothing_keeps_its_points_and_escalates(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 12, 0))
    ids = make_lab(tmp_path, ("good", "bad"), clock)
    retention = Retention(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0)
    core = make_core(tmp_path, paths, (schedule(),), clock, retention=retention)
    drive(core.schedules, clock, berlin(2026, 11, 25, 12, 0))  # two good nights
    bad_points = [p.id for p in core.backups.list_points(HOST, ids["bad"])]
    assert len(bad_points) == 2
    # The bad VM's disk goes away: its backups fail from now on.
    disk = LabHost.open(tmp_path / HOST, HOST, clock).disk_path(ids["bad"])
    disk.rename(disk.with_suffix(".gone"))
    reports = drive(core.schedules, clock, berlin(2026, 11, 28, 12, 0))
    assert [r.event for r in reports] == ["failure"] * 3
    bad = [next(v for v in r.results if v.vm == "bad") for r in reports]
    assert [(v.outcome, v.failures_in_a_row, failure_severity(v)) for v in bad] == [
        ("failed", 1, "warning"),
        ("failed", 2, "warning"),
        ("failed", 3, "critical"),
    ]
    assert all(v.reason for v in bad)
    good = [next(v for v in r.results if v.vm == "good") for r in reports]
    assert [v.outcome for v in good] == ["succeeded"] * 3  # never stopped by the other
    # Retention ran after each success (the good VM keeps 2) and never for the failures.
    assert len(core.backups.list_points(HOST, ids["good"])) == 2
    assert [p.id for p in core.backups.list_points(HOST, ids["bad"])] == bad_points
    # Back on its feet: the streak ends.
    disk.with_suffix(".gone").rename(disk)
    (fixed,) = drive(core.schedules, clock, berlin(2026, 11, 29, 12, 0))
    assert fixed.event == "success" and all(v.failures_in_a_row == 0 for v in fixed.results)
    core.close()


def test_copy_to_copies_each_success_and_no_notifier_is_said(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 21, 59))
    make_lab(tmp_path, ("vm1",), clock)
    offsite = RepositoryConfig(name="offsite", path=tmp_path / "offsite")
    core = make_core(
        tmp_path, paths, (schedule(copy_to="offsite", notify=("ops-mail",), vms=(f"{HOST}/*", "nosuch*")),), clock,
        extra_repositories=(offsite,),
    )  # fmt: skip
    clock.advance(120)
    (report,) = core.schedules.run_due().reports
    # Core hands the run to its Notifier, which names a target the config does not define.
    assert report.notes[:1] == ("warning: selector 'nosuch*' selects no VM",)
    assert len(report.notes) == 2 and "ops-mail" in report.notes[1] and NO_NOTIFIER not in report.notes
    assert report.event == "warning"
    (result,) = report.results
    assert result.outcome == "succeeded"
    # The new point was copied by a copy job: it is in offsite now.
    assert Repository.open(tmp_path / "offsite").point_ids() == [result.point_id]
    assert [j.kind for j in core.jobs.jobs()].count("copy") == 1
    core.close()


def test_a_failed_copy_is_a_warning_of_the_run(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 21, 59))
    make_lab(tmp_path, ("vm1",), clock)
    # Chunk sizes differ: the copy is refused with a message, the backup stays good.
    offsite = RepositoryConfig(name="offsite", path=tmp_path / "offsite")
    Repository.open(tmp_path / "offsite", create=True, chunk_size=2 * 1024 * 1024)
    core = make_core(tmp_path, paths, (schedule(copy_to="offsite"),), clock, extra_repositories=(offsite,))
    clock.advance(120)
    (report,) = core.schedules.run_due().reports
    (result,) = report.results
    assert result.outcome == "succeeded" and report.event == "warning"
    assert any(n.startswith(f"warning: the copy of {HOST}/vm1 to offsite failed:") and "chunk sizes differ" in n for n in report.notes)
    core.close()


def test_notification_errors_are_kept_with_the_run(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 22, 1))
    make_lab(tmp_path, ("vm1",), clock)
    core = make_core(tmp_path, paths, (schedule(notify=("chat",)),), clock)
    sent: list[tuple[RunReport, tuple[str, ...]]] = []
    (report,) = runner_with_notifier(core, sent, errors=["chat: HTTP 500 from the webhook"]).run_due().reports
    assert report.event == "success" and report.notes == ("chat: HTTP 500 from the webhook",)
    (run,) = ScheduleJournal(paths.schedule_journal).read()["nightly"].runs
    assert run.notes == ("chat: HTTP 500 from the webhook",) and run.event == "success"
    core.close()


def test_every_schedule_runs_in_elapsed_time(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 0, 0))
    make_lab(tmp_path, ("vm1",), clock)
    core = make_core(tmp_path, paths, (schedule(timing=parse_timing("every", 6 * 3600.0, "6h"), window=3600.0),), clock)
    reports = drive(core.schedules, clock, berlin(2026, 11, 24, 0, 0) - timedelta(seconds=1), step=timedelta(minutes=20))
    assert slots_run(paths) == [f"2026-11-23T{h:02d}:00:00+01:00" for h in (0, 6, 12, 18)]
    assert len(reports) == 4
    core.close()


def test_a_host_that_cannot_be_read_fails_the_run_only_when_the_schedule_may_select_its_vms(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 22, 1))
    make_lab(tmp_path, ("vm1",), clock)
    schedules = (schedule("everything", vms=("*",)), schedule("mine", vms=(f"{HOST}/*",)), schedule("gone", vms=("lab-gone/*",)))
    core = make_core(tmp_path, paths, schedules, clock, extra_hosts=("lab-gone",))
    reports = {r.schedule: r for r in core.schedules.run_due().reports}
    assert reports["everything"].event == "failure"
    assert reports["everything"].notes == ("host lab-gone could not be read: its VMs were not backed up",)
    assert [(v.vm, v.outcome) for v in reports["everything"].results] == [("vm1", "succeeded")]  # the others still ran
    assert reports["mine"].event == "success" and reports["mine"].notes == ()
    assert reports["gone"].event == "failure" and reports["gone"].results == ()
    core.close()


def test_a_damaged_journal_line_is_skipped_and_the_rest_kept(tmp_path: Path, paths: Paths, caplog: pytest.LogCaptureFixture) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 22, 1))
    make_lab(tmp_path, ("vm1",), clock)
    core = make_core(tmp_path, paths, (schedule(),), clock)
    (first,) = core.schedules.run_due().reports
    with open(paths.schedule_journal, "ab") as fh:
        fh.write(b'{"type":"run","schedule":"nightly","run_')  # a process killed mid-write
    clock.set(berlin(2026, 11, 24, 22, 1))
    (second,) = core.schedules.run_due().reports  # the next append starts on a fresh line
    history = ScheduleJournal(paths.schedule_journal).read()["nightly"]
    assert [r.run_id for r in history.runs] == [first.run_id, second.run_id]
    assert all(r.is_finished for r in history.runs)
    assert any("schedule journal" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    core.close()


def test_a_repository_that_cannot_be_read_fails_each_vm_not_the_run(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 22, 1))
    make_lab(tmp_path, ("vm1", "vm2"), clock)
    (tmp_path / "repo").write_text("not a repository")  # a file where the repository should be
    core = make_core(tmp_path, paths, (schedule(repository="default"),), clock)
    (report,) = core.schedules.run_due().reports
    assert report.event == "failure"
    assert [(v.vm, v.outcome) for v in report.results] == [("vm1", "failed"), ("vm2", "failed")]
    assert all(v.reason and "repo" in v.reason for v in report.results)
    (run,) = ScheduleJournal(paths.schedule_journal).read()["nightly"].runs
    assert run.is_finished and run.event == "failure"
    core.close()
