"""The console shows hostile names from a host escaped: nothing in them reaches the terminal as a control.

A demo lab host's state is edited on disk so that a VM and one of its checkpoints carry names a
Hyper-V host could report (ESC sequences that set the title and clear the screen, a C1 CSI, DEL,
a bidi override).  The VM list, the VM's detail, the findings, the jobs view and the toasts
(a failed backup of that VM names it) are read back from the rendered screen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_cli_hostile_text import TITLE_NAME, unsafe_characters
from tui_support import SIZE, make_app, make_core, refreshed, screen_text, settle

from hvtui.hosts.lab.state import STATE_FILE
from hvtui.tui.screens.findings import FindingsScreen
from hvtui.tui.screens.jobs import JobsScreen
from hvtui.tui.screens.vm_detail import VmDetailScreen
from hvtui.tui.screens.vms import VmsScreen

CHECKPOINT_NAME = "cp\x1b]2;OWNED\x07\u202eeman\x9b"
SHOWN_NAME = "osc\\x1b]0;PWNED\\x07t"  # the start of TITLE_NAME as the screen shows it


def make_names_hostile(lab: Path) -> str:
    """Rename app01 and its first checkpoint in the lab's state on disk; returns the VM's id."""
    path = next(p for p in lab.glob(f"*/{STATE_FILE}") if '"app01"' in p.read_text(encoding="utf-8"))
    state = json.loads(path.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("name") == "app01":
                node["name"] = TITLE_NAME
                found.append(node)
            elif isinstance(node.get("name"), str) and node["name"].startswith("Nightly") and not found[1:]:
                node["name"] = CHECKPOINT_NAME
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(state)
    path.write_text(json.dumps(state), encoding="utf-8")
    return next(node["id"] for node in found if node["name"] == TITLE_NAME)


async def test_hostile_names_are_escaped_on_every_view(fresh_demo_lab: Path, paths) -> None:
    vm_id = make_names_hostile(fresh_demo_lab)
    core = make_core(fresh_demo_lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, VmsScreen)
        text = screen_text(app)
        assert unsafe_characters(text) == [], text
        assert SHOWN_NAME in text

        vm = next(v for v in app.snapshot.inventory.vms if v.id == vm_id)
        app.open_vm(vm.host, vm.id)
        await settle(pilot)
        assert isinstance(app.screen, VmDetailScreen)
        text = screen_text(app)
        assert unsafe_characters(text) == [], text
        assert SHOWN_NAME in text
        labels = " ".join(str(node.label) for node in _walk(app.screen.checkpoint_tree.root))
        assert unsafe_characters(labels) == [] and "cp\\x1b]2;OWNED\\x07\\u202eeman\\x9b" in labels
        info = str(app.screen.query_one("#vm-info").content)
        assert unsafe_characters(info) == [] and SHOWN_NAME in info
        await pilot.press("escape")
        await settle(pilot)

        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, FindingsScreen)
        text = screen_text(app)
        assert unsafe_characters(text) == [], text
        assert "osc\\x1b" in text  # app01's deep chain is a finding naming it

        # A backup of the VM fails (its checkpoint name would hold ESC): the job row, its
        # detail and the "Job failed" toast all name the VM.
        core.jobs.submit_backup(vm.host, vm.id, vm_name=vm.name)
        await pilot.press("j")
        for _ in range(50):
            await refreshed(pilot)
            if "Job failed" in screen_text(app):
                break
        assert isinstance(app.screen, JobsScreen)
        text = screen_text(app)
        assert "Job failed" in text
        assert unsafe_characters(text) == [], text
        assert "osc\\x1b" in text

        app.notify(f"about {TITLE_NAME}", title=TITLE_NAME)  # the seam every toast passes
        await pilot.pause()
        assert unsafe_characters(screen_text(app)) == []


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)
