"""The one-line bars around every view: header, host alert, action status, prompt.

They render what the app tells them; nothing here talks to the core.  Colours come from
theme variables in Textual markup (``[$sev-crit]``), so a theme switch recolours them
without a rebuild, and every state is also spelled out in text for monochrome terminals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.markup import escape
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, Static

from hvtui.events import Progress
from hvtui.text import display_text
from hvtui.tui.viewmodel.format import age_text, size_text


def short_age(seconds: float) -> str:
    """Compact age for the header: ``4s``, then humanize's words."""
    if seconds < 60:
        return f"{int(seconds)}s"
    return age_text(seconds)


@dataclass(frozen=True, slots=True)
class HeaderState:
    lab: bool
    lab_name: str  # "demo lab" (the built-in one), or the lab directory (shortened); "" for real hosts
    read_only: bool
    read_only_hosts: int
    hosts_total: int | None  # None: no refresh yet
    hosts_reachable: int
    refresh_age: float | None  # seconds since the last refresh finished
    refreshing: bool
    crit: int
    warn: int
    view: str
    hosts_waiting: int = 0  # late, not failed: neither reachable nor down
    load_failed: bool = False  # no inventory yet, and the last refresh failed (the alert line says why)
    tls_unverified: tuple[str, ...] = ()  # hosts whose TLS certificate is not checked (verify_tls: false)
    notify_failed: tuple[str, ...] = ()  # notifications whose last message could not be sent


def lab_name(builtin: bool, lab_dir: Path, width: int = 20) -> str:
    """How the header names the lab: the built-in demo lab, or its directory, its first folders
    left out (short: at 80 columns the findings, hosts and refresh age must still fit after it)."""
    if builtin:
        return "demo lab"
    text = str(lab_dir)
    home = str(Path.home())
    if text == home or text.startswith(home + "/"):
        text = "~" + text[len(home) :]
    if len(text) <= width:
        return text
    # Whole trailing folders: what tells one lab from another is at the end of its path.
    parts = Path(text).parts
    tail = parts[-1]
    for part in reversed(parts[:-1]):
        if len(part) + len(tail) + 3 > width:
            break
        tail = f"{part}/{tail}"
    return f"…/{tail}"


class StatusHeader(Static):
    """Mode, hosts reachable/total, refresh age, read-only badge, CRIT/WARN counts."""

    DEFAULT_CSS = """
    StatusHeader {
        height: 1;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    def __init__(self) -> None:
        super().__init__("hvtui", id="status-header")
        self._text = ""
        self._state: HeaderState | None = None

    def on_resize(self) -> None:
        if self._state is not None:
            self.show(self._state)

    def show(self, state: HeaderState) -> None:
        if state.lab:
            mode = "[reverse $warning] LAB [/]" + (f" {escape(state.lab_name)}" if state.lab_name else "")
        else:
            mode = "[reverse $primary] HOSTS [/]"
        parts: list[str] = [f"[b]hvtui[/] {mode}"]
        if state.read_only:
            parts.append("[reverse $error] RO [/]")
        elif state.read_only_hosts:
            parts.append(f"[reverse $error] RO:{state.read_only_hosts} host{'s' if state.read_only_hosts != 1 else ''} [/]")
        else:
            parts.append("[$sev-muted]RW[/]")
        if state.hosts_total is None:
            parts.append("[$sev-crit]no inventory: refresh failed[/]" if state.load_failed else "loading inventory…")
        else:
            # Most important first: an 80-column terminal cuts the end off.  The counts are of
            # findings (a VM can have several), so said: the table's HEALTH counts VMs.
            counts = []
            counts.append(f"[$sev-crit]{state.crit} CRIT[/]" if state.crit else "0 CRIT")
            counts.append(f"[$sev-warn]{state.warn} WARN[/]" if state.warn else "0 WARN")
            parts.append("findings " + " · ".join(counts))
            down = state.hosts_total - state.hosts_reachable - state.hosts_waiting
            hosts = f"hosts {state.hosts_reachable}/{state.hosts_total}"
            if down:
                waiting = f", {state.hosts_waiting} waiting" if state.hosts_waiting else ""
                parts.append(f"[$sev-crit]{hosts} ({down} down{waiting})[/]")
            elif state.hosts_waiting:
                parts.append(f"[$sev-warn]{hosts} ({state.hosts_waiting} waiting)[/]")
            else:
                parts.append(hosts)
            if state.tls_unverified:
                names = state.tls_unverified
                which = escape(names[0]) if len(names) == 1 else f"{len(names)} hosts"
                parts.append(f"[reverse $warning] TLS unverified: {which} [/]")
            if state.notify_failed:
                names = state.notify_failed
                which = escape(display_text(names[0])) if len(names) == 1 else f"{len(names)} targets"
                parts.append(f"[reverse $error] notify failed: {which} [/]")
            if state.refresh_age is not None:
                parts.append(f"{short_age(state.refresh_age)} ago")
        if state.refreshing:
            parts.append("⟳")
        # Parts that do not fit whole are left out (the refresh age at 80 columns beside a
        # long lab name), rather than a line ending in a cut word or a lone "│".
        room = (self.size.width or self.app.size.width) - 2
        while len(parts) > 3 and Content.from_markup(" │ ".join(parts)).cell_length > room:
            parts.pop()
        text = " │ ".join(parts)
        self._state = state
        if text != self._text:  # nothing re-sent over the link when nothing changed
            self._text = text
            self.update(text, layout=False)  # one fixed line: no relayout of the screen

    @property
    def text(self) -> str:
        return self._text


class HostProblem(NamedTuple):
    """One line of the host alert."""

    host: str
    error: str
    stale: bool  # its earlier data is still shown
    waiting: bool = False  # its read is late, not failed


class HostAlert(Static):
    """One line per failing host, hidden when every host answers."""

    DEFAULT_CSS = """
    HostAlert {
        height: auto;
        max-height: 5;
        display: none;
        padding: 0 1;
        color: $sev-crit;
        background: $panel;
    }
    HostAlert.-visible {
        display: block;
    }
    """

    def __init__(self) -> None:
        super().__init__("", id="host-alert")
        self._text = ""

    def show(self, failing: list[HostProblem]) -> None:
        lines = []
        for problem in failing:
            error = problem.error.removeprefix(f"{problem.host}: ")  # host errors already name their host
            tail = " — showing stale data" if problem.stale else " — no data"
            line = f"{escape(display_text(problem.host))}: {escape(display_text(error))}{tail}"
            # Late is not down: a waiting host is told apart at a glance (mark and colour).
            lines.append(f"[$sev-warn]⧗ {line}[/]" if problem.waiting else f"✗ {line}")
        text = "\n".join(lines)
        if text != self._text:
            self._text = text
            self.update(text)
            self.set_class(bool(lines), "-visible")

    @property
    def text(self) -> str:
        return self._text


@dataclass(frozen=True, slots=True)
class ActionView:
    title: str
    progress: Progress | None


def progress_line(action: ActionView, more: int = 0, width: int = 20) -> str:
    """``⟳ Deleting … [█████░░░░░] 52% 120 MiB of 230 MiB, 45 MiB/s``, plain text."""
    parts = [f"⟳ {action.title}"]
    event = action.progress
    if event is not None:
        fraction = event.fraction
        if fraction is not None:
            filled = int(round(fraction * width))
            parts.append(f"[{'█' * filled}{'░' * (width - filled)}] {fraction * 100:.0f}%")
        if event.total:
            parts.append(f"{size_text(event.done)} of {size_text(event.total)}")
        if event.rate:
            parts.append(f"{size_text(event.rate)}/s")
        if event.message:
            parts.append(event.message)
    if more:
        parts.append(f"(+{more} more running)")
    return "  ".join(parts)


class ActionStatus(Static):
    """What the running checkpoint actions are doing (hidden when nothing runs)."""

    DEFAULT_CSS = """
    ActionStatus {
        height: 1;
        display: none;
        padding: 0 1;
        background: $panel;
        color: $accent;
    }
    ActionStatus.-visible {
        display: block;
    }
    """

    def __init__(self) -> None:
        super().__init__("", id="action-status", markup=False)
        self._text = ""

    def show(self, actions: list[ActionView]) -> None:
        text = display_text(progress_line(actions[0], more=len(actions) - 1)) if actions else ""
        if text != self._text:
            self._text = text
            self.update(text, layout=False)  # one fixed line: no relayout of the screen
            self.set_class(bool(actions), "-visible")

    @property
    def text(self) -> str:
        return self._text


class PromptBar(Horizontal):
    """The bottom-line prompt: ``/`` filters the view, ``:`` runs a command."""

    DEFAULT_CSS = """
    PromptBar {
        display: none;
        height: 1;
        background: $panel;
    }
    PromptBar.-visible {
        display: block;
    }
    PromptBar > #prompt-prefix {
        width: 2;
        padding: 0 0 0 1;
        color: $accent;
        text-style: bold;
    }
    PromptBar > Input {
        width: 1fr;
        height: 1;
        border: none;
        padding: 0;
        background: $panel;
    }
    """

    def __init__(self) -> None:
        super().__init__(id="prompt")
        self.mode = "filter"

    def compose(self) -> ComposeResult:
        yield Label("/", id="prompt-prefix")
        field = Input(id="prompt-input", compact=True)
        field.can_focus = False  # while hidden, it must not take the focus (and the keys)
        yield field

    @property
    def input(self) -> Input:
        return self.query_one("#prompt-input", Input)

    def open(self, mode: str, value: str = "", suggestions: list[str] | None = None) -> None:
        self.mode = mode
        self.query_one("#prompt-prefix", Label).update("/" if mode == "filter" else ":")
        field = self.input
        field.suggester = SuggestFromList(suggestions, case_sensitive=False) if suggestions else None
        field.placeholder = (
            "filter: part of a host or VM name (enter keeps it, esc clears)"
            if mode == "filter"
            else "vms, findings, jobs, help, theme NAME, q"
        )
        field.value = value
        field.cursor_position = len(value)
        self.add_class("-visible")
        field.can_focus = True
        field.focus()

    def close(self) -> None:
        self.remove_class("-visible")
        self.input.can_focus = False

    @property
    def is_open(self) -> bool:
        return self.has_class("-visible")
