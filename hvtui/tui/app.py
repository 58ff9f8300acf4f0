"""The console: a Textual app over the core.

The app owns the polling loop and the running checkpoint actions; the views (screens)
only render what it hands them.  Everything slow runs in thread workers: the inventory
refresh (``hvtui.tui.refresh``), plans and checkpoint actions
(``hvtui.tui.checkpoint_actions``), jobs (``hvtui.tui.jobs_ui``).  Errors become
notifications with the ``HvtuiError`` message; anything unexpected goes to the log file
with a one-line notification, never a traceback on screen.

This module puts the parts together and keeps the themes, the views and navigation,
quitting, errors and the password prompt.
"""

from __future__ import annotations

import concurrent.futures
import getpass
import logging
import threading
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from hvtui.core import Core
from hvtui.errors import Cancelled, HvtuiError, ReadOnlyError, RefusedError
from hvtui.text import display_lines, display_text
from hvtui.tui.changes_ui import ChangeWindowsMixin
from hvtui.tui.checkpoint_actions import CheckpointActionsMixin
from hvtui.tui.jobs_ui import JobsChanged, JobsController
from hvtui.tui.prompt import VIEWS, PromptCommandsMixin
from hvtui.tui.refresh import RefreshMixin
from hvtui.tui.schedules_ui import SchedulesMixin
from hvtui.tui.screens.base import ViewScreen
from hvtui.tui.screens.vms import VmsScreen
from hvtui.tui.themes import DEFAULT_THEME, bundled_theme_dirs, load_themes, theme_variable_defaults
from hvtui.tui.viewmodel.cells import Palette

log = logging.getLogger(__name__)


# The first paint needs only the VM list: the other views (and every dialog) are imported
# when first shown, which keeps their modules out of the console's start.
def _findings_screen() -> Screen:
    from hvtui.tui.screens.findings import FindingsScreen

    return FindingsScreen()


def _jobs_screen() -> Screen:
    from hvtui.tui.screens.jobs import JobsScreen

    return JobsScreen()


def _changes_screen() -> Screen:
    from hvtui.tui.screens.changes import ChangesScreen

    return ChangesScreen()


def _repositories_screen() -> Screen:
    from hvtui.tui.screens.repositories import RepositoriesScreen

    return RepositoriesScreen()


def _schedules_screen() -> Screen:
    from hvtui.tui.screens.schedules import SchedulesScreen

    return SchedulesScreen()


class HvtuiApp(RefreshMixin, CheckpointActionsMixin, ChangeWindowsMixin, SchedulesMixin, PromptCommandsMixin, App[int]):
    """The console.  Its parts: the refresh (``refresh``), checkpoint actions
    (``checkpoint_actions``), the `:` prompt and palette (``prompt``), jobs (``jobs_ui``);
    here: themes, views and navigation, quitting, errors and secrets."""

    TITLE = "hvtui"
    CSS_PATH = "hvtui.tcss"
    MODES: ClassVar[dict[str, Any]] = {
        "vms": VmsScreen,
        "findings": _findings_screen,
        "jobs": _jobs_screen,
        "changes": _changes_screen,
        "schedules": _schedules_screen,
        "repos": _repositories_screen,
    }
    DEFAULT_MODE = "vms"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("colon", "command", "Command", key_display=":"),
        Binding("v", "show_view('vms')", "VMs", show=False),
        Binding("f", "show_view('findings')", "Findings"),
        Binding("j", "show_view('jobs')", "Jobs"),
        Binding("ctrl+r,f5", "refresh", "Refresh"),
        # Shown only while a host is unreachable (check_action): what is wrong with it, step by step.
        Binding("exclamation_mark", "doctor", "Doctor", key_display="!"),
        Binding("ctrl+t", "next_theme", "Next theme", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, core: Core, *, poll_automatically: bool = True) -> None:
        self.core = core
        self.poll_automatically = poll_automatically
        # Themes must be registered before the stylesheet is parsed (Textual 8 fails at
        # start otherwise): so here, not in on_mount.
        super().__init__()
        self.animation_level = "none"  # nothing animates: over a slow SSH link every frame costs
        self.theme_errors: list[str] = []
        loaded = load_themes([*bundled_theme_dirs(), core.paths.user_themes_dir])
        self.theme_errors.extend(loaded.errors)
        for theme in loaded.themes.values():
            self.register_theme(theme)
        self.hvtui_themes = sorted(loaded.themes)
        wanted = core.theme or DEFAULT_THEME
        if wanted in self.available_themes:
            self.theme = wanted
        else:
            self.theme_errors.append(
                f"theme {wanted!r} not found (themes: {', '.join(sorted(self.available_themes))}); using {DEFAULT_THEME}"
            )
            if DEFAULT_THEME in self.available_themes:
                self.theme = DEFAULT_THEME
        self.init_refresh_state()
        self.palette = Palette()
        self._palette_generation = 0
        self.init_action_state()
        self._pending_theme_notices: list[str] = []
        self.jobs_ui = JobsController(self)
        self._offering_doctor = False

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast (screens' included) passes here: host text in it shows escaped, never as a control."""
        super().notify(
            display_lines(message), title=display_text(title), severity=severity, timeout=timeout, markup=markup
        )

    # -- themes --------------------------------------------------------------------------------
    def get_theme_variable_defaults(self) -> dict[str, str]:
        # Built-in Textual themes lack hvtui's variables: derive them from the theme's colours.
        return theme_variable_defaults(self.current_theme)

    def _theme_changed(self, _theme: object) -> None:
        self._palette_generation += 1
        self.palette = Palette.from_variables(self.theme_variables, self._palette_generation)
        if self.snapshot is not None:
            self.snapshot = self.snapshot.restyled(self.palette)
            self.snapshot_version += 1
        if isinstance(self.screen, ViewScreen):
            self.sync_screen(self.screen)

    def switch_theme(self, name: str) -> bool:
        if name not in self.available_themes:
            self.notify(
                f"no theme {name!r}; available: {', '.join(sorted(self.available_themes))}",
                title="Theme",
                severity="error",
            )
            return False
        self.theme = name
        return True

    def action_next_theme(self) -> None:
        names = self.hvtui_themes or sorted(self.available_themes)
        current = names.index(self.theme) if self.theme in names else -1
        self.switch_theme(names[(current + 1) % len(names)])
        self.notify(f"theme: {self.theme}", title="Theme", timeout=2)

    # -- start -----------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.palette = Palette.from_variables(self.theme_variables, self._palette_generation)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        for message in self.theme_errors:
            log.warning("%s", message)
        self._pending_theme_notices = list(self.theme_errors)
        self.set_interval(1.0, self._tick, name="header-age")
        self.request_refresh()
        self.jobs_ui.start()  # the job manager and the journal's interrupted jobs, in a worker

    def on_jobs_changed(self, _message: JobsChanged) -> None:
        self.jobs_ui.on_changed()

    def _tick(self) -> None:
        if not self.is_running:
            return  # shutting down: the screen stacks are being emptied
        if isinstance(self.screen, ViewScreen):
            self.sync_screen(self.screen, data=False)

    # -- views -------------------------------------------------------------------------------------
    def sync_screen(self, screen: ViewScreen, data: bool = True) -> None:
        """Bring a view up to date: the bars always, the data when a new refresh arrived."""
        if not screen.is_mounted or not self.is_running:
            return  # not yet, or shutting down (a refresh may land while the screens come down)
        while self._pending_theme_notices:  # shown once the first view is up, not lost before it
            self.notify(self._pending_theme_notices.pop(0), title="Theme problem", severity="warning", timeout=10)
        self.announce_notification_failures()
        failing = self.failing_hosts()
        screen.sync_bars(self.header_state(), failing, self.action_views())
        offer_doctor = any(not problem.waiting for problem in failing)
        if offer_doctor != self._offering_doctor:  # the key bar shows `! Doctor` only while a host is down
            self._offering_doctor = offer_doctor
            self.refresh_bindings()
        if data and self.snapshot is not None and screen.shown_version != self.snapshot_version:
            screen.shown_version = self.snapshot_version
            screen.show_snapshot(self.snapshot)

    def sync_current_bars(self) -> None:
        if self.is_running and isinstance(self.screen, ViewScreen):  # no screens once shutting down
            self.sync_screen(self.screen, data=False)

    def show_view(self, view: str, filter_text: str | None = None) -> None:
        if view not in VIEWS:
            self.notify(f"no view {view!r} (views: {', '.join(VIEWS)})", severity="error")
            return
        if self.current_mode != view:
            self.switch_mode(view)
        # `:vms` always lands on the list itself, not on a detail pushed over it.
        while len(self.screen_stack) > 1 and not isinstance(self.screen, ModalScreen):
            self.pop_screen()
        screen = self.screen
        if filter_text is not None and isinstance(screen, ViewScreen):
            self.call_after_refresh(screen.apply_filter, filter_text)

    def action_show_view(self, view: str) -> None:
        self.show_view(view)

    def open_vm(self, host: str, vm_id: str, checkpoint_id: str | None = None) -> None:
        """Push a VM's detail on the current view, the culprit checkpoint selected."""
        from hvtui.tui.screens.vm_detail import VmDetailScreen

        self.push_screen(VmDetailScreen(host, vm_id, checkpoint_id))

    def action_help(self) -> None:
        from hvtui.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def action_refresh(self) -> None:
        self.request_refresh()

    def action_command(self) -> None:
        if isinstance(self.screen, ViewScreen):
            self.screen.open_command_prompt()

    def action_doctor(self) -> None:
        """`hvtui doctor` for the hosts shown as unreachable (down, not merely late)."""
        from hvtui.tui.screens.doctor import DoctorScreen

        hosts = self.unreachable_hosts()
        if hosts:
            self.push_screen(DoctorScreen(hosts))

    def unreachable_hosts(self) -> list[str]:
        configured = {host.name for host in self.core.config.hosts}
        return [problem.host for problem in self.failing_hosts() if not problem.waiting and problem.host in configured]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Over a dialog, the one-letter keys belong to the dialog: never quit or jump away.
        modal = isinstance(self.screen, ModalScreen)
        if action == "doctor":
            return not modal and bool(self.unreachable_hosts())  # False: not in the key bar at all
        return not (modal and action in {"help", "command", "show_view", "quit", "next_theme"})

    # -- workers and errors ------------------------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        if worker.group == "poll":
            self.refresh_worker_finished(worker)
        elif worker.group == "action":
            self.action_finished(worker)
        elif worker.group == "dialog" and event.state == WorkerState.ERROR and worker.error is not None:
            title = "Refused" if isinstance(worker.error, (ReadOnlyError, RefusedError)) else "Failed"
            self.notify(self.describe_error(worker.error, worker.name or "action"), title=title, severity="error", timeout=15)

    def describe_error(self, error: BaseException, doing: str) -> str:
        """One line for the user: the HvtuiError message, or a pointer to the log."""
        if isinstance(error, HvtuiError):
            log.warning("%s: %s", doing, error)
            return str(error)
        log.error("%s: unexpected error", doing, exc_info=error)
        return f"{doing}: unexpected error: {type(error).__name__}: {error} (details in {self.core.paths.log_file})"

    def _fatal_error(self) -> None:
        # An exception escaped a handler: the app has to stop, but the traceback goes to
        # the log file and the terminal gets one line, never a traceback.
        error = self._exception
        log.error("unexpected error in the console", exc_info=error)
        self.bell()
        self._exit_renderables.append(
            f"hvtui: unexpected error: {type(error).__name__}: {error} (details in {self.core.paths.log_file})"
        )
        self._close_messages_no_wait()

    # -- quitting ------------------------------------------------------------------------------------------
    async def action_quit(self) -> None:
        if self.jobs_ui.stopping:
            self.notify("still stopping the jobs (a backup removes its checkpoint first); hvtui exits when they are done", title="Quitting")
            return
        jobs = self.jobs_ui.active_jobs()
        actions = self.running_actions
        if not actions and not jobs:
            self.exit(0)
            return
        parts = []
        if actions:
            titles = "\n".join(f"  - {action.title}" for action in actions)
            parts.append(
                f"Still running:\n{titles}\nQuitting cancels them where they can stop safely "
                "(a merge stops between blocks; the host finishes what it started)."
            )
        if jobs:
            count = len(jobs)
            titles = "\n".join(f"  - {job.title} ({job.state})" for job in jobs)
            parts.append(
                f"{count} job{'s' if count != 1 else ''} will be cancelled:\n{titles}\n"
                "A cancelled backup removes its Recovery checkpoint and makes no restore point; "
                "queued jobs never start. Retry them later from the jobs view (j)."
            )

        def chosen(confirmed: bool | None) -> None:
            if confirmed:
                for action in actions:
                    action.token.cancel()
                self.jobs_ui.stop_all_then_exit()  # exits once the jobs cleaned up

        from hvtui.tui.screens.dialogs import ConfirmDialog

        title = "Quit and cancel the running jobs?" if jobs else "Quit while actions are running?"
        self.push_screen(ConfirmDialog(title, "\n\n".join(parts), yes_label="Quit"), callback=chosen)

    # -- secrets -----------------------------------------------------------------------------------------------
    def prompt_secret(self, prompt: str) -> str:
        """Ask for a secret in the console (called from worker threads by the core)."""
        if not self.is_running:
            return getpass.getpass(prompt)
        if threading.get_ident() == self._thread_id:
            raise HvtuiError("a password is needed, but cannot be asked from the console's own thread")
        answer: concurrent.futures.Future[str | None] = concurrent.futures.Future()

        def show() -> None:
            from hvtui.tui.screens.dialogs import TextDialog

            self.push_screen(
                TextDialog("Password needed", prompt, password=True, ok_label="Connect"),
                callback=lambda value: answer.set_result(value),
            )

        self.call_from_thread(show)
        while True:
            try:
                value = answer.result(timeout=0.5)
                break
            except concurrent.futures.TimeoutError:
                if not self.is_running:
                    raise Cancelled("password prompt cancelled: the console closed") from None
        if value is None:
            raise Cancelled("password prompt cancelled")
        return value


def run_console(core: Core) -> int:
    """Run the console over ``core`` until the user quits; returns the exit code."""
    app = HvtuiApp(core)
    previous = core.secret_prompter
    core.secret_prompter = app.prompt_secret
    try:
        app.run(mouse=core.config.ui.mouse)
    finally:
        app.jobs_ui.stop()
        core.secret_prompter = previous
    code = app.return_code
    return int(code) if code is not None else 0
