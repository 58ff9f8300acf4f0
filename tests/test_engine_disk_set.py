"""Whole-disk reads because the VM changed under the backup: a disk added, removed or replaced
since the previous point ("disk set changed"), or the VM re-imported under a new id with the same
disks ("VM re-imported"). Each reason reaches the backup's result, the job's result (what the
console's job detail and --json show) and the audit log; none passes for an ordinary new file or
a first backup."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_support import SMALL_DISK, add_vm

from hvtui.audit import AuditLog
from hvtui.clock import FixedClock
from hvtui.config import Config, HostConfig, RepositoryConfig
from hvtui.core import Core
from hvtui.engine.backup import run_backup
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.errors import HostError
from hvtui.hosts.lab.host import LabHost
from hvtui.paths import Paths
from hvtui.tui.widgets.job_row import job_detail

MiB = 1 << 20


def lab(tmp_path: Path, disks: int = 1) -> tuple[LabHost, str, Repository]:
    host = LabHost.create(tmp_path / "lab-t1", "lab-t1", FixedClock(), volume_size=1 << 40)
    return host, add_vm(host, blocks=8, disks=disks), Repository.open(tmp_path / "repo", create=True)


def test_an_added_disk_is_read_whole_because_the_disk_set_changed(tmp_path: Path) -> None:
    host, vm_id, repo = lab(tmp_path)
    first = run_backup(repo, host, vm_id, "full")
    assert [d["path"] for d in repo.load_point(first.point_id).vm["drives"]] == ["vm1.vhdx"]
    index = host.add_drive(vm_id, SMALL_DISK)
    host.write_guest_data(vm_id, index, 3 * MiB, b"\x5a" * MiB)
    inc = run_backup(repo, host, vm_id, "incremental")
    assert inc.mode == "incremental"
    assert inc.whole_reads == [f"vm1_disk1.vhdx: disk set changed (a disk added since restore point {first.point_id})"]
    assert inc.disk_set_changed == f"the disk set changed since restore point {first.point_id}: added vm1_disk1.vhdx"
    assert inc.disk_set_changed in inc.warnings
    out = tmp_path / "out"
    restore_to_directory(repo, inc.point_id, out)
    assert (out / "vm1_disk1.vhdx").read_bytes() == host.disk_path(vm_id, index).read_bytes()
    # The next backup sees the same disk set: nothing to say.
    again = run_backup(repo, host, vm_id, "incremental")
    assert again.whole_reads == [] and again.disk_set_changed is None


def test_a_removed_disk_is_named_and_a_replaced_one_is_read_whole(tmp_path: Path) -> None:
    host, vm_id, repo = lab(tmp_path, disks=2)
    first = run_backup(repo, host, vm_id, "full")
    host.remove_drive(vm_id, 1)
    removed = run_backup(repo, host, vm_id, "incremental")
    assert removed.disk_set_changed == f"the disk set changed since restore point {first.point_id}: removed vm1_disk1.vhdx"
    assert removed.whole_reads == []  # nothing is read whole for a disk that is gone
    # Another disk at the same path: its file is read whole, and the reason says it was replaced.
    host.add_drive(vm_id, SMALL_DISK)
    replaced = run_backup(repo, host, vm_id, "incremental")
    assert replaced.disk_set_changed == f"the disk set changed since restore point {removed.point_id}: added vm1_disk1.vhdx"
    host.remove_drive(vm_id, 1)
    host.add_drive(vm_id, SMALL_DISK)
    again = run_backup(repo, host, vm_id, "incremental")
    assert again.disk_set_changed == f"the disk set changed since restore point {replaced.point_id}: replaced vm1_disk1.vhdx"
    assert len(again.whole_reads) == 1 and again.whole_reads[0].startswith("vm1_disk1.vhdx: ")
    assert "disk set changed" in again.whole_reads[0]


def test_a_reimported_vm_is_read_whole_and_says_so(tmp_path: Path) -> None:
    host, vm_id, repo = lab(tmp_path)
    first = run_backup(repo, host, vm_id, "full")
    new_id = host.reimport_vm(vm_id)
    assert host.vm(new_id).name == "vm1" and new_id != vm_id
    assert host.disk_path(new_id, 0).name == "vm1.vhdx"
    inc = run_backup(repo, host, new_id, "incremental")
    assert inc.mode == "full" and inc.vm_id == new_id
    assert inc.fallback is not None and "re-imported" in inc.fallback and vm_id in inc.fallback
    assert inc.whole_reads == [f"vm1.vhdx: VM re-imported (id {vm_id} → {new_id} since restore point {first.point_id})"]
    # The new id's points chain from here.
    host.write_guest_data(new_id, 0, 2 * MiB, b"\x11" * 4096)
    nxt = run_backup(repo, host, new_id, "incremental")
    assert nxt.mode == "incremental" and nxt.fallback is None and nxt.whole_reads == []


def test_a_vm_new_to_the_repository_is_not_called_reimported(tmp_path: Path) -> None:
    host, vm_id, repo = lab(tmp_path)
    other = add_vm(host, name="vm2", blocks=2)
    run_backup(repo, host, other, "full")
    first = run_backup(repo, host, vm_id, "incremental")
    assert first.mode == "full" and "no restore point" in (first.fallback or "") and first.whole_reads == []


def test_the_lab_changes_the_disk_set_only_without_checkpoints(tmp_path: Path) -> None:
    host, vm_id, _repo = lab(tmp_path)
    host.create_checkpoint(vm_id, "before")
    with pytest.raises(HostError, match="has checkpoints"):
        host.add_drive(vm_id, SMALL_DISK)
    with pytest.raises(HostError, match="has checkpoints"):
        host.remove_drive(vm_id, 0)


def test_disk_set_and_reimport_reasons_reach_the_job_the_console_detail_and_the_audit_log(
    tmp_path: Path, paths: Paths
) -> None:
    host, vm_id, _repo = lab(tmp_path)
    config = Config(
        source=tmp_path / "config.yaml",
        hosts=(HostConfig(name="lab-t1", kind="lab"),),
        repositories=(RepositoryConfig(name="default", path=tmp_path / "core-repo", default=True),),
    )
    core = Core(config, paths, clock=host.store.clock, lab_dir=tmp_path, hosts={"lab-t1": host})
    try:
        core.backups.backup("lab-t1", vm_id, "full", apply_retention=False)
        host.add_drive(vm_id, SMALL_DISK)
        added = core.jobs.wait(core.jobs.submit_backup("lab-t1", vm_id, "incremental").id, 60)
        new_id = host.reimport_vm(vm_id)
        reimported = core.jobs.wait(core.jobs.submit_backup("lab-t1", new_id, "incremental").id, 60)
    finally:
        core.close()
    summary = dict(added.summary or {})
    assert "disk set changed (a disk added" in summary["whole_reads"][0]
    assert summary["disk_set_changed"].endswith("added vm1_disk1.vhdx")
    detail = job_detail(added)
    assert "disk set changed (a disk added" in detail and "added vm1_disk1.vhdx" in detail
    again = dict(reimported.summary or {})
    assert "VM re-imported" in again["whole_reads"][0] and "re-imported" in again["message"]
    assert "VM re-imported" in job_detail(reimported)
    entries = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "backup"]
    assert "disk set changed (a disk added" in entries[-2]["args"]["whole_reads"][0]
    assert entries[-2]["args"]["disk_set_changed"].endswith("added vm1_disk1.vhdx")
    assert "VM re-imported" in entries[-1]["args"]["whole_reads"][0]
