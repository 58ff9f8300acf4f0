"""Outside text (VM, checkpoint and host names, host errors) for the console's markup strings."""

from __future__ import annotations

from textual.markup import escape

from hvtui.text import display_text


def markup_text(text: str) -> str:
    """``text`` inside Textual markup: control characters as visible escapes, then markup escaped."""
    return escape(display_text(text))
