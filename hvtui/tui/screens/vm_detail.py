"""One VM: its checkpoint tree (and which one it runs from), its restore points, disks and
chains, stray files, findings; the checkpoint actions, a backup (b) and a restore (t)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Static, Tree
from textual.worker import Worker, WorkerState

from hvtui.config.timing import local_zone
from hvtui.model import VM, Checkpoint, Finding, RestorePointSummary, Severity
from hvtui.text import display_lines, display_text
from hvtui.tui.display import markup_text
from hvtui.tui.screens.base import ViewScreen, ViewTitle
from hvtui.tui.viewmodel.finding_rows import finding_severity_text
from hvtui.tui.viewmodel.format import age_text, aware, file_name, host_now, size_text
from hvtui.tui.viewmodel.schedule_rows import vm_schedule_text
from hvtui.tui.viewmodel.snapshot import Snapshot
from hvtui.tui.viewmodel.vm_rows import HEALTH_TEXT
from hvtui.tui.widgets.checkpoint_tree import NOW_NODE, CheckpointTree, local_time

# Actions that change the VM and need a checkpoint under the cursor.
CHECKPOINT_ACTIONS = ("apply_checkpoint", "delete_checkpoint", "delete_subtree", "rename_checkpoint")
CHANGING_ACTIONS = ("create_checkpoint", *CHECKPOINT_ACTIONS)

_SEV_MARKUP = {Severity.CRIT: "$sev-crit", Severity.WARN: "$sev-warn", Severity.OK: "$sev-ok"}


class VmDetailScreen(ViewScreen):
    view_name = "vm"
    view_title = "VM detail"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "escape", "Back"),
        Binding("c", "create_checkpoint", "New checkpoint"),
        Binding("a", "apply_checkpoint", "Apply"),
        Binding("d", "delete_checkpoint", "Delete"),
        Binding("D", "delete_subtree", "Delete subtree"),
        Binding("r", "rename_checkpoint", "Rename"),
        Binding("b", "backup_vm", "Backup"),
        Binding("t", "restore_point", "Restore point…"),
    ]
    KEY_BAR_SHORT: ClassVar[dict[str, str]] = {
        **ViewScreen.KEY_BAR_SHORT,
        "restore_point": "Restore…",
        "delete_subtree": "Del tree",
    }
    # Here the VM's own keys matter most: the other views, D and esc (Help lists them) go first.
    KEY_BAR_DROP: ClassVar[tuple[str, ...]] = (
        *ViewScreen.KEY_BAR_DROP,
        "show_view('findings')",
        "show_view('jobs')",
        "delete_subtree",
        "escape",  # esc goes back everywhere
    )

    DEFAULT_CSS = """
    VmDetailScreen #cp-tree {
        height: auto;
        max-height: 60%;
        min-height: 3;
        border-bottom: solid $panel;
    }
    VmDetailScreen #points-title {
        height: auto;
        max-height: 3;
        padding: 0 1;
        text-style: bold;
    }
    VmDetailScreen #points-title.-damaged {
        color: $sev-warn;
    }
    VmDetailScreen #points-table {
        height: auto;
        max-height: 6;
        display: none;
        border-bottom: solid $panel;
    }
    VmDetailScreen #points-table.-shown {
        display: block;
    }
    VmDetailScreen #vm-info-scroll {
        height: 1fr;
    }
    VmDetailScreen #vm-info {
        padding: 0 1;
    }
    """

    def __init__(self, host: str, vm_id: str, select_checkpoint: str | None = None) -> None:
        super().__init__()
        self.host = host
        self.vm_id = vm_id
        self._want_selected = select_checkpoint
        self.vm: VM | None = None
        self._findings: list[Finding] = []
        self._now: datetime | None = None
        self.points: list[RestorePointSummary] = []  # newest first
        self.damaged_manifests: list[str] = []  # "repository/id" of manifests that cannot be read
        self.same_name_points: str | None = None  # "2 points of the same name, earlier VM id X"
        self.format_1: list[str] = []  # repositories holding this VM's points that are still format 1
        self.points_loaded = False

    def compose_body(self) -> ComposeResult:
        yield ViewTitle("VM")
        tree = CheckpointTree("checkpoints", id="cp-tree")
        tree.show_root = False
        tree.guide_depth = 2
        yield tree
        yield Static("Restore points: loading…", id="points-title", markup=False)
        points: DataTable[str] = DataTable(id="points-table", cursor_type="row", zebra_stripes=False)
        # Time to the second and the whole id first: two points of one minute must not look
        # alike at 80 columns, and the id is what `hvtui restore` takes.
        points.add_columns("TIME", "ID", "MODE", "VERIFIED", "SIZE", "STORED", "REPOSITORY", "COPIES IN")
        yield points
        with VerticalScroll(id="vm-info-scroll"):
            yield Static("", id="vm-info")

    @property
    def checkpoint_tree(self) -> CheckpointTree:
        return self.query_one("#cp-tree", CheckpointTree)

    @property
    def main_widget(self) -> Widget | None:
        return self.checkpoint_tree

    @property
    def points_table(self) -> DataTable:
        return self.query_one("#points-table", DataTable)

    # -- data ------------------------------------------------------------------------------------
    def show_snapshot(self, snapshot: Snapshot) -> None:
        vm = snapshot.inventory.vm(self.host, self.vm_id)
        self._load_points(vm.name if vm is not None else None)  # after a refresh: a backup that just finished too
        self._show_vm(snapshot)

    def _show_vm(self, snapshot: Snapshot) -> None:
        host = snapshot.inventory.host(self.host)
        vm = snapshot.inventory.vm(self.host, self.vm_id)
        findings = snapshot.findings_for(self.host, self.vm_id)
        self._now = host_now(host, snapshot.taken_wall)
        title = self.query_one(ViewTitle)
        if vm is None:
            self.vm = None
            self.checkpoint_tree.clear()
            title.show(f"{self.host} / VM {self.vm_id}: not in the inventory (deleted, or its host cannot be read)")
            self.query_one("#vm-info", Static).update("")
            self.refresh_bindings_if_changed()
            return
        stale = " (stale)" if host is not None and host.stale else ""
        count = vm.checkpoint_count
        title.show(f"{vm.host} / {vm.name}{stale}  ·  {vm.state}  ·  {count} checkpoint{'' if count == 1 else 's'}")
        if vm != self.vm or findings != self._findings:
            self.vm = vm
            self._findings = findings
            self._build_tree(vm)
            self.query_one("#vm-info", Static).update(self._info_markup(vm, findings))
        self.refresh_bindings_if_changed()

    # -- restore points ------------------------------------------------------------------------
    def _load_points(self, vm_name: str | None) -> None:
        host, vm_id, backups = self.host, self.vm_id, self.hvtui.core.backups

        def read() -> tuple[list[RestorePointSummary], list[str], str | None, list[str]]:
            # The one rule (README): the VM's id first, else its name's points under an earlier
            # id, offered as "the same VM?"; a VM not in the inventory has only its id.
            if vm_name is None:
                listing = backups.point_listing(host=host, vm=vm_id)
                points, same_name = [i for i in listing.points if i.summary.vm_id == vm_id], None
            else:
                mine = backups.vm_points(host, vm_id, vm_name)
                listing, points = mine.listing, mine.points
                same_name = mine.earlier_text() if mine.same_name else None
            # A damaged manifest cannot be tied to a VM: it may be this VM's newest point.
            damaged = [f"{d.repository}/{d.id}" for d in listing.damaged]
            old = sorted({i.summary.repository for i in points} & set(listing.format_1))
            return [info.summary for info in reversed(points)], damaged, same_name, old

        self.run_worker(
            read,
            name="restore points",
            group="points",
            thread=True,
            exclusive=True,
            exit_on_error=False,
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "points":
            return
        event.stop()
        title = self.query_one("#points-title", Static)
        if event.state == WorkerState.SUCCESS:
            found, self.damaged_manifests, self.same_name_points, self.format_1 = event.worker.result
            self._show_points(found)
        elif event.state == WorkerState.ERROR and event.worker.error is not None:
            message = self.hvtui.describe_error(event.worker.error, "listing restore points")
            title.update(display_lines(f"Restore points: cannot be read: {message}"))

    def _show_points(self, points: list[RestorePointSummary]) -> None:
        first = not self.points_loaded
        self.points_loaded = True
        title = self.query_one("#points-title", Static)
        earlier = [p for p in points if p.vm_id != self.vm_id]
        if not points:
            text = "Restore points: none yet (b backs up this VM)"
        elif earlier:
            text = (
                f"Restore points: none under this VM's id; {self.same_name_points} — the same VM? "
                "tab selects, t restores (never built on)"
            )
        else:
            text = f"Restore points ({len(points)}), newest first — tab selects, t restores"
            if self.same_name_points:
                text += f"\nAlso {self.same_name_points}: not built on; `hvtui points` with that id lists them"
        if self.damaged_manifests:
            count = len(self.damaged_manifests)
            text += (
                f"\n⚠ {count} damaged manifest{'s' if count != 1 else ''} ({', '.join(self.damaged_manifests[:3])}"
                f"{', …' if count > 3 else ''}): maybe this VM's newest point; run `hvtui verify`"
            )
        for name in self.format_1:
            text += f"\nRepository {name} is still format 1: `hvtui repo migrate {name}` converts it to format 2"
        title.update(text)
        title.set_class(bool(self.damaged_manifests), "-damaged")
        table = self.points_table
        table.set_class(bool(points), "-shown")
        if points == self.points and not first:
            self.refresh_bindings_if_changed()
            return
        self.points = points
        cursor = table.cursor_row
        table.clear()
        held_by = copies_by_point(points)
        for point in points:
            others = sorted(held_by[point.id] - {point.repository})
            table.add_row(
                local_time(point.time, seconds=True),
                display_text(point.id),
                point.mode if point.vm_id == self.vm_id else f"{point.mode} (earlier id)",
                {True: "verified", False: "FAILED verify", None: "not verified"}[point.verified],
                size_text(point.logical_bytes),
                size_text(point.stored_bytes),
                display_text(point.repository),
                display_text(", ".join(others) if others else "-"),
                key=f"{point.repository}/{point.id}",
            )
        if points:
            table.move_cursor(row=min(cursor, len(points) - 1), animate=False)
        self.refresh_bindings_if_changed()

    @property
    def selected_point(self) -> RestorePointSummary | None:
        if not self.points or not self.is_mounted:
            return None
        row = self.points_table.cursor_row
        return self.points[row] if 0 <= row < len(self.points) else self.points[0]

    def _build_tree(self, vm: VM) -> None:
        tree = self.checkpoint_tree
        current = tree.cursor_node.data if tree.cursor_node is not None else None
        if current is None and self._want_selected is None and vm.checkpoints:
            # First showing: the newest checkpoint, so d/a/r act at once (▶ Now is no checkpoint).
            current = max(vm.checkpoints, key=lambda cp: aware(cp.created)).id
        want = self._want_selected or current
        self._want_selected = None
        tree.show_vm(vm, self._findings, self._now or datetime.now().astimezone(), want)

    def _schedule_text(self, vm: VM) -> str:
        core, snapshot = self.hvtui.core, self.hvtui.snapshot
        host = snapshot.inventory.host(vm.host) if snapshot is not None else None
        group = host.group if host is not None else None
        return vm_schedule_text(core.config.schedules, vm.host, vm.name, group, core.clock.now(), local_zone())

    def _info_markup(self, vm: VM, findings: list[Finding]) -> str:
        lines: list[str] = []
        up = f", up {age_text(vm.uptime_seconds)}" if vm.state == "Running" and vm.uptime_seconds else ""
        lines.append(
            f"[b]{markup_text(vm.name)}[/] on [b]{markup_text(vm.host)}[/]: {markup_text(vm.state)}{up} · generation {vm.generation}"
            f" · version {markup_text(vm.version or '?')} · {markup_text(vm.checkpoint_type)} checkpoints · id {markup_text(vm.id)}"
        )
        lines.append(f"[b]Schedule[/]: {markup_text(self._schedule_text(vm))}")
        lines.append("")
        lines.append(f"[b]Findings[/] ({len(findings)})")
        if not findings:
            lines.append("  none: [$sev-ok]OK[/]")
        for finding in findings:
            colour = "$sev-muted" if finding.exempt_reason else _SEV_MARKUP.get(finding.severity, "$sev-muted")
            sev = finding_severity_text(finding)
            reason = f" (exempt: {markup_text(finding.exempt_reason)})" if finding.exempt_reason else ""
            lines.append(f"  [{colour}]{sev:<6}[/] {markup_text(finding.rule)}: {markup_text(finding.message)}{reason}")
            if finding.action:
                lines.append(f"         → {markup_text(finding.action)}")
        lines.append("")
        lines.append(f"[b]Disks[/] ({len(vm.disks)})")
        for disk in vm.disks:
            lines.append(
                f"  {markup_text(disk.controller)} {disk.controller_number}:{disk.controller_location}  {markup_text(disk.path)}"
                f"  (chain depth {disk.depth}, {size_text(disk.differencing_bytes)} differencing)"
            )
            for index, link in enumerate(disk.chain):
                branch = "└" if index == len(disk.chain) - 1 else "├"
                lines.append(
                    f"    {branch} {markup_text(file_name(link.path))}  {markup_text(link.vhd_type)}  "
                    f"{size_text(link.file_size)} on disk / {size_text(link.size)} virtual"
                )
            if disk.error is not None:  # the chain stops short: the host could not read a file
                lines.append(f"    [$sev-warn]✗ {markup_text(disk.error)}[/]")
        lines.append("")
        lines.append(f"[b]Stray disk files[/] ({len(vm.stray_disk_files)})")
        if not vm.stray_disk_files:
            lines.append("  none")
        for path in vm.stray_disk_files:
            lines.append(f"  [$sev-warn]{markup_text(path)}[/]")
        return "\n".join(lines)

    # -- selection and actions ------------------------------------------------------------------------
    @property
    def selected_checkpoint(self) -> Checkpoint | None:
        node = self.checkpoint_tree.cursor_node if self.is_mounted else None
        if node is None or self.vm is None or node.data in (None, NOW_NODE):
            return None
        return self.vm.checkpoint(node.data)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        self.refresh_bindings_if_changed()

    def why_unavailable(self, action: str) -> str | None:
        if action == "restore_point":
            # A folder restore is possible even read-only: the dialog offers what is allowed.
            if self.points:
                return None
            return "no restore point of this VM yet (b backs it up)" if self.points_loaded else "still reading the restore points"
        if action not in CHANGING_ACTIONS and action != "backup_vm":
            return None
        if self.vm is None:
            return "the VM is not in the inventory (any more)"
        reason = self.hvtui.read_only_reason(self.host)
        if reason is not None:
            return reason
        if action in CHECKPOINT_ACTIONS and self.selected_checkpoint is None:
            return "select a checkpoint first (▶ Now is the VM's running state, not a checkpoint)"
        return None

    def action_create_checkpoint(self) -> None:
        if self.vm is not None:
            self.hvtui.start_create(self.host, self.vm_id)

    def action_apply_checkpoint(self) -> None:
        cp = self.selected_checkpoint
        if cp is not None:
            self.hvtui.start_apply(self.host, self.vm_id, cp.id)

    def action_delete_checkpoint(self) -> None:
        cp = self.selected_checkpoint
        if cp is not None:
            self.hvtui.start_delete(self.host, self.vm_id, cp.id, subtree=False)

    def action_delete_subtree(self) -> None:
        cp = self.selected_checkpoint
        if cp is not None:
            self.hvtui.start_delete(self.host, self.vm_id, cp.id, subtree=True)

    def action_rename_checkpoint(self) -> None:
        cp = self.selected_checkpoint
        if cp is not None:
            self.hvtui.start_rename(self.host, self.vm_id, cp.id)

    def action_backup_vm(self) -> None:
        if self.vm is not None:
            self.hvtui.jobs_ui.start_backup([self.vm])

    def action_restore_point(self) -> None:
        point = self.selected_point
        if point is not None:
            self.hvtui.jobs_ui.start_restore(point)


def copies_by_point(points: list[RestorePointSummary]) -> dict[str, set[str]]:
    """The repositories holding each point id: a copy (`hvtui copy`) keeps the point's id."""
    held: dict[str, set[str]] = {}
    for point in points:
        held.setdefault(point.id, set()).add(point.repository)
    return held


__all__ = ["VmDetailScreen", "NOW_NODE", "HEALTH_TEXT"]
