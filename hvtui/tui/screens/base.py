"""What every full-screen view shares: the bars, the prompt, syncing with the app's state.

Screens never import the app: what they use of it is the ``ConsoleServices`` protocol
below (``hvtui.tui.app.HvtuiApp`` provides it), reached through ``ViewScreen.hvtui``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

from textual import events
from textual.actions import parse as parse_action
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, Static

from hvtui.text import display_text
from hvtui.tui.viewmodel.snapshot import Snapshot
from hvtui.tui.widgets.bars import (
    ActionStatus,
    ActionView,
    HeaderState,
    HostAlert,
    HostProblem,
    PromptBar,
    StatusHeader,
)
from hvtui.tui.widgets.keybar import KeyBar

if TYPE_CHECKING:
    from hvtui.core import Core
    from hvtui.jobs import Job
    from hvtui.model import VM, RestorePointSummary
    from hvtui.tui.viewmodel.cells import Palette


class JobsFlows(Protocol):
    """The job flows the views start (``hvtui.tui.jobs_ui.JobsController``)."""

    def ordered(self) -> list[Job]: ...
    def start_backup(self, vms: Sequence[VM], on_submitted: Callable[[], None] | None = None) -> None: ...
    def start_restore(self, point: RestorePointSummary) -> None: ...
    def cancel(self, job: Job) -> None: ...
    def retry(self, job: Job) -> None: ...
    def resume(self, job: Job) -> None: ...
    def dismiss(self, job: Job) -> None: ...


class ConsoleServices(Protocol):
    """What the views use of the console app, beyond Textual's ``App``."""

    core: Core
    snapshot: Snapshot | None
    palette: Palette
    jobs_ui: JobsFlows

    def sync_screen(self, screen: ViewScreen, data: bool = True) -> None: ...
    def show_view(self, view: str, filter_text: str | None = None) -> None: ...
    def open_vm(self, host: str, vm_id: str, checkpoint_id: str | None = None) -> None: ...
    def run_command(self, text: str) -> None: ...
    def command_suggestions(self) -> list[str]: ...
    def read_only_reason(self, host: str) -> str | None: ...
    def describe_error(self, error: BaseException, doing: str) -> str: ...
    def start_create(self, host: str, vm_id: str) -> None: ...
    def start_rename(self, host: str, vm_id: str, checkpoint_id: str) -> None: ...
    def start_apply(self, host: str, vm_id: str, checkpoint_id: str) -> None: ...
    def start_delete(self, host: str, vm_id: str, checkpoint_id: str, subtree: bool = False) -> None: ...
    def start_change_window(self, vms: Sequence[VM], on_submitted: Callable[[], None] | None = None) -> None: ...
    def offer_checkpoint_all(self, vm: VM, vms: Sequence[VM], source: str) -> None: ...
    def start_schedule_run(self, name: str, on_done: Callable[[], None] | None = None) -> None: ...
    def start_change_step(
        self, name: str, step: str, on_done: Callable[[], None] | None = None, vms: list[str] | None = None
    ) -> None: ...


class ViewTitle(Static):
    """One line naming the view, its counts, sort and filter (k9s' crumb line)."""

    DEFAULT_CSS = """
    ViewTitle {
        height: 1;
        padding: 0 1;
        color: $primary;
        text-style: bold;
    }
    """

    def __init__(self, text: str = "") -> None:
        text = display_text(text)
        super().__init__(text, markup=False, classes="view-title")
        self._text = text

    def show(self, text: str) -> None:
        text = display_text(text)  # titles name VMs and filters: shown escaped
        if text != self._text:
            self._text = text
            self.update(text, layout=False)  # one fixed line: no relayout of the screen

    @property
    def text(self) -> str:
        return self._text


class ViewScreen(Screen):
    """A top-level view (VMs, findings, jobs) or a pushed one (a VM's detail)."""

    view_name: ClassVar[str] = ""
    view_title: ClassVar[str] = ""
    # Escape: clear the filter first, then go back (pop, or to the VM list).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "escape", "Back / clear filter", show=False),
    ]
    # The key bar on a narrow terminal: shorter descriptions by action, and the actions it
    # leaves out first (Help lists them all).
    KEY_BAR_SHORT: ClassVar[dict[str, str]] = {"command": "Cmd", "create_checkpoint": "New cp"}
    KEY_BAR_DROP: ClassVar[tuple[str, ...]] = ("command_palette", "refresh", "command")

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.shown_version = -1  # the app's snapshot version this view last showed
        self._binding_state: tuple[bool | None, ...] | None = None

    def refresh_bindings_if_changed(self) -> None:
        """``refresh_bindings`` only when one of this view's keys changed availability.

        Each ``refresh_bindings`` asks every binding's ``check_action`` again and rebuilds
        the key bar's line: not worth doing on every cursor move or refresh.
        """
        state = []
        for binding in Binding.make_bindings(type(self).BINDINGS):
            _namespace, name, parameters = parse_action(binding.action)
            state.append(self.check_action(name, parameters))
        if tuple(state) != self._binding_state:
            self._binding_state = tuple(state)
            self.refresh_bindings()

    def why_unavailable(self, action: str) -> str | None:
        """Why this view's ``action`` cannot run now, or None when it can.

        The one place a view decides it: ``check_action`` greys the key out exactly when
        there is a reason, and the key says the reason when pressed anyway.
        """
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if self.why_unavailable(action) is not None else True  # None: shown, greyed out

    def on_key(self, event: events.Key) -> None:
        # Textual skips a binding whose check_action is None and the key reaches the screen:
        # say why instead of doing nothing (during an incident a silent key looks broken).
        # A key typed into an input (the `:` or `/` prompt) is the input's: its enter submits it.
        if isinstance(self.focused, Input):
            return
        for binding in Binding.make_bindings(type(self).BINDINGS):
            if event.key not in binding.key.split(","):
                continue
            _namespace, name, parameters = parse_action(binding.action)
            if self.check_action(name, parameters) is not None:
                return  # allowed (the binding ran) or hidden
            why = self.why_unavailable(name)
            if why is not None:
                event.stop()
                self.notify(f"{binding.description}: {why}", title="Not available", severity="warning", timeout=4, markup=False)
            return

    @property
    def hvtui(self) -> ConsoleServices:
        """The console app, as the services a view uses."""
        return self.app  # type: ignore[return-value]

    DEFAULT_CSS = """
    ViewScreen > #top-bars {
        dock: top;
        height: auto;
    }
    ViewScreen > #bottom-bars {
        dock: bottom;
        height: auto;
    }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="top-bars"):
            yield StatusHeader()
            yield HostAlert()
        yield from self.compose_body()
        with Vertical(id="bottom-bars"):
            yield ActionStatus()
            yield PromptBar()
            yield KeyBar()

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def main_widget(self) -> Widget | None:
        """The widget that has the focus when the prompt closes."""
        return None

    # -- syncing with the app ----------------------------------------------------------------
    def on_screen_resume(self) -> None:
        self.hvtui.sync_screen(self)

    def sync_bars(self, header: HeaderState, failing: list[HostProblem], actions: list[ActionView]) -> None:
        if not self.is_mounted:
            return
        self.query_one(StatusHeader).show(header)
        self.query_one(HostAlert).show(failing)
        self.query_one(ActionStatus).show(actions)

    def show_snapshot(self, snapshot: Snapshot) -> None:
        """Show a new refresh's data (called only when the version changed)."""

    def restyle(self) -> None:
        """The theme changed: re-show with the new colours."""
        if self.hvtui.snapshot is not None:
            self.show_snapshot(self.hvtui.snapshot)

    # -- filter and command prompt -------------------------------------------------------------
    @property
    def prompt(self) -> PromptBar:
        return self.query_one(PromptBar)

    def action_filter(self) -> None:
        self.prompt.open("filter", self.filter_text)

    def open_command_prompt(self, initial: str = "") -> None:
        self.prompt.open("command", initial, suggestions=self.hvtui.command_suggestions())

    def apply_filter(self, text: str) -> None:
        """Narrow the view to ``text`` (views with a filter override this)."""
        self.filter_text = text

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "prompt-input" and self.prompt.mode == "filter" and self.prompt.is_open:
            event.stop()
            self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "prompt-input":
            return
        event.stop()
        mode = self.prompt.mode
        self._close_prompt()
        if mode == "command":
            self.hvtui.run_command(event.value)

    def _close_prompt(self) -> None:
        self.prompt.close()
        main = self.main_widget
        if main is not None:
            main.focus()
        else:
            self.set_focus(None)  # a hidden input must not keep eating the one-letter keys

    def action_escape(self) -> None:
        prompt = self.prompt
        if prompt.is_open:
            if prompt.mode == "filter":
                self.apply_filter("")
            self._close_prompt()
            return
        if self.filter_text:
            self.apply_filter("")
            return
        self.go_back()

    def go_back(self) -> None:
        """Escape with nothing to clear: pop a pushed view, or return to the VM list."""
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        elif self.view_name != "vms":
            self.hvtui.show_view("vms")
