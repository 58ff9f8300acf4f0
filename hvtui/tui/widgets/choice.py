"""A radio button whose state reads without colour (monochrome terminals, NO_COLOR)."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import RadioButton


class ChoiceButton(RadioButton):
    """Shows ``●`` when selected and a blank when not, instead of colour alone."""

    @property
    def _button(self) -> Content:
        self.BUTTON_INNER = "●" if self.value else " "
        return super()._button
