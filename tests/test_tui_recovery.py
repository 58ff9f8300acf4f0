"""The findings view's one-key cleanup of a leftover Recovery checkpoint: `d` asks first,
says whether hvtui can prove the checkpoint is its own, and deletes (audited) only on yes.

The demo lab's file01 carries another product's leftover Recovery checkpoint."""

from __future__ import annotations

from pathlib import Path

from tui_support import SIZE, make_app, make_core, refreshed, screen_text, settle

from hvtui.tui.screens.dialogs import ChoiceDialog
from hvtui.tui.screens.findings import FindingsScreen


async def test_d_on_a_foreign_recovery_checkpoint_warns_asks_and_audits(fresh_demo_lab: Path, paths) -> None:
    core = make_core(fresh_demo_lab, paths)
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        finding = next(f for f in app.snapshot.findings if f.vm_name == "file01" and f.rule == "recovery-checkpoint-left")
        await pilot.press("f")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FindingsScreen)
        screen.table.move_to_key(next(k for k in screen.table.keys if screen._by_key[k].finding == finding))
        await pilot.press("d")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ChoiceDialog) and dialog.focused is not None and dialog.focused.id == "no"
        assert "cannot prove is its own" in dialog.body and "breaks that backup" in dialog.body
        assert "cannot prove" in screen_text(app)  # shown first, without scrolling
        await pilot.press("enter")  # "No"
        await settle(pilot)
        assert isinstance(app.screen, FindingsScreen)
        assert not [e for e in core.audit.read() if e["action"] == "checkpoint.remove"]

        await pilot.press("d")
        await settle(pilot)
        await pilot.press("tab", "enter")  # "Delete"
        await settle(pilot)
        await refreshed(pilot)
        (entry,) = [e for e in core.audit.read() if e["action"] == "checkpoint.remove"]
        assert entry["result"] == "ok" and entry["vm"] == "file01"
        assert entry["args"]["checkpoint_id"] == finding.checkpoint_id
        assert not [f for f in app.snapshot.findings if f.checkpoint_id == finding.checkpoint_id]
