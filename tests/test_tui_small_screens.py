"""The console on an 80x24 and a 120x40 terminal: what an admin must still see and use there."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button, Input, Static
from tui_support import make_app, make_core, screen_text, settle

from hvtui.clock import FixedClock
from hvtui.hosts.lab.estate import init_lab
from hvtui.tui.screens.backup_dialog import BackupDialog
from hvtui.tui.screens.base import ViewTitle
from hvtui.tui.screens.dialogs import ChoiceDialog, TextDialog
from hvtui.tui.screens.vm_detail import NOW_NODE, VmDetailScreen
from hvtui.tui.screens.vms import VmsScreen

SIZES = [(80, 24), (120, 40)]


@pytest.mark.parametrize("size", SIZES)
async def test_vm_list_shows_last_backup_and_names_the_columns_it_leaves_out(
    shared_demo_lab: Path, paths, size: tuple[int, int]
) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, VmsScreen)
        text = screen_text(app)
        # "A checkpoint is not a backup": the checkpoints and the last backup side by side.
        assert {"checkpoints", "oldest", "backup"} <= set(screen.table.shown_columns)
        assert "LAST BACKUP" in text
        app01 = next(key for key in screen.table.keys if screen.table.plain_row(key)["name"] == "app01")
        assert screen.table.plain_row(app01)["backup"] == "never"
        title = screen.query_one(ViewTitle).text
        hidden = [spec.label for spec in screen.table.hidden_columns]
        if size[0] == 80:
            assert hidden == ["UPTIME", "DEPTH", "DIFF"]
            assert "too narrow for: UPTIME, DEPTH, DIFF" in title
        else:
            assert hidden == [] and "too narrow" not in title
        assert title in text  # the whole title is on screen, not cut

        # A resize says so too.
        await pilot.resize_terminal(100 if size[0] == 80 else 80, size[1])
        await settle(pilot)
        title = screen.query_one(ViewTitle).text
        shown_hidden = [spec.label for spec in screen.table.hidden_columns]
        assert shown_hidden != hidden
        assert ("too narrow for: " + ", ".join(shown_hidden)) in title if shown_hidden else "too narrow" not in title


async def open_vm(pilot, name: str) -> VmDetailScreen:
    await pilot.press("slash", *name, "enter", "enter")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, VmDetailScreen)
    for _ in range(100):
        if screen.points_loaded:
            break
        await pilot.pause(0.02)
    await settle(pilot)
    return screen


@pytest.mark.parametrize("size", SIZES)
async def test_two_restore_points_of_one_minute_are_told_apart(
    fresh_demo_lab: Path, paths, size: tuple[int, int]
) -> None:
    clock = FixedClock()
    core = make_core(fresh_demo_lab, paths, clock=clock)
    vm = next(vm for vm in core.inventory.refresh().vms if vm.name == "test01")
    first = core.backups.backup(vm.host, vm.id, "full").point_id
    clock.advance(seconds=20)
    second = core.backups.backup(vm.host, vm.id, "incremental").point_id
    app = make_app(core)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = await open_vm(pilot, "test01")
        assert [point.id for point in screen.points] == [second, first]
        lines = screen_text(app).splitlines()
        # Each point's whole id is on screen, on its own row, and the two rows read differently.
        rows = [next(line for line in lines if point_id in line) for point_id in (second, first)]
        assert rows[0] != rows[1]
        assert ":20 " in rows[0] and ":00 " in rows[1]  # the time, to the second


@pytest.mark.parametrize("size", SIZES)
async def test_vm_detail_opens_on_the_newest_checkpoint_so_its_keys_act_at_once(
    shared_demo_lab: Path, paths, size: tuple[int, int]
) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=size, notifications=True) as pilot:
        await settle(pilot)
        screen = await open_vm(pilot, "build01")
        vm = screen.vm
        assert vm is not None and len(vm.checkpoints) >= 2
        newest = max(vm.checkpoints, key=lambda cp: cp.created)
        selected = screen.selected_checkpoint
        assert selected is not None and selected.id == newest.id
        await pilot.press("r")  # no "select a checkpoint first": the rename dialog, for the newest
        await settle(pilot)
        assert isinstance(app.screen, TextDialog)
        assert app.screen.query_one(Input).value == newest.name
        assert "select a checkpoint" not in screen_text(app)


async def test_vm_detail_without_checkpoints_opens_on_now(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = await open_vm(pilot, "dc01")
        assert screen.vm is not None and not screen.vm.checkpoints
        assert screen.checkpoint_tree.cursor_node is not None
        assert screen.checkpoint_tree.cursor_node.data == NOW_NODE


@pytest.mark.parametrize("size", SIZES)
async def test_header_names_the_lab_and_says_its_counts_are_findings(
    shared_demo_lab: Path, paths, size: tuple[int, int]
) -> None:
    # The built-in demo lab in its own place (what `hvtui` with no config opens) ...
    init_lab(paths.lab_dir, "demo", FixedClock(), size=0.1)
    app = make_app(make_core(paths.lab_dir, paths))
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        header = screen_text(app).splitlines()[0]
        assert "LAB  demo lab │" in header
        crit, warn = app.snapshot.crit, app.snapshot.warn
        crit_vms = sum(1 for key in app.screen.table.keys if app.screen.table.plain_row(key)["health"] == "CRIT")
        assert crit != crit_vms  # the demo's VMs have several findings each: the two counts differ ...
        assert f"findings {crit} CRIT · {warn} WARN" in header  # ... so the header says which it counts
        assert header.rstrip().endswith("ago")  # the refresh age still fits at 80 columns

    # ... and any other lab directory, named by its path.
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        header = screen_text(app).splitlines()[0]
        assert "demo lab" not in header and str(shared_demo_lab)[-12:] in header


@pytest.mark.parametrize("size", SIZES)
async def test_one_checkpoint_is_said_in_the_singular(shared_demo_lab: Path, paths, size: tuple[int, int]) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = await open_vm(pilot, "test01")
        assert screen.vm is not None and screen.vm.checkpoint_count == 1
        title = screen.query_one(ViewTitle).text
        assert title.endswith("·  1 checkpoint") and title in screen_text(app)


def dialog_body(app) -> str:
    return str(app.screen.query_one("#dialog-text", Static).content)


@pytest.mark.parametrize("size", SIZES)
async def test_apply_dialog_says_what_this_checkpoint_type_leaves(shared_demo_lab: Path, paths, size: tuple[int, int]) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await open_vm(pilot, "app01")  # on its newest checkpoint, a Standard one
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog)
        body = dialog_body(app)
        assert "Production" not in body
        assert "this Standard checkpoint holds its memory" in body and "comes back Saved" in body
        await pilot.press("escape", "escape")
        await settle(pilot)

        await open_vm(pilot, "sql01")  # its one checkpoint is a Production one
        await pilot.press("a")
        await settle(pilot)
        body = dialog_body(app)
        assert "this Production checkpoint holds no memory, so the VM is left Off" in body
        assert "Saved" not in body


@pytest.mark.parametrize("size", SIZES)
async def test_checkpoint_tree_labels_end_in_an_ellipsis_where_they_are_cut(
    shared_demo_lab: Path, paths, size: tuple[int, int]
) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = await open_vm(pilot, "app01")  # a 9-deep chain: the deepest labels run out of room
        tree = screen.checkpoint_tree
        assert tree.virtual_size.width <= tree.scrollable_content_region.width  # nothing off to the right
        lines = screen_text(app).splitlines()[2 : 2 + tree.region.height]
        labelled = [line.rstrip() for line in lines if "Δ" in line or "running from" in line]
        assert len(labelled) >= 5
        for line in labelled:
            assert line.endswith(("MiB", "KiB", "GiB", "Bytes", "Running", "…")), line
        if size[0] == 80:
            assert any(line.endswith("…") for line in labelled)


@pytest.mark.parametrize("size", SIZES)
async def test_long_delete_subtree_dialog_keeps_the_merge_and_free_space_in_view(
    shared_demo_lab: Path, paths, size: tuple[int, int]
) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await open_vm(pilot, "app01")
        await pilot.press("home", "D")  # the oldest checkpoint's subtree: all nine go
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ChoiceDialog)
        await pilot.pause()
        text = screen_text(app)
        for shown in ("9 merges: about", "free, the merge may", "enough room", "This cannot be undone.", "No", "Delete subtree"):
            assert shown in text, shown
        body = dialog.query_one(".dialog-body")
        if body.max_scroll_y > 0:  # what does not fit scrolls, and says so; down scrolls it from the buttons
            assert "↑↓ scroll" in text
            await pilot.press("down")
            await pilot.pause()
            assert body.scroll_y > 0
        assert size[1] > 24 or body.max_scroll_y > 0  # at 24 rows the list of nine does not fit


@pytest.mark.parametrize("size", SIZES)
async def test_up_and_down_change_a_dialogs_choice_from_its_buttons(
    shared_demo_lab: Path, paths, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    core = make_core(shared_demo_lab, paths)
    # The VM has a restore point (without writing one into the shared lab): every mode can be chosen.
    monkeypatch.setattr(core.backups, "latest_point", lambda host, vm_id, repository=None: object())
    app = make_app(core)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("b")  # the backup dialog: the focus starts on "Back up"
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, BackupDialog)
        assert isinstance(app.focused, Button) and dialog.mode == "incremental"
        assert "↑↓ change the mode" in screen_text(app)
        await pilot.press("up")
        await pilot.pause()
        assert dialog.mode == "full"
        await pilot.press("down", "down", "down")  # stops at the last choice
        await pilot.pause()
        assert dialog.mode == "differential"
        await pilot.press("up", "up")
        await pilot.pause()
        assert dialog.mode == "full"
        assert isinstance(app.focused, Button)  # enter still presses "Back up"


@pytest.mark.parametrize("size", SIZES)
async def test_up_and_down_skip_the_modes_a_vm_without_a_point_cannot_have(
    shared_demo_lab: Path, paths, size: tuple[int, int]
) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, BackupDialog) and dialog.mode == "full"
        await pilot.press("down", "down")  # incremental and differential are greyed out: nothing to build on
        await pilot.pause()
        assert dialog.mode == "full" and isinstance(app.focused, Button)
