"""The console through Textual's pilot, on the embedded demo lab: press keys, read the screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_support import SIZE, make_app, make_core, refreshed, screen_text, settle

from hvtui.clock import FixedClock
from hvtui.config import Config, HostConfig
from hvtui.errors import ReadOnlyError
from hvtui.hosts.lab import estate
from hvtui.model import Severity
from hvtui.tui.app import HvtuiApp
from hvtui.tui.screens.dialogs import ChoiceDialog, ConfirmDialog, CreateCheckpointDialog, TextDialog
from hvtui.tui.screens.findings import FindingsScreen
from hvtui.tui.screens.help import HelpScreen
from hvtui.tui.screens.vm_detail import NOW_NODE, VmDetailScreen
from hvtui.tui.screens.vms import VmsScreen
from hvtui.tui.viewmodel.format import seconds_between


def vm_table(app: HvtuiApp):
    screen = app.screen
    assert isinstance(screen, VmsScreen), type(screen)
    return screen.table


def shown_names(app: HvtuiApp) -> list[str]:
    table = vm_table(app)
    return [table.plain_row(key)["name"] for key in table.keys]


async def type_text(pilot, text: str) -> None:
    await pilot.press(*[{"/": "slash", " ": "space", ":": "colon"}.get(ch, ch) for ch in text])


def vm_by_name(app: HvtuiApp, name: str):
    return next(vm for vm in app.snapshot.inventory.vms if vm.name == name)


# -- the VM list ---------------------------------------------------------------------------------


async def test_table_lists_every_lab_vm_with_header(shared_demo_lab: Path, paths) -> None:
    core = make_core(shared_demo_lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        inventory = core.inventory.latest
        expected = sorted(vm.name for vm in inventory.vms)
        assert len(expected) >= 12
        assert sorted(shown_names(app)) == expected
        text = screen_text(app)
        for name in expected:
            assert name in text
        header = text.splitlines()[0]
        # A lab given by its directory is named by it (the built-in demo lab lives elsewhere).
        assert "LAB" in header and str(shared_demo_lab)[-12:] in header and "demo lab" not in header
        assert f"hosts {len(inventory.hosts)}/{len(inventory.hosts)}" in header
        crit, warn = app.snapshot.crit, app.snapshot.warn
        assert crit > 0 and warn > 0
        assert f"{crit} CRIT" in header and f"{warn} WARN" in header
        assert "RW" in header and " RO " not in header
        # Health is written as text, not colour alone: app01 (9-deep chain) is CRIT.
        table = vm_table(app)
        app01 = vm_by_name(app, "app01")
        assert table.plain_row(app01.key)["health"] == "CRIT"
        assert table.plain_row(app01.key)["depth"] == str(app01.chain_depth)


async def test_filter_narrows_by_host_or_vm_and_escape_clears(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        everything = sorted(shown_names(app))
        on_hv02 = sorted(vm.name for vm in app.snapshot.inventory.host("lab-hv02").vms)

        await pilot.press("slash")
        await type_text(pilot, "hv02")
        await settle(pilot)
        assert sorted(shown_names(app)) == on_hv02
        assert "filter: hv02" in screen_text(app)

        await pilot.press("enter")  # keeps the filter, back in the table
        await settle(pilot)
        assert sorted(shown_names(app)) == on_hv02

        await pilot.press("escape")  # clears it
        await settle(pilot)
        assert sorted(shown_names(app)) == everything

        await pilot.press("slash")
        await type_text(pilot, "APP0")  # case-insensitive, matches the VM name
        await settle(pilot)
        assert shown_names(app) == ["app01"]
        await pilot.press("escape")
        await settle(pilot)
        assert sorted(shown_names(app)) == everything


async def test_sort_by_oldest_checkpoint_uses_real_ages(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("A")  # sort by oldest checkpoint age, oldest first
        await settle(pilot)
        table = vm_table(app)

        def age(key: str) -> float:
            vm = app.snapshot.rows[key].vm
            oldest = vm.oldest_checkpoint
            return seconds_between(app.snapshot.inventory.host(vm.host).facts.now, oldest.created) if oldest else -1.0

        ages = [age(key) for key in table.keys]
        assert ages == sorted(ages, reverse=True)
        shown = [table.plain_row(key)["oldest"] for key in table.keys if age(key) >= 0]
        # Sorted by text, "a month" / "a day" / "9 days" / "10 days" would interleave wrongly.
        assert shown != sorted(shown, reverse=True)
        assert len(set(shown)) >= 5

        await pilot.press("A")  # again: reversed
        await settle(pilot)
        ages = [age(key) for key in table.keys]
        assert ages == sorted(ages)
        assert "sort: oldest cp ↑" in screen_text(app)

        await pilot.press("Z")  # differencing bytes, biggest first
        await settle(pilot)
        sizes = [app.snapshot.rows[key].vm.differencing_bytes for key in table.keys]
        assert sizes == sorted(sizes, reverse=True)


async def test_enter_opens_detail_with_checkpoint_tree(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await type_text(pilot, "app01")
        await pilot.press("enter", "enter")  # keep the filter, then open the row
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, VmDetailScreen)
        vm = vm_by_name(app, "app01")
        labels = {node.data: str(node.label) for node in _walk(screen.checkpoint_tree.root) if node.data}
        assert set(labels) == {cp.id for cp in vm.checkpoints} | {NOW_NODE}
        for cp in vm.checkpoints:
            assert cp.name in labels[cp.id] and cp.type in labels[cp.id]
        assert "▶ Now" in labels[NOW_NODE]
        # "Now" hangs under the checkpoint the VM runs from.
        now_node = next(n for n in _walk(screen.checkpoint_tree.root) if n.data == NOW_NODE)
        assert now_node.parent.data == vm.parent_checkpoint_id
        # The cursor starts on the newest checkpoint (d/a/r act on it at once), right above
        # "Now" here; the disk chain and findings are listed.
        newest = max(vm.checkpoints, key=lambda cp: cp.created)
        assert screen.checkpoint_tree.cursor_node is now_node.parent
        assert screen.checkpoint_tree.cursor_node.data == newest.id
        text = screen_text(app)
        assert "app01" in text and "Findings" in text
        info = str(screen.query_one("#vm-info").content)
        for link in vm.disks[0].chain:
            assert link.path.replace("\\", "/").rsplit("/", 1)[-1] in info
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, VmsScreen)


async def test_a_greyed_checkpoint_key_says_why(shared_demo_lab: Path, paths) -> None:
    # On "▶ Now" d/a/r/D need a checkpoint under the cursor.  Pressing one says so instead
    # of silently doing nothing; on a checkpoint the same key opens its dialog.
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        app01 = vm_by_name(app, "app01")
        app.open_vm(app01.host, app01.id)
        await settle(pilot)
        await pilot.press("down")  # from the newest checkpoint onto "▶ Now"
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, VmDetailScreen) and detail.selected_checkpoint is None
        await pilot.press("d")
        await settle(pilot)
        assert app.screen is detail  # no dialog
        assert "Delete: select a checkpoint first" in screen_text(app)
        await pilot.press("colon", "r")  # typed into the command prompt: no notice
        await settle(pilot)
        assert "Rename: select a checkpoint first" not in screen_text(app)
        await pilot.press("escape", "up", "d")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog | ConfirmDialog), type(app.screen)


async def test_greyed_keys_in_the_vm_list_say_why(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths, read_only=True))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        for key, said in (("c", "New checkpoint: hvtui runs read-only"), ("b", "Backup: hvtui runs read-only")):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, VmsScreen), key  # no dialog
            assert said in screen_text(app), key


async def test_a_greyed_key_on_a_read_only_host_says_read_only(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths, read_only=True))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        app01 = vm_by_name(app, "app01")
        app.open_vm(app01.host, app01.id, app01.checkpoints[0].id)
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, VmDetailScreen)
        assert "New checkpoint: hvtui runs read-only" in screen_text(app)


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


async def test_help_lists_every_binding(shared_demo_lab: Path, paths) -> None:
    from hvtui.tui.screens.vm_detail import VmDetailScreen as Detail

    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        help_text = app.screen.text
        for screen_class in (HvtuiApp, VmsScreen, Detail, FindingsScreen):
            for binding in screen_class.BINDINGS:
                assert binding.description in help_text, binding
        for command in (":vms", ":findings", ":jobs", ":theme", ":q"):
            assert command in help_text
        shown = screen_text(app)
        assert "Sort by oldest checkpoint age" in shown
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, VmsScreen)


async def test_everything_fits_at_80x24(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        text = screen_text(app)
        lines = text.splitlines()
        assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
        for name in (vm.name for vm in app.snapshot.inventory.vms):
            assert name in text
        table = vm_table(app)
        assert {"health", "host", "name", "state", "checkpoints"} <= set(table.shown_columns)
        assert "backup" in table.shown_columns and "LAST BACKUP" in text  # "a checkpoint is not a backup"
        assert "? Help" in lines[-1]

        await pilot.press("slash")
        await type_text(pilot, "app01")
        await pilot.press("enter", "enter")
        await settle(pilot)
        assert "▶ Now" in screen_text(app)
        await pilot.press("up", "d")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog)
        dialog_text = screen_text(app)
        assert " No " in dialog_text and "Delete" in dialog_text
        await pilot.press("escape", "escape")
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert "Help" in screen_text(app) or "keys" in screen_text(app)


# -- findings ----------------------------------------------------------------------------------


async def test_findings_view_lists_demo_problems_sorted(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FindingsScreen)
        findings = [screen._by_key[key].finding for key in screen.table.keys]
        assert len(findings) == len(app.snapshot.findings)
        rules = {f.rule for f in findings}
        for rule in (
            "checkpoint-age",
            "chain-depth",
            "recovery-checkpoint-left",
            "stray-disk-file",
            "running-on-avhdx",
            "checkpoint-not-backup",
            "merge-headroom",
        ):
            assert rule in rules, rule
        order = [(-int(f.severity), -(f.age_seconds or 0.0)) for f in findings]
        assert order == sorted(order)
        assert findings[0].severity == Severity.CRIT

        await pilot.press("slash")
        await type_text(pilot, "stray")
        await settle(pilot)
        shown = [screen._by_key[key].finding.rule for key in screen.table.keys]
        assert shown and set(shown) == {"stray-disk-file"}
        await pilot.press("escape", "escape")  # clear, then back to the VM list
        await settle(pilot)
        assert isinstance(app.screen, VmsScreen)


async def test_enter_on_finding_opens_vm_with_culprit_selected(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon")
        await type_text(pilot, "findings recovery")
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FindingsScreen)
        finding = screen.selected
        assert finding is not None and finding.rule == "recovery-checkpoint-left"
        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, VmDetailScreen)
        assert detail.vm_id == finding.vm_id
        assert detail.selected_checkpoint is not None
        assert detail.selected_checkpoint.id == finding.checkpoint_id
        assert detail.selected_checkpoint.type == "Recovery"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, FindingsScreen)


# -- checkpoint actions --------------------------------------------------------------------------


def _culprit(app: HvtuiApp, vm_name: str, rule: str):
    return next(f for f in app.snapshot.findings if f.vm_name == vm_name and f.rule == rule and f.checkpoint_id)


async def test_delete_confirmation_defaults_to_no(fresh_demo_lab: Path, paths) -> None:
    core = make_core(fresh_demo_lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        finding = _culprit(app, "app01", "checkpoint-age")
        vm = vm_by_name(app, "app01")
        cp = vm.checkpoint(finding.checkpoint_id)
        files_before = sorted(p.name for p in fresh_demo_lab.rglob("*.avhdx"))
        app.open_vm(finding.host, finding.vm_id, finding.checkpoint_id)
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ChoiceDialog)
        assert dialog.focused is not None and dialog.focused.id == "no"
        text = screen_text(app)
        assert finding.host in text and "app01" in text and cp.name in text
        assert "merges" in text and "MiB" in text  # what merges, how many bytes move

        await pilot.press("enter")  # enter alone: "No"
        await settle(pilot)
        assert isinstance(app.screen, VmDetailScreen)
        await refreshed(pilot)
        assert vm_by_name(app, "app01").checkpoint(cp.id) is not None
        assert sorted(p.name for p in fresh_demo_lab.rglob("*.avhdx")) == files_before
        assert not [e for e in core.audit.read() if e["action"] == "checkpoint.remove"]


async def test_delete_with_yes_merges_and_the_finding_disappears(fresh_demo_lab: Path, paths) -> None:
    core = make_core(fresh_demo_lab, paths)
    messages: list = []
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True, message_hook=messages.append) as pilot:
        await settle(pilot)
        finding = _culprit(app, "app01", "checkpoint-age")
        vm = vm_by_name(app, "app01")
        cp = vm.checkpoint(finding.checkpoint_id)
        count = vm.checkpoint_count
        # From the findings view: select that finding, enter, delete, choose "Delete".
        await pilot.press("f")
        await settle(pilot)
        findings_screen = app.screen
        key = next(k for k in findings_screen.table.keys if findings_screen._by_key[k].finding == finding)
        findings_screen.table.move_to_key(key)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, VmDetailScreen)
        assert app.screen.selected_checkpoint.id == cp.id
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog)
        await pilot.press("tab", "enter")
        await settle(pilot)
        await refreshed(pilot)

        after = vm_by_name(app, "app01")
        assert after.checkpoint(cp.id) is None
        assert after.checkpoint_count == count - 1
        assert not [f for f in app.snapshot.findings if f.checkpoint_id == cp.id]
        assert "Deleted 1 checkpoint" in screen_text(app)
        entries = [e for e in core.audit.read() if e["action"] == "checkpoint.remove"]
        assert len(entries) == 1
        assert entries[0]["result"] == "ok" and entries[0]["host"] == finding.host and entries[0]["vm"] == "app01"
        assert entries[0]["args"]["checkpoint_id"] == cp.id
        # Progress went through the UI as messages (throttled, from the worker thread).
        from hvtui.tui.checkpoint_actions import ActionProgress

        progress = [m for m in messages if isinstance(m, ActionProgress)]
        assert progress and progress[-1].event.phase == "merge"


async def test_create_rename_and_apply_with_checkpoint_first(fresh_demo_lab: Path, paths) -> None:
    core = make_core(fresh_demo_lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await type_text(pilot, "test01")
        await pilot.press("enter")
        await settle(pilot)
        before = vm_by_name(app, "test01")
        await pilot.press("c")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, CreateCheckpointDialog)
        name_input = dialog.query_one("#cp-name")
        assert name_input.value.startswith("test01 - (11/24/2026 - ")  # Hyper-V's default shape
        name_input.value = "before upgrade"
        await pilot.press("enter")
        await settle(pilot)
        await refreshed(pilot)
        vm = vm_by_name(app, "test01")
        created = [cp for cp in vm.checkpoints if cp.name == "before upgrade"]
        assert len(created) == 1 and vm.checkpoint_count == before.checkpoint_count + 1

        # Rename it from the detail view.
        app.open_vm(vm.host, vm.id, created[0].id)
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, TextDialog)
        app.screen.query_one("#text-value").value = "pre-upgrade"
        await pilot.press("enter")
        await settle(pilot)
        await refreshed(pilot)
        assert vm_by_name(app, "test01").checkpoint(created[0].id).name == "pre-upgrade"

        # Apply the original checkpoint, choosing "checkpoint first, then apply".
        original = before.checkpoints[0]
        detail = app.screen
        node = next(n for n in _walk(detail.checkpoint_tree.root) if n.data == original.id)
        detail.checkpoint_tree.move_cursor(node)
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog)
        text = screen_text(app)
        assert "LOST" in text and "Checkpoint first, then apply" in text
        assert app.screen.focused.id == "no"
        await pilot.press("tab", "enter")  # the first choice after "No": checkpoint first
        await settle(pilot)
        await refreshed(pilot)
        vm = vm_by_name(app, "test01")
        assert vm.checkpoint_count == before.checkpoint_count + 2
        assert vm.parent_checkpoint_id == original.id
        actions = [e["action"] for e in core.audit.read()]
        assert "checkpoint.create" in actions and "checkpoint.rename" in actions and "checkpoint.apply" in actions


async def test_read_only_makes_action_keys_unavailable_and_changes_nothing(fresh_demo_lab: Path, paths) -> None:
    core = make_core(fresh_demo_lab, paths, read_only=True)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        assert " RO " in screen_text(app).splitlines()[0]
        finding = _culprit(app, "app01", "checkpoint-age")
        count = vm_by_name(app, "app01").checkpoint_count
        await pilot.press("c")  # create on the VM list: unavailable
        await settle(pilot)
        assert isinstance(app.screen, VmsScreen)
        app.open_vm(finding.host, finding.vm_id, finding.checkpoint_id)
        await settle(pilot)
        detail = app.screen
        assert detail.selected_checkpoint is not None
        for action in ("create_checkpoint", "apply_checkpoint", "delete_checkpoint", "delete_subtree", "rename_checkpoint"):
            assert detail.check_action(action, ()) is None  # shown, greyed out
        for key in ("d", "D", "a", "r", "c"):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, VmDetailScreen), key
        app.start_delete(finding.host, finding.vm_id, finding.checkpoint_id)  # even if called directly
        await settle(pilot)
        assert "Refused" in screen_text(app)
        with pytest.raises(ReadOnlyError):
            core.actions.remove(finding.host, finding.vm_id, finding.checkpoint_id)
        await refreshed(pilot)
        assert vm_by_name(app, "app01").checkpoint_count == count
        assert all(e["result"] == "refused" for e in core.audit.read())


# -- refresh, failing hosts, notifications ------------------------------------------------------------


async def test_failing_host_shows_error_while_others_display(fresh_demo_lab: Path, paths) -> None:
    hosts = tuple(HostConfig(name=name, kind="lab") for name in ("lab-hv01", "lab-hv02", "lab-gone"))
    config = Config(source=Path("test-config.yaml"), hosts=hosts)
    core = make_core(fresh_demo_lab, paths, config=config)
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "hosts 2/3 (1 down)" in text.splitlines()[0]
        assert "HOSTS" not in text.splitlines()[0]  # lab hosts from a config: still LAB, not built-in
        assert "built-in" not in text.splitlines()[0]
        alert = " ".join(line.strip() for line in text.splitlines()[1:4])  # it wraps over lines
        assert "✗ lab-gone" in alert and "has no host 'lab-gone': its hosts are lab-hv01, lab-hv02" in alert
        names = set(shown_names(app))
        expected = {vm.name for host in ("lab-hv01", "lab-hv02") for vm in app.snapshot.inventory.host(host).vms}
        assert names == expected and expected

        # hv02 stops answering: its last data stays, marked stale.
        (fresh_demo_lab / "lab-hv02").rename(fresh_demo_lab / "lab-hv02-away")
        await refreshed(pilot)
        text = screen_text(app)
        assert "hosts 1/3 (2 down)" in text.splitlines()[0]
        assert "✗ lab-hv02" in text and "stale" in text
        assert set(shown_names(app)) == expected
        table = vm_table(app)
        hv02_rows = [k for k in table.keys if app.snapshot.rows[k].host == "lab-hv02"]
        assert hv02_rows and all(table.plain_row(k)["host"] == "lab-hv02 (stale)" for k in hv02_rows)


async def test_a_lab_that_cannot_be_built_says_why_on_screen_until_it_can(tmp_path: Path, paths) -> None:
    # First use on a disk too small for the demo lab (a lab bigger than any disk stands for it).
    disk_too_small = pytest.MonkeyPatch()
    disk_too_small.setitem(estate.PROFILE_DISK_BYTES, "demo", (1 << 62, 0))
    try:
        lab = tmp_path / "lab"
        app = make_app(make_core(lab, paths))
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            lines = screen_text(app).splitlines()
            assert "no inventory: refresh failed" in lines[0]
            alert = " ".join(line.strip() for line in lines[1:6])
            assert "✗ inventory: not enough disk space to build the demo lab at" in alert
            assert "lab.dir in the config file or --lab-dir" in alert  # what to do, not only what failed
            assert "Traceback" not in screen_text(app) and not lab.exists()

            disk_too_small.undo()  # space was freed: the next refresh builds the lab and the alert goes
            await refreshed(pilot)
            text = screen_text(app)
            assert "no inventory" not in text and "✗ inventory" not in text
            assert "hosts 3/3" in text.splitlines()[0]
    finally:
        disk_too_small.undo()  # also when an assertion failed: later tests must see the real disk


async def test_new_crit_finding_raises_a_notification(fresh_demo_lab: Path, paths) -> None:
    clock = FixedClock()
    app = make_app(make_core(fresh_demo_lab, paths, clock=clock))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        crit_before = app.snapshot.crit
        assert "New critical finding" not in screen_text(app)
        clock.advance(days=3)  # warn-aged checkpoints cross 7 days
        await refreshed(pilot)
        assert app.snapshot.crit > crit_before
        text = screen_text(app)
        assert "new critical finding" in text.lower()


async def test_refreshes_never_overlap(shared_demo_lab: Path, paths) -> None:
    core = make_core(shared_demo_lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        version = app.snapshot_version
        app.request_refresh()
        app.request_refresh()  # while one runs: queued, not started beside it
        app.request_refresh()
        running = [w for w in app.workers if w.group == "poll" and not w.is_finished]
        assert len(running) <= 1
        await settle(pilot)
        await settle(pilot)
        assert app.snapshot_version == version + 2  # the running one, then exactly one more
        assert not app.is_polling
        assert app._poll_timer is not None  # the next one is scheduled after this one ended


async def test_commands_switch_views_and_unknown_ones_are_reported(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("colon")
        await type_text(pilot, "jobs")
        await pilot.press("enter")
        await settle(pilot)
        assert "Jobs [0/0]" in screen_text(app) and "No jobs yet" in screen_text(app)
        await pilot.press("colon")
        await type_text(pilot, "vms")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, VmsScreen)
        await pilot.press("colon")
        await type_text(pilot, "bogus")
        await pilot.press("enter")
        await settle(pilot)
        assert "unknown command 'bogus'" in screen_text(app)
        await pilot.press("colon")
        await type_text(pilot, "vm sql01")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, VmDetailScreen) and app.screen.vm.name == "sql01"
        await pilot.press("colon")
        await type_text(pilot, "q")
        await pilot.press("enter")
        await settle(pilot)
    assert app.return_code == 0


async def test_quit_asks_only_while_an_action_runs(fresh_demo_lab: Path, paths) -> None:
    import threading

    core = make_core(fresh_demo_lab, paths)
    app = make_app(core)
    release = threading.Event()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.start_action("Waiting on purpose", lambda _progress, cancel: release.wait(30), done=lambda _r: "done")
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()  # not settle(): that would wait for the action itself
        from hvtui.tui.screens.dialogs import ConfirmDialog

        assert isinstance(app.screen, ConfirmDialog)
        assert "Waiting on purpose" in screen_text(app)
        await pilot.press("enter")  # "No": stays
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, ConfirmDialog)
        release.set()
        await settle(pilot)
        await pilot.press("q")  # nothing runs any more: quits at once
        await pilot.pause()
    assert app.return_code == 0
