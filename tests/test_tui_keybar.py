"""The key bar at the bottom of every view: what it shows, what it greys out, what a click does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from textual.strip import Strip
from tui_support import SIZE, make_app, make_core, settle

from hvtui.config import Config, HostConfig
from hvtui.tui.screens.findings import FindingsScreen
from hvtui.tui.screens.jobs import JobsScreen
from hvtui.tui.screens.vms import VmsScreen
from hvtui.tui.widgets.keybar import KeyBar, KeyHint


def key_bar(app) -> KeyBar:
    return app.screen.query_one(KeyBar)


def hint(bar: KeyBar, description: str) -> KeyHint:
    return next(h for h in bar.hints if h.description == description)


def painted_line(bar: KeyBar) -> Strip:
    return bar.render_lines(bar.region.reset_offset)[0]


def colour_where(strip: Strip, text: str) -> str:
    """The foreground colour painting the first letter of ``text``.

    Textual paints "dim" by blending the colour towards the background, not with the
    terminal's dim attribute: a greyed-out hint shows up as a different colour.
    """
    line = "".join(segment.text for segment in strip)
    start = line.index(text)
    offset = 0
    for segment in strip:
        end = offset + len(segment.text)
        if offset <= start < end:
            assert segment.style is not None and segment.style.color is not None
            return segment.style.color.name
        offset = end
    raise AssertionError(text)


async def test_key_bar_shows_the_views_keys_in_binding_order(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = key_bar(app)
        shown = [(h.display, h.description) for h in bar.hints]
        # Help first (the end is cut at 80 columns), the VM view's own keys, then the app's,
        # then the palette (like Textual's Footer).
        assert shown[:4] == [("?", "Help"), ("/", "Filter"), ("c", "New checkpoint"), ("b", "Backup")]
        assert ("f", "Findings") in shown and ("q", "Quit") in shown
        assert shown[-1][1] == "palette"
        # Hidden bindings (show=False) are not listed.
        assert "Back / clear filter" not in [h.description for h in bar.hints]
        line = "".join(segment.text for segment in painted_line(bar))
        assert line.startswith(" ? Help  / Filter  c New checkpoint  b Backup")
        assert all(h.enabled for h in bar.hints)

        await pilot.press("j")  # another view, its own keys
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)
        jobs_keys = [h.description for h in key_bar(app).hints]
        assert jobs_keys != [h.description for h in bar.hints]
        assert "Help" in jobs_keys


async def test_key_bar_greys_out_keys_the_row_under_the_cursor_cannot_use(shared_demo_lab: Path, paths) -> None:
    # lab-hv02 is read-only: "New checkpoint" is greyed out exactly while one of its VMs is
    # under the cursor, and comes back on another host's VM.
    hosts = (
        HostConfig(name="lab-hv01", kind="lab"),
        HostConfig(name="lab-hv02", kind="lab", read_only=True),
        HostConfig(name="lab-hv03", kind="lab"),
    )
    config = dataclasses.replace(Config.lab_default(paths), hosts=hosts)
    app = make_app(make_core(shared_demo_lab, paths, config=config))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, VmsScreen)
        table = screen.table
        rows = [table.plain_row(key) for key in table.keys]
        read_only_row = next(i for i, row in enumerate(rows) if row["host"] == "lab-hv02")
        writable_row = next(i for i, row in enumerate(rows) if row["host"] != "lab-hv02")

        table.move_cursor(row=read_only_row)
        await settle(pilot)
        bar = key_bar(app)
        assert hint(bar, "New checkpoint").enabled is False
        line = painted_line(bar)
        # Greyed: painted unlike the other descriptions.
        assert colour_where(line, "New checkpoint") != colour_where(line, "Filter")
        assert colour_where(line, "Help") == colour_where(line, "Filter")

        table.move_cursor(row=writable_row)
        await settle(pilot)
        assert hint(bar, "New checkpoint").enabled is True
        line = painted_line(bar)
        assert colour_where(line, "New checkpoint") == colour_where(line, "Filter")


async def test_clicking_a_key_presses_it_and_a_greyed_one_does_nothing(shared_demo_lab: Path, paths) -> None:
    app = make_app(make_core(shared_demo_lab, paths, read_only=True))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = key_bar(app)
        line = "".join(segment.text for segment in painted_line(bar))

        greyed = hint(bar, "New checkpoint")
        assert greyed.enabled is False  # read-only
        await pilot.click(KeyBar, offset=(line.index("New checkpoint"), 0))
        await settle(pilot)
        assert isinstance(app.screen, VmsScreen)  # no dialog opened
        assert len(app.screen_stack) == 1

        await pilot.click(KeyBar, offset=(line.index("Findings"), 0))
        await settle(pilot)
        assert isinstance(app.screen, FindingsScreen)


def painted_text(app) -> str:
    return "".join(segment.text for segment in painted_line(key_bar(app)))


def assert_whole_hints(app, width: int) -> str:
    """The bar's line fits, every hint on it is whole (no "…") and apart, and Help and Quit are there."""
    bar = key_bar(app)
    line = painted_text(app).rstrip()
    assert not line.endswith("…")
    assert "…" not in line.replace("Restore…", "")  # the only "…" is the one in "Restore…"
    assert len(line) <= width
    for shown in bar.shown_hints:
        assert f" {shown.display} {shown.description} " in line + " " or f" {shown.display} {shown.short} " in line + " "
    actions = [shown.action for shown in bar.shown_hints]
    assert actions[0] == "help" and "quit" in actions
    return line


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_key_bar_fits_whole_hints_in_every_view(shared_demo_lab: Path, paths, size: tuple[int, int]) -> None:
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        line = assert_whole_hints(app, size[0])
        # The VM list keeps its way to the other views and out.
        for whole in ("f Findings", "j Jobs", "q Quit", "b Backup", "/ Filter"):
            assert whole in line

        await pilot.press("enter")  # a VM's detail
        await settle(pilot)
        line = assert_whole_hints(app, size[0])
        for whole in ("c New", "a Apply", "d Delete", "r Rename", "b Backup", "t Restore", "q Quit"):
            assert whole in line
        if size[0] >= 120:
            assert "esc Back" in line and "j Jobs" in line and "D Del tree" in line

        for key in ("escape", "f", "j"):
            await pilot.press(key)
            await settle(pilot)
            assert_whole_hints(app, size[0])


async def test_a_click_on_a_key_of_a_squeezed_bar_presses_that_key(shared_demo_lab: Path, paths) -> None:
    # At 80 columns the hints sit without gaps: a click still lands on the key it shows.
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        line = painted_text(app)
        await pilot.click(KeyBar, offset=(line.index("Jobs"), 0))
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)
