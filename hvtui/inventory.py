"""The live inventory: every host read concurrently, each under its own deadline, and
each host's answer published the moment it arrives.

``InventoryService.refresh`` reads the hosts (all by default, or those named), one thread
per host, and returns when every one of them has answered or passed its deadline.  The
thread that reads a host merges its answer into ``latest`` as soon as it has it, so one
slow or hung host never holds back the others' data: a caller that wants it as it comes
(the console) passes ``on_update`` and is handed the merged inventory while the refresh
still waits on the rest, throttled to one call per ``update_interval`` and never within
the first interval (a refresh done by then hands over only its result, as before).
Headless callers pass no callback and get one complete result, as before.

A host still being read shows, in those partial inventories, as "waiting for an answer"
(its earlier data kept, marked ``stale``) once its call has run ``waiting_after`` seconds,
or at once when it has no data yet; a host whose last read failed keeps showing that
failure instead.  When the call's deadline passes the host shows as timed out with the
reason.  A host that fails keeps the data it gave last time, marked stale.

At most one call per host is ever in flight, and its deadline runs from when it started.
A hung call is never joined: its thread is a daemon and keeps running on its own, a later
refresh waits on that same call instead of stacking another one on a dead host, and
whenever it ends its answer is merged into ``latest``.  A poller that must not be held
back by it (the console, which reads the other hosts every few seconds) passes
``return_after``: the refresh then returns after that long with what it has, the hung
host shown as waiting, and the next refresh picks up the same call.

Full refreshes never overlap: a second caller waits for the running one and gets its
result.  A refresh of named hosts (after a checkpoint change on them) does not wait for a
running full refresh: it shares the per-host calls, and where a call in flight started
before it was asked, it waits for that call and then reads the host once more, so it
returns data read after the change; it returns as soon as its own hosts are read.

Everything here blocks; the console calls it from worker threads.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Protocol

from hvtui.clock import Clock
from hvtui.config import HostConfig
from hvtui.errors import HvtuiError, UsageError
from hvtui.hosts.base import Host, HostSnapshot
from hvtui.model import VM, HostInventory, Inventory

log = logging.getLogger(__name__)

DEFAULT_DEADLINE = 15.0  # seconds, for hosts whose settings name none (the lab)
# Waiting a little past the deadline we hand to the host lets its own, more specific
# timeout error ("WinRM read timed out") win over our generic one.
DEADLINE_GRACE = 0.5
# A host with good data is flagged "waiting" only after this long: a normal WinRM read
# takes a few seconds, a big host's more, and flagging every host that is merely slower
# than the others would blink the host alert on every refresh.
WAITING_AFTER = 10.0
# Partial inventories reach ``on_update`` at most this often (the console's throttle).
UPDATE_INTERVAL = 0.25

InventoryListener = Callable[[Inventory], None]


class HostSource(Protocol):
    """The hosts the inventory reads (``hvtui.hosts.registry.HostRegistry``)."""

    @property
    def hosts(self) -> dict[str, Host]: ...

    def host(self, name: str) -> Host: ...

    def settings_of(self, name: str) -> HostConfig | None: ...


@dataclasses.dataclass(eq=False)
class _Call:
    """One inventory call to one host, possibly shared by several refreshes."""

    host: str
    started: float  # time.monotonic()
    done: Future[None] = dataclasses.field(default_factory=Future)  # set after its answer was merged
    merged: bool = False  # its answer is in ``latest`` (set under the service lock)


class InventoryService:
    def __init__(
        self,
        hosts: HostSource,
        clock: Clock,
        default_deadline: float = DEFAULT_DEADLINE,
        waiting_after: float = WAITING_AFTER,
    ) -> None:
        self._hosts = hosts
        self._clock = clock
        self.default_deadline = default_deadline
        self.waiting_after = waiting_after
        self._lock = threading.Lock()
        self._latest = Inventory()
        self._version = 0  # bumped on every change to _latest
        self._running: Future[Inventory] | None = None  # the running full refresh
        self._scoped_running = 0  # refreshes of named hosts running now
        # The one call per host still in flight, possibly started by an earlier refresh.
        self._in_flight: dict[str, _Call] = {}
        self.refresh_count = 0  # completed refreshes; lets pollers see that something new arrived
        self._waiting = 0  # callers waiting for someone else's refresh (observable in tests)

    # -- state -------------------------------------------------------------------------------
    @property
    def latest(self) -> Inventory:
        """The newest inventory (empty before the first refresh), merged host by host."""
        return self._latest

    def latest_with_version(self) -> tuple[Inventory, int]:
        """``latest`` and its version, which grows with every change: of two inventories
        handed out, the one with the higher version is the newer."""
        with self._lock:
            return self._latest, self._version

    @property
    def is_refreshing(self) -> bool:
        return self._running is not None or self._scoped_running > 0

    @property
    def waiting_callers(self) -> int:
        """Callers blocked waiting for the running refresh."""
        return self._waiting

    def deadline_for(self, name: str) -> float:
        """The host's own call deadline from its settings, else the service default."""
        host_config = self._hosts.settings_of(name)
        if host_config is not None and host_config.winrm is not None:
            return float(host_config.winrm.timeout)
        return self.default_deadline

    # -- refresh -------------------------------------------------------------------------------
    def refresh(
        self,
        hosts: Iterable[str] | None = None,
        on_update: InventoryListener | None = None,
        update_interval: float = UPDATE_INTERVAL,
        return_after: float | None = None,
    ) -> Inventory:
        """Read the hosts (all by default, or those named) and return the new inventory.

        Hosts not named keep their previous entry.  Unknown names raise ``ConfigError``.
        ``on_update`` is called, in this caller's thread, with the merged inventory while
        the refresh still waits on some hosts; with ``return_after`` (seconds) the refresh
        returns by then even if some hosts are still being read (see the module
        docstring).  A caller that shares a running full refresh gets only its result.
        """
        if hosts is not None:
            wanted = frozenset(hosts)
            for name in wanted:
                self._hosts.host(name)  # raises ConfigError naming the configured hosts
            with self._lock:
                self._scoped_running += 1
            try:
                return self._run(wanted, on_update, update_interval, return_after)
            finally:
                with self._lock:
                    self._scoped_running -= 1

        with self._lock:
            running = self._running
            if running is None:
                mine: Future[Inventory] = Future()
                self._running = mine
            else:
                self._waiting += 1
        if running is not None:
            try:
                return running.result()  # never two full refreshes at once: share the running one
            finally:
                with self._lock:
                    self._waiting -= 1
        try:
            inventory = self._run(None, on_update, update_interval, return_after)
        except BaseException as err:
            mine.set_exception(err)
            raise
        else:
            mine.set_result(inventory)
            return inventory
        finally:
            with self._lock:
                self._running = None

    def _run(
        self,
        wanted: frozenset[str] | None,
        on_update: InventoryListener | None,
        update_interval: float,
        return_after: float | None,
    ) -> Inventory:
        asked_at = time.monotonic()
        hosts = self._hosts.hosts
        names = [name for name in hosts if wanted is None or name in wanted]
        deadlines = {name: self.deadline_for(name) for name in names}
        calls = {name: self._start_call(hosts[name], deadlines[name]) for name in names}
        read_again = wanted is not None  # named hosts: read after the ask (see the module docstring)

        def give_up_at(name: str) -> float:  # a call's deadline runs from its start
            return calls[name].started + deadlines[name] + min(DEADLINE_GRACE, deadlines[name] / 10)

        pending = set(names)
        flagged: set[str] = set()  # hosts already shown as waiting for their current call
        changed = False  # something this refresh waits for changed since on_update was last called
        next_update = asked_at + update_interval
        return_at = asked_at + return_after if return_after is not None else float("inf")
        while pending:
            now = time.monotonic()
            for name in [n for n in names if n in pending]:
                call = calls[name]
                if call.done.done():
                    changed = True  # its answer is merged already
                    if read_again and call.started < asked_at:
                        # A call from before we were asked ended: now read the host for us.
                        calls[name] = self._start_call(hosts[name], deadlines[name])
                        flagged.discard(name)
                    else:
                        pending.discard(name)
                elif now >= give_up_at(name):
                    pending.discard(name)  # timed out; its thread is left to finish (or not) alone
                    error = f"no answer within {deadlines[name]:g} s (timeout)"
                    if self._mark(hosts[name], call, error):
                        log.warning("inventory of %s: %s", name, error)
                    changed = True  # marked timed out, or its answer came in just now
                elif name not in flagged and now >= self._waiting_from(call):
                    flagged.add(name)
                    waiting = f"waiting for an answer (gives up after {deadlines[name]:g} s)"
                    changed |= self._mark(hosts[name], call, waiting, waiting=True)
            if not pending or now >= return_at:
                break  # done, or the caller does not wait longer (the calls go on alone)
            if on_update is not None and changed and now >= next_update:
                changed = False
                next_update = now + update_interval
                self._hand_over(on_update)
            wake_at = [return_at, *(give_up_at(n) for n in pending)]
            wake_at.extend(self._waiting_from(calls[n]) for n in pending if n not in flagged)
            if on_update is not None and changed:
                wake_at.append(next_update)
            wait(
                [calls[n].done for n in pending],
                timeout=max(0.0, min(wake_at) - time.monotonic()),
                return_when=FIRST_COMPLETED,
            )
        with self._lock:
            self.refresh_count += 1
            return self._latest

    def _waiting_from(self, call: _Call) -> float:
        """When a host still being read is shown as waiting: at once when it has no data
        yet, after ``waiting_after`` when it has good data; never over the failure its
        last read ended with (that stays shown until this call ends)."""
        entry = self._latest.host(call.host)
        if entry is None:
            return call.started
        if entry.error is not None:
            return float("inf")
        return call.started + self.waiting_after

    def hosts_being_read(self) -> frozenset[str]:
        """Hosts with a call in flight (a refresh that returned early left them reading)."""
        with self._lock:
            return frozenset(self._in_flight)

    def _hand_over(self, on_update: InventoryListener) -> None:
        try:
            on_update(self._latest)
        except Exception:  # a broken listener must not stop the refresh
            log.exception("inventory listener failed")

    def _start_call(self, host: Host, deadline: float) -> _Call:
        name = host.name
        with self._lock:
            running = self._in_flight.get(name)
            if running is not None:
                log.info("inventory of %s: the previous call is still running; waiting on it", name)
                return running
            call = _Call(name, time.monotonic())
            self._in_flight[name] = call

        def read() -> None:
            snapshot: object = None
            error: BaseException | None = None
            try:
                snapshot = host.inventory(deadline)
            except BaseException as err:  # reported as the host's error, never raised here
                error = err
            duration = time.monotonic() - call.started
            message = self._failure_message(host, snapshot, error)
            with self._lock:
                previous = self._latest.host(name)
                if message is None:
                    assert isinstance(snapshot, HostSnapshot)
                    entry = self._answered(host, snapshot, duration)
                else:
                    entry = self._failed(host, message, duration, previous)
                self._merge(entry)
                call.merged = True
                if self._in_flight.get(name) is call:
                    del self._in_flight[name]
            call.done.set_result(None)  # wakes the refreshes waiting on it, after the merge

        # A daemon thread, not a pool worker: a host that never answers must not keep the
        # process alive at exit (a pool joins its workers) nor hold a worker forever.
        threading.Thread(target=read, name=f"hvtui-inventory-{name}", daemon=True).start()
        return call

    def _mark(self, host: Host, call: _Call, error: str, waiting: bool = False) -> bool:
        """Show ``host`` as not (yet) answering ``call``, keeping its data marked stale;
        False when the call's answer is in already (it wins)."""
        with self._lock:
            if call.merged:
                return False
            previous = self._latest.host(host.name)
            if previous is not None and previous.error == error:
                return False  # another refresh waiting on the same call marked it already
            self._merge(self._failed(host, error, time.monotonic() - call.started, previous, waiting))
            return True

    def _merge(self, entry: HostInventory) -> None:
        """Put one host's entry into ``latest``, in the configured order (lock held)."""
        entries = {host.name: host for host in self._latest.hosts}
        entries[entry.name] = entry
        self._latest = Inventory(hosts=tuple(entries[name] for name in self._hosts.hosts if name in entries))
        self._version += 1

    @staticmethod
    def _failure_message(host: Host, snapshot: object, error: BaseException | None) -> str | None:
        """Why the call gave no usable snapshot (logged here, outside the lock), or None."""
        if error is None:
            if isinstance(snapshot, HostSnapshot):
                return None
            return f"inventory returned {type(snapshot).__name__}, not a snapshot"
        if isinstance(error, HvtuiError):
            message = str(error)
            log.warning("inventory of %s failed: %s", host.name, message)
            return message
        log.error("inventory of %s failed", host.name, exc_info=error)
        return f"unexpected error: {type(error).__name__}: {error}"

    def _answered(self, host: Host, snapshot: HostSnapshot, duration: float) -> HostInventory:
        vms = tuple(vm if vm.host == host.name else dataclasses.replace(vm, host=host.name) for vm in snapshot.vms)
        return HostInventory(
            name=host.name,
            kind=host.kind,
            group=host.group,
            read_only=host.read_only,
            facts=snapshot.facts,
            vms=vms,
            refreshed_at=self._clock.now(),
            duration=duration,
        )

    @staticmethod
    def _failed(
        host: Host, error: str, duration: float, previous: HostInventory | None, waiting: bool = False
    ) -> HostInventory:
        if previous is not None and previous.facts is not None:
            # The last good data stays visible, marked stale.
            return dataclasses.replace(
                previous,
                group=host.group,
                read_only=host.read_only,
                error=error,
                stale=True,
                waiting=waiting,
                duration=duration,
            )
        return HostInventory(
            name=host.name,
            kind=host.kind,
            group=host.group,
            read_only=host.read_only,
            error=error,
            waiting=waiting,
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
