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
