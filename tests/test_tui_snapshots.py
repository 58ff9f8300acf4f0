"""Pictures of the console at 80x24 (pytest-textual-snapshot; update with --snapshot-update).

The pictures are taken on the demo lab with a fixed clock, so they only change when the
console's look or the demo estate changes.  Views that print lab paths (a VM's disks, the
delete plan) are left to the pilot tests: their tmp paths differ on every run.
"""

from __future__ import annotations

from pathlib import Path

from tui_support import make_app, make_core, settle


def test_vm_list_at_80x24(snap_compare, shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_help_at_80x24(snap_compare, shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths))

    async def open_help(pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_help)


def test_findings_high_contrast_at_80x24(snap_compare, shared_demo_lab: Path, paths) -> None:
    core = make_core(shared_demo_lab, paths)
    core.theme = "hvtui-high-contrast"
    app = make_app(core)

    async def open_findings(pilot) -> None:
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)
        await pilot.press("slash", *"age", "enter")  # checkpoint-age findings: no lab paths in them
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_findings)
