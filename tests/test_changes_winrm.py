"""Change windows on a WinRM host: real pywinrm against the loopback server, through the core.
A VM whose checkpoint the host refuses is reported and the others go on; roll back and discard
reach the host; every step is audited with the window's name.  Promote through ``hvtui change
promote`` against the loopback server answering the backup operations from a lab host inside a
real Samba share (the SMB3 data path): each VM backed up first, its window checkpoint merged only
after its backup succeeded, and a VM whose backup failed keeps its checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_support import add_vm
from test_winrm_backup_service import Estate, estate, make_winrm_core
from test_winrm_checkpoints import HOST, winrm_core
from wsman_server import MemoryBackend, WSManServer, failure_answer, server

from hvtui.changes import VMState
from hvtui.cli import build_parser
from hvtui.hosts.lab.disk import read_logical
from hvtui.paths import Paths

__all__ = ["estate", "server"]  # the loopback server fixtures, shared from wsman_server and the backup tests

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


def test_promote_over_winrm_backs_up_first_and_a_failed_backup_keeps_its_checkpoint(
    estate: Estate, paths: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = estate.lab
    ids = {name: add_vm(lab, name, blocks=3, seed=n) for n, name in enumerate(("web01", "web02", "web03"))}
    estate.server.faults.respond = lambda op, args: (
        failure_answer("the guest cannot make a VSS snapshot", "HvtuiCimJobFailed")
        if op == "backup.begin" and args.get("vm_id") == ids["web03"]
        else None
    )
    core = make_winrm_core(estate.root, paths)
    core.backups.progress_interval = 0

    def change(*argv: str) -> int:
        args = build_parser().parse_args(["change", *argv])
        return args.handler(args, core)

    try:
        assert change("open", NAME, "--vm", "web01", "--vm", "web02", "--vm", "web03") == 0
        for n, name in enumerate(("web01", "web02")):  # the change, after the window's checkpoint
            lab.write_guest_data(ids[name], 0, 0, bytes([0x40 + n]) * 4096)
        changed = {name: read_logical(Path(lab.vm(ids[name]).disks[0].path)) for name in ("web01", "web02")}
        capsys.readouterr()

        assert change("promote", NAME, "--yes") == 1
        out = capsys.readouterr().out
        points = {p.summary.vm_name: p.summary for p in core.backups.point_listing().points}
        window = core.changes.window(NAME)
        for name in ("web01", "web02"):  # each point holds the changed disk: the top of its chain restored
            out_dir = estate.root / f"restored-{name}"
            core.backups.restore(points[name].id, to_dir=out_dir)
            (top,) = [p for p in out_dir.iterdir() if p.suffix == ".avhdx"]
            assert read_logical(top) == changed[name]
        audit = [(e["action"], e["vm"], e["result"]) for e in core.audit.read()]
    finally:
        core.close()
    assert "FAILED   hv-test/web03: backup failed, checkpoint kept:" in out
    assert "the guest cannot make a VSS snapshot" in out
    assert sorted(points) == ["web01", "web02"]
    names = {name: [(cp.name, cp.type) for cp in lab.vm(vm_id).checkpoints] for name, vm_id in ids.items()}
    assert names == {"web01": [], "web02": [], "web03": [(NAME, "Standard")]}
    assert {v.vm_name: v.state for v in window.vms} == {
        "web01": VMState.PROMOTED, "web02": VMState.PROMOTED, "web03": VMState.OPEN,
    }  # fmt: skip
    assert {v.vm_name: v.point_id for v in window.vms if v.point_id} == {n: p.id for n, p in points.items()}
    for name in ("web01", "web02"):  # the change is what was backed up, and it stays on the VM after the merge
        assert read_logical(Path(lab.vm(ids[name]).disks[0].path)) == changed[name]
        steps = [step for step in audit if step[1] == name and step[0] in ("backup", "checkpoint.remove")]
        assert steps == [("backup", name, "ok"), ("checkpoint.remove", name, "ok")]
    assert [step for step in audit if step[1] == "web03" and step[0] in ("backup", "checkpoint.remove")] == [
        ("backup", "web03", "failed")
    ]
    ops = [c.op for c in estate.server.commands]
    assert ops.count("backup.begin") == 3 and ops.count("backup.end") == 2
    assert all(cp.type != "Recovery" for vm_id in ids.values() for cp in lab.vm(vm_id).checkpoints)
