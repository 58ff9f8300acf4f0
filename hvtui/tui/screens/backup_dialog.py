"""The small dialog that starts a backup of one VM or of every marked VM.

Mode: incremental when the VM already has a restore point in the chosen repository,
full otherwise (with several VMs: incremental when any has one; those without get a
full).  With no restore point in the repository, incremental and differential cannot be
chosen: the backup would be a full anyway.  Repository: the default one preselected.
Consistency (only when a VM lives on a WinRM host, whose checkpoints can be VSS-consistent): the
host's setting preselected, and left unchanged each host's own setting applies; lab VMs ignore it.  Enter on "Back up" starts it; a
backup only adds a restore point (its checkpoint is removed again), so the focus
starts on "Back up".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Label, RadioSet, Static

from hvtui.model import BACKUP_MODES
from hvtui.text import display_text
from hvtui.tui.screens.dialogs import CHOICE_KEYS_HINT, DIALOG_CSS, _Dialog
from hvtui.tui.widgets.choice import ChoiceButton

MODE_HELP = {
    "full": "reads every block",
    "incremental": "reads the changes since the newest point",
    "differential": "reads the changes since the newest full point",
}
CONSISTENCY_HELP = {
    "prefer-application": "VSS in the guest; crash-consistent with a warning if it cannot",
    "application": "VSS in the guest, or the backup fails",
    "crash": "no VSS: as if the power was cut",
}
MAX_LISTED = 8  # VMs named one per line; more are counted


@dataclass(frozen=True, slots=True)
class BackupTarget:
    host: str
    vm_id: str
    vm_name: str
    repositories_with_points: frozenset[str]  # repositories already holding a point of this VM
    consistency: str | None = None  # the host's consistency setting (WinRM hosts); None: no choice applies


@dataclass(frozen=True, slots=True)
class BackupRequest:
    mode: str  # full, incremental or differential
    repository: str
    consistency: str | None = None  # for the VMs on WinRM hosts; None: each host's own setting


def default_mode(targets: Sequence[BackupTarget], repository: str) -> str:
    """Incremental when a previous point exists (any of several VMs), else full."""
    return "incremental" if any(repository in t.repositories_with_points for t in targets) else "full"


class BackupDialog(_Dialog):
    DEFAULT_CSS = DIALOG_CSS.format(cls="BackupDialog") + """
    BackupDialog RadioSet { height: auto; width: 100%; border: none; padding: 0; }
    BackupDialog RadioSet:focus { border: none; background: $boost; }
    BackupDialog .field-label { margin-top: 1; text-style: bold; }
    BackupDialog #backup-vms { height: auto; max-height: 8; }
    BackupDialog .dialog-buttons { margin-top: 0; }
    """

    def __init__(self, targets: Sequence[BackupTarget], repositories: Sequence[str], default_repository: str) -> None:
        super().__init__()
        self.targets = list(targets)
        self.repositories = list(repositories) or [default_repository]
        self.repository = default_repository if default_repository in self.repositories else self.repositories[0]
        self.mode = default_mode(self.targets, self.repository)
        self._mode_chosen = False  # the user picked a mode: a repository change keeps it
        settings = [t.consistency for t in self.targets if t.consistency is not None]
        self.consistency: str | None = settings[0] if settings else None
        # Unchanged, each host's own setting applies (marked VMs on hosts with different settings).
        self._consistency_chosen = False
        self._mixed_consistency = len(set(settings)) > 1

    # -- layout -------------------------------------------------------------------------------
    @property
    def title_text(self) -> str:
        if len(self.targets) == 1:
            target = self.targets[0]
            return display_text(f"Back up {target.vm_name} on {target.host}")
        return f"Back up {len(self.targets)} VMs"

    def _vm_lines(self) -> str:
        lines = []
        for target in self.targets[:MAX_LISTED]:
            first = self.repository not in target.repositories_with_points
            note = "no restore point yet: full" if first else "has restore points"
            lines.append(display_text(f"  {target.host}/{target.vm_name}  ({note})"))
        if len(self.targets) > MAX_LISTED:
            lines.append(f"  … and {len(self.targets) - MAX_LISTED} more")
        return "\n".join(lines)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="dialog-title", markup=False)
            with VerticalScroll(id="backup-vms"):
                yield Static(self._vm_lines(), id="backup-vm-list", markup=False)
            yield Label("Mode", classes="field-label")
            with RadioSet(id="backup-mode"):
                for mode in BACKUP_MODES:
                    yield ChoiceButton(
                        Text(f"{mode} — {MODE_HELP[mode]}"),
                        value=mode == self.mode,
                        id=f"mode-{mode}",
                        disabled=not self._mode_possible(mode),
                    )
            if len(self.repositories) > 1:
                yield Label("Repository", classes="field-label")
                with RadioSet(id="backup-repository"):
                    for index, name in enumerate(self.repositories):
                        yield ChoiceButton(Text(name), value=name == self.repository, id=f"repo-{index}")  # no markup
            else:
                yield Label(f"Repository: {self.repository}", classes="field-label", markup=False)
            if self.consistency is not None:
                mixed = " — unchanged, each host's setting" if self._mixed_consistency else ""
                yield Label(f"Consistency (WinRM hosts){mixed}", classes="field-label")
                with RadioSet(id="backup-consistency"):
                    for choice, help_text in CONSISTENCY_HELP.items():
                        yield ChoiceButton(Text(f"{choice} — {help_text}"), value=choice == self.consistency, id=f"consistency-{choice}")
            yield Static("A Recovery checkpoint is taken for the read, then removed.", markup=False)
            yield Static(CHOICE_KEYS_HINT.replace("the choice", "the mode"), classes="keys-hint", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Back up", id="start", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#start", Button).focus()

    def _mode_possible(self, mode: str) -> bool:
        """Incremental and differential need a restore point in the repository (of one VM at
        least): with none, every VM gets a full, so only "full" is offered."""
        return mode == "full" or any(self.repository in t.repositories_with_points for t in self.targets)

    def _sync_modes(self) -> None:
        for mode in BACKUP_MODES:
            self.query_one(f"#mode-{mode}", ChoiceButton).disabled = not self._mode_possible(mode)
        if not self._mode_possible(self.mode):
            self._select_mode("full")

    # -- choices --------------------------------------------------------------------------------
    def _select_mode(self, mode: str) -> None:
        button = self.query_one(f"#mode-{mode}", ChoiceButton)
        if not button.value:
            with self.prevent(RadioSet.Changed):
                button.value = True
        self.mode = mode

    @on(RadioSet.Changed, "#backup-mode")
    def _mode_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        self.mode = (event.pressed.id or "mode-full").removeprefix("mode-")
        self._mode_chosen = True

    @on(RadioSet.Changed, "#backup-repository")
    def _repository_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        self.repository = self.repositories[event.index]
        self.query_one("#backup-vm-list", Static).update(self._vm_lines())
        if not self._mode_chosen:
            self._select_mode(default_mode(self.targets, self.repository))
        self._sync_modes()

    @on(RadioSet.Changed, "#backup-consistency")
    def _consistency_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        self.consistency = (event.pressed.id or "").removeprefix("consistency-") or self.consistency
        self._consistency_chosen = True

    @property
    def request(self) -> BackupRequest:
        return BackupRequest(self.mode, self.repository, self.consistency if self._consistency_chosen else None)

    @on(Button.Pressed, "#start")
    def _start(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(self.request)

    @on(Button.Pressed, "#cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)
