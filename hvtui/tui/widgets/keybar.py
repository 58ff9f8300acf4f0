"""The bottom line of key hints: one widget instead of Textual's ``Footer``.

Textual 8.2.8's ``Footer`` makes one ``FooterKey`` widget per key and builds them all
again on every binding change (the cursor moving onto a read-only host's VM, a job
changing state), and keeps every replaced key alive: its ``data_bind`` setters hold them.
Measured on the demo lab: about ten widgets leaked per binding change, and a change took
78 ms to settle against 43 ms with this bar (medians of 30, in the test pilot).  ``KeyBar``
is one ``Static`` whose markup is rebuilt from the screen's active bindings and re-sent
only when it changed.  Same meaning as the Footer: a binding whose ``check_action``
returns ``None`` is shown greyed out, ``False`` hides it, and a click on a key presses it.
"""

from __future__ import annotations

from typing import NamedTuple

from rich.cells import cell_len
from textual import events
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Static


class KeyHint(NamedTuple):
    key: str  # the key as bound, e.g. "question_mark"; what a click presses
    display: str  # as shown, e.g. "?"
    description: str
    enabled: bool


class KeyBar(Static):
    """Every shown binding of the screen, as ``key description`` pairs on one line."""

    DEFAULT_CSS = """
    KeyBar {
        height: 1;
        background: $footer-background;
        color: $footer-foreground;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self) -> None:
        super().__init__("", id="key-bar")
        self._hints: tuple[KeyHint, ...] | None = None
        self._spans: list[tuple[int, int, KeyHint]] = []  # cells each hint covers, for clicks

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.show(self.read_hints(self.screen))

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen:
            self.show(self.read_hints(screen))

    def read_hints(self, screen: Screen) -> tuple[KeyHint, ...]:
        """The screen's shown bindings, one per action (the first key of each), in order, Help first."""
        app = self.app
        hints: dict[str, KeyHint] = {}
        palette_hint: KeyHint | None = None
        for key, (_node, binding, enabled, _tooltip) in screen.active_bindings.items():
            if key == app.COMMAND_PALETTE_BINDING and app.ENABLE_COMMAND_PALETTE:
                palette_hint = KeyHint(key, app.get_key_display(binding), binding.description, enabled)
                continue
            if not binding.show or binding.action in hints:
                continue
            hints[binding.action] = KeyHint(key, app.get_key_display(binding), binding.description, enabled)
        # Help first: at 80 columns the end of the line is cut, and "?" leads to every key.
        shown = [hint for _action, hint in sorted(hints.items(), key=lambda item: item[0] != "help")]
        if palette_hint is not None:  # last, like the Footer's right-hand corner
            shown.append(palette_hint)
        return tuple(shown)

    def show(self, hints: tuple[KeyHint, ...]) -> None:
        if hints == self._hints:
            return  # nothing re-sent over the link when nothing changed
        self._hints = hints
        self._spans = []
        offset = 0
        for hint in hints:
            width = cell_len(f" {hint.display} {hint.description}")
            self._spans.append((offset, offset + width, hint))
            offset += width + 1
        self.update(self.markup(hints), layout=False)  # one fixed line

    @staticmethod
    def markup(hints: tuple[KeyHint, ...]) -> str:
        parts = []
        for hint in hints:
            key = f"[b $footer-key-foreground on $footer-key-background] {escape(hint.display)} [/]"
            description = f"[$footer-description-foreground]{escape(hint.description)}[/]"
            part = f"{key}{description}"
            parts.append(part if hint.enabled else f"[dim]{part}[/]")
        return " ".join(parts)

    def on_click(self, event: events.Click) -> None:
        # Worked out from the cells, not with @click markup: Textual styles those spans as
        # links, which would paint over the key colours.
        for start, end, hint in self._spans:
            if start <= event.x < end:
                event.stop()
                if hint.enabled:
                    self.app.simulate_key(hint.key)
                else:
                    self.app.bell()
                return

    @property
    def hints(self) -> tuple[KeyHint, ...]:
        return self._hints or ()
