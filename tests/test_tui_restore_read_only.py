"""The restore dialog's read-only check follows the chosen target host: a point of a read-only
host can still go to another, writable host as a new VM (and into a folder); a read-only target
greys "as a new VM" out and says why.  The job layer refuses a read-only target on its own too.
Real lab hosts on disk, the real engine and repository, the pilot."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_support import add_vm, make_host
from test_tui_jobs import ready, wait_job, wait_until
from textual.widgets import Input, Select
from tui_support import SIZE, make_app, screen_text

from hvtui.config import Config, HostConfig, RepositoryConfig
from hvtui.core import Core
from hvtui.errors import ReadOnlyError
from hvtui.hosts.lab.host import LabHost
from hvtui.jobs import JobState
from hvtui.paths import Paths
from hvtui.tui.screens.dialogs import ConfirmDialog
from hvtui.tui.screens.restore_dialog import RestoreDialog
from hvtui.tui.screens.vm_detail import VmDetailScreen


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def hosts(tmp_path: Path) -> dict[str, LabHost]:
    return {name: make_host(tmp_path, name) for name in ("lab-src", "lab-ok", "lab-ro")}


@pytest.fixture
def core(hosts: dict[str, LabHost], tmp_path: Path, paths: Paths):  # noqa: ANN201
    config = Config(
        source=tmp_path / "config.yaml",
        hosts=tuple(HostConfig(name=name, kind="lab") for name in hosts),
        repositories=(RepositoryConfig(name="default", path=tmp_path / "repo", default=True),),
    )
    core = Core(config, paths, hosts=dict(hosts))
    yield core
    core.close()


def backed_up_then_read_only(core: Core, hosts: dict[str, LabHost]) -> tuple[str, str]:
    """A point of web01 on lab-src; then lab-src and lab-ro become read-only."""
    vm_id = add_vm(hosts["lab-src"], "web01", blocks=3, seed=4)
    point = core.backups.backup("lab-src", vm_id, "full").point_id
    hosts["lab-src"].read_only = True
    hosts["lab-ro"].read_only = True
    return vm_id, point


async def test_a_point_of_a_read_only_host_goes_as_a_new_vm_to_a_writable_target_host(
    core: Core, hosts: dict[str, LabHost]
) -> None:
    vm_id, point = backed_up_then_read_only(core, hosts)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        app.open_vm("lab-src", vm_id)
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded)
        await pilot.press("t")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RestoreDialog))
        dialog = app.screen
        assert isinstance(dialog, RestoreDialog)
        # The point's own host first: read-only, so only a folder restore, and the note says why.
        assert dialog.target_host == "lab-src" and dialog.target == "directory"
        assert dialog.query_one("#target-new").disabled and dialog.query_one("#target-in_place").disabled
        assert not dialog.query_one("#target-directory").disabled
        assert "Read-only: only a folder restore is possible (host lab-src is read-only)" in flat(screen_text(app))
        # A writable target: "as a new VM" comes back; in place stays off (it is lab-src's).
        dialog.query_one("#restore-host", Select).value = "lab-ok"
        assert await wait_until(pilot, lambda: not dialog.query_one("#target-new").disabled)
        assert dialog.query_one("#target-in_place").disabled
        assert "not in place (host lab-src is read-only); a new VM on lab-ok" in flat(screen_text(app))
        dialog.select_target("new")
        name = dialog.query_one("#restore-name", Input)
        name.value = "web01-dr"
        name.focus()
        await pilot.press("enter")  # submits the dialog (the lab's long tmp paths push Next… low)
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert "Restore as new VM web01-dr on lab-ok?" in flat(screen_text(app))
        await pilot.press("right", "enter")
        assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 1)
        (job,) = core.jobs.jobs()
        done = await wait_job(core, job.id)
        assert done.state is JobState.SUCCEEDED, done.error
        assert job.host == "lab-ok" and done.summary["point_id"] == point
    assert [vm.name for vm in hosts["lab-ok"].inventory(5).vms] == ["web01-dr"]
    assert [vm.name for vm in hosts["lab-src"].inventory(5).vms] == ["web01"]


async def test_a_read_only_target_host_greys_out_the_new_vm_and_says_why(
    core: Core, hosts: dict[str, LabHost]
) -> None:
    vm_id, _point = backed_up_then_read_only(core, hosts)
    hosts["lab-src"].read_only = False  # the point's host writable: the default is a new VM there
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        app.open_vm("lab-src", vm_id)
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded)
        await pilot.press("t")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RestoreDialog))
        dialog = app.screen
        assert isinstance(dialog, RestoreDialog)
        assert dialog.target == "new" and not dialog.query_one("#target-new").disabled
        assert "Read-only" not in screen_text(app)
        # The console lists only writable hosts besides the point's own; one that turns
        # read-only while the dialog is open (or one listed by a caller) is refused here.
        assert "lab-ro" not in dialog.target_hosts
        dialog.target_hosts = (*dialog.target_hosts, "lab-ro")
        dialog.query_one("#restore-host", Select).set_options([(name, name) for name in dialog.target_hosts])
        dialog.query_one("#restore-host", Select).value = "lab-ro"
        assert await wait_until(pilot, lambda: dialog.query_one("#target-new").disabled)
        assert dialog.target == "directory"  # moved off the refused choice
        assert "no new VM on lab-ro (host lab-ro is read-only)" in flat(screen_text(app))
        assert not dialog.query_one("#target-in_place").disabled
        dialog.query_one("#restore-host", Select).value = "lab-src"
        assert await wait_until(pilot, lambda: not dialog.query_one("#target-new").disabled)
        assert "Read-only" not in screen_text(app)


def test_the_job_layer_refuses_a_new_vm_on_a_read_only_host_and_audits_it(core: Core, hosts: dict[str, LabHost]) -> None:
    _vm_id, point = backed_up_then_read_only(core, hosts)
    with pytest.raises(ReadOnlyError, match="lab-ro"):
        core.jobs.submit_restore(point, "new", new_name="web01-dr", host="lab-ro")
    assert core.jobs.jobs() == [] and not hosts["lab-ro"].inventory(5).vms
    entry = [e for e in core.audit.read() if e.get("action") == "restore-as-new"][-1]
    assert entry["host"] == "lab-ro" and entry["result"] == "refused", entry
    # The read-only source does not stop a new VM elsewhere.
    job = core.jobs.submit_restore(point, "new", new_name="web01-dr", host="lab-ok")
    assert core.jobs.wait(job.id, 60).state is JobState.SUCCEEDED
