"""The inventory service with a hung host: each host's answer is published as it arrives
(to ``latest`` and to the ``on_update`` listener), the hung host shows as waiting and then
as timed out, and a refresh of one host runs beside a full refresh that waits on the hung
one.  Hosts are ``StubHost`` test doubles; a hung host waits on an Event that the test sets
at the end, and its deadline is long (60 s): every assertion holds while it still hangs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
from sprawl_support import StubHost, inventory_service, linear_vm, make_core, release, wait_until

from hvtui.config import Config, HostConfig, WinRMSettings
from hvtui.core import Core
from hvtui.hosts.base import HostSnapshot
from hvtui.inventory import InventoryService
from hvtui.model import Inventory
from hvtui.paths import Paths

__all__ = ["release"]  # fixture used below, shared from sprawl_support

LONG = 60.0  # the hung host's deadline: never reached while a test runs


class Updates:
    """An ``on_update`` listener that keeps every inventory it is handed."""

    def __init__(self) -> None:
        self.seen: list[Inventory] = []
        self.threads: set[int] = set()

    def __call__(self, inventory: Inventory) -> None:
        self.threads.add(threading.get_ident())
        self.seen.append(inventory)

    def any(self, predicate: Callable[[Inventory], bool]) -> bool:
        return any(predicate(inventory) for inventory in list(self.seen))


class Background:
    """A refresh running in its own thread (as the console's poll worker runs it)."""

    def __init__(self, call: Callable[[], Inventory]) -> None:
        self.result: Inventory | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Inventory]) -> None:
        self.result = call()

    def join(self) -> Inventory:
        self.thread.join()
        assert self.result is not None
        return self.result


def lab_and_hung(paths: Paths, release: threading.Event) -> tuple[InventoryService, StubHost, StubHost]:
    ok = StubHost("hv01", [linear_vm("web01", host="hv01"), linear_vm("db01", host="hv01")])
    hung = StubHost("hv-hang", [linear_vm("file01", host="hv-hang")])
    hung.hang = release
    service = inventory_service(make_core([ok, hung], paths), default_deadline=LONG)
    return service, ok, hung


def test_answers_are_published_while_a_hung_host_is_awaited(paths: Paths, release: threading.Event) -> None:
    service, _ok, hung = lab_and_hung(paths, release)
    updates = Updates()
    full = Background(lambda: service.refresh(on_update=updates))

    def lab_shown_hung_waiting(inventory: Inventory) -> bool:
        lab, waiting = inventory.host("hv01"), inventory.host("hv-hang")
        return (
            lab is not None
            and sorted(vm.name for vm in lab.vms) == ["db01", "web01"]
            and waiting is not None
            and "waiting for an answer" in (waiting.error or "")
        )

    wait_until(lambda: updates.any(lab_shown_hung_waiting))
    assert full.thread.is_alive()  # still waiting on the hung host: the data came first
    assert updates.threads == {full.thread.ident}  # handed over in the refreshing thread
    first = updates.seen[-1]
    assert [h.name for h in first.hosts] == ["hv01", "hv-hang"]  # every host, configured order
    waiting = first.host("hv-hang")
    assert waiting.facts is None and waiting.vms == () and not waiting.stale  # no data yet
    assert waiting.waiting and not first.host("hv01").waiting
    assert f"gives up after {LONG:g} s" in waiting.error
    assert lab_shown_hung_waiting(service.latest)  # merged into ``latest`` too
    assert hung.inventory_calls == 1

    release.set()
    result = full.join()
    assert result.host("hv-hang").error is None
    assert [vm.name for vm in result.host("hv-hang").vms] == ["file01"]
    assert service.latest is result


def test_hung_host_keeps_its_data_marked_stale_while_awaited(paths: Paths, release: threading.Event) -> None:
    service, ok, hung = lab_and_hung(paths, release)
    hung.hang = None
    service.refresh()  # every host answered once
    before = service.latest.host("hv-hang")
    assert before.error is None and not before.stale

    hung.hang = release
    new = linear_vm("new01", host="hv01")
    ok.vms = {new.id: new}
    service.waiting_after = 0.0  # flag it at once (by default: after WAITING_AFTER seconds)
    updates = Updates()
    full = Background(lambda: service.refresh(on_update=updates, update_interval=0.0))

    def stale_while_waiting(inventory: Inventory) -> bool:
        entry = inventory.host("hv-hang")
        return entry is not None and entry.stale and "waiting for an answer" in (entry.error or "")

    wait_until(lambda: updates.any(stale_while_waiting) and updates.any(lambda i: bool(i.host("hv01").vms)))
    assert full.thread.is_alive()
    shown = service.latest
    assert [vm.name for vm in shown.host("hv01").vms] == ["new01"]  # the lab host's new answer
    waiting = shown.host("hv-hang")
    assert stale_while_waiting(shown)
    assert [vm.name for vm in waiting.vms] == ["file01"]  # the last good data stays
    assert waiting.facts == before.facts and waiting.refreshed_at == before.refreshed_at

    release.set()
    assert full.join().host("hv-hang").error is None


def test_the_first_host_past_its_deadline_shows_timed_out_while_another_is_awaited(
    paths: Paths, release: threading.Event
) -> None:
    def winrm(name: str, timeout: float) -> HostConfig:
        return HostConfig(name=name, kind="winrm", winrm=WinRMSettings(address="192.0.2.1", timeout=timeout))

    quick, slow = StubHost("hv-quick-timeout", kind="winrm"), StubHost("hv-hang", kind="winrm")
    quick.hang = slow.hang = release
    config = Config(source=None, hosts=(winrm(quick.name, 0.2), winrm(slow.name, LONG)))
    service = inventory_service(Core(config, paths, hosts={quick.name: quick, slow.name: slow}))
    updates = Updates()
    full = Background(lambda: service.refresh(on_update=updates, update_interval=0.0))

    def timed_out(inventory: Inventory) -> bool:
        entry = inventory.host(quick.name)
        return entry is not None and entry.error == "no answer within 0.2 s (timeout)"

    wait_until(lambda: updates.any(timed_out))
    assert full.thread.is_alive()  # the other host is still awaited
    last = updates.seen[-1]
    assert "waiting for an answer" in (last.host(slow.name).error or "")
    # Late is told apart from failed: the console counts the one waiting, the other down.
    assert last.host(slow.name).waiting and not last.host(quick.name).waiting
    release.set()
    full.join()


def test_a_refresh_that_ends_within_the_first_interval_hands_over_only_its_result(paths: Paths) -> None:
    one = StubHost("hv01", [linear_vm("web01", host="hv01")])
    two = StubHost("hv02", [linear_vm("app01", host="hv02")])
    service = inventory_service(make_core([one, two], paths))
    updates = Updates()
    result = service.refresh(on_update=updates, update_interval=3600)
    assert updates.seen == []  # nothing partial to show: the whole result came at once
    assert [h.name for h in result.hosts] == ["hv01", "hv02"] and all(h.reachable for h in result.hosts)


def test_a_host_refresh_runs_beside_a_full_refresh_that_waits_on_a_hung_host(
    paths: Paths, release: threading.Event
) -> None:
    service, ok, hung = lab_and_hung(paths, release)
    full = Background(service.refresh)
    # hv01 answered, the hung host is shown as awaited: nothing else will change meanwhile.
    wait_until(lambda: service.latest.host("hv01") is not None and service.latest.host("hv-hang") is not None)

    # A change on hv01 (a checkpoint action), then only hv01 is read again.
    added = linear_vm("made-after", host="hv01")
    ok.vms[added.id] = added
    version = service.latest_with_version()[1]
    inventory = service.refresh(["hv01"])

    assert full.thread.is_alive()  # the full refresh is still waiting on the hung host
    assert "made-after" in [vm.name for vm in inventory.host("hv01").vms]
    assert ok.inventory_calls == 2 and hung.inventory_calls == 1  # nothing stacked on the hung host
    assert service.latest_with_version() == (inventory, version + 1)  # one more host entry merged

    release.set()
    result = full.join()
    # The full refresh returns the merged inventory: hv01's newer read is kept.
    assert "made-after" in [vm.name for vm in result.host("hv01").vms]
    assert result.host("hv-hang").error is None


class ReadsOnEntry(StubHost):
    """Takes its snapshot when the call starts, then waits: an answer that left the host
    before a change arrives after it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.first_call_hangs: threading.Event | None = None
        self.in_flight = 0
        self.most_in_flight = 0

    def inventory(self, timeout: float) -> HostSnapshot:
        with self._lock:
            self.inventory_calls += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            first = self.inventory_calls == 1
            snapshot = HostSnapshot(facts=self.facts, vms=tuple(self.vms.values()))
        self.entered.set()
        if first and self.first_call_hangs is not None:
            self.first_call_hangs.wait()
        with self._lock:
            self.in_flight -= 1
        return snapshot


def test_a_host_refresh_reads_again_after_a_call_started_before_it(
    paths: Paths, release: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hvtui.inventory")
    host = ReadsOnEntry("hv01", [linear_vm("web01", host="hv01")])
    host.first_call_hangs = release
    service = inventory_service(make_core([host], paths), default_deadline=LONG)
    full = Background(service.refresh)
    wait_until(host.entered.is_set)  # the full refresh's call has read the old state and hangs

    added = linear_vm("made-after", host="hv01")
    host.vms[added.id] = added
    scoped = Background(lambda: service.refresh(["hv01"]))
    wait_until(lambda: "the previous call is still running; waiting on it" in caplog.text)
    assert host.inventory_calls == 1  # waits on the call in flight: never a second one beside it
    release.set()

    inventory = scoped.join()
    assert "made-after" in [vm.name for vm in inventory.host("hv01").vms]  # read again after the change
    assert host.inventory_calls == 2 and host.most_in_flight == 1
    full.join()


def test_a_broken_listener_does_not_stop_the_refresh(paths: Paths, release: threading.Event) -> None:
    service, _ok, hung = lab_and_hung(paths, release)
    calls: list[Inventory] = []

    def broken(inventory: Inventory) -> None:
        calls.append(inventory)
        raise RuntimeError("listener bug")

    full = Background(lambda: service.refresh(on_update=broken, update_interval=0.0))
    wait_until(lambda: bool(calls))
    release.set()
    result = full.join()
    assert result.host("hv-hang").error is None and result.host("hv01").error is None


def test_return_after_leaves_the_hung_call_running_and_the_next_refresh_reuses_it(
    paths: Paths, release: threading.Event
) -> None:
    service, ok, hung = lab_and_hung(paths, release)

    first = service.refresh(return_after=0.0)  # the console's poll: it does not wait on hung hosts
    assert "waiting for an answer" in (first.host("hv-hang").error or "")
    assert service.hosts_being_read() >= {"hv-hang"}
    wait_until(lambda: service.latest.host("hv01") is not None and service.latest.host("hv01").error is None)

    second = service.refresh(return_after=0.0)
    assert hung.inventory_calls == 1 and ok.inventory_calls == 2  # the hung call reused, hv01 read again
    assert "waiting for an answer" in (second.host("hv-hang").error or "")

    release.set()  # the hung host answers with no refresh running: the answer still lands
    wait_until(lambda: service.latest.host("hv-hang").error is None)
    assert [vm.name for vm in service.latest.host("hv-hang").vms] == ["file01"]
    assert service.hosts_being_read() == frozenset()


def test_a_call_past_its_deadline_times_out_in_a_later_refresh(paths: Paths, release: threading.Event) -> None:
    service, _ok, hung = lab_and_hung(paths, release)
    service.default_deadline = 0.2
    assert "waiting for an answer" in (service.refresh(return_after=0.0).host("hv-hang").error or "")
    # The deadline runs from the call's start, not from each refresh's: a later refresh
    # that reuses the call reports it timed out once that deadline has passed.
    wait_until(lambda: "timeout" in (service.refresh(return_after=0.0).host("hv-hang").error or ""))
    assert service.latest.host("hv-hang").error == "no answer within 0.2 s (timeout)"
    assert hung.inventory_calls == 1
