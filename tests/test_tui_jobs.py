"""Backup and restore jobs in the console, through Textual's pilot, on a demo lab.

Real everything: the lab hosts' disk files, the engine, the repository under the test's
XDG data directory, the job manager and its journal.  To watch a job while it runs, a
``Gate`` wraps the real backup kind and holds the job inside its data phase (after the
engine reported some bytes done) until the test releases it or the job is cancelled:
the engine itself is untouched.  Waits are bounded loops (a hang guard), never timings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kill_support import kill_backup_at
from textual.pilot import Pilot
from tui_support import SIZE, click, make_app, make_core, screen_text, settle

from hvtui.clock import FixedClock
from hvtui.config import Config, JobsConfig
from hvtui.core import Core
from hvtui.hosts.lab.estate import init_lab
from hvtui.jobs import Job, JobKind, JobState
from hvtui.model import VM
from hvtui.paths import Paths
from hvtui.tui.app import HvtuiApp
from hvtui.tui.jobs_ui import REDRAW_SECONDS
from hvtui.tui.screens.backup_dialog import BackupDialog
from hvtui.tui.screens.dialogs import ChoiceDialog, ConfirmDialog
from hvtui.tui.screens.help import HelpScreen
from hvtui.tui.screens.jobs import JobsScreen
from hvtui.tui.screens.restore_dialog import RestoreDialog
from hvtui.tui.screens.vm_detail import VmDetailScreen
from hvtui.tui.screens.vms import MARK, VmsScreen
from hvtui.tui.viewmodel.format import size_text

DEADLINE = 60.0  # seconds: a hang guard for job waits, not a speed assertion


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo lab at a quarter of its data (backups of a few MiB), built once per module."""
    lab = tmp_path_factory.mktemp("jobs-demo") / "lab"
    init_lab(lab, "demo", FixedClock(), size=0.25)
    return lab


@pytest.fixture
def lab(demo_template: Path, tmp_path: Path) -> Path:
    """A copy of the template for one test (jobs change the lab)."""
    target = tmp_path / "lab"
    shutil.copytree(demo_template, target, symlinks=True)
    return target


def jobs_core(lab: Path, paths: Paths, max_concurrent: int = 2, per_host: int = 1, read_only: bool = False) -> Core:
    config = dataclasses.replace(Config.lab_default(), jobs=JobsConfig(max_concurrent=max_concurrent, per_host=per_host))
    core = make_core(lab, paths, config=config, read_only=read_only)
    core.backups.progress_interval = 0  # every engine progress event reaches the manager
    return core


class Gate:
    """Holds every backup job inside its data phase until ``release`` (or its cancel)."""

    def __init__(self, core: Core) -> None:
        self.release = threading.Event()
        self.reached = threading.Event()
        self.held: list[str] = []
        real = core.jobs.kind("backup")
        assert real is not None

        def build(job: Job):  # noqa: ANN202 - a RunFn
            run = real.build(job)

            def gated(progress, cancel):  # noqa: ANN001, ANN202
                def on_progress(event) -> None:  # noqa: ANN001
                    progress(event)
                    if event.phase == "backup" and event.done > 0 and not self.release.is_set() and job.id not in self.held:
                        self.held.append(job.id)
                        self.reached.set()
                        while not self.release.is_set() and not cancel.cancelled:
                            cancel.wait(0.02)

                return run(on_progress, cancel)

            return gated

        core.jobs.register_kind(JobKind("backup", build=build, before_resume=real.before_resume))


async def wait_until(pilot: Pilot, predicate: Callable[[], object], rounds: int = 400) -> bool:
    """Let the app run until ``predicate`` holds (bounded: a hang guard, not a timing)."""
    for _ in range(rounds):
        if predicate():
            return True
        await pilot.pause(0.02)
    return bool(predicate())


async def ready(pilot: Pilot) -> None:
    """The first refresh shown and the jobs connected (the manager built, the journal read)."""
    await settle(pilot)
    assert await wait_until(pilot, lambda: pilot.app.jobs_ui.manager is not None)


async def wait_job(core: Core, job_id: str) -> Job:
    job = await asyncio.to_thread(core.jobs.wait, job_id, DEADLINE)
    assert job.is_final, f"job {job_id} did not finish: {job.state}"
    return job


async def job_taken(pilot: Pilot, job_id: str) -> None:
    """The console has taken the job's end (its toast posted, its hosts' refresh done) and the
    toasts are cleared: a toast arriving later could land on the next dialog's buttons."""
    assert await wait_until(pilot, lambda: (job := pilot.app.jobs_ui.job(job_id)) is not None and job.is_final)
    await settle(pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


def vm_named(app: HvtuiApp, name: str):  # noqa: ANN201
    return next(vm for vm in app.snapshot.inventory.vms if vm.name == name)


def lab_vm(core: Core, host: str, vm_id: str):  # noqa: ANN201
    """The VM as its host has it now (not the console's last refresh)."""
    return next(vm for vm in core.host(host).inventory(30.0).vms if vm.id == vm_id)


async def to_vm_row(pilot: Pilot, name: str) -> None:
    app = pilot.app
    assert isinstance(app.screen, VmsScreen)
    assert app.screen.table.move_to_key(vm_named(app, name).key)
    await pilot.pause()


async def jobs_view(pilot: Pilot) -> JobsScreen:
    await pilot.press("j")
    assert await wait_until(pilot, lambda: isinstance(pilot.app.screen, JobsScreen))
    return pilot.app.screen


def job_row(screen: JobsScreen, job_id: str) -> dict[str, str]:
    return screen.table.plain_row(job_id) if job_id in screen.table.keys else {}


def flat(text: str) -> str:
    """Screen text with toast and dialog line breaks and borders folded away."""
    return " ".join(text.replace("▌", " ").replace("▐", " ").split())


# -- backup from the table -------------------------------------------------------------------------


async def test_backup_from_the_table_shows_progress_then_the_point(lab: Path, paths: Paths) -> None:
    core = jobs_core(lab, paths)
    gate = Gate(core)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        # Record when the controller redraws the jobs (to check its 2 Hz ceiling below).
        drains: list[float] = []
        real_drain = app.jobs_ui._drain

        def recording_drain() -> None:
            drains.append(time.monotonic())
            real_drain()

        app.jobs_ui._drain = recording_drain
        vm = vm_named(app, "test01")
        assert vm.checkpoints, "test01 keeps a checkpoint in the demo lab"
        assert any(f.rule == "checkpoint-not-backup" and f.vm_id == vm.id for f in app.snapshot.findings)
        assert app.screen.table.plain_row(vm.key)["backup"] == "never"

        await to_vm_row(pilot, "test01")
        await pilot.press("b")
        assert await wait_until(pilot, lambda: isinstance(app.screen, BackupDialog))
        dialog = app.screen
        assert dialog.request.mode == "full" and dialog.request.repository == "default"  # no point yet
        text = screen_text(app)
        assert "Back up test01 on lab-hv02" in text and "no restore point yet" in text
        # a lab host's checkpoint has no VSS to choose: no consistency choice, none sent
        assert "Consistency" not in text and dialog.request.consistency is None
        await pilot.press("enter")  # the focus starts on "Back up"

        assert await wait_until(pilot, gate.reached.is_set)
        (job,) = core.jobs.jobs()
        assert (job.kind, job.vm, job.host, job.mode) == ("backup", "test01", "lab-hv02", "full")
        screen = await jobs_view(pilot)
        # Held inside the data phase: the row shows a running job with bytes done.
        assert await wait_until(pilot, lambda: job_row(screen, job.id).get("state") == "running" and "%" in job_row(screen, job.id)["progress"])
        running = core.jobs.job(job.id)
        assert running.progress is not None and running.progress.phase == "backup" and running.progress.done > 0
        row = job_row(screen, job.id)
        assert row["bytes"] == f"{size_text(running.progress.done)} / {size_text(running.progress.total)}"
        assert row["vm"] == "test01" and row["mode"] == "full"
        assert "backup (full) of test01 on lab-hv02" in screen_text(app)  # the running-job line under the view
        assert "progress: backup" in screen.detail_text

        gate.release.set()
        done = await wait_job(core, job.id)
        assert done.state is JobState.SUCCEEDED, done.error
        point_id = done.summary["point_id"]
        assert await wait_until(pilot, lambda: job_row(screen, job.id).get("state") == "succeeded")
        assert job_row(screen, job.id)["progress"].startswith("done in")
        assert point_id in screen.detail_text and "Summary" in screen.detail_text
        assert await wait_until(pilot, lambda: "Job finished" in screen_text(app))
        # However many events the engine sent, the jobs were redrawn at most twice a second.
        assert len(drains) >= 2
        assert all(later - earlier >= REDRAW_SECONDS * 0.9 for earlier, later in zip(drains, drains[1:], strict=False))

        # The VM list: the last-backup column is filled, the checkpoint-not-backup finding gone.
        await pilot.press("v")
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen))

        def backed_up() -> bool:
            snapshot = app.snapshot
            return app.screen.table.plain_row(vm.key)["backup"].endswith("ago") and not any(
                f.rule == "checkpoint-not-backup" and f.vm_id == vm.id for f in snapshot.findings
            )

        assert await wait_until(pilot, backed_up)

        # The VM's detail lists the point; a second backup defaults to incremental.
        await to_vm_row(pilot, "test01")
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded)
        detail = app.screen
        assert [p.id for p in detail.points] == [point_id]
        assert detail.points_table.row_count == 1
        # The title is updated with the points; the screen shows it at its next repaint.
        assert await wait_until(pilot, lambda: "Restore points (1)" in screen_text(app))
        await pilot.press("b")
        assert await wait_until(pilot, lambda: isinstance(app.screen, BackupDialog))
        assert app.screen.request.mode == "incremental"
        await pilot.press("escape")
        await settle(pilot)
        assert len(core.jobs.jobs()) == 1  # escape started nothing


# -- cancel ------------------------------------------------------------------------------------------


async def test_cancel_a_running_backup_leaves_the_repository_and_the_vm_clean(lab: Path, paths: Paths) -> None:
    core = jobs_core(lab, paths)
    inventory = core.inventory.refresh()
    vm = next(v for v in inventory.vms if v.name == "test01")
    first = core.backups.backup(vm.host, vm.id, "full")  # a point to be incremental from
    checkpoints_before = [cp.id for cp in lab_vm(core, vm.host, vm.id).checkpoints]
    gate = Gate(core)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        await to_vm_row(pilot, "test01")
        await pilot.press("b")
        assert await wait_until(pilot, lambda: isinstance(app.screen, BackupDialog))
        assert app.screen.request.mode == "incremental"
        await pilot.press("enter")
        assert await wait_until(pilot, gate.reached.is_set)
        (job,) = core.jobs.jobs()
        held = lab_vm(core, vm.host, vm.id)
        assert [cp.type for cp in held.checkpoints].count("Recovery") == 1  # the backup's own checkpoint

        screen = await jobs_view(pilot)
        assert await wait_until(pilot, lambda: job_row(screen, job.id).get("state") == "running")
        await pilot.press("c")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert app.screen.focused is not None and app.screen.focused.id == "no"
        text = flat(screen_text(app))
        assert "Cancel backup (incremental) of test01 on lab-hv02?" in text and "Recovery checkpoint" in text
        await pilot.press("enter")  # enter alone: "Keep it"
        assert await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        assert not core.jobs.job(job.id).cancel_requested and core.jobs.job(job.id).state is JobState.RUNNING

        await pilot.press("c")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("right", "enter")  # "Cancel job"
        done = await wait_job(core, job.id)
        assert done.state is JobState.CANCELLED
        assert await wait_until(pilot, lambda: job_row(screen, job.id).get("state") == "cancelled")
        assert await wait_until(pilot, lambda: "Job cancelled" in screen_text(app))
        assert app.screen.check_action("cancel_job", ()) is None  # nothing left to cancel
        assert app.screen.check_action("retry_job", ()) is True

        after = lab_vm(core, vm.host, vm.id)
        assert [cp.id for cp in after.checkpoints] == checkpoints_before  # the Recovery checkpoint is gone
        assert "Recovery" not in [cp.type for cp in after.checkpoints]
        assert [p.id for p in core.backups.list_points(vm.host, vm.id)] == [first.point_id]
        report = core.backups.verify()
        assert report.ok, report

        # R runs it again as a new job, which now finishes.
        gate.release.set()
        await pilot.press("R")
        assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 2)
        retried = core.jobs.jobs()[-1]
        assert retried.retry_of == job.id and retried.mode == "incremental"
        assert (await wait_job(core, retried.id)).state is JobState.SUCCEEDED
        assert await wait_until(pilot, lambda: job_row(screen, retried.id).get("state") == "succeeded")
    assert len(core.backups.list_points(vm.host, vm.id)) == 2
    assert [cp.id for cp in lab_vm(core, vm.host, vm.id).checkpoints] == checkpoints_before


# -- restore ------------------------------------------------------------------------------------------


async def test_restore_a_point_as_a_new_vm(lab: Path, paths: Paths) -> None:
    core = jobs_core(lab, paths)
    inventory = core.inventory.refresh()
    vm = next(v for v in inventory.vms if v.name == "dc01")
    point = core.backups.backup(vm.host, vm.id, "full")
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        app.open_vm(vm.host, vm.id)
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded)
        detail = app.screen
        assert [p.id for p in detail.points] == [point.point_id]
        assert detail.points[0].mode == "full"

        # A name that exists on the host: the job fails and says why in plain words.
        await pilot.press("t")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RestoreDialog))
        dialog = app.screen
        assert dialog.target == "new"
        assert dialog.query_one("#restore-name").value.startswith("dc01-restore-")
        dialog.query_one("#restore-name").value = "web01"
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert app.screen.focused.id == "no"
        text = flat(screen_text(app))
        assert "Restore as new VM web01 on lab-hv01?" in text and "Nothing existing is overwritten" in text
        await pilot.press("right", "enter")
        assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 1)
        (failing,) = core.jobs.jobs()
        failed = await wait_job(core, failing.id)
        assert failed.state is JobState.FAILED and "already exists" in failed.error
        # A taken name is a refusal (issue 15.8: one vocabulary with the audit log and the exit code).
        assert failed.error_kind == "refused" and failed.state_word == "refused"
        assert await wait_until(pilot, lambda: "Job refused" in screen_text(app))
        assert "already exists" in flat(screen_text(app))

        # A new name: the VM appears in the inventory and the VM list.
        await pilot.press("t")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RestoreDialog))
        app.screen.query_one("#restore-name").value = "dc01-copy"
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("right", "enter")
        assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 2)
        restore = core.jobs.jobs()[-1]
        assert (restore.kind, restore.mode) == ("restore", "new")
        done = await wait_job(core, restore.id)
        assert done.state is JobState.SUCCEEDED, done.error
        new_id = done.summary["vm_id"]
        assert await wait_until(pilot, lambda: app.snapshot.inventory.vm(vm.host, new_id) is not None)
        assert app.snapshot.inventory.vm(vm.host, new_id).name == "dc01-copy"
        await pilot.press("escape")
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen))
        assert await wait_until(pilot, lambda: f"{vm.host}/{new_id}" in app.screen.table.keys)
        assert "dc01-copy" in screen_text(app)


async def test_a_damaged_manifest_is_named_above_the_restore_points(lab: Path, paths: Paths) -> None:
    # It cannot be tied to a VM, and it may be this VM's newest point: the view says so.
    core = jobs_core(lab, paths)
    inventory = core.inventory.refresh()
    vm = next(v for v in inventory.vms if v.name == "dc01")
    older = core.backups.backup(vm.host, vm.id, "full")
    newest = core.backups.backup(vm.host, vm.id, "full")
    repository = core.config.default_repository()
    manifest = Path(repository.path) / "points" / f"{newest.point_id}.json"
    manifest.write_bytes(manifest.read_bytes()[:100])
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.open_vm(vm.host, vm.id)
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded)
        detail = app.screen
        assert [p.id for p in detail.points] == [older.point_id]
        assert detail.damaged_manifests == [f"{repository.name}/{newest.point_id}"]
        # The title is updated with the points; the screen shows it at its next repaint (read at
        # once, a loaded machine's screen still had the title from before).
        warning = f"1 damaged manifest ({repository.name}/{newest.point_id}): maybe this VM's newest point"
        assert await wait_until(pilot, lambda: warning in flat(screen_text(app)))


async def test_in_place_restore_names_what_is_lost_and_defaults_to_no(lab: Path, paths: Paths) -> None:
    core = jobs_core(lab, paths)
    inventory = core.inventory.refresh()
    test01 = next(v for v in inventory.vms if v.name == "test01")  # off, one checkpoint
    dc01 = next(v for v in inventory.vms if v.name == "dc01")  # running
    core.backups.backup(test01.host, test01.id, "full")
    core.backups.backup(dc01.host, dc01.id, "full")
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        app.open_vm(test01.host, test01.id)
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded)
        await pilot.press("t")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RestoreDialog))
        await click(pilot, "#target-in_place")
        assert app.screen.target == "in_place"
        await click(pilot, "#next")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ChoiceDialog))
        dialog = app.screen
        assert dialog.focused.id == "no"
        text = flat(screen_text(app))
        assert "Overwrite VM test01 on lab-hv02?" in text
        assert "'Clean install'" in text and "are lost" in text.replace("These are lost", "are lost")
        for disk in test01.disks:
            assert disk.path in dialog.body
        await pilot.press("enter")  # "No"
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen))
        await settle(pilot)
        assert core.jobs.jobs() == []

        # Over a running VM: refused before any confirmation, in plain words.
        app.pop_screen()
        app.open_vm(dc01.host, dc01.id)
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen) and app.screen.vm_id == dc01.id and app.screen.points_loaded)
        await pilot.press("t")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RestoreDialog))
        await click(pilot, "#target-in_place")
        await click(pilot, "#next")
        assert await wait_until(pilot, lambda: "turn it off before restoring over it" in flat(screen_text(app)))
        assert not isinstance(app.screen, (ConfirmDialog, ChoiceDialog))
        assert core.jobs.jobs() == []


async def open_in_place_confirmation(pilot: Pilot, app: HvtuiApp, vm: VM) -> None:
    """From the VM's detail, `t`, "over the original VM", Next: up to the confirmation."""
    app.open_vm(vm.host, vm.id)
    assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded)
    await pilot.press("t")
    assert await wait_until(pilot, lambda: isinstance(app.screen, RestoreDialog))
    await click(pilot, "#target-in_place")
    await click(pilot, "#next")
    assert await wait_until(pilot, lambda: isinstance(app.screen, ChoiceDialog))


async def test_in_place_confirmation_names_checkpoints_made_after_the_point_and_the_bytes(lab: Path, paths: Paths) -> None:
    core = jobs_core(lab, paths)
    test01 = next(v for v in core.inventory.refresh().vms if v.name == "test01")  # off, 'Clean install'
    core.backups.backup(test01.host, test01.id, "full")
    core.host(test01.host).create_checkpoint(test01.id, "made after the point", "Standard")
    core.inventory.refresh()
    plan = core.backups.plan_restore(core.backups.latest_point(test01.host, test01.id).id, in_place=True)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        await open_in_place_confirmation(pilot, app, test01)
        body = app.screen.body
        assert "Checkpoints lost (1)" in body and "'made after the point'" in body
        assert "Checkpoints restored: 'Clean install'" in body
        assert size_text(plan.lost_bytes).replace(" ", "") in body.replace(" ", "")
        for f in plan.deleted:
            assert f.name in body
        await pilot.press("enter")  # "No"
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen))
    assert [cp.name for cp in lab_vm(core, test01.host, test01.id).checkpoints][-1] == "made after the point"


async def test_in_place_restore_can_back_the_vm_up_first(lab: Path, paths: Paths) -> None:
    """ "Back up first" takes a backup of the VM as it is now, and restores only after it succeeded."""
    core = jobs_core(lab, paths)
    test01 = next(v for v in core.inventory.refresh().vms if v.name == "test01")  # off
    core.backups.backup(test01.host, test01.id, "full")
    core.host(test01.host).create_checkpoint(test01.id, "made after the point", "Standard")
    core.inventory.refresh()
    (point,) = core.backups.list_points(test01.host, test01.id)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        await open_in_place_confirmation(pilot, app, test01)
        assert "Back up first" in flat(screen_text(app))
        await click(pilot, "#choice-backup-first")
        assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 2 and all(j.is_final for j in core.jobs.jobs()), 3000)
    backup, restore = sorted(core.jobs.jobs(), key=lambda j: j.created)
    assert (backup.kind, backup.state, restore.kind, restore.state) == ("backup", JobState.SUCCEEDED, "restore", JobState.SUCCEEDED)
    assert restore.params["point_id"] == point.id
    # The state before the restore is a restore point of its own, checkpoint and all.
    before = [p for p in core.backups.list_points(test01.host, test01.id) if p.id != point.id]
    assert [p.id for p in before] == [backup.summary["point_id"]]
    assert "made after the point" not in [cp.name for cp in lab_vm(core, test01.host, test01.id).checkpoints]


# -- limits, marks, quitting, the journal ---------------------------------------------------------------


async def test_marked_vms_back_up_within_the_concurrency_limit(lab: Path, paths: Paths) -> None:
    core = jobs_core(lab, paths, max_concurrent=1, per_host=1)
    gate = Gate(core)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        for name in ("dc01", "test01"):  # on two hosts: only the global limit holds the second back
            await to_vm_row(pilot, name)
            await pilot.press("space")
        await settle(pilot)
        screen = app.screen
        marked = {vm_named(app, name).key for name in ("dc01", "test01")}
        assert screen.marked == marked
        for key in marked:
            assert screen.table.plain_row(key)["name"].startswith(MARK)
        assert "marked: 2" in screen_text(app)

        await pilot.press("b")
        assert await wait_until(pilot, lambda: isinstance(app.screen, BackupDialog))
        assert "Back up 2 VMs" in screen_text(app)
        assert app.screen.request.mode == "full"
        await pilot.press("enter")
        assert await wait_until(pilot, gate.reached.is_set)
        assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 2)
        jobs_screen = await jobs_view(pilot)

        def states() -> list[str]:
            return sorted(job_row(jobs_screen, job.id).get("state", "") for job in core.jobs.jobs())

        assert await wait_until(pilot, lambda: states() == ["queued", "running"])
        assert core.jobs.running_count == 1
        queued = next(job for job in core.jobs.jobs() if job.state is JobState.QUEUED)
        assert job_row(jobs_screen, queued.id)["progress"] == "waiting"
        assert "1 running · 1 queued" in screen_text(app)

        gate.release.set()
        for job in core.jobs.jobs():
            assert (await wait_job(core, job.id)).state is JobState.SUCCEEDED
        assert await wait_until(pilot, lambda: states() == ["succeeded", "succeeded"])
        await pilot.press("v")
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen))
        assert app.screen.marked == set()  # submitting cleared the marks
        assert {p.vm_name for p in core.backups.list_points()} == {"dc01", "test01"}


async def test_quitting_with_a_running_job_asks_and_cancels_it(lab: Path, paths: Paths) -> None:
    core = jobs_core(lab, paths)
    gate = Gate(core)
    inventory = core.inventory.refresh()
    vm = next(v for v in inventory.vms if v.name == "dc01")
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        job = core.jobs.submit_backup(vm.host, vm.id, vm_name=vm.name)
        assert await wait_until(pilot, gate.reached.is_set)
        await pilot.press("q")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        text = flat(screen_text(app))
        assert "1 job will be cancelled" in text and "backup (full) of dc01 on lab-hv01" in text
        assert "removes its Recovery checkpoint" in text
        await pilot.press("enter")  # "No": stays, the job keeps running
        assert await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
        assert app.is_running and core.jobs.job(job.id).state is JobState.RUNNING

        await pilot.press("q")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("right", "enter")  # "Quit"
        done = await wait_job(core, job.id)
        assert done.state is JobState.CANCELLED
        for _ in range(200):
            if app.return_code is not None:
                break
            await asyncio.sleep(0.02)
    assert app.return_code == 0
    assert [cp.type for cp in lab_vm(core, vm.host, vm.id).checkpoints] == []  # no checkpoint left
    assert core.backups.list_points(vm.host, vm.id) == []

    # The next console lists the cancelled job (from the journal), and R retries it.
    later = jobs_core(lab, paths)
    app = make_app(later)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = await jobs_view(pilot)
        assert await wait_until(pilot, lambda: job_row(screen, job.id).get("state") == "cancelled")
        assert screen.selected_job.id == job.id
        await pilot.press("R")
        assert await wait_until(pilot, lambda: len(later.jobs.jobs()) == 1)
        (retried,) = later.jobs.jobs()
        assert retried.retry_of == job.id and retried.vm_id == vm.id
        assert (await wait_job(later, retried.id)).state is JobState.SUCCEEDED
        assert await wait_until(pilot, lambda: job_row(screen, retried.id).get("state") == "succeeded")
    assert len(later.backups.list_points(vm.host, vm.id)) == 1


async def test_a_job_killed_with_its_console_is_offered_on_start_and_resumes(lab: Path, paths: Paths, tmp_path: Path) -> None:
    core = jobs_core(lab, paths)
    vm = next(v for v in core.inventory.refresh().vms if v.name == "dc01")
    job_id = kill_backup_at(
        "backup", module="tui_support", factory="child_core", root=lab, host=vm.host, vm_id=vm.id, vm_name=vm.name,
        marker=tmp_path / "held", min_done=1,
    )  # fmt: skip
    assert [cp.type for cp in lab_vm(core, vm.host, vm.id).checkpoints] == ["Recovery"]  # left by the killed run

    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        assert await wait_until(pilot, lambda: job_id in app.jobs_ui.jobs)
        assert await wait_until(pilot, lambda: "Interrupted jobs" in screen_text(app))
        assert "1 job was interrupted" in flat(screen_text(app))
        screen = await jobs_view(pilot)
        assert await wait_until(pilot, lambda: job_row(screen, job_id).get("state") == "interrupted")
        assert screen.table.keys[0] == job_id and screen.selected_job.id == job_id
        assert job_row(screen, job_id)["progress"] == "r resumes"
        assert "1 interrupted" in screen_text(app)
        assert screen.check_action("resume_job", ()) is True and screen.check_action("dismiss_job", ()) is True

        await pilot.press("r")
        assert await wait_until(pilot, lambda: any(job.resumed_from == job_id for job in core.jobs.jobs()))
        resumed = next(job for job in core.jobs.jobs() if job.resumed_from == job_id)
        done = await wait_job(core, resumed.id)
        assert done.state is JobState.SUCCEEDED, done.error
        assert await wait_until(pilot, lambda: job_row(screen, job_id).get("state") == "resumed")
        assert await wait_until(pilot, lambda: job_row(screen, resumed.id).get("state") == "succeeded")
        assert core.jobs.interrupted_jobs() == []

    assert [cp.type for cp in lab_vm(core, vm.host, vm.id).checkpoints] == []  # the leftover was removed
    (point,) = core.backups.list_points(vm.host, vm.id)
    assert point.id == done.summary["point_id"]
    assert core.backups.verify().ok


# -- read-only and help -------------------------------------------------------------------------------


async def test_read_only_backup_key_unavailable_and_help_lists_job_keys(lab: Path, paths: Paths, tmp_path: Path) -> None:
    writable = jobs_core(lab, paths)
    web01 = next(v for v in writable.inventory.refresh().vms if v.name == "web01")
    point = writable.backups.backup(web01.host, web01.id, "full")
    core = jobs_core(lab, paths, read_only=True)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        await to_vm_row(pilot, "dc01")
        assert app.screen.check_action("backup", ()) is None  # shown, greyed out
        await pilot.press("b")
        await settle(pilot)
        assert isinstance(app.screen, VmsScreen)
        assert "Backup: hvtui runs read-only" in screen_text(app)  # the greyed key says why
        app.jobs_ui.start_backup([vm_named(app, "dc01")])  # even if called directly
        await settle(pilot)
        assert isinstance(app.screen, VmsScreen) and "Refused" in screen_text(app)
        assert core.jobs.jobs() == []

        await pilot.press("question_mark")
        assert await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_text = app.screen.text
        for binding in [*JobsScreen.BINDINGS, *VmsScreen.BINDINGS, *VmDetailScreen.BINDINGS, *HvtuiApp.BINDINGS]:
            assert binding.description in help_text, binding
        lines = help_text.splitlines()
        assert any(line.startswith("b\tBackup\tunavailable: read-only") for line in lines)
        assert any(line.startswith("space\tMark") for line in lines)
        assert any(line.startswith("j\tJobs") for line in lines)
        await pilot.press("escape")

        # Read-only still restores into a folder (no host changes); the host targets are off.
        app.open_vm(web01.host, web01.id)
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded)
        assert app.screen.check_action("backup_vm", ()) is None
        await pilot.press("t")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RestoreDialog))
        dialog = app.screen
        assert dialog.target == "directory"
        assert dialog.query_one("#target-new").disabled and dialog.query_one("#target-in_place").disabled
        assert "Read-only: only a folder restore is possible" in flat(screen_text(app))
        target = tmp_path / "restored"
        dialog.query_one("#restore-directory").value = str(target)
        app.clear_notifications()  # the "b" notice's toast may still cover the button
        await click(pilot, "#next")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert str(target) in app.screen.body and "Nothing is overwritten" in app.screen.body
        await pilot.press("right", "enter")
        assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 1)
        (restore,) = core.jobs.jobs()
        done = await wait_job(core, restore.id)
        assert done.state is JobState.SUCCEEDED, done.error
        assert (restore.host, restore.mode, done.summary["point_id"]) == ("local", "directory", point.point_id)
        restored = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
        assert restored and any(name.endswith(".vhdx") for name in restored)


async def test_an_interrupted_job_can_be_dismissed(lab: Path, paths: Paths) -> None:
    """A journal left by a process that is gone (its pid no longer runs): offered, then dismissed."""
    from hvtui.journal import JobJournal

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(DEADLINE)
    journal = JobJournal(paths.job_journal)
    params = {"mode": "full", "auto_mode": False, "repository": "default"}
    journal.append(
        "submitted", "deadbeef", at="2026-11-24T11:00:00+00:00", kind="backup", host="lab-hv01", vm_id="x",
        vm_name="web01", params=params, retry_of=None, resumed_from=None, pid=gone.pid, proc_start=None,
    )
    journal.append("started", "deadbeef", at="2026-11-24T11:00:01+00:00", pid=gone.pid, proc_start=None)
    core = jobs_core(lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        assert await wait_until(pilot, lambda: "Interrupted jobs" in screen_text(app))
        screen = await jobs_view(pilot)
        assert await wait_until(pilot, lambda: job_row(screen, "deadbeef").get("state") == "interrupted")
        assert "interrupted while running" in screen.detail_text and "x dismisses it" in screen.detail_text
        await pilot.press("x")
        assert await wait_until(pilot, lambda: job_row(screen, "deadbeef").get("state") == "dismissed")
        assert screen.check_action("resume_job", ()) is None
        await pilot.press("r")  # greyed out now: the key says why
        assert await wait_until(pilot, lambda: "Resume interrupted: only a job interrupted" in flat(screen_text(app)))
        await pilot.press("c")
        assert await wait_until(pilot, lambda: "Cancel job: the job is not running" in flat(screen_text(app)))
        assert core.jobs.interrupted_jobs() == []
        assert core.jobs.jobs() == []  # nothing was run


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_an_interrupted_job_names_the_process_not_the_console(lab: Path, paths: Paths, size: tuple[int, int]) -> None:
    """A job a CLI command ran (`hvtui backup`, killed) is offered like any other: its text must not
    say a console ran it; it names the process that did."""
    from hvtui.journal import JobJournal

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(DEADLINE)
    journal = JobJournal(paths.job_journal)
    params = {"mode": "full", "auto_mode": False, "repository": "default"}
    journal.append(
        "submitted", "c0ffee00", at="2026-11-24T11:00:00+00:00", kind="backup", host="lab-hv01", vm_id="x",
        vm_name="web01", params=params, retry_of=None, resumed_from=None, pid=gone.pid, proc_start=None,
    )  # fmt: skip
    journal.append("started", "c0ffee00", at="2026-11-24T11:00:01+00:00", pid=gone.pid, proc_start=None)
    app = make_app(jobs_core(lab, paths))
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        screen = await jobs_view(pilot)
        assert await wait_until(pilot, lambda: job_row(screen, "c0ffee00").get("state") == "interrupted")
        detail = flat(screen.detail_text)
        assert "console" not in detail
        assert f"the hvtui process that ran it (pid {gone.pid}) ended without finishing it" in detail


# -- the formatting, without the app ---------------------------------------------------------------------


def _job(**changes) -> Job:  # noqa: ANN003
    from datetime import UTC, datetime

    from hvtui.events import Progress

    base = Job(
        id="1a2b3c4d", kind="backup", host="hv1", vm_id="id1", vm_name="web01", params={"mode": "full", "repository": "default"},
        state=JobState.RUNNING, created=datetime(2026, 11, 24, 12, tzinfo=UTC), started=datetime(2026, 11, 24, 12, tzinfo=UTC),
        progress=Progress(phase="backup", done=3 * 2**30, total=4 * 2**30, rate=200 * 2**20, eta=5.2, dedup_ratio=1.5, compression_ratio=2.0),
    )
    return dataclasses.replace(base, **changes)


def test_job_rows_spell_out_state_progress_and_ratios() -> None:
    from hvtui.tui.widgets.job_row import JOB_COLUMN_IDS, bar_text, duration_text, job_detail, job_plain

    row = dict(zip(JOB_COLUMN_IDS, job_plain(_job()), strict=True))
    assert row["state"] == "running" and row["vm"] == "web01" and row["mode"] == "full"
    assert row["progress"] == bar_text(0.75) == "████████░░  75%"
    assert row["bytes"] == "3.0 GiB / 4.0 GiB"
    assert row["rate"] == "200.0 MiB/s" and row["eta"] == "5s"
    assert (row["dedup"], row["comp"]) == ("1.5×", "2.0×")
    cancelling = dict(zip(JOB_COLUMN_IDS, job_plain(_job(cancel_requested=True)), strict=True))
    assert cancelling["state"] == "cancelling"
    queued = dict(zip(JOB_COLUMN_IDS, job_plain(_job(state=JobState.QUEUED, progress=None, started=None)), strict=True))
    assert (queued["progress"], queued["bytes"], queued["rate"]) == ("waiting", "", "")
    failed = _job(state=JobState.FAILED, error="host hv1: access denied", error_kind="host")
    assert dict(zip(JOB_COLUMN_IDS, job_plain(failed), strict=True))["rate"] == ""  # only while running
    assert "failed: host hv1: access denied" in job_detail(failed)
    assert [duration_text(s) for s in (0.2, 42, 185, 3725)] == ["<1s", "42s", "3m05s", "1h02m"]
