"""The console's inventory refresh: the poll worker, partial results, the data the bars show.

The refresh runs in thread workers, never overlapping: the next one is scheduled when the
last one finished.  One hung host holds nothing back: while a refresh waits on it, the
poll worker hands the other hosts' answers to the UI thread as they arrive (at most a few
times a second), the hung host flagged as waiting, then as timed out.  After a checkpoint
action only its host is read again, at once, beside a full refresh that may still be
waiting on another host (refreshes of the same host never overlap: a second one waits for
the first to end).

``RefreshMixin`` is one of the parts ``hvtui.tui.app.HvtuiApp`` is made of.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from textual.message import Message
from textual.worker import Worker, WorkerState

from hvtui.errors import HvtuiError
from hvtui.model import Inventory
from hvtui.notify.state import DeliveryFailure
from hvtui.text import display_text
from hvtui.tui.screens.base import ViewScreen
from hvtui.tui.viewmodel.cells import Palette
from hvtui.tui.viewmodel.finding_rows import finding_key
from hvtui.tui.viewmodel.format import seconds_between
from hvtui.tui.viewmodel.snapshot import Snapshot, build_snapshot
from hvtui.tui.widgets.bars import HeaderState, HostProblem, lab_name

log = logging.getLogger(__name__)

MIN_REFRESH_SECONDS = 1.0  # over a slow link nothing should tick faster than this
MIN_POLL_GAP = 0.5  # seconds between the end of a poll and the next (a breath for the hosts)
GC_THAW_SECONDS = 600.0  # see RefreshMixin._freeze_heap
PARTIAL_INTERVAL = MIN_REFRESH_SECONDS  # partial inventories: background redraws, never sub-second


class InventoryArrived(Message):
    """Some hosts answered while the poll still waits on others (posted from its thread)."""

    def __init__(self, snapshot: Snapshot, version: int) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.version = version  # the inventory service's version of the data in it


class RefreshMixin:
    """The app's refresh of the inventory and the snapshot it shows (mixed into the app)."""

    def init_refresh_state(self) -> None:
        self.snapshot: Snapshot | None = None
        self.snapshot_version = 0
        self._polling = False
        self._poll_again = False
        # Refreshes of a few hosts after a change: their hosts, and the worker's result box.
        self._host_polls: dict[Worker, tuple[frozenset[str], list[tuple[Snapshot, int]]]] = {}
        self._host_poll_queue: set[str] = set()  # asked for while a refresh of them ran
        self._data_version = -1  # the inventory service version of the data shown
        self._poll_timer = None
        self._last_poll_error: str | None = None
        self._last_thaw = time.monotonic()
        self._inbox: tuple[Snapshot, int] | None = None  # the latest refresh, handed from the poll worker
        self._next_poll_in = MIN_REFRESH_SECONDS  # set by the poll worker (see _poll_into_inbox)
        # Notifications whose last message could not be sent (read by the poll worker: a schedule
        # run sends them from another process), and those already announced in a toast.
        self.notify_failures: tuple[DeliveryFailure, ...] = ()
        self._notify_failures_announced: set[tuple[str, str]] = set()

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
        self.sync_current_bars()

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
        self.sync_current_bars()

    def _poll_into_inbox(self) -> None:
        """The poll worker's body.  The snapshot goes to ``_inbox``, not into the worker's
        result: Textual keeps finished workers reachable for a while (their thread's
        context), and each would pin a whole inventory in memory."""
        started = time.monotonic()
        self._inbox = self._poll(self.palette, self.snapshot)
        self.notify_failures = self._notification_failures()
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
        last_backup = _remembered(self.core.backups.last_backup_of)  # policy and rows ask alike
        windows = self._change_windows()
        # Only when a repository names copy_to: the copy service is not built otherwise.
        offsite = self.core.copies.offsite_state if any(r.copy_to for r in self.core.config.repositories) else None
        latest = [previous]  # each snapshot reuses the unchanged rows of the one before

        def build() -> tuple[Snapshot, int]:
            # Whatever is newest when we get here, with its version: another worker may have
            # merged a host since the service called us.
            inventory, version = service.latest_with_version()
            findings = policy.evaluate(
                inventory,
                self.core.config.policy,
                last_backup,
                self.core.backups.backup_checkpoint_left,
                windows,
                self.core.config.schedules,
                offsite,
            )
            now = self.core.clock.now()
            latest[0] = build_snapshot(
                inventory, findings, palette, now, last_backup, started, latest[0], self.core.config.schedules
            )
            return latest[0], version

        def arrived(_inventory: Inventory) -> None:
            self.post_message(InventoryArrived(*build()))  # thread-safe; dropped once the app closes

        if hosts is None:
            # At most one interval: a hung host's call goes on alone, the next poll reuses it.
            service.refresh(on_update=arrived, update_interval=PARTIAL_INTERVAL, return_after=self.refresh_interval)
        else:
            service.refresh(hosts)
        return build()

    def _change_windows(self) -> dict:
        """The open change windows' checkpoints (worker thread); a damaged file is logged, and
        its checkpoints are then reported by the usual checkpoint-age rule."""
        try:
            return self.core.changes.open_checkpoints()
        except HvtuiError as err:
            log.warning("change windows not read: %s", err)
            return {}

    def _notification_failures(self) -> tuple[DeliveryFailure, ...]:
        """Worker thread: the notifications whose last message failed (state dir)."""
        try:
            return tuple(self.core.notification_state.failures())
        except OSError as err:
            log.warning("notification state not read: %s", err)
            return ()

    def announce_notification_failures(self) -> None:
        """A toast once per failed message, with the reason; the header keeps the mark.
        Called when a view syncs: a toast before the first view is up would be lost."""
        for failure in self.notify_failures:
            key = (failure.notification, failure.time)
            if key in self._notify_failures_announced:
                continue
            self._notify_failures_announced.add(key)
            self.notify(
                display_text(f"{failure.time}, schedule {failure.schedule}: {failure.error}"),
                title=f"Notification {display_text(failure.notification)} not sent",
                severity="error",
                timeout=15,
                markup=False,
            )

    def on_inventory_arrived(self, message: InventoryArrived) -> None:
        self._offer_snapshot(message.snapshot, message.version)

    def _offer_snapshot(self, snapshot: Snapshot, version: int) -> None:
        """Show ``snapshot`` unless newer data is shown already: a full refresh and a
        refresh of one host run side by side, and either may finish first."""
        if version < self._data_version:
            return
        self._data_version = version
        self.apply_snapshot(snapshot)

    def refresh_worker_finished(self, worker: Worker) -> None:
        """A worker of the "poll" group ended: a refresh of some hosts, or the full one."""
        if worker in self._host_polls:
            self.host_poll_finished(worker)
        else:
            self.poll_finished(worker)

    def host_poll_finished(self, worker: Worker) -> None:
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
        self.sync_current_bars()

    def poll_finished(self, worker: Worker) -> None:
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
        self.sync_current_bars()

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

    # -- what the bars show ------------------------------------------------------------------------
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
            # "Built-in" only for the demo lab in its own place; any other lab is named by its directory.
            lab_name=lab_name(config.is_builtin_lab and self.core.lab_dir == self.core.paths.lab_dir, self.core.lab_dir)
            if lab
            else "",
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
            tls_unverified=config.tls_unverified_hosts(),
            notify_failed=tuple(failure.notification for failure in self.notify_failures),
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


def _remembered(lookup: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``lookup`` asked once per VM per refresh (the policy and the rows both want it)."""
    answers: dict[str, Any] = {}

    def remembered(vm: Any) -> Any:
        if vm.key not in answers:
            answers[vm.key] = lookup(vm)
        return answers[vm.key]

    return remembered

