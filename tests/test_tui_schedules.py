"""Backup schedules in the console, through Textual's pilot, on a demo lab: ``:schedules`` lists
each schedule (next run, last run, result per VM, missed runs); ``n`` runs one now after a
confirmation that names its VMs (refused read-only, audited); ``enter`` opens its VMs as a VM-table
filter; the VM table shows NEXT BACKUP and the VM detail the VM's schedule."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_tui_jobs import flat, ready, wait_until
from tui_support import click, make_app, make_core, screen_text, settle

from hvtui.audit import AuditLog
from hvtui.clock import FixedClock
from hvtui.config import Config
from hvtui.config.schedules import ScheduleConfig
from hvtui.config.timing import parse_timing
from hvtui.core import Core
from hvtui.hosts.lab.estate import init_lab
from hvtui.paths import Paths
from hvtui.schedules.journal import ScheduleJournal
from hvtui.tui.screens.dialogs import ConfirmDialog
from hvtui.tui.screens.schedules import SchedulesScreen
from hvtui.tui.screens.vms import VmsScreen

SIZE = (110, 32)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NIGHTLY = ScheduleConfig(
    name="nightly", vms=("lab-hv01/*",), exclude=("sql*",), timing=parse_timing("at", "22:00"), window=6 * 3600.0
)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lab = tmp_path_factory.mktemp("schedules-demo") / "lab"
    init_lab(lab, "demo", FixedClock(), size=0.1)
    return lab


@pytest.fixture
def lab(demo_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "lab"
    shutil.copytree(demo_template, target, symlinks=True)
    return target


def schedules_core(lab: Path, paths: Paths, read_only: bool = False) -> Core:
    config = dataclasses.replace(Config.lab_default(paths), schedules=(NIGHTLY,))
    core = make_core(lab, paths, clock=FixedClock(NOW), read_only=read_only, config=config)
    core.backups.progress_interval = 0
    return core


async def schedules_view(pilot) -> SchedulesScreen:  # noqa: ANN001
    await pilot.press("colon", *"schedules", "enter")
    assert await wait_until(pilot, lambda: isinstance(pilot.app.screen, SchedulesScreen) and pilot.app.screen.loaded)
    return pilot.app.screen


async def test_the_view_lists_a_schedule_and_runs_it_now_after_confirmation(lab: Path, paths: Paths) -> None:
    core = schedules_core(lab, paths)
    journal = ScheduleJournal(paths.schedule_journal)
    journal.missed("nightly", datetime(2026, 11, 23, 22, 0, tzinfo=UTC), NOW)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        screen = await schedules_view(pilot)
        text = flat(screen_text(app))
        assert "Schedules [1, 1 missed runs]" in text
        assert "nightly daily at 22:00 2026-11-24 22:00" in text and "never ran" in text
        assert "Missed runs (1): 2026-11-23 22:00" in text
        await pilot.press("n")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        body = app.screen.body
        assert "Back up 4 VMs now into repository default" in body
        assert "lab-hv01/app01" in body and "lab-hv01/sql01" not in body  # excluded
        await pilot.press("enter")  # the focus is on "No": declined, nothing runs
        assert await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmDialog))

        def run_entries() -> list[dict]:
            return [e for e in AuditLog(paths.audit_log).read() if e["action"] == "schedule.run"]

        # The refusal is written by the dialog's flow in a thread after the dialog closed: wait for it.
        assert await wait_until(pilot, lambda: len(run_entries()) >= 1)
        assert [e["result"] for e in run_entries()] == ["declined"]
        await pilot.press("n")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await click(pilot, "#yes")
        await settle(pilot)
        assert await wait_until(pilot, lambda: bool(journal.read()["nightly"].runs) and journal.read()["nightly"].runs[-1].is_finished)
        assert await wait_until(pilot, lambda: "success (4/4 ok)" in flat(screen_text(app)), rounds=800)
        text = flat(screen_text(app))
        assert "succeeded lab-hv01/app01 full" in text
        audit = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "schedule.run"]
        assert [(e["result"], e["args"].get("event")) for e in audit] == [("declined", None), ("ok", "success")]
        assert screen is app.screen


async def test_enter_opens_the_schedules_vms_in_the_vm_table_with_next_backup(lab: Path, paths: Paths) -> None:
    core = schedules_core(lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        await schedules_view(pilot)
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen) and app.screen.filter_text == "schedule:nightly")
        await settle(pilot)
        screen = app.screen
        shown = sorted(row.vm.name for row in screen.filter_targets)
        assert shown == ["app01", "dc01", "file01", "web01"]
        assert "NEXT BACKUP" in screen_text(app) and "in 10 hours" in screen_text(app)
        row = next(r for r in screen.filter_targets if r.vm.name == "app01")
        # Never backed up: backup-overdue is among the findings the VM's health comes from.
        rules = {f.rule for f in app.snapshot.findings_for(row.vm.host, row.vm.id)}
        assert "backup-overdue" in rules
        assert not any(f.rule == "backup-overdue" for f in app.snapshot.findings if f.vm_name == "sql01")  # excluded
        app.open_vm(row.vm.host, row.vm.id)
        assert await wait_until(pilot, lambda: "Schedule: nightly (daily at 22:00" in flat(screen_text(app)))


async def test_read_only_refuses_run_now_and_audits_it(lab: Path, paths: Paths) -> None:
    core = schedules_core(lab, paths, read_only=True)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        screen = await schedules_view(pilot)
        assert screen.why_unavailable("run_now") == "hvtui runs read-only"
        app.start_schedule_run("nightly")
        assert await wait_until(pilot, lambda: "run schedule nightly refused: hvtui runs read-only" in flat(screen_text(app)))
        assert not isinstance(app.screen, ConfirmDialog)
        audit = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "schedule.run"]
        assert [(e["result"], e["error"]) for e in audit] == [("refused", "hvtui runs read-only")]
        assert "nightly" not in ScheduleJournal(paths.schedule_journal).read()


async def test_without_schedules_the_view_says_how_to_add_one_and_the_vm_table_has_no_next_column(lab: Path, paths: Paths) -> None:
    app = make_app(make_core(lab, paths))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        assert "NEXT BACKUP" not in screen_text(app)
        await schedules_view(pilot)
        assert "No schedules configured: add schedules: to the config" in flat(screen_text(app))


async def test_the_command_prompt_leaves_an_empty_view_whose_enter_key_is_unavailable(lab: Path, paths: Paths) -> None:
    # Enter in the `:` prompt submits the prompt; it is not the view's own (unavailable) enter key,
    # which used to swallow it with "Its VMs: no schedule under the cursor".
    app = make_app(make_core(lab, paths))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        await schedules_view(pilot)
        await pilot.press("colon", *"vms", "enter")
        assert await wait_until(pilot, lambda: isinstance(pilot.app.screen, VmsScreen))
        assert "no schedule under the cursor" not in flat(screen_text(app))
