"""The console: a Textual app over the core.

The app owns the polling loop and the running checkpoint actions; the views (screens)
only render what it hands them.  Everything slow runs in thread workers: the inventory
refresh (never overlapping: the next one is scheduled when the last one finished), plans
and checkpoint actions (with progress events throttled to a few per second).  Errors
become notifications with the ``HvtuiError`` message; anything unexpected goes to the
log file with a one-line notification, never a traceback on screen.

One hung host holds nothing back: while a refresh waits on it, the poll worker hands the
other hosts' answers to the UI thread as they arrive (at most a few times a second), the
hung host flagged as waiting, then as timed out.  After a checkpoint action only its host
is read again, at once, beside a full refresh that may still be waiting on another host
(refreshes of the same host never overlap: a second one waits for the first to end).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import getpass
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from hvtui.core import Core
from hvtui.errors import Cancelled, HvtuiError, ReadOnlyError, RefusedError
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.model import Inventory
from hvtui.tui.jobs_ui import JobsChanged, JobsController
from hvtui.tui.screens.base import ViewScreen
from hvtui.tui.screens.dialogs import ChoiceDialog, ConfirmDialog, CreateCheckpointDialog, CreateRequest, TextDialog
from hvtui.tui.screens.findings import FindingsScreen
from hvtui.tui.screens.help import HelpScreen
from hvtui.tui.screens.jobs import JobsScreen
from hvtui.tui.screens.vm_detail import VmDetailScreen
from hvtui.tui.screens.vms import VmsScreen
from hvtui.tui.themes import DEFAULT_THEME, bundled_theme_dirs, load_themes, theme_variable_defaults
from hvtui.tui.viewmodel.cells import Palette
from hvtui.tui.viewmodel.finding_rows import finding_key
from hvtui.tui.viewmodel.format import default_checkpoint_name, seconds_between
from hvtui.tui.viewmodel.snapshot import Snapshot, build_snapshot
from hvtui.tui.widgets.bars import ActionView, HeaderState, HostProblem

log = logging.getLogger(__name__)

MIN_REFRESH_SECONDS = 1.0  # over a slow link nothing should tick faster than this
MIN_POLL_GAP = 0.5  # seconds between the end of a poll and the next (a breath for the hosts)
GC_THAW_SECONDS = 600.0  # see HvtuiApp._freeze_heap
PROGRESS_INTERVAL = 0.25  # at most four progress updates a second reach the UI
PARTIAL_INTERVAL = MIN_REFRESH_SECONDS  # partial inventories: background redraws, never sub-second
VIEWS = ("vms", "findings", "jobs")

# (command, arguments, what it does) for `:` and the help screen.
PROMPT_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("vms", "[FILTER]", "the VM list, optionally filtered"),
    ("findings", "[FILTER]", "all findings, worst and oldest first, optionally filtered"),
    ("jobs", "", "backup and restore jobs: progress, cancel, retry, resume"),
    ("vm", "NAME", "open a VM's detail (host/name or name)"),
    ("theme", "[NAME]", "switch the theme; without a name, list the themes"),
    ("refresh", "", "refresh the inventory now"),
    ("help", "", "every key binding"),
    ("q", "", "quit (asks when an action is running)"),
)
COMMAND_ALIASES = {
    "vm": "vm",
    "vms": "vms",
    "virtualmachines": "vms",
    "f": "findings",
    "finding": "findings",
    "findings": "findings",
    "jobs": "jobs",
    "job": "jobs",
    "theme": "theme",
    "themes": "theme",
    "skin": "theme",
    "refresh": "refresh",
    "r": "refresh",
    "help": "help",
    "?": "help",
    "h": "help",
    "q": "quit",
    "q!": "quit",
    "quit": "quit",
    "exit": "quit",
}


class InventoryArrived(Message):
    """Some hosts answered while the poll still waits on others (posted from its thread)."""

    def __init__(self, snapshot: Snapshot, version: int) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.version = version  # the inventory service's version of the data in it


class ActionProgress(Message):
    """A progress event of a running checkpoint action (posted from its thread)."""

    def __init__(self, action_id: int, event: Progress) -> None:
        super().__init__()
        self.action_id = action_id
        self.event = event


@dataclass
class RunningAction:
    id: int
    title: str
    token: CancelToken
    done: Callable[[Any], str]
    host: str | None = None  # the host it changes: read again when it ends
    progress: Progress | None = None
    started: float = field(default_factory=time.monotonic)


class HvtuiApp(App[int]):
    TITLE = "hvtui"
    CSS_PATH = "hvtui.tcss"
    MODES: ClassVar[dict[str, Any]] = {"vms": VmsScreen, "findings": FindingsScreen, "jobs": JobsScreen}
    DEFAULT_MODE = "vms"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("colon", "command", "Command", key_display=":"),
        Binding("v", "show_view('vms')", "VMs", show=False),
        Binding("f", "show_view('findings')", "Findings"),
        Binding("j", "show_view('jobs')", "Jobs"),
        Binding("ctrl+r,f5", "refresh", "Refresh"),
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
        self.snapshot: Snapshot | None = None
        self.snapshot_version = 0
        self.palette = Palette()
        self._palette_generation = 0
        self._polling = False
        self._poll_again = False
        # Refreshes of a few hosts after a change: their hosts, and the worker's result box.
        self._host_polls: dict[Worker, tuple[frozenset[str], list[tuple[Snapshot, int]]]] = {}
        self._host_poll_queue: set[str] = set()  # asked for while a refresh of them ran
        self._data_version = -1  # the inventory service version of the data shown
        self._poll_timer = None
        self._last_poll_error: str | None = None
        self._actions: dict[int, RunningAction] = {}
        self._action_ids = itertools.count(1)
        self._action_workers: dict[Worker, int] = {}
        self._pending_theme_notices: list[str] = []
        self.jobs_ui = JobsController(self)
        self._last_thaw = time.monotonic()
        self._inbox: tuple[Snapshot, int] | None = None  # the latest refresh, handed from the poll worker
        self._next_poll_in = MIN_REFRESH_SECONDS  # set by the poll worker (see _poll_into_inbox)

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

    # -- polling ---------------------------------------------------------------------------------
    @property
    def refresh_interval(self) -> float:
        return max(MIN_REFRESH_SECONDS, float(self.core.config.ui.refresh_seconds))

    @property
    def is_polling(self) -> bool:
        """A full refresh is running."""
        return self._polling

    def request_refresh(self, hosts: Iterable[str] | None = None) -> None:
        """Refresh now; if a refresh is running, run another as soon as it ends.

        With ``hosts`` (those a checkpoint action changed), only they are read, at once,
        even while a full refresh waits on some other host that does not answer.
        """
        if hosts is not None:
            self._request_host_refresh(set(hosts))
            return
        if self._polling:
            self._poll_again = True
            return
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        self._polling = True
        self.run_worker(
            self._poll_into_inbox,
            name="inventory refresh",
            group="poll",
            thread=True,
            exit_on_error=False,
        )
        self._sync_bars()

    def _request_host_refresh(self, hosts: set[str]) -> None:
        # A host already being read this way is read again when that ends (never two at
        # once); the others start now, even beside one that waits on a hung host.
        busy = {name for polled, _inbox in self._host_polls.values() for name in polled}
        self._host_poll_queue |= hosts & busy
        wanted = frozenset(hosts - busy)
        if not wanted:
            return
        inbox: list[tuple[Snapshot, int]] = []  # filled by the worker, emptied when it ends
        palette, previous = self.palette, self.snapshot

        def read() -> None:
            inbox.append(self._poll(palette, previous, sorted(wanted)))

        worker = self.run_worker(
            read,
            name=f"inventory refresh of {', '.join(sorted(wanted))}",
            group="poll",
            thread=True,
            exit_on_error=False,
        )
        self._host_polls[worker] = (wanted, inbox)
        self._sync_bars()

    def _poll_into_inbox(self) -> None:
        """The poll worker's body.  The snapshot goes to ``_inbox``, not into the worker's
        result: Textual keeps finished workers reachable for a while (their thread's
        context), and each would pin a whole inventory in memory."""
        started = time.monotonic()
        self._inbox = self._poll(self.palette, self.snapshot)
        # The next poll is due an interval after this one started: the hosts that answered
        # at once must not wait, on top of the interval, for the time a slow or hung host
        # held this poll (up to an interval: see _poll).  Never sooner than MIN_POLL_GAP
        # after this one ended, so polls never overlap.
        self._next_poll_in = max(MIN_POLL_GAP, self.refresh_interval - (time.monotonic() - started))

    def _poll(
        self, palette: Palette, previous: Snapshot | None, hosts: list[str] | None = None
    ) -> tuple[Snapshot, int]:
        """Runs in a worker thread: read the hosts (all by default), evaluate the policy,
        prepare the rows.  Returns the snapshot and the service's version of its data.

        A full refresh hands what has arrived to the UI thread while it waits on slow
        hosts (``InventoryArrived``, throttled by the service to ``PARTIAL_INTERVAL``), and
        waits on them one refresh interval at most."""
        from hvtui import policy

        started = time.monotonic()
        service = self.core.inventory
        lookup = policy.last_backup_lookup(self.core)
        last_backup = _remembered(lookup) if lookup is not None else None  # policy and rows ask alike
        latest = [previous]  # each snapshot reuses the unchanged rows of the one before

        def build() -> tuple[Snapshot, int]:
            # Whatever is newest when we get here, with its version: another worker may have
            # merged a host since the service called us.
            inventory, version = service.latest_with_version()
            findings = policy.evaluate(inventory, self.core.config.policy, last_backup)
            now = self.core.clock.now()
            latest[0] = build_snapshot(inventory, findings, palette, now, last_backup, started, latest[0])
            return latest[0], version

        def arrived(_inventory: Inventory) -> None:
            self.post_message(InventoryArrived(*build()))  # thread-safe; dropped once the app closes

        if hosts is None:
            # At most one interval: a hung host's call goes on alone, the next poll reuses it.
            service.refresh(on_update=arrived, update_interval=PARTIAL_INTERVAL, return_after=self.refresh_interval)
        else:
            service.refresh(hosts)
        return build()

    def on_inventory_arrived(self, message: InventoryArrived) -> None:
        self._offer_snapshot(message.snapshot, message.version)

    def _offer_snapshot(self, snapshot: Snapshot, version: int) -> None:
        """Show ``snapshot`` unless newer data is shown already: a full refresh and a
        refresh of one host run side by side, and either may finish first."""
        if version < self._data_version:
            return
        self._data_version = version
        self.apply_snapshot(snapshot)

    def _host_poll_finished(self, worker: Worker) -> None:
        _hosts, inbox = self._host_polls.pop(worker)
        if worker.state == WorkerState.SUCCESS and inbox:
            self._offer_snapshot(*inbox[0])
        elif worker.state == WorkerState.ERROR and worker.error is not None:
            message = self.describe_error(worker.error, worker.name or "inventory refresh")
            self.notify(message, title="Refresh failed", severity="error", timeout=10)
        inbox.clear()  # the worker object outlives this call: it must not pin the snapshot
        if self._host_poll_queue and self.is_running:
            queued, self._host_poll_queue = self._host_poll_queue, set()
            self._request_host_refresh(queued)
        self._sync_bars()

    def _poll_finished(self, worker: Worker) -> None:
        self._polling = False
        result, self._inbox = self._inbox, None
        if worker.state == WorkerState.SUCCESS and result is not None:
            self._last_poll_error = None
            self._offer_snapshot(*result)
        elif worker.state == WorkerState.ERROR and worker.error is not None:
            message = self.describe_error(worker.error, "inventory refresh")
            if message != self._last_poll_error:  # once per distinct error, not every 5 s
                self.notify(message, title="Refresh failed", severity="error", timeout=10)
            self._last_poll_error = message
        if self._poll_again:
            self._poll_again = False
            self.request_refresh()
        elif self.poll_automatically and self.is_running:
            # Scheduled after completion (never a fixed interval), so polls never overlap.
            self._poll_timer = self.set_timer(self._next_poll_in, self.request_refresh, name="poll")
        self._sync_bars()

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.palette_generation != self.palette.generation:
            snapshot = snapshot.restyled(self.palette)  # the theme changed during the refresh
        previous = self.snapshot
        self.snapshot = snapshot
        self.snapshot_version += 1
        if previous is not None:
            self._notify_new_crit(previous, snapshot)
        # Not while the console shuts down (a refresh that waited on a hung host may end
        # then, the screens already gone), nor before the view is up.
        screen = self.screen if self.is_running else None
        if isinstance(screen, ViewScreen):
            self.sync_screen(screen)
            if screen.is_mounted:
                screen.refresh_bindings_if_changed()  # a host may have turned read-only
        self._freeze_heap()

    def _freeze_heap(self) -> None:
        """Keep the big, long-lived inventory out of the cyclic GC's full scans.

        With thousands of VMs a full collection walks ~10^6 objects (150 ms measured) and
        lands on a random key press.  Frozen objects are still freed by reference counting
        when a newer refresh replaces them (the snapshot holds no cycles); only cyclic
        garbage frozen meanwhile (closed dialogs) waits until the periodic thaw, when one
        full collection sweeps it.
        """
        now = time.monotonic()
        if now - self._last_thaw >= GC_THAW_SECONDS:
            self._last_thaw = now
            gc.unfreeze()
        else:
            gc.freeze()

    def _notify_new_crit(self, previous: Snapshot, snapshot: Snapshot) -> None:
        new_keys = snapshot.crit_keys() - previous.crit_keys()
        if not new_keys:
            return
        # Only on hosts whose data was shown before: a host's first answer (it arrives after
        # the others' when it is slow) is not news, its findings are simply there.
        known = {host.name for host in previous.inventory.hosts if host.facts is not None}
        new = [f for f in snapshot.findings if finding_key(f) in new_keys and f.host in known]
        if not new:
            return
        lines = [f"{f.host}/{f.vm_name or '-'}: {f.rule}: {f.message}" for f in new[:3]]
        if len(new) > 3:
            lines.append(f"(+{len(new) - 3} more: press f)")
        title = "New critical finding" if len(new) == 1 else f"{len(new)} new critical findings"
        self.notify("\n".join(lines), title=title, severity="error", timeout=15)

    # -- views -------------------------------------------------------------------------------------
    def header_state(self) -> HeaderState:
        config = self.core.config
        snapshot = self.snapshot
        lab = config.is_builtin_lab or all(host.kind == "lab" for host in config.hosts)
        ro_hosts = 0
        if snapshot is not None:
            ro_hosts = sum(1 for host in snapshot.inventory.hosts if host.read_only)
        else:
            ro_hosts = sum(1 for host in config.hosts if host.read_only)
        view = self.screen.view_name if isinstance(self.screen, ViewScreen) else ""
        return HeaderState(
            lab=lab,
            builtin_lab=config.is_builtin_lab,
            read_only=self.core.read_only,
            read_only_hosts=ro_hosts,
            hosts_total=snapshot.hosts_total if snapshot is not None else None,
            hosts_reachable=snapshot.hosts_reachable if snapshot is not None else 0,
            hosts_waiting=snapshot.hosts_waiting if snapshot is not None else 0,
            refresh_age=self._data_age(snapshot) if snapshot is not None else None,
            refreshing=self._polling or bool(self._host_polls),
            crit=snapshot.crit if snapshot is not None else 0,
            warn=snapshot.warn if snapshot is not None else 0,
            view=view,
            load_failed=snapshot is None and self._last_poll_error is not None,
        )

    def _data_age(self, snapshot: Snapshot) -> float:
        """The header's "N s ago": the age of the newest data shown.  With partial results
        the age of a refresh means little (the lab hosts answered 0.1 s in, a hung host is
        still awaited); the newest answer says how current the picture is, and a host that
        lags is flagged on its own (the host alert line, "(1 down)").  Before any host
        answered: the age of the snapshot.  The core's clock, so a test's fixed clock gives
        a fixed picture."""
        answered = [host.refreshed_at for host in snapshot.inventory.hosts if host.refreshed_at is not None]
        return seconds_between(self.core.clock.now(), max(answered, default=snapshot.taken_wall))

    def failing_hosts(self) -> list[HostProblem]:
        if self.snapshot is None:
            # Nothing to show yet: a refresh that failed as a whole (the lab cannot be built, say)
            # stays on screen until one succeeds, rather than only in a toast that goes away.
            return [HostProblem("inventory", self._last_poll_error, False)] if self._last_poll_error else []
        return [
            HostProblem(host.name, host.error or "", host.stale, host.waiting) for host in self.snapshot.failing_hosts
        ]

    def action_views(self) -> list[ActionView]:
        views = [ActionView(action.title, action.progress) for action in self._actions.values()]
        return views + self.jobs_ui.action_views()

    def sync_screen(self, screen: ViewScreen, data: bool = True) -> None:
        """Bring a view up to date: the bars always, the data when a new refresh arrived."""
        if not screen.is_mounted or not self.is_running:
            return  # not yet, or shutting down (a refresh may land while the screens come down)
        while self._pending_theme_notices:  # shown once the first view is up, not lost before it
            self.notify(self._pending_theme_notices.pop(0), title="Theme problem", severity="warning", timeout=10)
        screen.sync_bars(self.header_state(), self.failing_hosts(), self.action_views())
        if data and self.snapshot is not None and screen.shown_version != self.snapshot_version:
            screen.shown_version = self.snapshot_version
            screen.show_snapshot(self.snapshot)

    def _sync_bars(self) -> None:
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
        self.push_screen(VmDetailScreen(host, vm_id, checkpoint_id))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_refresh(self) -> None:
        self.request_refresh()

    def action_command(self) -> None:
        if isinstance(self.screen, ViewScreen):
            self.screen.open_command_prompt()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Over a dialog, the one-letter keys belong to the dialog: never quit or jump away.
        modal = isinstance(self.screen, ModalScreen)
        return not (modal and action in {"help", "command", "show_view", "quit", "next_theme"})

    # -- the `:` prompt -------------------------------------------------------------------------------
    def command_help(self) -> list[tuple[str, str]]:
        return [(f"{name} {args}".strip(), description) for name, args, description in PROMPT_COMMANDS]

    def command_suggestions(self) -> list[str]:
        out = [name for name, _args, _description in PROMPT_COMMANDS]
        out.extend(f"theme {name}" for name in sorted(self.available_themes))
        return out

    def run_command(self, text: str) -> None:
        words = text.strip().lstrip(":").split(maxsplit=1)
        if not words:
            return
        name = COMMAND_ALIASES.get(words[0].casefold())
        argument = words[1].strip() if len(words) > 1 else ""
        if name is None:
            known = ", ".join(command for command, _args, _description in PROMPT_COMMANDS)
            self.notify(f"unknown command {words[0]!r} (commands: {known})", title="Command", severity="error")
            return
        if name in VIEWS:
            self.show_view(name, argument or None)
        elif name == "vm":
            self._open_vm_by_name(argument)
        elif name == "theme":
            if argument:
                self.switch_theme(argument)
            else:
                self.notify(", ".join(sorted(self.available_themes)), title=f"Themes (current: {self.theme})", timeout=10)
        elif name == "refresh":
            self.request_refresh()
        elif name == "help":
            self.action_help()
        elif name == "quit":
            self.run_worker(self.action_quit(), exclusive=False)

    def _open_vm_by_name(self, wanted: str) -> None:
        if self.snapshot is None or not wanted:
            self.notify("usage: vm NAME (or host/NAME)", title="Command", severity="error")
            return
        host, _, name = wanted.rpartition("/")
        matches = [
            vm
            for vm in self.snapshot.inventory.vms
            if vm.name.casefold() == name.casefold() and (not host or vm.host.casefold() == host.casefold())
        ]
        if len(matches) == 1:
            self.open_vm(matches[0].host, matches[0].id)
        elif matches:
            where = ", ".join(f"{vm.host}/{vm.name}" for vm in matches)
            self.notify(f"{wanted!r} is on several hosts: {where}; use host/NAME", title="Command", severity="error")
        else:
            self.notify(f"no VM {wanted!r}", title="Command", severity="error")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("VMs", "The VM list (:vms)", lambda: self.show_view("vms"))
        yield SystemCommand("Findings", "All sprawl findings (:findings)", lambda: self.show_view("findings"))
        yield SystemCommand("Jobs", "Backup and restore jobs (:jobs)", lambda: self.show_view("jobs"))
        yield SystemCommand("Refresh", "Refresh the inventory now", self.request_refresh)
        yield SystemCommand("hvtui keys", "Every key binding (?)", self.action_help)
        for name in self.hvtui_themes:
            yield SystemCommand(f"Theme: {name}", f"Switch to the {name} theme", lambda n=name: self.switch_theme(n))

    # -- read-only ---------------------------------------------------------------------------------------
    def read_only_reason(self, host: str) -> str | None:
        """Why changes to ``host`` are refused (the core refuses too), or None."""
        if self.core.read_only:
            return "hvtui runs read-only"
        host_config = self.core.config.host(host)
        if host_config is not None and host_config.read_only:
            return f"host {host} is read-only"
        if self.snapshot is not None:
            host_inv = self.snapshot.inventory.host(host)
            if host_inv is not None and host_inv.read_only:
                return f"host {host} is read-only"
        return None

    def _refuse_if_read_only(self, host: str) -> bool:
        reason = self.read_only_reason(host)
        if reason is not None:
            self.notify(reason, title="Refused: read-only", severity="error")
            return True
        return False

    # -- checkpoint actions ------------------------------------------------------------------------------
    def _vm(self, host: str, vm_id: str):  # -> VM | None
        return self.snapshot.inventory.vm(host, vm_id) if self.snapshot is not None else None

    def start_create(self, host: str, vm_id: str) -> None:
        vm = self._vm(host, vm_id)
        if vm is None or self._refuse_if_read_only(host):
            return
        from hvtui.actions import vm_checkpoint_type

        default = default_checkpoint_name(vm.name, self.core.clock.now())
        dialog = CreateCheckpointDialog(host, vm.name, default, vm_checkpoint_type(vm))

        def chosen(request: CreateRequest | None) -> None:
            if request is None:
                return
            label = request.name or "(default name)"
            self.start_action(
                f"Creating {request.type} checkpoint {label!r} of {host}/{vm.name}",
                lambda _progress, _cancel: self.core.actions.create(host, vm_id, request.name, request.type),
                done=lambda cp: f"Checkpoint {cp.name!r} of {host}/{vm.name} created",
                host=host,
            )

        self.push_screen(dialog, callback=chosen)

    def start_rename(self, host: str, vm_id: str, checkpoint_id: str) -> None:
        vm = self._vm(host, vm_id)
        cp = vm.checkpoint(checkpoint_id) if vm is not None else None
        if vm is None or cp is None or self._refuse_if_read_only(host):
            return
        dialog = TextDialog(
            f"Rename checkpoint of {vm.name} on {host}",
            f"New name for checkpoint {cp.name!r} (id {cp.id}):",
            value=cp.name,
            ok_label="Rename",
        )

        def chosen(new_name: str | None) -> None:
            if new_name is None or new_name.strip() == cp.name:
                return
            self.start_action(
                f"Renaming checkpoint {cp.name!r} of {host}/{vm.name}",
                lambda _progress, _cancel: self.core.actions.rename(host, vm_id, checkpoint_id, new_name),
                done=lambda _result: f"Checkpoint {cp.name!r} renamed to {new_name.strip()!r}",
                host=host,
            )

        self.push_screen(dialog, callback=chosen)

    def start_apply(self, host: str, vm_id: str, checkpoint_id: str) -> None:
        if self._refuse_if_read_only(host):
            return
        self._apply_flow(host, vm_id, checkpoint_id)

    @work(group="dialog", exit_on_error=False)
    async def _apply_flow(self, host: str, vm_id: str, checkpoint_id: str) -> None:
        plan = await asyncio.to_thread(self.core.actions.plan_apply, host, vm_id, checkpoint_id)
        body = (
            plan.describe(checkpoint_first=False)
            + "\n\nOr: checkpoint first, then apply —\n"
            + plan.describe(checkpoint_first=True).split("\n", 1)[1]
        )
        choice = await self.push_screen_wait(
            ChoiceDialog(
                f"Apply checkpoint {plan.checkpoint.name!r} to {plan.vm_name} on {host}?",
                body,
                [("checkpoint_first", "Checkpoint first, then apply"), ("apply", "Apply (current state lost)")],
            )
        )
        if choice not in ("apply", "checkpoint_first"):
            return
        first = choice == "checkpoint_first"
        self.start_action(
            f"Applying checkpoint {plan.checkpoint.name!r} to {host}/{plan.vm_name}",
            lambda progress, _cancel: self.core.actions.apply(host, vm_id, checkpoint_id, checkpoint_first=first, progress=progress),
            done=lambda _saved: f"{host}/{plan.vm_name} now runs from checkpoint {plan.checkpoint.name!r}"
            + (" (its previous state was checkpointed first)" if first else ""),
            host=host,
        )

    def start_delete(self, host: str, vm_id: str, checkpoint_id: str, subtree: bool = False) -> None:
        if self._refuse_if_read_only(host):
            return
        self._delete_flow(host, vm_id, checkpoint_id, subtree)

    @work(group="dialog", exit_on_error=False)
    async def _delete_flow(self, host: str, vm_id: str, checkpoint_id: str, subtree: bool) -> None:
        plan = await asyncio.to_thread(self.core.actions.plan_remove, host, vm_id, checkpoint_id, subtree)
        what = "checkpoint subtree" if subtree else "checkpoint"
        title = f"Delete {what} {plan.checkpoint.name!r} of {plan.vm_name} on {host}?"
        if plan.headroom_ok:
            choices = [("delete", "Delete subtree" if subtree else "Delete")]
        else:
            choices = [("force", "Force delete…")]
        choice = await self.push_screen_wait(ChoiceDialog(title, plan.describe(), choices))
        if choice not in ("delete", "force"):
            return
        force = False
        if choice == "force":
            short = "; ".join(room.text() for room in plan.headrooms if not room.ok)
            confirmed = await self.push_screen_wait(
                ConfirmDialog(
                    f"Force the merge of {plan.checkpoint.name!r} on {host}?",
                    f"The merge-headroom rule refuses this delete: {short}.\n\n"
                    "A merge that fills the volume pauses every VM on it. Force it only if you know "
                    "the space will be there.",
                    yes_label="Force delete",
                )
            )
            if not confirmed:
                return
            force = True
        count = len(plan.checkpoints)
        self.start_action(
            f"Deleting {what} {plan.checkpoint.name!r} of {host}/{plan.vm_name}",
            lambda progress, cancel: self.core.actions.remove(
                host, vm_id, checkpoint_id, subtree=subtree, force=force, progress=progress, cancel=cancel
            ),
            done=lambda done_plan: f"Deleted {count} checkpoint{'s' if count != 1 else ''} of {host}/{plan.vm_name} "
            f"({plan.checkpoint.name!r}); "
            # A WinRM host may still be merging when Remove-VMSnapshot returns.
            + ("the merge continues on the host; the chain shrinks when it is done" if done_plan.merge_pending else "merged"),
            host=host,
        )

    def start_action(
        self,
        title: str,
        call: Callable[[ProgressCallback, CancelToken], Any],
        done: Callable[[Any], str],
        host: str | None = None,
    ) -> int:
        """Run a checkpoint action in a thread worker, with throttled progress; returns its id.

        ``host``: the host it changes, read again (alone) when the action ends; without
        it, every host is."""
        action = RunningAction(next(self._action_ids), title, CancelToken(), done, host)
        self._actions[action.id] = action
        last_post = [0.0]

        def progress(event: Progress) -> None:  # called in the worker thread
            now = time.monotonic()
            if now - last_post[0] >= PROGRESS_INTERVAL or event.phase == "done":
                last_post[0] = now
                self.post_message(ActionProgress(action.id, event))

        def run() -> Any:
            return call(progress, action.token)

        worker = self.run_worker(run, name=title, group="action", thread=True, exit_on_error=False)
        self._action_workers[worker] = action.id
        self._sync_bars()
        return action.id

    def on_action_progress(self, message: ActionProgress) -> None:
        action = self._actions.get(message.action_id)
        if action is not None:
            action.progress = message.event
            self._sync_bars()

    def _action_finished(self, worker: Worker) -> None:
        action_id = self._action_workers.pop(worker, None)
        action = self._actions.pop(action_id, None) if action_id is not None else None
        if action is None:
            return
        if worker.state == WorkerState.SUCCESS:
            try:
                message = action.done(worker.result)
            except Exception:  # a message formatter must not hide a success
                log.exception("formatting the result of %s", action.title)
                message = action.title + ": done"
            log.info("%s", message)
            self.notify(message, title="Done", timeout=6)
        elif worker.state == WorkerState.ERROR and worker.error is not None:
            title = "Refused" if isinstance(worker.error, (ReadOnlyError, RefusedError)) else "Failed"
            self.notify(self.describe_error(worker.error, action.title), title=title, severity="error", timeout=15)
        elif worker.state == WorkerState.CANCELLED:
            self.notify(f"{action.title}: cancelled", severity="warning")
        self._sync_bars()
        # Show the result now, not in a few seconds; and only its host, so that a full
        # refresh waiting on some hung host does not hold it back.
        self.request_refresh([action.host] if action.host is not None else None)

    @property
    def running_actions(self) -> list[RunningAction]:
        return list(self._actions.values())

    # -- workers and errors ------------------------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        if worker.group == "poll":
            if worker in self._host_polls:
                self._host_poll_finished(worker)
            else:
                self._poll_finished(worker)
        elif worker.group == "action":
            self._action_finished(worker)
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
        if not self._actions and not jobs:
            self.exit(0)
            return
        parts = []
        if self._actions:
            titles = "\n".join(f"  - {action.title}" for action in self._actions.values())
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
                for action in self._actions.values():
                    action.token.cancel()
                self.jobs_ui.stop_all_then_exit()  # exits once the jobs cleaned up

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


def _remembered(lookup: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``lookup`` asked once per VM per refresh (the policy and the rows both want it)."""
    answers: dict[str, Any] = {}

    def remembered(vm: Any) -> Any:
        if vm.key not in answers:
            answers[vm.key] = lookup(vm)
        return answers[vm.key]

    return remembered


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
