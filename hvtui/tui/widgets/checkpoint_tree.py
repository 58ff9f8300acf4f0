"""The VM detail's checkpoint tree: each checkpoint under its parent (oldest first), "▶ Now" where
the VM runs from, each label with the checkpoint's type, age and the differencing files it started
(what merges when it is deleted), a ⚠ on the ones a finding names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from rich.style import Style
from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from hvtui.model import VM, Checkpoint, Finding, Severity, VhdLink
from hvtui.text import display_text
from hvtui.tui.viewmodel.checkpoint_files import checkpoint_files, now_files
from hvtui.tui.viewmodel.format import age_text, aware, file_name, seconds_between, size_text

NOW_NODE = "__now__"  # tree data of the "▶ Now" node


def short_file_name(path: str) -> str:
    """``app01_82D04A04-F630-....avhdx`` -> ``app01_82D04A04….avhdx``: GUIDs eat the width."""
    name = file_name(path)
    stem, dot, ext = name.rpartition(".")
    head, underscore, guid = stem.rpartition("_")
    if underscore and len(guid) == 36 and guid.count("-") == 4:
        return f"{head}_{guid[:8]}…{dot}{ext}"
    return name


def local_time(value: datetime, seconds: bool = False) -> str:
    """A time in the local zone, as the VM detail shows it (to the second in the points table)."""
    return aware(value).astimezone().strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def walk(node: TreeNode[str]) -> Iterator[TreeNode[str]]:
    yield node
    for child in node.children:
        yield from walk(child)


class CheckpointTree(Tree[str]):
    """A tree whose labels end in "…" where the width runs out (a deep chain, an 80-column
    terminal), instead of being cut off at the edge with nothing to say so."""

    def render_label(self, node: TreeNode[str], base_style: Style, style: Style) -> Text:
        label = super().render_label(node, base_style, style)
        room = self.scrollable_content_region.width - self._guide_width(node)
        if 0 < room < label.cell_len:
            label.truncate(room, overflow="ellipsis")
        return label

    def _guide_width(self, node: TreeNode[str]) -> int:
        depth = 0
        parent = node.parent
        while parent is not None and parent is not self.root:
            depth += 1
            parent = parent.parent
        return depth * self.guide_depth

    def show_vm(self, vm: VM, findings: list[Finding], now: datetime, want: str | None) -> None:
        """Rebuild the tree for ``vm``; the cursor goes to checkpoint ``want`` (``NOW_NODE``, or
        None: "▶ Now" too) once the tree is laid out."""
        files = checkpoint_files(vm)
        self.clear()
        nodes: dict[str, TreeNode[str]] = {}
        culprit_ids = {f.checkpoint_id for f in findings if f.checkpoint_id and f.severity > Severity.OK}

        def add(parent_node: TreeNode[str], parent_id: str | None) -> None:
            children = sorted(vm.children_of(parent_id), key=lambda cp: aware(cp.created))
            for cp in children:
                label = checkpoint_label(cp, files.get(cp.id, []), now, cp.id in culprit_ids)
                node = parent_node.add(label, data=cp.id, expand=True)
                nodes[cp.id] = node
                add(node, cp.id)
            if parent_id == vm.parent_checkpoint_id:
                parent_node.add_leaf(now_label(vm), data=NOW_NODE)

        add(self.root, None)
        # Checkpoints whose parent is missing from the inventory still show, at the top level.
        for cp in vm.checkpoints:
            if cp.id not in nodes and cp.parent_id is not None and vm.checkpoint(cp.parent_id) is None:
                label = checkpoint_label(cp, files.get(cp.id, []), now, cp.id in culprit_ids)
                nodes[cp.id] = self.root.add(label, data=cp.id, expand=True)
                add(nodes[cp.id], cp.id)
        if vm.parent_checkpoint_id is not None and vm.parent_checkpoint_id not in nodes:
            self.root.add_leaf(now_label(vm), data=NOW_NODE)
        self.root.expand()

        def select() -> None:
            target = want if want in nodes or want == NOW_NODE else None
            node = nodes.get(target) if target is not None and target != NOW_NODE else None
            if target == NOW_NODE or node is None:
                node = next((n for n in walk(self.root) if n.data == NOW_NODE), None)
            if node is not None:
                self.move_cursor(node)

        self.call_after_refresh(select)


def checkpoint_label(cp: Checkpoint, links: list[VhdLink], now: datetime, culprit: bool) -> Text:
    label = Text()
    if culprit:
        label.append("⚠ ", style="bold")
    label.append(display_text(cp.name), style="bold")
    label.append(f"  {cp.type}  {age_text(seconds_between(now, cp.created))} old ({local_time(cp.created)})")
    if links:
        # The differencing file this checkpoint started: what merges when it is deleted.
        names = ", ".join(short_file_name(link.path) for link in links)
        label.append(f"  Δ {names} {size_text(sum(link.file_size for link in links))}")
    return label


def now_label(vm: VM) -> Text:
    label = Text("▶ Now", style="bold reverse")
    files = now_files(vm)
    if files:
        names = ", ".join(short_file_name(link.path) for link in files)
        label.append(f"  running from {names} ({size_text(sum(link.file_size for link in files))})")
    label.append(f"  {vm.state}")
    return label
