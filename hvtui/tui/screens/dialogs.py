"""Modal dialogs: confirmations (default "No"), checkpoint create/rename/apply/delete, secrets.

Every destructive dialog names host, VM and checkpoint, states what will happen, and
opens with the focus on "No": enter alone never destroys anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Static

from hvtui.text import display_lines, display_text
from hvtui.tui.widgets.choice import ChoiceButton

DIALOG_CSS = """
{cls} {{
    align: center middle;
}}
{cls} > Vertical {{
    width: 90%;
    max-width: 100;
    height: auto;
    max-height: 90%;
    border: thick $primary;
    background: $surface;
    padding: 0 1;
}}
{cls} .dialog-title {{
    text-style: bold;
    color: $primary;
    width: 100%;
}}
{cls} .dialog-body {{
    height: auto;
    max-height: 14;  /* BODY_MAX_HEIGHT; less on a short terminal (_Dialog.fit_body) */
}}
{cls} .dialog-buttons {{
    height: auto;
    align-horizontal: right;
    margin-top: 1;
}}
{cls} .dialog-buttons Button {{
    margin-left: 1;
    min-width: 8;
}}
{cls}.-danger > Vertical {{
    border: thick $error;
}}
{cls} .scroll-hint, {cls} .keys-hint {{
    height: auto;
    color: $text-muted;
}}
{cls} .scroll-hint {{
    display: none;
}}
{cls} .scroll-hint.-shown {{
    display: block;
}}
"""

BODY_MAX_HEIGHT = 14

# The line under a dialog's choices: up/down change the choice wherever the focus is.
CHOICE_KEYS_HINT = "↑↓ change the choice · tab: next field"


class _Dialog(ModalScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("left", "app.focus_previous", "Previous button", show=False),
        Binding("right", "app.focus_next", "Next button", show=False),
        # With the focus on a button, up/down change the dialog's (first) choice, or scroll a
        # long text: before, they did nothing until the focus was moved back by tab.
        Binding("up", "step(-1)", "Previous choice / scroll up", show=False),
        Binding("down", "step(1)", "Next choice / scroll down", show=False),
    ]

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_step(self, step: int) -> None:
        choices = next((radio for radio in self.query(RadioSet) if radio.display), None)
        if choices is not None:
            buttons = list(choices.query(RadioButton))
            index = choices.pressed_index
            while 0 <= index + step < len(buttons):
                index += step
                if not buttons[index].disabled:
                    buttons[index].value = True
                    break
            return
        body = next(iter(self.query(".dialog-body")), None)
        if isinstance(body, VerticalScroll):
            body.scroll_relative(y=step, animate=False)

    def on_mount(self) -> None:
        self.call_after_refresh(self.fit_body)

    def on_resize(self) -> None:
        self.call_after_refresh(self.fit_body)

    def fit_body(self) -> None:
        """Give the scrolling text what the dialog has left, so the lines below it (the
        summary, the buttons) stay on a short terminal; then say whether it scrolls."""
        body = next(iter(self.query(".dialog-body")), None)
        if not isinstance(body, VerticalScroll) or body.parent is None:
            return
        frame = body.parent
        others = sum(
            max(child.outer_size.height, 1 if child.has_class("scroll-hint") else 0) + child.styles.margin.height
            for child in frame.children
            if child is not body and (child.display or child.has_class("scroll-hint"))
        )
        room = int(self.size.height * 0.9) - frame.styles.gutter.height - others
        height = max(3, min(BODY_MAX_HEIGHT, room))
        if body.styles.max_height is None or body.styles.max_height.value != height:
            body.styles.max_height = height
            self.call_after_refresh(self.fit_body)  # again, with the sizes of this layout
        else:
            self.show_scroll_hint()

    def show_scroll_hint(self) -> None:
        """Say so when the text scrolls: a cut-off body looked complete."""
        body = next(iter(self.query(".dialog-body")), None)
        for hint in self.query(".scroll-hint"):
            if isinstance(body, VerticalScroll) and isinstance(hint, Static):
                overflows = body.max_scroll_y > 0
                hint.update("↑↓ scroll: the text above goes on" if overflows else "")
                hint.set_class(overflows, "-shown")


class ConfirmDialog(_Dialog):
    """Yes/No with the focus on "No"; dismisses True only when "Yes" is pressed."""

    DEFAULT_CSS = DIALOG_CSS.format(cls="ConfirmDialog")

    def __init__(self, title: str, body: str, yes_label: str = "Yes", no_label: str = "No", danger: bool = True) -> None:
        super().__init__(classes="-danger" if danger else "")
        self.title_text = display_text(title)  # titles and bodies quote host text: shown escaped
        self.body = display_lines(body)
        self.yes_label = yes_label
        self.no_label = no_label

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="dialog-title", markup=False)
            with VerticalScroll(classes="dialog-body"):
                yield Static(self.body, id="dialog-text", markup=False)
            yield Static("", classes="scroll-hint", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.no_label, id="no", variant="primary")
                yield Button(self.yes_label, id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)

    def action_cancel(self) -> None:
        self.dismiss(False)


class RollbackDialog(ConfirmDialog):
    """A change window's roll back: Yes/No (focus on "No") and "start each VM afterwards"
    (unticked), which ``start_after`` reads once the dialog said yes."""

    DEFAULT_CSS = DIALOG_CSS.format(cls="RollbackDialog") + """
    RollbackDialog #start-after { margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="dialog-title", markup=False)
            with VerticalScroll(classes="dialog-body"):
                yield Static(self.body, id="dialog-text", markup=False)
            yield Static("", classes="scroll-hint", markup=False)
            yield Checkbox("start each VM afterwards (a host that cannot says so for that VM)", id="start-after")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.no_label, id="no", variant="primary")
                yield Button(self.yes_label, id="yes", variant="error")

    start_after = False  # kept as it changes: read after the dialog is gone

    @on(Checkbox.Changed, "#start-after")
    def _start_after_changed(self, event: Checkbox.Changed) -> None:
        self.start_after = event.value


class ChoiceDialog(_Dialog):
    """Several outcomes (e.g. "Checkpoint first, then apply" / "Apply"), focus on "No".

    A long ``body`` scrolls (up/down, with a hint saying so); ``summary`` stays in view
    below it, whatever the terminal's height: what the action means must never scroll away.
    """

    DEFAULT_CSS = DIALOG_CSS.format(cls="ChoiceDialog") + """
    ChoiceDialog #dialog-summary { height: auto; margin-top: 1; }
    """

    def __init__(
        self, title: str, body: str, choices: list[tuple[str, str]], danger: bool = True, summary: str = ""
    ) -> None:
        """``choices``: (result, button label) in display order after "No"."""
        super().__init__(classes="-danger" if danger else "")
        self.title_text = display_text(title)
        self.body = display_lines(body)
        self.summary = display_lines(summary)
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="dialog-title", markup=False)
            with VerticalScroll(classes="dialog-body"):
                yield Static(self.body, id="dialog-text", markup=False)
            yield Static("", classes="scroll-hint", markup=False)
            if self.summary:
                yield Static(self.summary, id="dialog-summary", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("No", id="no", variant="primary")
                for result, label in self.choices:
                    yield Button(label, id=f"choice-{result}", variant="error" if "force" in result or result == "apply" else "warning")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        button_id = event.button.id or ""
        self.dismiss(button_id.removeprefix("choice-") if button_id.startswith("choice-") else None)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    name: str | None  # None: let the host pick Hyper-V's default name
    type: str  # Standard or Production


class CreateCheckpointDialog(_Dialog):
    DEFAULT_CSS = DIALOG_CSS.format(cls="CreateCheckpointDialog") + """
    CreateCheckpointDialog Input { margin: 1 0; }
    CreateCheckpointDialog RadioSet { height: auto; width: 100%; layout: horizontal; }
    """

    def __init__(self, host: str, vm_name: str, default_name: str, default_type: str) -> None:
        super().__init__()
        self.host = display_text(host)
        self.vm_name = display_text(vm_name)
        self.default_name = display_text(default_name)
        self.default_type = default_type if default_type in ("Standard", "Production") else "Standard"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"New checkpoint of {self.vm_name} on {self.host}", classes="dialog-title", markup=False)
            yield Input(self.default_name, id="cp-name", placeholder="checkpoint name (empty: Hyper-V's default)")
            with RadioSet(id="cp-type"):
                yield ChoiceButton("Production", value=self.default_type == "Production", id="type-Production")
                yield ChoiceButton("Standard", value=self.default_type == "Standard", id="type-Standard")
            yield Static(
                "Production: application-consistent (VSS), the VM does not keep its memory. "
                "Standard: saves memory and device state too.",
                markup=False,
            )
            yield Static(CHOICE_KEYS_HINT, classes="keys-hint", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Create", id="create", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#cp-name", Input).focus()

    def _request(self) -> CreateRequest:
        name = self.query_one("#cp-name", Input).value.strip() or None
        pressed = self.query_one("#cp-type", RadioSet).pressed_button
        kind = (pressed.id or "type-Standard").removeprefix("type-") if pressed is not None else self.default_type
        return CreateRequest(name=name, type=kind)

    @on(Input.Submitted, "#cp-name")
    @on(Button.Pressed, "#create")
    def _create(self, event) -> None:  # noqa: ANN001
        event.stop()
        self.dismiss(self._request())

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class TextDialog(_Dialog):
    """One line of text (a new name, a password)."""

    DEFAULT_CSS = DIALOG_CSS.format(cls="TextDialog") + "\nTextDialog Input { margin: 1 0; }\n"

    def __init__(self, title: str, prompt: str, value: str = "", password: bool = False, ok_label: str = "OK") -> None:
        super().__init__()
        self.title_text = display_text(title)
        self.prompt = display_lines(prompt)
        self.value = display_text(value)
        self.password = password
        self.ok_label = ok_label

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield Static(self.prompt, markup=False)
            yield Input(self.value, id="text-value", password=self.password)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self.ok_label, id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#text-value", Input).focus()

    @on(Input.Submitted, "#text-value")
    @on(Button.Pressed, "#ok")
    def _ok(self, event) -> None:  # noqa: ANN001
        event.stop()
        self.dismiss(self.query_one("#text-value", Input).value)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True, slots=True)
class ChangeWindowRequest:
    name: str
    type: str  # Standard or Production
    ticket: str | None


class ChangeWindowDialog(_Dialog):
    """"Checkpoint all": one name (editable), Standard or Production, an optional ticket."""

    DEFAULT_CSS = DIALOG_CSS.format(cls="ChangeWindowDialog") + """
    ChangeWindowDialog RadioSet { height: auto; width: 100%; layout: horizontal; }
    ChangeWindowDialog .dialog-body { max-height: 4; }
    """
    SHOWN_VMS = 3

    def __init__(self, vm_labels: list[str], default_name: str, default_type: str) -> None:
        super().__init__()
        self.vm_labels = [display_text(label) for label in vm_labels]
        self.default_name = display_text(default_name)
        self.default_type = default_type if default_type in ("Standard", "Production") else "Standard"

    def compose(self) -> ComposeResult:
        count = len(self.vm_labels)
        listed = ", ".join(self.vm_labels[: self.SHOWN_VMS])
        if count > self.SHOWN_VMS:
            listed += f" and {count - self.SHOWN_VMS} more"
        with Vertical():
            yield Label(f"Checkpoint all: a change window on {count} VM{'s' if count != 1 else ''}", classes="dialog-title", markup=False)
            with VerticalScroll(classes="dialog-body"):
                yield Static(f"{listed}. One checkpoint each, one job; a VM that fails is reported, the others go on.", markup=False)
            yield Input(self.default_name, id="window-name", placeholder="window (and checkpoint) name")
            with RadioSet(id="window-type"):
                yield ChoiceButton("Production", value=self.default_type == "Production", id="type-Production")
                yield ChoiceButton("Standard", value=self.default_type == "Standard", id="type-Standard")
            yield Input("", id="window-ticket", placeholder="ticket reference (optional)")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Checkpoint all", id="create", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#window-name", Input).focus()

    @property
    def request(self) -> ChangeWindowRequest:
        pressed = self.query_one("#window-type", RadioSet).pressed_button
        kind = (pressed.id or "type-Standard").removeprefix("type-") if pressed is not None else self.default_type
        ticket = self.query_one("#window-ticket", Input).value.strip() or None
        return ChangeWindowRequest(self.query_one("#window-name", Input).value.strip(), kind, ticket)

    @on(Input.Submitted)
    @on(Button.Pressed, "#create")
    def _create(self, event) -> None:  # noqa: ANN001
        event.stop()
        self.dismiss(self.request)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
