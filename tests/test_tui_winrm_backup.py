"""The console drives a backup of a VM on a WinRM host (pilot): the loopback WS-Management
server answering from a lab host inside a real Samba share, the SMB3 data path, the job manager."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_jobs import ready, to_vm_row, vm_named, wait_job, wait_until  # noqa: E402
from test_winrm_backup_service import HOST, Estate, estate, make_winrm_core  # noqa: E402, F401 - the fixture
from tui_support import SIZE, make_app, screen_text  # noqa: E402

from hvtui.audit import AuditLog  # noqa: E402
from hvtui.jobs import JobState  # noqa: E402
from hvtui.paths import Paths  # noqa: E402
from hvtui.tui.screens.backup_dialog import BackupDialog  # noqa: E402
from hvtui.tui.screens.vms import VmsScreen  # noqa: E402
from hvtui.tui.widgets.choice import ChoiceButton  # noqa: E402


async def test_the_console_backs_up_a_winrm_vm(estate: Estate, paths: Paths) -> None:  # noqa: F811
    core = make_winrm_core(estate.root, paths)
    core.backups.progress_interval = 0
    app = make_app(core)
    try:
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await ready(pilot)
            vm = vm_named(app, "vm1")
            assert vm.host == HOST and app.screen.table.plain_row(vm.key)["backup"] == "never"
            await to_vm_row(pilot, "vm1")
            await pilot.press("b")
            assert await wait_until(pilot, lambda: isinstance(app.screen, BackupDialog))
            assert f"Back up vm1 on {HOST}" in screen_text(app)
            await pilot.press("enter")
            assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 1)
            (job,) = core.jobs.jobs()
            done = await wait_job(core, job.id)
            assert done.state is JobState.SUCCEEDED, done.error
            assert await wait_until(pilot, lambda: "Job finished" in screen_text(app))
            assert isinstance(app.screen, VmsScreen)
            assert await wait_until(pilot, lambda: app.screen.table.plain_row(vm.key)["backup"].endswith("ago"))
    finally:
        core.close()
    assert [c.op for c in estate.server.commands].count("backup.begin") == 1
    (begin,) = estate.server.commands_for("backup.begin")
    assert begin.arguments is not None and begin.arguments["consistency"] == "prefer-application"  # the host's setting
    assert estate.backend.faults.end_calls[-1]["outcome"] == "success"
    assert estate.recovery() == []


async def test_the_backup_dialog_offers_the_consistency_of_a_winrm_host_and_the_backup_asks_for_it(
    estate: Estate, paths: Paths  # noqa: F811
) -> None:
    core = make_winrm_core(estate.root, paths)
    core.backups.progress_interval = 0
    app = make_app(core)
    try:
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await ready(pilot)
            await to_vm_row(pilot, "vm1")
            await pilot.press("b")
            assert await wait_until(pilot, lambda: isinstance(app.screen, BackupDialog))
            dialog = app.screen
            assert isinstance(dialog, BackupDialog)
            text = screen_text(app)
            assert "Consistency (WinRM hosts)" in text
            for choice in ("prefer-application", "application", "crash"):
                assert choice in text
            # the host's setting preselected
            assert dialog.query_one("#consistency-prefer-application", ChoiceButton).value
            assert dialog.request.consistency is None  # unchanged: the host's own setting applies
            await pilot.click("#consistency-crash")
            assert dialog.request.consistency == "crash"
            await pilot.click("#start")
            assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 1)
            (job,) = core.jobs.jobs()
            done = await wait_job(core, job.id)
            assert done.state is JobState.SUCCEEDED, done.error
    finally:
        core.close()
    (begin,) = estate.server.commands_for("backup.begin")
    assert begin.arguments is not None and begin.arguments["consistency"] == "crash"
    (entry,) = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "backup"]
    assert entry["args"]["consistency"] == "crash"
