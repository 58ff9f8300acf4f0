"""The console restores a point backed up from a WinRM host (loopback WS-Management + real Samba,
the SMB3 data path both ways): the restore dialog picks the target host, a lab host and the
WinRM host itself, and the restored disks are the point's bytes (pilot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_support import make_host
from test_tui_jobs import ready, wait_job, wait_until
from test_winrm_roundtrip import Rig, backed_up_twice, rig  # noqa: F401 - the fixture
from textual.widgets import Select
from tui_support import SIZE, make_app, screen_text
from winrm_rig_support import disk_files, qemu_check
from wsman_server import PASSWORD_ENV

from hvtui.config import Config, HostConfig, RepositoryConfig, SecretSource, WinRMSettings
from hvtui.core import Core
from hvtui.hosts.lab.disk import read_logical
from hvtui.jobs import JobState
from hvtui.paths import Paths
from hvtui.tui.screens.dialogs import ConfirmDialog
from hvtui.tui.screens.restore_dialog import RestoreDialog
from hvtui.tui.screens.vm_detail import VmDetailScreen

WINRM = "hv-test"


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def core(rig: Rig, tmp_path: Path, paths: Paths):  # noqa: ANN201, F811 - the imported fixture
    other = make_host(tmp_path, "lab-b")
    winrm = WinRMSettings(
        address="127.0.0.1", port=rig.server.port, scheme="http", transport="basic", username="hvtui",
        password=SecretSource(env=PASSWORD_ENV), timeout=5.0, operation_timeout=1.0,
    )  # fmt: skip
    config = Config(
        source=tmp_path / "config.yaml",
        hosts=(HostConfig(name=WINRM, kind="winrm", winrm=winrm), HostConfig(name="lab-b", kind="lab")),
        repositories=(RepositoryConfig(name="default", path=rig.repo.root, default=True),),
    )
    core = Core(config, paths, hosts={WINRM: rig.winrm, "lab-b": other})
    core.other_lab = other  # type: ignore[attr-defined]
    yield core
    core.close()


@pytest.mark.parametrize("target", ["lab-b", WINRM])
async def test_the_console_restores_a_winrm_point_on_the_target_host_it_picks(
    rig: Rig, core: Core, target: str  # noqa: F811 - the imported fixture
) -> None:
    vm_id, point, content = backed_up_twice(rig)
    expected = rig.expected(point)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        app.open_vm(WINRM, vm_id)
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded)
        await pilot.press("t")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RestoreDialog))
        dialog = app.screen
        assert isinstance(dialog, RestoreDialog)
        assert dialog.target_hosts[0] == WINRM and "lab-b" in dialog.target_hosts
        dialog.query_one("#restore-name").value = "web01-dr"
        dialog.query_one("#restore-host", Select).value = target
        assert await wait_until(pilot, lambda: f"on {target}: " in dialog.space_text), dialog.space_text
        await pilot.click("#next")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert f"Restore as new VM web01-dr on {target}?" in flat(screen_text(app))
        await pilot.press("right", "enter")
        assert await wait_until(pilot, lambda: any(j.kind == "restore" for j in core.jobs.jobs()))
        job = next(j for j in core.jobs.jobs() if j.kind == "restore")
        assert job.host == target
        done = await wait_job(core, job.id)
        assert done.state is JobState.SUCCEEDED, done.error
    lab = core.other_lab if target == "lab-b" else rig.lab  # type: ignore[attr-defined]
    restored = next(vm for vm in lab.inventory(5).vms if vm.name == "web01-dr")
    folder = lab.vm_folder(restored.id)
    assert {name.replace("web01-dr", "web01"): data for name, data in disk_files(folder).items()} == expected
    for path in folder.glob("*.vhdx"):
        qemu_check(path)
    assert read_logical(Path(restored.disks[0].path)) == content
