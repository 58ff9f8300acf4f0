"""Leftover Recovery checkpoints: hvtui removes only its own, names and audits each one.

Real components: a lab host with real disk files, the real backup service and job manager,
a backup process killed with SIGKILL (``kill_support``).  Another backup product's
Recovery checkpoint is made the way the lab makes any checkpoint, with the very name
pattern hvtui's backups use, so only hvtui's checkpoint journal can tell them apart.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from kill_support import kill_backup_at  # noqa: E402
from lab_support import add_vm, make_host  # noqa: E402
from test_jobs import DEADLINE  # noqa: E402

from hvtui.audit import AuditLog  # noqa: E402
from hvtui.clock import SystemClock  # noqa: E402
from hvtui.config import Config, HostConfig, RepositoryConfig  # noqa: E402
from hvtui.core import Core  # noqa: E402
from hvtui.events import Progress  # noqa: E402
from hvtui.hosts.lab.host import LabHost  # noqa: E402
from hvtui.jobs import JobState  # noqa: E402
from hvtui.paths import Paths  # noqa: E402

HOST = "lab-t1"


def make_lab_core(root: Path, paths: Paths) -> Core:
    config = Config(
        source=root / "config.yaml",
        hosts=(HostConfig(name=HOST, kind="lab"),),
        repositories=(RepositoryConfig(name="default", path=root / "repo", default=True),),
    )
    return Core(config, paths, lab_dir=root)


def foreign_recovery_checkpoint(host: LabHost, vm_id: str) -> str:
    """Another backup product's Recovery checkpoint, named as Hyper-V names every backup's."""
    name = f"vm1 - Backup - ({datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC):%m/%d/%Y - %I:%M:%S %p})"
    return host.create_checkpoint(vm_id, name, "Recovery").id


def recovery_ids(root: Path, vm_id: str) -> list[str]:
    lab = LabHost.open(root / HOST, HOST, SystemClock())  # a fresh reader: what the host holds now
    return [cp.id for cp in lab.vm(vm_id).checkpoints if cp.type == "Recovery"]


def test_a_backup_leaves_another_products_recovery_checkpoint_alone(tmp_path: Path, paths: Paths) -> None:
    host = make_host(tmp_path, HOST)
    vm_id = add_vm(host, blocks=4)
    foreign = foreign_recovery_checkpoint(host, vm_id)
    core = make_lab_core(tmp_path, paths)
    events: list[Progress] = []
    try:
        result = core.backups.backup(HOST, vm_id, "full", progress=events.append)
    finally:
        core.close()
    assert result.point_id
    assert recovery_ids(tmp_path, vm_id) == [foreign]  # still there: its product may be using it
    assert [e for e in AuditLog(paths.audit_log).read() if e["action"] == "remove-recovery-checkpoints"] == []
    # No clean-up line at all when nothing is removed (it used to be printed on every backup).
    phases = [e.phase for e in events]
    assert "cleanup" not in phases[: phases.index("checkpoint")]


def test_a_backup_removes_its_own_killed_backups_checkpoint_naming_and_auditing_it(tmp_path: Path, paths: Paths) -> None:
    """A later backup (not a resume) removes the checkpoint hvtui's killed backup left, says
    which on the progress line and audits it; another product's, on the same VM, stays."""
    host = make_host(tmp_path, HOST)
    vm_id = add_vm(host, blocks=6)
    foreign = foreign_recovery_checkpoint(host, vm_id)
    marker = tmp_path / "stopped"
    job_id = kill_backup_at(
        "backup", module="test_recovery_leftovers", factory="make_lab_core", root=tmp_path, vm_id=vm_id, vm_name="vm1",
        marker=marker,
    )  # fmt: skip
    left = [cp for cp in recovery_ids(tmp_path, vm_id) if cp != foreign]
    assert len(left) == 1  # the killed backup's own

    core = make_lab_core(tmp_path, paths)
    try:
        job = core.jobs.submit_backup(HOST, vm_id, mode="full", vm_name="vm1")
        done = core.jobs.wait(job.id, DEADLINE)
        assert done.state is JobState.SUCCEEDED, done.error
    finally:
        core.close()
    assert recovery_ids(tmp_path, vm_id) == [foreign]
    (entry,) = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "remove-recovery-checkpoints"]
    assert entry["result"] == "ok" and entry["vm"] == "vm1"
    assert entry["args"]["checkpoint_id"] == left[0] and entry["args"]["left_by"] == job_id
    assert entry["args"]["checkpoint_name"].startswith("vm1 - Backup - (")
    # Named in the job's log (every phase and message is kept there; the subscribers' progress
    # events are throttled, and a stale-lock notice of the killed process may come first).
    assert any(
        " cleanup: " in line and entry["args"]["checkpoint_name"] in line and job_id in line for line in done.log
    ), done.log


def test_resuming_a_killed_backup_removes_only_its_own_checkpoint(tmp_path: Path, paths: Paths) -> None:
    host = make_host(tmp_path, HOST)
    vm_id = add_vm(host, blocks=6)
    foreign = foreign_recovery_checkpoint(host, vm_id)
    marker = tmp_path / "stopped"
    job_id = kill_backup_at(
        "backup", module="test_recovery_leftovers", factory="make_lab_core", root=tmp_path, vm_id=vm_id, vm_name="vm1",
        marker=marker,
    )  # fmt: skip
    core = make_lab_core(tmp_path, paths)
    try:
        resumed = core.jobs.resume(job_id)
        assert core.jobs.wait(resumed.id, DEADLINE).state is JobState.SUCCEEDED
    finally:
        core.close()
    assert recovery_ids(tmp_path, vm_id) == [foreign]
    removed = [e["args"] for e in AuditLog(paths.audit_log).read() if e["action"] == "remove-recovery-checkpoints"]
    assert [(a["removed"], a["resuming"], a["left_by"]) for a in removed] == [(1, job_id, job_id)]


def test_check_flags_a_killed_backups_checkpoint_at_once(tmp_path: Path, paths: Paths) -> None:
    """Killed right after `backup: full backup of ...`: `check` is no longer OK although the
    checkpoint is seconds old (the journal knows its job is dead); dismissing the job does not
    hide it."""
    from hvtui.commands.check import build_report

    host = make_host(tmp_path, HOST)
    vm_id = add_vm(host, blocks=6)
    add_vm(host, name="vm2", seed=9)
    marker = tmp_path / "stopped"
    job_id = kill_backup_at(
        "backup", module="test_recovery_leftovers", factory="make_lab_core", root=tmp_path, vm_id=vm_id, vm_name="vm1",
        marker=marker,
    )  # fmt: skip
    core = make_lab_core(tmp_path, paths)
    try:
        core.jobs.dismiss_interrupted(job_id)
        report = build_report(core)
    finally:
        core.close()
    left = [f for f in report["findings"] if f["rule"] == "recovery-checkpoint-left"]
    assert [(f["vm_name"], f["severity"]) for f in left] == [("vm1", "WARN")]
    assert f"hvtui backup job {job_id}" in left[0]["message"]
    assert report["summary"].startswith("HVTUI WARNING")
