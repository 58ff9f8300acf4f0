"""Copies in the console, through Textual's pilot, on a demo lab: copy jobs in the jobs view;
`:repos` lists each repository (backend, format, encryption, size, points, last copy, copy_to);
a VM's restore points say in which other repositories copies of them are."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from test_repository_migrate_cli import open_detail
from test_tui_jobs import flat, jobs_view, ready, wait_job, wait_until
from tui_support import make_app, make_core, screen_text, settle

from hvtui.clock import FixedClock
from hvtui.config import Config, RepositoryConfig
from hvtui.core import Core
from hvtui.paths import Paths
from hvtui.tui.screens.repositories import RepositoriesScreen

SIZE = (160, 40)
PASSPHRASE = "offsite pass phrase"


@pytest.fixture
def core(fresh_demo_lab: Path, paths: Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Core:
    monkeypatch.setenv("HVTUI_TEST_OFFSITE", PASSPHRASE)
    from hvtui.secrets import SecretSource

    main = RepositoryConfig(name="main", path=tmp_path / "main", default=True, copy_to="offsite")
    offsite = RepositoryConfig(name="offsite", path=tmp_path / "offsite", passphrase=SecretSource(env="HVTUI_TEST_OFFSITE"))
    config = dataclasses.replace(Config.lab_default(paths), repositories=(main, offsite))
    made = make_core(fresh_demo_lab, paths, clock=FixedClock(), config=config)
    made.backups.progress_interval = 0
    return made


async def test_copy_jobs_the_repositories_view_and_where_copies_are(core: Core) -> None:
    vm = next(vm for vm in core.inventory.refresh().vms if vm.name == "test01")
    job = core.jobs.submit_backup(vm.host, vm.id, "full", vm_name=vm.name)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        backup = await wait_job(core, job.id)
        assert backup.summary is not None and backup.summary.get("copy_job"), backup.error
        point = backup.summary["point_id"]
        copy = await wait_job(core, backup.summary["copy_job"])
        assert copy.state_word == "succeeded", copy.error

        screen = await jobs_view(pilot)
        assert await wait_until(pilot, lambda: "copy of test01 from main to offsite" in flat(screen_text(app)))

        await pilot.press("colon", *"repos", "enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RepositoriesScreen) and app.screen.loaded)
        await settle(pilot)
        text = flat(screen_text(app))
        assert "Repositories [2]" in text
        main_line = next(line for line in screen_text(app).splitlines() if "main (default)" in line)
        assert " 1 " in main_line and "offsite" in main_line and " none " in main_line
        offsite_line = next(line for line in screen_text(app).splitlines() if line.lstrip().startswith("offsite"))
        assert "encrypted" in offsite_line and "from main" in offsite_line
        del screen

        detail = await open_detail(app, pilot, vm)
        rows = {detail.points_table.get_row_at(i)[6]: detail.points_table.get_row_at(i) for i in range(detail.points_table.row_count)}
        assert set(rows) == {"main", "offsite"}
        assert str(rows["main"][1]) == point and str(rows["main"][7]) == "offsite"
        assert str(rows["offsite"][7]) == "main"


async def test_the_findings_view_shows_a_point_without_an_offsite_copy(core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HVTUI_TEST_OFFSITE")  # the copy after the backup fails
    vm = next(vm for vm in core.inventory.refresh().vms if vm.name == "test01")
    result = core.backups.backup(vm.host, vm.id, "full")
    repo = core.backups.open_repository("main")
    assert repo is not None
    point = repo.load_point(result.point_id)
    repo.commit_point(dataclasses.replace(point, time=point.time - timedelta(days=4)))  # as if 4 days old
    core.backups.points_changed("main")
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        await pilot.press("f")
        await settle(pilot)
        assert await wait_until(pilot, lambda: "has no copy in offsite" in flat(screen_text(app)))
        line = next(line for line in screen_text(app).splitlines() if "has no copy in offsite" in line)
        assert "test01" in line and "CRIT" in line.upper()
