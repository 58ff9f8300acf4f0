"""The console with a repository in an S3 bucket (a real SeaweedFS): a backup into the local
repository is followed by its copy job into the bucket, and `:repos` shows the bucket
repository's backend, where it lives, its encryption, points and endpoint."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY
from test_tui_jobs import flat, ready, wait_job, wait_until
from tui_support import make_app, make_core, screen_text, settle

from hvtui.clock import FixedClock
from hvtui.config import Config, RepositoryConfig, S3RepositoryConfig, SecretSource
from hvtui.core import Core
from hvtui.engine import keys
from hvtui.paths import Paths
from hvtui.tui.screens.repositories import RepositoriesScreen

SIZE = (180, 40)


@pytest.fixture
def core(fresh_demo_lab: Path, paths: Paths, seaweed, monkeypatch: pytest.MonkeyPatch) -> Core:  # noqa: ANN001
    monkeypatch.setattr(keys, "SCRYPT_N", 1 << 12)
    monkeypatch.setenv("HVTUI_TEST_S3_ACCESS", ACCESS_KEY)
    monkeypatch.setenv("HVTUI_TEST_S3_SECRET", SECRET_KEY)
    monkeypatch.setenv("HVTUI_TEST_OFFSITE", "offsite pass phrase")
    s3 = S3RepositoryConfig(
        bucket=BUCKET, endpoint=seaweed.endpoint, prefix=f"tui-{uuid.uuid4().hex[:8]}", region="us-east-1",
        access_key=SecretSource(env="HVTUI_TEST_S3_ACCESS"), secret_key=SecretSource(env="HVTUI_TEST_S3_SECRET"),
    )  # fmt: skip
    main = RepositoryConfig(name="main", path=paths.data_dir / "main", default=True, copy_to="offsite")
    offsite = RepositoryConfig(
        name="offsite", path=paths.repository_working_dir("offsite"), format=2,
        passphrase=SecretSource(env="HVTUI_TEST_OFFSITE"), s3=s3,
    )  # fmt: skip
    config = dataclasses.replace(Config.lab_default(paths), repositories=(main, offsite))
    made = make_core(fresh_demo_lab, paths, clock=FixedClock(), config=config)
    made.backups.progress_interval = 0
    return made


async def test_a_copy_job_into_the_bucket_and_the_repositories_view(core: Core) -> None:
    s3 = core.config.repositories[1].s3
    assert s3 is not None
    vm = next(vm for vm in core.inventory.refresh().vms if vm.name == "test01")
    job = core.jobs.submit_backup(vm.host, vm.id, "full", vm_name=vm.name)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        backup = await wait_job(core, job.id)
        assert backup.summary is not None and backup.summary.get("copy_job"), backup.error
        copy = await wait_job(core, backup.summary["copy_job"])
        assert copy.state_word == "succeeded", copy.error

        await pilot.press("colon", *"repos", "enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RepositoriesScreen) and app.screen.loaded)
        await settle(pilot)
        assert "Repositories [2]" in flat(screen_text(app))
        line = next(line for line in screen_text(app).splitlines() if line.lstrip().startswith("offsite"))
        assert " s3 " in line and "encrypted" in line and f"s3://{BUCKET}/{s3.prefix}" in line and "from main" in line
        assert " 1 " in line  # the copied point, listed from the bucket (not the empty local working folder)
        screen = app.screen
        assert isinstance(screen, RepositoriesScreen)
        await pilot.press("down")
        await settle(pilot)
        assert screen.selected.key == "offsite"
        detail = flat(screen_text(app))
        assert f"offsite: s3 repository at s3://{BUCKET}/{s3.prefix}" in detail and f"endpoint {s3.endpoint}" in detail
