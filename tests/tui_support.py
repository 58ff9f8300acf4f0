"""Helpers for the console tests: a demo lab, a core over it, and reading what the screen shows."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from textual.css.query import NoMatches
from textual.errors import NoWidget
from textual.pilot import Pilot

from hvtui.clock import FixedClock
from hvtui.config import Config, UIConfig
from hvtui.core import Core
from hvtui.paths import Paths
from hvtui.tui.app import HvtuiApp

SIZE = (110, 32)


def make_core(
    lab: Path,
    paths: Paths,
    clock: FixedClock | None = None,
    read_only: bool = False,
    config: Config | None = None,
) -> Core:
    config = config or Config.lab_default()
    # A long auto-refresh interval: the tests refresh by key or by call, never by the clock.
    config = dataclasses.replace(config, ui=dataclasses.replace(config.ui or UIConfig(), refresh_seconds=3600))
    return Core(config, paths, clock=clock or FixedClock(), read_only=read_only, lab_dir=lab)


def child_core(lab: Path, paths: Paths) -> Core:
    """The core a child process builds over ``lab`` (kill_support.kill_backup_at's factory)."""
    return make_core(lab, paths)


def make_app(core: Core) -> HvtuiApp:
    return HvtuiApp(core)


def screen_text(app: HvtuiApp) -> str:
    """The terminal as plain text, as the user sees it now (dialogs and toasts included)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def settle(pilot: Pilot) -> None:
    """Let key presses land and wait for the refresh and action workers (not open dialogs)."""
    app = pilot.app
    for _ in range(20):
        await pilot.pause()
        busy = [w for w in app.workers if w.group in ("poll", "action") and not w.is_finished]
        if not busy:
            break
        # Until they end, not until they succeed: an action that fails (a forced delete the
        # volume has no room for) is the app's to show. Raised here, it failed the test only when
        # the worker was still running as settle() looked (on a loaded machine), never after.
        await asyncio.gather(*(worker.wait() for worker in busy), return_exceptions=True)
    await pilot.pause()


async def click(pilot: Pilot, selector: str, rounds: int = 400) -> None:
    """Click ``selector`` on the current screen once it is laid out and nothing covers it.

    Pilot.click aims at the widget's region as it is at the call: on a dialog pushed a moment
    ago that is not laid out yet, or under a toast, the click lands elsewhere and is lost."""
    app = pilot.app

    def under_the_mouse() -> bool:
        try:
            widget = app.screen.query_one(selector)
            region = widget.region
            return bool(region) and app.get_widget_at(region.x, region.y)[0] is widget
        except (NoMatches, NoWidget):
            return False

    for _ in range(rounds):  # bounded: a hang guard, not a timing
        if under_the_mouse():
            break
        await pilot.pause(0.02)
    assert await pilot.click(selector), f"{selector} is not under the mouse on {app.screen!r}: {screen_text(app)}"


async def refreshed(pilot: Pilot) -> None:
    """Ask for a refresh and wait until it has been shown."""
    app = pilot.app
    before = app.snapshot_version
    app.request_refresh()
    for _ in range(50):
        await settle(pilot)
        if app.snapshot_version > before and not app.is_polling:
            return
    raise AssertionError("the refresh never arrived")
