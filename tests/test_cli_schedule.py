"""`hvtui schedule`: list, show, run, run-due and install from a shell, on a real lab and config file
(the real clock: an ``every: 1m`` schedule always has a slot inside its window)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from schedule_support import HOST, make_lab

from hvtui.audit import AuditLog
from hvtui.cli import main
from hvtui.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from hvtui.paths import Paths

# The real clock: nightly's time is half a day away with a 1h window, so it is never due while the
# tests run, whatever the time of day (a fixed 22:00 made these tests fail between 22:00 and 04:00).
NIGHTLY_AT = (datetime.now() + timedelta(hours=12)).strftime("%H:%M")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    make_lab(tmp_path, ("web01", "web02-test", "sql01"))
    path = tmp_path / "config.yaml"
    path.write_text(
        f"hosts:\n  - {{name: {HOST}, kind: lab, group: production}}\nlab: {{dir: {tmp_path}}}\n"
        f"repositories:\n  - {{name: default, path: {tmp_path / 'repo'}, default: true}}\n"
        "schedules:\n"
        f"  - {{name: often, vms: ['{HOST}/web*', 'nosuch*'], exclude: ['*-test'], every: 1m, window: 1m}}\n"
        f"  - {{name: nightly, vms: ['group:production'], at: '{NIGHTLY_AT}', window: 1h, full_every: 7d}}\n"
        # Once a year, in a month half a year from now: never due while the test runs.
        f"  - {{name: yearly, vms: ['nosuchvm'], cron: '0 0 1 {(datetime.now().month + 5) % 12 + 1} *', window: 1h}}\n",
        encoding="utf-8",
    )
    return path


def run(config: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_says_why_each_vm_is_in_or_out(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(config, capsys, "schedule", "show", "often")
    assert code == EXIT_OK
    assert f"  + {HOST}/web01: selected by '{HOST}/web*'" in out
    assert f"  - {HOST}/web02-test: selected by '{HOST}/web*' but excluded by '*-test'" in out
    assert f"  - {HOST}/sql01: matches none of '{HOST}/web*', 'nosuch*'" in out
    assert "warning: selector 'nosuch*' selects no VM" in err
    code, out, _ = run(config, capsys, "schedule", "show", "nightly", "--json")
    doc = json.loads(out)
    assert sorted(v["vm"] for v in doc["selected"]) == ["sql01", "web01", "web02-test"]
    assert doc["timing"] == f"daily at {NIGHTLY_AT}" and doc["unmatched_selectors"] == []


def test_run_due_then_list(config: Path, capsys: pytest.CaptureFixture[str], paths: Paths) -> None:
    code, out, _ = run(config, capsys, "schedule", "run-due", "--json")
    assert code == EXIT_OK  # warnings (a selector matching nothing) do not fail the run
    (report,) = [r for r in json.loads(out)["runs"] if r["schedule"] == "often"]
    assert report["event"] == "warning" and [r["vm"] for r in report["results"]] == ["web01"]
    assert report["results"][0]["outcome"] == "succeeded" and report["results"][0]["mode"] == "full"
    code, out, _ = run(config, capsys, "schedule", "list", "--json")
    listed = {s["name"]: s for s in json.loads(out)["schedules"]}
    assert listed["often"]["last_run"]["event"] == "warning" and listed["often"]["running"] is False
    assert listed["nightly"]["last_run"] is None and listed["nightly"]["timing"] == f"daily at {NIGHTLY_AT}"
    code, out, _ = run(config, capsys, "schedule", "list")
    assert out.splitlines()[0].split() == ["SCHEDULE", "WHEN", "SELECTS", "LAST", "RUN", "RESULT", "NEXT", "RUN", "MISSED"]
    assert "warning (1/1 ok)" in out


def test_run_now_is_audited_and_read_only_refuses(config: Path, capsys: pytest.CaptureFixture[str], paths: Paths) -> None:
    code, out, _ = run(config, capsys, "schedule", "run", "nightly", "--now")
    assert code == EXIT_OK
    assert out.splitlines()[0].startswith("schedule nightly: success (run ")
    assert sum(1 for line in out.splitlines() if line.startswith("  succeeded ")) == 3
    entries = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "schedule.run"]
    assert [(e["host"], e["result"], e["args"]["event"]) for e in entries] == [("schedule:nightly", "ok", "success")]
    code, _, err = run(config, capsys, "--read-only", "schedule", "run-due")
    assert code == EXIT_REFUSED and "read-only mode: schedules run no backups" in err
    assert [e["result"] for e in AuditLog(paths.audit_log).read() if e["action"] == "schedule.run"] == ["ok", "refused"]


def test_unknown_schedule_is_a_usage_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(config, capsys, "schedule", "show", "nigthly")
    assert code == EXIT_USAGE and "no schedule named 'nigthly'; did you mean 'nightly'?" in err


def test_install_systemd_writes_units_systemd_accepts(
    config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    code, out, _ = run(config, capsys, "schedule", "install", "--systemd")
    assert code == EXIT_OK and "OnCalendar=*-*-* *:*:00" in out and "schedule run-due --config" in out
    assert not (tmp_path / "xdg").exists()  # printing writes nothing
    code, out, _ = run(config, capsys, "schedule", "install", "--systemd", "--write")
    units = tmp_path / "xdg" / "systemd" / "user"
    assert code == EXIT_OK and sorted(p.name for p in units.iterdir()) == ["hvtui-schedule.service", "hvtui-schedule.timer"]
    assert f"--config {config}" in (units / "hvtui-schedule.service").read_text()
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(units / "hvtui-schedule.timer"), str(units / "hvtui-schedule.service")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr


def test_install_cron_prints_the_line_and_says_when_there_is_no_crontab(
    config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(config, capsys, "schedule", "install", "--cron")
    assert code == EXIT_OK and out.startswith("* * * * * ") and out.rstrip().endswith("# hvtui schedule run-due")
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("crontab") is None
    code, _, err = run(config, capsys, "schedule", "install", "--cron", "--write")
    assert code == EXIT_FAILED and "no crontab command on this machine; add this line to your crontab by hand" in err


def test_check_reports_backup_overdue_for_scheduled_vms_until_they_are_backed_up(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def overdue() -> dict[str, str]:
        main(["--config", str(config), "check", "--json"])
        doc = json.loads(capsys.readouterr().out)
        return {f["vm_name"]: f["message"] for f in doc["findings"] if f["rule"] == "backup-overdue"}

    before = overdue()
    assert sorted(before) == ["sql01", "web01", "web02-test"]  # nightly selects the whole group
    assert before["sql01"].startswith(f"selected by schedule nightly (daily at {NIGHTLY_AT}")
    assert run(config, capsys, "schedule", "run-due")[0] == EXIT_OK  # "often" backs up web01
    assert sorted(overdue()) == ["sql01", "web02-test"]


def test_an_unreadable_schedule_journal_is_a_clear_error(config: Path, capsys: pytest.CaptureFixture[str], paths: Paths) -> None:
    paths.schedule_journal.mkdir(parents=True)  # a directory where the journal file should be
    code, _, err = run(config, capsys, "schedule", "list")
    assert code == EXIT_FAILED
    assert f"hvtui: error: cannot read the schedule journal {paths.schedule_journal}: Is a directory" in err
    assert "Traceback" not in err


def test_run_without_now_runs_only_when_due(config: Path, capsys: pytest.CaptureFixture[str], paths: Paths) -> None:
    code, out, _ = run(config, capsys, "schedule", "run", "yearly")
    assert code == EXIT_OK
    assert out.startswith("Schedule yearly is not due; next run ") and "(--now runs it at once)" in out
    assert "yearly" not in [e.get("args", {}).get("schedule") for e in AuditLog(paths.audit_log).read()]


def test_info_names_the_schedule_journal(config: Path, capsys: pytest.CaptureFixture[str], paths: Paths) -> None:
    code, out, _ = run(config, capsys, "info", "--json")
    assert code == EXIT_OK and json.loads(out)["schedule_journal"] == str(paths.schedule_journal)
    code, out, _ = run(config, capsys, "info")
    assert f"Schedules: {paths.schedule_journal}" in " ".join(out.split())


def test_list_and_console_say_the_same_result_and_a_missed_vm_is_not_ok(
    config: Path, capsys: pytest.CaptureFixture[str], paths: Paths
) -> None:
    # One shared wording (schedules/text.py) for `schedule list` and the console: the list used to
    # count every VM that did not fail as ok, so a missed VM made "2/3 ok" here.
    from hvtui.notify.report import VMResult
    from hvtui.schedules.journal import ScheduleJournal
    from hvtui.schedules.runner import ScheduleStatus
    from hvtui.schedules.text import result_text, vm_result_line
    from hvtui.tui.viewmodel.schedule_rows import detail_text

    journal = ScheduleJournal(paths.schedule_journal)
    started = datetime.now().astimezone() - timedelta(days=1)
    record = journal.start("nightly", "r1", None, started)
    journal.vm_result(record, "id-web01", VMResult(HOST, "web01", "succeeded", "full", 3 << 20, point_id="p-1"))
    journal.vm_result(record, "id-web02", VMResult(HOST, "web02-test", "missed", reason="host unreachable"))
    journal.vm_result(record, "id-sql01", VMResult(HOST, "sql01", "failed", "incremental", reason="disk read error", failures_in_a_row=3))
    journal.end(record, "failure", (), started + timedelta(minutes=5))

    code, out, _ = run(config, capsys, "schedule", "list")
    assert code == EXIT_OK
    (line,) = [line for line in out.splitlines() if line.startswith("nightly ")]
    assert "failure (1/3 ok)" in line
    run_record = ScheduleJournal(paths.schedule_journal).read()["nightly"].last_run
    assert run_record is not None
    status = ScheduleStatus(schedule=_nightly(config), next_run=started, last_run=run_record, missed=(), running=False)
    assert result_text(status) == "failure (1/3 ok)"
    assert [vm_result_line(r) for r in run_record.results.values()] == [
        f"  succeeded {HOST}/web01 full, 3.0 MiB, point p-1",
        f"  missed    {HOST}/web02-test: host unreachable",
        f"  failed    {HOST}/sql01 incremental (critical: 3 failed runs in a row): disk read error",
    ]
    assert started.tzinfo is not None
    detail = detail_text(status, started.tzinfo)
    assert "failure (1/3 ok)" in detail and f"  failed    {HOST}/sql01 incremental (critical: 3 failed runs in a row)" in detail
    assert result_text(ScheduleStatus(schedule=status.schedule, next_run=started, last_run=None, missed=(), running=False)) == "never ran"
    assert result_text(ScheduleStatus(schedule=status.schedule, next_run=started, last_run=run_record, missed=(), running=True)) == "running or stopped"


def _nightly(config: Path):  # noqa: ANN202
    from hvtui.config import load_config

    (nightly,) = [s for s in load_config(config).schedules if s.name == "nightly"]
    return nightly
