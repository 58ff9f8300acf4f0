"""Dialog choices read without colour: the selected one is marked with text."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import RadioSet

from hvtui.tui.widgets.choice import ChoiceButton


class ChoiceApp(App[None]):
    def compose(self) -> ComposeResult:
        with RadioSet():
            yield ChoiceButton("full", value=True, id="full")
            yield ChoiceButton("incremental", id="incremental")


def marked(app: App[None]) -> dict[str, bool]:
    return {button.id: "●" in button.render().plain for button in app.query(ChoiceButton)}


async def test_only_the_selected_choice_carries_the_mark() -> None:
    app = ChoiceApp()
    async with app.run_test() as pilot:
        assert marked(app) == {"full": True, "incremental": False}
        await pilot.press("down", "enter")
        await pilot.pause()
        assert marked(app) == {"full": False, "incremental": True}
