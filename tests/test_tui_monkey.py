"""Random keys over every view and dialog: the console never falls over.

A user in the middle of an incident hits keys in any order, in any view.  Whatever a key
handler raises ends the app with an error (``App._exception``) or is logged as an
unexpected error; either fails this test.  The seed is fixed, so a failure replays: the
assertion message carries the last keys and the view each one went to.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tui_support import make_app, make_core, settle

from hvtui.logsetup import setup_logging
from hvtui.paths import Paths

pytestmark = pytest.mark.usefixtures("restore_logging")

# Every key the views and dialogs bind, plus navigation and typing; not "q" and not the
# palette (either may quit, which would end the walk early).
KEYS = [
    "up",
    "down",
    "left",
    "right",
    "home",
    "end",
    "pageup",
    "pagedown",
    "enter",
    "escape",
    "tab",
    "shift+tab",
    "space",
    "backspace",
    "delete",
    "slash",
    "colon",
    "question_mark",
    "ctrl+r",
    "ctrl+t",
    "a",
    "b",
    "c",
    "d",
    "D",
    "r",
    "R",
    "t",
    "f",
    "j",
    "v",
    "x",
    "m",
    "s",
    "n",
    "y",
    "Y",
    "N",
    "0",
    "1",
    "2",
    "e",
    "h",
    "i",
    "k",
    "l",
    "o",
    "u",
    "w",
    "z",
]
STEPS = 250


@pytest.mark.parametrize("seed", [7])
async def test_random_keys_never_break_the_console(fresh_demo_lab: Path, paths: Paths, seed: int) -> None:
    setup_logging(paths, "info")
    rng = random.Random(seed)
    core = make_core(fresh_demo_lab, paths)
    app = make_app(core)
    trail: list[str] = []
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        for _ in range(STEPS):
            key = rng.choice(KEYS)
            await pilot.press(key)
            trail.append(f"{key}->{type(app.screen).__name__}")
            assert app.is_running and app._exception is None, f"stopped after {trail[-12:]}: {app._exception!r}"
        await settle(pilot)
        views = {step.split("->")[1] for step in trail}
    assert app._exception is None, f"{app._exception!r} after {trail[-12:]}"
    log = paths.log_file.read_text(encoding="utf-8") if paths.log_file.exists() else ""
    unexpected = [line for line in log.splitlines() if "unexpected" in line or "Traceback" in line]
    assert not unexpected, unexpected[:5]
    # The walk went somewhere: the VM list, a VM's detail, findings and at least one dialog.
    assert {"VmsScreen", "VmDetailScreen", "FindingsScreen"} <= views, views
    assert any(view.endswith("Dialog") for view in views), views
