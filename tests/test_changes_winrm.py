"""Change windows on a WinRM host: real pywinrm against the loopback server, through the core.
A VM whose checkpoint the host refuses is reported and the others go on; roll back and discard
reach the host; every step is audited with the window's name.  (Promote needs a backup over
WinRM, which the loopback server does not serve: it is tested on the lab.)"""

from __future__ import annotations

import pytest
from test_winrm_checkpoints import HOST, winrm_core
from wsman_server import MemoryBackend, WSManServer, failure_answer, server

from hvtui.changes import VMState
from hvtui.paths import Paths

__all__ = ["server"]  # the loopback server fixture, shared from wsman_server

NAME = "pre-patch-KB5031364"
BUSY = "The operation cannot be performed while the object is in its current state."


@pytest.fixture
def backend() -> MemoryBackend:
    estate = MemoryBackend(host_name="HV-REAL")
    for name in ("web01", "web02", "web03"):
        estate.add_vm(name)
    return estate


def vm_record(backend: MemoryBackend, name: str) -> dict:
    return next(vm for vm in backend.vms.values() if vm["name"] == name)


def test_a_window_over_winrm_with_a_busy_vm(server: WSManServer, backend: MemoryBackend, paths: Paths) -> None:
    busy = vm_record(backend, "web03")["id"]
    server.faults.respond = lambda op, args: (
        failure_answer(BUSY, "InvalidState,Microsoft.HyperV.PowerShell.Commands.CheckpointVM")
        if op == "checkpoint.create" and args.get("vm_id") == busy
        else None
    )
    core = winrm_core(server, paths)
    try:
        vms = [core.inventory.find_vm(name, HOST) for name in ("web01", "web02", "web03")]
        report = core.changes.open(NAME, vms, ticket="CHG-9")
        by_vm = {o.vm_name: o for o in report.outcomes}
        assert by_vm["web01"].ok and by_vm["web02"].ok
        assert not by_vm["web03"].ok and BUSY in by_vm["web03"].message
        assert [cp["name"] for cp in vm_record(backend, "web01")["checkpoints"]] == [NAME]
        assert vm_record(backend, "web03")["checkpoints"] == []

        rolled = core.changes.rollback(NAME, ["web01"])
        assert [o.ok for o in rolled.outcomes] == [True]
        web01 = vm_record(backend, "web01")
        assert web01["parent_checkpoint_id"] == web01["checkpoints"][0]["id"] and web01["state"] == "Off"

        discarded = core.changes.discard(NAME)
        assert [o.ok for o in discarded.outcomes] == [True, True], discarded.outcomes
        assert vm_record(backend, "web01")["checkpoints"] == [] and vm_record(backend, "web02")["checkpoints"] == []
        window = core.changes.window(NAME)
        assert not window.is_open
        assert {v.vm_name: v.state for v in window.vms} == {
            "web01": VMState.DISCARDED, "web02": VMState.DISCARDED, "web03": VMState.FAILED,
        }  # fmt: skip
        steps = [(e["action"], e["vm"], e["result"]) for e in core.audit.read() if e["args"].get("window") == NAME]
        assert steps == [
            ("checkpoint.create", "web01", "ok"),
            ("checkpoint.create", "web02", "ok"),
            ("checkpoint.create", "web03", "failed"),
            ("checkpoint.apply", "web01", "ok"),
            ("checkpoint.remove", "web01", "ok"),
            ("checkpoint.remove", "web02", "ok"),
        ]
    finally:
        core.host(HOST).close()


def test_rollback_with_start_over_winrm_rolls_back_and_says_the_start_is_not_possible(
    server: WSManServer, backend: MemoryBackend, paths: Paths
) -> None:
    core = winrm_core(server, paths)
    try:
        vms = [core.inventory.find_vm(name, HOST) for name in ("web01", "web02")]
        core.changes.open(NAME, vms)
        report = core.changes.rollback(NAME, start=True)
    finally:
        core.host(HOST).close()
    assert [(o.vm_name, o.ok, o.refused) for o in report.outcomes] == [("web01", False, False), ("web02", False, False)]
    for outcome in report.outcomes:
        assert outcome.message.startswith("rolled back, but not started: ")
        assert "wire contract v1 has no operation to start a VM" in outcome.message
        assert "start it in Hyper-V Manager" in outcome.message
    assert report.exit_code == 1
    for name in ("web01", "web02"):  # rolled back on the host all the same
        vm = vm_record(backend, name)
        assert vm["parent_checkpoint_id"] == vm["checkpoints"][0]["id"] and vm["state"] == "Off"
    assert {v.vm_name: v.state for v in report.window.vms} == {"web01": VMState.ROLLED_BACK, "web02": VMState.ROLLED_BACK}
    assert all("Hyper-V Manager" in (v.error or "") for v in report.window.vms)
    starts = [(e["action"], e["vm"], e["result"]) for e in core.audit.read() if e["action"] == "vm.start"]
    assert starts == [("vm.start", "web01", "failed"), ("vm.start", "web02", "failed")]
