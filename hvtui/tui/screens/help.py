"""`?`: every key binding, generated from the bindings themselves (never hand-written).

The views' bindings come from the screen classes (imported here); the app-wide ones, the
palette key and the `:` commands from the app, through the ``KeyHelpSource`` protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar, Protocol

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static, Tree

if TYPE_CHECKING:
    from hvtui.core import Core


class KeyHelpSource(Protocol):
    """What the help uses of the console app (``hvtui.tui.app.HvtuiApp``)."""

    BINDINGS: ClassVar[list[BindingType]]
    COMMAND_PALETTE_BINDING: ClassVar[str]
    core: Core

    def get_key_display(self, binding: Binding) -> str: ...
    def command_help(self) -> list[tuple[str, str]]: ...

# Navigation keys of the widgets the views use (their own BINDINGS, filtered to what matters).
_TABLE_ACTIONS = {"cursor_up", "cursor_down", "page_up", "page_down", "scroll_top", "scroll_bottom", "select_cursor"}
# App keys offered only while a host is down: listed in a section of their own, at the end.
_WHEN_A_HOST_IS_DOWN = {"doctor"}
_TREE_ACTIONS = {"toggle_node", "cursor_parent", "cursor_previous_sibling", "cursor_next_sibling", "toggle_expand_all"}


def _bindings(sources: Iterable[BindingType]) -> list[Binding]:
    return list(Binding.make_bindings(sources))


def help_sections(app: KeyHelpSource) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(section title, [(keys, description, note)]) from the live binding tables."""
    from hvtui.tui.screens.base import ViewScreen
    from hvtui.tui.screens.findings import FindingsScreen
    from hvtui.tui.screens.jobs import CHANGING_JOB_ACTIONS, JobsScreen
    from hvtui.tui.screens.vm_detail import CHANGING_ACTIONS, VmDetailScreen
    from hvtui.tui.screens.vms import VmsScreen

    read_only = app.core.read_only
    changing = {*CHANGING_ACTIONS, *CHANGING_JOB_ACTIONS, "delete_culprit", "backup", "backup_vm"}

    def rows(bindings: list[Binding], only: set[str] | None = None) -> list[tuple[str, str, str]]:
        grouped: dict[tuple[str, str], list[str]] = {}
        for binding in bindings:
            if only is not None and binding.action not in only:
                continue
            description = binding.description or binding.tooltip or binding.action.replace("_", " ")
            grouped.setdefault((binding.action, description), []).append(app.get_key_display(binding))
        out = []
        for (action, description), keys in grouped.items():
            note = "unavailable: read-only" if read_only and action.split("(")[0] in changing else ""
            out.append((" ".join(dict.fromkeys(keys)), description, note))
        return out

    palette = Binding(app.COMMAND_PALETTE_BINDING, "command_palette", "Command palette (views, themes, commands)")
    everywhere = [binding for binding in _bindings(app.BINDINGS) if binding.action not in _WHEN_A_HOST_IS_DOWN]
    when_down = [binding for binding in _bindings(app.BINDINGS) if binding.action in _WHEN_A_HOST_IS_DOWN]
    sections: list[tuple[str, list[tuple[str, str, str]]]] = [
        ("Everywhere", rows([*everywhere, palette])),
        ("VM list", rows(_bindings([*VmsScreen.BINDINGS, *ViewScreen.BINDINGS]))),
        ("VM detail", rows(_bindings(VmDetailScreen.BINDINGS))),
        ("Findings", rows(_bindings([*FindingsScreen.BINDINGS, *ViewScreen.BINDINGS]))),
        ("Jobs", rows(_bindings([*JobsScreen.BINDINGS, *ViewScreen.BINDINGS]))),
        ("Tables", rows(_bindings(DataTable.BINDINGS), _TABLE_ACTIONS)),
        ("Checkpoint tree", rows(_bindings(Tree.BINDINGS), _TREE_ACTIONS)),
        ("Commands (after :)", [(f":{name}", description, "") for name, description in app.command_help()]),
        ("While a host is unreachable", rows(when_down)),
    ]
    return sections


def help_table(app: KeyHelpSource) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 1), expand=True)
    table.add_column("key", no_wrap=True, style="bold")
    table.add_column("what")
    for title, entries in help_sections(app):
        table.add_row(Text(title, style="bold underline"), "")
        for keys, description, note in entries:
            what = Text(description)
            if note:
                what.append(f"  ({note})", style="dim")
            table.add_row(keys, what)
        table.add_row("", "")
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False, key_display="?"),
    ]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > Vertical {
        width: 90%;
        max-width: 110;
        height: 90%;
        border: round $primary;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen #help-title {
        text-style: bold;
        color: $primary;
    }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("hvtui keys — esc, q or ? closes; ↑↓ PgUp PgDn scroll", id="help-title", markup=False)
            with VerticalScroll(id="help-scroll"):
                yield Static(help_table(self.app), id="help-body")  # type: ignore[arg-type]

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)

    @property
    def text(self) -> str:
        """Plain text of the help (for tests)."""
        sections = help_sections(self.app)  # type: ignore[arg-type]
        return "\n".join(f"{keys}\t{description}\t{note}" for _title, entries in sections for keys, description, note in entries)
