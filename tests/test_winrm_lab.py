"""The same lab estate through the lab backend and through WinRM + the loopback server.

The server answers from a lab host (``LabBackend``), rendered with ``hvtui.wire``: both
paths must yield equal inventories, also when the host speaks Windows PowerShell 5.1's
accidental shapes, and checkpoint operations over WinRM must change the lab exactly as the
lab backend does.  A refresh of several hosts, one of them hanging, comes back within that
host's deadline and reports it.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from wsman_server import PASSWORD_ENV, BlackholeServer, LabBackend, MemoryBackend, WSManServer, make_winrm_host

from hvtui.clock import FixedClock
from hvtui.config import Config, HostConfig, SecretSource, WinRMSettings
from hvtui.core import Core
from hvtui.errors import HostError, NotFoundError
from hvtui.hosts.base import HostSnapshot
from hvtui.hosts.lab.estate import init_lab, lab_host_names
from hvtui.hosts.lab.host import LabHost
from hvtui.model import VM


@pytest.fixture(scope="module")
def demo_lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FixedClock]:
    clock = FixedClock()
    lab_dir = tmp_path_factory.mktemp("winrm-lab") / "lab"
    init_lab(lab_dir, "demo", clock, size=0.01)  # every problem of the demo, with little data
    return lab_dir, clock


@pytest.fixture
def lab_copy(demo_lab: tuple[Path, FixedClock], tmp_path: Path) -> tuple[Path, FixedClock]:
    """A private copy for tests that change the estate."""
    lab_dir, clock = demo_lab
    copy = tmp_path / "lab"
    shutil.copytree(lab_dir, copy)
    return copy, FixedClock(clock.now())


def assert_same_snapshot(expected: HostSnapshot, actual: HostSnapshot) -> None:
    """Field by field, so a difference names the VM and the field."""
    assert actual.facts == expected.facts
    assert [vm.id for vm in actual.vms] == [vm.id for vm in expected.vms]
    for want, got in zip(expected.vms, actual.vms, strict=True):
        for field in dataclasses.fields(VM):
            assert getattr(got, field.name) == getattr(want, field.name), f"{want.name}: {field.name}"
    assert actual == expected


@pytest.fixture
def lab_server(
    demo_lab: tuple[Path, FixedClock], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[WSManServer, LabHost]]:
    lab_dir, clock = demo_lab
    name = "lab-hv01"
    lab = LabHost.open(lab_dir / name, name, clock)
    server = WSManServer(LabBackend(LabHost.open(lab_dir / name, name, clock))).start()
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    yield server, lab
    server.stop()


def test_the_demo_lab_has_what_is_worth_comparing(demo_lab: tuple[Path, FixedClock]) -> None:
    lab_dir, clock = demo_lab
    vms = [vm for name in lab_host_names(lab_dir) for vm in LabHost.open(lab_dir / name, name, clock).inventory(30).vms]
    assert any(cp.type == "Recovery" for vm in vms for cp in vm.checkpoints)
    assert any(vm.chain_depth >= 3 for vm in vms)
    assert any(vm.stray_disk_files for vm in vms)
    assert {vm.state for vm in vms} >= {"Running", "Off", "Saved", "Paused"}


@pytest.mark.parametrize("ps51", [False, True], ids=["contract", "ps51-shapes"])
def test_every_lab_host_reads_the_same_through_both_backends(
    demo_lab: tuple[Path, FixedClock], monkeypatch: pytest.MonkeyPatch, ps51: bool
) -> None:
    lab_dir, clock = demo_lab
    for name in lab_host_names(lab_dir):
        lab = LabHost.open(lab_dir / name, name, clock)
        expected = lab.inventory(30)
        with WSManServer(LabBackend(LabHost.open(lab_dir / name, name, clock))) as server:
            server.faults.ps51 = ps51
            monkeypatch.setenv(PASSWORD_ENV, server.password)
            host = make_winrm_host(server.port, name)
            actual = host.inventory(5.0)
            host.close()
            assert server.ops() == ["inventory"]  # one refresh, one command
        assert_same_snapshot(expected, actual)


def test_the_ps51_rendering_really_differs_from_the_contract(lab_server: tuple[WSManServer, LabHost]) -> None:
    # Guards the test above: the quirk path must actually carry integers, /Date()/ and wrappers.
    server, _lab = lab_server
    server.faults.ps51 = True
    make_winrm_host(server.port).inventory(5.0)
    text = server.commands[0].answer.stdout.decode()  # type: ignore[union-attr]
    assert '"state":2' in text and "/Date(" in text and '"Count":' in text and '"DisplayHint":2' in text


def test_checkpoint_operations_over_winrm_change_the_lab(lab_copy: tuple[Path, FixedClock], monkeypatch) -> None:
    lab_dir, clock = lab_copy
    name = "lab-hv01"
    lab = LabHost.open(lab_dir / name, name, clock)
    with WSManServer(LabBackend(LabHost.open(lab_dir / name, name, clock))) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        host = make_winrm_host(server.port, name)
        web = next(vm for vm in lab.inventory(30).vms if vm.name == "web01")
        first = host.create_checkpoint(web.id, "before ‘patch’ $(x)", "Standard")
        second = host.create_checkpoint(web.id, None, "Production")
        clock.advance(60)
        host.rename_checkpoint(web.id, first.id, "renamed over WinRM")
        host.apply_checkpoint(web.id, first.id)

        after_apply = lab.vm(web.id)
        assert after_apply.checkpoint(first.id).name == "renamed over WinRM"  # type: ignore[union-attr]
        assert after_apply.parent_checkpoint_id == first.id
        assert after_apply.checkpoint(second.id) is not None
        assert_same_snapshot(lab.inventory(30), host.inventory(5.0))

        host.remove_checkpoint(web.id, first.id, subtree=True)
        remaining = lab.vm(web.id)
        assert remaining.checkpoint(first.id) is None and remaining.checkpoint(second.id) is None
        assert_same_snapshot(lab.inventory(30), host.inventory(5.0))

        with pytest.raises(NotFoundError, match=r"^lab-hv01: rename checkpoint: checkpoint not found"):
            host.rename_checkpoint(web.id, first.id, "gone")
        with pytest.raises(NotFoundError, match=r"^lab-hv01: apply checkpoint: VM not found"):
            host.apply_checkpoint("00000000-0000-0000-0000-000000000000", first.id)
        host.close()


def test_a_lab_refusal_comes_back_as_a_failure(lab_copy: tuple[Path, FixedClock], monkeypatch) -> None:
    lab_dir, clock = lab_copy
    lab = LabHost.open(lab_dir / "lab-hv01", "lab-hv01", clock)
    with WSManServer(LabBackend(lab)) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        web = next(vm for vm in lab.inventory(30).vms if vm.name == "web01")
        with pytest.raises(HostError, match="a checkpoint name must be 1 to 100 characters") as info:
            make_winrm_host(server.port, "lab-hv01").create_checkpoint(web.id, "x" * 101, "Standard")
        assert info.value.kind == "failed"


# -- several hosts at once -------------------------------------------------------------------------------
def test_concurrent_refresh_with_one_hanging_host_finishes_within_its_deadline(
    demo_lab: tuple[Path, FixedClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_dir, clock = demo_lab
    deadline = 1.5
    monkeypatch.setenv(PASSWORD_ENV, "s3cret!")
    servers = [
        WSManServer(LabBackend(LabHost.open(lab_dir / name, name, clock))).start() for name in ("lab-hv01", "lab-hv02")
    ]
    try:
        with BlackholeServer() as hole:
            hosts = [
                make_winrm_host(srv.port, name) for srv, name in zip(servers, ("lab-hv01", "lab-hv02"), strict=True)
            ]
            hosts.append(make_winrm_host(hole.port, "hv-hanging", timeout=deadline))

            def read(host):
                started = time.monotonic()
                try:
                    return host.name, host.inventory(deadline), time.monotonic() - started
                except HostError as err:
                    return host.name, err, time.monotonic() - started

            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=3) as pool:
                results = {name: (result, took) for name, result, took in pool.map(read, hosts)}
            total = time.monotonic() - started
    finally:
        for srv in servers:
            srv.stop()
    assert isinstance(results["lab-hv01"][0], HostSnapshot) and len(results["lab-hv01"][0].vms) == 5
    assert isinstance(results["lab-hv02"][0], HostSnapshot) and len(results["lab-hv02"][0].vms) == 6
    error = results["hv-hanging"][0]
    assert isinstance(error, HostError) and error.kind == "timeout"
    assert str(error).startswith("hv-hanging: inventory: no answer before our deadline (1.5s")
    # The healthy hosts did not wait for the hanging one, and the whole refresh ended at its deadline.
    assert results["lab-hv01"][1] < results["hv-hanging"][1]
    assert results["hv-hanging"][1] >= deadline * 0.9
    assert total < deadline + 2.0
    assert [srv.ops() for srv in servers] == [["inventory"], ["inventory"]]


def test_the_inventory_service_reads_lab_and_winrm_hosts_together(
    demo_lab: tuple[Path, FixedClock], tmp_path: Path, paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's own service: a lab host, a WinRM host, and a WinRM host that never answers."""
    lab_dir, clock = demo_lab
    monkeypatch.setenv(PASSWORD_ENV, "s3cret!")
    estate = MemoryBackend(host_name="HV-REAL")
    estate.add_vm("app-real")

    def winrm_config(name: str, port: int, timeout: float) -> HostConfig:
        settings = WinRMSettings(
            address="127.0.0.1", port=port, scheme="http", transport="basic", username="hvtui",
            password=SecretSource(env=PASSWORD_ENV), timeout=timeout, operation_timeout=1.0,
        )  # fmt: skip
        return HostConfig(name=name, kind="winrm", winrm=settings)

    with WSManServer(estate) as server, BlackholeServer() as hole:
        configs = (
            HostConfig(name="lab-hv03", kind="lab"),
            winrm_config("hv-real", server.port, 5.0),
            winrm_config("hv-gone", hole.port, 1.5),
        )
        hosts = {
            "lab-hv03": LabHost.open(lab_dir / "lab-hv03", "lab-hv03", clock),
            "hv-real": make_winrm_host(server.port, "hv-real"),
            "hv-gone": make_winrm_host(hole.port, "hv-gone", timeout=1.5),
        }
        core = Core(Config(source=None, hosts=configs), paths, clock=clock, hosts=hosts)
        started = time.monotonic()
        inventory = core.inventory.refresh()
        took = time.monotonic() - started
        assert server.ops() == ["inventory"]
    assert [h.name for h in inventory.hosts] == ["lab-hv03", "hv-real", "hv-gone"]
    lab_inv, real_inv, gone_inv = inventory.hosts
    assert lab_inv.reachable and lab_inv.kind == "lab" and len(lab_inv.vms) == 3
    assert real_inv.reachable and real_inv.kind == "winrm" and [vm.name for vm in real_inv.vms] == ["app-real"]
    assert real_inv.vms[0].host == "hv-real"
    assert not gone_inv.reachable and gone_inv.kind == "winrm"
    assert "hv-gone: inventory: no answer before our deadline" in (gone_inv.error or "")
    assert took < 1.5 + 2.0
