"""`!` over an unreachable host: `hvtui doctor`'s checks in a dialog, run on a worker thread.

The checks go through the core's doctor service (the console never talks to a host itself);
the dialog shows "checking…" at once and each host's checks as they arrive, the first failure
with what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from hvtui.errors import HvtuiError
from hvtui.text import display_lines

if TYPE_CHECKING:
    from hvtui.hosts.doctor import Diagnosis


class DoctorScreen(ModalScreen[None]):
    """The checks of ``hosts``, one after the other."""

    DEFAULT_CSS = """
    DoctorScreen {
        align: center middle;
    }
    DoctorScreen > Vertical {
        width: 95%;
        max-width: 120;
        height: auto;
        max-height: 90%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    DoctorScreen .dialog-title {
        text-style: bold;
        color: $primary;
    }
    DoctorScreen VerticalScroll {
        height: auto;
        max-height: 24;
    }
    DoctorScreen .keys-hint {
        color: $text-muted;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("up", "scroll(-1)", "Scroll up", show=False),
        Binding("down", "scroll(1)", "Scroll down", show=False),
    ]

    def __init__(self, hosts: list[str]) -> None:
        super().__init__()
        self.hosts = hosts
        self._parts: list[str] = []
        self.finished = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Doctor: {', '.join(self.hosts)}", classes="dialog-title", markup=False)
            with VerticalScroll():
                yield Static(self._text(), id="doctor-report", markup=False)
            yield Label("esc: close · the same checks from a shell: hvtui doctor HOST", classes="keys-hint", markup=False)

    def on_mount(self) -> None:
        self._diagnose()

    def _text(self) -> str:
        pending = len(self.hosts) - len(self._parts)
        tail = [f"checking {self.hosts[len(self._parts)]}…"] if pending else []
        return "\n\n".join([*self._parts, *tail])

    @work(thread=True, group="doctor", exclusive=True)
    def _diagnose(self) -> None:
        doctor = self.app.core.doctor  # type: ignore[attr-defined]
        for host in self.hosts:
            try:
                part = describe_host(doctor.diagnose(host))
            except HvtuiError as err:
                part = f"{host}: the checks could not run: {err}"
            self.app.call_from_thread(self._add, part)
        self.app.call_from_thread(self._done)

    def _add(self, part: str) -> None:
        self._parts.append(display_lines(part))
        if self.is_mounted:
            self.query_one("#doctor-report", Static).update(self._text())

    def _done(self) -> None:
        self.finished = True

    def action_scroll(self, step: int) -> None:
        self.query_one(VerticalScroll).scroll_relative(y=step, animate=False)


def describe_host(diagnosis: Diagnosis) -> str:
    from hvtui.hosts.doctor import describe

    return describe(diagnosis)
