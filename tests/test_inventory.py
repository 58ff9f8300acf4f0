"""The inventory service: concurrent hosts, deadlines, failures, stale data, one refresh at
a time, and VM lookup.  Hosts are ``StubHost`` test doubles (real ``Host`` subclasses)."""

from __future__ import annotations

import threading

import pytest
from sprawl_support import StubHost, host_error, inventory_service, linear_vm, make_core, release, wait_until

from hvtui.errors import ConfigError, HvtuiError
from hvtui.inventory import InventoryService
from hvtui.paths import Paths

__all__ = ["release"]  # fixture used below, shared from sprawl_support

SHORT = 0.2  # deadline for hosts that hang; no assertion depends on timing


def three_hosts() -> tuple[StubHost, StubHost, StubHost]:
    ok = StubHost("hv01", [linear_vm("web01", host="hv01"), linear_vm("db01", host="hv01")])
    failing = StubHost("hv02", [linear_vm("app01", host="hv02")])
    hung = StubHost("hv03", [linear_vm("file01", host="hv03")])
    return ok, failing, hung


def test_one_failing_and_one_hanging_host_do_not_block_the_others(paths: Paths, release: threading.Event) -> None:
    ok, failing, hung = three_hosts()
    failing.fail_with = host_error("hv02", "connection refused")
    hung.hang = release
    service = inventory_service(make_core([ok, failing, hung], paths), default_deadline=SHORT)

    inventory = service.refresh()

    assert [h.name for h in inventory.hosts] == ["hv01", "hv02", "hv03"]
    good = inventory.host("hv01")
    assert good.error is None and sorted(vm.name for vm in good.vms) == ["db01", "web01"]
    assert good.facts is not None and good.refreshed_at is not None
    assert "connection refused" in inventory.host("hv02").error
    assert inventory.host("hv02").vms == ()
    assert "timeout" in inventory.host("hv03").error
    assert not inventory.host("hv03").reachable
    assert service.latest is inventory


def test_failed_host_keeps_its_last_good_data_marked_stale(paths: Paths) -> None:
    host = StubHost("hv01", [linear_vm("web01")])
    core = make_core([host], paths)
    service = inventory_service(core, default_deadline=SHORT)
    first = service.refresh().host("hv01")
    assert not first.stale and first.error is None

    core.clock.advance(60)
    host.fail_with = host_error("hv01", "WinRM read timed out", kind="timeout")
    second = service.refresh().host("hv01")
    assert second.stale and "WinRM read timed out" in second.error
    assert [vm.name for vm in second.vms] == ["web01"]
    assert second.facts == first.facts
    assert second.refreshed_at == first.refreshed_at  # the time of the data, not of the failed try

    host.fail_with = None
    third = service.refresh().host("hv01")
    assert not third.stale and third.error is None and third.refreshed_at > first.refreshed_at


def test_a_hung_call_is_reused_not_stacked(paths: Paths, release: threading.Event) -> None:
    hung = StubHost("hv03", [linear_vm("file01", host="hv03")])
    hung.hang = release
    service = inventory_service(make_core([hung], paths), default_deadline=SHORT)
    assert service.refresh().host("hv03").error
    assert service.refresh().host("hv03").error
    assert hung.inventory_calls == 1  # the second refresh waited on the same stuck call

    release.set()
    wait_until(lambda: not service._in_flight)
    recovered = service.refresh().host("hv03")
    assert recovered.error is None and [vm.name for vm in recovered.vms] == ["file01"]


def test_unexpected_exception_is_reported_not_raised(paths: Paths) -> None:
    host = StubHost("hv01")
    host.fail_with = RuntimeError("boom")
    entry = inventory_service(make_core([host], paths)).refresh().host("hv01")
    assert entry.error == "unexpected error: RuntimeError: boom"


def test_concurrent_refreshes_share_one_run(paths: Paths, release: threading.Event) -> None:
    host = StubHost("hv01", [linear_vm("web01")])
    host.hang = release
    service = inventory_service(make_core([host], paths), default_deadline=30)
    results: dict[str, object] = {}

    first = threading.Thread(target=lambda: results.setdefault("first", service.refresh()))
    first.start()
    wait_until(host.entered.is_set)
    second = threading.Thread(target=lambda: results.setdefault("second", service.refresh()))
    second.start()
    wait_until(lambda: service.waiting_callers == 1)
    assert service.is_refreshing
    release.set()
    first.join()
    second.join()

    assert results["first"] is results["second"]
    assert host.inventory_calls == 1
    assert not service.is_refreshing


def test_refresh_of_some_hosts_keeps_the_others(paths: Paths) -> None:
    one = StubHost("hv01", [linear_vm("web01", host="hv01")])
    two = StubHost("hv02", [linear_vm("app01", host="hv02")])
    service = inventory_service(make_core([one, two], paths))
    service.refresh()
    two.fail_with = host_error("hv02")
    inventory = service.refresh(["hv01"])
    assert [h.name for h in inventory.hosts] == ["hv01", "hv02"]
    assert inventory.host("hv02").error is None  # not asked this time
    assert two.inventory_calls == 1
    with pytest.raises(ConfigError, match="unknown host 'hv07'"):
        service.refresh(["hv07"])


def test_vms_carry_the_configured_host_name(paths: Paths) -> None:
    host = StubHost("lab-a", [linear_vm("web01", host="LABHOST")])
    inventory = inventory_service(make_core([host], paths)).refresh()
    assert [vm.host for vm in inventory.vms] == ["lab-a"]


def test_core_builds_one_inventory_service_for_all_threads(paths: Paths) -> None:
    core = make_core([StubHost("hv01")], paths)
    seen: list[InventoryService] = []
    threads = [threading.Thread(target=lambda: seen.append(core.inventory)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(s) for s in seen}) == 1


# -- find_vm -----------------------------------------------------------------------------------
@pytest.fixture
def estate(paths: Paths) -> InventoryService:
    hv01 = StubHost("hv01", [linear_vm("web01", host="hv01"), linear_vm("shared", host="hv01")])
    hv02 = StubHost("hv02", [linear_vm("db01", host="hv02"), linear_vm("shared", host="hv02")])
    down = StubHost("hv03")
    down.fail_with = host_error("hv03")
    return inventory_service(make_core([hv01, hv02, down], paths), default_deadline=SHORT)


def test_find_vm_by_name_and_id(estate: InventoryService) -> None:
    web = estate.find_vm("web01")  # reads the hosts on first use
    assert web.host == "hv01"
    assert estate.find_vm(web.id) == web
    assert estate.find_vm(web.id.upper()) == web
    assert estate.find_vm("WEB01") == web
    assert estate.find_vm("shared", host="hv02").host == "hv02"


def test_find_vm_ambiguous_name_lists_hosts(estate: InventoryService) -> None:
    with pytest.raises(HvtuiError) as err:
        estate.find_vm("shared")
    text = str(err.value)
    assert "ambiguous" in text and "hv01/shared" in text and "hv02/shared" in text and "--host" in text


def test_find_vm_unknown_gives_close_matches_and_unread_hosts(estate: InventoryService) -> None:
    with pytest.raises(HvtuiError) as err:
        estate.find_vm("web1")
    assert "did you mean: web01" in str(err.value)
    assert "hv03" in str(err.value)
    with pytest.raises(HvtuiError, match="cannot be read"):
        estate.find_vm("anything", host="hv03")
    with pytest.raises(ConfigError):
        estate.find_vm("web01", host="nope")
