"""The console's restore dialog picks the target host and shows its free space (read on a worker
thread through Core), and the restore goes there: a lab point restored as a new VM on the WinRM
host (loopback WS-Management + real Samba), with the pilot."""

from __future__ import annotations

import pytest
from lab_support import add_vm
from test_restore_target_host import WINRM, core, rig  # noqa: F401 - fixtures
from test_tui_jobs import ready, wait_job, wait_until
from test_winrm_restore import Rig
from textual.widgets import Select
from tui_support import SIZE, click, make_app, screen_text
from winrm_rig_support import disk_files

from hvtui.core import Core
from hvtui.jobs import JobState
from hvtui.tui.screens.dialogs import ConfirmDialog
from hvtui.tui.screens.restore_dialog import RestoreDialog
from hvtui.tui.screens.vm_detail import VmDetailScreen
from hvtui.tui.viewmodel.format import size_text


def flat(text: str) -> str:
    return " ".join(text.split())


async def test_the_restore_dialog_sends_a_new_vm_to_the_winrm_host_it_shows_the_space_of(
    rig: Rig, core: Core, monkeypatch: pytest.MonkeyPatch  # noqa: F811 - the imported fixtures
) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=3, seed=9)
    point = core.backups.backup("lab-src", vm_id, "full").point_id
    volume = rig.winrm.restore_volume()
    assert volume is not None
    asked: list[tuple[str, bool]] = []
    real = core.restore_volume

    def recording(name: str):  # noqa: ANN202
        import threading

        asked.append((name, threading.current_thread() is threading.main_thread()))
        return real(name)

    monkeypatch.setattr(core, "restore_volume", recording)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        app.open_vm("lab-src", vm_id)
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded)
        await pilot.press("t")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RestoreDialog))
        dialog = app.screen
        assert isinstance(dialog, RestoreDialog)
        assert dialog.target_hosts[0] == "lab-src" and WINRM in dialog.target_hosts
        dialog.query_one("#restore-name").value = "web01-dr"
        dialog.query_one("#restore-host", Select).value = WINRM
        free = size_text(volume.free)
        assert await wait_until(pilot, lambda: f"on {WINRM}: {free} free" in dialog.space_text), dialog.space_text
        assert (WINRM, False) in asked  # asked on a worker thread, never the UI's
        await click(pilot, "#next")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert f"Restore as new VM web01-dr on {WINRM}?" in flat(screen_text(app))
        await pilot.press("right", "enter")
        assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 1)
        (job,) = core.jobs.jobs()
        assert job.host == WINRM
        done = await wait_job(core, job.id)
        assert done.state is JobState.SUCCEEDED, done.error
    restored = next(vm for vm in rig.target_lab.inventory(5).vms if vm.name == "web01-dr")
    got = disk_files(rig.target_lab.vm_folder(restored.id))
    assert {name.replace("web01-dr", "web01"): data for name, data in got.items()} == rig.expected(point)
