"""The bottom line of key hints: one widget instead of Textual's ``Footer``.

Textual 8.2.8's ``Footer`` makes one ``FooterKey`` widget per key and builds them all
again on every binding change (the cursor moving onto a read-only host's VM, a job
changing state), and keeps every replaced key alive: its ``data_bind`` setters hold them.
Measured on the demo lab: about ten widgets leaked per binding change, and a change took
78 ms to settle against 43 ms with this bar (medians of 30, in the test pilot).  ``KeyBar``
is one ``Static`` whose markup is rebuilt from the screen's active bindings and re-sent
only when it changed.  Same meaning as the Footer: a binding whose ``check_action``
returns ``None`` is shown greyed out, ``False`` hides it, and a click on a key presses it.

The line always fits its width with whole hints, never a word cut with "…" (at 80
columns the Footer's way lost Jobs and Quit): when it is too long the palette's hint goes
first, then the screen's short descriptions are used (``KEY_BAR_SHORT``), then hints are
left out in the screen's order (``KEY_BAR_DROP``), and last from the right; Help (first,
it lists every key) and Quit always stay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    action: str = ""  # the binding's action, e.g. "show_view('jobs')"
    short: str = ""  # a shorter description for narrow terminals; "" when there is none


# What the bar gives up first on any screen that says nothing else: the palette (ctrl+p),
# Refresh (the console refreshes by itself), then the `:` prompt.
DEFAULT_DROP: tuple[str, ...] = ("command_palette", "refresh", "command")
DEFAULT_SHORT: Mapping[str, str] = {"command": "Cmd"}
ALWAYS_SHOWN = ("help", "quit")


def hint_width(hint: KeyHint, short: bool = False) -> int:
    return cell_len(f" {hint.display} {hint.short if short and hint.short else hint.description}")


def fit_hints(hints: Sequence[KeyHint], width: int, drop_order: Sequence[str]) -> tuple[tuple[KeyHint, ...], bool]:
    """The hints that fit in ``width`` cells, and whether they use their short descriptions.

    The one-cell gap between hints always stays: some themes paint the keys on the bar's own
    background, and "Helpc New" would then read as one word.
    """

    def total(shown: Sequence[KeyHint], short: bool) -> int:
        return sum(hint_width(hint, short) for hint in shown) + max(0, len(shown) - 1)

    shown = list(hints)
    if total(shown, False) <= width:
        return tuple(shown), False
    drops = list(drop_order)
    if drops:  # the first to go (the palette's corner hint) goes before any word is shortened
        first = drops.pop(0)
        shown = [hint for hint in shown if hint.action != first]
    for short in (False, True):
        if total(shown, short) <= width:
            return tuple(shown), short
    for action in drops:
        shown = [hint for hint in shown if hint.action != action]
        if total(shown, True) <= width:
            return tuple(shown), True
    # Still too long (a very narrow terminal): leave out from the right, but never Help or Quit.
    for hint in reversed(list(shown)):
        if total(shown, True) <= width:
            break
        if hint.action not in ALWAYS_SHOWN:
            shown.remove(hint)
    return tuple(shown), True


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
        self._width = 0
        self._shown: tuple[KeyHint, ...] = ()
        self._spans: list[tuple[int, int, KeyHint]] = []  # cells each hint covers, for clicks

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.show(self.read_hints(self.screen))

    def on_resize(self) -> None:
        if self._hints is not None:
            self.show(self._hints)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen:
            self.show(self.read_hints(screen))

    def read_hints(self, screen: Screen) -> tuple[KeyHint, ...]:
        """The screen's shown bindings, one per action (the first key of each), in order, Help first."""
        app = self.app
        shorts = {**DEFAULT_SHORT, **getattr(screen, "KEY_BAR_SHORT", {})}
        hints: dict[str, KeyHint] = {}
        palette_hint: KeyHint | None = None
        for key, (_node, binding, enabled, _tooltip) in screen.active_bindings.items():
            if key == app.COMMAND_PALETTE_BINDING and app.ENABLE_COMMAND_PALETTE:
                palette_hint = KeyHint(key, app.get_key_display(binding), binding.description, enabled, "command_palette")
                continue
            if not binding.show or binding.action in hints:
                continue
            short = shorts.get(binding.action, "")
            hints[binding.action] = KeyHint(
                key, app.get_key_display(binding), binding.description, enabled, binding.action, short
            )
        # Help first: at 80 columns the end of the line is cut, and "?" leads to every key.
        shown = [hint for _action, hint in sorted(hints.items(), key=lambda item: item[0] != "help")]
        if palette_hint is not None:  # last, like the Footer's right-hand corner
            shown.append(palette_hint)
        return tuple(shown)

    def show(self, hints: tuple[KeyHint, ...]) -> None:
        width = self.size.width or self.app.size.width
        if hints == self._hints and width == self._width:
            return  # nothing re-sent over the link when nothing changed
        self._hints = hints
        self._width = width
        drop_order = getattr(self.screen, "KEY_BAR_DROP", DEFAULT_DROP) if self.is_attached else DEFAULT_DROP
        shown, short = fit_hints(hints, width, drop_order)
        self._shown = shown
        self._spans = []
        offset = 0
        for hint in shown:
            hint_cells = hint_width(hint, short)
            self._spans.append((offset, offset + hint_cells, hint))
            offset += hint_cells + 1
        self.update(self.markup(shown, short), layout=False)  # one fixed line

    @staticmethod
    def markup(hints: Sequence[KeyHint], short: bool = False) -> str:
        parts = []
        for hint in hints:
            key = f"[b $footer-key-foreground on $footer-key-background] {escape(hint.display)} [/]"
            text = hint.short if short and hint.short else hint.description
            description = f"[$footer-description-foreground]{escape(text)}[/]"
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
        """Every hint of the screen, shown or not."""
        return self._hints or ()

    @property
    def shown_hints(self) -> tuple[KeyHint, ...]:
        """The hints on the line now (those that fit)."""
        return self._shown
