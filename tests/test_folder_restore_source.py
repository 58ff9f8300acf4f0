"""A restore into a folder runs on this machine, but what it restores comes from a host: the job
keeps the point's host and VM and every listing says "from <host>/<vm> into <folder>" (it said
"on local", host "local")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tui_support import make_app, make_core, screen_text, settle

from hvtui.cli import main
from hvtui.jobs import JobState
from hvtui.tui.screens.jobs import JobsScreen

DEADLINE = 60.0  # a hang guard for the job, not a speed assertion


async def test_a_folder_restore_names_its_source_in_the_console_and_in_hvtui_jobs(
    fresh_demo_lab: Path, paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    core = make_core(fresh_demo_lab, paths)
    vm = next(v for v in core.inventory.refresh().vms if v.name == "test01")
    point = core.backups.backup(vm.host, vm.id, "full").point_id
    folder = tmp_path / "restored"
    route = f"from {vm.host}/test01 into {folder}"
    app = make_app(core)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        job = core.jobs.submit_restore(point, "directory", directory=folder)
        done = await asyncio.to_thread(core.jobs.wait, job.id, DEADLINE)
        assert done.state is JobState.SUCCEEDED, done.error
        assert done.params["source_host"] == vm.host and done.vm_name == "test01"
        assert done.title == f"restore (directory) {route}"
        await pilot.press("j")
        for _ in range(200):
            if isinstance(app.screen, JobsScreen) and job.id in app.screen.table.keys:
                break
            await pilot.pause(0.02)
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        row = screen.table.plain_row(job.id)
        assert row["host"] == vm.host and row["vm"] == "test01"
        assert route in screen.detail_text
        assert "local" not in " ".join(screen_text(app).split()).replace(str(folder), "")

    capsys.readouterr()
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith(job.id))
    assert f"  {vm.host}  " in line and route in line and " local " not in line
