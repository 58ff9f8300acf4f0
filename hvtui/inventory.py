"""The live inventory: every host read concurrently, each under its own deadline.

``InventoryService.refresh`` reads all hosts at once, one thread per host, and returns
when every host has answered or passed its deadline, whichever comes first for each.
A host that fails or hangs is reported with its ``error`` while the others return; the
data it gave last time stays, marked ``stale``.  A hung call is never joined: its
thread is a daemon and keeps running on its own, and the next refresh reuses that same
call instead of stacking another one on a dead host (so at most one call per host is
ever in flight).  Two refreshes never overlap: a second caller waits for the running one
and gets its result.

Everything here blocks; the console calls it from worker threads.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING

from hvtui.errors import HvtuiError, UsageError
from hvtui.hosts.base import Host, HostSnapshot
from hvtui.model import VM, HostInventory, Inventory

if TYPE_CHECKING:
    from hvtui.core import Core

log = logging.getLogger(__name__)

DEFAULT_DEADLINE = 15.0  # seconds, for hosts whose settings name none (the lab)
# Waiting a little past the deadline we hand to the host lets its own, more specific
# timeout error ("WinRM read timed out") win over our generic one.
DEADLINE_GRACE = 0.5


class InventoryService:
    def __init__(self, core: Core, default_deadline: float = DEFAULT_DEADLINE) -> None:
        self._core = core
        self.default_deadline = default_deadline
        self._lock = threading.Lock()
        self._latest = Inventory()
        self._running: Future[Inventory] | None = None
        self._running_hosts: frozenset[str] | None = None  # None: every host
        # The one call per host still in flight, possibly started by an earlier refresh.
        self._in_flight: dict[str, tuple[Future[HostSnapshot], float]] = {}
        self.refresh_count = 0  # completed refreshes; lets pollers see that something new arrived
        self._waiting = 0  # callers waiting for someone else's refresh (observable in tests)

    # -- state -------------------------------------------------------------------------------
    @property
    def latest(self) -> Inventory:
        """The newest inventory (empty before the first refresh)."""
        return self._latest

    @property
    def is_refreshing(self) -> bool:
        return self._running is not None

    @property
    def waiting_callers(self) -> int:
        """Callers blocked waiting for the running refresh."""
        return self._waiting

    def deadline_for(self, name: str) -> float:
        """The host's own call deadline from its settings, else the service default."""
        host_config = self._core.config.host(name)
        if host_config is not None and host_config.winrm is not None:
            return float(host_config.winrm.timeout)
        return self.default_deadline

    # -- refresh -------------------------------------------------------------------------------
    def refresh(self, hosts: Iterable[str] | None = None) -> Inventory:
        """Read the hosts (all by default, or those named) and return the new inventory.

        Hosts not named keep their previous entry.  Unknown names raise ``ConfigError``.
        """
        wanted = None if hosts is None else frozenset(hosts)
        if wanted is not None:
            for name in wanted:
                self._core.host(name)  # raises ConfigError naming the configured hosts
        while True:
            with self._lock:
                running = self._running
                if running is None:
                    mine: Future[Inventory] = Future()
                    self._running, self._running_hosts = mine, wanted
                    break
                covers = self._running_hosts is None or (wanted is not None and wanted <= self._running_hosts)
            with self._lock:
                self._waiting += 1
            try:
                result = running.result()  # never two refreshes at once: wait for the running one
            finally:
                with self._lock:
                    self._waiting -= 1
            if covers:
                return result
        try:
            inventory = self._refresh(wanted)
        except BaseException as err:
            mine.set_exception(err)
            raise
        else:
            mine.set_result(inventory)
            return inventory
        finally:
            with self._lock:
                self._running, self._running_hosts = None, None

    def _refresh(self, wanted: frozenset[str] | None) -> Inventory:
        hosts = self._core.hosts
        names = [name for name in hosts if wanted is None or name in wanted]
        started = time.monotonic()
        deadlines = {name: self.deadline_for(name) for name in names}
        calls = {name: self._start_call(hosts[name], deadlines[name]) for name in names}
        give_up_at = {name: started + deadlines[name] + min(DEADLINE_GRACE, deadlines[name] / 10) for name in names}

        pending = set(names)
        finished_at: dict[str, float] = {}
        while pending:
            now = time.monotonic()
            for name in [n for n in pending if calls[n].done()]:
                pending.discard(name)
                finished_at[name] = now
            for name in [n for n in pending if give_up_at[n] <= now]:
                pending.discard(name)  # timed out; its thread is left to finish (or not) alone
            if not pending:
                break
            wait(
                [calls[n] for n in pending],
                timeout=max(0.0, min(give_up_at[n] for n in pending) - now),
                return_when=FIRST_COMPLETED,
            )

        previous = self._latest
        new_hosts: dict[str, HostInventory] = {}
        for name in names:
            call = calls[name]
            duration = finished_at.get(name, time.monotonic()) - started
            if name in finished_at:
                new_hosts[name] = self._host_result(hosts[name], call, duration, previous.host(name))
            else:
                error = f"no answer within {deadlines[name]:g} s (timeout)"
                log.warning("inventory of %s: %s", name, error)
                new_hosts[name] = self._failed(hosts[name], error, duration, previous.host(name))

        # Keep the configured order; hosts not refreshed this time keep their entry.
        merged: list[HostInventory] = []
        for name in hosts:
            entry = new_hosts.get(name) or previous.host(name)
            if entry is not None:
                merged.append(entry)
        inventory = Inventory(hosts=tuple(merged))
        with self._lock:
            self._latest = inventory
            self.refresh_count += 1
        return inventory

    def _start_call(self, host: Host, deadline: float) -> Future[HostSnapshot]:
        name = host.name
        with self._lock:
            running = self._in_flight.get(name)
            if running is not None and not running[0].done():
                log.info("inventory of %s: the previous call is still running; waiting on it", name)
                return running[0]
            future: Future[HostSnapshot] = Future()
            self._in_flight[name] = (future, time.monotonic())

        def call() -> None:
            try:
                future.set_result(host.inventory(deadline))
            except BaseException as err:  # delivered to the refresh through the future
                future.set_exception(err)
            finally:
                with self._lock:
                    if self._in_flight.get(name, (None, 0.0))[0] is future:
                        del self._in_flight[name]

        # A daemon thread, not a pool worker: a host that never answers must not keep the
        # process alive at exit (a pool joins its workers) nor hold a worker forever.
        threading.Thread(target=call, name=f"hvtui-inventory-{name}", daemon=True).start()
        return future

    def _host_result(
        self, host: Host, call: Future[HostSnapshot], duration: float, previous: HostInventory | None
    ) -> HostInventory:
        err = call.exception()
        if err is None:
            snapshot = call.result()
            if not isinstance(snapshot, HostSnapshot):
                return self._failed(
                    host, f"inventory returned {type(snapshot).__name__}, not a snapshot", duration, previous
                )
            vms = tuple(vm if vm.host == host.name else dataclasses.replace(vm, host=host.name) for vm in snapshot.vms)
            return HostInventory(
                name=host.name,
                kind=host.kind,
                group=host.group,
                read_only=host.read_only,
                facts=snapshot.facts,
                vms=vms,
                refreshed_at=self._core.clock.now(),
                duration=duration,
            )
        if isinstance(err, HvtuiError):
            message = str(err)
            log.warning("inventory of %s failed: %s", host.name, message)
        else:
            message = f"unexpected error: {type(err).__name__}: {err}"
            log.error("inventory of %s failed", host.name, exc_info=err)
        return self._failed(host, message, duration, previous)

    @staticmethod
    def _failed(host: Host, error: str, duration: float, previous: HostInventory | None) -> HostInventory:
        if previous is not None and previous.facts is not None:
            # The last good data stays visible, marked stale.
            return dataclasses.replace(
                previous,
                group=host.group,
                read_only=host.read_only,
                error=error,
                stale=True,
                duration=duration,
            )
        return HostInventory(
            name=host.name,
            kind=host.kind,
            group=host.group,
            read_only=host.read_only,
            error=error,
            duration=duration,
        )

    # -- lookups -------------------------------------------------------------------------------
    def find_vm(self, vm: str, host: str | None = None) -> VM:
        """A VM by name or id, on ``host`` or anywhere.

        Reads the hosts first when the inventory holds nothing for them yet.  An ambiguous
        name raises ``HvtuiError`` listing where it was found; an unknown one lists close
        matches.
        """
        inventory = self._latest
        if host is not None:
            if inventory.host(host) is None:
                inventory = self.refresh([host])
            host_inv = inventory.host(host)
            assert host_inv is not None  # refresh([host]) always reports the host
            if host_inv.facts is None and host_inv.error is not None:
                raise HvtuiError(f"host {host!r} cannot be read: {host_inv.error}")
            candidates: list[VM] = list(host_inv.vms)
        else:
            if not inventory.hosts:
                inventory = self.refresh()
            candidates = inventory.vms

        wanted = vm.strip()
        by_id = [c for c in candidates if c.id.casefold() == wanted.casefold()]
        if len(by_id) == 1:
            return by_id[0]
        matches = [c for c in candidates if c.name == wanted] or [
            c for c in candidates if c.name.casefold() == wanted.casefold()
        ]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1 or len(by_id) > 1:
            found = matches or by_id
            where = ", ".join(f"{c.host}/{c.name} (id {c.id})" for c in found)
            hint = "name the host (--host) or use the VM id" if host is None else "use the VM id"
            raise UsageError(f"VM {vm!r} is ambiguous: found {where}; {hint}")

        scope = f"on host {host!r}" if host is not None else "on any host"
        message = f"no VM {vm!r} {scope}"
        names = sorted({c.name for c in candidates})
        close = difflib.get_close_matches(wanted, names, n=5, cutoff=0.6)
        if not close:
            folded = wanted.casefold()
            close = [n for n in names if folded in n.casefold()][:5]
        if close:
            message += f" (did you mean: {', '.join(close)}?)"
        unread = [h.name for h in inventory.hosts if h.error is not None and (host is None or h.name == host)]
        if unread:
            message += f"; not read just now: {', '.join(unread)}"
        raise UsageError(message)
