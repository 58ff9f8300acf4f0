"""The console's view model (Textual-free) and its fast table, on hand-built model objects."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from hvtui.model import VM, Checkpoint, Disk, Finding, HostFacts, HostInventory, Inventory, Severity, VhdLink
from hvtui.tui.viewmodel.cells import ColumnSpec, Palette
from hvtui.tui.viewmodel.checkpoint_files import checkpoint_files
from hvtui.tui.viewmodel.format import default_checkpoint_name
from hvtui.tui.viewmodel.snapshot import build_snapshot
from hvtui.tui.viewmodel.vm_rows import VM_COLUMN_IDS, VM_COLUMNS, build_vm_row, column_widths, filter_rows, sort_rows
from hvtui.tui.widgets.table import FastTable

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MiB = 1 << 20


def cp(cp_id: str, parent: str | None, days: float, kind: str = "Standard") -> Checkpoint:
    return Checkpoint(id=cp_id, name=f"cp-{cp_id}", type=kind, created=NOW - timedelta(days=days), parent_id=parent)


def chain(*sizes: int) -> tuple[VhdLink, ...]:
    """Differencing files (newest first) over a base disk."""
    links = []
    names = [f"d{i}.avhdx" for i in range(len(sizes))] + ["base.vhdx"]
    for index, size in enumerate(sizes):
        links.append(VhdLink(names[index], "Differencing", size, 100 * MiB * 1024, names[index + 1]))
    links.append(VhdLink("base.vhdx", "Dynamic", 10 * MiB, 100 * MiB * 1024, None))
    return tuple(links)


def vm(name: str, host: str = "hv01", checkpoints: tuple[Checkpoint, ...] = (), parent: str | None = None, diffs=()) -> VM:
    disks = (Disk("SCSI", 0, 0, chain(*diffs)[0].path, chain(*diffs)),)
    return VM(
        host=host,
        id=f"id-{name}",
        name=name,
        state="Running",
        uptime_seconds=3600,
        checkpoints=checkpoints,
        parent_checkpoint_id=parent,
        disks=disks,
    )


def test_sort_uses_real_values_not_text() -> None:
    palette = Palette()
    rows = [
        build_vm_row(vm("nine", checkpoints=(cp("a", None, 9),)), None, Severity.OK, NOW, palette),
        build_vm_row(vm("ten", checkpoints=(cp("b", None, 10),)), None, Severity.OK, NOW, palette),
        build_vm_row(vm("month", checkpoints=(cp("c", None, 40),)), None, Severity.OK, NOW, palette),
        build_vm_row(vm("none"), None, Severity.OK, NOW, palette),
        build_vm_row(vm("hours", checkpoints=(cp("d", None, 0.1),)), None, Severity.OK, NOW, palette),
    ]
    oldest = VM_COLUMN_IDS.index("oldest")
    assert [r.plain[oldest] for r in rows] == ["9 days", "10 days", "40 days", "", "2 hours"]
    by_age = sort_rows(rows, "oldest", descending=True)
    assert [r.vm.name for r in by_age] == ["month", "ten", "nine", "hours", "none"]
    assert [r.plain[oldest] for r in by_age] != sorted((r.plain[oldest] for r in rows), reverse=True)

    big = build_vm_row(vm("big", diffs=(900 * MiB,)), None, Severity.OK, NOW, palette)
    bigger = build_vm_row(vm("bigger", diffs=(1300 * MiB,)), None, Severity.OK, NOW, palette)
    diff = VM_COLUMN_IDS.index("diff")
    assert (big.plain[diff], bigger.plain[diff]) == ("900.0 MiB", "1.3 GiB")
    assert [r.vm.name for r in sort_rows([big, bigger], "diff", descending=True)] == ["bigger", "big"]


def test_sort_ties_keep_host_and_name_order_and_health_ranks_worst_first() -> None:
    palette = Palette()
    rows = [
        build_vm_row(vm("b", host="hv02"), None, Severity.WARN, NOW, palette),
        build_vm_row(vm("a", host="hv02"), None, Severity.CRIT, NOW, palette),
        build_vm_row(vm("c", host="hv01"), None, Severity.WARN, NOW, palette),
        build_vm_row(vm("d", host="hv01"), None, Severity.OK, NOW, palette),
    ]
    assert [r.vm.name for r in sort_rows(rows, "health", True)] == ["a", "c", "b", "d"]
    assert [r.vm.name for r in sort_rows(rows, "health", False)] == ["d", "c", "b", "a"]
    health = VM_COLUMN_IDS.index("health")
    assert [r.plain[health] for r in rows] == ["WARN", "CRIT", "WARN", "OK"]  # text, not colour alone


def test_filter_matches_host_or_vm_case_insensitively() -> None:
    palette = Palette()
    rows = [
        build_vm_row(vm("web01", host="hv-east"), None, Severity.OK, NOW, palette),
        build_vm_row(vm("sql01", host="hv-west"), None, Severity.OK, NOW, palette),
    ]
    assert [r.vm.name for r in filter_rows(rows, "WEB")] == ["web01"]
    assert [r.vm.name for r in filter_rows(rows, "west")] == ["sql01"]
    assert [r.vm.name for r in filter_rows(rows, "  ")] == ["web01", "sql01"]
    assert filter_rows(rows, "nothing") == []


def test_stale_rows_are_marked_in_text_and_style() -> None:
    palette = Palette.from_variables({"sev-muted": "#777777", "sev-crit": "#ff0000"})
    host = HostInventory(name="hv01", kind="lab", error="timed out", stale=True)
    row = build_vm_row(vm("web01"), host, Severity.CRIT, NOW, palette)
    assert row.plain[VM_COLUMN_IDS.index("host")] == "hv01 (stale)"
    assert row.texts[VM_COLUMN_IDS.index("name")].style == palette.muted
    assert row.texts[0].style.color.triplet.hex == "#ff0000"


def test_checkpoint_files_follow_the_current_branch() -> None:
    # root -> mid -> (Now); a side branch "other" off root has no file in the current chain.
    cps = (cp("root", None, 5), cp("mid", "root", 3), cp("other", "root", 4))
    machine = vm("x", checkpoints=cps, parent="mid", diffs=(1 * MiB, 2 * MiB))
    files = checkpoint_files(machine)
    assert [link.path for link in files["mid"]] == ["d0.avhdx"]  # started by mid: what Now writes to
    assert [link.path for link in files["root"]] == ["d1.avhdx"]
    assert "other" not in files
    # A chain that does not match the tree (a failed merge) maps nothing rather than guessing.
    broken = vm("y", checkpoints=cps, parent="mid", diffs=(1 * MiB, 2 * MiB, 3 * MiB))
    assert checkpoint_files(broken) == {}


def test_default_checkpoint_name_looks_like_hyper_v() -> None:
    name = default_checkpoint_name("web01", NOW)
    assert name.startswith("web01 - (") and name.endswith("M)")
    assert "/2026 - " in name


def test_snapshot_counts_and_finding_rows() -> None:
    machine = vm("web01", checkpoints=(cp("a", None, 9),), parent="a", diffs=(5 * MiB,))
    facts = HostFacts("HV01", "Windows", "20348", NOW, 8, 1 << 34)
    inventory = Inventory((HostInventory(name="hv01", kind="lab", facts=facts, vms=(machine,)),))
    findings = [
        Finding(Severity.CRIT, "checkpoint-age", "hv01", machine.id, "web01", "old", "delete it", checkpoint_id="a", age_seconds=9 * 86400),
        Finding(Severity.OK, "checkpoint-count", "hv01", machine.id, "web01", "many", "", exempt_reason="backup product keeps it"),
    ]
    snapshot = build_snapshot(inventory, findings, Palette(), NOW)
    assert (snapshot.crit, snapshot.warn) == (1, 0)
    assert snapshot.rows[machine.key].health == Severity.CRIT
    assert snapshot.hosts_reachable == snapshot.hosts_total == 1
    exempt = snapshot.finding_rows[1]
    assert exempt.plain[0] == "EXEMPT" and "backup product keeps it" in exempt.plain[-1]
    assert snapshot.crit_keys() == {"checkpoint-age|hv01|id-web01|a|"}


# -- the fast table ------------------------------------------------------------------------------

SPECS = (ColumnSpec("a", "A", 0, 20), ColumnSpec("b", "B", 0, 20), ColumnSpec("c", "C", 5, 20))


def rows_for(keys: list[str], tag: str = "") -> list[tuple[str, tuple[Text, ...]]]:
    return [(key, (Text(key), Text(f"{key}-b{tag}"), Text(f"{key}-c"))) for key in keys]


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield FastTable(SPECS, id="t")


async def test_fast_table_rebuilds_updates_cells_and_keeps_the_cursor() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(FastTable)
        widths = {"a": 6, "b": 10, "c": 8}
        assert table.show(rows_for([f"r{i}" for i in range(50)]), widths) == "columns"
        await pilot.pause()
        assert table.row_count == 50 and table.keys[:3] == ["r0", "r1", "r2"]
        assert table.get_row("r7") == [Text("r7"), Text("r7-b"), Text("r7-c")]
        assert isinstance(table, DataTable)

        table.move_to_key("r30")
        await pilot.pause()
        assert table.cursor_key == "r30"

        # Same rows, one value changed: only that cell is updated, the cursor stays.
        changed = rows_for([f"r{i}" for i in range(50)])
        changed[30] = ("r30", (Text("r30"), Text("r30-NEW"), Text("r30-c")))
        count = table._update_count
        assert table.show(changed, widths) == "cells"
        assert table._update_count == count + 1  # one update_cell, not a rebuild
        assert table.get_cell("r30", "b") == Text("r30-NEW")
        assert table.show(changed, widths) == "none"  # nothing changed: nothing touched

        # A style change counts as a change too.
        restyled = list(changed)
        restyled[1] = ("r1", (Text("r1", style=Style(bold=True)), Text("r1-b"), Text("r1-c")))
        assert table.show(restyled, widths) == "cells"

        # Rows vanish (a filter): one rebuild, the cursor follows its row.
        assert table.show(rows_for(["r29", "r30", "r31"]), widths) == "rebuild"
        await pilot.pause()
        assert table.row_count == 3 and table.cursor_key == "r30"
        assert table.get_row_at(1)[0] == Text("r30")

        # Its row gone: the cursor stays in range.
        assert table.show(rows_for(["r1", "r2"]), widths) == "rebuild"
        await pilot.pause()
        assert table.cursor_key in ("r1", "r2")
        assert table.show([], widths) == "rebuild"
        assert table.row_count == 0 and table.cursor_key is None


async def test_fast_table_drops_low_priority_columns_when_narrow() -> None:
    app = TableApp()
    async with app.run_test(size=(30, 10)) as pilot:
        table = app.query_one(FastTable)
        table.show(rows_for(["x"]), {"a": 8, "b": 10, "c": 12})
        await pilot.pause()
        assert table.shown_columns == ("a", "b")  # c (priority 5) does not fit in 30 columns
        assert table.plain_row("x")["c"] == "x-c"  # the data is kept for when it fits again
        await pilot.resize_terminal(80, 10)
        await pilot.pause()
        assert table.shown_columns == ("a", "b", "c")


def test_column_widths_are_capped_and_at_least_the_label() -> None:
    palette = Palette()
    row = build_vm_row(vm("x" * 80), None, Severity.OK, NOW, palette)
    widths = column_widths([row])
    name_spec = next(s for s in VM_COLUMNS if s.id == "name")
    assert widths["name"] == name_spec.max_width
    assert widths["health"] >= len("HEALTH")


def test_uptime_is_shown_as_hyper_v_reports_it() -> None:
    # A Paused VM keeps its uptime (it used to show blank and sort as 0); Off shows none.
    uptime = VM_COLUMN_IDS.index("uptime")
    paused = dataclasses.replace(vm("print01"), state="Paused", uptime_seconds=3 * 86400)
    off = dataclasses.replace(vm("old01"), state="Off", uptime_seconds=0)
    rows = [build_vm_row(v, None, Severity.OK, NOW, Palette()) for v in (paused, off)]
    assert [r.plain[uptime] for r in rows] == ["3 days", ""]
    assert [r.vm.name for r in sort_rows(rows, "uptime", descending=True)] == ["print01", "old01"]
