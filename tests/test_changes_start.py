"""Rolling a change window back and starting each VM afterwards (`hvtui change rollback NAME
--start`, the console's "start each VM afterwards"): on the lab each VM is rolled back, then
running; the start is audited with the window's name; a VM whose host refuses the start stays
rolled back and is reported as not started, saying why. (Over WinRM: tests/test_changes_winrm.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from changes_support import HOST_A, build_estate, config_text, disk_digest, lab, make_core, write_guest

from hvtui.audit import AuditLog
from hvtui.changes import VMState
from hvtui.cli import main
from hvtui.clock import FixedClock
from hvtui.errors import HostError, ReadOnlyError
from hvtui.hosts.lab.host import LabHost
from hvtui.paths import Paths

NAME = "pre-patch-KB5031364"


def hvtui(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvtui", "--config", str(config), "change", *argv],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_rollback_with_start_leaves_each_vm_rolled_back_and_running(tmp_path: Path, paths: Paths) -> None:
    vms = build_estate(tmp_path)
    before = {name: disk_digest(tmp_path, *vms[name]) for name in ("web1", "web2", "app1")}
    core = make_core(tmp_path, paths)
    try:
        core.changes.open(NAME, [core.inventory.find_vm(n) for n in ("web1", "web2", "app1")], ticket="CHG-7")
        for seed, name in enumerate(("web1", "web2", "app1")):
            write_guest(tmp_path, *vms[name], seed=50 + seed)
        plan = core.changes.plan(NAME, "rollback", ["web1", "app1"], start=True)
        assert "then START each VM" in plan.text
        report = core.changes.rollback(NAME, ["web1", "app1"], start=True)
        plain = core.changes.rollback(NAME, ["web2"])
    finally:
        core.close()
    assert [(o.vm_name, o.ok, o.message) for o in report.outcomes] == [
        ("web1", True, "rolled back and started"), ("app1", True, "rolled back and started"),
    ]  # fmt: skip
    for name in ("web1", "app1"):
        host, vm_id = vms[name]
        assert lab(tmp_path, host).vm(vm_id).state == "Running"
        assert disk_digest(tmp_path, host, vm_id) == before[name]
    assert [o.message for o in plain.outcomes] == ["rolled back"]
    assert lab(tmp_path, *vms["web2"][:1]).vm(vms["web2"][1]).state == "Off"  # not asked to start
    starts = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "vm.start"]
    assert [(e["vm"], e["result"], e["args"]["window"], e["args"]["ticket"]) for e in starts] == [
        ("web1", "ok", NAME, "CHG-7"), ("app1", "ok", NAME, "CHG-7"),
    ]  # fmt: skip
    assert {v.vm_name: v.state for v in plain.window.vms} == dict.fromkeys(("web1", "web2", "app1"), VMState.ROLLED_BACK)


def test_a_vm_that_cannot_start_stays_rolled_back_and_says_why(
    tmp_path: Path, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    vms = build_estate(tmp_path)
    original = LabHost.start_vm

    def start_or_fail(self: LabHost, vm_id: str) -> None:  # lab-a's host cannot start its VMs today
        if self.name == HOST_A:
            raise HostError(self.name, "start VM", "not enough memory to start it")
        original(self, vm_id)

    monkeypatch.setattr(LabHost, "start_vm", start_or_fail)
    core = make_core(tmp_path, paths)
    try:
        core.changes.open(NAME, [core.inventory.find_vm(n) for n in ("web1", "app1")])
        report = core.changes.rollback(NAME, start=True)
    finally:
        core.close()
    by_vm = {o.vm_name: o for o in report.outcomes}
    assert by_vm["app1"].ok and lab(tmp_path, *vms["app1"][:1]).vm(vms["app1"][1]).state == "Running"
    assert not by_vm["web1"].ok and not by_vm["web1"].refused
    assert by_vm["web1"].message == "rolled back, but not started: lab-a: start VM: not enough memory to start it"
    assert report.exit_code == 1
    web1 = report.window.vm(*vms["web1"])
    assert web1 is not None and web1.state is VMState.ROLLED_BACK and "not started" in (web1.error or "")


def test_the_cli_rolls_back_and_starts_with_start(tmp_path: Path, paths: Paths) -> None:
    vms = build_estate(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(config_text(tmp_path))
    assert main(["--config", str(config), "change", "open", NAME, "--vm", "web1", "--vm", "app1"]) == 0
    declined = subprocess.run(
        [sys.executable, "-m", "hvtui", "--config", str(config), "change", "rollback", NAME, "--start"],
        capture_output=True, text=True, timeout=120, check=False, input="n\n",
    )  # fmt: skip
    assert "then START each VM" in declined.stdout + declined.stderr
    assert all(lab(tmp_path, host).vm(vm_id).state == "Off" for host, vm_id in vms.values())
    done = hvtui(config, "rollback", NAME, "--vm", "web1", "--start", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [(o["vm"], o["ok"], o["message"]) for o in doc["outcomes"]] == [("web1", True, "rolled back and started")]
    assert lab(tmp_path, *vms["web1"][:1]).vm(vms["web1"][1]).state == "Running"
    assert lab(tmp_path, *vms["app1"][:1]).vm(vms["app1"][1]).state == "Off"
    text = hvtui(config, "rollback", NAME, "--vm", "app1", "--start", "--yes")
    assert text.returncode == 0, text.stderr
    assert "ok       lab-b/app1: rolled back and started" in text.stdout


def test_a_read_only_lab_host_refuses_to_start(tmp_path: Path) -> None:
    host, vm_id = build_estate(tmp_path)["web1"]
    read_only = LabHost.open(tmp_path / host, host, FixedClock(), read_only=True)
    with pytest.raises(ReadOnlyError, match="read-only"):
        read_only.start_vm(vm_id)
    assert lab(tmp_path, host).vm(vm_id).state == "Off"
