"""Change windows in the console at 80x24, through Textual's pilot, on a demo lab: marked VMs
and ``c`` offer "checkpoint all" (one job, a log line per VM); ``:changes`` lists the windows
VM by VM; roll back, promote and discard ask first (focus on "No") and run as actions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_tui_jobs import flat, job_taken, jobs_core, lab_vm, ready, to_vm_row, vm_named, wait_job, wait_until
from tui_support import click, make_app, screen_text, settle

from hvtui.audit import AuditLog
from hvtui.changes import VMState
from hvtui.clock import FixedClock
from hvtui.hosts.lab.estate import init_lab
from hvtui.paths import Paths
from hvtui.tui.screens.changes import ChangesScreen
from hvtui.tui.screens.dialogs import ChangeWindowDialog, ChoiceDialog, ConfirmDialog, CreateCheckpointDialog
from hvtui.tui.screens.vms import VmsScreen

SIZE = (80, 24)
NAME = "pre-patch"


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lab = tmp_path_factory.mktemp("changes-demo") / "lab"
    init_lab(lab, "demo", FixedClock(), size=0.1)
    return lab


@pytest.fixture
def lab(demo_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "lab"
    shutil.copytree(demo_template, target, symlinks=True)
    return target


async def changes_view(pilot) -> ChangesScreen:  # noqa: ANN001
    await pilot.press("colon", *"changes", "enter")
    assert await wait_until(pilot, lambda: isinstance(pilot.app.screen, ChangesScreen) and pilot.app.screen.loaded)
    return pilot.app.screen


async def test_checkpoint_all_on_marked_vms_is_one_job_and_the_window_is_listed(lab: Path, paths: Paths) -> None:
    core = jobs_core(lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        vms = [vm_named(app, name) for name in ("dc01", "test01")]  # on two hosts
        before = {vm.key: len(vm.checkpoints) for vm in vms}
        for vm in vms:
            await to_vm_row(pilot, vm.name)
            await pilot.press("space")
        await pilot.press("c")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ChangeWindowDialog))
        text = flat(screen_text(app))
        assert "Checkpoint all: a change window on 2 VMs" in text
        assert "Checkpoint all" in text and "Cancel" in text  # the buttons fit at 80x24
        dialog = app.screen
        assert dialog.request.name.startswith("pre-change ")
        dialog.query_one("#window-name").value = NAME
        dialog.query_one("#window-ticket").value = "CHG-42"
        await click(pilot, "#create")
        assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 1)
        (job,) = core.jobs.jobs()
        final = await wait_job(core, job.id)
        assert final.kind == "change-open" and final.state.value == "succeeded", final.error
        assert f"window {NAME} (ticket CHG-42): 2 of 2 VMs checkpointed" in final.summary["message"]
        per_vm = [line for line in final.log if "checkpoint taken" in line]
        assert len(per_vm) == 2  # a log line per VM
        await settle(pilot)
        assert isinstance(app.screen, VmsScreen) and app.screen.marked == set()

        screen = await changes_view(pilot)
        assert await wait_until(pilot, lambda: len(screen.table.keys) == 2)
        rows = [screen.table.plain_row(key) for key in screen.table.keys]
        assert {row["vm"] for row in rows} == {f"{vm.host}/{vm.name}" for vm in vms}
        assert {row["state"] for row in rows} == {"open"}
        shown = flat(screen_text(app))
        assert "roll back, promote or discard" in shown
        # At 80 columns the age and VM state columns give way; the detail line says them.
        detail = str(screen.query_one("#change-detail").content)
        assert f"window {NAME} (ticket CHG-42): Standard, opened 0 seconds ago by " in detail
        first = screen.selected
        assert f"{first.vm.host}/{first.vm.vm_name}: VM {vm_named(app, first.vm.vm_name).state}, checkpoint {first.vm.checkpoint_id}" in detail
        window = core.changes.window(NAME)
        assert window.ticket == "CHG-42" and len(window.holding) == 2
        for vm in vms:
            assert len(lab_vm(core, vm.host, vm.id).checkpoints) == before[vm.key] + 1


async def test_discard_asks_with_no_first_then_deletes_and_closes(lab: Path, paths: Paths) -> None:
    core = jobs_core(lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        vms = [vm_named(app, name) for name in ("dc01", "test01")]
        core.changes.open(NAME, vms)
        screen = await changes_view(pilot)
        assert await wait_until(pilot, lambda: len(screen.table.keys) == 2)

        # R: the VM under the cursor only.
        first = screen.selected.vm
        await pilot.press("R")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert f"Roll back window {NAME} on 1 VM?" in flat(screen_text(app))
        assert f"{first.host}/{first.vm_name}: now " in app.screen.body
        await click(pilot, "#yes")
        await settle(pilot)
        # The step runs in a worker the dialog's flow starts after the click: wait for its result.
        assert await wait_until(pilot, lambda: VMState.ROLLED_BACK in {v.state for v in core.changes.window(NAME).vms})
        states = {v.vm_name: v.state for v in core.changes.window(NAME).vms}
        assert await wait_until(pilot, lambda: screen.table.plain_row(screen.table.keys[0])["state"] == "rolled back")
        assert sorted(states.values()) == [VMState.OPEN, VMState.ROLLED_BACK] and states[first.vm_name] is VMState.ROLLED_BACK

        await pilot.press("d")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        text = flat(screen_text(app))
        assert f"Discard window {NAME} on 2 VMs?" in text
        await pilot.press("enter")  # the focus is on "No"
        await settle(pilot)

        def discard_entries() -> list[dict]:
            return [e for e in AuditLog(paths.audit_log).read() if e["action"] == "change.discard"]

        # The refusal is written by the dialog's flow in a thread: wait for it, then check it all.
        assert await wait_until(pilot, lambda: len(discard_entries()) >= 2)
        assert {v.vm_name: v.state for v in core.changes.window(NAME).vms} == states  # nothing changed
        declined = discard_entries()
        assert [e["result"] for e in declined] == ["declined", "declined"]

        await pilot.press("d")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        body = app.screen.body
        for vm in vms:
            assert f"{vm.host}/{vm.name}: about " in body
        assert "WITHOUT a backup" in body
        await click(pilot, "#yes")
        await settle(pilot)
        assert await wait_until(pilot, lambda: not core.changes.window(NAME).is_open)
        assert await wait_until(pilot, lambda: {screen.table.plain_row(k)["state"] for k in screen.table.keys} == {"discarded"})
        # Closed: the keys say why instead of doing nothing.
        await pilot.press("p")
        assert await wait_until(pilot, lambda: f"window {NAME} is closed" in flat(screen_text(app)))
        assert not isinstance(app.screen, ConfirmDialog)


async def test_promote_backs_up_then_deletes_and_read_only_refuses(lab: Path, paths: Paths) -> None:
    core = jobs_core(lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        vm = vm_named(app, "test01")
        core.changes.open(NAME, [vm])
        screen = await changes_view(pilot)
        assert await wait_until(pilot, lambda: len(screen.table.keys) == 1)
        await pilot.press("p")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert "only once its backup succeeded" in flat(app.screen.body)
        await click(pilot, "#yes")
        assert await wait_until(pilot, lambda: core.changes.window(NAME).vms[0].state is VMState.PROMOTED, rounds=2000)
        await settle(pilot)
        (entry,) = core.changes.window(NAME).vms
        assert entry.point_id in {p.id for p in core.backups.list_points()}
        assert NAME not in [cp.name for cp in lab_vm(core, vm.host, vm.id).checkpoints]

    read_only = jobs_core(lab, paths, read_only=True)
    app = make_app(read_only)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        read_only.changes.windows()  # the window is visible read-only too
        core_vm = vm_named(app, "dc01")
        await to_vm_row(pilot, core_vm.name)
        await pilot.press("space", "c")
        assert await wait_until(pilot, lambda: "read-only" in flat(screen_text(app)))  # the toast, painted
        assert not isinstance(app.screen, ChangeWindowDialog)


async def test_hostile_vm_names_are_escaped_in_the_changes_view(fresh_demo_lab: Path, paths: Paths) -> None:
    from test_cli_hostile_text import unsafe_characters
    from test_tui_hostile_text import SHOWN_NAME, make_names_hostile

    vm_id = make_names_hostile(fresh_demo_lab)
    core = jobs_core(fresh_demo_lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        vm = next(v for v in app.snapshot.inventory.vms if v.id == vm_id)
        core.changes.open(NAME, [vm])
        screen = await changes_view(pilot)
        assert await wait_until(pilot, lambda: len(screen.table.keys) == 1)
        detail = str(screen.query_one("#change-detail").content)
        assert unsafe_characters(detail) == [] and SHOWN_NAME in detail
        text = screen_text(app)
        assert unsafe_characters(text) == [], text
        await pilot.press("d")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert unsafe_characters(screen_text(app)) == []


async def test_c_on_a_filtered_list_offers_all_vms_of_the_filter(lab: Path, paths: Paths) -> None:
    core = jobs_core(lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        # One VM shown: c is the single checkpoint, as before.
        await pilot.press("slash", *"sql01", "enter")
        await pilot.press("c")
        assert await wait_until(pilot, lambda: isinstance(app.screen, CreateCheckpointDialog))
        await pilot.press("escape")
        assert await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen))

        await pilot.press("escape", "slash", *"web0", "enter")
        assert await wait_until(pilot, lambda: app.screen.filter_targets and len(app.screen.filter_targets) == 2)
        cursor = app.screen.selected_row.vm
        await pilot.press("c")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ChoiceDialog))
        text = flat(screen_text(app))
        assert f"Checkpoint {cursor.name}, or all 2 VMs of this filter?" in text
        assert "This VM" in text and "All 2 VMs" in text and "No" in text  # the buttons fit at 80x24
        assert app.screen.focused.id == "no"
        await click(pilot, "#choice-all")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ChangeWindowDialog))
        assert "Checkpoint all: a change window on 2 VMs" in flat(screen_text(app))
        app.screen.query_one("#window-name").value = NAME
        await click(pilot, "#create")
        assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 1)
        final = await wait_job(core, core.jobs.jobs()[0].id)
        assert final.state.value == "succeeded", final.error
        assert sorted(vm.vm_name for vm in core.changes.window(NAME).holding) == ["web01", "web02"]

        # "This VM" is the single checkpoint of the VM under the cursor.
        await job_taken(pilot, final.id)
        await pilot.press("c")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ChoiceDialog))
        await click(pilot, "#choice-one")
        assert await wait_until(pilot, lambda: isinstance(app.screen, CreateCheckpointDialog))


async def test_change_open_on_a_host_group_from_the_prompt(lab: Path, paths: Paths) -> None:
    import dataclasses

    from hvtui.config import HostConfig
    from hvtui.hosts.lab.estate import lab_host_names

    core = jobs_core(lab, paths)
    groups = {"lab-hv01": "prod", "lab-hv02": "test", "lab-hv03": "test"}
    hosts = tuple(HostConfig(name=name, kind="lab", group=groups[name]) for name in lab_host_names(lab))
    core.config = dataclasses.replace(core.config, hosts=hosts)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        await pilot.press("colon", *"change open --group nope", "enter")
        assert await wait_until(pilot, lambda: "host group 'nope': no such group or host (known: prod, test)" in flat(screen_text(app)))

        await pilot.press("colon", *"change open --group prod", "enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ChangeWindowDialog))
        assert "Checkpoint all: a change window on 5 VMs" in flat(screen_text(app))
        app.screen.query_one("#window-name").value = NAME
        await click(pilot, "#create")
        assert await wait_until(pilot, lambda: len(core.jobs.jobs()) == 1)
        final = await wait_job(core, core.jobs.jobs()[0].id)
        assert final.kind == "change-open", final.error
        window = core.changes.window(NAME)
        assert sorted(vm.vm_name for vm in window.vms) == ["app01", "dc01", "file01", "sql01", "web01"]
        assert {vm.host for vm in window.vms} == {"lab-hv01"}


async def test_the_findings_view_shows_a_window_once_and_enter_lists_its_vms(lab: Path, paths: Paths) -> None:
    from datetime import timedelta

    from hvtui.hosts.lab.host import LabHost
    from hvtui.policy import CHANGE_WINDOW_OPEN
    from hvtui.tui.screens.findings import FindingsScreen

    setup = jobs_core(lab, paths)
    vms = [vm for vm in setup.inventory.refresh().vms if vm.name in ("web01", "web02")]
    setup.changes.open(NAME, vms, ticket="CHG-5")
    three_days_ago = setup.clock.now() - timedelta(days=3)
    for ref in setup.changes.window(NAME).vms:
        LabHost.open(lab / ref.host, ref.host, FixedClock()).backdate_checkpoint(ref.vm_id, ref.checkpoint_id, three_days_ago)
    other = next(vm for vm in setup.inventory.refresh().vms if vm.name == "dc01")
    setup.changes.open("other-window", [other])
    setup.close()

    app = make_app(jobs_core(lab, paths))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FindingsScreen)
        windows = [key for key in screen.table.keys if screen._by_key[key].finding.rule == CHANGE_WINDOW_OPEN]
        assert len(windows) == 1  # one row for the window, not one per VM
        finding = screen._by_key[windows[0]].finding
        assert finding.severity.label == "WARN" and finding.vm_keys == tuple(sorted(vm.key for vm in vms))
        for vm in vms:  # the VM list: each VM of the window shows at least the window's severity
            assert app.snapshot.rows[vm.key].health >= finding.severity
        assert screen.table.move_to_key(windows[0])
        await pilot.pause()
        assert f"window {NAME} (ticket CHG-5): 2 VMs, 3 days open" in flat(screen_text(app))
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ChangesScreen) and app.screen.loaded)
        changes = app.screen
        assert await wait_until(pilot, lambda: len(changes.table.keys) == 2)
        assert {changes.table.plain_row(key)["vm"].rpartition("/")[2] for key in changes.table.keys} == {"web01", "web02"}
        assert f"filter: {NAME}" in flat(screen_text(app))


async def test_rollback_can_start_each_vm_afterwards(lab: Path, paths: Paths) -> None:
    from hvtui.tui.screens.dialogs import RollbackDialog

    core = jobs_core(lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        vms = [vm_named(app, name) for name in ("dc01", "test01")]
        core.changes.open(NAME, vms)
        screen = await changes_view(pilot)
        assert await wait_until(pilot, lambda: len(screen.table.keys) == 2)
        await pilot.press("r")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RollbackDialog))
        dialog = app.screen
        assert "start each VM afterwards" in flat(screen_text(app))
        assert app.focused is not None and app.focused.id == "no"  # enter alone still changes nothing
        await click(pilot, "#start-after")
        await click(pilot, "#yes")
        await settle(pilot)
        assert dialog.start_after
        assert await wait_until(pilot, lambda: {v.state for v in core.changes.window(NAME).vms} == {VMState.ROLLED_BACK})
        assert await wait_until(pilot, lambda: all(core.host(vm.host).vm(vm.id).state == "Running" for vm in vms))
        assert await wait_until(pilot, lambda: "rolled back and started 2 of 2 VMs" in flat(screen_text(app)))
    starts = [(e["vm"], e["result"], e["args"]["window"]) for e in AuditLog(paths.audit_log).read() if e["action"] == "vm.start"]
    assert sorted(starts) == [("dc01", "ok", NAME), ("test01", "ok", NAME)]
