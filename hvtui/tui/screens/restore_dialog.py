"""The dialog that picks where a restore point goes: a new VM, the original VM, a folder.

It only collects the choice; the confirmation that names what will be overwritten comes
after it (``JobsController.restore_confirmation``), with the focus on "No".  A read-only
host takes no restore: "as a new VM" follows the chosen target host, "in place" the point's own
host, and the folder target stays (restoring files onto this machine changes no host).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, Input, Label, RadioSet, Select, Static

from hvtui.model import RestorePointSummary, Volume
from hvtui.text import display_text
from hvtui.tui.screens.dialogs import CHOICE_KEYS_HINT, DIALOG_CSS, _Dialog
from hvtui.tui.viewmodel.format import aware, size_text
from hvtui.tui.widgets.choice import ChoiceButton

TARGETS = ("new", "in_place", "directory")


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    target: str  # new, in_place or directory (hvtui.jobs.RESTORE_TARGETS)
    new_name: str | None = None
    host: str | None = None  # new VM: the host it goes on (None: the point's)
    directory: str | None = None
    keep_checkpoints: bool = False  # new VM or folder: keep the point's checkpoint tree


def point_time(point: RestorePointSummary) -> str:
    return aware(point.time).astimezone().strftime("%Y-%m-%d %H:%M:%S")  # two points of one minute differ


def point_label(point: RestorePointSummary) -> str:
    """``the restore point of 2026-11-20 10:00:00 (full, 12 MiB, id 20261120T100000Z-1a2b3c4d)``."""
    return f"the restore point of {point_time(point)} ({point.mode}, {size_text(point.logical_bytes)}, id {point.id})"


def default_new_name(point: RestorePointSummary) -> str:
    return f"{point.vm_name}-restore-{aware(point.time).astimezone():%Y%m%d-%H%M}"


def default_restore_directory(point: RestorePointSummary) -> Path:
    return Path.home() / "hvtui-restores" / f"{point.vm_name}-{aware(point.time).astimezone():%Y%m%d-%H%M%S}"


class RestoreDialog(_Dialog):
    DEFAULT_CSS = DIALOG_CSS.format(cls="RestoreDialog") + """
    RestoreDialog RadioSet { height: auto; width: 100%; margin: 1 0 0 0; border: none; padding: 0; }
    RestoreDialog .keys-hint { margin-bottom: 1; }
    RestoreDialog RadioSet:focus { border: none; background: $boost; }
    RestoreDialog Input { margin: 0 0 1 0; }
    RestoreDialog .target-field { display: none; height: auto; }
    RestoreDialog .target-field.-shown { display: block; }
    RestoreDialog #restore-note { color: $warning; }
    RestoreDialog #field-host { height: auto; }
    RestoreDialog #field-host Label { padding: 1 1 0 0; }
    RestoreDialog #field-host Select { width: 1fr; }
    """

    def __init__(
        self,
        point: RestorePointSummary,
        *,
        vm_exists: bool,
        vm_state: str | None,
        read_only_reason: str | None,
        default_directory: str,
        target_hosts: tuple[str, ...] = (),
        volume_of: Callable[[str], Volume | None] | None = None,
        read_only_of: Callable[[str], str | None] | None = None,
    ) -> None:
        """``read_only_reason``: why the point's own host takes no restore (None: it does);
        ``target_hosts``: where a new VM may go (the point's host first); ``volume_of``
        reads a host's restore volume (blocking: run on a worker thread, through Core);
        ``read_only_of``: why a target host takes no restore (default: only the point's
        host is read-only, for ``read_only_reason``)."""
        super().__init__()
        self.point = point
        self.vm_exists = vm_exists
        self.vm_state = vm_state
        self.read_only_reason = read_only_reason
        self.default_directory = default_directory
        self.target_hosts = target_hosts or (point.host,)
        self.target_host = self.target_hosts[0]
        self.volume_of = volume_of
        self._read_only_of = read_only_of
        self.target = "directory" if self.target_read_only_reason else "new"

    def host_read_only_reason(self, host: str) -> str | None:
        if host == self.point.host:
            return self.read_only_reason
        return self._read_only_of(host) if self._read_only_of is not None else None

    @property
    def target_read_only_reason(self) -> str | None:
        """Why the chosen target host takes no new VM, or None."""
        return self.host_read_only_reason(self.target_host)

    @property
    def note_text(self) -> str:
        """What read-only mode leaves possible, or "" when nothing is refused."""
        own, target = self.read_only_reason, self.target_read_only_reason
        if target and (own or not self.vm_exists):  # neither a new VM nor in place
            reasons = "; ".join(dict.fromkeys(reason for reason in (own, target) if reason))
            return f"Read-only: only a folder restore is possible ({reasons})."
        if target:
            return f"Read-only: no new VM on {self.target_host} ({target}); choose another host or a folder."
        if own:
            return f"Read-only: not in place ({own}); a new VM on {self.target_host} or a folder."
        return ""

    def compose(self) -> ComposeResult:
        point = self.point
        with Vertical():
            yield Label(display_text(f"Restore {point.vm_name} ({point.host})"), classes="dialog-title", markup=False)
            yield Static(display_text(f"From {point_label(point)} in repository {point.repository}."), markup=False)
            # Above the choices: it says why some of them are greyed out, and a tall dialog
            # on a short terminal must not push it out of view.
            yield Static(display_text(self.note_text), id="restore-note", markup=False)
            if len(self.target_hosts) > 1:
                # Outside the new-VM fields: a read-only point host leaves "as a new VM" greyed
                # out until a writable host is chosen here.
                with Horizontal(id="field-host"):
                    yield Label("Target host ", id="restore-host-label")
                    yield self._host_select()
            original = "over the original VM, in place"
            if not self.vm_exists:
                original += " (the VM is gone)"
            elif self.vm_state and self.vm_state.lower() not in ("off", "stopped"):
                original += f" (it is {self.vm_state}: turn it off first)"
            with RadioSet(id="restore-target"):
                # Text, not markup: host and state names are shown as they are.
                yield ChoiceButton(
                    Text("as a new VM"),
                    value=self.target == "new",
                    id="target-new",
                    disabled=bool(self.target_read_only_reason),
                )
                yield ChoiceButton(
                    Text(display_text(original)),
                    value=False,
                    id="target-in_place",
                    disabled=bool(self.read_only_reason) or not self.vm_exists,
                )
                yield ChoiceButton("into a folder on this machine", value=self.target == "directory", id="target-directory")
            yield Static(CHOICE_KEYS_HINT.replace("change the choice", "where it goes"), classes="keys-hint", markup=False)
            with Vertical(id="field-new", classes="target-field"):
                yield Label("New VM name")
                yield Input(display_text(default_new_name(point)), id="restore-name")
                if len(self.target_hosts) == 1:
                    yield Label("On host")
                    yield self._host_select()
                yield Static("", id="restore-space", markup=False)
            with Vertical(id="field-directory", classes="target-field"):
                yield Label("Folder (created if missing; must not already hold these files)")
                yield Input(self.default_directory, id="restore-directory")
            yield Checkbox(
                "keep the point's checkpoints (default: one flattened disk per drive, no checkpoints)",
                value=False,
                id="keep-checkpoints",
                classes="target-field",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Next…", id="next", variant="primary")

    def _host_select(self) -> Select[str]:
        options = [(display_text(name), name) for name in self.target_hosts]
        return Select(options, value=self.target_host, allow_blank=False, id="restore-host")

    def on_mount(self) -> None:
        self._show_fields()
        self.query_one("#restore-note", Static).display = bool(self.note_text)
        self.query_one("#next", Button).focus()
        self._ask_space(self.target_host)

    @on(Select.Changed, "#restore-host")
    def _host_changed(self, event: Select.Changed) -> None:
        event.stop()
        if isinstance(event.value, str) and event.value != self.target_host:
            self.target_host = event.value
            self._follow_target_host()
            self._ask_space(event.value)

    def _follow_target_host(self) -> None:
        """Grey out "as a new VM" on a read-only target host, and say why."""
        refused = bool(self.target_read_only_reason)
        self.query_one("#target-new", ChoiceButton).disabled = refused
        note = self.query_one("#restore-note", Static)
        note.update(display_text(self.note_text))
        note.display = bool(self.note_text)
        if refused and self.target == "new":
            self.select_target("directory")

    def _ask_space(self, host: str) -> None:
        if self.volume_of is None:
            return
        self.query_one("#restore-space", Static).update(display_text(f"free space on {host}: asking the host…"))
        self._read_space(host)

    @work(thread=True, exclusive=True, group="restore-space", exit_on_error=False)
    def _read_space(self, host: str) -> None:
        assert self.volume_of is not None
        try:
            volume = self.volume_of(host)
        except Exception as err:  # shown, not raised: the restore itself says it again
            text = f"free space on {host} unknown: {err}"
        else:
            text = (
                f"{volume.path} on {host}: {size_text(volume.free)} free of {size_text(volume.size)}"
                if volume is not None
                else f"free space on {host} unknown: it reports no volume"
            )
        self.app.call_from_thread(self._show_space, host, text)

    def _show_space(self, host: str, text: str) -> None:
        if host == self.target_host and self.is_mounted:  # an answer for a host no longer chosen is dropped
            self.query_one("#restore-space", Static).update(display_text(text))

    @property
    def space_text(self) -> str:
        return str(self.query_one("#restore-space", Static).content)

    def _show_fields(self) -> None:
        self.query_one("#field-new").set_class(self.target == "new", "-shown")
        self.query_one("#field-directory").set_class(self.target == "directory", "-shown")
        self.query_one("#keep-checkpoints").set_class(self.target != "in_place", "-shown")

    @on(RadioSet.Changed, "#restore-target")
    def _target_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        self.target = (event.pressed.id or "target-new").removeprefix("target-")
        self._show_fields()

    def select_target(self, target: str) -> None:
        """Choose a target as if its radio button was pressed (keyboard users: tab, arrows, enter)."""
        self.query_one(f"#target-{target}", ChoiceButton).value = True
        self.target = target
        self._show_fields()

    @property
    def keep_checkpoints(self) -> bool:
        return self.query_one("#keep-checkpoints", Checkbox).value

    @property
    def request(self) -> RestoreRequest | None:
        """The choice, or None (with a notification) when a field is empty."""
        if self.target == "new":
            name = self.query_one("#restore-name", Input).value.strip()
            if not name:
                self.app.notify("the new VM needs a name", title="Restore", severity="error")
                return None
            return RestoreRequest("new", new_name=name, host=self.target_host, keep_checkpoints=self.keep_checkpoints)
        if self.target == "directory":
            directory = self.query_one("#restore-directory", Input).value.strip()
            if not directory:
                self.app.notify("the folder to restore into is empty", title="Restore", severity="error")
                return None
            return RestoreRequest("directory", directory=directory, keep_checkpoints=self.keep_checkpoints)
        return RestoreRequest("in_place")

    @on(Input.Submitted)
    @on(Button.Pressed, "#next")
    def _next(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        request = self.request
        if request is not None:
            self.dismiss(request)

    @on(Button.Pressed, "#cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)
